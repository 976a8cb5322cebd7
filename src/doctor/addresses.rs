//! Which addresses the server will announce as ICE host candidates, worked out the way
//! webrtc-ice gathers them (`local_interfaces` and its NAT 1:1 mapper), from the ICE
//! settings and the host's interfaces. Pure, so it is tested without a network; the
//! startup log of announced addresses can call the same function.

use std::net::IpAddr;

use crate::config::IceConfig;

/// One address of one interface of this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAddress {
    pub interface: String,
    pub ip: IpAddr,
}

/// Who can reach an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Routable on the internet (everything not below; 198.18.0.0/15, reserved for
    /// benchmarks and used by Plaza's tests, counts as public).
    Public,
    /// RFC 1918, carrier-grade NAT (100.64.0.0/10) or IPv6 unique-local: only hosts on
    /// the same private network.
    Private,
    /// 169.254.0.0/16 or fe80::/10: only the same link.
    LinkLocal,
    /// This host only (or the unspecified address).
    Loopback,
}

pub fn scope(ip: IpAddr) -> Scope {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() || v4.is_unspecified() {
                Scope::Loopback
            } else if v4.is_link_local() {
                Scope::LinkLocal
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Scope::Private
            } else {
                Scope::Public
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() || v6.is_unspecified() {
                Scope::Loopback
            } else if first & 0xffc0 == 0xfe80 {
                Scope::LinkLocal
            } else if first & 0xfe00 == 0xfc00 {
                Scope::Private
            } else {
                Scope::Public
            }
        }
    }
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

impl std::fmt::Display for MediaPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// An address the server puts in its candidates, and the local address behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncedAddress {
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub addresses: Vec<AnnouncedAddress>,
    pub dropped: Vec<Dropped>,
    pub ports: MediaPorts,
}

/// `ice.nat_1to1_ips` as webrtc-ice's mapper reads it: per address family, either one
/// public IP for every local address ("sole") or `public/local` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatMapping {
    sole_v4: Option<IpAddr>,
    sole_v6: Option<IpAddr>,
    pairs: Vec<(IpAddr, IpAddr)>,
}

impl NatMapping {
    /// Fails on what makes webrtc-ice refuse the mapping when the first peer connection
    /// is made: not an IP, two sole IPs of one family, sole and pairs mixed, a pair
    /// whose sides are of different families.
    pub fn parse(entries: &[String]) -> Result<NatMapping, String> {
        let mut m = NatMapping::default();
        for entry in entries {
            let mut parts = entry.split('/');
            let (public, local) = (parts.next(), parts.next());
            if parts.next().is_some() {
                return Err(format!("{entry:?} has more than one '/'"));
            }
            let parse = |s: Option<&str>| -> Result<Option<IpAddr>, String> {
                s.map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| format!("{s:?} in {entry:?} is not an IP address"))
                })
                .transpose()
            };
            let public = parse(public)?.ok_or_else(|| format!("{entry:?} is empty"))?;
            match parse(local)? {
                None => {
                    let (sole, same_family_pairs) = if public.is_ipv4() {
                        (&mut m.sole_v4, m.pairs.iter().any(|(p, _)| p.is_ipv4()))
                    } else {
                        (&mut m.sole_v6, m.pairs.iter().any(|(p, _)| p.is_ipv6()))
                    };
                    if sole.is_some() || same_family_pairs {
                        return Err(format!(
                            "{entry:?}: a single public IP stands for every local address of \
                             its family, so it cannot be combined with another entry of that \
                             family (use public/local pairs for several)"
                        ));
                    }
                    *sole = Some(public);
                }
                Some(local) => {
                    if local.is_ipv4() != public.is_ipv4() {
                        return Err(format!("{entry:?} maps between IPv4 and IPv6"));
                    }
                    let sole = if public.is_ipv4() {
                        m.sole_v4
                    } else {
                        m.sole_v6
                    };
                    if sole.is_some() {
                        return Err(format!(
                            "{entry:?}: a public/local pair cannot be combined with a single \
                             public IP of the same family"
                        ));
                    }
                    m.pairs.push((public, local));
                }
            }
        }
        Ok(m)
    }

    pub fn is_empty(&self) -> bool {
        self == &NatMapping::default()
    }

    /// The public IP `local` is announced as, if any.
    pub fn public_for(&self, local: IpAddr) -> Option<IpAddr> {
        let sole = if local.is_ipv4() {
            self.sole_v4
        } else {
            self.sole_v6
        };
        sole.or_else(|| {
            self.pairs
                .iter()
                .find(|(_, l)| *l == local)
                .map(|(public, _)| *public)
        })
    }

    /// Every public IP the mapping announces.
    pub fn public_ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.sole_v4.into_iter().chain(self.sole_v6).collect();
        ips.extend(self.pairs.iter().map(|(p, _)| *p));
        ips
    }

    /// The local IPs named in pairs.
    pub fn local_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.pairs.iter().map(|(_, l)| *l)
    }
}

