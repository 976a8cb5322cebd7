//! Who may open a WebSocket at all, decided before the upgrade: the page's `Origin`
//! and the connection caps (in total and per client address).
//!
//! The Origin check stops a page on another site from using a visitor's browser to
//! join rooms (cross-site WebSocket hijacking: browsers send cookies and reach
//! intranet servers, and WebSockets have no same-origin rule of their own). Browsers
//! always send `Origin` on a WebSocket; a request without one is not from a page (our
//! Rust client, curl, a load tool), and a non-browser client could write any Origin
//! anyway, so it is allowed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

/// Whether a page at `origin` may open `/ws` on a server reached as `host` (the
/// request's `Host` header). Allowed: no `Origin`; an Origin whose host:port is
/// `host`; an Origin listed in `allowed` (exactly, case-insensitive); any with `*`.
/// `Err` says why not, for the 403.
pub fn check_origin(
    origin: Option<&str>,
    host: Option<&str>,
    allowed: &[String],
) -> Result<(), String> {
    let Some(origin) = origin else {
        return Ok(());
    };
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim().trim_end_matches('/').eq_ignore_ascii_case(&origin))
    {
        return Ok(());
    }
    if let (Some((scheme, authority)), Some(host)) = (origin.split_once("://"), host) {
        let default_port = match scheme {
            "http" => ":80",
            "https" => ":443",
            _ => "",
        };
        let strip = |a: &str| -> String {
            let a = a.to_ascii_lowercase();
            match a.strip_suffix(default_port) {
                Some(bare) if !default_port.is_empty() => bare.to_string(),
                _ => a,
            }
        };
        if !authority.contains('/') && strip(authority) == strip(host.trim()) {
            return Ok(());
        }
    }
    Err(format!(
        "a page at {origin} may not open a WebSocket here: it is not this server ({}) \
         and not in access.allowed_origins",
        host.unwrap_or("no Host header")
    ))
}

/// Why a connection was refused before the upgrade (the `/metrics` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `Origin` not allowed: 403.
    Origin,
    /// `limits.max_connections` reached: 503.
    ServerFull,
    /// `limits.max_connections_per_ip` reached for the client's address: 429.
    AddressFull,
}

impl Refused {
    pub const ALL: [Refused; 3] = [Refused::Origin, Refused::ServerFull, Refused::AddressFull];

    pub fn label(self) -> &'static str {
        match self {
            Refused::Origin => "origin",
            Refused::ServerFull => "server_full",
            Refused::AddressFull => "address_full",
        }
    }
}

/// Open WebSocket connections, in total and per client address, with their caps.
#[derive(Debug)]
pub struct ConnectionSlots {
    max_total: usize,
    max_per_address: usize,
    total: AtomicUsize,
    per_address: DashMap<IpAddr, usize>,
}

impl ConnectionSlots {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_address,
            total: AtomicUsize::new(0),
            per_address: DashMap::new(),
        })
    }

    /// A slot for one connection from `ip`, held until the connection ends.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        // Under the address's entry lock, so two connections from one address cannot
        // both take its last slot.
        let mut mine = self.per_address.entry(ip).or_insert(0);
        if *mine >= self.max_per_address {
            return Err(Refused::AddressFull);
        }
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            let empty = *mine == 0;
            drop(mine);
            if empty {
                self.per_address.remove_if(&ip, |_, n| *n == 0);
            }
            return Err(Refused::ServerFull);
        }
        *mine += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            ip,
        })
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// One connection's place in [`ConnectionSlots`]; given back when dropped (the session
/// actor holds it).
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ConnectionSlots>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut n) = self.slots.per_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
        }
        self.slots.per_address.remove_if(&self.ip, |_, n| *n == 0);
        self.slots.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(origin: Option<&str>, host: &str, allowed: &[&str]) -> bool {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        check_origin(origin, Some(host), &allowed).is_ok()
    }

    #[test]
    fn origins() {
        assert!(ok(None, "plaza.example:8080", &[]), "no Origin: not a page");
        assert!(ok(
            Some("http://plaza.example:8080"),
            "plaza.example:8080",
            &[]
        ));
        assert!(ok(Some("https://Plaza.example"), "plaza.example", &[]));
        assert!(ok(Some("https://plaza.example"), "plaza.example:443", &[]));
        assert!(ok(Some("http://plaza.example"), "plaza.example:80", &[]));
        assert!(!ok(Some("http://evil.example"), "plaza.example", &[]));
        assert!(!ok(
            Some("http://plaza.example:8081"),
            "plaza.example:8080",
            &[]
        ));
        assert!(!ok(Some("https://plaza.example"), "plaza.example:80", &[]));
        assert!(!ok(Some("null"), "plaza.example", &[]));
        assert!(ok(
            Some("https://app.example"),
            "plaza.example",
            &["https://app.example/"]
        ));
        assert!(!ok(
            Some("https://app.example.evil"),
            "plaza.example",
            &["https://app.example"]
        ));
        assert!(ok(Some("null"), "plaza.example", &["*"]));
        assert!(check_origin(Some("http://a.example"), None, &[]).is_err());
    }

    #[test]
    fn slots_cap_in_total_and_per_address() {
        let slots = ConnectionSlots::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), Refused::AddressFull);
        let _b1 = slots.take(b).unwrap();
        assert_eq!(slots.take(b).unwrap_err(), Refused::ServerFull);
        assert_eq!(slots.total(), 3);
        drop(a1);
        let _b2 = slots.take(b).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), Refused::ServerFull);
        drop(_b2);
        drop(_b1);
        drop(_a2);
        assert_eq!(slots.total(), 0);
        assert!(slots.per_address.is_empty(), "no empty entries left behind");
    }
}
