//! The announced-addresses check: one line per address the server will put in its ICE
//! candidates, and a loud failure or warning when no browser could reach any of them.

use super::report::Check;
use crate::ice_addresses::{scope, Announcement, Problem, Scope};

pub fn check(a: &Announcement) -> Vec<Check> {
    let mut out = Vec::new();
    for addr in &a.addresses {
        let from = if addr.mapped {
            format!(
                "{} on {} via ice.nat_1to1_ips",
                addr.local.ip, addr.local.interface
            )
        } else {
            addr.local.interface.clone()
        };
        let what = format!("announces {} ({from}), {}", addr.ip, a.ports);
        out.push(match addr.scope() {
            Scope::Public => Check::ok("address", format!("{what}: public")),
            Scope::Private => Check::ok(
                "address",
                format!("{what}: private, reachable only from its own network"),
            ),
            Scope::LinkLocal => Check::ok(
                "address",
                format!("{what}: link-local, useless to browsers but harmless"),
            ),
            Scope::Loopback => Check::warn(
                "address",
                format!("{what}: loopback, reachable only from this host"),
                "remove loopback addresses from ice.ips unless browsers run on this host",
            ),
        });
    }
    // A dropped link-local address (the IPv6 fe80:: every interface has) costs nothing.
    for d in a
        .dropped
        .iter()
        .filter(|d| scope(d.local.ip) != Scope::LinkLocal)
    {
        out.push(Check::warn(
            "address",
            format!(
                "{} ({}) is not announced: {}",
                d.local.ip, d.local.interface, d.why
            ),
            "add a public/local pair for it to ice.nat_1to1_ips, or leave it out with ice.ips",
        ));
    }
    for s in &a.via_servers {
        let what = if s.relay {
            "relayed candidates through TURN"
        } else {
            "server-reflexive candidates from STUN"
        };
        out.push(Check::ok(
            "address",
            format!("announces {what} {} (ice.servers)", s.url),
        ));
    }
    // The same verdict as the startup log's warning.
    match &a.problem {
        None => {}
        Some(Problem::OnlyPrivate(_)) => out.push(Check::warn(
            "address",
            "NO PUBLIC ADDRESS: the server announces only private addresses, so browsers \
             outside its network cannot send it media",
            "if the host has a public IP through 1:1 NAT (cloud VMs, Docker), set \
             ice.nat_1to1_ips to it (--nat-1to1-ip, PLAZA_NAT_1TO1_IPS), or give the server \
             a TURN server (ice.servers); a LAN-only deployment can ignore this",
        )),
        Some(Problem::NoAddress | Problem::OnlyThisMachine(_)) => out.push(Check::fail(
            "address",
            format!(
                "NO ADDRESS A BROWSER CAN REACH: the server would announce {}",
                if a.addresses.is_empty() {
                    "no address at all".to_string()
                } else {
                    let ips: Vec<String> = a.addresses.iter().map(|x| x.ip.to_string()).collect();
                    format!("only {} (loopback or link-local)", ips.join(", "))
                }
            ),
            "give the host a routable address and leave ice.ips empty (or list that address \
             in it); behind NAT, also set ice.nat_1to1_ips to the public IP",
        )),
    }
    out
}
