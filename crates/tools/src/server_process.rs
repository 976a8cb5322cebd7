//! The server under test as a separate process, for `plaza-load` and `plaza-soak`: a
//! child process the tool starts (Plaza, or a baseline's `run.sh`, which `exec`s so its
//! PID is the server's), or one already running that is named by PID. Either way it is
//! measured from /proc (`crate::procstat`), and Plaza's own gauges are read over HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Server {
    pub pid: u32,
    child: Option<Child>,
}

impl Server {
    /// Starts `argv` with its output in `log`, then waits until `addr` accepts TCP.
    pub async fn spawn(argv: &[String], addr: SocketAddr, log: &std::path::Path) -> Result<Server> {
        let (program, args) = argv.split_first().context("empty server command")?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let mut server = Server {
            pid: child.id(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                return Ok(server);
            }
            if let Some(c) = server.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!("server exited at start ({status}); see {}", log.display());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "server did not listen on {addr} within 60 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A server started elsewhere.
    pub fn attach(pid: u32) -> Server {
        Server { pid, child: None }
    }

    /// SIGTERM, then SIGKILL after a grace period (only for a child we started).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The body of `GET path` (HTTP/1.1, `Connection: close`), for `/metrics` and
/// `/healthz`; chunked bodies are reassembled.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await??;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut raw)).await??;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .context("no end of headers in the response")?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        bail!("GET {path}: HTTP {status}");
    }
    Ok(http_body(head, body))
}

/// A response's body given its head: chunked bodies (actix streams JSON that way) are
/// reassembled, others returned as they are.
pub fn http_body(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// A binary of this workspace built beside the running executable (`target/<profile>/`),
/// from a binary there or from a test in `target/<profile>/deps/`. Integration tests of
/// the server package use it for `plaza-soak`, which belongs to this crate (Cargo only
/// gives a package's tests the paths of that package's own binaries).
pub fn workspace_binary(name: &str) -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("no directory for the current executable")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("no profile directory")?;
    }
    let bin = dir.join(name);
    anyhow::ensure!(
        bin.is_file(),
        "{} is not built: run `cargo build` first",
        bin.display()
    );
    Ok(bin)
}

/// The command line of a `plaza` for load and soak runs on 127.0.0.1:`port`: `bin`, or
/// the `plaza` next to the running executable; candidates on loopback only; quiet logs;
/// and no practical per-IP join or connection limit, since every synthetic participant
/// joins from 127.0.0.1, thousands of times.
pub fn loopback_command(
    bin: Option<&Path>,
    port: u16,
    media_threads: Option<usize>,
) -> Result<Vec<String>> {
    let bin = match bin {
        Some(b) => b.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory for the current executable")?
            .join("plaza"),
    };
    let mut v = vec![
        bin.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--ice-ip".into(),
        "127.0.0.1".into(),
        "--log-level".into(),
        "warn".into(),
        "--joins-per-ip-per-minute".into(),
        "1000000".into(),
        "--max-connections".into(),
        "1000000".into(),
        "--max-connections-per-ip".into(),
        "1000000".into(),
        // A participant whose socket vanishes is gone at once, as with the in-process
        // test server: the soak's abrupt leaves would otherwise wait out the resume
        // grace (20 s) and fill their rooms (tests/resume.rs covers the grace itself).
        "--resume-grace".into(),
        "0s".into(),
    ];
    if let Some(n) = media_threads {
        v.extend(["--media-threads".into(), n.to_string()]);
    }
    Ok(v)
}

/// Plaza's own counters from `/metrics` (Prometheus text), by metric name.
pub async fn plaza_metrics(addr: SocketAddr) -> Result<Vec<(String, f64)>> {
    let body = http_get(addr, "/metrics").await?;
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect())
}

pub fn metric(metrics: &[(String, f64)], name: &str) -> Option<f64> {
    metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}
