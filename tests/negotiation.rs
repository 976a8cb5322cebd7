//! Negotiation that never stalls, and tracks that come and go while their publisher
//! stays: a subscriber offer the client drops is made again, an answer that cannot
//! apply gets an error and a fresh offer, and an unpublished track frees its m-line for
//! the next one. Like every WebRTC test it runs inside a loopback-only namespace.

mod common;

use common::*;
use plaza_client::{Event, OfferHandling, Participant, VideoOptions};
use plaza_protocol::{MediaKind, ServerMessage};

/// The subscriber offers `p` has seen so far, with what it did with each.
fn offers(p: &Participant) -> Vec<(usize, OfferHandling)> {
    p.events()
        .iter()
        .filter_map(|e| match e {
            Event::SubscriberOffer {
                m_sections,
                handled,
                ..
            } => Some((*m_sections, *handled)),
            _ => None,
        })
        .collect()
}

/// After the offer `p` mishandled (`how`), the server offered again and `p` answered.
fn assert_offered_again(p: &Participant, how: OfferHandling) {
    let seen = offers(p);
    let at = seen
        .iter()
        .position(|(_, h)| *h == how)
        .unwrap_or_else(|| panic!("no {how:?} offer: {seen:?}"));
    assert!(
        seen[at + 1..]
            .iter()
            .any(|(_, h)| *h == OfferHandling::Answered),
        "an offer answered after the {how:?} one: {seen:?}"
    );
}

/// Everything `p` received from `from`, by kind.
fn packets_from(p: &Participant, from: &Participant, kind: MediaKind) -> u64 {
    p.remote_tracks()
        .iter()
        .filter(|t| t.publisher == from.id && t.kind == Some(kind))
        .map(|t| t.packets)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_subscriber_offer_is_made_again() {
    let server = server();
    let ann = join(&server, "drop", "ann").await;
    let bob = join(&server, "drop", "bob").await;
    wait_media_from(&bob, &[&ann], 5).await;

    // Bob loses the next offer, the one that brings Cy's tracks.
    bob.misbehave(1, 0);
    let cy = join(&server, "drop", "cy").await;
    wait_media_from(&bob, &[&ann, &cy], 5).await;
    assert_offered_again(&bob, OfferHandling::Dropped);

    drop((ann, bob, cy));
    server
        .wait_until_empty(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_that_cannot_apply_gets_an_error_and_a_fresh_offer() {
    let server = server();
    let ann = join(&server, "garble", "ann").await;
    let bob = join(&server, "garble", "bob").await;
    wait_media_from(&bob, &[&ann], 5).await;

    bob.misbehave(0, 1);
    let cy = join(&server, "garble", "cy").await;
    let message = bob
        .wait_error("bad_sdp", WAIT)
        .await
        .expect("bob is told its answer did not apply");
    assert!(message.contains("answer"), "{message}");
    wait_media_from(&bob, &[&ann, &cy], 5).await;
    assert_offered_again(&bob, OfferHandling::Garbled);
    // Still in the call: no close, and the others never saw Bob leave.
    assert!(!bob.events().iter().any(|e| matches!(e, Event::Closed(_))));
    assert!(!has_server_event(&cy, |m| matches!(
        m,
        ServerMessage::ParticipantLeft { .. }
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unpublished_track_stops_and_frees_its_m_line() {
    let server = server();
    let mut ann = join(&server, "unpublish", "ann").await;
    let bob = join(&server, "unpublish", "bob").await;
    let tracks = wait_media_from(&bob, &[&ann], 5).await;
    let video_id = tracks
        .iter()
        .find(|t| t.publisher == ann.id && t.kind == Some(MediaKind::Video))
        .map(|t| t.track_id.clone())
        .expect("ann's video at bob");
    let (_, m_before) = bob.last_subscriber_offer().expect("bob got an offer");

    ann.unpublish_video().await.expect("ann stops her camera");
    bob.wait_for("track_unpublished for ann's video", WAIT, |events| {
        events.iter().find_map(|e| match e {
            Event::Server(ServerMessage::TrackUnpublished { track_id, .. })
                if track_id.as_str() == video_id =>
            {
                Some(())
            }
            _ => None,
        })
    })
    .await
    .expect("bob is told");
    assert!(
        !has_server_event(&bob, |m| matches!(m, ServerMessage::ParticipantLeft { .. })),
        "ann is still in the room"
    );

    // Ann's video stops at Bob; her audio goes on.
    let stopped_at = packets_from(&bob, &ann, MediaKind::Video);
    let audio_at = packets_from(&bob, &ann, MediaKind::Audio);
    bob.wait_media("ann's audio goes on", WAIT, |_| {
        packets_from(&bob, &ann, MediaKind::Audio) > audio_at + 25
    })
    .await
    .expect("audio keeps flowing");
    let after = bob
        .remote_tracks()
        .iter()
        .find(|t| t.track_id == video_id)
        .map(|t| t.packets)
        .unwrap_or(0);
    assert!(
        after <= stopped_at + 2,
        "the unpublished video stopped ({stopped_at} then {after} packets)"
    );

    // A new camera track: Bob receives it, on the m-line the old one freed.
    ann.publish_video(VideoOptions::default())
        .await
        .expect("ann starts her camera again");
    let new_video = bob
        .wait_media("ann's new video", WAIT, |tracks| {
            tracks.iter().any(|t| {
                t.publisher == ann.id
                    && t.kind == Some(MediaKind::Video)
                    && t.track_id != video_id
                    && t.packets >= 5
            })
        })
        .await
        .expect("bob receives ann's new video");
    assert!(new_video
        .iter()
        .any(|t| t.first_packet_keyframe == Some(true)
            && t.publisher == ann.id
            && t.track_id != video_id));
    let (_, m_after) = bob.last_subscriber_offer().expect("offers");
    assert_eq!(
        m_after,
        m_before,
        "the new track took the freed m-line (offers: {:?})",
        offers(&bob)
    );
}
