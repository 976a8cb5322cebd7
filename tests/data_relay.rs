//! Chat over the data channel, relayed by the room.

mod common;

use std::time::Duration;

use common::*;
use plaza_client::Event;
use plaza_protocol::ChatOut;

fn chats(events: &[Event]) -> Vec<ChatOut> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Chat(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// A room message reaches exactly the other members, with the sender's id and name; a
/// direct message reaches only its target; nothing leaks into another room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_reaches_exactly_the_others_and_direct_messages_only_their_target() {
    let server = server();
    let ann = join(&server, "chat", "Ann").await;
    let bob = join(&server, "chat", "Bob").await;
    let cy = join(&server, "chat", "Cy").await;
    let elsewhere = join(&server, "other", "Dee").await;

    ann.chat("hello room", None).await.unwrap();
    for p in [&bob, &cy] {
        let got = p
            .wait_for("room chat", WAIT, |ev| {
                chats(ev).into_iter().find(|c| c.text == "hello room")
            })
            .await
            .unwrap();
        assert_eq!(got.from.as_str(), ann.id);
        assert_eq!(got.name, "Ann");
        assert_eq!(got.to, None);
        assert!(got.ts > 0);
    }

    bob.chat("just for Cy", Some(&cy.id)).await.unwrap();
    let got = cy
        .wait_for("direct chat", WAIT, |ev| {
            chats(ev).into_iter().find(|c| c.text == "just for Cy")
        })
        .await
        .unwrap();
    assert_eq!(got.from.as_str(), bob.id);
    assert_eq!(got.to.as_ref().map(|t| t.to_string()), Some(cy.id.clone()));

    // A last room message from Cy: once it has reached Ann and Bob, anything sent
    // before it (ordered channel, ordered relay) has too.
    cy.chat("fence", None).await.unwrap();
    for p in [&ann, &bob] {
        p.wait_for("fence", WAIT, |ev| {
            chats(ev).into_iter().find(|c| c.text == "fence")
        })
        .await
        .unwrap();
    }
    let texts = |p: &plaza_client::Participant| -> Vec<String> {
        chats(&p.events()).into_iter().map(|c| c.text).collect()
    };
    assert_eq!(
        texts(&ann),
        ["fence"],
        "Ann gets neither her own message nor Bob's DM"
    );
    assert_eq!(
        texts(&bob),
        ["hello room", "fence"],
        "Bob does not get his own DM back"
    );
    assert_eq!(
        texts(&cy),
        ["hello room", "just for Cy"],
        "Cy: her own message is not echoed"
    );
    assert!(texts(&elsewhere).is_empty(), "nothing crosses rooms");
    drop((ann, bob, cy, elsewhere));
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .unwrap();
}

/// Chat that breaks the rules is refused with a clear error and relayed to nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_malformed_or_misaddressed_chat_is_refused() {
    let server = server();
    let ann = join(&server, "chat", "Ann").await;
    let bob = join(&server, "chat", "Bob").await;

    ann.chat_raw("x".repeat(20 * 1024)).await.unwrap();
    ann.wait_error("message_too_large", WAIT).await.unwrap();
    ann.chat_raw("not json".into()).await.unwrap();
    ann.wait_error("bad_message", WAIT).await.unwrap();
    ann.chat("hi", Some("Pnobody")).await.unwrap();
    let msg = ann
        .wait_for("unknown target error", WAIT, |ev| {
            ev.iter().find_map(|e| match e {
                Event::Server(plaza_protocol::ServerMessage::Error { message, .. })
                    if message.contains("Pnobody") =>
                {
                    Some(message.clone())
                }
                _ => None,
            })
        })
        .await
        .unwrap();
    assert!(msg.contains("no participant"));

    ann.chat("after the errors", None).await.unwrap();
    bob.wait_for("valid chat", WAIT, |ev| {
        chats(ev).into_iter().find(|c| c.text == "after the errors")
    })
    .await
    .unwrap();
    assert_eq!(
        chats(&bob.events()).len(),
        1,
        "only the valid message was relayed"
    );
}
