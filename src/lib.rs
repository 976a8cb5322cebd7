//! # Plaza: a small, fast SFU for browser video-call rooms
//!
//! Browsers join a named **room** over a WebSocket (`/ws`, JSON, see
//! `docs/protocol.md`) and exchange audio, video and chat with everyone else in it.
//! Plaza is a Selective Forwarding Unit: it never decodes media. It receives each
//! participant's RTP once and forwards it to every other member.
//!
//! ## Two planes
//!
//! **Control plane: actix actors** (slow, stateful, ordered).
//! - [`session::WsSocket`], one per WebSocket, thin: admission (Origin, connection
//!   caps, the client's address behind trusted proxies, all checked before the
//!   upgrade), the heartbeat, frames in and out, and `resume` as a first frame.
//! - [`session::WsSession`], one per participant, behind its socket: parses client
//!   messages, owns the participant's two peer connections, turns webrtc-rs callbacks
//!   into actor messages (`do_send` only), and sends server messages through the
//!   socket. It outlives a socket that drops without a close frame for
//!   `session.resume_grace`, so a client on a new network resumes (same participant,
//!   tracks and subscriptions) and restarts ICE instead of joining again. With room
//!   tokens, it sends its client a fresh token before the current one expires.
//! - [`room::Room`], one per room, started on first join and stopped when the last
//!   member leaves: membership, published tracks, who subscribes to what, chat relay.
//! - [`registry::Registry`] (`dashmap`): every live connection and room. Entries are
//!   removed by guards their owners hold ([`guard`]), so teardown cannot be forgotten.
//!   It knows a session only as what stops it and a room as its address, so neither
//!   imports it back: the modules form no circle.
//! - [`state::AppState`]: what every handler and session shares (config, registry,
//!   media plane, token verifier, counters).
//!
//! **Media plane: tasks, not mailboxes** (fast, lock-light), all in [`rtc`], the only
//! module that names a webrtc-rs type: sessions see [`rtc::PeerEvent`] and Plaza's own
//! handles.
//! - Each published track ([`rtc::up_track::UpTrack`]) has one task that reads its RTP
//!   and writes each packet to every subscriber's [`rtc::down_track::DownTrack`]. The
//!   subscriber list is copy-on-write, so the loop never waits on the control plane.
//! - A down track's [`rtc::forwarder::Forwarder`] (pure, unit-tested, benchmarked)
//!   decides per packet: wait for a keyframe, keep or offset numbering.
//! - A new subscriber's keyframe request (PLI) leaves the moment its down track can
//!   send; requests merge while one is in flight, are retried, and are capped per track
//!   ([`rtc::keyframe`]); subscribers' own PLIs take the same path, each subscriber
//!   within a budget of its own.
//! - What a subscriber's RTCP says is handled per down track, by pure policies: its
//!   NACKs are answered from what was sent to it within a retransmission budget
//!   ([`rtc::retransmit`]), and its loss pauses that video for it until a probe finds
//!   the link better ([`rtc::feedback`]): a slow subscriber costs only itself.
//! - Subscriber m-lines are slots: a track that leaves frees its transceiver for the
//!   next track of its kind, so SDP size follows what a participant receives now.
//! - Media runs on its own multi-thread Tokio runtime ([`rtc::MediaPlane`]), not on
//!   actix-web's single-thread workers; every webrtc-rs call goes through it.
//!
//! ## Why two peer connections per participant
//! The browser offers on its *publisher* connection; the server offers on the
//! *subscriber* connection. Each connection has one offerer, so offers never collide
//! (no glare) and neither side needs "perfect negotiation" rollbacks. The server keeps
//! one subscriber offer in flight and folds changes made meanwhile into the next one.
//!
//! ## The workspace
//! This crate is the server. Beside it (docs/decisions.md §9): `plaza-protocol` (the
//! messages, ids, errors, tokens and the pure signalling state machine every client
//! frame goes through), `plaza-rtc` (what the server and the test client agree on about
//! WebRTC), `plaza-client` (a headless participant) and `plaza-tools` (the in-process
//! test server, `plaza-load`, `plaza-soak`).
//!
//! ## Operations
//! [`doctor`] is `plaza doctor`: it checks a deployment from its host with the server's
//! own configuration (announced addresses, NAT 1:1 against STUN, TURN allocations per
//! transport, the media port from a TURN relay); its STUN/TURN probes live in
//! [`rtc::probe`], like every other webrtc-rs call.
//!
//! ## Entry points
//! [`run`] serves a [`config::Config`] on a listener until a shutdown future resolves
//! (inside an actix system); [`Plaza`] does the same with handles to the registry and
//! the media counters, for tests (`plaza_tools::testing::TestServer` starts one on port
//! 0). Every setting is declared once in [`config`].

pub mod admin;
pub mod admission;
pub mod bans;
pub mod client_addr;
pub mod config;
pub mod doctor;
pub mod error;
pub mod guard;
pub mod histogram;
pub mod ice_addresses;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod room;
pub mod rtc;
pub mod server;
pub mod session;
pub mod state;
pub mod turn;

pub use config::Config;
pub use error::{Error, ProtocolError, Result};
pub use server::{run, Plaza};
