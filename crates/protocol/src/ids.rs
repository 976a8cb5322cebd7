//! Typed identifiers. A bare `String` can be any of these; the types keep a room name
//! from ever being used where a participant id was meant.

use std::fmt;
use std::sync::Arc;

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::ProtocolError;

fn random_token(prefix: &str) -> String {
    let tail: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(12)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }
    };
}

string_id!(
    /// A participant: one WebSocket session, from connect to close. Minted by the server.
    ParticipantId
);
string_id!(
    /// A room, named by its users (`?room=demo`). Validated on join.
    RoomId
);
string_id!(
    /// A published track (an up track). Minted by the server; also the down tracks' id,
    /// so a browser's `track.id` on the subscribe side names the published track.
    TrackId
);

impl ParticipantId {
    pub fn random() -> Self {
        Self(random_token("P").into())
    }

    /// Wraps an id a client sent (e.g. the target of a direct message). It is only ever
    /// compared against ids the server minted, so no validation is needed.
    pub fn from_client(s: &str) -> Self {
        Self(s.into())
    }
}

impl TrackId {
    pub fn random() -> Self {
        Self(random_token("T").into())
    }
}

/// Longest room name accepted.
pub const MAX_ROOM_LEN: usize = 64;

impl RoomId {
    /// Room names go into URLs, logs and metrics labels, so they are kept to a safe
    /// alphabet: ASCII letters, digits, `-`, `_` and `.`, 1..=64 characters.
    pub fn parse(s: &str, max_len: usize) -> Result<Self, ProtocolError> {
        let ok = !s.is_empty()
            && s.len() <= max_len
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(ProtocolError::InvalidRoom(format!(
                "room must be 1-{max_len} characters of A-Z a-z 0-9 - _ ."
            )))
        }
    }
}

/// A display name as shown to the other members: trimmed, 1..=max_len characters,
/// no control characters (they would break logs and other people's UIs).
pub fn parse_display_name(s: &str, max_len: usize) -> Result<Arc<str>, ProtocolError> {
    let name = s.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > max_len || name.chars().any(char::is_control) {
        return Err(ProtocolError::InvalidName(format!(
            "name must be 1-{max_len} characters without control characters"
        )));
    }
    Ok(name.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(RoomId::parse("demo", 64).is_ok());
        assert!(RoomId::parse("team-a_1.x", 64).is_ok());
        assert!(RoomId::parse("", 64).is_err());
        assert!(RoomId::parse("a b", 64).is_err());
        assert!(RoomId::parse("../etc", 64).is_err());
        assert!(RoomId::parse(&"a".repeat(65), 64).is_err());
    }

    #[test]
    fn display_names() {
        assert_eq!(&*parse_display_name("  Zoë ", 64).unwrap(), "Zoë");
        assert!(parse_display_name("   ", 64).is_err());
        assert!(parse_display_name("a\u{0007}b", 64).is_err());
        assert!(parse_display_name(&"é".repeat(64), 64).is_ok());
        assert!(parse_display_name(&"é".repeat(65), 64).is_err());
    }

    #[test]
    fn minted_ids_are_distinct() {
        assert_ne!(ParticipantId::random(), ParticipantId::random());
        assert_ne!(TrackId::random(), TrackId::random());
    }
}