/// The host candidates' addresses for these settings on a host with these interface
/// addresses. An invalid NAT mapping counts as none here (the configuration check
/// reports it).
pub fn announced_addresses(ice: &IceConfig, interfaces: &[LocalAddress]) -> Announcement {
    let include_loopback = ice.ips.iter().any(IpAddr::is_loopback);
    let nat = NatMapping::parse(&ice.nat_1to1_ips).unwrap_or_default();
    let ports = media_ports(ice);
    let mut out = Announcement {
        addresses: Vec::new(),
        dropped: Vec::new(),
        ports,
    };
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
        let announced = match nat.public_for(local.ip) {
            Some(public) => Some((public, true)),
            None if nat.is_empty() => Some((local.ip, false)),
            // With a mapping set, webrtc-ice keeps an unmapped address as it is when
            // each connection has its own socket, and drops it with the UDP mux.
            None if matches!(ports, MediaPorts::Single(_)) => None,
            None => Some((local.ip, false)),
        };
        match announced {
            Some((ip, mapped)) => {
                if !out.addresses.iter().any(|a| a.ip == ip) {
                    out.addresses.push(AnnouncedAddress {
                        ip,
                        local: local.clone(),
                        mapped,
                    });
                }
            }
            None => out.dropped.push(Dropped {
                local: local.clone(),
                why: "ice.nat_1to1_ips has no public IP for it (the UDP mux drops it)",
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Vec<LocalAddress> {
        [
            ("lo", "127.0.0.1"),
            ("lo", "::1"),
            ("eth0", "10.0.0.5"),
            ("eth0", "fe80::1"),
            ("eth1", "198.18.0.1"),
        ]
        .iter()
        .map(|(i, ip)| LocalAddress {
            interface: i.to_string(),
            ip: ip.parse().unwrap(),
        })
        .collect()
    }

    fn ips(a: &Announcement) -> Vec<String> {
        a.addresses.iter().map(|a| a.ip.to_string()).collect()
    }

    #[test]
    fn default_settings_announce_every_non_loopback_address() {
        let a = announced_addresses(&IceConfig::default(), &host());
        assert_eq!(ips(&a), ["10.0.0.5", "fe80::1", "198.18.0.1"]);
        assert_eq!(a.ports, MediaPorts::Ephemeral);
    }

    #[test]
    fn a_loopback_ice_ip_is_the_only_address() {
        let ice = IceConfig {
            ips: vec!["127.0.0.1".parse().unwrap()],
            ..Default::default()
        };
        let a = announced_addresses(&ice, &host());
        assert_eq!(ips(&a), ["127.0.0.1"]);
        assert_eq!(a.addresses[0].scope(), Scope::Loopback);
    }

    #[test]
    fn interface_filter_and_sole_nat_mapping() {
        let ice = IceConfig {
            interfaces: vec!["eth0".into()],
            nat_1to1_ips: vec!["203.0.113.7".into()],
            ..Default::default()
        };
        let a = announced_addresses(&ice, &host());
        // The IPv4 address is mapped; the IPv6 one has no IPv6 mapping and stays.
        assert_eq!(ips(&a), ["203.0.113.7", "fe80::1"]);
        assert!(a.addresses[0].mapped);
        assert_eq!(a.addresses[0].local.ip.to_string(), "10.0.0.5");
    }

    #[test]
    fn the_udp_mux_drops_unmapped_addresses() {
        let ice = IceConfig {
            udp_port: Some(50000),
            nat_1to1_ips: vec!["203.0.113.7/10.0.0.5".into()],
            ..Default::default()
        };
        let a = announced_addresses(&ice, &host());
        assert_eq!(ips(&a), ["203.0.113.7"]);
        assert_eq!(a.dropped.len(), 2);
        assert_eq!(a.ports, MediaPorts::Single(50000));
    }

    #[test]
    fn scopes() {
        for (ip, s) in [
            ("8.8.8.8", Scope::Public),
            ("198.18.0.1", Scope::Public),
            ("192.168.1.2", Scope::Private),
            ("172.20.0.1", Scope::Private),
            ("100.100.0.1", Scope::Private),
            ("169.254.1.1", Scope::LinkLocal),
            ("127.0.0.1", Scope::Loopback),
            ("fd00::1", Scope::Private),
            ("fe80::1", Scope::LinkLocal),
            ("2001:db8::1", Scope::Public),
        ] {
            assert_eq!(scope(ip.parse().unwrap()), s, "{ip}");
        }
    }

    #[test]
    fn nat_mappings_webrtc_ice_would_refuse() {
        let bad = |v: &[&str]| {
            NatMapping::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).is_err()
        };
        assert!(bad(&["1.2.3.4", "5.6.7.8"]));
        assert!(bad(&["1.2.3.4", "5.6.7.8/10.0.0.1"]));
        assert!(bad(&["1.2.3.4/::1"]));
        assert!(bad(&["example.com"]));
        assert!(!bad(&["1.2.3.4", "2001:db8::1"]));
        assert!(!bad(&["1.2.3.4/10.0.0.1", "5.6.7.8/10.0.0.2"]));
    }
}
