//! Which ICE addresses the server will offer browsers, worked out from its interfaces
//! and the `ice.*` settings the way webrtc-ice gathers them (interface and IP filters,
//! loopback only when an `ice.ips` entry is loopback, NAT 1:1 replacing host
//! addresses, STUN/TURN of its own adding server-reflexive and relayed ones), and
//! whether a browser elsewhere could reach any of them.
//!
//! Pure ([`plan`] takes the interfaces as data) so that the server's startup log and
//! `plaza doctor` say the same thing, and tests need no network.

use std::fmt;
use std::net::IpAddr;

use tracing::{info, warn};

use crate::config::IceConfig;

/// One address of one local interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    pub interface: String,
    pub ip: IpAddr,
}

/// How far an address reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Loopback, unspecified or link-local: this machine (or this link) only.
    ThisMachine,
    /// A private range (RFC 1918, CGNAT, IPv6 ULA): browsers on the same network only.
    PrivateNetwork,
    /// Anything else: browsers on the internet.
    Public,
}

/// A host candidate address the server will announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedAddress {
    /// What browsers are told.
    pub ip: IpAddr,
    /// The local address it stands for (equal to `ip` unless NAT 1:1 maps it).
    pub local: IpAddr,
    pub interface: String,
    /// Whether `ip` comes from `ice.nat_1to1_ips`.
    pub nat_1to1: bool,
    pub reach: Reach,
}

/// A STUN or TURN server the server's own connections use (`ice.servers`): it adds a
/// server-reflexive (STUN) or relayed (TURN) candidate at gathering time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaServer {
    pub url: String,
    pub relay: bool,
}

/// Why no browser elsewhere could reach the server, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Nothing at all is announced.
    NoAddress,
    /// Only loopback (or link-local) addresses.
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
                "the server announces only {} (this machine only): browsers on other \
                 machines cannot reach it. Set ice.ips to a reachable address, or \
                 ice.nat_1to1_ips to the public IP",
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceAddressPlan {
    pub addresses: Vec<OfferedAddress>,
    pub via_servers: Vec<ViaServer>,
    /// Local addresses that NAT 1:1 is on for but has no mapping: announced as they are.
    pub unmapped: Vec<IpAddr>,
    /// `None` when some browser elsewhere can reach an address (or a TURN/STUN server
    /// of the server's own may give one).
    pub problem: Option<Problem>,
}

/// What `ice` makes of these interfaces.
pub fn plan(ice: &IceConfig, interfaces: &[LocalAddress]) -> IceAddressPlan {
    let include_loopback = ice.ips.iter().any(IpAddr::is_loopback);
    let gathered: Vec<&LocalAddress> = interfaces
        .iter()
        .filter(|a| ice.interfaces.is_empty() || ice.interfaces.contains(&a.interface))
        .filter(|a| !a.ip.is_loopback() || include_loopback)
        .filter(|a| ice.ips.is_empty() || ice.ips.contains(&a.ip))
        .collect();
    let mappings: Vec<(IpAddr, Option<IpAddr>)> = ice
        .nat_1to1_ips
        .iter()
        .filter_map(|m| {
            let mut parts = m.split('/');
            let public = parts.next()?.trim().parse().ok()?;
            let local = parts.next().and_then(|l| l.trim().parse().ok());
            Some((public, local))
        })
        .collect();
    let mut unmapped = Vec::new();
    let mut addresses: Vec<OfferedAddress> = Vec::new();
    for a in gathered {
        let mapped = if mappings.is_empty() {
            None
        } else {
            // As webrtc-ice's mapper: "public/local" maps that local address; one bare
            // public IP stands for every local address of its family.
            let exact = mappings
                .iter()
                .find(|(_, local)| *local == Some(a.ip))
                .map(|(p, _)| *p);
            let sole = mappings
                .iter()
                .filter(|(p, local)| local.is_none() && p.is_ipv4() == a.ip.is_ipv4())
                .map(|(p, _)| *p)
                .next();
            let found = exact.or(sole);
            if found.is_none() {
                unmapped.push(a.ip);
            }
            found
        };
        let ip = mapped.unwrap_or(a.ip);
        if addresses.iter().any(|o| o.ip == ip && o.local == a.ip) {
            continue;
        }
        addresses.push(OfferedAddress {
            ip,
            local: a.ip,
            interface: a.interface.clone(),
            nat_1to1: mapped.is_some(),
            reach: reach(ip),
        });
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
    let best = addresses.iter().map(|a| a.reach).max();
    let ips = |r: Reach| -> Vec<IpAddr> {
        addresses
            .iter()
            .filter(|a| a.reach == r)
            .map(|a| a.ip)
            .collect()
    };
    // A STUN or TURN server of its own may give the server a reachable address that no
    // interface shows (what they answer is only known at gathering time).
    let problem = if !via_servers.is_empty() {
        None
    } else {
        match best {
            None => Some(Problem::NoAddress),
            Some(Reach::ThisMachine) => Some(Problem::OnlyThisMachine(ips(Reach::ThisMachine))),
            Some(Reach::PrivateNetwork) => Some(Problem::OnlyPrivate(ips(Reach::PrivateNetwork))),
            Some(Reach::Public) => None,
        }
    };
    IceAddressPlan {
        addresses,
        via_servers,
        unmapped,
        problem,
    }
}

/// How far `ip` reaches (198.18.0.0/15 and the documentation ranges count as public:
/// they are what tests and examples use for public addresses).
pub fn reach(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() || v4.is_unspecified() || v4.is_link_local() {
                Reach::ThisMachine
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Reach::PrivateNetwork
            } else {
                Reach::Public
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() || v6.is_unspecified() || (first & 0xffc0) == 0xfe80 {
                Reach::ThisMachine
            } else if (first & 0xfe00) == 0xfc00 {
                Reach::PrivateNetwork
            } else if let Some(v4) = v6.to_ipv4_mapped() {
                reach(IpAddr::V4(v4))
            } else {
                Reach::Public
            }
        }
    }
}

