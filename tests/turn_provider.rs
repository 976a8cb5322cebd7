//! TURN credentials from a provider's REST API, against a local HTTP server standing in
//! for the provider (Metered's `GET /api/v1/turn/credentials?apiKey=...`): fetched at
//! startup and handed to joining clients, cached (one request for many joins),
//! refreshed before they expire (request times), the last good list kept through a
//! 500, a hang, a malformed body and a provider that is down (connection refused), and
//! back to fresh credentials when the provider is. The API key reaches the provider and
//! nothing else: not the log, not `joined`, not `/healthz`, not `/metrics`.
//!
//! Runs in the loopback-only namespace like the rest of the suite.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use plaza::config::Config;
use plaza_protocol::{IceServer, ServerMessage};
use plaza_tools::testing::{loopback_config, TestServer};

const KEY: &str = "prov-KEY-5ec7e7-do-not-leak";
const WAIT: Duration = Duration::from_secs(15);

/// What the fake provider does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200 with a fresh credential (`user-N` for the N-th request); 401 without the key.
    Ok,
    Error500,
    /// Reads the request, never answers.
    Hang,
    /// 200 with a body that is not JSON.
    Malformed,
    /// Not listening: connection refused.
    Down,
}

struct FakeProvider {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Request targets (path and query) with the time each came.
    requests: Arc<Mutex<Vec<(Instant, String)>>>,
    /// Body format: `{"iceServers": [...], "ttl": N}` when set, else a bare array.
    _task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    async fn start(ttl: Option<u64>) -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, mut modes) = watch::channel(Mode::Ok);
        let requests: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let served = Arc::new(AtomicUsize::new(0));
        let log = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let current = *modes.borrow_and_update();
                match (&listener, current) {
                    (Some(_), Mode::Down) => listener = None,
                    (None, Mode::Down) => {}
                    (None, _) => {
                        // Back up on the same port (tokio sets SO_REUSEADDR).
                        listener = loop {
                            if let Ok(l) = TcpListener::bind(addr).await {
                                break Some(l);
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        };
                    }
                    (Some(_), _) => {}
                }
                let Some(l) = &listener else {
                    if modes.changed().await.is_err() {
                        return;
                    }
                    continue;
                };
                tokio::select! {
                    changed = modes.changed() => if changed.is_err() { return },
                    accepted = l.accept() => if let Ok((stream, _)) = accepted {
                        let (log, served) = (Arc::clone(&log), Arc::clone(&served));
                        tokio::spawn(serve(stream, current, ttl, log, served));
                    },
                }
            }
        });
        FakeProvider {
            addr,
            mode,
            requests,
            _task: task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/turn/credentials", self.addr)
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn times(&self) -> Vec<Instant> {
        self.requests.lock().unwrap().iter().map(|r| r.0).collect()
    }

    async fn wait_requests(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "{n} requests to the provider (got {})",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    mode: Mode,
    ttl: Option<u64>,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    served: Arc<AtomicUsize>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let target = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    log.lock().unwrap().push((Instant::now(), target.clone()));
    let (status, body) = match mode {
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(20)).await;
            return;
        }
        Mode::Down => return,
        Mode::Error500 => ("500 Internal Server Error", "upstream exploded".to_string()),
        Mode::Malformed => ("200 OK", "{\"iceServers\": [{\"urls\": ".to_string()),
        Mode::Ok if !target.contains(&format!("apiKey={KEY}")) => (
            "401 Unauthorized",
            "{\"error\": \"Invalid API Key\"}".to_string(),
        ),
        Mode::Ok => {
            let n = served.fetch_add(1, Ordering::SeqCst) + 1;
            let list = format!(
                r#"[{{"urls":"stun:198.18.7.1:3478"}},
                   {{"urls":"turn:198.18.7.1:3478","username":"user-{n}","credential":"cred-{n}"}},
                   {{"urls":["turn:198.18.7.1:443?transport=tcp"],"username":"user-{n}","credential":"cred-{n}"}}]"#
            );
            let body = match ttl {
                Some(ttl) => format!(r#"{{"iceServers":{list},"ttl":{ttl}}}"#),
                None => list,
            };
            ("200 OK", body)
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Everything the server logs, at debug, for the key check.
fn captured_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: Arc<Mutex<Vec<u8>>> = Arc::default();
        let writer = Arc::clone(&log);
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,webrtc=warn,webrtc_ice=warn,webrtc_dtls=warn,webrtc_sctp=warn,webrtc_srtp=warn,webrtc_mdns=warn,webrtc_util=warn,mio=warn,tokio_tungstenite=warn,tungstenite=warn")
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&writer)))
            .try_init();
        log
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&captured_log().lock().unwrap()).to_string()
}

fn server_for(provider: &FakeProvider, edit: impl FnOnce(&mut Config)) -> TestServer {
    captured_log();
    let mut c = loopback_config();
    c.turn_provider.url = provider.url();
    c.turn_provider.api_key = KEY.into();
    edit(&mut c);
    TestServer::start(c).expect("server starts")
}

