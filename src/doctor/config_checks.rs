//! Configuration mistakes `Config::validate` cannot see (they need the host: its
//! files and interfaces) or that only break at the first call: a web root without the
//! client, ICE IPs or interfaces the host does not have, a NAT 1:1 list webrtc-ice
//! refuses, TURN entries a browser refuses, a port range too small for one room.

use std::net::IpAddr;

use super::report::Check;
use super::urls::IceUrl;
use crate::config::Config;
use crate::ice_addresses::{scope, LocalAddress, NatMapping, Scope};

pub fn check(config: &Config, interfaces: &[LocalAddress]) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(web_root(config));
    out.push(listen(config));
    out.push(auth(config));
    out.extend(ice_ips(config, interfaces));
    out.extend(nat_mapping(config, interfaces));
    out.extend(ice_servers(config));
    out.extend(port_range(config));
    out
}

fn web_root(config: &Config) -> Check {
    let index = config.web_root.join("index.html");
    if index.is_file() {
        Check::ok("web", format!("web client found ({})", index.display()))
    } else {
        Check::fail(
            "web",
            format!(
                "{} is missing: browsers opening the server get 404",
                index.display()
            ),
            format!(
                "point web_root (--web-root, PLAZA_WEB_ROOT) at the folder holding the web \
                 client (the repository's web/), or start plaza from the folder that has web/ \
                 (now {})",
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            ),
        )
    }
}

