//! One run of the real `plaza` binary for the table in `config_effects.rs`: a fresh
//! temp dir and ports, the base file plus the row's `with` settings, the key under test
//! through one source, readiness by TCP connect, and SIGTERM at the end.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plaza::config::{Setting, SETTINGS};

/// Longest a server may take to accept TCP (a debug build on 2 busy cores).
const START_WITHIN: Duration = Duration::from_secs(10);
/// Longest a server may take to exit after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(6);

/// Where the value under test comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A key of the TOML file given with `--config`.
    File,
    /// Its `PLAZA_*` variable.
    Env,
    /// Its `--flag`.
    Flag,
    /// Not given at all.
    Baseline,
}

impl Source {
    pub const ALL: [Source; 4] = [Source::File, Source::Env, Source::Flag, Source::Baseline];

    pub fn name(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Env => "env",
            Source::Flag => "flag",
            Source::Baseline => "baseline",
        }
    }
}

/// The per-run values placeholders stand for.
#[derive(Debug, Clone)]
pub struct Vars {
    /// The base file's listen port.
    pub port: u16,
    /// Another free TCP port (`listen` under test).
    pub port2: u16,
    /// The first of 21 free UDP ports (`{udp}` .. `{udp_max}`).
    pub udp: u16,
    /// One more thread than the machine has cores (so never the default).
    pub workers: usize,
    /// The run's temp dir.
    pub dir: PathBuf,
}

impl Vars {
    pub const UDP_SPAN: u16 = 20;

    fn new(dir: PathBuf) -> Result<Vars, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let port = free_tcp_port()?;
        let mut port2 = free_tcp_port()?;
        while port2 == port {
            port2 = free_tcp_port()?;
        }
        Ok(Vars {
            port,
            port2,
            udp: free_udp_range(Self::UDP_SPAN)?,
            workers: cores + 1,
            dir,
        })
    }

    pub fn udp_max(&self) -> u16 {
        self.udp + Self::UDP_SPAN
    }

    pub fn fill(&self, text: &str) -> String {
        text.replace("{port}", &self.port.to_string())
            .replace("{port2}", &self.port2.to_string())
            .replace("{udp}", &self.udp.to_string())
            .replace("{udp_max}", &self.udp_max().to_string())
            .replace("{workers}", &self.workers.to_string())
            .replace("{dir}", &self.dir.display().to_string())
    }
}

fn free_tcp_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free TCP port: {e}"))
}

