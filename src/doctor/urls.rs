//! STUN/TURN URLs (RFC 7064/7065) taken apart into what a probe needs: the host, the
//! port and the transports a browser would use for them.

use std::net::SocketAddr;

use crate::rtc::probe::TurnTransport;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceUrl {
    pub url: String,
    /// `turn:`/`turns:` (else `stun:`/`stuns:`).
    pub turn: bool,
    pub host: String,
    pub port: u16,
    /// For TURN: UDP and/or TCP for `turn:` (both when no `?transport=`, as browsers
    /// try both), TLS for `turns:`.
    pub transports: Vec<TurnTransport>,
}

impl IceUrl {
    pub fn parse(url: &str) -> Result<IceUrl, String> {
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| format!("{url:?} has no scheme"))?;
        let (turn, secure) = match scheme {
            "stun" => (false, false),
            "stuns" => (false, true),
            "turn" => (true, false),
            "turns" => (true, true),
            _ => return Err(format!("{url:?}: unknown scheme {scheme:?}")),
        };
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("{url:?}: {p:?} is not a port"))?,
            None if secure => 5349,
            None => 3478,
        };
        let transport = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("transport="))
            .map(str::to_ascii_lowercase);
        let transports = match (turn, secure, transport.as_deref()) {
            (false, _, _) => vec![],
            (true, true, _) => vec![TurnTransport::Tls],
            (true, false, Some("udp")) => vec![TurnTransport::Udp],
            (true, false, Some("tcp")) => vec![TurnTransport::Tcp],
            (true, false, None) => vec![TurnTransport::Udp, TurnTransport::Tcp],
            (true, false, Some(other)) => {
                return Err(format!("{url:?}: unknown transport {other:?}"))
            }
        };
        Ok(IceUrl {
            url: url.to_string(),
            turn,
            host: host.to_string(),
            port,
            transports,
        })
    }

    /// The server's address (DNS for a name; IPv4 first, as the server's own sockets are
    /// IPv4 with the UDP mux).
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_urls_and_their_transports() {
        let u = IceUrl::parse("turn:turn.example.com?transport=tcp").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("turn.example.com", 3478));
        assert_eq!(u.transports, [TurnTransport::Tcp]);
        let u = IceUrl::parse("turn:198.18.0.2:3479").unwrap();
        assert_eq!(u.transports, [TurnTransport::Udp, TurnTransport::Tcp]);
        assert_eq!(u.port, 3479);
        let u = IceUrl::parse("turns:turn.example.com").unwrap();
        assert_eq!(
            (u.port, u.transports.clone()),
            (5349, vec![TurnTransport::Tls])
        );
        let u = IceUrl::parse("stun:[2001:db8::1]:19302").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.turn),
            ("2001:db8::1", 19302, false)
        );
        assert!(IceUrl::parse("turn:host:99999").is_err());
        assert!(IceUrl::parse("turn:host?transport=sctp").is_err());
    }
}
