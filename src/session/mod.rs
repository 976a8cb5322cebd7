//! `WsSession`: one actor per WebSocket, i.e. per participant.
//!
//! It parses client messages, keeps the heartbeat, owns the participant's two peer
//! connections (publisher: the browser offers; subscriber: we offer), turns media-plane
//! events into its own messages, and pushes server messages to the browser. It sees
//! only Plaza's types: everything webrtc-rs stays behind `crate::rtc`.
//!
//! Peer-connection calls are awaited with `ctx.wait`, which holds back the actor's
//! other events until the call is done. That gives the ordering signalling needs (an
//! offer is applied before the candidates that follow it; subscriber offers go out one
//! at a time) without locks. The calls run on the media runtime and never wait for this
//! actor, so this cannot deadlock.
//!
//! Whatever stops the actor — `leave`, a closed or dropped socket, a heartbeat
//! timeout, a failed peer connection, a kick, shutdown — `stopped` runs the same
//! teardown, and the registry entry goes with the actor (a guard field).
//!
//! One file per job: this one is the socket's lifecycle; `join` enters a room; `publish`
//! and `subscribe` are the two peer connections' negotiation; `peer_events` turns the
//! media plane's events into actions; `chat` is the chat relay with its backlog.

mod chat;
mod join;
pub mod messages;
mod peer_events;
mod publish;
mod subscribe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;
use plaza_protocol::signalling::{Action, Signalling, SignallingLimits};
use plaza_protocol::{ParticipantId, ProtocolError, ServerMessage, TrackId};
use tracing::{debug, info, info_span, Span};

use self::chat::ChatState;
pub use self::messages::*;
use self::subscribe::Subscription;
use crate::admission::Slot;
use crate::config::LimitsConfig;
use crate::registry::{Connection, ConnectionGuard, Shutdown};
use crate::room::{self, Room, RoomEvent};
use crate::rtc::{Peer, UpTrack};
use crate::state::AppState;

/// A peer-connection call that takes longer than this is treated as failed, so a stuck
/// call cannot hold the session (and its heartbeat) forever.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The close code for a socket that did not join within `heartbeat.join_timeout`
/// (docs/protocol.md; 4xxx is the application's range, 408 as in HTTP's timeout).
pub const JOIN_TIMEOUT_CLOSE: u16 = 4408;

pub struct WsSession {
    id: ParticipantId,
    app: Arc<AppState>,
    peer_addr: Option<std::net::SocketAddr>,
    /// The client's address: `peer_addr`'s, or what a trusted proxy forwarded.
    client_ip: Option<std::net::IpAddr>,
    last_heard: Instant,
    /// What client messages mean now, and what the client may do.
    signalling: Signalling,
    /// Set once joined.
    room: Option<Addr<Room>>,
    publisher: Option<Arc<Peer>>,
    subscriber: Option<Arc<Peer>>,
    published: HashMap<TrackId, Arc<UpTrack>>,
    subscriptions: HashMap<TrackId, Subscription>,
    /// A `Negotiate` message is already queued.
    negotiation_scheduled: bool,
    chat: ChatState,
    span: Span,
    /// Removes this connection from the registry when the actor is dropped.
    _registration: Option<ConnectionGuard>,
    /// This connection's place under the connection caps, given back with the actor.
    _slot: Slot,
}

/// The limits the signalling state machine enforces, from the server's `[limits]`.
fn signalling_limits(l: &LimitsConfig) -> SignallingLimits {
    SignallingLimits {
        max_room_name_len: l.max_room_name_len,
        max_display_name_len: l.max_display_name_len,
        max_tracks_per_participant: l.max_tracks_per_participant,
        signalling_rate: l.signalling_rate,
        signalling_burst: l.signalling_burst,
    }
}

impl WsSession {
    pub fn new(
        app: Arc<AppState>,
        peer_addr: Option<std::net::SocketAddr>,
        client_ip: Option<std::net::IpAddr>,
        slot: Slot,
    ) -> Self {
        let id = ParticipantId::random();
        let client = client_ip.map(tracing::field::display);
        let span =
            info_span!("participant", participant = %id, client, room = tracing::field::Empty);
        let limits = &app.config.limits;
        Self {
            id,
            signalling: Signalling::new(&signalling_limits(limits), app.tokens.clone()),
            chat: ChatState::new(limits),
            app,
            peer_addr,
            client_ip,
            last_heard: Instant::now(),
            room: None,
            publisher: None,
            subscriber: None,
            published: HashMap::new(),
            subscriptions: HashMap::new(),
            negotiation_scheduled: false,
            span,
            _registration: None,
            _slot: slot,
        }
    }

    fn send(&self, ctx: &mut ws::WebsocketContext<Self>, msg: &ServerMessage) {
        ctx.text(msg.to_json());
    }

    /// Tells the client what went wrong; a fatal error also closes the connection.
    fn fail(&self, ctx: &mut ws::WebsocketContext<Self>, err: ProtocolError) {
        self.app.metrics.count_error(err.code());
        debug!(code = err.code(), %err, "protocol error");
        self.send(ctx, &ServerMessage::error(&err));
        if err.is_fatal() {
            let code = match err {
                ProtocolError::ServerShutdown => ws::CloseCode::Away,
                _ => ws::CloseCode::Policy,
            };
            close(ctx, code, err.code());
        }
    }

    fn room(&self) -> Option<&Addr<Room>> {
        self.room.as_ref()
    }

