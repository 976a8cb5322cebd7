//! Safe by default: who may open a WebSocket (Origin, connection caps), whose address a
//! client has behind proxies, sockets that never join, room capacity before any peer
//! connection, and kicks and closures that last.

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use plaza_protocol::auth::{expiry_in, mint, Claims};
use plaza_protocol::ServerMessage;
use plaza_tools::testing::TestServer;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "an-admin-key-for-tests";

/// Opens `/ws` with extra request headers: the socket, or the refusal's status and body.
async fn upgrade(
    server: &TestServer,
    headers: &[(&str, &str)],
) -> Result<RawClient, (u16, String)> {
    let mut req = server.ws_url().into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(RawClient { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

fn forwarded_for(ip: &str) -> [(&'static str, String); 1] {
    [("X-Forwarded-For", ip.to_string())]
}

async fn upgrade_from(server: &TestServer, ip: &str) -> Result<RawClient, (u16, String)> {
    let [(k, v)] = forwarded_for(ip);
    upgrade(server, &[(k, &v)]).await
}

/// A counter from `/metrics`, by its full name with labels.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let (_, text) = http(server.addr, "GET", "/metrics", &[]).await;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
}

/// Sends `join` and returns the refusal's code, or "joined".
async fn try_join(c: &mut RawClient, room: &str, name: &str, token: Option<&str>) -> String {
    let mut msg = serde_json::json!({"type": "join", "room": room, "name": name});
    if let Some(t) = token {
        msg["token"] = t.into();
    }
    c.send(msg.to_string()).await;
    loop {
        match c.recv().await {
            Received::Message(ServerMessage::Joined { .. }) => return "joined".into(),
            Received::Message(ServerMessage::Error { code, .. }) => return code,
            Received::Message(_) => continue,
            Received::Closed(code) => panic!("closed ({code:?}) before an answer to join"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_upgrade_checks_the_origin() {
    let server = server_with(|c| c.access.allowed_origins = vec!["https://app.example".into()]);
    let own = format!("http://{}", server.addr);
    // The web client served by this server, and clients that are not pages.
    assert!(
        upgrade(&server, &[("Origin", &own)]).await.is_ok(),
        "same host"
    );
    assert!(upgrade(&server, &[]).await.is_ok(), "no Origin");
    assert!(
        upgrade(&server, &[("Origin", "https://app.example")])
            .await
            .is_ok(),
        "listed origin"
    );
    let (status, body) = upgrade(&server, &[("Origin", "https://evil.example")])
        .await
        .err()
        .expect("a foreign origin is refused");
    assert_eq!(status, 403);
    assert!(
        body.contains("https://evil.example") && body.contains("allowed_origins"),
        "{body}"
    );
    // Same host name, another port: another origin.
    let other_port = format!("http://127.0.0.1:{}", server.addr.port() + 1);
    assert_eq!(
        upgrade(&server, &[("Origin", &other_port)])
            .await
            .err()
            .map(|e| e.0),
        Some(403)
    );
    assert_eq!(
        metric(
            &server,
            "plaza_connections_refused_total{reason=\"origin\"}"
        )
        .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trusted_proxy_s_forwarded_address_is_what_the_join_limit_counts() {
    let server = server_with(|c| {
        c.access.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.limits.joins_per_ip_per_minute = 2;
    });
    let mut kept = Vec::new();
    for i in 0..2 {
        // The client wrote a fake address itself; the proxy (127.0.0.1) appended the real one.
        let mut c = upgrade(&server, &[("X-Forwarded-For", "6.6.6.6, 203.0.113.1")])
            .await
            .unwrap();
        assert_eq!(
            try_join(&mut c, "p", &format!("A{i}"), None).await,
            "joined"
        );
        kept.push(c);
    }
    let ips: Vec<Option<IpAddr>> = server
        .registry
        .connections()
        .into_iter()
        .map(|(_, c)| c.client_ip)
        .collect();
    assert!(
        ips.iter()
            .all(|ip| *ip == Some("203.0.113.1".parse().unwrap())),
        "the registry (and the logs) know the forwarded address: {ips:?}"
    );
    let mut third = upgrade_from(&server, "203.0.113.1").await.unwrap();
    assert_eq!(try_join(&mut third, "p", "A2", None).await, "rate_limited");
    // Another client behind the same proxy has its own budget.
    let mut other = upgrade_from(&server, "203.0.113.2").await.unwrap();
    assert_eq!(try_join(&mut other, "p", "B", None).await, "joined");
    // A malformed header is the proxy's own address, 127.0.0.1, with a fresh budget.
    let mut bad = upgrade(&server, &[("X-Forwarded-For", "203.0.113.1, nonsense")])
        .await
        .unwrap();
    assert_eq!(try_join(&mut bad, "p", "C", None).await, "joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untrusted_peer_s_forwarded_header_is_ignored() {
    let server = server_with(|c| c.limits.joins_per_ip_per_minute = 2);
    let mut kept = Vec::new();
    for (i, ip) in ["203.0.113.1", "203.0.113.2"].iter().enumerate() {
        let mut c = upgrade_from(&server, ip).await.unwrap();
        assert_eq!(
            try_join(&mut c, "u", &format!("A{i}"), None).await,
            "joined"
        );
        kept.push(c);
    }
    let mut third = upgrade_from(&server, "203.0.113.3").await.unwrap();
    assert_eq!(
        try_join(&mut third, "u", "A3", None).await,
        "rate_limited",
        "all three came from 127.0.0.1, which no one trusts"
    );
    assert!(server
        .registry
        .connections()
        .iter()
        .all(|(_, c)| c.client_ip == Some("127.0.0.1".parse().unwrap())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_are_capped_in_total_and_per_address() {
    // Addresses come from a trusted proxy here, so one test host can be several clients.
    let server = server_with(|c| {
        c.access.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.limits.max_connections = 3;
        c.limits.max_connections_per_ip = 2;
    });
    let mut a1 = upgrade_from(&server, "198.51.100.1").await.unwrap();
    let _a2 = upgrade_from(&server, "198.51.100.1").await.unwrap();
    let (status, body) = upgrade_from(&server, "198.51.100.1").await.err().unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("from this address"), "{body}");
    let mut b1 = upgrade_from(&server, "198.51.100.2").await.unwrap();
    let (status, body) = upgrade_from(&server, "198.51.100.3").await.err().unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("limit"), "{body}");

    // Those already in are unaffected.
    assert_eq!(try_join(&mut b1, "caps", "B", None).await, "joined");
    // One leaves: its place is free again (once its session has ended).
    a1.send(r#"{"type":"leave"}"#).await;
    let _ = a1.close_code().await;
    let deadline = Instant::now() + WAIT;
    let _c1 = loop {
        match upgrade_from(&server, "198.51.100.3").await {
            Ok(c) => break c,
            Err((503, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("after a leave: {e:?}"),
        }
    };
    assert_eq!(
        metric(
            &server,
            "plaza_connections_refused_total{reason=\"address_full\"}"
        )
        .await,
        1.0
    );
    assert!(
        metric(
            &server,
            "plaza_connections_refused_total{reason=\"server_full\"}"
        )
        .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_socket_that_never_joins_is_closed_even_if_it_pings() {
    let server = server_with(|c| c.heartbeat.join_timeout = Duration::from_millis(800));
    let mut member = RawClient::connect(&server).await;
    member.join("t", "Member").await;
    let mut idle = RawClient::connect(&server).await;
    let started = Instant::now();
    // Pings (WebSocket and protocol) all along; pongs to the server's pings go out as
    // the client reads.
    let code = loop {
        idle.ws.send(Message::Ping(b"hi".to_vec())).await.unwrap();
        idle.send(r#"{"type":"ping"}"#).await;
        match tokio::time::timeout(Duration::from_millis(100), idle.recv()).await {
            Ok(Received::Closed(code)) => break code,
            Ok(Received::Message(_)) | Err(_) => {}
        }
        assert!(started.elapsed() < WAIT, "the idle socket was never closed");
    };
    let took = started.elapsed();
    assert_eq!(code, Some(plaza_protocol::close::JOIN_TIMEOUT));
    assert!(took >= Duration::from_millis(700), "closed after {took:?}");
    // The member's timer ran out before the idle one's: it is still served.
    member.send(r#"{"type":"ping"}"#).await;
    loop {
        match member.recv().await {
            Received::Message(ServerMessage::Pong) => break,
            Received::Message(_) => continue,
            Received::Closed(c) => panic!("the member was closed ({c:?})"),
        }
    }
    assert_eq!(server.registry.counts().participants, 1);
    assert!(metric(&server, "plaza_errors_total{code=\"join_timeout\"}").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_room_refuses_before_any_peer_connection_is_made() {
    let server = server_with(|c| c.limits.max_participants_per_room = 1);
    let mut ann = RawClient::connect(&server).await;
    ann.join("small", "Ann").await;
    let pcs = Arc::clone(&server.stats.peer_connections);
    assert_eq!(pcs.load(Ordering::Acquire), 2, "Ann's two peer connections");

    // Watch the gauge as closely as a thread can while Bob is refused: a peer
    // connection made and closed for him would show as 3 or 4 for milliseconds.
    let peak = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop, pcs) = (Arc::clone(&peak), Arc::clone(&stop), Arc::clone(&pcs));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                peak.fetch_max(pcs.load(Ordering::Acquire), Ordering::AcqRel);
                std::thread::yield_now();
            }
        })
    };
    for name in ["Bob", "Cy", "Di"] {
        let mut c = RawClient::connect(&server).await;
        assert_eq!(try_join(&mut c, "small", name, None).await, "room_full");
    }
    stop.store(true, Ordering::Release);
    sampler.join().unwrap();
    assert_eq!(
        peak.load(Ordering::Acquire),
        2,
        "refused joins made peer connections"
    );
}

async fn admin(server: &TestServer, path: &str) -> (u16, String) {
    http(server.addr, "DELETE", path, &[("X-Api-Key", KEY)]).await
}

/// Retries `join` until it gets in, returning how long that took.
async fn rejoin_when_allowed(
    server: &TestServer,
    room: &str,
    name: &str,
    token: Option<&str>,
) -> Duration {
    let started = Instant::now();
    loop {
        let mut c = RawClient::connect(server).await;
        match try_join(&mut c, room, name, token).await.as_str() {
            "joined" => return started.elapsed(),
            "kicked" | "room_closed" if started.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("rejoin refused with {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kicked_participant_stays_out_for_the_chosen_time() {
    let server = server_with(|c| {
        c.admin.api_key = KEY.into();
        // Bob reads nothing while Ann waits out her ban: no heartbeat drop meanwhile.
        c.heartbeat.timeout = Duration::from_secs(10);
    });
    let mut ann = RawClient::connect(&server).await;
    let ann_id = ann.join("k", "Ann").await;
    let mut bob = RawClient::connect(&server).await;
    bob.join("k", "Bob").await;

    let (status, body) = admin(
        &server,
        &format!("/admin/rooms/k/participants/{ann_id}?ban_seconds=2"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"ban_seconds\":2"), "{body}");
    assert_eq!(ann.error_code().await, "kicked");
    let kicked_at = Instant::now();

    // Ann (same name, same address) is refused, with the time left.
    let mut again = RawClient::connect(&server).await;
    again
        .send(r#"{"type":"join","room":"k","name":"Ann"}"#)
        .await;
    let (code, message) = loop {
        match again.recv().await {
            Received::Message(ServerMessage::Error { code, message }) => break (code, message),
            Received::Message(_) => continue,
            Received::Closed(c) => panic!("closed ({c:?}) without an error"),
        }
    };
    assert_eq!(code, "kicked");
    assert!(message.contains("join again in"), "{message}");
    assert_eq!(again.close_code().await, Some(1008));
    // Others are not: another name here, Ann in another room.
    let mut cy = RawClient::connect(&server).await;
    assert_eq!(try_join(&mut cy, "k", "Cy", None).await, "joined");
    let mut ann_elsewhere = RawClient::connect(&server).await;
    assert_eq!(
        try_join(&mut ann_elsewhere, "other", "Ann", None).await,
        "joined"
    );

    rejoin_when_allowed(&server, "k", "Ann", None).await;
    let out_for = kicked_at.elapsed();
    assert!(
        out_for >= Duration::from_millis(1800) && out_for < Duration::from_secs(5),
        "Ann got back in {out_for:?} after the kick"
    );
    // Bob never noticed any of it.
    bob.send(r#"{"type":"ping"}"#).await;
    loop {
        match bob.recv().await {
            Received::Message(ServerMessage::Pong) => break,
            Received::Message(_) => continue,
            Received::Closed(c) => panic!("Bob was closed ({c:?})"),
        }
    }

    // Bad durations are refused and change nothing.
    let (status, _) = admin(
        &server,
        &format!("/admin/rooms/k/participants/{ann_id}?ban_seconds=soon"),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_tokens_a_kick_follows_the_subject_not_the_name() {
    const SECRET: &str = "a-test-secret-of-some-length";
    let token = |sub: &str| {
        mint(
            SECRET,
            &Claims {
                room: "vip".into(),
                sub: sub.into(),
                name: None,
                publish: true,
                subscribe: true,
                exp: expiry_in(Duration::from_secs(60)),
                iat: None,
                aud: Vec::new(),
                iss: None,
            },
        )
        .unwrap()
    };
    let server = server_with(|c| {
        c.admin.api_key = KEY.into();
        c.auth.secret = SECRET.into();
    });
    let mut ann = RawClient::connect(&server).await;
    assert_eq!(
        try_join(&mut ann, "vip", "Ann", Some(&token("ann"))).await,
        "joined"
    );
    let ann_id = server.registry.connections()[0].0.to_string();
    let (status, _) = admin(
        &server,
        &format!("/admin/rooms/vip/participants/{ann_id}?ban_seconds=60"),
    )
    .await;
    assert_eq!(status, 202);
    let mut renamed = RawClient::connect(&server).await;
    assert_eq!(
        try_join(&mut renamed, "vip", "Not Ann", Some(&token("ann"))).await,
        "kicked",
        "a new display name does not make a new participant"
    );
    let mut zed = RawClient::connect(&server).await;
    assert_eq!(
        try_join(&mut zed, "vip", "Ann", Some(&token("zed"))).await,
        "joined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_room_stays_closed_for_the_chosen_time() {
    let server = server_with(|c| c.admin.api_key = KEY.into());
    let mut ann = RawClient::connect(&server).await;
    ann.join("c", "Ann").await;
    let mut other = RawClient::connect(&server).await;
    other.join("elsewhere", "Bob").await;

    let (status, body) = admin(&server, "/admin/rooms/c?closed_for_seconds=2").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(ann.error_code().await, "kicked");
    let closed_at = Instant::now();
    let mut late = RawClient::connect(&server).await;
    assert_eq!(try_join(&mut late, "c", "Late", None).await, "room_closed");
    let mut fine = RawClient::connect(&server).await;
    assert_eq!(try_join(&mut fine, "elsewhere", "Cy", None).await, "joined");

    rejoin_when_allowed(&server, "c", "Ann", None).await;
    let closed_for = closed_at.elapsed();
    assert!(
        closed_for >= Duration::from_millis(1800) && closed_for < Duration::from_secs(5),
        "the room opened again {closed_for:?} after closing"
    );
}
