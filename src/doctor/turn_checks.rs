//! TURN: the credentials Plaza mints (`turn.secret` + `turn.urls`, exactly as in
//! `joined`), those its TURN provider hands out (`turn_provider.url`, fetched once as
//! the server does at startup), any static ones in `ice_servers`, and the server's own
//! (`ice.servers`) must allocate on each server over each transport its URL lists; for
//! `turns:`, the certificate must be valid for the URL's host name (a browser checks it
//! the same way).

use std::time::Duration;

use plaza_protocol::{IceServer, ParticipantId};

use super::report::Check;
use super::urls::IceUrl;
use crate::config::Config;
use crate::rtc::probe::{
    ProbeError, TlsFailure, TlsRoots, TurnAllocation, TurnTarget, TurnTransport,
};

/// A working allocation, kept to send from its relay.
pub struct Relay {
    pub label: String,
    pub allocation: TurnAllocation,
}

/// `provider`: the list the TURN provider handed out (`provider_list`).
pub async fn check(
    config: &Config,
    provider: &[IceServer],
    roots: &TlsRoots,
    within: Duration,
) -> (Vec<Check>, Option<Relay>) {
    let mut out = Vec::new();
    let mut relay: Option<Relay> = None;
    let mut servers = turn_servers(config);
    servers.extend(
        provider
            .iter()
            .filter(|s| s.urls.iter().any(|u| u.starts_with("turn")))
            .map(|s| ("provider", s.clone())),
    );
    if servers.is_empty() {
        out.push(Check::warn(
            "turn",
            "no TURN server: clients whose network blocks UDP cannot connect, and the media \
             port cannot be checked from outside",
            "run coturn with use-auth-secret and set turn.urls and turn.secret \
             (PLAZA_TURN_SECRET) to its static-auth-secret",
        ));
    }
    for (source, server) in servers {
        let (Some(username), Some(password)) = (&server.username, &server.credential) else {
            continue; // reported by the configuration check
        };
        for url in &server.urls {
            let Ok(parsed) = IceUrl::parse(url) else {
                continue; // reported by the configuration check
            };
            if !parsed.turn {
                continue;
            }
            let addr = match parsed.resolve().await {
                Ok(a) => a,
                Err(why) => {
                    out.push(Check::fail(
                        "turn",
                        format!("{url}: {why}"),
                        "fix the host name in the URL, or this host's DNS",
                    ));
                    continue;
                }
            };
            for transport in &parsed.transports {
                let target = TurnTarget {
                    server: addr,
                    transport: *transport,
                    tls_name: parsed.host.clone(),
                    username: username.clone(),
                    password: password.clone(),
                };
                let label = format!("{url} over {transport}");
                match TurnAllocation::allocate(&target, roots, within).await {
                    Ok(allocation) => {
                        let tls = if *transport == TurnTransport::Tls {
                            format!(", certificate valid for {}", parsed.host)
                        } else {
                            String::new()
                        };
                        out.push(Check::ok(
                            "turn",
                            format!(
                                "{label}: {source} credentials allocate (relay {}){tls}",
                                allocation.relayed_addr()
                            ),
                        ));
                        if relay.is_none() {
                            relay = Some(Relay { label, allocation });
                        } else {
                            allocation.close().await;
                        }
                    }
                    Err(e) => out.push(failure(&label, source, &parsed, &e, roots)),
                }
            }
        }
    }
    (out, relay)
}

/// The list the TURN provider hands out now, fetched once the way the server fetches it
/// at startup (none without a provider), and whether the fetch worked, as a check.
pub async fn provider_list(config: &Config) -> (Vec<Check>, Vec<IceServer>) {
    let mut out = Vec::new();
    let Some(provider) = crate::turn::provider::TurnProvider::new(&config.turn_provider) else {
        return (out, Vec::new());
    };
    // awc (the provider's HTTP client, as in the server) runs on a local task set.
    tokio::task::LocalSet::new()
        .run_until(async {
            let client = provider.client();
            provider.fetch_and_record(&client).await
        })
        .await;
    let health = provider.health();
    match health.last_error {
        Some(why) => out.push(Check::fail(
            "turn",
            format!("TURN provider: the credentials fetch failed: {why}"),
            "check turn_provider.url and turn_provider.api_key (PLAZA_TURN_PROVIDER_API_KEY),              and that this host reaches the provider over HTTPS",
        )),
        None => out.push(Check::ok(
            "turn",
            format!("TURN provider: {} ICE servers fetched", health.servers),
        )),
    }
    (out, provider.servers())
}

/// Minted credentials (as a participant gets them) first, then static ones, then the
/// server's own.
fn turn_servers(config: &Config) -> Vec<(&'static str, IceServer)> {
    let mut out = Vec::new();
    if !config.turn.secret.is_empty() && !config.turn.urls.is_empty() {
        let minted =
            crate::turn::ice_servers_for(config, &ParticipantId::from_client("doctor"), None);
        if let Some(last) = minted.last() {
            out.push(("minted", last.clone()));
        }
    }
    for s in &config.ice_servers {
        if s.urls.iter().any(|u| u.starts_with("turn")) {
            out.push(("static (ice_servers)", s.clone()));
        }
    }
    for s in &config.ice.servers {
        if s.urls.iter().any(|u| u.starts_with("turn")) {
            out.push(("the server's own (ice.servers)", s.clone()));
        }
    }
    out
}

fn failure(label: &str, source: &str, url: &IceUrl, e: &ProbeError, roots: &TlsRoots) -> Check {
    let what = format!("{label}: {e}");
    let fix = match e {
        ProbeError::Unauthorized if source == "minted" => {
            "turn.secret must equal coturn's static-auth-secret, and coturn must run with \
             use-auth-secret; also check both clocks (a minted username carries its expiry \
             time)"
                .to_string()
        }
        ProbeError::Unauthorized if source == "provider" => {
            "the provider hands out credentials its TURN server refuses: check the account \
             or application the API key belongs to, and this host's clock"
                .to_string()
        }
        ProbeError::Unauthorized if source.contains("ice.servers") => {
            "fix the username/credential of this ice.servers entry (the server's own TURN \
             access)"
                .to_string()
        }
        ProbeError::Unauthorized => {
            "fix the username/credential of this ice_servers entry (or let Plaza mint them: \
             turn.urls + turn.secret)"
                .to_string()
        }
        ProbeError::Timeout | ProbeError::Io(_) => format!(
            "check that the TURN server runs and listens on {}:{} for this transport, and that \
             firewalls between here and it let it through",
            url.host, url.port
        ),
        ProbeError::Tls(TlsFailure::WrongName(_)) => format!(
            "give the TURN server a certificate for {} (or put the name its certificate has in \
             the URL)",
            url.host
        ),
        ProbeError::Tls(TlsFailure::UnknownIssuer) => format!(
            "use a certificate from a CA browsers trust, with its full chain (trust store read: \
             {}, {} CAs; SSL_CERT_FILE names another)",
            roots.source.display(),
            roots.count
        ),
        ProbeError::Tls(TlsFailure::Expired) => "renew the TURN server's certificate".into(),
        ProbeError::Tls(TlsFailure::Other(_)) | ProbeError::Protocol(_) => {
            "check the TURN server's log for this request".into()
        }
    };
    Check::fail("turn", what, fix)
}
