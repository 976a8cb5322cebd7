//! `plaza doctor` against real deployments on two hosts (network namespaces with a
//! veth pair, made by each test): a correct one passes, and each classic mistake fails
//! with its own message and fix: a wrong NAT 1:1 IP, a blocked media port, a wrong
//! TURN secret, a certificate for another name, a host with only loopback.
//!
//! The binary runs as a person runs it (`ip netns exec HOST plaza doctor FLAGS`), with
//! its configuration on the command line. Needs root (or `unshare -rn`), `ip`, coturn,
//! and `nft` for the blocked port (scripts/test.sh installs them).

#[path = "doctor/hosts.rs"]
mod hosts;

use std::path::PathBuf;

use hosts::{Hosts, Namespace};

const SECRET: &str = "turn-secret-0123";
const MEDIA_PORT: &str = "50000";

/// The flags of a correct deployment on `h`: the UDP mux port, NAT 1:1 = the host's
/// address, STUN and TURN (UDP and TCP) on the TURN host, Plaza minting credentials.
fn deployment(h: &Hosts, nat_ip: &str, secret: &str) -> Vec<String> {
    let t = &h.turn_ip;
    [
        "--web-root=web".to_string(),
        format!("--udp-port={MEDIA_PORT}"),
        format!("--nat-1to1-ip={nat_ip}"),
        format!(r#"--ice-servers=[{{"urls":["stun:{t}:3478"]}}]"#),
        format!("--turn-url=turn:{t}:3478?transport=udp"),
        format!("--turn-url=turn:{t}:3478?transport=tcp"),
        format!("--turn-secret={secret}"),
        "--probe-timeout=2s".into(),
    ]
    .into()
}

/// A self-signed certificate (its own CA) for `names`, as PEM files in a temp folder.
struct Cert {
    dir: PathBuf,
}

impl Cert {
    fn new(tag: &str, names: &[&str]) -> Cert {
        let dir =
            std::env::temp_dir().join(format!("plaza-doctor-cert-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names).expect("certificate");
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), certified.key_pair.serialize_pem()).unwrap();
        Cert { dir }
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_correct_deployment_passes() {
    let mut h = Hosts::new();
    let cert = Cert::new("good", &[&h.turn_ip.clone()]);
    h.start_coturn(SECRET, Some((&cert.cert(), &cert.key())));
    let mut args = deployment(&h, &h.host_ip, SECRET);
    args.push(format!("--turn-url=turns:{}:5349", h.turn_ip));
    args.push(format!("--ca-file={}", cert.cert().display()));
    let d = h.doctor(&args);
    assert_eq!(d.code, Some(0), "{d}");
    assert!(
        d.lines("FAIL", "").is_empty() && !d.stdout.contains("FAIL "),
        "{d}"
    );
    assert!(d.stdout.contains(" 0 FAIL"), "{d}");
    let announced = d.lines("ok", "address");
    assert!(
        announced
            .iter()
            .any(|l| l.contains(&format!("announces {}", h.host_ip))),
        "{d}"
    );
    assert!(
        d.lines("ok", "nat")
            .iter()
            .any(|l| l.contains(&format!("sees this host as {}", h.host_ip))),
        "{d}"
    );
    for transport in ["UDP", "TCP", "TLS"] {
        assert!(
            d.lines("ok", "turn")
                .iter()
                .any(|l| l.contains(&format!("over {transport}: minted credentials allocate"))),
            "TURN over {transport}: {d}"
        );
    }
    assert!(
        d.lines("ok", "turn")
            .iter()
            .any(|l| l.contains("certificate valid for")),
        "{d}"
    );
    let udp = d.lines("ok", "udp");
    assert!(
        udp.iter()
            .any(|l| l.contains(&format!("UDP {}:{MEDIA_PORT}", h.host_ip))
                && l.contains("reachable")),
        "{d}"
    );
}

#[test]
fn a_wrong_nat_1to1_ip_fails_and_names_the_right_one() {
    let mut h = Hosts::new();
    h.start_coturn(SECRET, None);
    let wrong = format!(
        "{}.77",
        h.host_ip.rsplit_once('.').map_or("", |(net, _)| net)
    );
    let d = h.doctor(&deployment(&h, &wrong, SECRET));
    assert_eq!(d.code, Some(1), "{d}");
    let nat = d.lines("FAIL", "nat");
    assert!(
        nat.iter().any(|l| l.contains("NAT 1:1 mismatch")
            && l.contains(&format!("sees this host as {}", h.host_ip))
            && l.contains(&format!("announces {wrong}"))),
        "{d}"
    );
    let fix = d.fix_for("NAT 1:1 mismatch").unwrap_or_default();
    assert!(fix.contains(&format!("--nat-1to1-ip {}", h.host_ip)), "{d}");
    // Media sent to the wrong address goes nowhere: the port check agrees.
    assert!(!d.lines("FAIL", "udp").is_empty(), "{d}");
}

#[test]
fn a_blocked_media_port_fails() {
    let mut h = Hosts::new();
    h.start_coturn(SECRET, None);
    // The host's firewall drops UDP to the media port (as a missing security-group rule
    // or an `ufw` default would); everything else passes.
    let nft = |args: &[&str]| {
        let out = h.host.run("nft", args);
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    nft(&["add", "table", "inet", "doctor"]);
    nft(&[
        "add",
        "chain",
        "inet",
        "doctor",
        "in",
        "{ type filter hook input priority 0; }",
    ]);
    nft(&[
        "add", "rule", "inet", "doctor", "in", "udp", "dport", MEDIA_PORT, "drop",
    ]);
    let d = h.doctor(&deployment(&h, &h.host_ip, SECRET));
    assert_eq!(d.code, Some(1), "{d}");
    let udp = d.lines("FAIL", "udp");
    assert!(
        udp.iter()
            .any(|l| l.contains(&format!("UDP {}:{MEDIA_PORT}", h.host_ip))
                && l.contains("NOT REACHABLE")),
        "{d}"
    );
    assert!(
        d.fix_for("NOT REACHABLE")
            .unwrap_or_default()
            .contains(&format!("open UDP {MEDIA_PORT}")),
        "{d}"
    );
    // Only the port is blamed: the address and TURN are fine.
    assert!(
        d.lines("FAIL", "nat").is_empty() && d.lines("FAIL", "turn").is_empty(),
        "{d}"
    );
}

#[test]
fn a_wrong_turn_secret_fails() {
    let mut h = Hosts::new();
    h.start_coturn(SECRET, None);
    let d = h.doctor(&deployment(&h, &h.host_ip, "not-the-coturn-secret"));
    assert_eq!(d.code, Some(1), "{d}");
    let turn = d.lines("FAIL", "turn");
    assert_eq!(turn.len(), 2, "UDP and TCP both refused: {d}");
    assert!(
        turn.iter().all(|l| l.contains("credentials refused (401")),
        "{d}"
    );
    let fix = d
        .fix_for("over UDP: credentials refused")
        .unwrap_or_default();
    assert!(
        fix.contains("turn.secret must equal coturn's static-auth-secret"),
        "{d}"
    );
    // coturn itself says why it refused (the minted user, a 401).
    let log = h.coturn.as_ref().map(|c| c.log()).unwrap_or_default();
    assert!(log.contains("401"), "coturn log:\n{log}");
}

#[test]
fn a_certificate_for_another_name_fails() {
    let mut h = Hosts::new();
    let cert = Cert::new("other", &["turn.example.com"]);
    h.start_coturn(SECRET, Some((&cert.cert(), &cert.key())));
    let mut args = deployment(&h, &h.host_ip, SECRET);
    args.push(format!("--turn-url=turns:{}:5349", h.turn_ip));
    args.push(format!("--ca-file={}", cert.cert().display()));
    let d = h.doctor(&args);
    assert_eq!(d.code, Some(1), "{d}");
    let turn = d.lines("FAIL", "turn");
    assert!(
        turn.len() == 1 && turn[0].contains("over TLS: TLS certificate is not valid for this name"),
        "{d}"
    );
    // UDP and TCP still allocate: only TLS is blamed.
    assert_eq!(d.lines("ok", "turn").len(), 2, "{d}");
}

#[test]
fn a_host_with_only_loopback_fails_loudly() {
    // A host with no address but loopback, configured as for local development.
    let pid = std::process::id() % 100_000;
    let lone = Namespace::new(format!("pdoc{pid}-lo"));
    let h = Hosts::new();
    let out = lone
        .command(env!("CARGO_BIN_EXE_plaza"))
        .args([
            "doctor",
            "--web-root=web",
            "--ice-ip=127.0.0.1",
            "--probe-timeout=1s",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PLAZA_CONFIG")
        .output()
        .expect("plaza doctor runs");
    drop(h);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL  address")
            && l.contains("NO ADDRESS A BROWSER CAN REACH")
            && l.contains("only 127.0.0.1")),
        "{stdout}"
    );
}

#[test]
fn a_running_server_holding_the_media_port_is_a_warning_not_a_guess() {
    let mut h = Hosts::new();
    h.start_coturn(SECRET, None);
    // The real server on the Plaza host, holding the UDP mux port.
    let _server = KillOnDrop(
        h.host
            .command(env!("CARGO_BIN_EXE_plaza"))
            .args(["--listen=127.0.0.1:18080", "--web-root=web"])
            .arg(format!("--udp-port={MEDIA_PORT}"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("PLAZA_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("plaza starts"),
    );
    // Its socket shows in the namespace's UDP table once bound (port in hex).
    let port_hex = format!(":{:04X}", MEDIA_PORT.parse::<u16>().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !String::from_utf8_lossy(&h.host.run("cat", &["/proc/net/udp"]).stdout)
        .contains(&port_hex)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "plaza never bound UDP {MEDIA_PORT}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let d = h.doctor(&deployment(&h, &h.host_ip, SECRET));
    assert_eq!(d.code, Some(0), "{d}");
    assert!(
        d.lines("warn", "udp")
            .iter()
            .any(|l| l.contains(&format!("UDP {MEDIA_PORT} is in use"))),
        "{d}"
    );
    assert!(
        d.lines("ok", "udp").is_empty(),
        "no pass without a datagram: {d}"
    );
    assert!(
        d.fix_for("is in use here")
            .unwrap_or_default()
            .contains("stop plaza"),
        "{d}"
    );
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stand-in for a TURN provider's REST API on the TURN host: `python3 -m http.server`
/// serving one file (the query string with the API key is ignored, as the file name is
/// all it looks at).
struct FakeProvider {
    child: std::process::Child,
    dir: PathBuf,
    url: String,
}

impl FakeProvider {
    /// Serves `body` at `http://TURN_IP:8099/credentials` in the TURN host's namespace.
    fn start(h: &Hosts, tag: &str, body: &str) -> FakeProvider {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!(
            "plaza-doctor-provider-{}-{tag}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("credentials"), body).unwrap();
        let mut child = h
            .turn
            .command("python3")
            .args(["-u", "-m", "http.server", "8099", "--bind", &h.turn_ip])
            .current_dir(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        // It says "Serving HTTP on ..." once it listens.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the fake provider starts");
        assert!(line.contains("Serving HTTP"), "fake provider: {line}");
        let url = format!("http://{}:8099/credentials", h.turn_ip);
        FakeProvider { child, dir, url }
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// With a TURN provider, the doctor fetches its list once as the server does, asks its
/// servers for this host's public address and allocates with the credentials it hands
/// out; credentials its TURN server refuses
/// fail with a fix that points at the provider, and the API key is never printed.
#[test]
fn a_turn_providers_credentials_are_allocated_with() {
    const API_KEY: &str = "provider-api-key-4242";
    let mut h = Hosts::new();
    h.start_coturn(SECRET, None);
    let provider_list = |secret: &str| {
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let username = format!("{expiry}:provider-user");
        serde_json::json!([{
            "urls": [format!("turn:{}:3478?transport=udp", h.turn_ip)],
            "username": username,
            "credential": plaza::turn::rest_credential(secret, &username),
        }])
        .to_string()
    };
    let args = |url: &str| {
        vec![
            "--web-root=web".to_string(),
            format!("--udp-port={MEDIA_PORT}"),
            format!("--nat-1to1-ip={}", h.host_ip),
            format!("--turn-provider-url={url}"),
            format!("--turn-provider-api-key={API_KEY}"),
            "--probe-timeout=2s".into(),
        ]
    };

    let good = FakeProvider::start(&h, "good", &provider_list(SECRET));
    let d = h.doctor(&args(&good.url));
    assert!(
        d.lines("ok", "turn")
            .iter()
            .any(|l| l.contains("TURN provider: 1 ICE servers fetched")),
        "{d}"
    );
    assert!(
        d.lines("ok", "turn")
            .iter()
            .any(|l| l.contains("over UDP: provider credentials allocate")),
        "{d}"
    );
    assert!(d.lines("FAIL", "turn").is_empty(), "{d}");
    // The provider's TURN server answers STUN too: the address check uses it.
    assert!(
        d.lines("ok", "nat")
            .iter()
            .any(|l| l.contains(&format!("sees this host as {}", h.host_ip))),
        "{d}"
    );
    assert!(
        !d.stdout.contains(API_KEY) && !d.stderr.contains(API_KEY),
        "{d}"
    );
    drop(good);

    let wrong = FakeProvider::start(&h, "wrong", &provider_list("not-the-coturn-secret"));
    let d = h.doctor(&args(&wrong.url));
    assert_eq!(d.code, Some(1), "{d}");
    assert!(
        d.lines("FAIL", "turn")
            .iter()
            .any(|l| l.contains("credentials refused (401")),
        "{d}"
    );
    let fix = d
        .fix_for("over UDP: credentials refused")
        .unwrap_or_default();
    assert!(fix.contains("the provider hands out credentials"), "{d}");
    assert!(
        !d.stdout.contains(API_KEY) && !d.stderr.contains(API_KEY),
        "{d}"
    );
    drop(wrong);

    // A provider that cannot be reached is a failure of its own.
    let d = h.doctor(&args(&format!("http://{}:8099/credentials", h.turn_ip)));
    assert_eq!(d.code, Some(1), "{d}");
    assert!(
        d.lines("FAIL", "turn")
            .iter()
            .any(|l| l.contains("TURN provider: the credentials fetch failed")),
        "{d}"
    );
}
