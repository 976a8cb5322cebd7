//! # plaza-rtc: what Plaza's server and its headless client agree on about WebRTC
//!
//! Both ends of a Plaza test call are webrtc-rs peers, and they must negotiate the same
//! way a browser and the server do: the same codecs with the same RTCP feedback, the
//! same interceptors, the same ICE tuning. Declaring that once here keeps the client
//! honest (it cannot quietly negotiate something the server would not) and keeps
//! actix and the rest of the server out of the client's dependency tree.
//!
//! - [`codec`]: the codecs Plaza forwards, and keyframe detection on RTP payloads.
//! - [`interceptors`]: the RTCP/NACK chain, with a short NACK history (and no NACK
//!   responder where the server answers NACKs itself).
//! - [`tune_ice`]: ICE settings for fast nomination and no mDNS.
//! - [`tune_srtp`]: an SRTP replay window that accepts every retransmission the NACK
//!   generator asks for.

pub mod codec;

use std::time::Duration;

use webrtc::api::interceptor_registry::{configure_rtcp_reports, configure_twcc_receiver_only};
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::interceptor::registry::Registry;

pub use codec::{register_codecs, PayloadFormat};

/// Packets each sender keeps to answer NACKs: 512 (2^9) is about 3 s of 1.5 Mbit/s video,
/// longer than any retransmission is still useful. webrtc-rs keeps 8192 by default,
/// which pinned about 10 MB of payloads per published video track.
const NACK_HISTORY_LOG2: u8 = 9;

/// How far back the NACK generator looks for lost packets: 1024 (2^(4+6)) packets, about
/// 7 s of 1.5 Mbit/s video. A packet further back is never asked for again. webrtc-rs's
/// default, 8192, kept asking for a minute for packets the sender no longer had (a
/// browser keeps about a second), and would need an SRTP replay window as large (see
/// `SRTP_REPLAY_WINDOW`).
const NACK_GENERATOR_LOG2_MINUS_6: u8 = 4;

/// The SRTP replay window, in packets: as long as the NACK generator's log, so every
/// retransmission it asks for is let in.
///
/// webrtc-rs's default is 64, and it refuses anything further behind the newest packet
/// as a replay ("srtp ... duplicated" in the log) before the NACK generator sees it. After
/// a gap of more than 64 packets (measured: a browser whose address changed, ICE back
/// after 2 s, issue 13) the generator asked again every 100 ms for packets the browser
/// kept resending and we kept refusing; the browser, counting them as lost (TWCC never
/// saw them), dropped its target bitrate to 30 kbit/s and spent most of it on those
/// retransmissions: its video reached the others 3-18 s late.
pub const SRTP_REPLAY_WINDOW: usize = 1 << (NACK_GENERATOR_LOG2_MINUS_6 + 6);

/// Who answers the other side's NACKs for what a peer connection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackResponder {
    /// webrtc-rs's responder, with a history of 512 packets per sender: the headless
    /// client, whose senders are its own tracks.
    Interceptor,
    /// The application answers them itself: the server, which keeps what it sent per
    /// down track and gives each subscriber a retransmission budget (its
    /// `rtc/retransmit.rs`).
    Application,
}

/// The interceptor chain every Plaza peer connection (and the headless client) uses:
/// webrtc-rs's defaults (NACK generator, RTCP reports, TWCC feedback to publishers, and
/// the NACK responder unless the application answers NACKs), with a shorter NACK
/// history and a generator log that matches the SRTP replay window ([`tune_srtp`]).
pub fn interceptors(
    media: &mut MediaEngine,
    responder: NackResponder,
) -> webrtc::error::Result<Registry> {
    use webrtc::interceptor::nack::{generator::Generator, responder::Responder};
    // The codecs already list the `nack` and `nack pli` feedback (codec::register_codecs).
    let mut registry = Registry::new();
    if responder == NackResponder::Interceptor {
        registry.add(Box::new(
            Responder::builder().with_log2_size(NACK_HISTORY_LOG2),
        ));
    }
    registry.add(Box::new(
        Generator::builder().with_log2_size_minus_6(NACK_GENERATOR_LOG2_MINUS_6),
    ));
    let registry = configure_rtcp_reports(registry);
    configure_twcc_receiver_only(registry, media)
}

/// SRTP settings every Plaza peer connection (and the headless client) uses with
/// [`interceptors`]: see `SRTP_REPLAY_WINDOW`.
pub fn tune_srtp(s: &mut SettingEngine) {
    s.set_srtp_replay_protection_window(SRTP_REPLAY_WINDOW);
}

/// ICE settings every Plaza peer connection (and the headless client) uses.
pub fn tune_ice(s: &mut SettingEngine) {
    // Browsers hide host addresses behind mDNS names when they have no media
    // permission; we never need to resolve them (their checks reach us and become
    // peer-reflexive candidates), and multicast is often unavailable on servers.
    s.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    // When we are the controlling agent (the subscriber connection), webrtc-rs by
    // default waits 1 s before nominating a pair with a peer-reflexive candidate, and
    // 2 s for a relayed one. A client's check often arrives before its trickled
    // candidate does, making it peer-reflexive, so the default cost joins a second.
    // Direct pairs are accepted at once; a relayed pair gets a short grace period for
    // a direct one to succeed first.
    s.set_host_acceptance_min_wait(Some(Duration::ZERO));
    s.set_srflx_acceptance_min_wait(Some(Duration::ZERO));
    s.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
    s.set_relay_acceptance_min_wait(Some(Duration::from_millis(300)));
    // A controlling webrtc-rs agent (ours on the subscriber connection) nominates a pair
    // only at its next check tick after the pair's check succeeded, and checks a
    // peer-reflexive pair (a client's check that arrived before its candidate) only at
    // a tick too: with the default 200 ms tick that was the ~200 ms tail of joins
    // (docs/benchmarks.md, "Join timeline"). A short tick while connecting; after that
    // the keepalive interval applies. A pair counts as failed after ICE_CHECK_BUDGET of
    // unanswered checks: webrtc-rs counts checks, not time, and its default (7 checks
    // of 200 ms) gave a pair 1.4 s, too little for a starved machine or a long path.
    s.set_ice_check_interval(ICE_CHECK_INTERVAL);
    s.set_ice_max_binding_requests(
        (ICE_CHECK_BUDGET.as_millis() / ICE_CHECK_INTERVAL.as_millis()) as u16,
    );
}

/// How often ICE checks pairs while connecting (see `tune_ice`).
pub const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// How long a pair may go unanswered before it fails (see `tune_ice`).
pub const ICE_CHECK_BUDGET: Duration = Duration::from_secs(5);

/// The protocol's STUN/TURN servers (what `joined` hands a client, and the server's own
/// `ice.servers`) as webrtc-rs wants them in an `RTCConfiguration`.
pub fn rtc_ice_servers(
    servers: &[plaza_protocol::IceServer],
) -> Vec<webrtc::ice_transport::ice_server::RTCIceServer> {
    servers
        .iter()
        .map(|s| webrtc::ice_transport::ice_server::RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect()
}
