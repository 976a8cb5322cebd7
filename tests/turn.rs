//! TURN through a real coturn (`use-auth-secret`), with the short-lived credentials
//! Plaza mints in `joined`: what a participant behind a firewall that only lets it
//! reach the TURN server depends on.
//!
//! Needs `turnserver` (Debian package `coturn`); runs inside the loopback-only
//! namespace like every WebRTC test, so coturn must be told `--allow-loopback-peers`.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::coturn::Coturn;
use common::*;
use plaza::turn::rest_credential;
use plaza_client::{Event, Participant};
use plaza_protocol::{IceServer, PeerTarget};
use plaza_tools::testing::TestServer;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::ice_transport::ice_gathering_state::RTCIceGatheringState;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

const SECRET: &str = "plaza-test-turn-secret";
const TTL: Duration = Duration::from_secs(600);

/// A Plaza that mints TURN REST credentials for this coturn.
fn server_for(coturn: &Coturn) -> TestServer {
    server_with(|c| {
        c.turn.urls = vec![coturn.turn_url()];
        c.turn.secret = coturn.secret.clone();
        c.turn.ttl = TTL;
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The TURN entry of `joined`, checked to be what Plaza is configured to mint.
fn minted_turn_server(coturn: &Coturn, p: &Participant) -> (String, String) {
    let turn: Vec<&IceServer> = p
        .ice_servers
        .iter()
        .filter(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .collect();
    assert_eq!(
        turn.len(),
        1,
        "one TURN entry in joined: {:?}",
        p.ice_servers
    );
    assert_eq!(turn[0].urls, vec![coturn.turn_url()]);
    let username = turn[0].username.clone().expect("TURN username in joined");
    let credential = turn[0]
        .credential
        .clone()
        .expect("TURN credential in joined");
    // TURN REST: "<expiry>:<participant id>", expiring `ttl` from now.
    let (expiry, who) = username.split_once(':').expect("expiry:participant");
    assert_eq!(who, p.id, "the username names the participant");
    let expiry: u64 = expiry.parse().expect("expiry is a Unix time");
    let now = unix_now();
    assert!(
        expiry > now && expiry <= now + TTL.as_secs() + 5,
        "expiry {expiry} is within ttl of now ({now})"
    );
    (username, credential)
}

/// One TURN Allocate over UDP, as a browser's ICE agent makes it; the relayed address,
/// or coturn's error.
async fn allocate(coturn: &Coturn, username: &str, password: &str) -> Result<String, String> {
    use webrtc::turn::client::{Client, ClientConfig};
    use webrtc::util::Conn;
    let conn = Arc::new(
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a UDP port"),
    );
    let client = Client::new(ClientConfig {
        stun_serv_addr: String::new(),
        turn_serv_addr: coturn.addr().to_string(),
        username: username.to_string(),
        password: password.to_string(),
        // Learnt from coturn's 401 challenge.
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    client.listen().await.map_err(|e| e.to_string())?;
    let result = match tokio::time::timeout(WAIT, client.allocate()).await {
        Err(_) => Err("no answer to Allocate".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(relay)) => relay
            .local_addr()
            .map(|a| a.to_string())
            .map_err(|e| e.to_string()),
    };
    let _ = client.close().await;
    result
}

/// A participant allowed only relayed candidates (a browser with
/// `iceTransportPolicy: "relay"`, like one behind a firewall that lets only the TURN
/// server through) joins with the credentials from `joined`, and media flows both
/// ways with a participant on direct candidates, through coturn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_only_participant_joins_through_coturn_and_media_flows_both_ways() {
    let coturn = Coturn::start(SECRET);
    let server = server_for(&coturn);

    let mut opts = options(&server, "turn", "Ann");
    opts.relay_only = true;
    let ann = Participant::join(opts).await.expect("Ann joins");
    // No override: Ann uses exactly what `joined` gave her.
    let (ann_user, _) = minted_turn_server(&coturn, &ann);
    let bob = join(&server, "turn", "Bob").await;

    wait_media_from(&ann, &[&bob], 50).await;
    wait_media_from(&bob, &[&ann], 50).await;
    for (rx, tx) in [(&ann, &bob), (&bob, &ann)] {
        let sent = tx.sent(|s| s.hashes.clone());
        let tracks = rx.remote_tracks();
        assert_eq!(tracks.len(), 2, "{}: audio and video", rx.id);
        for t in tracks {
            assert_eq!(t.publisher, tx.id);
            let foreign = t.hashes.iter().filter(|h| !sent.contains(h)).count();
            assert_eq!(foreign, 0, "{}: payloads {} did not send", rx.id, tx.id);
        }
    }

    // Ann's media really went through coturn, both ways: each of her connections sends
    // from a relayed address coturn allocated. Bob's go direct.
    for target in [PeerTarget::Publisher, PeerTarget::Subscriber] {
        let pair = ann
            .selected_pair(target)
            .await
            .unwrap_or_else(|| panic!("Ann's {target:?} connection has a selected pair"));
        assert_eq!(
            pair.local.typ,
            RTCIceCandidateType::Relay,
            "Ann's {target:?} connection: {pair}"
        );
        assert_eq!(
            pair.local.address, "127.0.0.1",
            "coturn's relay address: {pair}"
        );
        // Bob's is host or server-reflexive (he asks coturn for his address too, as
        // `joined` lists it), but never relayed.
        let pair = bob
            .selected_pair(target)
            .await
            .expect("Bob's selected pair");
        assert_ne!(
            pair.local.typ,
            RTCIceCandidateType::Relay,
            "Bob's {target:?}: {pair}"
        );
    }
    // And coturn says so: one allocation per connection for Ann's minted username, and
    // permissions for the peer it relays to (Plaza).
    let allocations = |log: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("user <{ann_user}>")))
            .filter(|l| l.contains("ALLOCATE processed, success"))
            .count()
    };
    coturn
        .wait_log("two allocations for Ann", WAIT, |log| allocations(log) >= 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = coturn.lines_for_user(&ann_user);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("CREATE_PERMISSION processed, success")),
        "coturn granted Ann a permission to reach Plaza:\n{}",
        lines.join("\n")
    );

    drop((ann, bob));
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .unwrap();
}

/// coturn checks what Plaza minted: the credentials from `joined` allocate, while a
/// password made with another secret, an expired username (correctly signed), and a
/// username whose expiry was pushed later (keeping the issued password) are refused
/// with 401. A relay-only participant with expired credentials gets no candidate at
/// all and never connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coturn_refuses_expired_and_wrong_credentials() {
    let coturn = Coturn::start(SECRET);
    let server = server_for(&coturn);
    let mut opts = options(&server, "turn-auth", "Ann");
    opts.audio = false;
    opts.video = None;
    let ann = Participant::join(opts).await.expect("Ann joins");
    let (user, password) = minted_turn_server(&coturn, &ann);

    // The control: what `joined` issued works, so the refusals below are about the
    // credentials, not about reaching coturn.
    let relayed = allocate(&coturn, &user, &password)
        .await
        .expect("coturn accepts the credentials from joined");
    assert!(relayed.starts_with("127.0.0.1:"), "relayed at {relayed}");

    let now = unix_now();
    let expired_user = format!("{}:{}", now - 60, ann.id);
    let stretched_user = format!("{}:{}", now + 365 * 24 * 3600, ann.id);
    let cases = [
        (
            "password signed with another secret",
            user.clone(),
            rest_credential("not-the-secret", &user),
        ),
        (
            "expired a minute ago, correctly signed",
            expired_user.clone(),
            rest_credential(SECRET, &expired_user),
        ),
        (
            "expiry pushed a year later, issued password",
            stretched_user.clone(),
            password.clone(),
        ),
    ];
    for (case, user, password) in &cases {
        let err = allocate(&coturn, user, password)
            .await
            .expect_err(&format!("coturn refuses: {case}"));
        assert!(err.contains("401"), "{case}: refused with 401, got {err}");
    }

    // End to end: a relay-only participant handed expired credentials. Its ICE agent
    // is refused by coturn, so it has no candidate to offer and cannot connect.
    let eve_user = format!("{}:expired-eve", now - 3600);
    let mut opts = options(&server, "turn-auth", "Eve");
    opts.relay_only = true;
    opts.ice_servers_override = Some(vec![IceServer {
        urls: vec![coturn.turn_url()],
        username: Some(eve_user.clone()),
        credential: Some(rest_credential(SECRET, &eve_user)),
    }]);
    let eve = Participant::join(opts).await.expect("Eve joins");
    coturn
        .wait_log("Eve's allocation refused", WAIT, |log| {
            log.lines()
                .any(|l| l.contains(&format!("user <{eve_user}>")) && l.contains("401"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let publisher = eve.publisher_connection();
    let deadline = tokio::time::Instant::now() + WAIT;
    while publisher.ice_gathering_state() != RTCIceGatheringState::Complete {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Eve's gathering completes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sdp = publisher
        .local_description()
        .await
        .expect("Eve's offer")
        .sdp;
    assert!(
        !sdp.contains("a=candidate"),
        "no candidate without a TURN allocation:\n{sdp}"
    );
    let connected = eve.events().iter().any(|e| {
        matches!(
            e,
            Event::PublisherState(RTCPeerConnectionState::Connected)
                | Event::SubscriberState(RTCPeerConnectionState::Connected)
        )
    });
    assert!(!connected, "Eve never connects");
    assert_eq!(eve.packets_received(), 0);
    assert!(
        coturn
            .lines_for_user(&eve_user)
            .iter()
            .all(|l| !l.contains("ALLOCATE processed, success")),
        "coturn never allocated for Eve"
    );

    drop((ann, eve));
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .unwrap();
}

/// The coturn configuration docker-compose.yml ships (deploy/turnserver.conf), run by
/// a real coturn: with `--allowed-peer-ip` naming Plaza's address it relays a
/// relay-only participant's media both ways; naming another address (a wrong
/// PUBLIC_IP in .env) it refuses to relay to Plaza (403), so the participant never
/// connects. That refusal is what keeps the TURN server, whose credentials every
/// visitor gets, from relaying to anything but Plaza.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_coturn_config_relays_to_plaza_and_nowhere_else() {
    // Plaza listens on 127.0.0.1 in these tests: that is its "public" address.
    let coturn = Coturn::start_with_deploy_config(SECRET, "127.0.0.1");
    let server = server_for(&coturn);
    let mut opts = options(&server, "deploy", "Ann");
    opts.relay_only = true;
    let ann = Participant::join(opts).await.expect("Ann joins");
    let bob = join(&server, "deploy", "Bob").await;
    wait_media_from(&ann, &[&bob], 30).await;
    wait_media_from(&bob, &[&ann], 30).await;
    for target in [PeerTarget::Publisher, PeerTarget::Subscriber] {
        let pair = ann.selected_pair(target).await.expect("selected pair");
        assert_eq!(pair.local.typ, RTCIceCandidateType::Relay, "{pair}");
    }
    drop((ann, bob));
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .unwrap();
    drop(server);
    drop(coturn);

    // The allowed peer is not where Plaza is.
    let coturn = Coturn::start_with_deploy_config(SECRET, "127.0.0.2");
    let server = server_for(&coturn);
    let mut opts = options(&server, "deploy", "Eve");
    opts.relay_only = true;
    let eve = Participant::join(opts).await.expect("Eve joins");
    let (eve_user, _) = minted_turn_server(&coturn, &eve);
    // Eve's allocation succeeds (her credentials are good); the permission to send to
    // Plaza is what coturn refuses.
    coturn
        .wait_log("a refused permission for Eve", WAIT, |log| {
            log.lines().any(|l| {
                l.contains(&format!("user <{eve_user}>"))
                    && l.contains("CREATE_PERMISSION")
                    && l.contains("403")
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = coturn.lines_for_user(&eve_user);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ALLOCATE processed, success")),
        "Eve's credentials were accepted:\n{}",
        lines.join("\n")
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("CREATE_PERMISSION processed, success")),
        "coturn never let Eve reach Plaza:\n{}",
        lines.join("\n")
    );
    assert_eq!(eve.packets_received(), 0, "no media without a relay");
    drop(eve);
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .unwrap();
}
