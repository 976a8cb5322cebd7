//! Token refresh and the token's audience and issuer: with `auth.secret`, a participant
//! is sent fresh tokens before its own expires, so it stays in a call longer than its
//! token lives and gets back in with the latest one after its socket is cut; open rooms
//! get none; a kicked identity gets no more. `auth.audience`/`auth.issuer` are checked
//! only when set.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::proxy::Proxy;
use common::*;
use plaza_client::{ClientError, Event, Participant, ParticipantOptions};
use plaza_protocol::auth::{mint, Claims, TokenVerifier, LEEWAY};
use plaza_protocol::ServerMessage;
use plaza_tools::testing::TestServer;

const SECRET: &str = "a-test-secret-of-some-length";
const ADMIN_KEY: &str = "admin-key-0123456789";

fn token(claims: &Claims) -> String {
    mint(SECRET, claims).expect("mint")
}

/// Unix time with the fraction, for comparing against `exp`.
fn unix_now_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The `token` messages a participant got so far: (token, expires_at).
fn refreshes(p: &Participant) -> Vec<(String, u64)> {
    p.events()
        .iter()
        .filter_map(|e| match e {
            Event::Server(ServerMessage::Token { token, expires_at }) => {
                Some((token.clone(), *expires_at))
            }
            _ => None,
        })
        .collect()
}

async fn refused(o: ParticipantOptions) -> (String, String) {
    match Participant::join(o).await {
        Err(ClientError::Refused { code, message }) => (code, message),
        Err(e) => panic!("unexpected failure {e}"),
        Ok(_) => panic!("joined with a token that should be refused"),
    }
}

/// The done-when of issue 13: with a 10 s token, a participant stays 30 s in a call,
/// then its socket is cut and it rejoins with the token the server refreshed (the
/// original has expired by then and is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_outlives_its_token_and_rejoins_with_the_refreshed_one() {
    let ttl = Duration::from_secs(10);
    // No resume: the cut ends Ann's session at once, so getting back in is a new join.
    let server = server_with(|c| c.auth.secret = SECRET.into());
    let proxy = Proxy::start(server.addr).await;
    let original = Claims {
        name: Some("Ann".into()),
        ..Claims::new("long-call", "ann@example.com", ttl)
    };
    let original_token = token(&original);
    let mut ann_opts = options(&server, "long-call", "Ann");
    ann_opts.url = proxy.url();
    ann_opts.token = Some(original_token.clone());
    let ann = Participant::join(ann_opts.clone())
        .await
        .expect("Ann joins");
    let mut bob_opts = options(&server, "long-call", "Bob");
    bob_opts.token = Some(token(&Claims::new("long-call", "bob@example.com", ttl)));
    let bob = Participant::join(bob_opts).await.expect("Bob joins");
    wait_media_from(&bob, &[&ann], 20).await;
    let joined_at = Instant::now();

    // Each refresh, as it comes: at least 30 s in the call, past the original's expiry
    // (with the leeway the server allows) and at least three refreshes.
    let verifier = TokenVerifier::new(SECRET);
    let past_original = original.exp as f64 + LEEWAY.as_secs_f64() + 1.0;
    let mut seen = 0;
    let mut current_exp = original.exp;
    while seen < 3 || unix_now_f() < past_original || joined_at.elapsed() < Duration::from_secs(30)
    {
        let (t, expires_at) = ann
            .wait_for("a refreshed token", ttl, |events| {
                let got: Vec<_> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Server(ServerMessage::Token { token, expires_at }) => {
                            Some((token.clone(), *expires_at))
                        }
                        _ => None,
                    })
                    .collect();
                got.get(seen).cloned()
            })
            .await
            .unwrap_or_else(|e| panic!("refresh {} never came: {e}", seen + 1));
        seen += 1;
        let now = unix_now_f();
        assert!(
            now < current_exp as f64,
            "refresh {seen} came after the token it replaces expired ({now} >= {current_exp})"
        );
        let claims = verifier
            .verify(Some(&t), "long-call")
            .expect("a refreshed token is valid")
            .claims
            .expect("claims");
        assert_eq!(claims.exp, expires_at);
        assert_eq!(
            claims.exp - claims.iat.expect("iat"),
            ttl.as_secs(),
            "same lifetime"
        );
        assert_eq!(
            Claims {
                exp: original.exp,
                iat: original.iat,
                ..claims.clone()
            },
            original,
            "same claims"
        );
        assert!(claims.exp > current_exp, "later than the one it replaces");
        current_exp = claims.exp;
        assert_eq!(ann.latest_token().as_deref(), Some(t.as_str()));
    }
    assert!(
        seen < 10,
        "{seen} refreshes in 30 s of a 10 s token: too many"
    );
    // Ann was in the call all along: Bob never saw her leave and still gets her media.
    assert!(!has_server_event(&bob, |m| matches!(
        m,
        ServerMessage::ParticipantLeft { participant_id } if participant_id.as_str() == ann.id
    )));
    let before = bob.packets_received();
    bob.wait_media("Ann's media, 30 s in", WAIT, |_| {
        bob.packets_received() > before + 50
    })
    .await
    .expect("media flows");

    // The cut: a TCP reset, no close frame.
    proxy.cut();
    ann.wait_closed(WAIT).await.expect("Ann's socket is reset");
    let latest = ann.latest_token().expect("a token");
    assert_eq!(latest, refreshes(&ann).last().expect("refreshes").0);
    let old_id = ann.id.clone();
    drop(ann);
    bob.wait_for("Ann's old session to end", WAIT, |events| {
        events
            .iter()
            .any(|e| matches!(e, Event::Server(ServerMessage::ParticipantLeft { participant_id }) if participant_id.as_str() == old_id))
            .then_some(())
    })
    .await
    .expect("the cut session ends");

    // The original token is long expired...
    let mut with_original = ann_opts.clone();
    with_original.url = server.ws_url();
    let (code, message) = refused(with_original.clone()).await;
    assert_eq!(code, "unauthorized");
    assert!(message.contains("expired"), "{message}");
    // ...the refreshed one gets Ann back in.
    with_original.token = Some(latest);
    let ann = Participant::join(with_original)
        .await
        .expect("Ann rejoins with the refreshed token");
    wait_media_from(&bob, &[&ann], 20).await;
    wait_media_from(&ann, &[&bob], 20).await;

    ann.leave().await.expect("Ann leaves");
    bob.leave().await.expect("Bob leaves");
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .expect("registry empty: no refresh timer keeps anything alive");
}

