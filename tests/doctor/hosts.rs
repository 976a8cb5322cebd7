//! Two hosts for `plaza doctor` tests, made by the test inside whatever network
//! namespace it runs in (scripts/test.sh runs everything under `unshare -n`): a Plaza
//! host and a TURN host on a veth pair with 198.18.x.0/24 addresses, coturn on the TURN
//! host, all removed on drop. Names carry the pid and a counter so parallel tests and
//! test binaries do not collide.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU8 = AtomicU8::new(1);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("`ip` runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop.
pub struct Namespace(pub String);

impl Namespace {
    pub fn new(name: String) -> Namespace {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Namespace(name)
    }

    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} in {}: {e}", self.0))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// The Plaza host (`host`, address `host_ip`) and the TURN host (`turn`, `turn_ip`).
pub struct Hosts {
    pub host_ip: String,
    pub turn_ip: String,
    // Field order is drop order: coturn stops before its namespace goes.
    pub coturn: Option<Coturn>,
    pub host: Namespace,
    pub turn: Namespace,
}

impl Hosts {
    pub fn new() -> Hosts {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 100_000;
        let host = Namespace::new(format!("pdoc{pid}-{n}h"));
        let turn = Namespace::new(format!("pdoc{pid}-{n}t"));
        let (a, b) = (format!("pd{pid}x{n}a"), format!("pd{pid}x{n}b"));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &a, "netns", &host.0]);
        ip(&["link", "set", &b, "netns", &turn.0]);
        let (host_ip, turn_ip) = (format!("198.18.{n}.1"), format!("198.18.{n}.2"));
        ip(&[
            "-n",
            &host.0,
            "addr",
            "add",
            &format!("{host_ip}/24"),
            "dev",
            &a,
        ]);
        ip(&[
            "-n",
            &turn.0,
            "addr",
            "add",
            &format!("{turn_ip}/24"),
            "dev",
            &b,
        ]);
        ip(&["-n", &host.0, "link", "set", &a, "up"]);
        ip(&["-n", &turn.0, "link", "set", &b, "up"]);
        Hosts {
            host_ip,
            turn_ip,
            coturn: None,
            host,
            turn,
        }
    }

    /// Starts coturn on the TURN host with `static-auth-secret = secret`, answering
    /// STUN and TURN on UDP and TCP 3478, and TURN over TLS on 5349 when `tls` gives a
    /// certificate and key (PEM files).
    pub fn start_coturn(&mut self, secret: &str, tls: Option<(&Path, &Path)>) {
        self.coturn = Some(Coturn::start(&self.turn, &self.turn_ip, secret, tls));
    }

    /// Runs `plaza doctor ARGS` on the Plaza host.
    pub fn doctor(&self, args: &[String]) -> Doctor {
        let out = self
            .host
            .command(env!("CARGO_BIN_EXE_plaza"))
            .arg("doctor")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            // Only what the test passes: no config file or PLAZA_* from the caller.
            .env_remove("PLAZA_CONFIG")
            .output()
            .expect("plaza doctor runs");
        Doctor {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub struct Doctor {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Doctor {
    /// The report's lines with this status (`ok`, `warn`, `FAIL`) and topic.
    pub fn lines(&self, status: &str, topic: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| {
                let mut words = l.split_whitespace();
                words.next() == Some(status) && words.next() == Some(topic)
            })
            .collect()
    }

    /// The fix printed under the first line that contains `needle`.
    pub fn fix_for(&self, needle: &str) -> Option<&str> {
        let mut lines = self.stdout.lines().skip_while(|l| !l.contains(needle));
        lines.next()?;
        lines.next()?.trim().strip_prefix("fix: ")
    }
}

impl std::fmt::Display for Doctor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// coturn in a namespace, killed on drop.
pub struct Coturn {
    child: Child,
    log: PathBuf,
    dir: PathBuf,
}

impl Coturn {
    fn start(ns: &Namespace, ip: &str, secret: &str, tls: Option<(&Path, &Path)>) -> Coturn {
        let dir = std::env::temp_dir().join(format!("plaza-doctor-coturn-{}", ns.0));
        std::fs::create_dir_all(&dir).expect("coturn dir");
        let log = dir.join("log");
        let mut args = vec![
            "-n".to_string(),
            format!("--listening-ip={ip}"),
            format!("--relay-ip={ip}"),
            "--listening-port=3478".into(),
            "--use-auth-secret".into(),
            format!("--static-auth-secret={secret}"),
            "--realm=plaza".into(),
            "--no-cli".into(),
            "--no-dtls".into(),
            format!("--userdb={}", dir.join("turndb").display()),
            format!("--pidfile={}", dir.join("turnserver.pid").display()),
            "--log-file=stdout".into(),
            "--simple-log".into(),
            "--verbose".into(),
        ];
        match tls {
            Some((cert, key)) => args.extend([
                "--tls-listening-port=5349".into(),
                format!("--cert={}", cert.display()),
                format!("--pkey={}", key.display()),
            ]),
            None => args.push("--no-tls".into()),
        }
        let out = std::fs::File::create(&log).expect("coturn log");
        let child = ns
            .command("turnserver")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("turnserver starts (apt-get install coturn)");
        let mut coturn = Coturn { child, log, dir };
        // coturn opens its TCP (and TLS) listeners before the UDP one.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = coturn.log();
            if text.contains("UDP listener opened") {
                return coturn;
            }
            if let Ok(Some(status)) = coturn.child.try_wait() {
                panic!("coturn exited ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "coturn did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
