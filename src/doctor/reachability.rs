//! Is the media UDP port reachable from outside? A TURN relay (outside, by definition
//! of a TURN server) sends datagrams to each announced address on the media port, and
//! a socket bound to that port here must receive them.
//!
//! With one port (`ice.udp_port`) held by a running server the socket cannot be bound:
//! the doctor then says so instead of guessing (the server's UDP mux drops datagrams
//! that are not ICE checks for a live session, so sending to it proves nothing). With a
//! port range it uses a free port of the range; with ephemeral ports, any port.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::report::Check;
use super::turn_checks::Relay;
use crate::ice_addresses::{Announcement, MediaPorts, Scope};

pub async fn check(
    announced: &Announcement,
    relay: Option<&Relay>,
    within: Duration,
) -> Vec<Check> {
    let Some(relay) = relay else {
        return vec![Check::warn(
            "udp",
            "media port reachability not checked: it needs a TURN allocation to send from, \
             and none succeeded",
            "configure a TURN server (turn.urls + turn.secret) and fix the turn lines above",
        )];
    };
    let relayed = relay.allocation.relayed_addr();
    let targets: Vec<IpAddr> = announced
        .addresses
        .iter()
        .filter(|a| matches!(a.scope(), Scope::Public | Scope::Private))
        .filter(|a| a.ip.is_ipv4() == relayed.is_ipv4())
        .map(|a| a.ip)
        .collect();
    if targets.is_empty() {
        return vec![Check::warn(
            "udp",
            "media port reachability not checked: no routable announced address of the TURN \
             relay's address family",
            "fix the address lines above",
        )];
    }
    let socket = match bind_media_port(announced.ports).await {
        Ok(s) => s,
        Err(check) => return vec![check],
    };
    let port = match socket.local_addr() {
        Ok(a) => a.port(),
        Err(e) => return vec![Check::warn("udp", format!("media socket: {e}"), "retry")],
    };
    let mut out = Vec::new();
    for ip in targets {
        let target = SocketAddr::new(ip, port);
        let what = format!(
            "UDP {target} from the TURN relay {relayed} ({})",
            relay.label
        );
        match probe_once(&socket, relay, target, within).await {
            Ok(()) => out.push(Check::ok("udp", format!("{what}: reachable"))),
            Err(why) => out.push(Check::fail(
                "udp",
                format!("{what}: NOT REACHABLE from outside ({why})"),
                format!(
                    "open UDP {} in this host's firewall and the provider's security group, \
                     forward it to this host if it is behind NAT, and check that {ip} is this \
                     host's public address (ice.nat_1to1_ips)",
                    match announced.ports {
                        MediaPorts::Single(p) => p.to_string(),
                        MediaPorts::Range(a, b) => format!("{a}-{b}"),
                        MediaPorts::Ephemeral =>
                            "1024-65535 (ephemeral ports; or set ice.udp_port and open only it)"
                                .into(),
                    }
                ),
            )),
        }
    }
    out
}

async fn bind_media_port(ports: MediaPorts) -> Result<UdpSocket, Check> {
    let candidates: Vec<u16> = match ports {
        MediaPorts::Single(p) => vec![p],
        MediaPorts::Range(a, b) => (a..=b).collect(),
        MediaPorts::Ephemeral => vec![0],
    };
    let mut last = None;
    for port in candidates {
        match UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port))).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.map(|e| e.to_string()).unwrap_or_default();
    Err(match ports {
        MediaPorts::Single(p) => Check::warn(
            "udp",
            format!(
                "media port reachability not checked: UDP {p} is in use here ({e}), most \
                 likely by the running plaza, whose UDP mux ignores anything but ICE checks \
                 for its own sessions"
            ),
            "stop plaza for a moment and run `plaza doctor` again to check the port",
        ),
        other => Check::warn(
            "udp",
            format!("media port reachability not checked: no port of {other} is free ({e})"),
            "run `plaza doctor` when fewer calls are in progress",
        ),
    })
}

/// Sends a tagged datagram from the relay every 250 ms until it arrives or `within`.
async fn probe_once(
    socket: &UdpSocket,
    relay: &Relay,
    target: SocketAddr,
    within: Duration,
) -> Result<(), String> {
    let tag = format!("plaza-doctor {} {}", target, rand_tag());
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 1500];
    let mut send_error = None;
    while tokio::time::Instant::now() < deadline {
        if let Err(e) = relay.allocation.send_to(tag.as_bytes(), target).await {
            send_error = Some(e.to_string());
        }
        let wait = tokio::time::Instant::now() + Duration::from_millis(250);
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(wait.min(deadline), socket.recv_from(&mut buf)).await
        {
            if &buf[..n] == tag.as_bytes() {
                return Ok(());
            }
        }
    }
    Err(match send_error {
        Some(e) => format!("the relay could not send: {e}"),
        None => format!(
            "nothing arrived within {}",
            humantime::format_duration(within)
        ),
    })
}

fn rand_tag() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}
