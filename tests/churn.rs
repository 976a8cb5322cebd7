//! Churn: a few hundred participant lives against one in-process server — joining,
//! publishing, receiving, chatting and leaving cleanly, abruptly (socket dropped) and in
//! the middle of negotiating — leave nothing behind: no registry entry, no room actor,
//! no forwarding task, no subscription, no peer connection, no file descriptor.
//!
//! The short version of `plaza-soak` (docs/reliability.md has the 10,000-cycle run):
//! the zeros are checked in-process, where the registry itself can be read; the file
//! descriptors with `plaza-soak` against the real server process, whose descriptors
//! are its own (in-process, the participants' sockets would be counted too).
//! Like every WebRTC test it runs inside a loopback-only network namespace.

mod common;

use std::time::{Duration, Instant};

use common::*;
use plaza::rtc::MediaStats;
use plaza_client::{Event, Participant, VideoOptions};
use plaza_protocol::MediaKind;
use plaza_tools::soak::{self, LeaveKind, SoakOptions, SoakReport};
use plaza_tools::testing::TestServer;

/// Cycles after the warm-up; with 3 leave kinds in turn, 100 of each.
const CYCLES: u64 = 300;
const WARMUP: u64 = 30;

fn churn_server() -> TestServer {
    server_with(|c| {
        // Every participant joins from 127.0.0.1.
        c.limits.joins_per_ip_per_minute = 1_000_000;
        // A socket that vanishes is noticed at once (TCP closes); this bounds the rest.
        c.heartbeat.interval = Duration::from_millis(200);
        c.heartbeat.timeout = Duration::from_millis(1000);
    })
}

fn options(server: &TestServer, prefix: &str, cycles: u64) -> SoakOptions {
    let mut o = SoakOptions::new(server.ws_url());
    o.cycles = cycles;
    // One room: its resident lives through every track that comes and goes (subscriber
    // m-lines are recycled, see `a_resident_outlives_many_tracks`).
    o.rooms = 1;
    // Two shared cores run the server, the participants and other test binaries.
    o.concurrency = 4;
    o.residents_per_room = 1;
    o.room_prefix = prefix.into();
    o
}

/// Everything on the server back to zero, waiting for the condition (bounded).
async fn assert_server_empty(server: &TestServer) {
    server
        .wait_until_empty(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let subs = MediaStats::gauge(&server.stats.subscriptions);
    assert_eq!(subs, 0, "subscriptions (down tracks) left");
    assert_eq!(server.registry.room_actors(), 0, "room actors left");
}

fn assert_no_failures(what: &str, r: &SoakReport) {
    assert!(
        r.failures.is_empty() && r.resident_failures == 0,
        "{what}: cycles failed: {:?}, residents failed: {}; e.g. {:#?}",
        r.failures,
        r.resident_failures,
        r.failure_examples
    );
    assert_eq!(r.done + r.failed, r.cycles, "{what}: every cycle ran");
}

/// The zeros: registry, room actors, forwarding tasks, subscriptions, peer connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_leaves_nothing_behind() {
    let _one = ONE_AT_A_TIME.lock().await;
    churn().await;
}

/// The server process's open descriptors back to their post-warm-up count after 300
/// cycles (and the same zeros, read from `/healthz` and `/metrics`). Fails without the
/// patched webrtc (vendor/webrtc-0.17.2, docs/decisions.md §8): a subscriber connection
/// closed while the server waited for the client's DTLS ClientHello kept its UDP socket.
/// And in about one run of two before the stop-races patch (vendor/README.md): a
/// connection closed as its SCTP association came up kept its socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_process_keeps_no_file_descriptor() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("churn");
    let json = dir.join("soak.json");
    let soak = plaza_tools::server_process::workspace_binary("plaza-soak").expect("plaza-soak");
    let out = tokio::process::Command::new(soak)
        .args(["--server-bin", env!("CARGO_BIN_EXE_plaza")])
        .args(["--cycles", &CYCLES.to_string()])
        .args(["--warmup-cycles", &WARMUP.to_string()])
        .args(["--rooms", "6", "--concurrency", "4", "--port", "18131"])
        // 300 cycles say nothing about memory growth (the long soak does).
        .args(["--max-rss-growth", "1000"])
        .arg("--json")
        .arg(&json)
        .arg("--log-dir")
        .arg(&dir)
        .output()
        .await
        .expect("plaza-soak runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the soak's JSON summary"))
            .expect("valid JSON");
    assert_eq!(
        summary["violations"],
        serde_json::json!([]),
        "plaza-soak found violations"
    );
    assert!(out.status.success(), "plaza-soak failed: {:?}", out.status);
}

/// The two tests take turns: each loads both cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Participants per wave around the resident, each publishing audio and video.
const WAVE: usize = 8;
/// Tracks that come and go while the resident stays.
const TRACKS: usize = 1000;

