//! A headless participant: speaks Plaza's protocol over a real WebSocket and sends and
//! receives real WebRTC media (webrtc-rs), like a browser tab without a screen. The
//! tests and the load generator use it.
//!
//! Media is synthetic (see `media`): VP8- and Opus-shaped packets stamped with a source
//! id, a counter and the send time. The publisher answers keyframe requests (PLI/FIR)
//! with a keyframe and records them, so tests can watch the server ask.
//!
//! # What a participant is
//!
//! A [`Participant`] is what a browser tab holds while in a room:
//!
//! - **One WebSocket** to the server, carrying JSON signalling. [`Participant::join`]
//!   sends `join` and waits for `joined` (or a refusal, [`ClientError::Refused`])
//!   before doing anything else, so the participant id, the members already present
//!   and the ICE servers are known up front. After that one task writes the socket
//!   (everything goes through an outbox channel, so callbacks never block on it) and
//!   one reads it (`signalling`).
//! - **A publisher connection** that *we* offer on: our audio and video tracks and the
//!   chat data channel. The server answers.
//! - **A subscriber connection** that *the server* offers on, whenever the room's
//!   tracks change: the reader applies the offer and sends back an answer. Remote
//!   tracks arrive here.
//!
//! ICE candidates are trickled both ways, tagged with the connection they belong to;
//! those that arrive before their connection's remote description are held back and
//! applied right after it.
//!
//! # The event log
//!
//! Everything that happens to a participant — server messages other than
//! offer/answer/candidate, chat messages, remote tracks appearing, connection state
//! changes, keyframe requests, candidates the server announced, the socket closing —
//! is appended, in order, to one [`Event`] log. Tests wait on it with
//! [`Participant::wait_for`], which checks the *whole* history each time something is
//! added, so an event that arrived before the test started waiting still counts.
//!
//! # Media
//!
//! Sending (`send`): each published track is fed by a pacing loop from `source` —
//! synthetic stamped packets, or a real recording (`source::Fixture`) for servers
//! that decode what they relay. The video track's RTCP is read for PLI/FIR: a request
//! is logged and makes the next frame a keyframe. What was sent is counted in the
//! [`SentLog`] ([`Participant::sent`]) and reported to the [`OnSent`] hook.
//!
//! Receiving (`receive`): each remote track gets a task reading its RTP. Every packet
//! is counted and passed to the [`OnPacket`] hook; with `track_stats` on it also
//! updates that track's [`RemoteTrackStats`]: whether the first packet started a
//! keyframe, the stamps seen (so loss is the gap between the smallest and largest
//! counter), relay latency (stamp send time to receipt, as sender and receiver share
//! a clock) and, with `record_payloads`, payload fingerprints to compare with what
//! the publisher sent. Counters change per packet, so tests poll them
//! ([`Participant::wait_media`]) rather than wait on events.
//!
//! # Layout
//!
//! `options` (what to join with), `events` (the event log, the counters and the state
//! shared with the tasks), `participant` (joining, step by step, and the handle tests
//! drive), `signalling` (the WebSocket), `send` and `receive` (media), `api` (the
//! webrtc-rs setup, public for other protocol adapters).

mod api;
mod events;
pub mod media;
mod options;
mod participant;
mod receive;
mod send;
mod signalling;
pub mod source;

pub use api::build_client_api;
pub use events::{Event, OfferHandling, RemoteTrackStats, SentLog, Step};
pub use options::{OnPacket, OnSent, ParticipantOptions, ReceivedPacket, VideoOptions};
pub use participant::Participant;

pub type ClientResult<T> = Result<T, ClientError>;

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error("server refused: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out waiting for {0}")]
    Timeout(String),
}
