//! `WsSession`: one actor per participant, behind a WebSocket (`WsSocket`).
//!
//! It parses client messages, owns the participant's two peer connections (publisher:
//! the browser offers; subscriber: we offer), turns media-plane events into its own
//! messages, and pushes server messages to the browser through its socket. It sees
//! only Plaza's types: everything webrtc-rs stays behind `crate::rtc`.
//!
//! The socket is a separate, thin actor (`socket`), so a joined participant outlives a
//! socket that dropped without a close frame for `session.resume_grace`: the client
//! comes back on a new socket with its resume token (`resume`), and the messages it
//! missed are sent again (`replay`).
//!
//! Peer-connection calls are awaited with `ctx.wait`, which holds back the actor's
//! other events until the call is done. That gives the ordering signalling needs (an
//! offer is applied before the candidates that follow it; subscriber offers go out one
//! at a time) without locks. The calls run on the media runtime and never wait for this
//! actor, so this cannot deadlock.
//!
//! Whatever stops the actor — `leave`, a closed socket, a dropped socket not resumed
//! within the grace period, a failed peer connection, a kick, shutdown — `stopped`
//! runs the same teardown, and the registry entry goes with the actor (a guard field).
//!
//! One file per job: this one is the socket's lifecycle; `join` enters a room; `publish`
//! and `subscribe` are the two peer connections' negotiation; `peer_events` turns the
//! media plane's events into actions; `chat` is the chat relay with its backlog;
//! `refresh` sends fresh room tokens.

mod chat;
mod join;
pub mod messages;
mod peer_events;
mod publish;
mod refresh;
mod replay;
mod socket;
mod subscribe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws::CloseCode;
use plaza_protocol::signalling::{Action, Signalling, SignallingLimits};
use plaza_protocol::{ParticipantId, ProtocolError, ServerMessage, TrackId};
use tracing::{debug, info, info_span, Span};

use self::chat::ChatState;
pub use self::messages::*;
use self::replay::Replay;
pub use self::socket::WsSocket;
use self::subscribe::Subscription;
use crate::config::LimitsConfig;
use crate::link::{Attach, FromSocket, SocketId, ToSocket};
use crate::registry::{Connection, ConnectionGuard, Shutdown};
use crate::room::{self, Room, RoomEvent};
use crate::rtc::{Peer, UpTrack};
use crate::state::AppState;

