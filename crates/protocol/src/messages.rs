//! The signalling protocol (docs/protocol.md is the prose version of this file).
//!
//! JSON text frames over the WebSocket at `/ws`, tagged by `type`. The types derive both
//! `Serialize` and `Deserialize` so the server and the Rust client (`crate::client`)
//! share one definition.

use serde::{Deserialize, Serialize};

use crate::ids::{ParticipantId, RoomId, TrackId};
use crate::ProtocolError;

/// Bumped on any incompatible change; sent in `joined`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The label of the reliable, ordered data channel the client opens on its publisher
/// peer connection; chat travels on it in both directions.
pub const CHAT_CHANNEL_LABEL: &str = "chat";

/// Which of the participant's two peer connections a description or candidate is for.
/// `publisher`: the browser sends media, the browser offers. `subscriber`: the server
/// sends media, the server offers. Two connections mean offers never collide (no glare).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerTarget {
    Publisher,
    Subscriber,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

/// An ICE candidate exactly as the browser's `RTCIceCandidate.toJSON()` shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// What a client may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Join {
        room: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    Offer {
        target: PeerTarget,
        sdp: String,
    },
    Answer {
        target: PeerTarget,
        sdp: String,
    },
    /// `candidate: null` means end of candidates.
    Candidate {
        target: PeerTarget,
        candidate: Option<IceCandidate>,
    },
    Mute {
        kind: MediaKind,
        muted: bool,
    },
    Leave {},
    Ping {},
    /// The first message on a new socket: take over the participant the resume token
    /// was issued for (its peer connections, tracks and subscriptions live on).
    Resume {
        token: String,
        /// How many server messages the client received since `joined` (`resumed`
        /// not counted): the server sends again the ones after that.
        received: u64,
    },
    /// The client's path changed or died: re-offer the subscriber connection with new
    /// ICE credentials (the client restarts its publisher connection itself).
    RestartIce {},
}

const CLIENT_TYPES: &[&str] = &[
    "join",
    "offer",
    "answer",
    "candidate",
    "mute",
    "leave",
    "ping",
    "resume",
    "restart_ice",
];

impl ClientMessage {
    /// Decodes one text frame, telling malformed JSON (`bad_json`), an unknown `type`
    /// (`unknown_type`) and a known type with wrong fields (`bad_message`) apart, so a
    /// client developer sees at once what is wrong.
    pub fn decode(text: &str) -> Result<Self, ProtocolError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ProtocolError::BadJson(e.to_string()))?;
        let ty = value
            .get("type")
            .ok_or_else(|| ProtocolError::BadMessage("missing field `type`".into()))?
            .as_str()
            .ok_or_else(|| ProtocolError::BadMessage("`type` must be a string".into()))?;
        if !CLIENT_TYPES.contains(&ty) {
            let shown: String = ty.chars().take(32).collect();
            return Err(ProtocolError::UnknownType(format!(
                "unknown message type {shown:?}"
            )));
        }
        serde_json::from_value(value).map_err(|e| ProtocolError::BadMessage(e.to_string()))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Candidate { .. } => "candidate",
            ClientMessage::Mute { .. } => "mute",
            ClientMessage::Leave {} => "leave",
            ClientMessage::Ping {} => "ping",
            ClientMessage::Resume { .. } => "resume",
            ClientMessage::RestartIce {} => "restart_ice",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub name: String,
    pub audio_muted: bool,
    pub video_muted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Also the `id` of the track the subscriber receives.
    pub id: TrackId,
    /// Also the `id` of the media stream the subscriber receives.
    pub participant_id: ParticipantId,
    pub kind: MediaKind,
    /// The negotiated codec, e.g. `video/VP8`.
    pub codec: String,
}

