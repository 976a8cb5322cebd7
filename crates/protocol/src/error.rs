//! `ProtocolError`: everything a client can cause. Each has a stable `code` that goes
//! back in an `error {code, message}` frame (see docs/protocol.md).

use thiserror::Error;

/// A failure caused by what a client sent or did. Never fatal to the server; other
/// participants and rooms never notice.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("{0}")]
    BadJson(String),
    #[error("{0}")]
    BadMessage(String),
    #[error("{0}")]
    UnknownType(String),
    #[error("send join first")]
    NotJoined,
    #[error("this connection has already joined a room")]
    AlreadyJoined,
    #[error("{0}")]
    InvalidRoom(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    BadSdp(String),
    #[error("{0}")]
    BadCandidate(String),
    #[error("{0}")]
    OutOfOrder(String),
    #[error("{0}")]
    MessageTooLarge(String),
    #[error("room is full ({0} participants)")]
    RoomFull(usize),
    #[error("the server has too many rooms ({0})")]
    TooManyRooms(usize),
    #[error("too many tracks published (limit {0})")]
    TooManyTracks(usize),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    PeerFailed(String),
    #[error("the server is shutting down")]
    ServerShutdown,
    #[error("{0}")]
    Kicked(String),
    /// An operator closed the room for a while (admin API).
    #[error("{0}")]
    RoomClosed(String),
    #[error("{0}")]
    ResumeFailed(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProtocolError {
    /// The stable, documented code sent to the client.
    pub fn code(&self) -> &'static str {
        use ProtocolError::*;
        match self {
            BadJson(_) => "bad_json",
            BadMessage(_) => "bad_message",
            UnknownType(_) => "unknown_type",
            NotJoined => "not_joined",
            AlreadyJoined => "already_joined",
            InvalidRoom(_) => "invalid_room",
            InvalidName(_) => "invalid_name",
            BadSdp(_) => "bad_sdp",
            BadCandidate(_) => "bad_candidate",
            OutOfOrder(_) => "out_of_order",
            MessageTooLarge(_) => "message_too_large",
            RoomFull(_) => "room_full",
            TooManyRooms(_) => "too_many_rooms",
            TooManyTracks(_) => "too_many_tracks",
            Unauthorized(_) => "unauthorized",
            Forbidden(_) => "forbidden",
            RateLimited(_) => "rate_limited",
            PeerFailed(_) => "peer_failed",
            ServerShutdown => "server_shutdown",
            Kicked(_) => "kicked",
            RoomClosed(_) => "room_closed",
            ResumeFailed(_) => "resume_failed",
            Internal(_) => "internal",
        }
    }

    /// Whether the connection cannot go on after this error. The session sends the
    /// error frame, then closes the socket.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ProtocolError::PeerFailed(_)
                | ProtocolError::ServerShutdown
                | ProtocolError::Kicked(_)
                | ProtocolError::RoomClosed(_)
                | ProtocolError::RoomFull(_)
                | ProtocolError::TooManyRooms(_)
                | ProtocolError::Unauthorized(_)
        )
    }

    /// Every code, for docs and metrics (kept in sync with `code` by a unit test).
    pub const ALL_CODES: &'static [&'static str] = &[
        "bad_json",
        "bad_message",
        "unknown_type",
        "not_joined",
        "already_joined",
        "invalid_room",
        "invalid_name",
        "bad_sdp",
        "bad_candidate",
        "out_of_order",
        "message_too_large",
        "room_full",
        "too_many_rooms",
        "too_many_tracks",
        "unauthorized",
        "forbidden",
        "rate_limited",
        "peer_failed",
        "server_shutdown",
        "kicked",
        "room_closed",
        "resume_failed",
        "internal",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_codes_listed() {
        let samples = [
            ProtocolError::BadJson(String::new()),
            ProtocolError::BadMessage(String::new()),
            ProtocolError::UnknownType(String::new()),
            ProtocolError::NotJoined,
            ProtocolError::AlreadyJoined,
            ProtocolError::InvalidRoom(String::new()),
            ProtocolError::InvalidName(String::new()),
            ProtocolError::BadSdp(String::new()),
            ProtocolError::BadCandidate(String::new()),
            ProtocolError::OutOfOrder(String::new()),
            ProtocolError::MessageTooLarge(String::new()),
            ProtocolError::RoomFull(0),
            ProtocolError::TooManyRooms(0),
            ProtocolError::TooManyTracks(0),
            ProtocolError::Unauthorized(String::new()),
            ProtocolError::Forbidden(String::new()),
            ProtocolError::RateLimited(String::new()),
            ProtocolError::PeerFailed(String::new()),
            ProtocolError::ServerShutdown,
            ProtocolError::Kicked(String::new()),
            ProtocolError::RoomClosed(String::new()),
            ProtocolError::ResumeFailed(String::new()),
            ProtocolError::Internal(String::new()),
        ];
        let codes: Vec<_> = samples.iter().map(|e| e.code()).collect();
        assert_eq!(codes, ProtocolError::ALL_CODES);
    }
}
