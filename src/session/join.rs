//! Joining: the join limit per address, kicks and closures still in force, entering the
//! room's actor (starting it if needed; it checks the room's capacity), then the two
//! peer connections, and `joined` back to the client. The room comes first so that a
//! refused join never costs a peer connection (ICE agents, sockets, DTLS keys).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws::CloseCode;
use plaza_protocol::auth::Grant;
use plaza_protocol::{
    Limits, ParticipantInfo, PeerTarget, ProtocolError, RoomId, ServerMessage, PROTOCOL_VERSION,
};
use tracing::info;

use super::{replay::Replay, WsSession};
use crate::bans::Rejoiner;
use crate::room::{self, JoinAccepted, JoinRefused, Room, RoomEvent};
use crate::state::AppState;

impl WsSession {
    pub(super) fn join(
        &mut self,
        room_id: RoomId,
        name: Arc<str>,
        grant: Grant,
        ctx: &mut Context<Self>,
    ) -> Result<(), ProtocolError> {
        if let Some(ip) = self.client_ip {
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
                self.close(ctx, CloseCode::Policy, "rate_limited");
                return Ok(());
            }
        }
        let started = Instant::now();
        let rejoiner = match &grant.identity {
            Some(subject) => Rejoiner::Subject(subject.as_str().into()),
            None => Rejoiner::NameAt(Arc::clone(&name), self.client_ip),
        };
        if let Err(refused) = self.app.bans.admit(&room_id, &rejoiner, started) {
            self.signalling.join_done(Err(()));
            self.fail(ctx, refused);
            return Ok(());
        }
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
        let participant_id = self.id.clone();
        let joining = async move {
            let (room, accepted) = enter_room(&app, &room_id, me, events).await?;
            // In the room from here on: whatever stops this join before `on_joined`
            // takes over (a failed peer, the socket closing meanwhile) leaves it.
            let membership = Membership(Some((room.clone(), participant_id)));
            let media = &app.media;
            let publisher = media
                .new_peer(PeerTarget::Publisher, publisher_events)
                .await
                .map_err(|e| ProtocolError::Internal(e.to_string()))?;
            let subscriber = media
                .new_peer(PeerTarget::Subscriber, subscriber_events)
                .await
                .map_err(|e| ProtocolError::Internal(e.to_string()))?;
            Ok::<_, ProtocolError>((room_id, room, accepted, publisher, subscriber, membership))
        };
        ctx.wait(
            joining
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok((room_id, room, accepted, publisher, subscriber, mut membership)) => {
                        act.app.metrics.observe_join(started.elapsed());
                        act.signalling.join_done(Ok(&grant));
                        act.publisher = Some(Arc::new(publisher));
                        act.subscriber = Some(Arc::new(subscriber));
                        // The session's teardown leaves the room from now on.
                        membership.0 = None;
                        act.on_joined(room_id, room, name, rejoiner, accepted, ctx);
                    }
                    Err(e) => {
                        act.signalling.join_done(Err(()));
                        act.fail(ctx, e);
                    }
                }),
        );
        Ok(())
    }

    pub(super) fn on_joined(
        &mut self,
        room_id: RoomId,
        room: Addr<Room>,
        name: Arc<str>,
        rejoiner: Rejoiner,
        accepted: JoinAccepted,
        ctx: &mut Context<Self>,
    ) {
        self.span.record("room", tracing::field::display(&room_id));
        let _e = self.span.clone().entered();
        info!(name = %name, others = accepted.participants.len(), "joined");
        self.app
            .registry
            .set_joined(&self.id, room_id.clone(), name, rejoiner.clone());
        let config = Arc::clone(&self.app.config);
        let resume_token = self.issue_resume_token(ctx);
        self.send(
            ctx,
            &ServerMessage::Joined {
                protocol: PROTOCOL_VERSION,
                room: room_id.clone(),
                participant_id: self.id.clone(),
                participants: accepted.participants,
                ice_servers: crate::turn::ice_servers_for(
                    &config,
                    &self.id,
                    self.app.turn_provider.as_deref(),
                ),
                limits: Limits {
                    max_chat_bytes: config.limits.max_chat_bytes,
                    max_frame_bytes: config.limits.max_frame_bytes,
                },
                resume_token,
            },
        );
        // From here on every message is numbered and kept for a resume.
        self.replay = Some(Replay::default());
        self.room = Some(room);
        self.start_token_refresh(room_id, rejoiner, ctx);
        for track in accepted.tracks {
            self.subscribe(track, ctx);
        }
    }
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
        let room = app
            .registry
            .room_or_start(room_id, limits.max_rooms, |registration| {
                Room::new(
                    room_id,
                    limits.max_participants_per_room,
                    registration.entry,
                    registration.alive,
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
                app.registry.forget_room(room_id, &room);
                continue;
            }
        }
    }
    Err(ProtocolError::Internal("could not enter the room".into()))
}

/// A member of a room whose session does not own that yet: leaves the room when
/// dropped, unless emptied first.
struct Membership(Option<(Addr<Room>, plaza_protocol::ParticipantId)>);

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some((room, participant_id)) = self.0.take() {
            room.do_send(room::Leave { participant_id });
        }
    }
}
