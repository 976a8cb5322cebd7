//! `WsSocket`: one actor per WebSocket, thin. It keeps the heartbeat, hands text frames
//! to the participant behind it (`WsSession`) and writes what the participant sends.
//!
//! A socket whose first frame is `resume` with a valid token is handed to the existing
//! participant instead of a new one (and the fresh one, never joined, stops). When the
//! socket ends, the participant is told whether the client closed it cleanly (it
//! leaves) or the connection just went away (it waits for a resume).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws;
use plaza_protocol::{close, ClientMessage, ProtocolError, ServerMessage};
use tracing::{debug, info};

use super::WsSession;
use crate::admission::Slot;
use crate::link::{Attach, FromSocket, SocketId, ToSocket};
use crate::state::AppState;

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

pub struct WsSocket {
    id: SocketId,
    app: Arc<AppState>,
    peer_addr: Option<std::net::SocketAddr>,
    /// The client's address: `peer_addr`'s, or what a trusted proxy forwarded.
    client_ip: Option<std::net::IpAddr>,
    last_heard: Instant,
    /// Where client frames go: the participant made for this socket, or the one a
    /// `resume` attached it to.
    participant: Option<Recipient<FromSocket>>,
    /// No text frame has arrived yet: only the first may be `resume`.
    first_frame: bool,
    /// The client (or we) closed the socket on purpose: the participant leaves.
    clean: bool,
    /// This socket's place under the connection caps, given back with the actor.
    _slot: Slot,
}

impl WsSocket {
    pub fn new(
        app: Arc<AppState>,
        peer_addr: Option<std::net::SocketAddr>,
        client_ip: Option<std::net::IpAddr>,
        slot: Slot,
    ) -> Self {
        Self {
            id: NEXT_SOCKET.fetch_add(1, Ordering::Relaxed),
            app,
            peer_addr,
            client_ip,
            _slot: slot,
            last_heard: Instant::now(),
            participant: None,
            first_frame: true,
            clean: false,
        }
    }

    fn forward(&self, msg: FromSocket) {
        if let Some(p) = &self.participant {
            p.do_send(msg);
        }
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: ws::CloseCode, reason: String) {
        self.clean = true;
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(reason),
        }));
        ctx.stop();
    }

    /// `resume {token, received}` as the first frame: attach to that participant.
    fn resume(&mut self, token: String, received: u64, ctx: &mut ws::WebsocketContext<Self>) {
        let refused = |ctx: &mut ws::WebsocketContext<Self>, why: &str| {
            let err = ProtocolError::ResumeFailed(why.into());
            debug!(%err, "resume refused");
            ctx.text(ServerMessage::error(&err).to_json());
        };
        let Some((participant, attach)) = self.app.registry.take_resume_token(&token) else {
            self.app.metrics.count_error("resume_failed");
            return refused(ctx, "unknown or expired resume token; join again");
        };
        let request = Attach {
            socket: ctx.address().recipient(),
            socket_id: self.id,
            received,
        };
        // Held until answered, so no frame overtakes the switch.
        ctx.wait(
            attach
                .send(request)
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(Ok(target)) => {
                        info!(%participant, "resumed on a new socket");
                        let fresh = act.participant.replace(target);
                        if let Some(fresh) = fresh {
                            fresh.do_send(FromSocket::Gone {
                                socket: act.id,
                                clean: true,
                            });
                        }
                    }
                    Ok(Err(e)) => {
                        act.app.metrics.count_error(e.code());
                        ctx.text(ServerMessage::error(&e).to_json());
                    }
                    Err(_) => refused(ctx, "the participant has ended; join again"),
                }),
        );
    }
}

impl Actor for WsSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let session = WsSession::new(
            Arc::clone(&self.app),
            self.peer_addr,
            self.client_ip,
            ctx.address().recipient(),
            self.id,
        )
        .start();
        self.participant = Some(session.recipient());
        let hb = self.app.config.heartbeat.clone();
        ctx.run_interval(hb.interval, move |act, ctx| {
            if act.last_heard.elapsed() > hb.timeout {
                info!(timeout = ?hb.timeout, socket = act.id, "heartbeat timeout");
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.forward(FromSocket::Gone {
            socket: self.id,
            clean: self.clean,
        });
    }
}

impl Handler<ToSocket> for WsSocket {
    type Result = ();

    fn handle(&mut self, msg: ToSocket, ctx: &mut Self::Context) {
        match msg {
            ToSocket::Text(text) => ctx.text(text),
            ToSocket::Close(code, reason) => self.close(ctx, code, reason),
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSocket {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let msg = match item {
            Ok(msg) => msg,
            Err(ws::ProtocolError::Overflow) => {
                self.app.metrics.count_error("frame_too_large");
                let limit = self.app.config.limits.max_frame_bytes;
                self.close(
                    ctx,
                    ws::CloseCode::Size,
                    format!("frame larger than {limit} bytes"),
                );
                return;
            }
            Err(e) => {
                debug!(error = %e, "websocket protocol error");
                ctx.stop();
                return;
            }
        };
        self.last_heard = Instant::now();
        match msg {
            ws::Message::Text(text) => {
                let text = text.to_string();
                if std::mem::take(&mut self.first_frame) {
                    if let Ok(ClientMessage::Resume { token, received }) =
                        ClientMessage::decode(&text)
                    {
                        return self.resume(token, received, ctx);
                    }
                }
                self.forward(FromSocket::Text(text));
            }
            ws::Message::Binary(_) => self.forward(FromSocket::Refused(ProtocolError::BadMessage(
                "binary frames are not part of the protocol".into(),
            ))),
            ws::Message::Ping(p) => ctx.pong(&p),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                // A client that will resume on a new socket says so in the code (a
                // browser cannot drop a socket without a close frame); any other
                // close frame is a leave.
                let code = reason.as_ref().map(|r| u16::from(r.code));
                self.clean = !code.is_some_and(close::client_will_resume);
                info!(
                    socket = self.id,
                    code,
                    reason = reason.as_ref().and_then(|r| r.description.as_deref()),
                    resuming = !self.clean,
                    "client closed the socket"
                );
                ctx.close(reason);
                ctx.stop();
            }
            ws::Message::Continuation(_) => self.close(
                ctx,
                ws::CloseCode::Unsupported,
                "fragmented frames are not supported".into(),
            ),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The TCP connection ended (with or without a close frame).
        ctx.stop();
    }
}
