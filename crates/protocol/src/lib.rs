//! # plaza-protocol: what a Plaza client and server say to each other
//!
//! Everything here is pure: no WebRTC, no actors, no sockets, no clock (time is an
//! argument). That is what lets the fuzz targets (`fuzz/`) build in a minute and drive
//! exactly the code the server runs on every client frame.
//!
//! - [`messages`]: the JSON signalling messages (`docs/protocol.md` is their prose).
//! - [`ids`]: typed identifiers (room, participant, track) and name validation.
//! - [`ProtocolError`]: every failure a client can cause, each with a stable code.
//! - [`close`]: the WebSocket close codes with a meaning of their own (a client
//!   that will resume).
//! - [`auth`]: signed room tokens (HS256 JWT) and what they grant.
//! - [`rate`]: token buckets and per-address windows.
//! - [`signalling`]: the per-session state machine: what a client frame means now,
//!   and the one action the session must carry out.
//! - `fuzzing` (feature `fuzzing`): the harnesses the fuzz targets and the corpus
//!   replay test share.

pub mod auth;
pub mod close;
pub mod error;
pub mod ids;
pub mod messages;
pub mod rate;
pub mod signalling;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use error::ProtocolError;
pub use ids::{ParticipantId, RoomId, TrackId};
pub use messages::*;
