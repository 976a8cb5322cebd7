//! Joining, leaving and renegotiating: late joiners, crowds arriving at once, tracks
//! going away.

mod common;

use std::time::{Duration, Instant};

use common::*;
use plaza_client::Event;
use plaza_protocol::{MediaKind, ServerMessage};

/// A participant joining a running call gets the existing tracks, and its first video
/// packet from each publisher is a keyframe the server asked that publisher for (the
/// publisher sees a keyframe request), within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_joiner_gets_a_requested_keyframe_within_a_second() {
    let server = server();
    let ann = join(&server, "late", "Ann").await;
    let bob = join(&server, "late", "Bob").await;
    wait_media_from(&ann, &[&bob], 30).await;
    wait_media_from(&bob, &[&ann], 30).await;

    // Keyframe requests are capped per track (100 ms by default). Let the cap from
    // Ann's and Bob's own start expire, so what follows is the late joiner's.
    let last_request = [&ann, &bob]
        .iter()
        .filter_map(|p| p.sent(|s| s.keyframe_requests.last().copied()))
        .max();
    if let Some(at) = last_request {
        tokio::time::sleep_until((at + Duration::from_millis(300)).into()).await;
    }
    let requests_before = [&ann, &bob].map(|p| p.sent(|s| s.keyframe_requests.len()));

    let t0 = Instant::now();
    let cy = join(&server, "late", "Cy").await;
    let tracks = wait_media_from(&cy, &[&ann, &bob], 1).await;
    for t in tracks.iter().filter(|t| t.kind == Some(MediaKind::Video)) {
        assert_eq!(
            t.first_packet_keyframe,
            Some(true),
            "first video packet from {} is a keyframe",
            t.publisher
        );
        let after = t.first_packet_at.unwrap() - t0;
        assert!(
            after < Duration::from_secs(1),
            "first video from {} after {after:?}",
            t.publisher
        );
        println!(
            "late joiner: first video frame from {} after {after:?}",
            t.publisher
        );
    }
    for (i, p) in [&ann, &bob].iter().enumerate() {
        let new: Vec<Instant> = p.sent(|s| s.keyframe_requests[requests_before[i]..].to_vec());
        assert!(
            !new.is_empty(),
            "{} was asked for a keyframe after Cy joined",
            p.id
        );
        assert!(
            new[0] - t0 < Duration::from_secs(1),
            "keyframe request after {:?}",
            new[0] - t0
        );
    }
    // Everyone saw Cy arrive; Cy was told who was there.
    let names: Vec<_> = cy.others_at_join.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Ann", "Bob"]);
    for p in [&ann, &bob] {
        p.wait_for("participant_joined Cy", WAIT, |ev| {
            ev.iter().find(|e| matches!(e, Event::Server(ServerMessage::ParticipantJoined { participant }) if participant.name == "Cy"))
                .map(|_| ())
        })
        .await
        .unwrap();
    }
}

/// However many subscribers start at once, the publisher is asked for at most one
/// keyframe per cap interval (`media.keyframe_request_interval`, 50 ms) per track, not
/// one per subscriber: requests merge while one is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyframe_requests_are_throttled_per_track() {
    let server = server();
    let publisher = join(&server, "storm", "Pub").await;
    let start = Instant::now();
    let subscribers = futures_util::future::join_all((0..5).map(|i| {
        join(
            &server,
            "storm",
            Box::leak(format!("Sub{i}").into_boxed_str()),
        )
    }))
    .await;
    for s in &subscribers {
        wait_media_from(s, &[&publisher], 30).await;
    }
    let elapsed = start.elapsed();
    let requests = publisher.sent(|s| s.keyframe_requests.clone());
    let allowed = (elapsed.as_secs_f64() / 0.05).ceil() as usize + 1;
    assert!(
        requests.len() <= allowed,
        "{} keyframe requests in {elapsed:?} for 5 subscribers (at most {allowed})",
        requests.len()
    );
    for w in requests.windows(2) {
        // 50 ms at the server; the client sees them with some jitter.
        assert!(
            w[1] - w[0] >= Duration::from_millis(35),
            "requests {:?} apart",
            w[1] - w[0]
        );
    }
}

/// Six participants joining at the same moment all end up connected, each with every
/// other member's audio and video. No offer collides with another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_join_at_once_and_all_get_every_track() {
    let server = server();
    let names = ["P1", "P2", "P3", "P4", "P5", "P6"];
    let people =
        futures_util::future::join_all(names.iter().map(|n| join(&server, "crowd", n))).await;
    for p in &people {
        let others: Vec<_> = people.iter().filter(|o| o.id != p.id).collect();
        let tracks = wait_media_from(p, &others, 10).await;
        assert_eq!(tracks.len(), 10, "{}: 5 others × audio + video", p.id);
        assert!(tracks.iter().all(|t| t.publisher != p.id));
        let errors: Vec<_> = p
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::Server(ServerMessage::Error { .. })))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", p.id);
    }
    drop(people);
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .unwrap();
}

/// When a member leaves, the others are told (its tracks first, then itself), the
/// subscriber connection is renegotiated, and media between the rest keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaving_unpublishes_and_the_rest_keep_streaming() {
    let server = server();
    let ann = join(&server, "leave", "Ann").await;
    let bob = join(&server, "leave", "Bob").await;
    let cy = join(&server, "leave", "Cy").await;
    for p in [&ann, &bob] {
        let others: Vec<_> = [&ann, &bob, &cy]
            .into_iter()
            .filter(|o| o.id != p.id)
            .collect();
        wait_media_from(p, &others, 10).await;
    }
    let cy_id = cy.id.clone();
    cy.leave().await.unwrap();

    for p in [&ann, &bob] {
        let order = p
            .wait_for("Cy's departure", WAIT, |ev| {
                let unpub = ev.iter().filter(|e| matches!(e, Event::Server(ServerMessage::TrackUnpublished { participant_id, .. }) if participant_id.as_str() == cy_id)).count();
                let left = ev.iter().position(|e| matches!(e, Event::Server(ServerMessage::ParticipantLeft { participant_id }) if participant_id.as_str() == cy_id))?;
                let last_unpub = ev.iter().rposition(|e| matches!(e, Event::Server(ServerMessage::TrackUnpublished { .. })))?;
                (unpub == 2).then_some(last_unpub < left)
            })
            .await
            .unwrap();
        assert!(order, "track_unpublished comes before participant_left");
    }
    // Media between the two who stayed still flows after the renegotiation.
    let before = [&ann, &bob].map(|p| {
        p.remote_tracks()
            .iter()
            .filter(|t| t.publisher != cy_id)
            .map(|t| t.packets)
            .sum::<u64>()
    });
    for (i, p) in [&ann, &bob].iter().enumerate() {
        p.wait_media("media after Cy left", WAIT, |tracks| {
            tracks
                .iter()
                .filter(|t| t.publisher != cy_id)
                .map(|t| t.packets)
                .sum::<u64>()
                > before[i] + 50
        })
        .await
        .unwrap();
    }
    assert_eq!(server.registry.counts().participants, 2);
}
