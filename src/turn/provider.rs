//! TURN credentials from a provider's REST API (Metered-style): a GET to the configured
//! URL, with the API key as a query parameter (or a bearer token), answers the
//! `iceServers` list a browser needs, with short-lived credentials. Plaza fetches it at
//! startup, hands the current list to every joining client, fetches again when 80 % of
//! its lifetime has passed, and when the provider fails (timeout, error status, bad
//! JSON, nothing listening) keeps the last good list and retries with backoff: a call
//! can still work on credentials a few minutes older than planned, never on none.
//!
//! The key is a secret: it is never logged, never in `/healthz` or `/metrics`, never in
//! an error message (each is passed through [`Redactor`]), never sent to clients.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};

use plaza_protocol::IceServer;

use crate::config::TurnProviderConfig;

pub use super::answer::{parse_answer, Fetched};

/// Retries never wait longer than this (or than the refresh period, if shorter).
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A provider's answer is a few hundred bytes; anything this big is not one.
const MAX_BODY: usize = 64 * 1024;

/// The provider, its last good list and what happened to the last fetches.
pub struct TurnProvider {
    config: TurnProviderConfig,
    redactor: Redactor,
    state: Mutex<State>,
    successes: AtomicU64,
    failures: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The last good list (empty until the first success).
    servers: Vec<IceServer>,
    fetched_at: Option<Instant>,
    /// How long `servers` was said (or assumed) to be valid for.
    valid_for: Duration,
    /// Failures since the last success.
    consecutive_failures: u32,
    /// The last failure, redacted.
    last_error: Option<String>,
}

/// The provider's state in `/healthz`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProviderHealth {
    /// `ok` (the last fetch worked), `stale` (it failed: clients get the last good
    /// list), `failing` (no fetch has worked yet: clients get no provider servers).
    pub state: &'static str,
    /// ICE servers in the list clients get.
    pub servers: usize,
    /// Seconds since the list was fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
    /// Whether the list is older than its lifetime (its credentials may be refused).
    pub expired: bool,
    pub consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl TurnProvider {
    /// `None` when no provider is configured.
    pub fn new(config: &TurnProviderConfig) -> Option<Arc<Self>> {
        if config.url.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            redactor: Redactor::new(&config.api_key),
            config: config.clone(),
            state: Mutex::default(),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    /// The list clients get now: the last good one, however old (see the module doc).
    pub fn servers(&self) -> Vec<IceServer> {
        self.lock().servers.clone()
    }

    pub fn health(&self) -> ProviderHealth {
        let s = self.lock();
        let age = s.fetched_at.map(|t| t.elapsed());
        ProviderHealth {
            state: match (s.fetched_at, s.consecutive_failures) {
                (_, 0) if s.fetched_at.is_some() => "ok",
                (Some(_), _) => "stale",
                (None, _) => "failing",
            },
            servers: s.servers.len(),
            age_secs: age.map(|a| a.as_secs()),
            expired: age.is_some_and(|a| a > s.valid_for),
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error.clone(),
        }
    }

    /// Appends the provider's Prometheus metrics to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        let (successes, failures) = (
            self.successes.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        );
        let s = self.lock();
        let _ = writeln!(
            out,
            "# HELP plaza_turn_provider_fetches_total Fetches of TURN credentials from the provider, by result.\n\
             # TYPE plaza_turn_provider_fetches_total counter\n\
             plaza_turn_provider_fetches_total{{result=\"success\"}} {successes}\n\
             plaza_turn_provider_fetches_total{{result=\"failure\"}} {failures}"
        );
        let _ = writeln!(
            out,
            "# HELP plaza_turn_provider_up Whether the last fetch from the TURN provider worked.\n\
             # TYPE plaza_turn_provider_up gauge\n\
             plaza_turn_provider_up {}",
            u8::from(s.fetched_at.is_some() && s.consecutive_failures == 0)
        );
        // -1 until the first success: "no list" must not read as "a fresh list".
        let age = s.fetched_at.map_or(-1.0, |t| t.elapsed().as_secs_f64());
        let _ = writeln!(
            out,
            "# HELP plaza_turn_provider_list_age_seconds Age of the ICE server list clients get from the provider (-1: none yet).\n\
             # TYPE plaza_turn_provider_list_age_seconds gauge\n\
             plaza_turn_provider_list_age_seconds {age:.3}"
        );
    }

    /// After `first_wait`, keeps the list fresh until the task is aborted. Runs on the
    /// actix system (awc's client is not `Send`).
    pub async fn keep_fresh(self: Arc<Self>, client: awc::Client, first_wait: Duration) {
        let mut wait = first_wait;
        loop {
            actix_web::rt::time::sleep(wait).await;
            wait = self.fetch_and_record(&client).await;
        }
    }

    /// One fetch, recorded; returns how long to wait before the next one.
    pub async fn fetch_and_record(&self, client: &awc::Client) -> Duration {
        let result = self.fetch(client).await;
        let mut s = self.lock();
        match result {
            Ok(fetched) => {
                self.successes.fetch_add(1, Ordering::Relaxed);
                let next = refresh_after(fetched.valid_for);
                if s.consecutive_failures > 0 {
                    info!(
                        failures = s.consecutive_failures,
                        "TURN provider is back: credentials refreshed"
                    );
                }
                info!(
                    url = %self.redactor.url(&self.config.url),
                    servers = fetched.servers.len(),
                    valid_for = ?fetched.valid_for,
                    next_fetch_in = ?next,
                    "TURN credentials fetched from the provider"
                );
                *s = State {
                    servers: fetched.servers,
                    fetched_at: Some(Instant::now()),
                    valid_for: fetched.valid_for,
                    consecutive_failures: 0,
                    last_error: None,
                };
                next
            }
            Err(why) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                let refresh = refresh_after(if s.fetched_at.is_some() {
                    s.valid_for
                } else {
                    self.config.ttl
                });
                let next = backoff(self.config.retry_interval, s.consecutive_failures, refresh);
                let keeping = match s.fetched_at {
                    Some(t) => format!(
                        "clients keep getting the last good list ({} servers, {}s old)",
                        s.servers.len(),
                        t.elapsed().as_secs()
                    ),
                    None => "clients get no TURN servers from it until a fetch works".into(),
                };
                warn!(
                    url = %self.redactor.url(&self.config.url),
                    error = %why,
                    failures = s.consecutive_failures,
                    retry_in = ?next,
                    "TURN provider fetch failed: {keeping}"
                );
                s.last_error = Some(why);
                next
            }
        }
    }

    /// An HTTP(S) client for the provider: rustls with the webpki roots, no redirects
    /// (a redirect would take the key's URL elsewhere), the configured timeout.
    pub fn client(&self) -> awc::Client {
        awc::Client::builder()
            .timeout(self.config.timeout)
            .disable_redirects()
            .finish()
    }

    /// One GET, its answer checked and parsed; the error is redacted.
    async fn fetch(&self, client: &awc::Client) -> Result<Fetched, String> {
        let c = &self.config;
        let mut request = if !c.api_key.is_empty() && !c.api_key_param.is_empty() {
            let sep = if c.url.contains('?') { '&' } else { '?' };
            client.get(format!(
                "{}{sep}{}={}",
                c.url,
                c.api_key_param,
                encode_query_value(&c.api_key)
            ))
        } else {
            client.get(&c.url)
        };
        if !c.api_key.is_empty() && c.api_key_param.is_empty() {
            request = request.bearer_auth(&c.api_key);
        }
        let request = request.insert_header(("Accept", "application/json"));
        let work = async {
            let mut response = request.send().await.map_err(|e| match e {
                // The same deadline as the one below: one message for both.
                awc::error::SendRequestError::Timeout => {
                    format!("no answer within {:?}", c.timeout)
                }
                e => e.to_string(),
            })?;
            let status = response.status();
            let body = response
                .body()
                .limit(MAX_BODY)
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            if !status.is_success() {
                let snippet: String = String::from_utf8_lossy(&body).chars().take(120).collect();
                return Err(format!("HTTP {status}: {snippet:?}"));
            }
            parse_answer(&body, c.ttl)
        };
        // The client's timeout covers the answer's head; this one covers the body too.
        let result = match actix_web::rt::time::timeout(c.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", c.timeout)),
        };
        result.map_err(|e| self.redactor.text(&e))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Credentials valid for `lifetime` are fetched again when 80 % of it has passed: the
/// rest is the margin for a slow or failing provider.
pub fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(0.8)
}

