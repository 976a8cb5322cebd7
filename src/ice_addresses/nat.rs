//! `ice.nat_1to1_ips` as webrtc-ice's external IP mapper reads and refuses it.

use std::net::IpAddr;

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
    /// whose sides are of different families, a local address mapped twice.
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
                    if m.pairs.iter().any(|(_, l)| *l == local) {
                        return Err(format!("{entry:?}: {local} is mapped twice"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_mappings_webrtc_ice_would_refuse() {
        let bad = |v: &[&str]| {
            NatMapping::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).is_err()
        };
        assert!(bad(&["1.2.3.4", "5.6.7.8"]));
        assert!(bad(&["1.2.3.4", "5.6.7.8/10.0.0.1"]));
        assert!(bad(&["1.2.3.4/::1"]));
        assert!(bad(&["example.com"]));
        assert!(bad(&["1.2.3.4/10.0.0.1", "5.6.7.8/10.0.0.1"]));
        assert!(!bad(&["1.2.3.4", "2001:db8::1"]));
        assert!(!bad(&["1.2.3.4/10.0.0.1", "5.6.7.8/10.0.0.2"]));
    }
}
