//! The server's ICE settings as a deployment relies on them: with the UDP mux
//! (`ice.udp_port`) every candidate of every connection is that one port (the only one
//! a firewall or `docker run -p` has to open), and with NAT 1:1 (`ice.nat_1to1_ips`)
//! the candidates announce the public address instead of the private one.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use plaza::config::Config;
use plaza_client::{Event, Participant};
use plaza_protocol::{PeerTarget, ServerMessage};
use plaza_tools::testing::{loopback_config, TestServer};

/// A documentation address (RFC 5737, TEST-NET-3): it stands for the public IP and is
/// never contacted. The NAT tests only read the server's candidates; no ICE agent
/// sends a check to it.
const PUBLIC_IP: &str = "203.0.113.7";

/// One candidate line, the fields a deployment cares about.
#[derive(Debug)]
struct Candidate {
    line: String,
    protocol: String,
    address: String,
    port: u16,
    typ: String,
}

fn parse(line: &str) -> Candidate {
    // candidate:<foundation> <component> <protocol> <priority> <address> <port> typ <type> ...
    let f: Vec<&str> = line
        .trim_start_matches("a=")
        .trim_start_matches("candidate:")
        .split_whitespace()
        .collect();
    assert!(
        f.len() >= 8 && f[6] == "typ",
        "not a candidate line: {line:?}"
    );
    Candidate {
        line: line.to_string(),
        protocol: f[2].to_lowercase(),
        address: f[4].to_string(),
        port: f[5].parse().expect("candidate port"),
        typ: f[7].to_string(),
    }
}

/// A server with `edit` applied and the UDP mux on a port free right now; another
/// port if someone takes it before the server binds it.
fn server_with_mux(edit: impl Fn(&mut Config)) -> (TestServer, u16) {
    init_logs();
    let mut last = String::new();
    for _ in 0..5 {
        let port = UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        let mut config = loopback_config();
        config.ice.udp_port = Some(port);
        edit(&mut config);
        match TestServer::start(config) {
            Ok(server) => return (server, port),
            Err(e) => last = e.to_string(),
        }
    }
    panic!("server with the UDP mux did not start: {last}");
}

/// Waits until the server has finished gathering for both of `p`'s connections, and
/// returns every candidate it announced, per connection.
async fn server_candidates(p: &Participant) -> Vec<(PeerTarget, Candidate)> {
    p.wait_for(
        "end of server candidates on both connections",
        WAIT,
        |events| {
            let done = |t: PeerTarget| {
                events.iter().any(|e| {
                matches!(e, Event::ServerCandidate { target, candidate: None } if *target == t)
            })
            };
            (done(PeerTarget::Publisher) && done(PeerTarget::Subscriber)).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{}: {e}", p.id));
    p.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::ServerCandidate {
                target,
                candidate: Some(c),
            } => Some((target, parse(&c.candidate))),
            _ => None,
        })
        .collect()
}

/// Two participants, four peer connections, one UDP port: every candidate the server
/// announces is UDP on `ice.udp_port`, media flows both ways, and each connection's
/// selected pair really sends to that port.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn udp_mux_every_server_candidate_uses_the_one_port() {
    let (server, port) = server_with_mux(|_| {});
    let ann = join(&server, "mux", "Ann").await;
    let bob = join(&server, "mux", "Bob").await;
    wait_media_from(&ann, &[&bob], 30).await;
    wait_media_from(&bob, &[&ann], 30).await;

    for p in [&ann, &bob] {
        let candidates = server_candidates(p).await;
        for target in [PeerTarget::Publisher, PeerTarget::Subscriber] {
            assert!(
                candidates.iter().any(|(t, _)| *t == target),
                "{}: the server announced a candidate for the {target:?} connection",
                p.id
            );
        }
        for (target, c) in &candidates {
            assert_eq!(c.protocol, "udp", "{}/{target:?}: {}", p.id, c.line);
            assert_eq!(
                c.port, port,
                "{}/{target:?}: every candidate on the mux port {port}: {}",
                p.id, c.line
            );
        }
        for target in [PeerTarget::Publisher, PeerTarget::Subscriber] {
            let pair = p
                .selected_pair(target)
                .await
                .unwrap_or_else(|| panic!("{}/{target:?}: a selected pair", p.id));
            assert_eq!(
                pair.remote.port, port,
                "{}/{target:?}: media goes to the mux port: {pair}",
                p.id
            );
        }
    }

    drop((ann, bob));
    server
        .wait_until_empty(Duration::from_secs(5))
        .await
        .unwrap();
}

/// What the server announces for a publisher connection, read over a bare WebSocket:
/// join, send a real offer (which carries no candidate, so the server checks nothing),
/// and collect candidates until the server's end-of-candidates.
async fn announced_candidates(server: &TestServer) -> Vec<Candidate> {
    let mut ws = RawClient::connect(server).await;
    ws.join("nat", "Ann").await;
    let offer =
        serde_json::json!({"type": "offer", "target": "publisher", "sdp": real_offer().await});
    ws.send(offer.to_string()).await;
    let mut lines = Vec::new();
    loop {
        match ws.recv().await {
            Received::Message(ServerMessage::Answer { sdp, .. }) => lines.extend(
                sdp.lines()
                    .filter(|l| l.starts_with("a=candidate:"))
                    .map(str::to_string),
            ),
            Received::Message(ServerMessage::Candidate {
                candidate: Some(c), ..
            }) => lines.push(c.candidate),
            Received::Message(ServerMessage::Candidate {
                candidate: None, ..
            }) => break,
            Received::Message(ServerMessage::Error { code, message }) => {
                panic!("server refused the offer: {code}: {message}")
            }
            Received::Message(_) => {}
            Received::Closed(c) => panic!("closed ({c:?}) before end of candidates"),
        }
    }
    lines.iter().map(|l| parse(l)).collect()
}

/// NAT 1:1: the server on 127.0.0.1 announces the configured public address in its
/// host candidates, and never the private one it really listens on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_1to1_announces_the_public_address() {
    let server = server_with(|c| c.ice.nat_1to1_ips = vec![PUBLIC_IP.into()]);
    let candidates = announced_candidates(&server).await;
    assert!(!candidates.is_empty(), "the server announced candidates");
    for c in &candidates {
        assert_eq!(c.typ, "host", "{}", c.line);
        assert_eq!(c.address, PUBLIC_IP, "announces the public IP: {}", c.line);
    }
    assert!(
        candidates.iter().all(|c| !c.line.contains("127.0.0.1")),
        "the private address does not leak: {candidates:?}"
    );
}

/// The layout docker-compose.yml recommends, both settings at once: every candidate
/// is exactly `<public IP> <mux port> typ host`, the one address and port a browser
/// must reach (and the one port `docker run -p` publishes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_1to1_with_udp_mux_announces_public_ip_and_mux_port() {
    let (server, port) = server_with_mux(|c| c.ice.nat_1to1_ips = vec![PUBLIC_IP.into()]);
    let candidates = announced_candidates(&server).await;
    assert!(!candidates.is_empty(), "the server announced candidates");
    for c in &candidates {
        assert_eq!(
            (
                c.protocol.as_str(),
                c.address.as_str(),
                c.port,
                c.typ.as_str()
            ),
            ("udp", PUBLIC_IP, port, "host"),
            "{}",
            c.line
        );
    }
}
