//! `WsSession`: one actor per WebSocket, i.e. per participant.
//!
//! It parses client messages, keeps the heartbeat, owns the participant's two peer
//! connections (publisher: the browser offers; subscriber: we offer), turns webrtc-rs
//! callbacks into its own messages, and pushes server messages to the browser.
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

pub mod messages;
pub mod signalling;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;
use tracing::{debug, info, info_span, warn, Span};
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;

pub use self::messages::*;
use self::signalling::{Action, Signalling};
use crate::auth::Grant;
use crate::error::ProtocolError;
use crate::ids::{ParticipantId, RoomId, TrackId};
use crate::protocol::{
    ChatIn, IceCandidate, Limits, ParticipantInfo, PeerTarget, ServerMessage, CHAT_CHANNEL_LABEL,
    PROTOCOL_VERSION,
};
use crate::rate::TokenBucket;
use crate::registry::{Connection, ConnectionGuard};
use crate::room::{self, JoinAccepted, JoinRefused, Room, RoomEvent};
use crate::rtc::data::ChatChannel;
use crate::rtc::down_track::DownTrack;
use crate::rtc::up_track::UpTrack;
use crate::rtc::{Peer, PeerEvent, PeerEventHandler};
use crate::server::AppState;

/// A peer-connection call that takes longer than this is treated as failed, so a stuck
/// call cannot hold the session (and its heartbeat) forever.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Chat messages kept for a participant whose chat channel is not open yet.
const CHAT_BACKLOG: usize = 64;

struct Subscription {
    up: Arc<UpTrack>,
    sender: Option<Arc<RTCRtpSender>>,
}

pub struct WsSession {
    id: ParticipantId,
    app: Arc<AppState>,
    peer_addr: Option<std::net::SocketAddr>,
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
    chat: Option<ChatChannel>,
    chat_rate: TokenBucket,
    /// Chat for this participant that arrived before its chat channel opened.
    chat_backlog: Vec<Arc<str>>,
    span: Span,
    /// Removes this connection from the registry when the actor is dropped.
    _registration: Option<ConnectionGuard>,
}

