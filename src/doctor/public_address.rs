//! The public address a STUN server sees this host as, against what the server
//! announces: behind NAT without (or with a wrong) `ice.nat_1to1_ips`, browsers send
//! media to an address that does not lead here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use plaza_protocol::IceServer;

use super::report::Check;
use super::urls::IceUrl;
use crate::config::Config;
use crate::ice_addresses::{Announcement, NatMapping};
use crate::rtc::probe;

/// STUN servers to ask: the `stun:` URLs of `ice_servers` and of the TURN provider's
/// list, else the TURN servers (a TURN server answers STUN Binding requests too).
fn stun_servers(config: &Config, provider: &[IceServer]) -> Vec<IceUrl> {
    let listed = || {
        config
            .ice_servers
            .iter()
            .chain(provider)
            .flat_map(|s| &s.urls)
    };
    let stun: Vec<IceUrl> = listed()
        .filter_map(|u| IceUrl::parse(u).ok())
        .filter(|u| u.url.starts_with("stun:"))
        .collect();
    if !stun.is_empty() {
        return stun;
    }
    let mut turn: Vec<IceUrl> = config
        .turn
        .urls
        .iter()
        .chain(listed())
        .filter_map(|u| IceUrl::parse(u).ok())
        .filter(|u| u.url.starts_with("turn:"))
        .collect();
    turn.dedup_by(|a, b| (&a.host, a.port) == (&b.host, b.port));
    turn
}

/// `provider`: the list the TURN provider handed out (`turn_checks::provider_list`).
pub async fn check(
    config: &Config,
    provider: &[IceServer],
    announced: &Announcement,
    within: Duration,
) -> Vec<Check> {
    let servers = stun_servers(config, provider);
    if servers.is_empty() {
        return vec![Check::warn(
            "nat",
            "no STUN or TURN server configured: cannot check the address this host is seen at",
            "add a STUN server to ice_servers (your coturn answers STUN: \
             [{\"urls\":[\"stun:turn.example.com:3478\"]}])",
        )];
    }
    let nat = NatMapping::parse(&config.ice.nat_1to1_ips).unwrap_or_default();
    let mut out = Vec::new();
    let mut asked: Vec<SocketAddr> = Vec::new();
    for server in servers {
        let addr = match server.resolve().await {
            Ok(a) => a,
            Err(why) => {
                out.push(Check::fail(
                    "nat",
                    format!("STUN server {}: {why}", server.url),
                    "fix the host name in the URL, or this host's DNS",
                ));
                continue;
            }
        };
        if asked.contains(&addr) {
            continue;
        }
        asked.push(addr);
        match probe::stun_mapped_address(addr, within).await {
            Ok(mapped) => out.push(compare(&server.url, mapped.ip(), announced, &nat)),
            Err(e) => out.push(Check::fail(
                "nat",
                format!("STUN server {} ({addr}): {e}", server.url),
                "check that the STUN server runs and that this host may send UDP to it",
            )),
        }
    }
    out
}

fn compare(url: &str, seen: IpAddr, announced: &Announcement, nat: &NatMapping) -> Check {
    if announced.addresses.iter().any(|a| a.ip == seen) {
        return Check::ok(
            "nat",
            format!("STUN server {url} sees this host as {seen}, an announced address"),
        );
    }
    let set = format!(
        "set ice.nat_1to1_ips to {seen} (--nat-1to1-ip {seen}, PLAZA_NAT_1TO1_IPS={seen}) and \
         forward the media UDP port(s) from it to this host"
    );
    let same_family: Vec<String> = nat
        .public_ips()
        .into_iter()
        .filter(|ip| ip.is_ipv4() == seen.is_ipv4())
        .map(|ip| ip.to_string())
        .collect();
    if same_family.is_empty() {
        Check::fail(
            "nat",
            format!(
                "this host is behind NAT: STUN server {url} sees it as {seen}, which the server \
                 does not announce (ice.nat_1to1_ips is not set), so browsers cannot reach it"
            ),
            set,
        )
    } else {
        Check::fail(
            "nat",
            format!(
                "NAT 1:1 mismatch: STUN server {url} sees this host as {seen}, but \
                 ice.nat_1to1_ips announces {}",
                same_family.join(", ")
            ),
            set,
        )
    }
}
