//! The server's own peer connections use TURN (`ice.servers`): a server whose media
//! can reach the clients only through coturn still connects.
//!
//! Three network namespaces made by the test (names carry the pid; removed by a Drop
//! guard, also on failure):
//!
//! ```text
//!   srv 198.18.41.1 ── 198.18.41.2 relay 198.18.42.2 ── 198.18.42.1 cli
//!   srv 198.18.43.1 ───────────── (signalling only) ─── 198.18.43.2 cli
//! ```
//!
//! `relay` does not forward (ip_forward 0): its only way between the two sides is
//! coturn, listening on both addresses and relaying from 198.18.42.2. The server offers
//! host candidates on 198.18.41.1 only, which `cli` has no route to; the clients (two
//! `plaza-call` processes) gather on 198.18.42.1 only, which `srv` has no route to, and
//! get no TURN server from `joined`. The signalling link carries the WebSocket and
//! nothing else (neither side gathers on it). So media flows only if the server
//! allocates a relay on coturn: both callers must receive audio and video from each
//! other (through the server, so both directions of the server's connections), and
//! each connection's server end must be a relayed candidate on 198.18.42.2. Then the
//! control: the same server without `ice.servers` gets no media to them at all.
//!
//! Runs the real binaries under `ip netns exec` (a test cannot move itself): `plaza`
//! and `plaza-call`, which `cargo test` builds with the workspace.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "server-turn-test-secret";

/// Namespaces and their links, removed on drop.
struct Net {
    names: Vec<String>,
}

