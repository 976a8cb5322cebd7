//! Which ICE addresses the server will offer browsers, worked out from its interfaces
//! and the `ice.*` settings the way webrtc-ice gathers them (`local_interfaces` with the
//! interface and IP filters, loopback only when an `ice.ips` entry is loopback, its NAT
//! 1:1 mapper replacing host addresses, the UDP mux dropping unmapped ones, STUN/TURN of
//! the server's own adding server-reflexive and relayed candidates), and whether a
//! browser elsewhere could reach any of them.
//!
//! Pure ([`announced_addresses`] takes the interfaces as data, listed by
//! [`crate::rtc::local_addresses`]) so that the server's startup log and `plaza doctor`
//! say the same thing, and tests need no network. A leaf: it imports only the settings.

pub(crate) mod nat;
mod scope;

use std::fmt;
use std::net::IpAddr;

use tracing::{info, warn};

use crate::config::IceConfig;

pub use self::nat::NatMapping;
pub use self::scope::{scope, Scope};

/// One address of one local interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalAddress {
    pub interface: String,
    pub ip: IpAddr,
}

/// The port(s) candidates carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaPorts {
    /// `ice.udp_port`: one port for everything (UDP mux).
    Single(u16),
    /// `ice.udp_port_min..=udp_port_max`: one port per peer connection.
    Range(u16, u16),
    /// Neither: any port the kernel picks.
    Ephemeral,
}

impl fmt::Display for MediaPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaPorts::Single(p) => write!(f, "UDP port {p}"),
            MediaPorts::Range(a, b) => write!(f, "UDP ports {a}-{b}"),
            MediaPorts::Ephemeral => f.write_str("any UDP port (ephemeral)"),
        }
    }
}

pub fn media_ports(ice: &IceConfig) -> MediaPorts {
    match (ice.udp_port, ice.udp_port_min, ice.udp_port_max) {
        (Some(p), _, _) => MediaPorts::Single(p),
        (None, Some(a), Some(b)) => MediaPorts::Range(a, b),
        _ => MediaPorts::Ephemeral,
    }
}

/// A host candidate address the server will announce, and the local address behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncedAddress {
    /// What browsers are told.
    pub ip: IpAddr,
    pub local: LocalAddress,
    /// `ip` comes from `ice.nat_1to1_ips` (else it is the local address itself).
    pub mapped: bool,
}

impl AnnouncedAddress {
    pub fn scope(&self) -> Scope {
        scope(self.ip)
    }
}

/// A local address the ICE settings let through but that is not announced, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub local: LocalAddress,
    pub why: &'static str,
}

/// A STUN or TURN server the server's own connections use (`ice.servers`): it adds a
/// server-reflexive (STUN) or relayed (TURN) candidate at gathering time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaServer {
    pub url: String,
    pub relay: bool,
}

/// Why no browser elsewhere could reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Nothing at all is announced.
    NoAddress,
    /// Only loopback or link-local addresses.
    OnlyThisMachine(Vec<IpAddr>),
    /// Only private addresses, not mapped by NAT 1:1.
    OnlyPrivate(Vec<IpAddr>),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ips: &[IpAddr]| {
            ips.iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Problem::NoAddress => write!(
                f,
                "the server announces no ICE address at all, so no browser can send it \
                 media: the machine has only loopback addresses, or ice.ips / \
                 ice.interfaces match none of its addresses. Set ice.ips (and \
                 ice.nat_1to1_ips behind NAT), or give the server a TURN server in \
                 ice.servers"
            ),
            Problem::OnlyThisMachine(ips) => write!(
                f,
                "the server announces only {} (loopback or link-local: this machine \
                 only): browsers on other machines cannot reach it. Set ice.ips to a \
                 reachable address, or ice.nat_1to1_ips to the public IP",
                list(ips)
            ),
            Problem::OnlyPrivate(ips) => write!(
                f,
                "the server announces only private addresses ({}) with no NAT 1:1 mapping: \
                 browsers outside this network cannot reach them. Set ice.nat_1to1_ips to \
                 the public IP that forwards UDP here, or give the server a TURN server \
                 (ice.servers)",
                list(ips)
            ),
        }
    }
}

/// What the server will offer, and whether that is enough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub addresses: Vec<AnnouncedAddress>,
    /// Let through by the filters but not announced (the UDP mux drops what NAT 1:1 has
    /// no public IP for).
    pub dropped: Vec<Dropped>,
    /// Local addresses NAT 1:1 is on for but has no mapping, announced as they are.
    pub unmapped: Vec<IpAddr>,
    pub ports: MediaPorts,
    pub via_servers: Vec<ViaServer>,
    /// `None` when some browser elsewhere can reach an address (or a TURN/STUN server
    /// of the server's own may give one).
    pub problem: Option<Problem>,
}

