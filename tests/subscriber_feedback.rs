//! A subscriber that cannot keep up must not cost the others (issue 11): its keyframe
//! requests reach the publisher within a budget of its own, its NACKs are answered
//! within a retransmission budget of its own, and while it loses too much its video is
//! paused (audio goes on) until a probe finds the link better (`src/rtc/feedback.rs`,
//! `src/rtc/retransmit.rs`). The subscriber here is a real webrtc-rs client whose RTCP
//! says what a subscriber behind a bad link says: PLIs over and over, NACKs for most
//! packets, receiver reports with most packets lost.

mod common;

use std::time::{Duration, Instant};

use common::*;
use plaza_client::{Event, Participant};
use plaza_protocol::{MediaKind, ServerMessage, TrackId};
use webrtc::rtcp::packet::Packet as RtcpPacket;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtcp::reception_report::ReceptionReport;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

/// The SSRC `subscriber` receives `publisher`'s video on.
async fn video_ssrc(subscriber: &Participant, publisher: &Participant) -> u32 {
    for receiver in subscriber.subscriber_connection().get_receivers().await {
        for track in receiver.tracks().await {
            if track.kind() == RTPCodecType::Video && track.stream_id() == publisher.id {
                return track.ssrc();
            }
        }
    }
    panic!("{} receives no video from {}", subscriber.id, publisher.id)
}

/// Packets `subscriber` got so far from `publisher`'s track of `kind`.
fn packets(subscriber: &Participant, publisher: &Participant, kind: MediaKind) -> u64 {
    subscriber
        .remote_tracks()
        .iter()
        .filter(|t| t.publisher == publisher.id && t.kind == Some(kind))
        .map(|t| t.packets)
        .sum()
}

/// The last sequence number `subscriber` got of `publisher`'s video.
fn last_video_seq(subscriber: &Participant, publisher: &Participant) -> u16 {
    subscriber
        .remote_tracks()
        .iter()
        .find(|t| t.publisher == publisher.id && t.kind == Some(MediaKind::Video))
        .and_then(|t| t.last_seq)
        .expect("video received")
}

/// A NACK for the `count` sequence numbers ending at `last`.
fn nack(media_ssrc: u32, last: u16, count: u16) -> TransportLayerNack {
    TransportLayerNack {
        sender_ssrc: 1,
        media_ssrc,
        nacks: (0..count)
            .map(|k| NackPair::new(last.wrapping_sub(count - 1 - k)))
            .collect(),
    }
}

fn retransmissions(text: &str, outcome: &str) -> f64 {
    metric(
        text,
        &format!("plaza_retransmissions_total{{outcome=\"{outcome}\"}}"),
    )
}

/// The server's id of `publisher`'s video, as `subscriber` was told of it.
fn ann_video_track(subscriber: &Participant, publisher: &Participant) -> TrackId {
    subscriber
        .events()
        .iter()
        .find_map(|e| match e {
            Event::Server(ServerMessage::TrackPublished { track })
                if track.participant_id.as_str() == publisher.id
                    && track.kind == MediaKind::Video =>
            {
                Some(track.id.clone())
            }
            _ => None,
        })
        .expect("told of the video")
}

