//! Messages to and from the `Room` actor.

use std::sync::Arc;

use actix::{Message, Recipient};

use plaza_protocol::{MediaKind, ParticipantId, ParticipantInfo, ProtocolError, TrackId};

use crate::rtc::UpTrack;

/// What a room tells each member's session.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub enum RoomEvent {
    ParticipantJoined(ParticipantInfo),
    ParticipantUpdated(ParticipantInfo),
    ParticipantLeft(ParticipantId),
    /// A track to subscribe to. Carries the up track itself: subscribing is done by the
    /// subscriber's session on the media plane, not by the room.
    TrackPublished(Arc<UpTrack>),
    TrackUnpublished {
        track_id: TrackId,
        participant_id: ParticipantId,
    },
    /// A chat message, already serialised once for every receiver.
    Chat(Arc<str>),
    /// The room was closed by an operator, or the participant was kicked.
    Closed(ProtocolError),
}

pub struct JoinAccepted {
    /// The other members, in join order.
    pub participants: Vec<ParticipantInfo>,
    /// Every track already published in the room.
    pub tracks: Vec<Arc<UpTrack>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefused {
    /// The room is closing (its last member just left): start a new one and retry.
    Closing,
    Refused(ProtocolError),
}

#[derive(Message)]
#[rtype(result = "Result<JoinAccepted, JoinRefused>")]
pub struct Join {
    pub participant: ParticipantInfo,
    pub events: Recipient<RoomEvent>,
}

/// Idempotent: leaving twice, or a room that is already gone, is fine.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub participant_id: ParticipantId,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub participant_id: ParticipantId,
    pub track: Arc<UpTrack>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unpublish {
    pub participant_id: ParticipantId,
    pub track_id: TrackId,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetMuted {
    pub participant_id: ParticipantId,
    pub kind: MediaKind,
    pub muted: bool,
}

/// A chat message to relay; `to` for a direct message.
#[derive(Message)]
#[rtype(result = "Result<(), ProtocolError>")]
pub struct Chat {
    pub from: ParticipantId,
    pub text: String,
    pub to: Option<ParticipantId>,
}

/// A description of the room, for the admin API and tests.
#[derive(Message)]
#[rtype(result = "RoomSnapshot")]
pub struct Describe;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomSnapshot {
    pub participants: Vec<ParticipantInfo>,
    pub tracks: Vec<plaza_protocol::TrackInfo>,
}

/// An operator removes one participant (admin API).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Kick {
    pub participant_id: ParticipantId,
    pub reason: String,
}

/// An operator closes the room: every member is told and disconnected (admin API).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseRoom {
    pub reason: String,
}
