//! The client's real address when Plaza runs behind reverse proxies.
//!
//! A proxy's `X-Forwarded-For` or `Forwarded` (RFC 7239) header says whom it is talking
//! for, but anyone can send those headers, so they are believed only when the TCP peer
//! is a configured trusted proxy (`access.trusted_proxies`). The header is then walked
//! from right to left (the nearest hop first), skipping trusted proxies, and the first
//! address that is not one is the client (nginx's `real_ip_recursive on`). Entries left
//! of it were written by the client itself and mean nothing. A malformed header (an
//! entry that is not an address, `for=unknown`, an obfuscated node, bad quoting) makes
//! the peer address the answer: better to limit the proxy than to believe a guess.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: `10.0.0.0/8`, `2001:db8::/32`, or a single address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen through an IPv6 socket is `::ffff:a.b.c.d`.
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u32::from(ip).into(), 32, self.prefix) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(ip), 128, self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `bits` with only the top `prefix` of `width` bits kept.
fn mask(bits: u128, width: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(width - prefix);
    if host_bits >= 128 {
        0
    } else {
        (bits >> host_bits) << host_bits
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network (a.b.c.d/n)"))?;
        let ip = ip.to_canonical();
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0-{width}"))?,
        };
        let network = match ip {
            IpAddr::V4(v4) => IpAddr::V4((mask(u32::from(v4).into(), 32, prefix) as u32).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask(u128::from(v6), 128, prefix).into()),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Which header the trusted proxies set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most load balancers).
    XForwardedFor,
    /// `Forwarded: for=client, for="[2001:db8::1]:4711"` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

impl FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            other => Err(format!(
                "{other:?}: use x-forwarded-for or forwarded (the header your proxy sets)"
            )),
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The trusted proxies and the header they set.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    pub proxies: Vec<Cidr>,
    pub header: ForwardedHeader,
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|c| c.contains(ip))
    }

    /// The client's address: `peer` (the TCP peer) unless it is a trusted proxy, then
    /// what the header's values (every line of it, in order; `None` for a line that is
    /// not text) say, as described in the module docs.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        header_values: impl IntoIterator<Item = Option<&'a str>>,
    ) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let Some(lines) = header_values.into_iter().collect::<Option<Vec<_>>>() else {
            return peer;
        };
        if lines.is_empty() {
            return peer;
        }
        let Some(hops) = parse_hops(self.header, &lines.join(",")) else {
            return peer;
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        // Every hop trusted: the leftmost is as far as anyone can tell.
        client.to_canonical()
    }
}

/// The addresses a header lists, left to right; `None` if any entry is malformed.
pub fn parse_hops(header: ForwardedHeader, value: &str) -> Option<Vec<IpAddr>> {
    let hops = split_unquoted(value, ',')?
        .into_iter()
        .map(|element| match header {
            ForwardedHeader::XForwardedFor => parse_node(element.trim()),
            ForwardedHeader::Forwarded => forwarded_for(element),
        })
        .collect::<Option<Vec<_>>>()?;
    (!hops.is_empty()).then_some(hops)
}

/// The `for=` of one `Forwarded` element (`for=1.2.3.4;proto=https;by=...`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_unquoted(element, ';')? {
        let (key, value) = pair.trim().split_once('=')?;
        if key.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None; // two `for` in one element
            }
            found = Some(parse_node(&unquote(value.trim())?)?);
        }
    }
    found
}

/// `"..."` with `\x` escapes, or a bare token.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return (!value.contains('"')).then(|| value.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Splits on `sep` outside double quotes; `None` on an unterminated quote.
fn split_unquoted(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    if quoted || escaped {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:5678`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok.then(|| ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))?;
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (ip, port) = node.rsplit_once(':')?;
    is_port(port).then(|| ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))?
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies {
            proxies: list.iter().map(|c| c.parse().unwrap()).collect(),
            header,
        }
    }

    fn xff(list: &[&str]) -> TrustedProxies {
        proxies(list, ForwardedHeader::XForwardedFor)
    }

    fn client(t: &TrustedProxies, peer: &str, lines: &[&str]) -> IpAddr {
        t.client_ip(ip(peer), lines.iter().map(|l| Some(*l)))
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains(ip("10.200.0.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped IPv6");
        assert!(!net.contains(ip("11.0.0.1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "host",
            "::/129",
            "10.0.0.0/x",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let t = xff(&["10.0.0.0/8"]);
        assert_eq!(client(&t, "203.0.113.5", &["1.2.3.4"]), ip("203.0.113.5"));
        assert_eq!(
            client(&xff(&[]), "127.0.0.1", &["1.2.3.4"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_trusted_peer_is_believed_for_the_nearest_untrusted_hop() {
        let t = xff(&["10.0.0.0/8", "192.0.2.1"]);
        assert_eq!(
            client(&t, "10.0.0.2", &["198.51.100.7"]),
            ip("198.51.100.7")
        );
        // The client wrote "6.6.6.6" itself; 198.51.100.7 is what our proxies saw.
        assert_eq!(
            client(&t, "10.0.0.2", &["6.6.6.6, 198.51.100.7, 192.0.2.1"]),
            ip("198.51.100.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client(&t, "10.0.0.2", &["6.6.6.6", "198.51.100.7", "10.9.9.9"]),
            ip("198.51.100.7")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            client(&t, "10.0.0.2", &["10.0.0.9, 192.0.2.1"]),
            ip("10.0.0.9")
        );
        // No header: the proxy itself.
        assert_eq!(client(&t, "10.0.0.2", &[]), ip("10.0.0.2"));
        // Ports and IPv6 forms.
        assert_eq!(
            client(&t, "10.0.0.2", &["198.51.100.7:4711"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(&t, "10.0.0.2", &["[2001:db8::7]:4711"]),
            ip("2001:db8::7")
        );
        assert_eq!(client(&t, "10.0.0.2", &["2001:db8::7"]), ip("2001:db8::7"));
        assert_eq!(
            client(&t, "::ffff:10.0.0.2", &["198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn malformed_headers_fall_back_to_the_peer() {
        let t = xff(&["10.0.0.0/8"]);
        for bad in [
            "",
            "not-an-ip",
            "198.51.100.7,,",
            "198.51.100.7, garbage",
            "198.51.100.7:port",
            "[2001:db8::7",
            "\"198.51.100.7",
            "unknown",
        ] {
            assert_eq!(client(&t, "10.0.0.2", &[bad]), ip("10.0.0.2"), "{bad:?}");
        }
        // A header line that is not text.
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), [Some("198.51.100.7"), None]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_rfc_7239() {
        let t = proxies(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        assert_eq!(
            client(
                &t,
                "10.0.0.2",
                &["for=198.51.100.7;proto=https;by=10.0.0.2"]
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(
                &t,
                "10.0.0.2",
                &[r#"for=6.6.6.6, For="[2001:db8:cafe::17]:4711", for=10.1.1.1"#]
            ),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            client(&t, "10.0.0.2", &[r#"for="198.51.100.7:80";host="a,b""#]),
            ip("198.51.100.7"),
            "a quoted comma is not a separator"
        );
        for bad in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=1.2.3.4;for=5.6.7.8",
            "for=\"1.2.3.4",
            "for",
        ] {
            assert_eq!(client(&t, "10.0.0.2", &[bad]), ip("10.0.0.2"), "{bad:?}");
        }
        // X-Forwarded-For is not read when Forwarded is configured.
        let lines: [Option<&str>; 0] = [];
        assert_eq!(t.client_ip(ip("10.0.0.2"), lines), ip("10.0.0.2"));
    }
}