    /// Carries out what `Signalling` decided for one client message.
    fn perform(
        &mut self,
        action: Action,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> Result<(), ProtocolError> {
        match action {
            Action::Reply(msg) => self.send(ctx, &msg),
            Action::Join { room, name, grant } => self.join(room, name, grant, ctx)?,
            Action::AnswerOffer(sdp) => self.on_offer(sdp, ctx),
            Action::ApplyAnswer(sdp) => self.on_answer(sdp, ctx),
            Action::AddCandidate(target, candidate) => self.on_candidate(target, candidate, ctx),
            Action::SetMuted(kind, muted) => {
                if let Some(room) = self.room() {
                    room.do_send(room::SetMuted {
                        participant_id: self.id.clone(),
                        kind,
                        muted,
                    });
                }
            }
            Action::Leave => {
                info!("leave");
                close(ctx, ws::CloseCode::Normal, "left");
            }
            Action::Nothing => {}
        }
        Ok(())
    }

    fn teardown(&mut self) {
        for (_, up) in self.published.drain() {
            up.stop();
        }
        for (_, sub) in self.subscriptions.drain() {
            sub.up.remove_subscriber(&self.id);
        }
        self.chat.close();
        if let Some(p) = self.publisher.take() {
            p.close();
        }
        if let Some(p) = self.subscriber.take() {
            p.close();
        }
        if let Some(room) = self.room.take() {
            room.do_send(room::Leave {
                participant_id: self.id.clone(),
            });
        }
    }
}

/// Closes the WebSocket with a code and a reason, and stops the session.
fn close(
    ctx: &mut ws::WebsocketContext<WsSession>,
    code: ws::CloseCode,
    reason: impl Into<String>,
) {
    ctx.close(Some(ws::CloseReason {
        code,
        description: Some(reason.into()),
    }));
    ctx.stop();
}

async fn timeout<T>(
    fut: impl std::future::Future<Output = Result<T, ProtocolError>>,
) -> Result<T, ProtocolError> {
    tokio::time::timeout(PEER_CALL_TIMEOUT, fut)
        .await
        .map_err(|_| ProtocolError::Internal("peer connection call timed out".into()))?
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        self._registration = Some(self.app.registry.register_connection(
            self.id.clone(),
            Connection {
                session: ctx.address().recipient(),
                peer_addr: self.peer_addr,
                client_ip: self.client_ip,
                connected_at: Instant::now(),
                room: None,
                name: None,
                rejoiner: None,
            },
        ));
        debug!(peer = ?self.peer_addr, "connected");
        // A socket that has not joined by then is closed, pings or not. A join in
        // progress holds the actor's events (`ctx.wait`), so this runs after it.
        let join_timeout = self.app.config.heartbeat.join_timeout;
        ctx.run_later(join_timeout, move |act, ctx| {
            if act.room.is_none() {
                let _e = act.span.clone().entered();
                info!(timeout = ?join_timeout, "no join in time");
                act.app.metrics.count_error("join_timeout");
                close(
                    ctx,
                    ws::CloseCode::Other(JOIN_TIMEOUT_CLOSE),
                    "join_timeout",
                );
            }
        });
        let hb = self.app.config.heartbeat.clone();
        ctx.run_interval(hb.interval, move |act, ctx| {
            if act.last_heard.elapsed() > hb.timeout {
                let _e = act.span.clone().entered();
                info!(timeout = ?hb.timeout, "heartbeat timeout");
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        self.teardown();
        info!("session ended");
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        let msg = match item {
            Ok(msg) => msg,
            Err(ws::ProtocolError::Overflow) => {
                self.app.metrics.count_error("frame_too_large");
                close(
                    ctx,
                    ws::CloseCode::Size,
                    format!(
                        "frame larger than {} bytes",
                        self.app.config.limits.max_frame_bytes
                    ),
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
                let result = self
                    .signalling
                    .on_text(&text, Instant::now())
                    .and_then(|action| self.perform(action, ctx));
                if let Err(e) = result {
                    self.fail(ctx, e);
                }
            }
            ws::Message::Binary(_) => self.fail(
                ctx,
                ProtocolError::BadMessage("binary frames are not part of the protocol".into()),
            ),
            ws::Message::Ping(p) => ctx.pong(&p),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                debug!(?reason, "client closed");
                ctx.close(reason);
                ctx.stop();
            }
            ws::Message::Continuation(_) => {
                close(
                    ctx,
                    ws::CloseCode::Unsupported,
                    "fragmented frames are not supported",
                );
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The TCP connection ended (with or without a close frame).
        ctx.stop();
    }
}

impl Handler<RoomEvent> for WsSession {
    type Result = ();

    fn handle(&mut self, event: RoomEvent, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        match event {
            RoomEvent::ParticipantJoined(participant) => {
                self.send(ctx, &ServerMessage::ParticipantJoined { participant })
            }
            RoomEvent::ParticipantUpdated(participant) => {
                self.send(ctx, &ServerMessage::ParticipantUpdated { participant })
            }
            RoomEvent::ParticipantLeft(participant_id) => {
                self.send(ctx, &ServerMessage::ParticipantLeft { participant_id })
            }
            RoomEvent::TrackPublished(up) => self.subscribe(up, ctx),
            RoomEvent::TrackUnpublished {
                track_id,
                participant_id,
            } => {
                self.send(
                    ctx,
                    &ServerMessage::TrackUnpublished {
                        track_id: track_id.clone(),
                        participant_id,
                    },
                );
                self.unsubscribe(&track_id, ctx);
            }
            RoomEvent::Chat(json) => self.chat.deliver(json),
            RoomEvent::Closed(reason) => self.fail(ctx, reason),
        }
    }
}

impl Handler<Shutdown> for WsSession {
    type Result = ();

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Self::Context) {
        self.fail(ctx, ProtocolError::ServerShutdown);
    }
}