impl WsSession {
    pub fn new(app: Arc<AppState>, peer_addr: Option<std::net::SocketAddr>) -> Self {
        let id = ParticipantId::random();
        let span = info_span!("participant", participant = %id, room = tracing::field::Empty);
        let limits = &app.config.limits;
        Self {
            id,
            signalling: Signalling::new(limits, app.tokens.clone()),
            chat_rate: TokenBucket::new(limits.chat_rate, limits.chat_burst),
            app,
            peer_addr,
            last_heard: Instant::now(),
            room: None,
            publisher: None,
            subscriber: None,
            published: HashMap::new(),
            subscriptions: HashMap::new(),
            negotiation_scheduled: false,
            chat: None,
            chat_backlog: Vec::new(),
            span,
            _registration: None,
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

    fn peer_handler(ctx: &ws::WebsocketContext<Self>, target: PeerTarget) -> PeerEventHandler {
        let addr = ctx.address().downgrade();
        Arc::new(move |event| {
            if let Some(addr) = addr.upgrade() {
                addr.do_send(FromPeer { target, event });
            }
        })
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

    fn join(
        &mut self,
        room_id: RoomId,
        name: Arc<str>,
        grant: Grant,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> Result<(), ProtocolError> {
        if let Some(ip) = self.peer_addr.map(|a| a.ip()) {
            if !self.app.join_limiter.allow(ip, Instant::now()) {
                // Told, then closed: a client that reconnects with backoff (as the web
                // client does) then comes back later instead of re-sending join at once.
                self.fail(
                    ctx,
                    ProtocolError::RateLimited(format!(
                        "more than {} joins per minute from this address; try again later",
                        self.app.config.limits.joins_per_ip_per_minute
                    )),
                );
                close(ctx, ws::CloseCode::Policy, "rate_limited");
                return Ok(());
            }
        }
        let started = Instant::now();
        if let Some(identity) = &grant.identity {
            info!(%identity, publish = grant.publish, subscribe = grant.subscribe, "token accepted");
        }
        let app = Arc::clone(&self.app);
        let me = ParticipantInfo {
            id: self.id.clone(),
            name: name.to_string(),
            audio_muted: false,
            video_muted: false,
        };
        let events = ctx.address().recipient::<RoomEvent>();
        let publisher_events = Self::peer_handler(ctx, PeerTarget::Publisher);
        let subscriber_events = Self::peer_handler(ctx, PeerTarget::Subscriber);
        let joining = async move {
            let media = &app.media;
            let publisher = media
                .new_peer(PeerTarget::Publisher, publisher_events)
                .await
                .map_err(|e| ProtocolError::Internal(e.to_string()))?;
            let subscriber = media
                .new_peer(PeerTarget::Subscriber, subscriber_events)
                .await
                .map_err(|e| ProtocolError::Internal(e.to_string()))?;
            let (room, accepted) = enter_room(&app, &room_id, me, events).await?;
            Ok::<_, ProtocolError>((room_id, room, accepted, publisher, subscriber))
        };
        ctx.wait(
            joining
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok((room_id, room, accepted, publisher, subscriber)) => {
                        act.app.metrics.observe_join(started.elapsed());
                        act.signalling.join_done(Ok(&grant));
                        act.publisher = Some(Arc::new(publisher));
                        act.subscriber = Some(Arc::new(subscriber));
                        act.on_joined(room_id, room, name, accepted, ctx);
                    }
                    Err(e) => {
                        act.signalling.join_done(Err(()));
                        act.fail(ctx, e);
                    }
                }),
        );
        Ok(())
    }

    fn on_joined(
        &mut self,
        room_id: RoomId,
        room: Addr<Room>,
        name: Arc<str>,
        accepted: JoinAccepted,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.span.record("room", tracing::field::display(&room_id));
        let _e = self.span.clone().entered();
        info!(name = %name, others = accepted.participants.len(), "joined");
        self.app
            .registry
            .set_joined(&self.id, room_id.clone(), name);
        let config = &self.app.config;
        self.send(
            ctx,
            &ServerMessage::Joined {
                protocol: PROTOCOL_VERSION,
                room: room_id.clone(),
                participant_id: self.id.clone(),
                participants: accepted.participants,
                ice_servers: crate::turn::ice_servers_for(config, &self.id),
                limits: Limits {
                    max_chat_bytes: config.limits.max_chat_bytes,
                    max_frame_bytes: config.limits.max_frame_bytes,
                },
            },
        );
        self.room = Some(room);
        for track in accepted.tracks {
            self.subscribe(track, ctx);
        }
    }

    // ----- publisher connection: the client offers -----

    fn on_offer(&mut self, sdp: String, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(peer) = self.publisher.clone() else {
            return;
        };
        let answering = async move { timeout(peer.answer(sdp)).await };
        ctx.wait(
            answering
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(sdp) => act.send(
                        ctx,
                        &ServerMessage::Answer {
                            target: PeerTarget::Publisher,
                            sdp,
                        },
                    ),
                    Err(e) => act.fail(ctx, e),
                }),
        );
    }

    fn on_remote_track(
        &mut self,
        track: Arc<webrtc::track::track_remote::TrackRemote>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let (Some(peer), Some(room)) = (self.publisher.clone(), self.room().cloned()) else {
            return;
        };
        let addr = ctx.address().downgrade();
        // Started on the media runtime: the read loop must not live on this worker.
        let _entered = self.app.media.handle().enter();
        let up = UpTrack::start(
            track,
            peer.connection(),
            self.id.clone(),
            self.app.config.media.keyframe_request_interval,
            Arc::clone(&self.app.media.stats),
            move |track_id| {
                if let Some(addr) = addr.upgrade() {
                    addr.do_send(UpTrackEnded(track_id));
                }
            },
        );
        info!(track = %up.id, codec = %up.codec.mime_type, "publishing");
        self.published.insert(up.id.clone(), Arc::clone(&up));
        room.do_send(room::Publish {
            participant_id: self.id.clone(),
            track: up,
        });
    }

    // ----- subscriber connection: the server offers -----

