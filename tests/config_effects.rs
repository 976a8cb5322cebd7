//! Every setting changes what the server does, not just what it parses: for each key
//! of `plaza::config::SETTINGS`, the real `plaza` binary is run four times — the value
//! in the `--config` file, as its `PLAZA_*` variable, as its `--flag`, and not at all —
//! and a probe looks at the server from outside (HTTP, WebSocket frames, a participant's
//! events, /proc, packets, the log). The first three must show the value's effect; the
//! baseline must not, which proves each probe can fail. A key without a row fails the
//! test.
//!
//! Runs inside a loopback-only network namespace, like every WebRTC test:
//! `unshare -n sh -c 'ip link set lo up && cargo test --test config_effects -- --nocapture'`.
//! `CONFIG_EFFECTS_KEYS=key,key` runs only those keys (while working on a row).

#[path = "config_effects/client.rs"]
mod client;
#[path = "config_effects/harness.rs"]
mod harness;
#[path = "config_effects/probes.rs"]
mod probes;
#[path = "config_effects/provider_probes.rs"]
mod provider_probes;

use std::time::{Duration, Instant};

use harness::{Plan, Source, Started};
use plaza::config::SETTINGS;
use probes::*;
use provider_probes::{ProviderProbe, PROVIDER_KEY, PROVIDER_URL};

/// What the run without the setting shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    /// The server starts and the probe fails.
    ProbeFails,
    /// The server refuses to start: a `with` setting is invalid alone.
    Refused,
}

struct Row {
    /// The value under test, in command-line syntax (placeholders: `{port}`,
    /// `{port2}`, `{udp}`, `{udp_max}`, `{workers}`, `{dir}`).
    value: &'static str,
    /// Other settings (in the file, every run) that the value needs to be valid or
    /// observable.
    with: &'static [(&'static str, &'static str)],
    baseline: Baseline,
    probe: Probe,
}

const fn row(value: &'static str, probe: Probe) -> Row {
    Row {
        value,
        with: &[],
        baseline: Baseline::ProbeFails,
        probe,
    }
}

const fn with(
    value: &'static str,
    with: &'static [(&'static str, &'static str)],
    probe: Probe,
) -> Row {
    Row {
        value,
        with,
        baseline: Baseline::ProbeFails,
        probe,
    }
}

