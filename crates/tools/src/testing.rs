//! An in-process server on a loopback port, for tests and the load generator: the
//! server runs in its own thread with its own actix system, so any async test (Tokio or
//! not) can talk to it over real sockets.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use plaza::config::Config;
use plaza::registry::Registry;
use plaza::rtc::MediaStats;
use plaza::server::Plaza;

pub struct TestServer {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub stats: Arc<MediaStats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A configuration for loopback tests: candidates on 127.0.0.1 only, fast heartbeat.
pub fn loopback_config() -> Config {
    let mut c = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_workers: 2,
        media_threads: 2,
        ..Config::default()
    };
    c.ice.ips = vec![std::net::Ipv4Addr::LOCALHOST.into()];
    c.heartbeat.interval = Duration::from_millis(250);
    c.heartbeat.timeout = Duration::from_millis(1500);
    // Every test client connects from 127.0.0.1; tests of the caps set their own.
    c.limits.max_connections_per_ip = 10_000;
    // A participant dropped by a test is gone at once, as tests expect; the resume
    // tests (tests/resume.rs) set a grace period.
    c.session.resume_grace = Duration::ZERO;
    c
}

impl TestServer {
    /// Starts a server with `config` on its `listen` address (port 0 picks one).
    pub fn start(config: Config) -> plaza::Result<TestServer> {
        let listener = TcpListener::bind(config.listen)?;
        let addr = listener.local_addr()?;
        let plaza = Plaza::new(config)?;
        let registry = plaza.registry();
        let stats = plaza.media_stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("plaza-test-server".into())
            .spawn(move || {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(e) = actix_web::rt::System::new().block_on(plaza.run(listener, shutdown))
                {
                    eprintln!("test server failed: {e}");
                }
            })?;
        Ok(TestServer {
            addr,
            registry,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Waits until nothing is left: no connection, no room (entry or actor), no
    /// forwarding task, no peer connection. Returns what was still alive on timeout.
    pub async fn wait_until_empty(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let counts = self.registry.counts();
            let tasks = MediaStats::gauge(&self.stats.forwarding_tasks);
            let pcs = MediaStats::gauge(&self.stats.peer_connections);
            let actors = self.registry.room_actors();
            if self.registry.is_empty() && actors == 0 && tasks == 0 && pcs == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "still alive after {within:?}: {counts:?}, room actors {actors}, forwarding tasks {tasks}, peer connections {pcs}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