/// The first of `span + 1` consecutive UDP ports that are all free right now.
fn free_udp_range(span: u16) -> Result<u16, String> {
    for _ in 0..50 {
        let base = 20_000 + rand::random::<u16>() % 40_000;
        let all_free = (base..=base + span).all(|p| UdpSocket::bind(("0.0.0.0", p)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    Err("no free range of UDP ports".into())
}

/// A setting by key.
pub fn setting(key: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("no setting {key}"))
}

/// The TOML file: every value written as a string in command-line syntax, top-level
/// keys first, then one table per section.
pub fn toml_file(pairs: &[(String, String)]) -> String {
    let quote = |v: &str| toml::Value::String(v.to_string()).to_string();
    let mut top = String::new();
    let mut sections: Vec<(String, String)> = Vec::new();
    for (key, value) in pairs {
        match key.split_once('.') {
            None => top.push_str(&format!("{key} = {}\n", quote(value))),
            Some((section, name)) => {
                let line = format!("{name} = {}\n", quote(value));
                match sections.iter_mut().find(|(s, _)| s == section) {
                    Some((_, body)) => body.push_str(&line),
                    None => sections.push((section.to_string(), line)),
                }
            }
        }
    }
    for (section, body) in sections {
        top.push_str(&format!("\n[{section}]\n{body}"));
    }
    top
}

/// What a run is started with.
pub struct Plan<'a> {
    pub key: &'static str,
    pub value: &'a str,
    pub with: &'a [(&'a str, &'a str)],
    pub source: Source,
}

/// A started server, or the exit of one that refused to start.
pub enum Started {
    Up(Run),
    Refused { status: ExitStatus, log: String },
}

/// A running server.
pub struct Run {
    pub vars: Vars,
    /// Where it serves HTTP.
    pub addr: SocketAddr,
    pub pid: u32,
    pub log_path: PathBuf,
    child: Mutex<Option<Child>>,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Starts `plaza` for one row and source, and waits until it accepts TCP.
pub async fn start(plan: &Plan<'_>) -> Result<Started, String> {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("plaza-config-effects-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("www")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let vars = Vars::new(dir.clone())?;
    std::fs::write(dir.join("www/index.html"), web_marker(&vars))
        .map_err(|e| format!("index.html: {e}"))?;

    // The base, then what the row needs, then (in the file) the key under test.
    let mut pairs: Vec<(String, String)> = vec![("listen".into(), vars.fill("127.0.0.1:{port}"))];
    if plan.key != "ice.ips" {
        pairs.push(("ice.ips".into(), "127.0.0.1".into()));
    }
    let mut put = |k: &str, v: String| match pairs.iter_mut().find(|(key, _)| key == k) {
        Some(pair) => pair.1 = v,
        None => pairs.push((k.to_string(), v)),
    };
    for (k, v) in plan.with {
        put(k, vars.fill(v));
    }
    let value = vars.fill(plan.value);
    if plan.source == Source::File {
        put(plan.key, value.clone());
    }
    let config = dir.join("plaza.toml");
    std::fs::write(&config, toml_file(&pairs)).map_err(|e| format!("plaza.toml: {e}"))?;

    let bin = plaza_tools::server_process::workspace_binary("plaza").map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&config);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("PLAZA_") || name == "RUST_LOG" || name == "TOKIO_WORKER_THREADS" {
            cmd.env_remove(&*name);
        }
    }
    cmd.env_remove("RUST_LOG");
    let s = setting(plan.key);
    match plan.source {
        Source::Env => {
            cmd.env(s.env, &value);
        }
        Source::Flag => {
            cmd.arg(format!("--{}", s.flag)).arg(&value);
        }
        Source::File | Source::Baseline => {}
    }
    let log_path = dir.join("plaza.log");
    let out = std::fs::File::create(&log_path).map_err(|e| format!("log: {e}"))?;
    let err = out.try_clone().map_err(|e| format!("log: {e}"))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting plaza: {e}"))?;

    // `listen` under test moves the server to port2 (the base file says port).
    let port = if plan.key == "listen" && plan.source != Source::Baseline {
        vars.port2
    } else {
        vars.port
    };
    let run = Run {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        pid: child.id(),
        log_path,
        vars,
        child: Mutex::new(Some(child)),
    };
    let deadline = Instant::now() + START_WITHIN;
    loop {
        if tokio::net::TcpStream::connect(run.addr).await.is_ok() {
            return Ok(Started::Up(run));
        }
        if let Some(status) = run.try_wait()? {
            let log = run.log();
            run.cleanup();
            return Ok(Started::Refused { status, log });
        }
        if Instant::now() > deadline {
            let log = run.log();
            run.stop();
            return Err(format!(
                "not accepting on {} within {START_WITHIN:?}; log:\n{log}",
                run.addr
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The body of the run's own web root's index.html.
pub fn web_marker(vars: &Vars) -> String {
    format!(
        "<!doctype html><title>config-effects web root {}</title>\n",
        vars.dir.display()
    )
}

impl Run {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The exit status once it has exited (then there is nothing left to stop).
    fn try_wait(&self) -> Result<Option<ExitStatus>, String> {
        let mut child = self.child.lock().unwrap();
        let status = match child.as_mut() {
            Some(c) => c.try_wait().map_err(|e| e.to_string())?,
            None => None,
        };
        if status.is_some() {
            *child = None;
        }
        Ok(status)
    }

    /// SIGTERM, and waits for the exit (SIGKILL after `STOP_WITHIN`). `None` when it
    /// was already stopped.
    pub fn stop(&self) -> Option<Result<ExitStatus, String>> {
        let mut child = self.child.lock().unwrap().take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => return Some(Ok(status)),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Some(Err(e.to_string())),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Some(Err(format!("still running {STOP_WITHIN:?} after SIGTERM")))
    }

    /// Removes the temp dir (the server must be stopped).
    pub fn cleanup(&self) {
        remove_dir(&self.vars.dir);
    }

    /// Thread names (`comm`, at most 15 bytes) of the server process.
    pub fn thread_names(&self) -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return Vec::new();
        };
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|c| c.trim_end().to_string())
            .collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop();
    }
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
