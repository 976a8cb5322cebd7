//! Media forwarding end to end: real peers, real RTP, through the in-process server.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use plaza_protocol::MediaKind;

/// Three participants in room A each receive the other two's audio and video; every
/// payload received is one the named publisher sent, never one of its own. Room B's
/// two participants receive only each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_in_a_room_receive_each_other_and_rooms_are_isolated() {
    let server = server();
    let a1 = join(&server, "room-a", "Ann").await;
    let a2 = join(&server, "room-a", "Bob").await;
    let a3 = join(&server, "room-a", "Cy").await;
    let b1 = join(&server, "room-b", "Dee").await;
    let b2 = join(&server, "room-b", "Eve").await;

    let room_a = [&a1, &a2, &a3];
    for p in room_a {
        let others: Vec<_> = room_a.iter().copied().filter(|o| o.id != p.id).collect();
        wait_media_from(p, &others, 30).await;
    }
    wait_media_from(&b1, &[&b2], 30).await;
    wait_media_from(&b2, &[&b1], 30).await;

    let all = [&a1, &a2, &a3, &b1, &b2];
    for p in all {
        let tracks = p.remote_tracks();
        let own = p.sent(|s| s.hashes.clone());
        let same_room: HashSet<String> = if room_a.iter().any(|x| x.id == p.id) {
            room_a
                .iter()
                .filter(|x| x.id != p.id)
                .map(|x| x.id.clone())
                .collect()
        } else {
            [&b1, &b2]
                .iter()
                .filter(|x| x.id != p.id)
                .map(|x| x.id.clone())
                .collect()
        };
        assert_eq!(
            tracks.len(),
            same_room.len() * 2,
            "{}: one audio and one video per other member",
            p.id
        );
        for t in &tracks {
            assert!(
                same_room.contains(&t.publisher),
                "{} got a track from {} outside its room",
                p.id,
                t.publisher
            );
            let publisher = all.iter().find(|x| x.id == t.publisher).unwrap();
            let sent = publisher.sent(|s| s.hashes.clone());
            let foreign = t.hashes.iter().filter(|h| !sent.contains(h)).count();
            assert_eq!(
                foreign, 0,
                "{}: {foreign} payloads on {}'s {:?} track were not sent by it",
                p.id, t.publisher, t.kind
            );
            assert!(
                t.hashes.iter().all(|h| !own.contains(h)),
                "{} received its own media",
                p.id
            );
            assert_eq!(t.sources.len(), 1, "one source per track");
            if t.kind == Some(MediaKind::Video) {
                assert_eq!(
                    t.first_packet_keyframe,
                    Some(true),
                    "{}: first video packet from {} is a keyframe",
                    p.id,
                    t.publisher
                );
            }
        }
    }
    drop((a1, a2, a3, b1, b2));
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .unwrap();
}