    fn subscribe(&mut self, up: Arc<UpTrack>, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(peer) = self.subscriber.clone() else {
            return;
        };
        if !self.signalling.grant().subscribe {
            return; // a publish-only token: this participant receives no media
        }
        self.send(ctx, &ServerMessage::TrackPublished { track: up.info() });
        let down = Arc::new(DownTrack::new(
            up.id.clone(),
            &up.publisher,
            self.id.clone(),
            up.codec.clone(),
            peer.transport_ready(),
            &self.app.media.stats,
        ));
        let track_id = up.id.clone();
        self.subscriptions.insert(
            track_id.clone(),
            Subscription {
                up: Arc::clone(&up),
                sender: None,
            },
        );
        let weak_up = Arc::downgrade(&up);
        let adding = {
            let down = Arc::clone(&down);
            async move { peer.add_down_track(down, weak_up).await }
        };
        ctx.wait(adding.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok(sender) => {
                    if let Some(sub) = act.subscriptions.get_mut(&track_id) {
                        sub.sender = Some(sender);
                        // Packets flow as soon as the answer binds the track and the
                        // transport is up; the forwarder waits for a keyframe.
                        sub.up.add_subscriber(down);
                    }
                }
                Err(e) => warn!(track = %track_id, error = %e, "cannot subscribe"),
            }
            act.schedule_negotiation(ctx);
        }));
    }

    fn unsubscribe(&mut self, track_id: &TrackId, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(sub) = self.subscriptions.remove(track_id) else {
            return;
        };
        sub.up.remove_subscriber(&self.id);
        if let (Some(peer), Some(sender)) = (self.subscriber.clone(), sub.sender) {
            let removing = async move { peer.remove_down_track(sender).await };
            ctx.wait(removing.into_actor(self).map(|result, act, ctx| {
                if let Err(e) = result {
                    debug!(error = %e, "remove track");
                }
                act.schedule_negotiation(ctx);
            }));
        }
    }

    fn schedule_negotiation(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.negotiation_scheduled {
            self.negotiation_scheduled = true;
            ctx.notify(Negotiate);
        }
    }

    fn on_answer(&mut self, sdp: String, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(peer) = self.subscriber.clone() else {
            return;
        };
        let applying = async move { timeout(peer.accept_answer(sdp)).await };
        ctx.wait(
            applying
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(()) => {
                        if act.signalling.answer_applied() {
                            act.schedule_negotiation(ctx);
                        }
                    }
                    // The offer stays in flight: the client may still send a valid answer.
                    Err(e) => act.fail(ctx, e),
                }),
        );
    }

    fn on_candidate(
        &mut self,
        target: PeerTarget,
        candidate: Option<IceCandidate>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let peer = match target {
            PeerTarget::Publisher => self.publisher.clone(),
            PeerTarget::Subscriber => self.subscriber.clone(),
        };
        let Some(peer) = peer else { return };
        let adding = async move { timeout(peer.add_candidate(candidate)).await };
        ctx.wait(adding.into_actor(self).map(|result, act, ctx| {
            if let Err(e) = result {
                act.fail(ctx, e);
            }
        }));
    }

    fn on_peer_event(
        &mut self,
        target: PeerTarget,
        event: PeerEvent,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        match event {
            PeerEvent::Candidate(candidate) => {
                self.send(ctx, &ServerMessage::Candidate { target, candidate })
            }
            PeerEvent::IceConnectionState(state) => {
                info!(?target, %state, "ICE connection state");
            }
            PeerEvent::ConnectionState(state) => {
                info!(?target, %state, "peer connection state");
                if state == RTCPeerConnectionState::Failed {
                    self.fail(
                        ctx,
                        ProtocolError::PeerFailed(format!(
                            "the {} connection failed (ICE or DTLS)",
                            target_name(target)
                        )),
                    );
                }
            }
            PeerEvent::Track(track) if target == PeerTarget::Publisher => {
                self.on_remote_track(track, ctx)
            }
            PeerEvent::DataChannel(dc) if dc.label() == CHAT_CHANNEL_LABEL => {
                debug!("chat channel open");
                let chat = ChatChannel::attach(dc, self.app.media.handle());
                for json in self.chat_backlog.drain(..) {
                    chat.send(json.to_string());
                }
                self.chat = Some(chat);
            }
            PeerEvent::DataMessage { label, message } if label == CHAT_CHANNEL_LABEL => {
                if let Err(e) = self.on_chat(message, ctx) {
                    self.fail(ctx, e);
                }
            }
            PeerEvent::DataMessage { label, .. } => {
                debug!(%label, "ignoring a message on a data channel with an unknown label");
            }
            PeerEvent::DataChannel(dc) => {
                debug!(
                    label = dc.label(),
                    "ignoring data channel with an unknown label"
                );
            }
            PeerEvent::Track(_) => {}
        }
    }

    fn on_chat(
        &mut self,
        msg: webrtc::data_channel::data_channel_message::DataChannelMessage,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> Result<(), ProtocolError> {
        if !self.chat_rate.take(Instant::now()) {
            return Err(ProtocolError::RateLimited(format!(
                "more than {} chat messages per second",
                self.app.config.limits.chat_rate
            )));
        }
        let max = self.app.config.limits.max_chat_bytes;
        if msg.data.len() > max {
            return Err(ProtocolError::MessageTooLarge(format!(
                "chat message of {} bytes; the limit is {max}",
                msg.data.len()
            )));
        }
        let chat: ChatIn = serde_json::from_slice(&msg.data)
            .map_err(|e| ProtocolError::BadMessage(format!("chat message: {e}")))?;
        let Some(room) = self.room().cloned() else {
            return Err(ProtocolError::NotJoined);
        };
        let relay = room.send(room::Chat {
            from: self.id.clone(),
            text: chat.text,
            to: chat.to,
        });
        ctx.wait(relay.into_actor(self).map(|result, act, ctx| {
            if let Ok(Err(e)) = result {
                act.fail(ctx, e);
            }
        }));
        Ok(())
    }

    fn teardown(&mut self) {
        for (_, up) in self.published.drain() {
            up.stop();
        }
        for (_, sub) in self.subscriptions.drain() {
            sub.up.remove_subscriber(&self.id);
        }
        self.chat = None;
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

fn target_name(t: PeerTarget) -> &'static str {
    match t {
        PeerTarget::Publisher => "publisher",
        PeerTarget::Subscriber => "subscriber",
    }
}

async fn timeout<T>(
    fut: impl std::future::Future<Output = Result<T, ProtocolError>>,
) -> Result<T, ProtocolError> {
    tokio::time::timeout(PEER_CALL_TIMEOUT, fut)
        .await
        .map_err(|_| ProtocolError::Internal("peer connection call timed out".into()))?
}

/// Joins the room's actor, starting it if needed. A room that is closing at that very
/// moment refuses with `Closing`; by then it is out of the registry, so the next try
/// starts a fresh one.
async fn enter_room(
    app: &Arc<AppState>,
    room_id: &RoomId,
    me: ParticipantInfo,
    events: Recipient<RoomEvent>,
) -> Result<(Addr<Room>, JoinAccepted), ProtocolError> {
    let limits = &app.config.limits;
    for _ in 0..8 {
        let room = app.registry.room_or_start(room_id, limits.max_rooms, || {
            Room::new(
                room_id.clone(),
                Arc::clone(&app.registry),
                limits.max_participants_per_room,
            )
            .start()
        })?;
        let join = room::Join {
            participant: me.clone(),
            events: events.clone(),
        };
        match room.send(join).await {
            Ok(Ok(accepted)) => return Ok((room, accepted)),
            Ok(Err(JoinRefused::Refused(e))) => return Err(e),
            // Closing, or already stopped: the registry no longer has it; retry.
            Ok(Err(JoinRefused::Closing)) | Err(_) => {
                app.registry.remove_room(room_id, &room);
                continue;
            }
        }
    }
    Err(ProtocolError::Internal("could not enter the room".into()))
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        self._registration = Some(self.app.registry.register_connection(
            self.id.clone(),
            Connection {
                session: ctx.address(),
                peer_addr: self.peer_addr,
                connected_at: Instant::now(),
                room: None,
                name: None,
            },
        ));
        debug!(peer = ?self.peer_addr, "connected");
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

impl Handler<FromPeer> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: FromPeer, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        self.on_peer_event(msg.target, msg.event, ctx);
    }
}

