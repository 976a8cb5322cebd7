//! Shared test harness: an in-process server on a loopback port and headless
//! participants speaking the real protocol with real WebRTC.
//!
//! Every test here does WebRTC, so the suite runs inside a loopback-only network
//! namespace (scripts/test.sh): `unshare -n sh -c 'ip link set lo up && cargo test'`.

#![allow(dead_code)]

use std::time::Duration;

use plaza::client::{Event, Participant, ParticipantOptions, RemoteTrackStats};
use plaza::config::Config;
use plaza::protocol::{MediaKind, ServerMessage};
use plaza::testing::{loopback_config, TestServer};

pub const WAIT: Duration = Duration::from_secs(15);

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "plaza=warn".into()),
        )
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

pub fn server() -> TestServer {
    server_with(|_| {})
}

pub fn server_with(edit: impl FnOnce(&mut Config)) -> TestServer {
    init_logs();
    let mut config = loopback_config();
    edit(&mut config);
    TestServer::start(config).expect("server starts")
}

pub fn options(server: &TestServer, room: &str, name: &str) -> ParticipantOptions {
    let mut o = ParticipantOptions::new(server.ws_url(), room, name);
    o.record_payloads = true;
    o
}

pub async fn join(server: &TestServer, room: &str, name: &str) -> Participant {
    Participant::join(options(server, room, name))
        .await
        .unwrap_or_else(|e| panic!("{name} joins {room}: {e}"))
}

/// Waits until `p` receives audio and video from each of `publishers` (by id), at
/// least `min_packets` each.
pub async fn wait_media_from(
    p: &Participant,
    publishers: &[&Participant],
    min_packets: u64,
) -> Vec<RemoteTrackStats> {
    let want: Vec<String> = publishers.iter().map(|x| x.id.clone()).collect();
    p.wait_media(
        &format!("audio+video from {want:?} at {}", p.id),
        WAIT,
        |tracks| {
            want.iter().all(|id| {
                [MediaKind::Audio, MediaKind::Video].iter().all(|k| {
                    tracks.iter().any(|t| {
                        &t.publisher == id && t.kind == Some(*k) && t.packets >= min_packets
                    })
                })
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the participant's events include this server message.
pub fn has_server_event(p: &Participant, f: impl Fn(&ServerMessage) -> bool) -> bool {
    p.events()
        .iter()
        .any(|e| matches!(e, Event::Server(m) if f(m)))
}
