//! A real coturn (`turnserver`, Debian package `coturn`) for TURN tests: started on a
//! free loopback port with TURN REST auth (`use-auth-secret`), the way a deployment
//! runs it, polled until it answers STUN, and killed when dropped.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The realm coturn puts in its 401 challenges. With `use-auth-secret` the realm does
/// not enter the password (the HMAC does), so any value works.
pub const REALM: &str = "plaza";

pub struct Coturn {
    /// UDP (and TCP) port coturn listens on, on 127.0.0.1.
    pub port: u16,
    pub secret: String,
    child: Child,
    log: Arc<Mutex<String>>,
    /// Holds coturn's user database and pid file; removed on drop.
    dir: PathBuf,
}

impl Coturn {
    /// Starts coturn with `static-auth-secret = secret`, everything on the command line
    /// as a test needs it. Panics with the install command when `turnserver` is missing,
    /// and with coturn's own log when it does not come up.
    pub fn start(secret: &str) -> Coturn {
        Coturn::start_with(secret, |port, dir| {
            let mut args = vec![
                // No config file: everything is on this line.
                "-n".to_string(),
                "--use-auth-secret".into(),
                format!("--realm={REALM}"),
                "--no-tls".into(),
                "--no-dtls".into(),
                "--no-cli".into(),
            ];
            args.extend(loopback_args(port, dir));
            args
        })
    }

    /// Starts coturn from the deployment's own `deploy/turnserver.conf`, changed only
    /// where a loopback test must: addresses and ports, its files, no TLS (no
    /// certificate here), loopback peers. `allowed_peer` plays docker-compose.yml's
    /// `--allowed-peer-ip=${PUBLIC_IP}`: the one peer address coturn relays to.
    pub fn start_with_deploy_config(secret: &str, allowed_peer: &str) -> Coturn {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/turnserver.conf");
        assert!(config.is_file(), "{} exists", config.display());
        Coturn::start_with(secret, |port, dir| {
            let mut args = vec![
                "-c".to_string(),
                config.display().to_string(),
                format!("--realm={REALM}"),
                format!("--allowed-peer-ip={allowed_peer}"),
                "--no-tls".into(),
            ];
            args.extend(loopback_args(port, dir));
            args
        })
    }

    fn start_with(secret: &str, args: impl Fn(u16, &Path) -> Vec<String>) -> Coturn {
        let binary = find_turnserver().unwrap_or_else(|| {
            panic!(
                "`turnserver` not found: these tests need coturn. Install it with \
                 `apt-get install -y coturn` (scripts/test.sh does)."
            )
        });
        // A port free right now can be taken before coturn binds it (another test's
        // coturn, a relay port): then coturn exits and we try another one.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_udp_and_tcp_port();
            let dir =
                std::env::temp_dir().join(format!("plaza-coturn-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("coturn temp dir");
            let mut all = args(port, &dir);
            all.push(format!("--static-auth-secret={secret}"));
            let mut coturn = Coturn::spawn(&binary, &all, port, secret, dir);
            match coturn.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return coturn,
                Err(why) => last_log = format!("{why}\n{}", coturn.log()),
            }
        }
        panic!("coturn did not start:\n{last_log}");
    }

    fn spawn(binary: &Path, args: &[String], port: u16, secret: &str, dir: PathBuf) -> Coturn {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("turnserver starts");
        let log = Arc::new(Mutex::new(String::new()));
        for out in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Coturn {
            port,
            secret: secret.to_string(),
            child,
            log,
            dir,
        }
    }

    /// Polls with STUN Binding requests (coturn answers them without credentials)
    /// until one is answered.
    fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + within;
        let request = stun_binding_request();
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("turnserver exited ({status})"));
            }
            let _ = socket.send_to(&request, self.addr());
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                // A Binding success response (0x0101) echoing our transaction id.
                if n >= 20 && buf[..2] == [0x01, 0x01] && buf[8..20] == request[8..20] {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no STUN answer on {} within {within:?}",
            self.addr()
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The URL Plaza hands to clients (`turn.urls`).
    pub fn turn_url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }

    /// Everything coturn has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Polls coturn's log until `found` accepts it; returns the log or says what was
    /// missing (with the log) after `within`.
    pub async fn wait_log(
        &self,
        what: &str,
        within: Duration,
        found: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if found(&log) {
                return Ok(log);
            }
            if Instant::now() > deadline {
                return Err(format!("coturn never logged {what}; its log:\n{log}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Log lines about one TURN user (coturn writes `user <name>` in each).
    pub fn lines_for_user(&self, username: &str) -> Vec<String> {
        let needle = format!("user <{username}>");
        self.log()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What every test coturn needs: loopback only, its own port and files, logs on stdout
/// with each request and its user (tests read what coturn allowed and refused).
fn loopback_args(port: u16, dir: &Path) -> Vec<String> {
    vec![
        "--listening-ip=127.0.0.1".into(),
        "--relay-ip=127.0.0.1".into(),
        format!("--listening-port={port}"),
        // Plaza is on 127.0.0.1 here, and coturn refuses loopback peers unless told.
        "--allow-loopback-peers".into(),
        // Its own files, not /var/lib/turn or /var/run (which need root).
        format!("--userdb={}", dir.join("turndb").display()),
        format!("--pidfile={}", dir.join("turnserver.pid").display()),
        "--log-file=stdout".into(),
        "--simple-log".into(),
        "--verbose".into(),
    ]
}

fn find_turnserver() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join("turnserver"))
        .find(|p| p.is_file())
}

/// A loopback port free for both UDP and TCP (coturn listens on both).
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// RFC 5389 Binding request: type 0x0001, length 0, magic cookie, random transaction id.
fn stun_binding_request() -> [u8; 20] {
    let mut m = [0u8; 20];
    m[..2].copy_from_slice(&[0x00, 0x01]);
    m[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    let id: [u8; 12] = rand::random();
    m[8..20].copy_from_slice(&id);
    m
}