impl Handler<UpTrackEnded> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: UpTrackEnded, _ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        if self.published.remove(&msg.0).is_some() {
            info!(track = %msg.0, "track ended");
            if let Some(room) = self.room() {
                room.do_send(room::Unpublish {
                    participant_id: self.id.clone(),
                    track_id: msg.0,
                });
            }
        }
    }
}

impl Handler<Negotiate> for WsSession {
    type Result = ();

    fn handle(&mut self, _msg: Negotiate, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        self.negotiation_scheduled = false;
        let Some(peer) = self.subscriber.clone() else {
            return;
        };
        if !self.signalling.offer_needed(!self.subscriptions.is_empty()) {
            return;
        }
        let offering = async move {
            tokio::time::timeout(PEER_CALL_TIMEOUT, peer.offer())
                .await
                .map_err(|_| crate::error::Error::Timeout("create offer"))?
        };
        ctx.wait(
            offering
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(sdp) => act.send(
                        ctx,
                        &ServerMessage::Offer {
                            target: PeerTarget::Subscriber,
                            sdp,
                        },
                    ),
                    Err(e) => {
                        warn!(error = %e, "cannot create subscriber offer");
                        act.signalling.offer_failed();
                        act.fail(
                            ctx,
                            ProtocolError::Internal("cannot create an offer".into()),
                        );
                    }
                }),
        );
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
            RoomEvent::Chat(json) => match &self.chat {
                Some(chat) => {
                    if !chat.send(json.to_string()) {
                        debug!("chat message dropped: receiver too slow");
                    }
                }
                // Joined, but the data channel is not open yet: keep a bounded backlog.
                None if self.chat_backlog.len() < CHAT_BACKLOG => self.chat_backlog.push(json),
                None => debug!("chat message dropped: channel not open"),
            },
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
