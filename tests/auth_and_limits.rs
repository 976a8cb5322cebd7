//! Room tokens and per-client limits: who may join and do what, and what happens to a
//! client that sends too much. Nobody else notices.

mod common;

use std::time::Duration;

use common::*;
use plaza_client::{Participant, ParticipantOptions};
use plaza_protocol::auth::{expiry_in, mint, Claims, TokenVerifier};
use plaza_protocol::ServerMessage;

const SECRET: &str = "a-test-secret-of-some-length";

fn token(room: &str, publish: bool, subscribe: bool, ttl: Duration) -> String {
    mint(
        SECRET,
        &Claims {
            room: room.into(),
            sub: format!("user-{publish}-{subscribe}"),
            name: None,
            publish,
            subscribe,
            exp: expiry_in(ttl),
            iat: None,
            aud: Vec::new(),
            iss: None,
        },
    )
    .unwrap()
}

fn with_token(
    server: &plaza_tools::testing::TestServer,
    room: &str,
    name: &str,
    t: &str,
) -> ParticipantOptions {
    let mut o = options(server, room, name);
    o.token = Some(t.to_string());
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_secret_only_valid_tokens_for_the_room_get_in() {
    let server = server_with(|c| c.auth.secret = SECRET.into());
    let refused = |o: ParticipantOptions| async move {
        match Participant::join(o).await {
            Err(plaza_client::ClientError::Refused { code, message }) => (code, message),
            Err(e) => panic!("unexpected failure {e}"),
            Ok(_) => panic!("joined without a valid token"),
        }
    };
    let (code, _) = refused(options(&server, "vip", "NoToken")).await;
    assert_eq!(code, "unauthorized");
    let (code, msg) = refused(with_token(
        &server,
        "vip",
        "Wrong",
        &token("other", true, true, Duration::from_secs(60)),
    ))
    .await;
    assert_eq!(code, "unauthorized");
    assert!(msg.contains("another room"), "{msg}");
    let forged = mint(
        "not-the-secret-at-all",
        &Claims {
            room: "vip".into(),
            sub: "x".into(),
            name: None,
            publish: true,
            subscribe: true,
            exp: expiry_in(Duration::from_secs(60)),
            iat: None,
            aud: Vec::new(),
            iss: None,
        },
    )
    .unwrap();
    assert_eq!(
        refused(with_token(&server, "vip", "Forged", &forged))
            .await
            .0,
        "unauthorized"
    );
    let expired = mint(
        SECRET,
        &Claims {
            room: "vip".into(),
            sub: "x".into(),
            name: None,
            publish: true,
            subscribe: true,
            exp: 1_000,
            iat: None,
            aud: Vec::new(),
            iss: None,
        },
    )
    .unwrap();
    let (code, msg) = refused(with_token(&server, "vip", "Late", &expired)).await;
    assert_eq!(code, "unauthorized");
    assert!(msg.contains("expired"), "{msg}");

    let ann = Participant::join(with_token(
        &server,
        "vip",
        "Ann",
        &token("vip", true, true, Duration::from_secs(60)),
    ))
    .await
    .unwrap();
    let bob = Participant::join(with_token(
        &server,
        "vip",
        "Bob",
        &token("vip", true, true, Duration::from_secs(60)),
    ))
    .await
    .unwrap();
    wait_media_from(&ann, &[&bob], 10).await;
    assert_eq!(
        server.registry.counts().participants,
        2,
        "refused joins left nothing behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscribe_only_token_receives_but_cannot_publish() {
    let server = server_with(|c| c.auth.secret = SECRET.into());
    let speaker = Participant::join(with_token(
        &server,
        "talk",
        "Speaker",
        &token("talk", true, true, Duration::from_secs(60)),
    ))
    .await
    .unwrap();

    // A viewer that tries to send media anyway is refused, and receives nothing it
    // should not... but still gets the speaker.
    let viewer = Participant::join(with_token(
        &server,
        "talk",
        "Viewer",
        &token("talk", false, true, Duration::from_secs(60)),
    ))
    .await
    .unwrap();
    let msg = viewer.wait_error("forbidden", WAIT).await.unwrap();
    assert!(msg.contains("may not publish"), "{msg}");

    // A well-behaved viewer (no tracks, chat only) joins and watches.
    let mut o = with_token(
        &server,
        "talk",
        "Watcher",
        &token("talk", false, true, Duration::from_secs(60)),
    );
    o.audio = false;
    o.video = None;
    let watcher = Participant::join(o).await.unwrap();
    wait_media_from(&watcher, &[&speaker], 10).await;
    watcher.chat("hello from the audience", None).await.unwrap();
    speaker
        .wait_for("chat from the watcher", WAIT, |ev| {
            ev.iter().any(|e| matches!(e, plaza_client::Event::Chat(c) if c.text == "hello from the audience")).then_some(())
        })
        .await
        .unwrap();
    assert!(
        speaker.remote_tracks().is_empty(),
        "viewers publish nothing"
    );
}

/// Runs `plaza token --room demo` with `args` and the environment `env`, and verifies
/// what it prints with the test secret.
fn token_command(args: &[&str], env: &[(&str, &str)]) -> plaza_protocol::auth::Grant {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plaza"))
        .args(["token", "--room", "demo"])
        .args(args)
        .env("PLAZA_AUTH_SECRET", SECRET)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8(out.stdout).unwrap();
    TokenVerifier::new(SECRET)
        .verify(Some(t.trim()), "demo")
        .unwrap()
}

/// `plaza token` mints what the server accepts.
#[test]
fn the_token_command_mints_a_valid_token() {
    let grant = token_command(
        &["--identity", "alice", "--ttl", "10m", "--no-publish"],
        &[],
    );
    assert_eq!(grant.identity.as_deref(), Some("alice"));
    assert!(!grant.publish && grant.subscribe);
    let claims = grant.claims.unwrap();
    assert_eq!(
        claims.exp - claims.iat.unwrap(),
        600,
        "iat written: the lifetime"
    );
    assert!(claims.aud.is_empty() && claims.iss.is_none());

    // The configured audience and issuer go in by default; flags override, "" removes.
    let configured = [
        ("PLAZA_AUTH_AUDIENCE", "plaza.example"),
        ("PLAZA_AUTH_ISSUER", "https://app.example"),
    ];
    let aud_iss = |args: &[&str]| {
        let claims = token_command(&[&["--identity", "alice"], args].concat(), &configured)
            .claims
            .unwrap();
        (claims.aud, claims.iss)
    };
    assert_eq!(
        aud_iss(&[]),
        (
            vec!["plaza.example".to_string()],
            Some("https://app.example".into())
        )
    );
    assert_eq!(
        aud_iss(&["--audience", "other", "--issuer", ""]),
        (vec!["other".to_string()], None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_are_rate_limited_and_others_are_unaffected() {
    let server = server_with(|c| {
        c.limits.signalling_rate = 10.0;
        c.limits.signalling_burst = 20;
        c.limits.chat_rate = 2.0;
        c.limits.chat_burst = 3;
        c.limits.joins_per_ip_per_minute = 8;
    });
    let ann = join(&server, "calm", "Ann").await;
    let bob = join(&server, "calm", "Bob").await;
    wait_media_from(&ann, &[&bob], 10).await;

    // Signalling flood: one rate_limited error (not one per message), connection alive.
    let mut flood = RawClient::connect(&server).await;
    for _ in 0..200 {
        flood.send(r#"{"type":"ping"}"#).await;
    }
    // Let the bucket refill (1.1 s at 10/s), then a fence whose answer is distinct.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    flood.send(r#"{"type":"leave"}"#).await;
    let (mut pongs, mut limited) = (0, 0);
    loop {
        match flood.recv().await {
            Received::Message(ServerMessage::Pong) => pongs += 1,
            Received::Message(ServerMessage::Error { code, .. }) if code == "rate_limited" => {
                limited += 1
            }
            Received::Message(ServerMessage::Error { code, .. }) if code == "not_joined" => break,
            Received::Message(m) => panic!("unexpected {m:?}"),
            Received::Closed(c) => panic!("flooder closed ({c:?})"),
        }
    }
    assert!(
        (20..=22).contains(&pongs),
        "{pongs} of 200 pings served (burst 20)"
    );
    assert_eq!(limited, 1, "told once, not once per dropped message");

    // Chat flood: the burst is relayed, the rest refused.
    for i in 0..10 {
        ann.chat(&format!("spam {i}"), None).await.unwrap();
    }
    ann.wait_error("rate_limited", WAIT).await.unwrap();

    // Join storm from one address: after 8 joins a minute, refused.
    let mut refused = 0;
    for i in 0..8 {
        let mut c = RawClient::connect(&server).await;
        c.send(format!(r#"{{"type":"join","room":"storm","name":"J{i}"}}"#))
            .await;
        loop {
            match c.recv().await {
                Received::Message(ServerMessage::Joined { .. }) => break,
                Received::Message(ServerMessage::Error { code, .. }) => {
                    assert_eq!(code, "rate_limited");
                    refused += 1;
                    break;
                }
                Received::Message(_) => {}
                Received::Closed(_) => break,
            }
        }
    }
    // Ann and Bob used 2 of the 8 joins, so 6 of these 8 got in and 2 were refused.
    assert_eq!(refused, 2, "joins refused");

    // Ann and Bob never noticed.
    let before: u64 = bob.remote_tracks().iter().map(|t| t.packets).sum();
    bob.wait_media("media still flowing", WAIT, |t| {
        t.iter().map(|t| t.packets).sum::<u64>() > before + 50
    })
    .await
    .unwrap();
    let relayed = bob
        .events()
        .iter()
        .filter(|e| matches!(e, plaza_client::Event::Chat(c) if c.text.starts_with("spam")))
        .count();
    assert!(
        relayed <= 4,
        "{relayed} of 10 spam messages relayed (burst 3)"
    );
}
