//! A peer connection closed while it still gathers candidates leaves nothing behind.
//!
//! webrtc-ice 0.17.2 gathers host candidates in a task of its own and adds each one to
//! the agent without asking whether the agent was closed meanwhile. A candidate added
//! after `close()` is never closed: its read loop keeps its UDP socket (and the agent)
//! for the life of the process. Participants who leave within milliseconds of joining
//! hit it (the churn soak found one socket in 300 cycles, about one run in three).
//! `vendor/webrtc-ice-0.17.2-close-while-gathering.patch` closes such a candidate.

use std::time::Duration;

use plaza_tools::procstat;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

fn udp_sockets() -> usize {
    procstat::fd_kinds(procstat::self_pid())
        .get("udp")
        .copied()
        .unwrap_or(0)
}

/// Connections opened and closed at once, before their host candidates are gathered:
/// once every close has returned and the tasks had time to run, no UDP socket is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_while_gathering_leaves_no_udp_socket() {
    let mut media = MediaEngine::default();
    plaza_rtc::codec::register_codecs(&mut media).expect("codecs");
    let mut settings = SettingEngine::default();
    plaza_rtc::tune_ice(&mut settings);
    // In the test's namespace only loopback exists; without it there is nothing to gather.
    settings.set_include_loopback_candidate(true);
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_setting_engine(settings)
        .build();

    let before = udp_sockets();
    for _ in 0..200 {
        let pc = api
            .new_peer_connection(RTCConfiguration::default())
            .await
            .expect("peer connection");
        pc.add_transceiver_from_kind(RTPCodecType::Video, None)
            .await
            .expect("transceiver");
        let offer = pc.create_offer(None).await.expect("offer");
        // Starts gathering in the background; close races it.
        pc.set_local_description(offer)
            .await
            .expect("local description");
        pc.close().await.expect("close");
    }

    // Sockets of closed candidates go as their read loops end; wait for that (bounded)
    // rather than for a fixed time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut after = udp_sockets();
    while after != before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = udp_sockets();
    }
    assert_eq!(
        after, before,
        "UDP sockets: {before} before 200 connections closed while gathering, {after} after"
    );
}