/// A peer-connection call that takes longer than this is treated as failed, so a stuck
/// call cannot hold the session (and its heartbeat) forever.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct WsSession {
    id: ParticipantId,
    app: Arc<AppState>,
    peer_addr: Option<std::net::SocketAddr>,
    /// The client's address: `peer_addr`'s, or what a trusted proxy forwarded.
    client_ip: Option<std::net::IpAddr>,
    /// The socket server messages go to; `None` while waiting for a resume.
    socket: Option<Recipient<ToSocket>>,
    socket_id: SocketId,
    /// Bumped on every detach, so a stale grace timer does nothing.
    detached: u64,
    /// The messages sent since `joined`, kept for a resume (`None` before joining).
    replay: Option<Replay>,
    /// Client messages received since `joined` (told in `resumed`).
    received: u64,
    /// Whether ICE has connected once on (publisher, subscriber): a later "connected"
    /// is a reconnection.
    ice_connected_once: (bool, bool),
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
    /// Sends fresh room tokens before they expire (with `auth.secret`, once joined).
    token_refresh: Option<refresh::TokenRefresh>,
    span: Span,
    /// Removes this connection from the registry when the actor is dropped.
    _registration: Option<ConnectionGuard>,
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
        socket: Recipient<ToSocket>,
        socket_id: SocketId,
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
            socket: Some(socket),
            socket_id,
            detached: 0,
            replay: None,
            received: 0,
            ice_connected_once: (false, false),
            room: None,
            publisher: None,
            subscriber: None,
            published: HashMap::new(),
            subscriptions: HashMap::new(),
            negotiation_scheduled: false,
            token_refresh: None,
            span,
            _registration: None,
        }
    }

    /// Sends to the client; kept for a resume once joined. While the socket is away
    /// the message is only kept, and sent when the client resumes.
    fn send(&mut self, ctx: &mut Context<Self>, msg: &ServerMessage) {
        let text = msg.to_json();
        // Pongs are not numbered: they answer the moment, a resume has no use for them.
        if let (Some(replay), false) = (&mut self.replay, matches!(msg, ServerMessage::Pong)) {
            replay.push(text.clone());
        }
        if let Some(socket) = &self.socket {
            socket.do_send(ToSocket::Text(text));
        }
        let _ = ctx;
    }

    /// Tells the client what went wrong; a fatal error also closes the connection.
    fn fail(&mut self, ctx: &mut Context<Self>, err: ProtocolError) {
        self.app.metrics.count_error(err.code());
        debug!(code = err.code(), %err, "protocol error");
        self.send(ctx, &ServerMessage::error(&err));
        if err.is_fatal() {
            let code = match err {
                ProtocolError::ServerShutdown => CloseCode::Away,
                _ => CloseCode::Policy,
            };
            self.close(ctx, code, err.code());
        }
    }

    /// Closes the WebSocket with a code and a reason, and ends the participant.
    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: impl Into<String>) {
        if let Some(socket) = self.socket.take() {
            socket.do_send(ToSocket::Close(code, reason.into()));
        }
        ctx.stop();
    }

    /// The socket dropped without a close frame, or the client closed it saying it will
    /// resume (`plaza_protocol::close`): keep the participant (peer connections,
    /// tracks, subscriptions) for the grace period, then give up.
    fn detach(&mut self, ctx: &mut Context<Self>) {
        let grace = self.app.config.session.resume_grace;
        if self.replay.is_none() || grace.is_zero() {
            ctx.stop();
            return;
        }
        info!(?grace, "socket lost; waiting for a resume");
        self.socket = None;
        self.detached += 1;
        let detached = self.detached;
        ctx.run_later(grace, move |act, ctx| {
            if act.socket.is_none() && act.detached == detached {
                let _e = act.span.clone().entered();
                info!(?grace, "not resumed in time");
                ctx.stop();
            }
        });
    }

    /// A new resume token for this participant (single use; replaces the last one).
    fn issue_resume_token(&self, ctx: &mut Context<Self>) -> Option<String> {
        if self.app.config.session.resume_grace.is_zero() {
            return None;
        }
        let token = format!("{:032x}", rand::random::<u128>());
        self.app.registry.set_resume_token(
            token.clone(),
            &self.id,
            ctx.address().recipient::<Attach>(),
        );
        Some(token)
    }

    fn room(&self) -> Option<&Addr<Room>> {
        self.room.as_ref()
    }

    /// Carries out what `Signalling` decided for one client message.
    fn perform(&mut self, action: Action, ctx: &mut Context<Self>) -> Result<(), ProtocolError> {
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
            Action::RestartIce => {
                info!("ICE restart asked");
                self.schedule_negotiation(ctx);
            }
            Action::Leave => {
                info!("leave");
                self.close(ctx, CloseCode::Normal, "left");
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

async fn timeout<T>(
    fut: impl std::future::Future<Output = Result<T, ProtocolError>>,
) -> Result<T, ProtocolError> {
    tokio::time::timeout(PEER_CALL_TIMEOUT, fut)
        .await
        .map_err(|_| ProtocolError::Internal("peer connection call timed out".into()))?
}

impl Actor for WsSession {
    type Context = Context<Self>;

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
        // A socket that has not joined by then is closed, pings or not (the socket
        // answers pings). A join in progress holds the actor's events (`ctx.wait`), so
        // this runs after it.
        let join_timeout = self.app.config.heartbeat.join_timeout;
        ctx.run_later(join_timeout, move |act, ctx| {
            if act.room.is_none() {
                let _e = act.span.clone().entered();
                info!(timeout = ?join_timeout, "no join in time");
                act.app.metrics.count_error("join_timeout");
                act.close(
                    ctx,
                    CloseCode::Other(plaza_protocol::close::JOIN_TIMEOUT),
                    "join_timeout",
                );
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        self.teardown();
        info!("session ended");
    }
}

impl Handler<FromSocket> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: FromSocket, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        match msg {
            FromSocket::Text(text) => {
                if self.replay.is_some() {
                    self.received += 1;
                }
                let result = self
                    .signalling
                    .on_text(&text, Instant::now())
                    .and_then(|action| self.perform(action, ctx));
                if let Err(e) = result {
                    self.fail(ctx, e);
                }
            }
            FromSocket::Refused(e) => self.fail(ctx, e),
            // A socket this participant was taken from: already replaced.
            FromSocket::Gone { socket, .. } if socket != self.socket_id => {}
            FromSocket::Gone { clean: true, .. } => {
                self.socket = None;
                ctx.stop();
            }
            FromSocket::Gone { clean: false, .. } => self.detach(ctx),
        }
    }
}

impl Handler<Attach> for WsSession {
    type Result = Result<Recipient<FromSocket>, ProtocolError>;

    fn handle(&mut self, msg: Attach, ctx: &mut Self::Context) -> Self::Result {
        let _e = self.span.clone().entered();
        let Some(missed) = self.replay.as_ref().and_then(|r| r.since(msg.received)) else {
            return Err(ProtocolError::ResumeFailed(
                "the messages since then are no longer kept; join again".into(),
            ));
        };
        if let Some(old) = self.socket.replace(msg.socket.clone()) {
            // Taken over while the old socket still looked alive (its path is dead).
            old.do_send(ToSocket::Close(
                CloseCode::Policy,
                "resumed on another connection".into(),
            ));
        }
        self.socket_id = msg.socket_id;
        self.detached += 1;
        info!(replayed = missed.len(), "resumed");
        let resume_token = self.issue_resume_token(ctx).unwrap_or_default();
        msg.socket.do_send(ToSocket::Text(
            ServerMessage::Resumed {
                participant_id: self.id.clone(),
                resume_token,
                received: self.received,
            }
            .to_json(),
        ));
        for text in missed {
            msg.socket.do_send(ToSocket::Text(text));
        }
        Ok(ctx.address().recipient())
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
