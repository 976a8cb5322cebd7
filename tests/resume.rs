//! Session resume: a client whose WebSocket is cut (a TCP reset, as when a path dies)
//! takes its participant over on a new socket with its resume token. Its media never
//! stops for the others, nobody is told it left, and messages sent meanwhile arrive.
//! One that does not come back is torn down after the grace period.

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::*;
use plaza_client::{Event, Participant};
use plaza_protocol::{close, ServerMessage};

fn left_or_joined(p: &Participant) -> Vec<String> {
    p.events()
        .iter()
        .filter_map(|e| match e {
            Event::Server(ServerMessage::ParticipantLeft { participant_id }) => {
                Some(format!("left {participant_id}"))
            }
            Event::Server(ServerMessage::ParticipantJoined { participant }) => {
                Some(format!("joined {}", participant.id))
            }
            _ => None,
        })
        .collect()
}

/// Bob's packets from Ann, sampled every 100 ms for `d`: the longest time they did not grow.
async fn longest_stall(bob: &Participant, d: Duration) -> Duration {
    let (mut last, mut since, mut worst) = (bob.packets_received(), Instant::now(), Duration::ZERO);
    let end = Instant::now() + d;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = bob.packets_received();
        if now > last {
            last = now;
            since = Instant::now();
        }
        worst = worst.max(since.elapsed());
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_socket_resumes_and_media_never_stops() {
    let server = server_with(|c| c.session.resume_grace = Duration::from_secs(10));
    let proxy = Proxy::start(server.addr).await;
    let mut ann_opts = options(&server, "resume", "Ann");
    ann_opts.url = proxy.url();
    let mut ann = Participant::join(ann_opts).await.expect("Ann joins");
    let bob = join(&server, "resume", "Bob").await;
    wait_media_from(&bob, &[&ann], 20).await;
    wait_media_from(&ann, &[&bob], 20).await;
    let ann_id = ann.id.clone();
    let bob_seen_before = left_or_joined(&bob);

    // The cut, while media flows; Bob's count is watched from now on.
    let before = bob.packets_received();
    proxy.cut();
    ann.wait_closed(WAIT)
        .await
        .expect("Ann sees her socket reset");
    // Something happens while Ann has no socket: Cleo joins. Ann must hear of it.
    let cleo = join(&server, "resume", "Cleo").await;
    let stall = longest_stall(&bob, Duration::from_millis(800)).await;

    ann.resume().await.expect("Ann resumes with her token");
    assert_eq!(ann.id, ann_id, "same participant");
    let stall_after = longest_stall(&bob, Duration::from_millis(1000)).await;
    assert!(
        bob.packets_received() > before + 50,
        "Bob kept receiving Ann's media"
    );
    assert!(
        stall < Duration::from_millis(500) && stall_after < Duration::from_millis(500),
        "Ann's media stalled for Bob: {stall:?} during the cut, {stall_after:?} after"
    );
    ann.wait_for("Cleo's join, sent while Ann had no socket", WAIT, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::Server(ServerMessage::ParticipantJoined { participant }) if participant.id.as_str() == cleo.id))
            .then_some(())
    })
    .await
    .expect("the message sent during the cut arrives");
    // The new socket carries signalling both ways: Ann gets Cleo's media (a new
    // subscriber offer, answered over the new socket).
    wait_media_from(&ann, &[&cleo], 20).await;
    let bob_seen_after = left_or_joined(&bob);
    assert_eq!(
        bob_seen_after.len(),
        bob_seen_before.len() + 1,
        "Bob was told only of Cleo's join: {bob_seen_after:?}"
    );
    assert!(!bob_seen_after.iter().any(|e| e.contains(&ann_id)));
    assert_eq!(server.registry.counts().participants, 3);

    // A token works once.
    ann.resume()
        .await
        .expect("a second resume with the new token");
    ann.leave().await.expect("Ann leaves");
    bob.leave().await.expect("Bob leaves");
    cleo.leave().await.expect("Cleo leaves");
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .expect("registry empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_does_not_come_back_is_torn_down_after_the_grace_period() {
    let grace = Duration::from_secs(2);
    let server = server_with(|c| c.session.resume_grace = grace);
    let proxy = Proxy::start(server.addr).await;
    let mut opts = options(&server, "gone", "Ann");
    opts.url = proxy.url();
    let ann = Participant::join(opts).await.expect("Ann joins");
    ann.wait_for("publisher connected", WAIT, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::PublisherState(s) if s.to_string() == "connected"))
            .then_some(())
    })
    .await
    .expect("connected");
    let cut_at = Instant::now();
    proxy.cut();
    ann.wait_closed(WAIT).await.expect("socket reset");
    tokio::time::sleep(grace / 2).await;
    assert_eq!(
        server.registry.counts().participants,
        1,
        "kept during the grace period"
    );
    server
        .wait_until_empty(grace + Duration::from_secs(3))
        .await
        .expect("registry empty after the grace period");
    assert!(cut_at.elapsed() >= grace, "not before the grace period");
    // Its token is gone with it.
    let mut late = ann;
    let err = late.resume().await.expect_err("too late to resume");
    assert!(err.to_string().contains("resume_failed"), "{err}");
    drop(late);
}

/// The web client moves to a new socket when it hears nothing for 2 s or the network
/// changes, and a browser cannot drop a socket without a close frame. When that frame
/// does arrive (the old path still works, or the page was only starved for a moment), its
/// code says the client will resume: the participant is kept and resumes, nobody sees it
/// leave. A close frame with any other code is a leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_socket_closed_to_move_keeps_its_participant_and_a_plain_close_ends_it() {
    let server = server_with(|c| c.session.resume_grace = Duration::from_secs(10));
    let mut ann = join(&server, "moving", "Ann").await;
    let bob = join(&server, "moving", "Bob").await;
    wait_media_from(&bob, &[&ann], 20).await;
    let ann_id = ann.id.clone();

    for code in [close::RESUMING_PATH_CHANGED, close::RESUMING_NO_ANSWER] {
        ann.close_socket_and_resume(code)
            .await
            .unwrap_or_else(|e| panic!("Ann resumes after closing with {code}: {e}"));
        assert_eq!(ann.id, ann_id, "same participant after closing with {code}");
    }
    // Her media still reaches Bob, and the signalling works on the new socket: she
    // receives whoever joins now.
    let before = bob.packets_received();
    let cleo = join(&server, "moving", "Cleo").await;
    wait_media_from(&ann, &[&cleo], 20).await;
    assert!(
        bob.packets_received() > before,
        "Bob still receives Ann's media"
    );
    assert!(
        !left_or_joined(&bob).iter().any(|e| e.contains(&ann_id)),
        "Bob never saw Ann leave or join: {:?}",
        left_or_joined(&bob)
    );

    // The web client's "connection failed" (4002) starts a new session: a leave.
    let cleo_id = cleo.id.clone();
    let mut cleo = cleo;
    let err = cleo
        .close_socket_and_resume(4002)
        .await
        .expect_err("no resume after a plain close");
    assert!(err.to_string().contains("resume_failed"), "{err}");
    bob.wait_for("Cleo's leave", WAIT, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::Server(ServerMessage::ParticipantLeft { participant_id }) if participant_id.as_str() == cleo_id))
            .then_some(())
    })
    .await
    .expect("Bob is told Cleo left");
    drop(cleo);

    ann.leave().await.expect("Ann leaves");
    bob.leave().await.expect("Bob leaves");
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .expect("registry empty");
}