/// A long meeting: one resident stays while 1,000 tracks come and go in its room (waves
/// of 8 participants joining, publishing and leaving). It receives every current
/// member's media, is never closed, and its subscriber offers stay bounded by how many
/// tracks it receives at once, not by the room's history: subscriber m-lines are
/// recycled (src/rtc/slots.rs). Before, every track that ever passed left an m-section,
/// and after ~160 the resident's answer outgrew the frame limit (closed with 1009).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resident_outlives_many_tracks() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = churn_server();
    let light = VideoOptions {
        fps: 10,
        bitrate_bps: 60_000,
        keyframe_interval: None,
    };
    let member = |name: String| {
        let mut o = common::options(&server, "long", &name);
        o.record_payloads = false;
        o.video = Some(light.clone());
        Participant::join(o)
    };
    let resident = member("resident".into()).await.expect("resident joins");
    // Concurrent tracks at the resident: one wave's audio and video.
    let concurrent = 2 * WAVE;
    let bound = 2 * concurrent + 2;
    let (mut max_sections, mut max_bytes) = (0, 0);
    let waves = TRACKS.div_ceil(concurrent);
    for wave in 0..waves {
        let joins = (0..WAVE).map(|i| member(format!("w{wave}-{i}")));
        let members: Vec<Participant> = futures_util::future::join_all(joins)
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("wave {wave}: a member cannot join: {e}"));
        wait_resident_receives(&resident, &members, wave).await;
        let (bytes, sections) = resident.last_subscriber_offer().expect("offers");
        max_sections = max_sections.max(sections);
        max_bytes = max_bytes.max(bytes);
        assert!(
            sections <= bound,
            "wave {wave}: the resident's subscriber offer has {sections} m-sections \
             ({bytes} bytes) for {concurrent} concurrent tracks; bound {bound}"
        );
        for p in members {
            p.leave().await.expect("a member leaves");
        }
    }
    assert!(
        !resident
            .events()
            .iter()
            .any(|e| matches!(e, Event::Closed(_))),
        "the resident was never closed"
    );
    eprintln!(
        "resident: {} tracks came and went; largest subscriber offer {max_sections} m-sections, \
         {max_bytes} bytes",
        waves * concurrent
    );
    resident.leave().await.expect("resident leaves");
    assert_server_empty(&server).await;
}

/// Waits until the resident receives audio and video from every member; on a timeout,
/// fails with what each side saw (the member's publisher state and packets sent, the
/// tracks the resident was offered and received from it), so a failure says which
/// side of the forwarding broke.
async fn wait_resident_receives(resident: &Participant, members: &[Participant], wave: usize) {
    let want: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let got = resident
        .wait_media(&format!("wave {wave}"), common::WAIT, |tracks| {
            want.iter().all(|id| {
                [MediaKind::Audio, MediaKind::Video].iter().all(|k| {
                    tracks
                        .iter()
                        .any(|t| &t.publisher == id && t.kind == Some(*k) && t.packets >= 3)
                })
            })
        })
        .await;
    let Err(e) = got else { return };
    let resident_events = resident.events();
    let report: Vec<String> = members
        .iter()
        .map(|m| {
            let publisher_states: Vec<String> = m
                .events()
                .iter()
                .filter_map(|e| match e {
                    Event::PublisherState(s) => Some(format!("{s:?}")),
                    _ => None,
                })
                .collect();
            let offered: Vec<String> = resident_events
                .iter()
                .filter_map(|e| match e {
                    Event::RemoteTrack {
                        track_id,
                        publisher,
                        kind,
                    } if *publisher == m.id => Some(format!("{kind:?} {track_id}")),
                    _ => None,
                })
                .collect();
            format!(
                "{}: publisher {publisher_states:?}, sent {} packets; resident got tracks {offered:?}",
                m.id,
                m.sent(|s| s.packets)
            )
        })
        .collect();
    panic!("{e}\n{}", report.join("\n"));
}

async fn churn() {
    let started = Instant::now();
    let server = churn_server();

    // Warm-up: lazily created state (pools, runtime threads) appears once.
    let warmup = soak::run(&options(&server, "warmup", WARMUP)).await;
    assert_no_failures("warm-up", &warmup);
    assert_server_empty(&server).await;

    let mut o = options(&server, "churn", CYCLES);
    o.first_cycle = WARMUP;
    let report = soak::run(&o).await;
    eprintln!(
        "churn: {} cycles in {:.1} s, by kind {:?}, mid-negotiation drops {:?}",
        report.cycles, report.duration_secs, report.by_kind, report.mid_negotiation_at
    );
    assert_no_failures("churn", &report);
    for kind in LeaveKind::ALL {
        let t = &report.by_kind[&kind];
        assert_eq!(t.done + t.failed, CYCLES / 3, "{kind:?} cycles");
    }

    assert_server_empty(&server).await;
    eprintln!("churn test took {:.1} s", started.elapsed().as_secs_f64());
}