/// The host candidates' addresses for these settings on a host with these interface
/// addresses. An invalid NAT mapping counts as none here (`Config::validate` and the
/// doctor's configuration check report it).
pub fn announced_addresses(ice: &IceConfig, interfaces: &[LocalAddress]) -> Announcement {
    let include_loopback = ice.ips.iter().any(IpAddr::is_loopback);
    let nat = NatMapping::parse(&ice.nat_1to1_ips).unwrap_or_default();
    let ports = media_ports(ice);
    let mut addresses: Vec<AnnouncedAddress> = Vec::new();
    let mut dropped = Vec::new();
    let mut unmapped = Vec::new();
    for local in interfaces {
        if !ice.interfaces.is_empty() && !ice.interfaces.contains(&local.interface) {
            continue;
        }
        if local.ip.is_loopback() && !include_loopback {
            continue;
        }
        if !ice.ips.is_empty() && !ice.ips.contains(&local.ip) {
            continue;
        }
        let (ip, mapped) = match nat.public_for(local.ip) {
            Some(public) => (public, true),
            None if nat.is_empty() => (local.ip, false),
            // With a mapping set, webrtc-ice keeps an unmapped address as it is when
            // each connection has its own socket, and drops it with the UDP mux.
            None if matches!(ports, MediaPorts::Single(_)) => {
                dropped.push(Dropped {
                    local: local.clone(),
                    why: "ice.nat_1to1_ips has no public IP for it (the UDP mux drops it)",
                });
                continue;
            }
            None => {
                unmapped.push(local.ip);
                (local.ip, false)
            }
        };
        if !addresses.iter().any(|a| a.ip == ip) {
            addresses.push(AnnouncedAddress {
                ip,
                local: local.clone(),
                mapped,
            });
        }
    }
    let via_servers: Vec<ViaServer> = ice
        .servers
        .iter()
        .flat_map(|s| s.urls.iter())
        .map(|url| ViaServer {
            url: url.clone(),
            relay: url.starts_with("turn:") || url.starts_with("turns:"),
        })
        .collect();
    // A STUN or TURN server of its own may give the server a reachable address that no
    // interface shows (what they answer is only known at gathering time).
    let problem = if via_servers.is_empty() {
        problem(&addresses)
    } else {
        None
    };
    Announcement {
        addresses,
        dropped,
        unmapped,
        ports,
        via_servers,
        problem,
    }
}

fn problem(addresses: &[AnnouncedAddress]) -> Option<Problem> {
    let best = addresses.iter().map(|a| a.scope()).max_by_key(|s| s.rank());
    let ips = |keep: fn(Scope) -> bool| -> Vec<IpAddr> {
        addresses
            .iter()
            .filter(|a| keep(a.scope()))
            .map(|a| a.ip)
            .collect()
    };
    match best {
        None => Some(Problem::NoAddress),
        Some(Scope::Public) => None,
        Some(Scope::Private) => Some(Problem::OnlyPrivate(ips(|s| s == Scope::Private))),
        Some(Scope::Loopback | Scope::LinkLocal) => {
            Some(Problem::OnlyThisMachine(ips(Scope::is_this_machine)))
        }
    }
}

impl Announcement {
    /// The startup log: one line per offered address and server, and a loud warning when
    /// no browser elsewhere could reach the server.
    pub fn log(&self) {
        for a in &self.addresses {
            let how = if a.mapped {
                format!("NAT 1:1 for {} on {}", a.local.ip, a.local.interface)
            } else {
                format!("host address on {}", a.local.interface)
            };
            info!(ip = %a.ip, scope = ?a.scope(), "ICE: offering {} ({how}), {}", a.ip, self.ports);
        }
        for s in &self.via_servers {
            let what = if s.relay {
                "relayed candidates through TURN"
            } else {
                "server-reflexive candidates from STUN"
            };
            info!(url = %s.url, "ICE: offering {what} {}", s.url);
        }
        for ip in &self.unmapped {
            warn!(%ip, "ICE: ice.nat_1to1_ips has no mapping for {ip}: it is offered as it is");
        }
        for d in &self.dropped {
            warn!(ip = %d.local.ip, "ICE: {} ({}) is not offered: {}", d.local.ip, d.local.interface, d.why);
        }
        if let Some(problem) = &self.problem {
            warn!("ICE: NO ADDRESS A BROWSER ELSEWHERE CAN REACH: {problem}");
        }
    }
}

#[cfg(test)]
mod tests;
