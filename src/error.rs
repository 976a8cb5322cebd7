//! Server-side failures: configuration, I/O, the WebRTC stack. What a client causes is
//! a [`ProtocolError`] instead (it goes back to the client as an `error` frame).

use thiserror::Error;

pub use plaza_protocol::ProtocolError;

/// Server-side failures: configuration, I/O, the WebRTC stack.
#[derive(Debug, Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    /// The WebRTC stack refused or failed a call (its own error, as text: only the
    /// media module names webrtc-rs types).
    #[error("webrtc: {0}")]
    WebRtc(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("media runtime task failed: {0}")]
    Task(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
