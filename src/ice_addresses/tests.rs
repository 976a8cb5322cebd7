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

fn ips(a: &Announcement) -> Vec<String> {
    a.addresses.iter().map(|a| a.ip.to_string()).collect()
}

#[test]
fn default_gathers_every_non_loopback_address() {
    let a = announced_addresses(&IceConfig::default(), &machine());
    assert_eq!(ips(&a), ["10.0.0.2", "fe80::1", "203.0.113.9"]);
    assert_eq!(a.ports, MediaPorts::Ephemeral);
    assert_eq!(a.problem, None);
}

#[test]
fn only_loopback_is_a_problem() {
    let ice = IceConfig {
        ips: vec!["127.0.0.1".parse().unwrap()],
        ..IceConfig::default()
    };
    let a = announced_addresses(&ice, &machine());
    assert_eq!(ips(&a), ["127.0.0.1"]);
    assert_eq!(a.addresses[0].scope(), Scope::Loopback);
    assert_eq!(
        a.problem,
        Some(Problem::OnlyThisMachine(vec!["127.0.0.1".parse().unwrap()]))
    );
    assert!(a.problem.unwrap().to_string().contains("ice.nat_1to1_ips"));
    // A machine with nothing but loopback, default settings: nothing at all.
    let a = announced_addresses(&IceConfig::default(), &[local("lo", "127.0.0.1")]);
    assert_eq!(a.problem, Some(Problem::NoAddress));
}

#[test]
fn private_without_nat_is_a_problem_and_nat_fixes_it() {
    let mut ice = IceConfig {
        interfaces: vec!["eth0".into()],
        ..IceConfig::default()
    };
    let a = announced_addresses(&ice, &machine());
    // fe80::1 is link-local: it does not count as private.
    assert_eq!(
        a.problem,
        Some(Problem::OnlyPrivate(vec!["10.0.0.2".parse().unwrap()]))
    );
    // A sole public IPv4 maps the IPv4 address; the IPv6 one has no IPv6 mapping and
    // is announced as it is (each connection has its own socket).
    ice.nat_1to1_ips = vec!["198.51.100.4".into()];
    let a = announced_addresses(&ice, &machine());
    assert_eq!(ips(&a), ["198.51.100.4", "fe80::1"]);
    assert!(a.addresses[0].mapped);
    assert_eq!(a.addresses[0].local, local("eth0", "10.0.0.2"));
    assert_eq!(a.unmapped, vec!["fe80::1".parse::<IpAddr>().unwrap()]);
    assert!(a.dropped.is_empty());
    assert_eq!(a.problem, None);
}

#[test]
fn pairs_map_their_own_local_address_only() {
    let ice = IceConfig {
        nat_1to1_ips: vec!["198.51.100.4/10.0.0.2".into()],
        ..IceConfig::default()
    };
    let a = announced_addresses(&ice, &machine());
    assert_eq!(ips(&a), ["198.51.100.4", "fe80::1", "203.0.113.9"]);
    assert_eq!(a.unmapped.len(), 2);
}

#[test]
fn the_udp_mux_drops_unmapped_addresses() {
    let ice = IceConfig {
        udp_port: Some(50000),
        nat_1to1_ips: vec!["198.51.100.4/10.0.0.2".into()],
        ..IceConfig::default()
    };
    let a = announced_addresses(&ice, &machine());
    assert_eq!(ips(&a), ["198.51.100.4"]);
    let dropped: Vec<String> = a.dropped.iter().map(|d| d.local.ip.to_string()).collect();
    assert_eq!(dropped, ["fe80::1", "203.0.113.9"]);
    assert!(a.unmapped.is_empty());
    assert_eq!(a.ports, MediaPorts::Single(50000));
}

#[test]
fn a_port_range_is_reported() {
    let ice = IceConfig {
        udp_port_min: Some(40000),
        udp_port_max: Some(40099),
        ..IceConfig::default()
    };
    let a = announced_addresses(&ice, &machine());
    assert_eq!(a.ports, MediaPorts::Range(40000, 40099));
    assert_eq!(a.ports.to_string(), "UDP ports 40000-40099");
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
    let a = announced_addresses(&ice, &machine());
    assert_eq!(ips(&a), ["10.0.0.2"]);
    assert_eq!(a.problem, None);
    assert!(a.via_servers[0].relay);
    assert!(!a.via_servers[1].relay);
}