impl Net {
    fn ns(&self, role: &str) -> String {
        format!("pz{}-{role}", std::process::id())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {}", args.join(" "));
}

fn topology() -> Net {
    let mut net = Net { names: Vec::new() };
    let (srv, relay, cli) = (net.ns("srv"), net.ns("rly"), net.ns("cli"));
    for n in [&srv, &relay, &cli] {
        ip(&["netns", "add", n]);
        net.names.push(n.clone());
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    let pid = std::process::id() % 100_000;
    // (namespace A, address A, namespace B, address B)
    let links = [
        (&srv, "198.18.41.1/24", &relay, "198.18.41.2/24"),
        (&cli, "198.18.42.1/24", &relay, "198.18.42.2/24"),
        (&srv, "198.18.43.1/24", &cli, "198.18.43.2/24"),
    ];
    for (i, (a, addr_a, b, addr_b)) in links.iter().enumerate() {
        let (va, vb) = (format!("v{pid}a{i}"), format!("v{pid}b{i}"));
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", a]);
        ip(&["link", "set", &vb, "netns", b]);
        ip(&["-n", a, "addr", "add", addr_a, "dev", &va]);
        ip(&["-n", b, "addr", "add", addr_b, "dev", &vb]);
        ip(&["-n", a, "link", "set", &va, "up"]);
        ip(&["-n", b, "link", "set", &vb, "up"]);
    }
    let forward = Command::new("ip")
        .args([
            "netns",
            "exec",
            &relay,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=0",
        ])
        .status()
        .expect("sysctl runs");
    assert!(forward.success());
    net
}

/// A child process whose output is collected; killed on drop.
struct Proc {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(ns: &str, program: &str, args: &[String]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let out = Arc::new(Mutex::new(String::new()));
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let out = Arc::clone(&out);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Proc { child, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_output(&mut self, what: &str, within: Duration, found: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if found(&self.output()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("{what}: exited ({status}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plaza_call_binary() -> PathBuf {
    let plaza = PathBuf::from(env!("CARGO_BIN_EXE_plaza"));
    let call = plaza.with_file_name("plaza-call");
    assert!(
        call.is_file(),
        "{} is missing: build the workspace (cargo build) first",
        call.display()
    );
    call
}

#[test]
fn server_behind_turn_only_connects_through_its_own_relay() {
    let net = topology();
    let (srv, relay, cli) = (net.ns("srv"), net.ns("rly"), net.ns("cli"));
    let dir = std::env::temp_dir().join(format!("plaza-server-turn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let mut coturn = Proc::spawn(
        &relay,
        "turnserver",
        &[
            "-n".into(),
            "--use-auth-secret".into(),
            format!("--static-auth-secret={SECRET}"),
            "--realm=plaza".into(),
            "--listening-ip=198.18.41.2".into(),
            "--listening-ip=198.18.42.2".into(),
            "--relay-ip=198.18.42.2".into(),
            "--listening-port=3478".into(),
            "--no-tls".into(),
            "--no-dtls".into(),
            "--no-cli".into(),
            format!("--userdb={}", dir.join("turndb").display()),
            format!("--pidfile={}", dir.join("turnserver.pid").display()),
            "--log-file=stdout".into(),
            "--simple-log".into(),
            "--verbose".into(),
        ],
    );
    coturn.wait_output("coturn listening", Duration::from_secs(10), |o| {
        o.contains("198.18.41.2:3478")
    });

    // The server's own TURN credential, minted like Plaza mints clients' (an hour).
    let expiry = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let username = format!("{expiry}:plaza-server");
    let servers = serde_json::json!([{
        "urls": ["turn:198.18.41.2:3478?transport=udp"],
        "username": username,
        "credential": plaza::turn::rest_credential(SECRET, &username),
    }]);
    let mut server = Proc::spawn(
        &srv,
        env!("CARGO_BIN_EXE_plaza"),
        &[
            "--listen".into(),
            "198.18.43.1:8080".into(),
            "--ice-ip".into(),
            "198.18.41.1".into(),
            "--server-ice-servers".into(),
            servers.to_string(),
            "--web-root".into(),
            dir.display().to_string(),
            "--log-level".into(),
            "info".into(),
        ],
    );
    server.wait_output("plaza listening", Duration::from_secs(20), |o| {
        o.contains("listening")
    });
    // The startup log names the relay it will offer.
    let log = server.output();
    assert!(
        log.contains("relayed candidates through TURN turn:198.18.41.2:3478"),
        "{log}"
    );

    let call = plaza_call_binary();
    let caller = |name: &str| {
        Proc::spawn(
            &cli,
            call.to_str().unwrap(),
            &[
                "--url".into(),
                "ws://198.18.43.1:8080/ws".into(),
                "--room".into(),
                "server-turn".into(),
                "--name".into(),
                name.into(),
                "--ice-ip".into(),
                "198.18.42.1".into(),
                "--expect-server-relay".into(),
                "198.18.42.2".into(),
                "--timeout".into(),
                "40s".into(),
            ],
        )
    };
    let mut ann = caller("Ann");
    let mut bob = caller("Bob");
    for (name, p) in [("Ann", &mut ann), ("Bob", &mut bob)] {
        let status = p.wait_exit(Duration::from_secs(60));
        let out = p.output();
        assert!(
            status.is_some_and(|s| s.success()),
            "{name}: {status:?}\n{out}\n--- plaza:\n{}\n--- coturn (tail):\n{}",
            server.output(),
            coturn
                .output()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(out.contains("received Video"), "{name}: {out}");
        assert!(
            out.contains("the server sends from its relay 198.18.42.2"),
            "{out}"
        );
    }
    // coturn allocated for the server and relayed to the clients.
    let turn_log = coturn.output();
    assert!(
        turn_log
            .lines()
            .any(|l| l.contains(&format!("user <{username}>"))
                && l.contains("ALLOCATE processed, success")),
        "coturn allocated for the server:\n{turn_log}"
    );
    drop((ann, bob, server));

    // The control: the same server without its TURN server cannot reach the clients
    // (so the topology leaves no direct path, and the relay above was what worked).
    let mut server = Proc::spawn(
        &srv,
        env!("CARGO_BIN_EXE_plaza"),
        &[
            "--listen".into(),
            "198.18.43.1:8080".into(),
            "--ice-ip".into(),
            "198.18.41.1".into(),
            "--web-root".into(),
            dir.display().to_string(),
        ],
    );
    server.wait_output("plaza listening", Duration::from_secs(20), |o| {
        o.contains("listening")
    });
    let control = |name: &str| {
        Proc::spawn(
            &cli,
            call.to_str().unwrap(),
            &[
                "--url".into(),
                "ws://198.18.43.1:8080/ws".into(),
                "--room".into(),
                "no-server-turn".into(),
                "--name".into(),
                name.into(),
                "--ice-ip".into(),
                "198.18.42.1".into(),
                "--timeout".into(),
                "8s".into(),
            ],
        )
    };
    let (mut cy, mut dee) = (control("Cy"), control("Dee"));
    for (name, p) in [("Cy", &mut cy), ("Dee", &mut dee)] {
        let status = p.wait_exit(Duration::from_secs(30));
        let out = p.output();
        assert!(
            status.is_some_and(|s| !s.success()) && out.contains("FAILED"),
            "{name} must not get media without server-side TURN: {status:?}\n{out}"
        );
        assert!(!out.contains("received Video"), "{name}: {out}");
    }
    drop((cy, dee, server, coturn));
    let _ = std::fs::remove_dir_all(&dir);
}