/// Joins over a bare WebSocket and returns `joined`'s `ice_servers` and its raw text.
async fn join_ice_servers(server: &TestServer, room: &str) -> (Vec<IceServer>, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("WebSocket connects");
    let join = serde_json::json!({"type": "join", "room": room, "name": "Ann"});
    ws.send(Message::Text(join.to_string())).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, ws.next())
            .await
            .expect("joined in time")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame {
            if let Ok(ServerMessage::Joined { ice_servers, .. }) = serde_json::from_str(&text) {
                let _ = ws.close(None).await;
                return (ice_servers, text.to_string());
            }
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("HTTP connects");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn healthz(server: &TestServer) -> serde_json::Value {
    let text = http_get(server.addr, "/healthz").await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Polls `/healthz` until the provider's state satisfies `ok`.
async fn wait_health(
    server: &TestServer,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let h = healthz(server).await;
        if ok(&h["turn_provider"]) {
            return h;
        }
        assert!(Instant::now() < deadline, "{what}; /healthz: {h}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn turn_user(servers: &[IceServer]) -> String {
    let turn: Vec<_> = servers
        .iter()
        .filter(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .collect();
    assert_eq!(
        turn.len(),
        2,
        "the provider's two TURN entries: {servers:?}"
    );
    assert_eq!(turn[0].username, turn[1].username);
    turn[0].username.clone().expect("a username")
}

fn user_number(user: &str) -> usize {
    user.trim_start_matches("user-").parse().unwrap()
}

fn assert_no_key(what: &str, text: &str) {
    assert!(
        !text.contains(KEY),
        "the API key leaked into {what}:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_fetched_once_and_handed_to_every_joining_client() {
    let provider = FakeProvider::start(None).await;
    let server = server_for(&provider, |_| {});
    for i in 0..5 {
        let (servers, raw) = join_ice_servers(&server, &format!("cached-{i}")).await;
        // Metered's list as it came: a STUN entry and two TURN entries.
        assert_eq!(servers.len(), 3, "{servers:?}");
        assert_eq!(servers[0].urls, vec!["stun:198.18.7.1:3478"]);
        assert_eq!(turn_user(&servers), "user-1");
        assert_eq!(servers[1].credential.as_deref(), Some("cred-1"));
        assert_no_key("joined", &raw);
    }
    // Cached: one request for five joins (ttl 1h by default).
    assert_eq!(provider.count(), 1);
    let target = provider.requests.lock().unwrap()[0].1.clone();
    assert_eq!(target, format!("/api/v1/turn/credentials?apiKey={KEY}"));

    let h = healthz(&server).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["turn_provider"]["state"], "ok", "{h}");
    assert_eq!(h["turn_provider"]["servers"], 3, "{h}");
    let metrics = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("plaza_turn_provider_fetches_total{result=\"success\"} 1"));
    assert!(metrics.contains("plaza_turn_provider_fetches_total{result=\"failure\"} 0"));
    assert!(metrics.contains("plaza_turn_provider_up 1"));
    assert_no_key("/healthz", &h.to_string());
    assert_no_key("/metrics", &metrics);
    let log = log_text();
    assert!(log.contains("TURN credentials fetched from the provider"));
    assert_no_key("the log", &log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_before_expiry_and_the_last_good_list_survives_every_outage() {
    // The provider says its credentials live 2 s: fetched again every 1.6 s.
    let provider = FakeProvider::start(Some(2)).await;
    let server = server_for(&provider, |c| {
        c.turn_provider.timeout = Duration::from_millis(500);
        c.turn_provider.retry_interval = Duration::from_millis(100);
    });
    provider.wait_requests(4).await;
    let times = provider.times();
    for gap in times.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            (Duration::from_millis(1400)..Duration::from_millis(2500)).contains(&gap),
            "refreshed every 1.6 s, not after {gap:?}"
        );
    }
    let (servers, _) = join_ice_servers(&server, "fresh").await;
    assert!(
        user_number(&turn_user(&servers)) >= 4,
        "the newest credentials: {servers:?}"
    );

    // Each outage: the fetch fails, /healthz and /metrics say so, and clients still
    // get the last good list.
    let outages = [
        (Mode::Error500, "HTTP 500"),
        (Mode::Hang, "no answer within"),
        (Mode::Malformed, "not an iceServers list"),
        (Mode::Down, "onnect"),
    ];
    let mut last_good = None;
    for (mode, error) in outages {
        provider.set(mode);
        let h = wait_health(
            &server,
            &format!("{mode:?}: the provider failing with {error:?}"),
            |p| {
                p["state"] == "stale" && p["last_error"].as_str().is_some_and(|e| e.contains(error))
            },
        )
        .await;
        assert_eq!(
            h["status"], "ok",
            "still healthy on the last good list: {h}"
        );
        assert_no_key("/healthz", &h.to_string());
        let (servers, raw) = join_ice_servers(&server, &format!("outage-{mode:?}")).await;
        assert_no_key("joined", &raw);
        assert_eq!(
            servers.len(),
            3,
            "{mode:?}: the last good list: {servers:?}"
        );
        let user = turn_user(&servers);
        if let Some(previous) = &last_good {
            assert_eq!(&user, previous, "{mode:?}: the same last good list");
        }
        last_good = Some(user);
        let metrics = http_get(server.addr, "/metrics").await;
        assert!(metrics.contains("plaza_turn_provider_up 0"), "{mode:?}");
        assert_no_key("/metrics", &metrics);
    }
    let metrics = http_get(server.addr, "/metrics").await;
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("plaza_turn_provider_fetches_total{result=\"failure\"} "))
        .and_then(|v| v.parse().ok())
        .expect("the failure counter");
    assert!(failures >= 4, "{metrics}");
    let age: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("plaza_turn_provider_list_age_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("the list's age");
    assert!(
        age > 0.5,
        "the list grows old while the provider fails: {age}"
    );

    // Back: fresh credentials again, and healthy.
    provider.set(Mode::Ok);
    wait_health(&server, "the provider back", |p| p["state"] == "ok").await;
    let (servers, _) = join_ice_servers(&server, "recovered").await;
    let stale = user_number(last_good.as_deref().unwrap());
    assert!(
        user_number(&turn_user(&servers)) > stale,
        "new credentials after the outage: {servers:?}"
    );
    let log = log_text();
    assert!(
        log.contains("TURN provider fetch failed"),
        "the failures are logged"
    );
    assert!(log.contains("TURN provider is back"));
    assert_no_key("the log", &log);
}
