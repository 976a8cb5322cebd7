//! Who can reach an address: the one classification the startup log and `plaza doctor`
//! share.

use std::net::IpAddr;

/// Who can reach an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Routable on the internet (everything not below; 198.18.0.0/15 and the
    /// documentation ranges count as public: Plaza's tests and examples use them so).
    Public,
    /// RFC 1918, carrier-grade NAT (100.64.0.0/10) or IPv6 unique-local: only hosts on
    /// the same private network.
    Private,
    /// 169.254.0.0/16 or fe80::/10: only the same link.
    LinkLocal,
    /// This host only (or the unspecified address).
    Loopback,
}

impl Scope {
    /// Farther-reaching scopes rank higher (`Public` is the best an address can be).
    pub fn rank(self) -> u8 {
        match self {
            Scope::Loopback => 0,
            Scope::LinkLocal => 1,
            Scope::Private => 2,
            Scope::Public => 3,
        }
    }

    /// Loopback and link-local: no browser on another network (or another link) can
    /// use it.
    pub fn is_this_machine(self) -> bool {
        matches!(self, Scope::Loopback | Scope::LinkLocal)
    }
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
            } else if let Some(v4) = v6.to_ipv4_mapped() {
                scope(IpAddr::V4(v4))
            } else {
                Scope::Public
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_of_ranges() {
        for (ip, s) in [
            ("8.8.8.8", Scope::Public),
            ("198.18.0.1", Scope::Public),
            ("192.168.1.2", Scope::Private),
            ("172.20.0.1", Scope::Private),
            ("100.64.0.1", Scope::Private),
            ("100.100.0.1", Scope::Private),
            ("169.254.1.1", Scope::LinkLocal),
            ("127.0.0.1", Scope::Loopback),
            ("0.0.0.0", Scope::Loopback),
            ("fd00::1", Scope::Private),
            ("fe80::1", Scope::LinkLocal),
            ("::ffff:10.0.0.1", Scope::Private),
            ("2001:db8::1", Scope::Public),
        ] {
            assert_eq!(scope(ip.parse().unwrap()), s, "{ip}");
        }
    }
}
