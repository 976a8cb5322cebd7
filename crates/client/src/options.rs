//! What a participant joins with: the room, what it publishes, how it gathers
//! candidates, and the hooks a load generator attaches to every packet.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use webrtc::rtp::header::Header;

use crate::source::{Fixture, SentPacket};
use plaza_protocol::{IceServer, MediaKind};

#[derive(Debug, Clone)]
pub struct VideoOptions {
    pub fps: u32,
    pub bitrate_bps: u32,
    /// Send a keyframe this often even unasked (real encoders do, rarely). `None`:
    /// only the first frame and frames answering a keyframe request are keyframes.
    pub keyframe_interval: Option<Duration>,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            fps: 30,
            bitrate_bps: 500_000,
            keyframe_interval: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ParticipantOptions {
    /// `ws://host:port/ws`
    pub url: String,
    pub room: String,
    pub name: String,
    pub token: Option<String>,
    pub audio: bool,
    pub video: Option<VideoOptions>,
    /// Local addresses to gather candidates on (loopback in tests).
    pub ice_ips: Vec<IpAddr>,
    /// Use only relayed (TURN) candidates, like a client behind a strict firewall.
    pub relay_only: bool,
    /// Replace the `ice_servers` from `joined` (e.g. to test wrong TURN credentials).
    pub ice_servers_override: Option<Vec<IceServer>>,
    /// Keep the hash of every payload sent and received (tests compare them).
    pub record_payloads: bool,
    /// Publish this real recording instead of synthetic stamped packets (for servers
    /// that decode what they relay). `video` still says whether video is sent.
    pub fixture: Option<Arc<Fixture>>,
    /// Called for every media packet received, on the receiving task: a load generator
    /// keeps its own counters here instead of polling `remote_tracks`.
    pub on_packet: Option<OnPacket>,
    /// Called for every media packet just before it is sent.
    pub on_sent: Option<OnSent>,
    /// Keep per-track counters and latency samples (`remote_tracks`). A load generator
    /// with its own `on_packet` turns this off to save a lock and a growing vector per
    /// packet.
    pub track_stats: bool,
}

/// Called for every media packet a subscriber receives (see `ParticipantOptions`).
#[derive(Clone)]
pub struct OnPacket(pub Arc<dyn Fn(&ReceivedPacket<'_>) + Send + Sync>);

/// Called for every media packet a publisher sends (see `ParticipantOptions`).
#[derive(Clone)]
pub struct OnSent(pub Arc<dyn Fn(&SentPacket<'_>) + Send + Sync>);

impl std::fmt::Debug for OnPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnPacket(..)")
    }
}

impl std::fmt::Debug for OnSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnSent(..)")
    }
}

/// One media packet as a subscriber received it.
pub struct ReceivedPacket<'a> {
    /// The publisher's participant id (the stream id).
    pub publisher: &'a str,
    pub track_id: &'a str,
    pub kind: MediaKind,
    pub header: &'a Header,
    pub payload: &'a [u8],
    pub at: Instant,
}

impl ParticipantOptions {
    pub fn new(url: impl Into<String>, room: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            room: room.into(),
            name: name.into(),
            token: None,
            audio: true,
            video: Some(VideoOptions::default()),
            ice_ips: vec![IpAddr::from([127, 0, 0, 1])],
            relay_only: false,
            ice_servers_override: None,
            record_payloads: false,
            fixture: None,
            on_packet: None,
            on_sent: None,
            track_stats: true,
        }
    }
}
