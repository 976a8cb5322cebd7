//! Probes for the server's own STUN/TURN servers (`ice.servers`) and the TURN
//! credentials provider (`turn_provider.*`): a fake STUN server and a fake provider
//! (HTTP), both on `{port2}`, started by the probe after the server (whose first
//! fetches fail until then, and are retried).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::Instant;

use super::client::*;

pub const PROVIDER_URL: &str = "http://127.0.0.1:{port2}/api/v1/turn/credentials";
pub const PROVIDER_KEY: &str = "provider-key-0123456789";
/// The TURN entry the fake provider answers (a test address: never sent to).
pub const PROVIDER_TURN_URL: &str = "turn:198.18.0.11:3478";

#[derive(Debug, Clone, Copy)]
pub enum ProviderProbe {
    /// `joined` lists the provider's TURN entry within 10 s. With a key parameter, the
    /// fake provider answers only requests carrying `param=PROVIDER_KEY` (else 401).
    Served { key_param: Option<&'static str> },
    /// After its first answer, the provider is asked again at least `n` times within
    /// `within`.
    Refreshed { n: usize, within: Duration },
    /// The first request the provider gets never answers; the entry is in `joined`
    /// within `within` of it.
    TimeoutRetried { within: Duration },
    /// Every request fails (500): at least `n` requests within `within` of the first.
    Retries { n: usize, within: Duration },
}

#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    Refuse(&'static str),
    Hang,
}

struct FakeProvider {
    /// When each request came.
    requests: Arc<Mutex<Vec<Instant>>>,
    /// When each request answered 200 came.
    answered: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    async fn start(
        port: u16,
        answer: impl Fn(usize, &str) -> Answer + Send + Sync + 'static,
    ) -> Res<FakeProvider> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("fake provider on {port}: {e}"))?;
        let requests: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let answered: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (r, a) = (Arc::clone(&requests), Arc::clone(&answered));
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (r, a, answer) = (Arc::clone(&r), Arc::clone(&a), Arc::clone(&answer));
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let target = head.split_whitespace().nth(1).unwrap_or_default();
                    let index = {
                        let mut r = r.lock().unwrap();
                        r.push(Instant::now());
                        r.len() - 1
                    };
                    let (status, body) = match answer(index, target) {
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        Answer::Refuse(status) => (status, "{\"error\":\"no\"}".to_string()),
                        Answer::Ok => {
                            a.lock().unwrap().push(Instant::now());
                            (
                                "200 OK",
                                format!(
                                    r#"[{{"urls":"{PROVIDER_TURN_URL}","username":"u","credential":"c"}}]"#
                                ),
                            )
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(FakeProvider {
            requests,
            answered,
            task,
        })
    }

    fn requests(&self) -> Vec<Instant> {
        self.requests.lock().unwrap().clone()
    }

    fn answered(&self) -> Vec<Instant> {
        self.answered.lock().unwrap().clone()
    }
}

/// Whether the query of `target` has `param=value` exactly.
fn has_query_pair(target: &str, param: &str, value: &str) -> bool {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .any(|pair| pair.split_once('=') == Some((param, value)))
}

async fn provider_entry_in_joined(addr: SocketAddr) -> Res<bool> {
    match join(addr, "provider", "Ann", None).await?.1 {
        JoinResult::Joined { ice_servers, .. } => Ok(ice_servers
            .iter()
            .any(|s| s.urls == [PROVIDER_TURN_URL] && s.username.as_deref() == Some("u"))),
        JoinResult::Refused(code) => Err(format!("join refused: {code}")),
    }
}

async fn wait_until(what: &str, within: Duration, ok: impl Fn() -> bool) -> Res {
    let deadline = Instant::now() + within;
    while !ok() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

pub async fn provider(p: ProviderProbe, addr: SocketAddr, port2: u16) -> Res {
    match p {
        ProviderProbe::Served { key_param } => {
            let fake = FakeProvider::start(port2, move |_, target| match key_param {
                Some(param) if !has_query_pair(target, param, PROVIDER_KEY) => {
                    Answer::Refuse("401 Unauthorized")
                }
                _ => Answer::Ok,
            })
            .await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if !fake.answered().is_empty() && provider_entry_in_joined(addr).await? {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "no provider entry in joined after 10 s ({} requests, {} answered)",
                        fake.requests().len(),
                        fake.answered().len()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        ProviderProbe::Refreshed { n, within } => {
            let fake = FakeProvider::start(port2, |_, _| Answer::Ok).await?;
            wait_until("a first answer", Duration::from_secs(15), || {
                !fake.answered().is_empty()
            })
            .await?;
            tokio::time::sleep(within).await;
            let more = fake.answered().len() - 1;
            check(more >= n, || {
                format!("asked again {more} times within {within:?} of the first answer")
            })
        }
        ProviderProbe::TimeoutRetried { within } => {
            let fake =
                FakeProvider::start(port2, |i, _| if i == 0 { Answer::Hang } else { Answer::Ok })
                    .await?;
            wait_until("a first request", Duration::from_secs(15), || {
                !fake.requests().is_empty()
            })
            .await?;
            let first = fake.requests()[0];
            wait_until("an answered request", within, || {
                !fake.answered().is_empty()
            })
            .await?;
            check(provider_entry_in_joined(addr).await?, || {
                format!(
                    "answered {:?} after the hanging request, but joined lacks the entry",
                    fake.answered()[0] - first
                )
            })
        }
        ProviderProbe::Retries { n, within } => {
            let fake =
                FakeProvider::start(port2, |_, _| Answer::Refuse("500 Internal Server Error"))
                    .await?;
            wait_until("a first request", Duration::from_secs(15), || {
                !fake.requests().is_empty()
            })
            .await?;
            tokio::time::sleep(within).await;
            let times = fake.requests();
            let count = times.iter().filter(|t| **t - times[0] <= within).count();
            check(count >= n, || {
                format!("{count} requests within {within:?} of the first")
            })
        }
    }
}

/// A STUN Binding request reaches a UDP socket on `port` once a participant makes the
/// server gather candidates.
pub async fn server_stun(addr: SocketAddr, port: u16) -> Res {
    let socket = UdpSocket::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("fake STUN server on {port}: {e}"))?;
    let listen = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, _)) = socket.recv_from(&mut buf).await else {
                return false;
            };
            // A Binding request: type 0x0001 and the magic cookie.
            if n >= 20 && buf[..2] == [0, 1] && buf[4..8] == [0x21, 0x12, 0xa4, 0x42] {
                return true;
            }
        }
    });
    // Gathering starts with the answer to an offer.
    let _ = announced_candidates(addr).await;
    match tokio::time::timeout(Duration::from_secs(5), listen).await {
        Ok(Ok(true)) => Ok(()),
        _ => Err("no STUN Binding request from the server".into()),
    }
}

fn check(ok: bool, why: impl FnOnce() -> String) -> Res {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}