/// One entry of the browser's `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        protocol: u32,
        room: RoomId,
        participant_id: ParticipantId,
        /// The other members, not including the receiver.
        participants: Vec<ParticipantInfo>,
        ice_servers: Vec<IceServer>,
        limits: Limits,
        /// Resumes this participant on a new socket (`resume`); absent when the
        /// server does not keep participants whose socket dropped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    /// A `resume` went through: the participant is back on this socket. The token is
    /// single-use: the next resume needs this new one.
    Resumed {
        participant_id: ParticipantId,
        resume_token: String,
        /// How many client messages the server received since `joined`: the client
        /// sends again the ones after that.
        received: u64,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
    },
    TrackPublished {
        track: TrackInfo,
    },
    TrackUnpublished {
        track_id: TrackId,
        participant_id: ParticipantId,
    },
    /// The server stopped (`paused: true`) or started again (`false`) sending this
    /// participant a video it subscribes to, because the participant's link lost too
    /// much of it (docs/protocol.md, "Slow links"). Its audio goes on.
    VideoPaused {
        track_id: TrackId,
        paused: bool,
    },
    Offer {
        target: PeerTarget,
        sdp: String,
    },
    Answer {
        target: PeerTarget,
        sdp: String,
    },
    Candidate {
        target: PeerTarget,
        candidate: Option<IceCandidate>,
    },
    Error {
        code: String,
        message: String,
    },
    Pong,
    /// A fresh room token for this participant (servers with `auth.secret`), sent before
    /// the current one expires: same claims, a later `exp`. A client rejoining (a new
    /// `join` after its session ended) uses the latest one.
    Token {
        token: String,
        /// The token's `exp`, Unix seconds.
        expires_at: u64,
    },
}

/// Limits a client should respect, announced in `joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_chat_bytes: usize,
    pub max_frame_bytes: usize,
}

impl ServerMessage {
    pub fn error(e: &ProtocolError) -> Self {
        ServerMessage::Error {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).expect("server messages serialise")
    }
}

/// A chat message as the client sends it on the `chat` data channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatIn {
    pub text: String,
    /// A participant id for a direct message; absent for the whole room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ParticipantId>,
}

/// A chat message as the server relays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatOut {
    pub from: ParticipantId,
    pub name: String,
    pub text: String,
    /// Set on a direct message (the receiver's own id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ParticipantId>,
    /// Server time the message was relayed, Unix milliseconds.
    pub ts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_join() {
        let m = ClientMessage::decode(r#"{"type":"join","room":"demo","name":"Ann"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Join {
                room: "demo".into(),
                name: "Ann".into(),
                token: None
            }
        );
    }

    #[test]
    fn decode_errors_are_told_apart() {
        let code = |s: &str| ClientMessage::decode(s).unwrap_err().code();
        assert_eq!(code("{not json"), "bad_json");
        assert_eq!(code("[1,2]"), "bad_message");
        assert_eq!(code(r#"{"room":"x"}"#), "bad_message");
        assert_eq!(code(r#"{"type":7}"#), "bad_message");
        assert_eq!(code(r#"{"type":"dance"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"join","room":"x"}"#), "bad_message");
        assert_eq!(
            code(r#"{"type":"offer","target":"sideways","sdp":"v=0"}"#),
            "bad_message"
        );
        assert_eq!(code(r#"{"type":"ping","extra":1}"#), "bad_message");
    }

    #[test]
    fn candidate_matches_browser_json() {
        let m = ClientMessage::decode(
            r#"{"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abc"}}"#,
        )
        .unwrap();
        let ClientMessage::Candidate { target, candidate } = m else {
            panic!("not a candidate")
        };
        assert_eq!(target, PeerTarget::Publisher);
        let c = candidate.unwrap();
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert_eq!(c.sdp_mline_index, Some(0));
        let end =
            ClientMessage::decode(r#"{"type":"candidate","target":"subscriber","candidate":null}"#)
                .unwrap();
        assert!(matches!(
            end,
            ClientMessage::Candidate {
                candidate: None,
                ..
            }
        ));
    }

    #[test]
    fn server_messages_round_trip() {
        let m = ServerMessage::TrackPublished {
            track: TrackInfo {
                id: TrackId::random(),
                participant_id: ParticipantId::random(),
                kind: MediaKind::Video,
                codec: "video/VP8".into(),
            },
        };
        let json = m.to_json();
        assert!(json.starts_with(r#"{"type":"track_published""#));
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), m);
        let e = ServerMessage::error(&ProtocolError::NotJoined).to_json();
        assert_eq!(
            e,
            r#"{"type":"error","code":"not_joined","message":"send join first"}"#
        );
    }
}
