//! Bad input never hurts anyone else: every malformed, out-of-order or oversized thing
//! a client can send gets a clear error (or close code), and a call in another room
//! keeps streaming throughout.

mod common;

use std::time::Duration;

use common::*;
use plaza_client::Event;
use plaza_protocol::ServerMessage;

/// Packets `p` has received so far.
fn received(p: &plaza_client::Participant) -> u64 {
    p.remote_tracks().iter().map(|t| t.packets).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_input_gets_its_error_and_the_other_room_keeps_streaming() {
    let server = server_with(|c| c.limits.max_tracks_per_participant = 2);
    let ann = join(&server, "steady", "Ann").await;
    let bob = join(&server, "steady", "Bob").await;
    wait_media_from(&ann, &[&bob], 10).await;
    wait_media_from(&bob, &[&ann], 10).await;
    let before = [received(&ann), received(&bob)];

    let offer = real_offer().await;
    let mut c = RawClient::connect(&server).await;
    // Before join.
    c.send("{not json").await;
    assert_eq!(c.error_code().await, "bad_json");
    c.send(r#"{"type":"dance"}"#).await;
    assert_eq!(c.error_code().await, "unknown_type");
    c.send(r#"{"type":"join","room":"x"}"#).await;
    assert_eq!(c.error_code().await, "bad_message");
    c.send(r#"{"type":"candidate","target":"publisher","candidate":null}"#)
        .await;
    assert_eq!(c.error_code().await, "not_joined");
    c.send(r#"{"type":"answer","target":"subscriber","sdp":"v=0"}"#)
        .await;
    assert_eq!(c.error_code().await, "not_joined");
    c.send(r#"{"type":"join","room":"../etc","name":"Eve"}"#)
        .await;
    assert_eq!(c.error_code().await, "invalid_room");
    c.send(r#"{"type":"join","room":"ok","name":"bell\u0007"}"#)
        .await;
    assert_eq!(c.error_code().await, "invalid_name");
    c.send(format!(
        r#"{{"type":"join","room":"ok","name":"{}"}}"#,
        "n".repeat(65)
    ))
    .await;
    assert_eq!(c.error_code().await, "invalid_name");
    c.send_binary(vec![1, 2, 3]).await;
    assert_eq!(c.error_code().await, "bad_message");
    // Joined (a room of its own).
    c.join("elsewhere", "Eve").await;
    c.send(r#"{"type":"join","room":"steady","name":"Eve"}"#)
        .await;
    assert_eq!(c.error_code().await, "already_joined");
    c.send(r#"{"type":"answer","target":"subscriber","sdp":"v=0"}"#)
        .await;
    assert_eq!(
        c.error_code().await,
        "out_of_order",
        "answer with no offer pending"
    );
    c.send(r#"{"type":"answer","target":"publisher","sdp":"v=0"}"#)
        .await;
    assert_eq!(c.error_code().await, "out_of_order");
    c.send(r#"{"type":"offer","target":"subscriber","sdp":"v=0"}"#)
        .await;
    assert_eq!(c.error_code().await, "out_of_order");
    c.send(r#"{"type":"offer","target":"publisher","sdp":"garbage"}"#)
        .await;
    assert_eq!(c.error_code().await, "bad_sdp");
    let three_tracks = offer.replacen(
        "m=audio",
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:x\r\nm=audio",
        1,
    );
    let msg = serde_json::json!({"type": "offer", "target": "publisher", "sdp": three_tracks});
    c.send(msg.to_string()).await;
    assert_eq!(c.error_code().await, "too_many_tracks");
    c.send(r#"{"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:nonsense"}}"#).await;
    assert_eq!(c.error_code().await, "bad_candidate");
    c.send(r#"{"type":"mute","kind":"smell","muted":true}"#)
        .await;
    assert_eq!(c.error_code().await, "bad_message");
    // The connection survived all of that.
    c.send(r#"{"type":"ping"}"#).await;
    loop {
        match c.recv().await {
            Received::Message(ServerMessage::Pong) => break,
            Received::Message(_) => continue,
            Received::Closed(code) => panic!("closed ({code:?})"),
        }
    }
    // A frame over 64 KiB closes the connection with 1009.
    c.send(format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    ))
    .await;
    assert_eq!(c.close_code().await, Some(1009));

    // Ann and Bob never noticed: no error, and media still flowing.
    for (i, p) in [&ann, &bob].iter().enumerate() {
        p.wait_media("media still flowing", WAIT, |t| {
            t.iter().map(|t| t.packets).sum::<u64>() > before[i] + 100
        })
        .await
        .unwrap();
        let errors: Vec<_> = p
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::Server(ServerMessage::Error { .. })))
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    assert_eq!(server.registry.counts().participants, 2);
}

/// Room and server limits refuse the join with their code and close the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_rooms_and_too_many_rooms_are_refused() {
    let server = server_with(|c| {
        c.limits.max_participants_per_room = 2;
        c.limits.max_rooms = 2;
    });
    let mut a = RawClient::connect(&server).await;
    a.join("small", "A").await;
    let mut b = RawClient::connect(&server).await;
    b.join("small", "B").await;
    let mut c = RawClient::connect(&server).await;
    c.send(r#"{"type":"join","room":"small","name":"C"}"#).await;
    assert_eq!(c.error_code().await, "room_full");
    assert_eq!(c.close_code().await, Some(1008));

    let mut d = RawClient::connect(&server).await;
    d.join("second", "D").await;
    let mut e = RawClient::connect(&server).await;
    e.send(r#"{"type":"join","room":"third","name":"E"}"#).await;
    assert_eq!(e.error_code().await, "too_many_rooms");
    assert_eq!(e.close_code().await, Some(1008));
    drop((a, b, d));
    server
        .wait_until_empty(Duration::from_secs(3))
        .await
        .unwrap();
}
