//! The `Room` actor: who is in the room, what they publish, who gets what, and the chat
//! relay. Policy only; packets never come here (they go from an up track's read loop
//! straight to the down tracks).
//!
//! A room starts on its first join and stops when its last member leaves. The decision
//! to close is taken inside a handler, so it is ordered with every `Join`: a join that
//! arrives after it gets `JoinRefused::Closing` and the session starts a fresh room.

pub mod messages;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tracing::{debug, info, info_span, Span};

pub use self::messages::*;
use plaza_protocol::{ChatOut, MediaKind, ParticipantId, ParticipantInfo, ProtocolError, RoomId};

use crate::guard::{OnDrop, TaskGuard};
use crate::rtc::UpTrack;

struct Member {
    info: ParticipantInfo,
    events: Recipient<RoomEvent>,
    tracks: Vec<Arc<UpTrack>>,
}

pub struct Room {
    max_participants: usize,
    /// In join order.
    members: Vec<Member>,
    closing: bool,
    span: Span,
    /// Keeps this room in the registry's map; run when the room decides to close (and
    /// at the latest when the actor is dropped).
    registered: OnDrop,
    /// Counts this actor in `Registry::room_actors` until it is dropped.
    _alive: TaskGuard,
}

impl Room {
    /// A room that stays registered as long as `registered` lives (see
    /// `Registry::room_or_start`, which hands both guards out).
    pub fn new(id: &RoomId, max_participants: usize, registered: OnDrop, alive: TaskGuard) -> Self {
        Self {
            max_participants,
            members: Vec::new(),
            closing: false,
            span: info_span!("room", room = %id),
            registered,
            _alive: alive,
        }
    }

    fn member(&mut self, id: &ParticipantId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| &m.info.id == id)
    }

    /// Sends an event to every member but one.
    fn broadcast(&self, except: &ParticipantId, event: RoomEvent) {
        for m in self.members.iter().filter(|m| &m.info.id != except) {
            m.events.do_send(event.clone());
        }
    }

    fn remove_member(&mut self, id: &ParticipantId, ctx: &mut Context<Self>) {
        let Some(pos) = self.members.iter().position(|m| &m.info.id == id) else {
            return;
        };
        let member = self.members.remove(pos);
        for track in &member.tracks {
            track.stop();
            self.broadcast(
                id,
                RoomEvent::TrackUnpublished {
                    track_id: track.id.clone(),
                    participant_id: id.clone(),
                },
            );
        }
        self.broadcast(id, RoomEvent::ParticipantLeft(id.clone()));
        info!(participant = %id, members = self.members.len(), "left");
        if self.members.is_empty() {
            self.close(ctx);
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        // Out of the map now, in this handler: a join already queued here is refused as
        // `Closing`, and its session starts a fresh room.
        self.registered.run();
        ctx.stop();
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        info!("room started");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        // Members still here when the actor stops (system shutdown): their tracks end.
        for m in &self.members {
            for t in &m.tracks {
                t.stop();
            }
        }
        self.registered.run();
        info!("room stopped");
    }
}

impl Handler<Join> for Room {
    type Result = MessageResult<Join>;

    fn handle(&mut self, msg: Join, _ctx: &mut Self::Context) -> Self::Result {
        let _e = self.span.clone().entered();
        if self.closing {
            return MessageResult(Err(JoinRefused::Closing));
        }
        if self.members.len() >= self.max_participants {
            return MessageResult(Err(JoinRefused::Refused(ProtocolError::RoomFull(
                self.max_participants,
            ))));
        }
        let participants = self.members.iter().map(|m| m.info.clone()).collect();
        let tracks = self
            .members
            .iter()
            .flat_map(|m| m.tracks.iter().cloned())
            .collect();
        let id = msg.participant.id.clone();
        self.broadcast(&id, RoomEvent::ParticipantJoined(msg.participant.clone()));
        self.members.push(Member {
            info: msg.participant,
            events: msg.events,
            tracks: Vec::new(),
        });
        info!(participant = %id, members = self.members.len(), "joined");
        MessageResult(Ok(JoinAccepted {
            participants,
            tracks,
        }))
    }
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        self.remove_member(&msg.participant_id, ctx);
    }
}