/// A `join` with this token on a bare socket: `Ok` with the socket once joined, or the
/// refusal's code and message.
async fn raw_join(
    server: &TestServer,
    room: &str,
    token: Option<&str>,
) -> Result<(RawClient, String), (String, String)> {
    let mut c = RawClient::connect(server).await;
    let mut msg = serde_json::json!({"type": "join", "room": room, "name": "Raw"});
    if let Some(t) = token {
        msg["token"] = t.into();
    }
    c.send(msg.to_string()).await;
    loop {
        match c.recv().await {
            Received::Message(ServerMessage::Joined { participant_id, .. }) => {
                return Ok((c, participant_id.to_string()))
            }
            Received::Message(ServerMessage::Error { code, message }) => {
                return Err((code, message))
            }
            Received::Message(_) => continue,
            Received::Closed(code) => panic!("closed ({code:?}) before joined"),
        }
    }
}

/// Reads messages for `d`, returning the `token` ones (and stopping at a close).
async fn tokens_within(c: &mut RawClient, d: Duration) -> Vec<(String, u64)> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(d, async {
        loop {
            match c.recv().await {
                Received::Message(ServerMessage::Token { token, expires_at }) => {
                    got.push((token, expires_at))
                }
                Received::Message(_) => {}
                Received::Closed(_) => return,
            }
        }
    })
    .await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audience_and_issuer_are_checked_when_configured() {
    let strict = server_with(|c| {
        c.auth.secret = SECRET.into();
        c.auth.audience = Some("plaza-test".into());
        c.auth.issuer = Some("https://issuer.test".into());
    });
    let lax = server_with(|c| c.auth.secret = SECRET.into());
    let ttl = Duration::from_secs(60);
    let with = |aud: &[&str], iss: Option<&str>| {
        token(&Claims {
            aud: aud.iter().map(|a| a.to_string()).collect(),
            iss: iss.map(str::to_string),
            ..Claims::new("r", "u", ttl)
        })
    };
    let good = with(&["plaza-test"], Some("https://issuer.test"));
    let cases = [
        // Either missing claim may be named first (jsonwebtoken checks a HashSet).
        ("no aud or iss", with(&[], None), "names no"),
        (
            "wrong aud",
            with(&["other"], Some("https://issuer.test")),
            "audience",
        ),
        ("no aud", with(&[], Some("https://issuer.test")), "audience"),
        (
            "wrong iss",
            with(&["plaza-test"], Some("https://evil.test")),
            "issuer",
        ),
        ("no iss", with(&["plaza-test"], None), "issuer"),
    ];
    for (what, t, why) in &cases {
        let (code, message) = raw_join(&strict, "r", Some(t))
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: admitted"));
        assert_eq!(code, "unauthorized", "{what}");
        assert!(message.contains(why), "{what}: {message}");
    }
    let (mut c, _) = raw_join(&strict, "r", Some(&good))
        .await
        .expect("matching aud and iss");
    c.send(r#"{"type":"leave"}"#).await;
    // One of several audiences is enough.
    let several = with(&["a", "plaza-test"], Some("https://issuer.test"));
    let (mut c, _) = raw_join(&strict, "r", Some(&several))
        .await
        .expect("aud among several");
    c.send(r#"{"type":"leave"}"#).await;

    // Unset: any aud/iss, or none, as before.
    for (what, t) in [
        ("with", good.clone()),
        ("other", with(&["other"], Some("https://evil.test"))),
        ("without", with(&[], None)),
    ] {
        let (mut c, _) = raw_join(&lax, "r", Some(&t))
            .await
            .unwrap_or_else(|e| panic!("{what}: refused {e:?}"));
        c.send(r#"{"type":"leave"}"#).await;
    }
    for server in [&strict, &lax] {
        server
            .wait_until_empty(Duration::from_secs(5))
            .await
            .expect("registry empty");
    }
}

/// A refreshed token is made while the socket is away like any other message, kept for
/// the resume and delivered then; the resumed session goes on refreshing. It carries
/// the configured audience and issuer, so the strict server admits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_session_keeps_refreshing() {
    let server = server_with(|c| {
        c.auth.secret = SECRET.into();
        c.auth.audience = Some("plaza-test".into());
        c.auth.issuer = Some("https://issuer.test".into());
        c.session.resume_grace = Duration::from_secs(15);
    });
    let original = Claims {
        aud: vec!["plaza-test".into()],
        iss: Some("https://issuer.test".into()),
        ..Claims::new("r", "ann", Duration::from_secs(10))
    };
    let mut c = RawClient::connect(&server).await;
    c.send(
        serde_json::json!({"type":"join","room":"r","name":"Ann","token":token(&original)})
            .to_string(),
    )
    .await;
    let resume_token = match c.recv().await {
        Received::Message(ServerMessage::Joined { resume_token, .. }) => {
            resume_token.expect("a resume token")
        }
        Received::Message(m) => panic!("unexpected {m:?}"),
        Received::Closed(code) => panic!("closed {code:?}"),
    };
    // Gone without a close frame; the first refresh (about 5 s in) happens meanwhile.
    drop(c);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut c = RawClient::connect(&server).await;
    c.send(format!(
        r#"{{"type":"resume","token":"{resume_token}","received":0}}"#
    ))
    .await;
    assert!(matches!(
        c.recv().await,
        Received::Message(ServerMessage::Resumed { .. })
    ));
    let kept = tokens_within(&mut c, Duration::from_millis(500)).await;
    assert_eq!(kept.len(), 1, "the token made while away is delivered");
    let later = tokens_within(&mut c, Duration::from_secs(8)).await;
    assert!(!later.is_empty(), "and refreshing goes on after the resume");
    let strict =
        TokenVerifier::new(SECRET).expecting(Some("plaza-test"), Some("https://issuer.test"));
    for (t, _) in kept.iter().chain(&later) {
        let claims = strict
            .verify(Some(t), "r")
            .expect("valid")
            .claims
            .expect("claims");
        assert_eq!(claims.aud, original.aud);
        assert_eq!(claims.iss, original.iss);
    }
    c.send(r#"{"type":"leave"}"#).await;
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .expect("registry empty");
}

/// Open rooms have no tokens to refresh; and once an identity is kicked from a room,
/// none of its connections gets a fresh token (a rejoin with it would be refused, and
/// it must not outlive the ban).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_rooms_and_kicked_identities_get_no_tokens() {
    let open = server();
    let (mut in_open, _) = raw_join(&open, "r", None).await.expect("open room");

    let server = server_with(|c| {
        c.auth.secret = SECRET.into();
        c.admin.api_key = ADMIN_KEY.into();
    });
    let ttl = Duration::from_secs(10);
    let t = token(&Claims::new("r", "mallory", ttl));
    let (mut first, first_id) = raw_join(&server, "r", Some(&t)).await.expect("joins");
    let (mut second, _) = raw_join(&server, "r", Some(&t)).await.expect("joins twice");
    let (mut bystander, _) = raw_join(&server, "r", Some(&token(&Claims::new("r", "bob", ttl))))
        .await
        .expect("joins");
    let (status, body) = http(
        server.addr,
        "DELETE",
        &format!("/admin/rooms/r/participants/{first_id}?ban_seconds=60"),
        &[("X-Api-Key", ADMIN_KEY)],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(first.error_code().await, "kicked");

    // Longer than a 10 s token's first refresh (about 5 s).
    let (open_tokens, kicked_tokens, bystander_tokens) = tokio::join!(
        tokens_within(&mut in_open, Duration::from_secs(7)),
        tokens_within(&mut second, Duration::from_secs(7)),
        tokens_within(&mut bystander, Duration::from_secs(7)),
    );
    assert!(open_tokens.is_empty(), "open room: {open_tokens:?}");
    assert!(
        kicked_tokens.is_empty(),
        "kicked identity: {kicked_tokens:?}"
    );
    assert!(!bystander_tokens.is_empty(), "the others go on as before");

    for c in [&mut in_open, &mut second, &mut bystander] {
        c.send(r#"{"type":"leave"}"#).await;
    }
    for s in [&open, &server] {
        s.wait_until_empty(Duration::from_secs(5))
            .await
            .expect("registry empty");
    }
}
