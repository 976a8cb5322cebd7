//! Teardown through the registry: however a participant goes, everything it owned
//! goes too — registry entries, the room actor when it empties, forwarding tasks, peer
//! connections — and the others are told.

mod common;

use std::time::Duration;

use common::*;
use plaza_client::Event;
use plaza_protocol::ids::RoomId;
use plaza_protocol::ServerMessage;

fn left(events: &[Event], id: &str) -> bool {
    events.iter().any(|e| {
        matches!(e, Event::Server(ServerMessage::ParticipantLeft { participant_id }) if participant_id.as_str() == id)
    })
}

/// A tab that vanishes (TCP dropped, no close frame):
/// the other member is told at once, and when the last one leaves nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vanished_participant_is_removed_and_the_empty_room_stops() {
    let server = server();
    let ann = join(&server, "gone", "Ann").await;
    let bob = join(&server, "gone", "Bob").await;
    wait_media_from(&ann, &[&bob], 10).await;
    wait_media_from(&bob, &[&ann], 10).await;
    let room = server
        .registry
        .room(&RoomId::parse("gone", 64).unwrap())
        .expect("room exists");
    assert_eq!(
        plaza::rtc::MediaStats::gauge(&server.stats.forwarding_tasks),
        4
    );

    let bob_id = bob.id.clone();
    bob.vanish();
    ann.wait_for("Bob's departure", WAIT, |ev| {
        left(ev, &bob_id).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(server.registry.counts().participants, 1);

    ann.leave().await.unwrap();
    server
        .wait_until_empty(Duration::from_secs(3))
        .await
        .unwrap();
    assert!(!room.connected(), "the room actor has stopped");
}

/// A client that stops answering (no pongs, no messages) while its TCP connection
/// stays open is dropped after the heartbeat timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_client_is_dropped_after_the_heartbeat_timeout() {
    let server = server();
    let ann = join(&server, "silent", "Ann").await;
    let mut raw = RawClient::connect(&server).await;
    let raw_id = raw.join("silent", "Mute").await;
    ann.wait_for("Mute joined", WAIT, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::Server(ServerMessage::ParticipantJoined { .. })))
            .then_some(())
    })
    .await
    .unwrap();
    // From now on `raw` is never read, so its pings go unanswered.
    let start = std::time::Instant::now();
    ann.wait_for("Mute dropped", WAIT, |ev| left(ev, &raw_id).then_some(()))
        .await
        .unwrap();
    let took = start.elapsed();
    // Timeout 1.5 s, checked every 250 ms (tests' loopback_config).
    assert!(
        took >= Duration::from_millis(1200),
        "dropped after {took:?}: too early"
    );
    assert!(
        took <= Duration::from_millis(3000),
        "dropped after {took:?}: too late"
    );
    drop(raw);
    ann.leave().await.unwrap();
    server
        .wait_until_empty(Duration::from_secs(3))
        .await
        .unwrap();
}

/// A client killed in the middle of negotiating (offer sent, answer not yet read) does
/// not leave a peer connection or anything else behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_killed_mid_negotiation_leaves_nothing() {
    let server = server();
    let offer = real_offer().await;
    for _ in 0..3 {
        let mut raw = RawClient::connect(&server).await;
        raw.join("midway", "Gone").await;
        let msg = serde_json::json!({"type": "offer", "target": "publisher", "sdp": offer});
        raw.send(msg.to_string()).await;
        drop(raw); // TCP closed without a close frame, answer unread
    }
    server
        .wait_until_empty(Duration::from_secs(3))
        .await
        .unwrap();
}

/// A participant whose media connection dies while its WebSocket stays up is told
/// (`peer_failed`), closed, and removed; the others see it leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_peer_connection_ends_the_session() {
    let server = server_with(|c| {
        c.ice.keepalive_interval = Duration::from_millis(200);
        c.ice.disconnected_timeout = Duration::from_millis(600);
        c.ice.failed_timeout = Duration::from_millis(1200);
    });
    let ann = join(&server, "fail", "Ann").await;
    let bob = join(&server, "fail", "Bob").await;
    wait_media_from(&ann, &[&bob], 10).await;
    bob.close_media().await;
    let msg = bob.wait_error("peer_failed", WAIT).await.unwrap();
    assert!(msg.contains("failed"), "{msg}");
    let code = bob.wait_closed(WAIT).await.unwrap();
    assert_eq!(code, Some(1008));
    ann.wait_for("Bob's departure", WAIT, |ev| {
        left(ev, &bob.id).then_some(())
    })
    .await
    .unwrap();
    drop((ann, bob));
    server
        .wait_until_empty(Duration::from_secs(3))
        .await
        .unwrap();
}