/// The table: one row per key.
fn row_for(key: &str) -> Option<Row> {
    use Probe::*;
    let ms = Duration::from_millis;
    Some(match key {
        // The base file listens on {port}.
        "listen" => row("127.0.0.1:{port2}", Listen),
        // The baseline serves ./web, the real web client.
        "web_root" => row("{dir}/www", WebRoot),
        // {workers} is one more than the cores, so never the default (one per core).
        // Inside plaza's actix system, actix-server runs each worker as an arbiter:
        // a thread named "actix-rt|system:0|arbiter:N", cut to 15 bytes.
        "http_workers" => row("{workers}", Threads("actix-rt|system")),
        "media_threads" => row("{workers}", Threads("plaza-media")),
        // Clients that leave promptly never wait for the budget: the log says it.
        "shutdown_timeout" => row("700ms", ShutdownBudget("700ms")),
        "ice_servers" => row(r#"[{"urls":["stun:198.18.0.9:3478"]}]"#, IceServers),
        "heartbeat.interval" => row("200ms", Pings),
        "heartbeat.join_timeout" => row("1s", JoinTimeout),
        "access.allowed_origins" => row("https://app.example.com", OriginAllowed),
        // Two joins per address: the three forwarded addresses get one each here, and
        // share 127.0.0.1's two in the baseline.
        "access.trusted_proxies" => with(
            "127.0.0.1",
            &[("limits.joins_per_ip_per_minute", "2")],
            ForwardedJoins("x-forwarded-for"),
        ),
        // The baseline reads X-Forwarded-For only, so Forwarded changes nothing there.
        "access.forwarded_header" => with(
            "forwarded",
            &[
                ("access.trusted_proxies", "127.0.0.1"),
                ("limits.joins_per_ip_per_minute", "2"),
            ],
            ForwardedJoins("forwarded"),
        ),
        // The default (20 s) keeps the participant well past the probe's 3 s.
        "session.resume_grace" => row("1s", ResumeGraceEnds),
        "heartbeat.timeout" => with(
            "1s",
            &[("heartbeat.interval", "200ms")],
            SilentClientDropped,
        ),
        // Six subscribers ask every 25 ms, each from 100 ms after the one before (one
        // subscriber's own requests are budgeted apart), and the publisher answers
        // within a frame: the cap is what spaces the requests, 600 ms here, 50 ms (the
        // default) in the baseline. (A retry may not come sooner than the cap: 2 s,
        // valid with both.)
        "media.keyframe_request_interval" => with(
            "600ms",
            &[("media.keyframe_retry", "2s")],
            KeyframeCap { min_gap: ms(500) },
        ),
        // The publisher (1 fps) answers a request only at its next frame, up to 1 s
        // later; meanwhile the request is retried every 100 ms here, every 400 ms (the
        // default) in the baseline.
        "media.keyframe_retry" => with(
            "100ms",
            &[("media.keyframe_request_interval", "50ms")],
            KeyframeRetry {
                max_median_gap: ms(250),
            },
        ),
        // The base file has no ice.ips here: the baseline gathers on non-loopback
        // addresses only, and the namespace has none.
        "ice.ips" => row("127.0.0.1", LoopbackCandidate),
        "ice.interfaces" => row("nonexistent0", NoCandidate),
        "ice.nat_1to1_ips" => row(NAT_IP, NatCandidates),
        "ice.udp_port" => row("{udp}", MuxPort),
        // Baseline refused: half a port range is invalid.
        "ice.udp_port_min" => Row {
            baseline: Baseline::Refused,
            ..with("{udp}", &[("ice.udp_port_max", "{udp_max}")], PortRange)
        },
        "ice.udp_port_max" => Row {
            baseline: Baseline::Refused,
            ..with("{udp_max}", &[("ice.udp_port_min", "{udp}")], PortRange)
        },
        // webrtc-ice fails a silent connection after disconnected + failed timeouts:
        // 100ms + 5s here, 5s + 5s in the baseline (failed may not be below the 5s
        // default of disconnected).
        "ice.disconnected_timeout" => with(
            "100ms",
            &[
                ("ice.failed_timeout", "5s"),
                ("ice.keepalive_interval", "50ms"),
            ],
            PeerFailedWithin(ms(7500)),
        ),
        // 1s + 2s here, 1s + 15s in the baseline.
        "ice.failed_timeout" => with(
            "2s",
            &[
                ("ice.disconnected_timeout", "1s"),
                ("ice.keepalive_interval", "300ms"),
            ],
            PeerFailedWithin(ms(5000)),
        ),
        // An idle connection: consent checks (a request and a response) every 300 ms
        // from the server, against a burst every 2 s (the server's and the client's,
        // both the default) in the baseline.
        "ice.keepalive_interval" => row(
            "300ms",
            ConsentChecks {
                max_quiet: ms(1000),
            },
        ),
        // Baseline refused: a TURN secret without URLs is invalid.
        "turn.urls" => Row {
            baseline: Baseline::Refused,
            ..with(
                TURN_URL,
                &[("turn.secret", TURN_SECRET)],
                TurnCredential(86_400),
            )
        },
        // Baseline refused: TURN URLs without a secret are invalid.
        "turn.secret" => Row {
            baseline: Baseline::Refused,
            ..with(
                TURN_SECRET,
                &[("turn.urls", TURN_URL)],
                TurnCredential(86_400),
            )
        },
        "turn.ttl" => with(
            "1h",
            &[("turn.urls", TURN_URL), ("turn.secret", TURN_SECRET)],
            TurnCredential(3_600),
        ),
        // The server's own STUN server: a Binding request reaches {port2} when it
        // gathers; none in the baseline.
        "ice.servers" => row(r#"[{"urls":["stun:127.0.0.1:{port2}"]}]"#, ServerStun),
        // The provider rows: a fake provider on {port2}, up only once the server is
        // (the server retries). A ttl of 1 s keeps retries under 0.8 s apart.
        "turn_provider.url" => with(
            PROVIDER_URL,
            &[
                ("turn_provider.ttl", "1s"),
                ("turn_provider.retry_interval", "100ms"),
            ],
            Provider(ProviderProbe::Served { key_param: None }),
        ),
        // The baseline sends no key: the provider answers 401.
        "turn_provider.api_key" => with(
            PROVIDER_KEY,
            &[
                ("turn_provider.url", PROVIDER_URL),
                ("turn_provider.ttl", "1s"),
                ("turn_provider.retry_interval", "100ms"),
            ],
            Provider(ProviderProbe::Served {
                key_param: Some("apiKey"),
            }),
        ),
        // The baseline sends apiKey=, this provider wants key=.
        "turn_provider.api_key_param" => with(
            "key",
            &[
                ("turn_provider.url", PROVIDER_URL),
                ("turn_provider.api_key", PROVIDER_KEY),
                ("turn_provider.ttl", "1s"),
                ("turn_provider.retry_interval", "100ms"),
            ],
            Provider(ProviderProbe::Served {
                key_param: Some("key"),
            }),
        ),
        // Refreshed every 0.8 s here; once an hour in the baseline.
        "turn_provider.ttl" => with(
            "1s",
            &[
                ("turn_provider.url", PROVIDER_URL),
                ("turn_provider.retry_interval", "100ms"),
            ],
            Provider(ProviderProbe::Refreshed {
                n: 2,
                within: ms(3000),
            }),
        ),
        // The first request hangs: given up after 300 ms here (then retried within
        // 0.8 s), after 5 s in the baseline.
        "turn_provider.timeout" => with(
            "300ms",
            &[
                ("turn_provider.url", PROVIDER_URL),
                ("turn_provider.ttl", "1s"),
                ("turn_provider.retry_interval", "100ms"),
            ],
            Provider(ProviderProbe::TimeoutRetried { within: ms(3000) }),
        ),
        // Every answer a 500: retries at most 0.8 s apart here, 2 s in the baseline.
        "turn_provider.retry_interval" => with(
            "100ms",
            &[
                ("turn_provider.url", PROVIDER_URL),
                ("turn_provider.ttl", "1s"),
            ],
            Provider(ProviderProbe::Retries {
                n: 4,
                within: ms(3000),
            }),
        ),
        "limits.max_participants_per_room" => row("1", RoomFull),
        "limits.max_rooms" => row("1", TooManyRooms),
        "limits.max_tracks_per_participant" => row("1", TooManyTracks),
        "limits.max_frame_bytes" => row("2048", FrameTooLarge),
        "limits.max_chat_bytes" => row("100", ChatTooLarge),
        "limits.max_room_name_len" => row("4", RoomNameTooLong),
        "limits.max_display_name_len" => row("4", DisplayNameTooLong),
        // After the burst, one ping every 400 ms: over 1/s, and well under the default
        // 20/s (whose refill between two pings covers a bunch of 5 held up by load).
        "limits.signalling_rate" => with(
            "1",
            &[("limits.signalling_burst", "5")],
            SignallingFlood(Pattern {
                at_once: 5,
                then: 4,
                every: ms(400),
            }),
        ),
        "limits.signalling_burst" => row(
            "5",
            SignallingFlood(Pattern {
                at_once: 20,
                then: 0,
                every: ms(0),
            }),
        ),
        // After the burst, a message every 500 ms: over 1/s, under the default 5/s.
        "limits.chat_rate" => with(
            "1",
            &[("limits.chat_burst", "4")],
            ChatFlood(Pattern {
                at_once: 4,
                then: 4,
                every: ms(500),
            }),
        ),
        "limits.chat_burst" => row(
            "3",
            ChatFlood(Pattern {
                at_once: 12,
                then: 0,
                every: ms(0),
            }),
        ),
        "limits.joins_per_ip_per_minute" => row("2", JoinsPerIp),
        "auth.secret" => row(AUTH_SECRET, TokenRequired),
        // The baseline (a secret, no audience or issuer) admits a token without them.
        "auth.audience" => with(
            "plaza.example",
            &[("auth.secret", AUTH_SECRET)],
            ClaimRequired("aud", "plaza.example"),
        ),
        "auth.issuer" => with(
            "https://issuer.example",
            &[("auth.secret", AUTH_SECRET)],
            ClaimRequired("iss", "https://issuer.example"),
        ),
        // The baseline has no admin API (404).
        "admin.api_key" => row(ADMIN_KEY, AdminApi),
        // 1 s here, 10 min (the default) in the baseline.
        "admin.kick_ban" => with("1s", &[("admin.api_key", ADMIN_KEY)], KickBanOver),
        "admin.room_closed_for" => with("1s", &[("admin.api_key", ADMIN_KEY)], RoomReopens),
        "limits.max_connections" => row("2", ConnectionsCapped(503)),
        "limits.max_connections_per_ip" => row("2", ConnectionsCapped(429)),
        "log.level" => row("warn", WarnOnly),
        "log.json" => row("true", JsonLog),
        _ => return None,
    })
}

/// A probe that hangs is a failure, not a stuck test.
const PROBE_WITHIN: Duration = Duration::from_secs(30);

/// One run: `Ok` with what was seen when it went as it must.
async fn check(key: &'static str, row: &Row, source: Source) -> Result<String, String> {
    let plan = Plan {
        key,
        value: row.value,
        with: row.with,
        source,
    };
    let run = match harness::start(&plan).await? {
        Started::Refused { status, log } => {
            return if source == Source::Baseline && row.baseline == Baseline::Refused {
                // A configuration error naming a setting of the row.
                let names_one = std::iter::once(key)
                    .chain(row.with.iter().map(|(k, _)| *k))
                    .any(|k| log.contains(&format!("plaza: configuration: {k}: ")));
                let refused = status.code() == Some(2) && names_one;
                if refused {
                    Ok(format!("refused to start: {}", log.trim()))
                } else {
                    Err(format!(
                        "exited ({status}) but not with a configuration error: {log}"
                    ))
                }
            } else {
                Err(format!("exited at start ({status}):\n{}", tail(&log)))
            };
        }
        Started::Up(run) => run,
    };
    let result = tokio::time::timeout(PROBE_WITHIN, probe(row.probe, &run))
        .await
        .unwrap_or_else(|_| Err(format!("probe still running after {PROBE_WITHIN:?}")));
    let exit = tokio::task::block_in_place(|| run.stop());
    let log = run.log();
    run.cleanup();
    if let Some(exit) = exit {
        match exit {
            Ok(status) if status.success() => {}
            Ok(status) => {
                return Err(format!(
                    "exit status {status} after SIGTERM:\n{}",
                    tail(&log)
                ))
            }
            Err(e) => return Err(format!("{e}:\n{}", tail(&log))),
        }
    }
    match (source, row.baseline, result) {
        (Source::Baseline, Baseline::Refused, _) => {
            Err("started, but the baseline should be refused".into())
        }
        (Source::Baseline, Baseline::ProbeFails, Ok(())) => {
            Err("the probe passes without the setting, so it proves nothing".into())
        }
        (Source::Baseline, Baseline::ProbeFails, Err(e)) => Ok(format!("probe fails: {e}")),
        (_, _, Ok(())) => Ok("effect seen".into()),
        (_, _, Err(e)) => Err(format!("{e}\nlog:\n{}", tail(&log))),
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_setting_changes_what_the_server_does_from_file_env_and_flag() {
    let missing: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| row_for(s.key).is_none())
        .map(|s| s.key)
        .collect();
    assert!(missing.is_empty(), "settings without a row: {missing:?}");

    let only = std::env::var("CONFIG_EFFECTS_KEYS").ok();
    let selected = |key: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|k| k == key))
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    for s in SETTINGS.iter().filter(|s| selected(s.key)) {
        let row = row_for(s.key).unwrap();
        for source in Source::ALL {
            let t = Instant::now();
            let outcome = check(s.key, &row, source).await;
            let took = t.elapsed().as_secs_f32();
            match &outcome {
                Ok(seen) => {
                    let seen = seen.lines().next().unwrap_or_default();
                    println!(
                        "ok   {:<34} {:<8} {took:5.1}s  {seen}",
                        s.key,
                        source.name()
                    );
                }
                Err(e) => {
                    println!("FAIL {:<34} {:<8} {took:5.1}s  {e}", s.key, source.name());
                    failures.push(format!("{} ({}): {e}", s.key, source.name()));
                }
            }
        }
    }
    println!("{:.1} s in all", started.elapsed().as_secs_f32());
    if only.is_some() {
        println!("CONFIG_EFFECTS_KEYS is set: only some keys were checked");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