/// The wait after the `failures`-th failure in a row: `first`, doubling, at most a
/// minute or the refresh period (a failing provider is not asked less often than a
/// working one), never less than `first`.
pub fn backoff(first: Duration, failures: u32, refresh: Duration) -> Duration {
    let doubled = first.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF.min(refresh)).max(first)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode_query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Takes the API key out of anything that may be logged or shown.
struct Redactor {
    /// The key as configured and as it goes in the URL.
    forms: Vec<String>,
}

impl Redactor {
    fn new(key: &str) -> Self {
        let mut forms = Vec::new();
        if !key.is_empty() {
            forms.push(key.to_string());
            let encoded = encode_query_value(key);
            if encoded != key {
                forms.push(encoded);
            }
        }
        Self { forms }
    }

    fn text(&self, text: &str) -> String {
        self.forms
            .iter()
            .fold(text.to_string(), |t, key| t.replace(key, "<redacted>"))
    }

    /// The URL as logged: without its query (where keys usually go), redacted anyway.
    fn url(&self, url: &str) -> String {
        let base = url.split('?').next().unwrap_or_default();
        let shown = if base.len() < url.len() {
            format!("{base}?…")
        } else {
            base.to_string()
        };
        self.text(&shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(backoff(s(2), 1, HOUR), s(2));
        assert_eq!(backoff(s(2), 2, HOUR), s(4));
        assert_eq!(backoff(s(2), 5, HOUR), s(32));
        assert_eq!(backoff(s(2), 6, HOUR), s(60));
        assert_eq!(backoff(s(2), 400, HOUR), s(60));
        // Never later than a working provider would be asked.
        assert_eq!(backoff(ms(100), 9, ms(800)), ms(800));
        assert_eq!(backoff(s(2), 3, ms(800)), s(2));
    }

    #[test]
    fn refreshes_at_four_fifths_of_the_lifetime() {
        assert_eq!(
            refresh_after(Duration::from_secs(100)),
            Duration::from_secs(80)
        );
    }

    #[test]
    fn the_key_is_redacted_in_every_form() {
        let r = Redactor::new("k3y/with+plus");
        assert_eq!(
            r.text("GET /c?apiKey=k3y%2Fwith%2Bplus failed; key k3y/with+plus"),
            "GET /c?apiKey=<redacted> failed; key <redacted>"
        );
        assert_eq!(
            r.url("https://a.example/c?apiKey=zzz"),
            "https://a.example/c?…"
        );
        assert_eq!(Redactor::new("").text("nothing"), "nothing");
    }
}
