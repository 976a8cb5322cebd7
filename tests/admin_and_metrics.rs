//! Operating the server: /healthz, /metrics and the admin API.

mod common;

use std::time::Duration;

use common::*;
use plaza_client::Event;
use plaza_protocol::ServerMessage;

const KEY: &str = "an-admin-key-for-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_and_metrics_describe_the_live_server() {
    let server = server();
    let ann = join(&server, "m", "Ann").await;
    let bob = join(&server, "m", "Bob").await;
    wait_media_from(&ann, &[&bob], 30).await;
    wait_media_from(&bob, &[&ann], 30).await;

    let (status, body) = http(server.addr, "GET", "/healthz", &[]).await;
    assert_eq!(status, 200);
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["rooms"], 1);
    assert_eq!(h["participants"], 2);
    assert_eq!(h["tracks"], 4);
    assert_eq!(h["subscriptions"], 4);
    assert_eq!(h["peer_connections"], 4);

    // One error to see it counted.
    let mut raw = RawClient::connect(&server).await;
    raw.send("{nope").await;
    assert_eq!(raw.error_code().await, "bad_json");

    // Forwarding counters are published by the read loops every 100 ms: poll.
    let deadline = std::time::Instant::now() + WAIT;
    let text = loop {
        let (status, text) = http(server.addr, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200);
        let forwarded = text
            .lines()
            .find_map(|l| l.strip_prefix("plaza_packets_forwarded_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if forwarded >= 120.0 || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let value = |name: &str| metric(&text, name);
    assert_eq!(value("plaza_rooms"), 1.0);
    assert_eq!(value("plaza_participants"), 2.0);
    assert_eq!(value("plaza_published_tracks"), 4.0);
    assert_eq!(value("plaza_subscriptions"), 4.0);
    assert!(value("plaza_packets_forwarded_total") >= 120.0);
    assert!(value("plaza_bytes_forwarded_total") > 0.0);
    assert!(value("plaza_plis_sent_total") >= 1.0);
    // Nobody's link is bad: no video paused (tests/subscriber_feedback.rs pauses one).
    assert_eq!(value("plaza_videos_paused"), 0.0);
    assert_eq!(value("plaza_video_pauses_total"), 0.0);
    assert!(value("plaza_subscriber_keyframe_requests_total{outcome=\"throttled\"}") >= 0.0);
    assert_eq!(value("plaza_join_seconds_count"), 2.0);
    assert_eq!(value("plaza_errors_total{code=\"bad_json\"}"), 1.0);
    assert!(!text.contains(KEY) && !text.to_lowercase().contains("secret"));

    // The relay residence histogram: one observation per packet sent to a subscriber.
    // Once both have left every read loop has published its last batch, so the two
    // counts must agree exactly.
    let (ann_id, bob_id) = (ann.id.clone(), bob.id.clone());
    ann.leave().await.expect("Ann leaves");
    bob.leave().await.expect("Bob leaves");
    let deadline = std::time::Instant::now() + WAIT;
    while plaza::rtc::MediaStats::gauge(&server.stats.forwarding_tasks) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "read loops still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, text) = http(server.addr, "GET", "/metrics", &[]).await;
    let value = |name: &str| metric(&text, name);
    let forwarded = value("plaza_packets_forwarded_total");
    let residence = value("plaza_relay_residence_seconds_count");
    assert_eq!(
        residence, forwarded,
        "{ann_id} and {bob_id} gone: every forwarded packet observed once"
    );
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("plaza_relay_residence_seconds_bucket"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(buckets.len(), 14, "13 bounds and +Inf");
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last(), Some(&forwarded));
    assert!(value("plaza_relay_residence_seconds_sum") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_lists_kicks_and_closes_behind_its_key() {
    let server = server_with(|c| c.admin.api_key = KEY.into());
    let ann = join(&server, "ops", "Ann").await;
    let bob = join(&server, "ops", "Bob").await;
    let cy = join(&server, "ops", "Cy").await;
    let dee = join(&server, "other", "Dee").await;
    // All six tracks of "ops" published (the listing below counts them).
    wait_media_from(&ann, &[&bob, &cy], 5).await;
    wait_media_from(&bob, &[&ann], 5).await;

    // Without the key, or with a wrong one: 401 and nothing changes.
    for headers in [vec![], vec![("X-Api-Key", "wrong-key-of-the-same-len")]] {
        assert_eq!(
            http(server.addr, "GET", "/admin/rooms", &headers).await.0,
            401
        );
        let path = format!("/admin/rooms/ops/participants/{}", bob.id);
        assert_eq!(http(server.addr, "DELETE", &path, &headers).await.0, 401);
        assert_eq!(
            http(server.addr, "DELETE", "/admin/rooms/other", &headers)
                .await
                .0,
            401
        );
    }
    assert_eq!(server.registry.counts().participants, 4);

    let key = [("X-Api-Key", KEY)];
    let (status, body) = http(server.addr, "GET", "/admin/rooms", &key).await;
    assert_eq!(status, 200);
    let rooms: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rooms[0]["room"], "ops");
    let names: Vec<_> = rooms[0]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Ann", "Bob", "Cy"]);
    assert_eq!(rooms[0]["tracks"].as_array().unwrap().len(), 6);
    assert_eq!(rooms[1]["room"], "other");

    // Kick Bob: he is told and closed; the others see him leave.
    let path = format!("/admin/rooms/ops/participants/{}", bob.id);
    assert_eq!(http(server.addr, "DELETE", &path, &key).await.0, 202);
    bob.wait_error("kicked", WAIT).await.unwrap();
    for p in [&ann, &cy] {
        p.wait_for("Bob left", WAIT, |ev| {
            ev.iter().any(|e| matches!(e, Event::Server(ServerMessage::ParticipantLeft { participant_id }) if participant_id.as_str() == bob.id)).then_some(())
        })
        .await
        .unwrap();
    }
    assert_eq!(
        http(server.addr, "DELETE", &path, &key).await.0,
        404,
        "already gone"
    );

    // Close the room: everyone in it is disconnected; the other room is untouched.
    assert_eq!(
        http(server.addr, "DELETE", "/admin/rooms/ops", &key)
            .await
            .0,
        202
    );
    for p in [&ann, &cy] {
        p.wait_error("kicked", WAIT).await.unwrap();
    }
    drop((ann, bob, cy));
    // The sessions end first; the room actor unregisters when it has seen
    // its last member leave, a moment later. Wait for both.
    let ops = plaza_protocol::ids::RoomId::parse("ops", 64).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.registry.counts().participants != 1 || server.registry.room(&ops).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            server.registry.counts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dee
        .events()
        .iter()
        .all(|e| !matches!(e, Event::Server(ServerMessage::Error { .. }))));
    assert_eq!(
        http(server.addr, "DELETE", "/admin/rooms/nothing-here", &key)
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_is_absent_without_a_key() {
    let server = server();
    assert_eq!(
        http(server.addr, "GET", "/admin/rooms", &[("X-Api-Key", "")])
            .await
            .0,
        404
    );
}