impl Handler<Publish> for Room {
    type Result = ();

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        let Some(member) = self.member(&msg.participant_id) else {
            // Published after leaving (a race with teardown): nobody will subscribe.
            msg.track.stop();
            return;
        };
        member.tracks.push(Arc::clone(&msg.track));
        info!(participant = %msg.participant_id, track = %msg.track.id, codec = %msg.track.mime_type(), "track published");
        self.broadcast(&msg.participant_id, RoomEvent::TrackPublished(msg.track));
    }
}

impl Handler<Unpublish> for Room {
    type Result = ();

    fn handle(&mut self, msg: Unpublish, _ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        let Some(member) = self.member(&msg.participant_id) else {
            return;
        };
        let Some(pos) = member.tracks.iter().position(|t| t.id == msg.track_id) else {
            return;
        };
        let track = member.tracks.remove(pos);
        track.stop();
        info!(participant = %msg.participant_id, track = %msg.track_id, "track unpublished");
        self.broadcast(
            &msg.participant_id,
            RoomEvent::TrackUnpublished {
                track_id: msg.track_id,
                participant_id: msg.participant_id.clone(),
            },
        );
    }
}

impl Handler<SetMuted> for Room {
    type Result = ();

    fn handle(&mut self, msg: SetMuted, _ctx: &mut Self::Context) {
        let Some(member) = self.member(&msg.participant_id) else {
            return;
        };
        let flag = match msg.kind {
            MediaKind::Audio => &mut member.info.audio_muted,
            MediaKind::Video => &mut member.info.video_muted,
        };
        if *flag == msg.muted {
            return;
        }
        *flag = msg.muted;
        let info = member.info.clone();
        self.broadcast(&msg.participant_id, RoomEvent::ParticipantUpdated(info));
    }
}

impl Handler<Chat> for Room {
    type Result = Result<(), ProtocolError>;

    fn handle(&mut self, msg: Chat, _ctx: &mut Self::Context) -> Self::Result {
        let _e = self.span.clone().entered();
        let Some(sender) = self.members.iter().find(|m| m.info.id == msg.from) else {
            return Err(ProtocolError::NotJoined);
        };
        let out = ChatOut {
            from: msg.from.clone(),
            name: sender.info.name.clone(),
            text: msg.text,
            to: msg.to.clone(),
            ts: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        // Serialised once, shared by every receiver.
        let json: Arc<str> = serde_json::to_string(&out)
            .map_err(|e| ProtocolError::Internal(e.to_string()))?
            .into();
        match &msg.to {
            Some(to) => {
                let target = self
                    .members
                    .iter()
                    .find(|m| &m.info.id == to && m.info.id != msg.from)
                    .ok_or_else(|| {
                        ProtocolError::BadMessage(format!("no participant {to} in this room"))
                    })?;
                target.events.do_send(RoomEvent::Chat(json));
            }
            None => self.broadcast(&msg.from, RoomEvent::Chat(json)),
        }
        debug!(from = %msg.from, direct = msg.to.is_some(), "chat relayed");
        Ok(())
    }
}

impl Handler<Describe> for Room {
    type Result = MessageResult<Describe>;

    fn handle(&mut self, _msg: Describe, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(RoomSnapshot {
            participants: self.members.iter().map(|m| m.info.clone()).collect(),
            tracks: self
                .members
                .iter()
                .flat_map(|m| m.tracks.iter().map(|t| t.info()))
                .collect(),
        })
    }
}

impl Handler<Kick> for Room {
    type Result = bool;

    /// Tells the participant's session, which closes; its `Leave` follows as for any
    /// departure, so the others are told the usual way.
    fn handle(&mut self, msg: Kick, _ctx: &mut Self::Context) -> bool {
        let _e = self.span.clone().entered();
        match self
            .members
            .iter()
            .find(|m| m.info.id == msg.participant_id)
        {
            Some(m) => {
                info!(participant = %msg.participant_id, reason = %msg.reason, "kicked");
                m.events
                    .do_send(RoomEvent::Closed(ProtocolError::Kicked(msg.reason)));
                true
            }
            None => false,
        }
    }
}

impl Handler<CloseRoom> for Room {
    type Result = ();

    fn handle(&mut self, msg: CloseRoom, _ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        info!(reason = %msg.reason, members = self.members.len(), "closed by an operator");
        for m in &self.members {
            m.events
                .do_send(RoomEvent::Closed(ProtocolError::Kicked(msg.reason.clone())));
        }
    }
}