/// Waits for `video_paused {track, paused}`.
async fn wait_video_paused(subscriber: &Participant, track: &TrackId, paused: bool) {
    subscriber
        .wait_for("video_paused", WAIT, |events| {
            events
                .iter()
                .any(|e| {
                    matches!(e, Event::Server(ServerMessage::VideoPaused { track_id, paused: p })
                        if track_id == track && *p == paused)
                })
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("video_paused {paused}: {e}"));
}

async fn send_rtcp(subscriber: &Participant, packet: Box<dyn RtcpPacket + Send + Sync>) {
    subscriber
        .subscriber_connection()
        .write_rtcp(&[packet])
        .await
        .expect("RTCP sent");
}

/// Polls `/metrics` until `name` has `value`.
async fn wait_metric(server: &plaza_tools::testing::TestServer, name: &str, value: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics(server).await;
        if metric(&text, name) == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_asking_for_keyframes_over_and_over_is_served_within_its_budget() {
    let server = server();
    let ann = join(&server, "plis", "Ann").await;
    let bob = join(&server, "plis", "Bob").await;
    wait_media_from(&bob, &[&ann], 20).await;
    let ssrc = video_ssrc(&bob, &ann).await;
    let asked_before = ann.sent(|s| s.keyframe_requests.len());

    // 100 PLIs in 2 s: what a decoder behind a link losing most packets sends.
    const FLOOD: u64 = 100;
    for _ in 0..FLOOD {
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: ssrc,
        };
        send_rtcp(&bob, Box::new(pli)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // All of them have been looked at.
    let deadline = Instant::now() + WAIT;
    let (forwarded, throttled) = loop {
        let text = metrics(&server).await;
        let outcome = |o: &str| {
            metric(
                &text,
                &format!("plaza_subscriber_keyframe_requests_total{{outcome=\"{o}\"}}"),
            )
        };
        let (f, t) = (outcome("forwarded"), outcome("throttled"));
        if f + t >= FLOOD as f64 || Instant::now() > deadline {
            break (f, t);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // One at once, one a second later (the budget doubles after that).
    assert!(
        (1.0..=3.0).contains(&forwarded),
        "{forwarded} of Bob's {FLOOD} requests forwarded"
    );
    assert!(throttled >= FLOOD as f64 - 3.0, "{throttled} throttled");
    // What Ann's encoder saw: about as many requests, not one per 50 ms.
    let asked = ann.sent(|s| s.keyframe_requests.len()) - asked_before;
    assert!(
        (1..=4).contains(&asked),
        "Ann was asked for {asked} keyframes during Bob's flood"
    );
    // Bob still gets Ann's video: being throttled is not being cut off.
    let before = packets(&bob, &ann, MediaKind::Video);
    bob.wait_media("more video from Ann", WAIT, |_| {
        packets(&bob, &ann, MediaKind::Video) > before + 20
    })
    .await
    .expect("Bob's video goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_losing_most_packets_keeps_audio_while_its_video_pauses_and_is_probed_again() {
    let server = server();
    let ann = join(&server, "lossy", "Ann").await;
    let bob = join(&server, "lossy", "Bob").await;
    let cleo = join(&server, "lossy", "Cleo").await;
    wait_media_from(&bob, &[&ann], 20).await;
    wait_media_from(&cleo, &[&ann], 20).await;
    let ssrc = video_ssrc(&bob, &ann).await;

    // Two seconds of a link that loses most of Ann's video: Bob NACKs nearly every
    // packet, while his receiver reports (retransmissions repaired most of it) say
    // little is lost. The NACKs are what show the link cannot carry the stream.
    let deadline = Instant::now() + WAIT;
    while metric(&metrics(&server).await, "plaza_videos_paused") < 1.0 {
        assert!(Instant::now() < deadline, "Bob's video never paused");
        let last = last_video_seq(&bob, &ann);
        send_rtcp(&bob, Box::new(nack(ssrc, last, 8))).await;
        let rr = ReceiverReport {
            ssrc: 1,
            reports: vec![ReceptionReport {
                ssrc,
                fraction_lost: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        send_rtcp(&bob, Box::new(rr)).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let paused_at = Instant::now();
    // Bob is told, so his page can say why the picture stopped.
    let ann_video = ann_video_track(&bob, &ann);
    wait_video_paused(&bob, &ann_video, true).await;

    // For a second: Bob gets Ann's audio but not her video; Cleo gets both as before.
    // (A packet or two may have been on its way when the pause began.)
    let bob_video = packets(&bob, &ann, MediaKind::Video);
    let bob_audio = packets(&bob, &ann, MediaKind::Audio);
    let cleo_video = packets(&cleo, &ann, MediaKind::Video);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let text = metrics(&server).await;
    let still_paused = metric(&text, "plaza_videos_paused") == 1.0;
    assert!(
        still_paused && paused_at.elapsed() < Duration::from_millis(1900),
        "the window must lie inside the 2 s pause"
    );
    let bob_video = packets(&bob, &ann, MediaKind::Video) - bob_video;
    let bob_audio = packets(&bob, &ann, MediaKind::Audio) - bob_audio;
    let cleo_video = packets(&cleo, &ann, MediaKind::Video) - cleo_video;
    assert!(
        bob_video <= 3,
        "Bob got {bob_video} video packets while paused"
    );
    assert!(
        bob_audio >= 25,
        "Bob got only {bob_audio} audio packets while paused"
    );
    assert!(cleo_video >= 20, "Cleo got only {cleo_video} video packets");
    assert_eq!(metric(&text, "plaza_video_pauses_total"), 1.0);

    // The probe: after the pause Bob's video resumes (his reports are clean now).
    wait_metric(&server, "plaza_videos_paused", 0.0).await;
    wait_video_paused(&bob, &ann_video, false).await;
    let resumed = packets(&bob, &ann, MediaKind::Video);
    bob.wait_media("Ann's video again after the pause", WAIT, |_| {
        packets(&bob, &ann, MediaKind::Video) > resumed + 20
    })
    .await
    .expect("Bob's video resumes");
    assert!(
        paused_at.elapsed() >= Duration::from_millis(1500),
        "resumed after the pause, not before"
    );
    assert_eq!(
        metric(&metrics(&server).await, "plaza_video_pauses_total"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nacks_are_answered_once_per_moment_and_within_the_subscribers_budget() {
    let server = server();
    let ann = join(&server, "nacks", "Ann").await;
    let bob = join(&server, "nacks", "Bob").await;
    wait_media_from(&bob, &[&ann], 40).await;
    let ssrc = video_ssrc(&bob, &ann).await;

    // Bob asks three times in a row for the last 10 packets he got: each is sent again
    // once; asked again at once, it is still on its way.
    let last = last_video_seq(&bob, &ann);
    for _ in 0..3 {
        send_rtcp(&bob, Box::new(nack(ssrc, last, 10))).await;
    }
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = metrics(&server).await;
        if retransmissions(&text, "sent") + retransmissions(&text, "too_soon") >= 30.0
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(retransmissions(&text, "sent"), 10.0, "{text}");
    assert_eq!(retransmissions(&text, "too_soon"), 20.0);
    // Numbers Bob never got are not in the history.
    send_rtcp(&bob, Box::new(nack(ssrc, last.wrapping_add(30_000), 5))).await;
    let deadline = Instant::now() + WAIT;
    while retransmissions(&metrics(&server).await, "unknown") < 5.0 {
        assert!(
            Instant::now() < deadline,
            "the unknown NACKs were never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A flood: every 150 ms, the last 200 packets again. What is resent stays within a
    // quarter of what Bob is sent (plus the bucket's first 64 KiB).
    let forwarded_before = metric(&metrics(&server).await, "plaza_bytes_forwarded_total");
    for _ in 0..20 {
        let last = last_video_seq(&bob, &ann);
        send_rtcp(&bob, Box::new(nack(ssrc, last, 200))).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let text = metrics(&server).await;
    assert!(
        retransmissions(&text, "over_budget") > 0.0,
        "the flood was not held back:\n{text}"
    );
    let sent = retransmissions(&text, "sent");
    let forwarded = metric(&text, "plaza_bytes_forwarded_total") - forwarded_before;
    // Resent packets are at most 1,200 bytes here (the client's video packets).
    let resent_bytes_at_most = (sent - 10.0) * 1200.0;
    assert!(
        resent_bytes_at_most <= 0.25 * forwarded + 64.0 * 1024.0 + 20.0 * 1200.0,
        "{sent} packets resent against {forwarded} bytes forwarded"
    );
}