fn listen(config: &Config) -> Check {
    match std::net::TcpListener::bind(config.listen) {
        Ok(_) => Check::ok("listen", format!("{} is free to listen on", config.listen)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Check::warn(
            "listen",
            format!("{} is in use", config.listen),
            "fine if plaza is running; otherwise another program holds the port: stop it or \
             change listen (--listen, PLAZA_LISTEN)",
        ),
        Err(e) => Check::fail(
            "listen",
            format!("cannot listen on {}: {e}", config.listen),
            "choose another listen address (--listen, PLAZA_LISTEN); ports below 1024 need \
             root or CAP_NET_BIND_SERVICE",
        ),
    }
}

fn auth(config: &Config) -> Check {
    if config.auth.secret.is_empty() {
        Check::warn(
            "auth",
            "auth.secret is empty: anyone who can reach the server can join any room",
            "set auth.secret (PLAZA_AUTH_SECRET, 16+ characters) and give clients tokens from \
             `plaza token`, unless open rooms are what you want",
        )
    } else {
        Check::ok("auth", "rooms need a signed token (auth.secret is set)")
    }
}

fn ice_ips(config: &Config, interfaces: &[LocalAddress]) -> Vec<Check> {
    let mut out = Vec::new();
    for ip in &config.ice.ips {
        if !interfaces.iter().any(|l| l.ip == *ip) {
            out.push(Check::fail(
                "ice",
                format!("ice.ips lists {ip}, which no interface of this host has"),
                format!(
                    "list this host's own addresses in ice.ips (--ice-ip), or leave it empty \
                     for all of them; this host has {}",
                    list_ips(interfaces)
                ),
            ));
        }
    }
    for name in &config.ice.interfaces {
        if !interfaces.iter().any(|l| &l.interface == name) {
            let mut names: Vec<&str> = interfaces.iter().map(|l| l.interface.as_str()).collect();
            names.dedup();
            out.push(Check::fail(
                "ice",
                format!("ice.interfaces lists {name:?}, which this host does not have"),
                format!(
                    "use interface names from `ip addr` (here: {}), or leave ice.interfaces \
                     empty",
                    names.join(", ")
                ),
            ));
        }
    }
    out
}

fn nat_mapping(config: &Config, interfaces: &[LocalAddress]) -> Vec<Check> {
    // `Config::validate` refused a mapping that does not parse before the doctor ran.
    let mapping = NatMapping::parse(&config.ice.nat_1to1_ips).unwrap_or_default();
    let mut out = Vec::new();
    for local in mapping.local_ips() {
        if !interfaces.iter().any(|l| l.ip == local) {
            out.push(Check::fail(
                "nat",
                format!("ice.nat_1to1_ips maps the local address {local}, which this host does not have"),
                format!(
                    "the part after '/' must be one of this host's addresses: {}",
                    list_ips(interfaces)
                ),
            ));
        }
    }
    for public in mapping.public_ips() {
        if scope(public) != Scope::Public {
            out.push(Check::warn(
                "nat",
                format!("ice.nat_1to1_ips announces {public}, which is not a public address"),
                "set it to the address browsers reach this host at (the cloud VM's public or \
                 elastic IP); a private one only works for clients on that network",
            ));
        }
    }
    out
}

fn ice_servers(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    for (i, server) in config.ice_servers.iter().enumerate() {
        for url in &server.urls {
            match IceUrl::parse(url) {
                Err(why) => out.push(Check::fail(
                    "config",
                    format!("ice_servers[{i}]: {why}"),
                    "write it as stun:host[:port] or turn:host[:port][?transport=udp|tcp]",
                )),
                Ok(u) if u.turn && (server.username.is_none() || server.credential.is_none()) => {
                    out.push(Check::fail(
                        "config",
                        format!(
                            "ice_servers[{i}] has the TURN URL {url} without username and \
                             credential: browsers refuse the whole list (InvalidAccessError) \
                             and no call starts"
                        ),
                        "add its username and credential, or move the URL to turn.urls and set \
                         turn.secret so Plaza mints credentials",
                    ))
                }
                Ok(_) => {}
            }
        }
    }
    for url in &config.turn.urls {
        if let Err(why) = IceUrl::parse(url) {
            out.push(Check::fail(
                "config",
                format!("turn.urls: {why}"),
                "write it as turn:host[:port][?transport=udp|tcp] or turns:host[:port]",
            ));
        }
    }
    out
}

fn port_range(config: &Config) -> Vec<Check> {
    let (Some(min), Some(max)) = (config.ice.udp_port_min, config.ice.udp_port_max) else {
        return Vec::new();
    };
    // Two peer connections per participant, one port each per local address.
    let size = usize::from(max - min) + 1;
    let one_room = 2 * config.limits.max_participants_per_room;
    if size < one_room {
        vec![Check::warn(
            "ice",
            format!(
                "ice.udp_port_min..max holds {size} ports, fewer than one full room needs \
                 ({one_room}: two peer connections per participant)"
            ),
            "widen the range (and the firewall rule with it), or use one port for all with \
             ice.udp_port",
        )]
    } else {
        Vec::new()
    }
}

fn list_ips(interfaces: &[LocalAddress]) -> String {
    let ips: Vec<String> = interfaces
        .iter()
        .map(|l| l.ip)
        .filter(|ip: &IpAddr| !ip.is_loopback())
        .map(|ip| ip.to_string())
        .collect();
    if ips.is_empty() {
        "no address but loopback".into()
    } else {
        ips.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaza_protocol::IceServer;

    fn host() -> Vec<LocalAddress> {
        vec![LocalAddress {
            interface: "eth0".into(),
            ip: "10.0.0.5".parse().unwrap(),
        }]
    }

    fn fails(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .filter(|c| c.status == super::super::report::Status::Fail)
            .map(|c| c.what.clone())
            .collect()
    }

    #[test]
    fn host_dependent_mistakes_are_failures() {
        let mut c = Config {
            web_root: "/nonexistent-plaza-web".into(),
            ..Default::default()
        };
        c.ice.ips = vec!["10.9.9.9".parse().unwrap()];
        c.ice.interfaces = vec!["wlan7".into()];
        c.ice.nat_1to1_ips = vec!["203.0.113.7/10.0.0.6".into()];
        c.ice_servers = vec![IceServer {
            urls: vec!["turn:turn.example.com".into()],
            username: None,
            credential: None,
        }];
        let f = fails(&check(&c, &host()));
        for needle in [
            "index.html is missing",
            "ice.ips lists 10.9.9.9",
            "\"wlan7\"",
            "maps the local address 10.0.0.6",
            "without username and credential",
        ] {
            assert!(f.iter().any(|w| w.contains(needle)), "{needle} in {f:#?}");
        }
    }
}