impl IceAddressPlan {
    /// One line per offered address and server, and a loud warning when no browser
    /// elsewhere could reach the server.
    pub fn log(&self) {
        for a in &self.addresses {
            let how = if a.nat_1to1 {
                format!("NAT 1:1 for {} on {}", a.local, a.interface)
            } else {
                format!("host address on {}", a.interface)
            };
            info!(ip = %a.ip, reach = ?a.reach, "ICE: offering {} ({how})", a.ip);
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
        if let Some(problem) = &self.problem {
            warn!("ICE: NO ADDRESS A BROWSER ELSEWHERE CAN REACH: {problem}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaza_protocol::IceServer;

    fn local(interface: &str, ip: &str) -> LocalAddress {
        LocalAddress {
            interface: interface.into(),
            ip: ip.parse().unwrap(),
        }
    }

    fn machine() -> Vec<LocalAddress> {
        vec![
            local("lo", "127.0.0.1"),
            local("lo", "::1"),
            local("eth0", "10.0.0.2"),
            local("eth0", "fe80::1"),
            local("eth1", "203.0.113.9"),
        ]
    }

    fn ips(p: &IceAddressPlan) -> Vec<String> {
        p.addresses.iter().map(|a| a.ip.to_string()).collect()
    }

    #[test]
    fn default_gathers_every_non_loopback_address() {
        let p = plan(&IceConfig::default(), &machine());
        assert_eq!(ips(&p), ["10.0.0.2", "fe80::1", "203.0.113.9"]);
        assert_eq!(p.problem, None);
    }

    #[test]
    fn only_loopback_is_a_problem() {
        let ice = IceConfig {
            ips: vec!["127.0.0.1".parse().unwrap()],
            ..IceConfig::default()
        };
        let p = plan(&ice, &machine());
        assert_eq!(ips(&p), ["127.0.0.1"]);
        assert_eq!(
            p.problem,
            Some(Problem::OnlyThisMachine(vec!["127.0.0.1".parse().unwrap()]))
        );
        assert!(p.problem.unwrap().to_string().contains("ice.nat_1to1_ips"));
        // A machine with nothing but loopback, default settings: nothing at all.
        let p = plan(&IceConfig::default(), &[local("lo", "127.0.0.1")]);
        assert_eq!(p.problem, Some(Problem::NoAddress));
    }

    #[test]
    fn private_without_nat_is_a_problem_and_nat_fixes_it() {
        let mut ice = IceConfig {
            interfaces: vec!["eth0".into()],
            ..IceConfig::default()
        };
        let p = plan(&ice, &machine());
        // fe80::1 is link-local: it does not count as private.
        assert_eq!(
            p.problem,
            Some(Problem::OnlyPrivate(vec!["10.0.0.2".parse().unwrap()]))
        );
        ice.nat_1to1_ips = vec!["198.51.100.4".into()];
        let p = plan(&ice, &machine());
        assert_eq!(ips(&p), ["198.51.100.4", "fe80::1"]);
        assert!(p.addresses[0].nat_1to1);
        assert_eq!(p.addresses[0].local.to_string(), "10.0.0.2");
        assert_eq!(p.unmapped, vec!["fe80::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.problem, None);
    }

    #[test]
    fn pairs_map_their_own_local_address_only() {
        let ice = IceConfig {
            nat_1to1_ips: vec!["198.51.100.4/10.0.0.2".into()],
            ..IceConfig::default()
        };
        let p = plan(&ice, &machine());
        assert_eq!(ips(&p), ["198.51.100.4", "fe80::1", "203.0.113.9"]);
        assert_eq!(p.unmapped.len(), 2);
    }

    #[test]
    fn a_turn_server_of_its_own_is_enough() {
        let ice = IceConfig {
            ips: vec!["10.0.0.2".parse().unwrap()],
            servers: vec![IceServer {
                urls: vec![
                    "turn:turn.example.com:3478".into(),
                    "stun:s.example.com".into(),
                ],
                username: Some("u".into()),
                credential: Some("c".into()),
            }],
            ..IceConfig::default()
        };
        let p = plan(&ice, &machine());
        assert_eq!(ips(&p), ["10.0.0.2"]);
        assert_eq!(p.problem, None);
        assert!(p.via_servers[0].relay);
        assert!(!p.via_servers[1].relay);
    }

    #[test]
    fn reach_of_ranges() {
        let r = |s: &str| reach(s.parse().unwrap());
        assert_eq!(r("127.0.0.1"), Reach::ThisMachine);
        assert_eq!(r("169.254.1.1"), Reach::ThisMachine);
        assert_eq!(r("192.168.1.1"), Reach::PrivateNetwork);
        assert_eq!(r("172.20.0.1"), Reach::PrivateNetwork);
        assert_eq!(r("100.64.0.1"), Reach::PrivateNetwork);
        assert_eq!(r("fd00::1"), Reach::PrivateNetwork);
        assert_eq!(r("198.18.0.1"), Reach::Public);
        assert_eq!(r("2001:db8::1"), Reach::Public);
    }
}
