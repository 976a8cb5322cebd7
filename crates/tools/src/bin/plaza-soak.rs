//! `plaza-soak`: a churn soak against the real server process.
//!
//! It starts the release `plaza` binary as a child on loopback (or attaches to a running
//! one with `--url` and `--server-pid`), runs `--warmup-cycles` then `--cycles`
//! participant lives through `plaza_tools::soak` (join, publish, receive, chat, leave cleanly,
//! abruptly or mid-negotiation), and samples the server process: open file descriptors
//! and RSS from /proc, and the registry and media gauges from `/healthz` and `/metrics`.
//!
//! Server figures are compared at quiet points, when nobody is connected and every
//! gauge has gone back to zero: after the warm-up and at the end. It exits 1 if a gauge
//! is not zero at the end, the open descriptors differ from the post-warm-up value, RSS
//! grew by `--max-rss-growth` % or more, or a cycle failed (unless `--allow-failures`);
//! 2 if the soak could not run at all. Run it inside a loopback-only namespace:
//!
//! ```text
//! unshare -n sh -c 'ip link set lo up && target/release/plaza-soak --cycles 10000 --json soak.json'
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;

use plaza_tools::procstat;
use plaza_tools::server_process::{http_get, loopback_command, metric, plaza_metrics, Server};
use plaza_tools::soak::{self, SoakOptions, SoakReport};

#[derive(Parser, Debug)]
#[command(
    name = "plaza-soak",
    about = "Churn soak: join/leave cycles against a real Plaza process"
)]
struct Args {
    /// Cycles (participant lives) after the warm-up
    #[arg(long, default_value_t = 10_000)]
    cycles: u64,
    /// Cycles before the baseline is taken (lazy allocations, pools, caches settle;
    /// 300 was too few: RSS still grew to its working size afterwards)
    #[arg(long, default_value_t = 2000)]
    warmup_cycles: u64,
    #[arg(long, default_value_t = 4)]
    rooms: usize,
    /// Cycles running at once
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Long-lived participants per room (they leave at the end of each phase)
    #[arg(long, default_value_t = 1)]
    residents: usize,
    /// The plaza binary to start [default: next to this executable]
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Port for the started server (127.0.0.1)
    #[arg(long, default_value_t = 18100)]
    port: u16,
    /// Media runtime threads of the started server
    #[arg(long)]
    media_threads: Option<usize>,
    /// Use a running server instead (`ws://127.0.0.1:PORT/ws`); needs --server-pid
    #[arg(long, requires = "server_pid")]
    url: Option<String>,
    /// PID of the server named by --url, to read /proc
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the summary here as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// Sample the server this often during the run
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    sample_every: Duration,
    /// How long the server may take to reach zero after each phase
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    settle_timeout: Duration,
    /// How long a cycle waits for media from the room
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    media_wait: Duration,
    /// RSS growth (after warm-up → end) that fails the run, percent
    #[arg(long, default_value_t = 5.0)]
    max_rss_growth: f64,
    /// Leave only this way (to find which one leaks) instead of all three in turn
    #[arg(long, value_enum)]
    only: Option<plaza_tools::soak::LeaveKind>,
    /// Do not fail the run because cycles failed (they are still reported)
    #[arg(long)]
    allow_failures: bool,
    /// Where the started server's log goes
    #[arg(long, default_value = "target/soak")]
    log_dir: PathBuf,
}

/// What `/healthz` and `/metrics` say is alive.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
struct Gauges {
    connections: i64,
    participants: i64,
    rooms: i64,
    room_actors: i64,
    forwarding_tasks: i64,
    subscriptions: i64,
    peer_connections: i64,
}

impl Gauges {
    fn is_zero(&self) -> bool {
        *self == Gauges::default()
    }
}

/// One look at the server process.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    at: String,
    elapsed_secs: f64,
    cycles_done: u64,
    open_fds: usize,
    rss_bytes: u64,
    threads: u64,
    cpu_secs: f64,
    gauges: Gauges,
}

#[derive(Debug, Serialize)]
struct Summary {
    command: String,
    started_unix: u64,
    duration_secs: f64,
    cycles: u64,
    warmup_cycles: u64,
    rooms: usize,
    concurrency: usize,
    residents_per_room: usize,
    warmup: SoakReport,
    soak: SoakReport,
    /// Before any connection (lazily created descriptors may appear after it).
    initial: Sample,
    after_warmup: Sample,
    end: Sample,
    samples: Vec<Sample>,
    fds_initial: usize,
    fds_after_warmup: usize,
    fds_end: usize,
    rss_after_warmup_bytes: u64,
    rss_end_bytes: u64,
    rss_growth_percent: f64,
    settle_secs_end: f64,
    violations: Vec<String>,
    passed: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PLAZA_SOAK_LOG").unwrap_or_else(|_| {
                "warn,webrtc=error,webrtc_ice=error,webrtc_srtp=error,webrtc_dtls=error,webrtc_sctp=error,dtls=error".into()
            }),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("soak")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plaza-soak: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("plaza-soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (mut server, addr, url) = match &args.url {
        Some(url) => {
            let addr = url
                .trim_start_matches("ws://")
                .split('/')
                .next()
                .unwrap_or_default()
                .parse::<SocketAddr>()
                .context("--url must be ws://IP:PORT/ws")?;
            let pid = args.server_pid.context("--url needs --server-pid")?;
            (Server::attach(pid), addr, url.clone())
        }
        None => {
            let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
            let log = args
                .log_dir
                .join(format!("plaza-{}-{started_unix}.log", args.port));
            let server = Server::spawn(
                &loopback_command(args.server_bin.as_deref(), args.port, args.media_threads)?,
                addr,
                &log,
            )
            .await?;
            println!("server pid {} on {addr}, log {}", server.pid, log.display());
            (server, addr, format!("ws://{addr}/ws"))
        }
    };
    wait_healthy(addr).await?;
    let pid = server.pid;
    let t0 = Instant::now();
    let initial = sample(pid, addr, "initial", t0, 0).await?;

    let mut opts = SoakOptions::new(url);
    opts.rooms = args.rooms;
    opts.concurrency = args.concurrency;
    opts.residents_per_room = args.residents;
    opts.media_wait = args.media_wait;
    opts.only = args.only;

    // Warm-up, then the baseline at a quiet point.
    opts.cycles = args.warmup_cycles;
    opts.room_prefix = "warmup".into();
    println!("warm-up: {} cycles", args.warmup_cycles);
    let warmup = soak::run(&opts).await;
    print_cycles("warm-up", &warmup);
    let settled = settle(pid, addr, args.settle_timeout, None).await?;
    let after_warmup = sample(pid, addr, "after warm-up", t0, 0).await?;
    let kinds_after_warmup = procstat::fd_kinds(pid);
    println!(
        "baseline after warm-up (settled in {:.1} s): {} fds, RSS {}",
        settled.as_secs_f64(),
        after_warmup.open_fds,
        mib(after_warmup.rss_bytes)
    );

    // The soak, sampled periodically.
    opts.cycles = args.cycles;
    opts.first_cycle = args.warmup_cycles;
    opts.room_prefix = "soak".into();
    let progress = Arc::clone(&opts.progress);
    progress.store(0, Ordering::Relaxed);
    let samples = Arc::new(Mutex::new(vec![initial.clone(), after_warmup.clone()]));
    let sampler = {
        let (samples, progress, every) = (
            Arc::clone(&samples),
            Arc::clone(&progress),
            args.sample_every,
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let done = progress.load(Ordering::Relaxed);
                match sample(pid, addr, "during", t0, done).await {
                    Ok(s) => {
                        println!(
                            "  {:>6.0} s  {done:>6} cycles  {:>4} fds  RSS {}  {} connections, {} rooms, {} tracks, {} pcs",
                            s.elapsed_secs, s.open_fds, mib(s.rss_bytes),
                            s.gauges.connections, s.gauges.rooms, s.gauges.forwarding_tasks, s.gauges.peer_connections
                        );
                        samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                    }
                    Err(e) => eprintln!("  sample failed: {e:#}"),
                }
            }
        })
    };
    println!(
        "soak: {} cycles, {} rooms, concurrency {}, {} resident(s) per room",
        args.cycles, args.rooms, args.concurrency, args.residents
    );
    let report = soak::run(&opts).await;
    sampler.abort();
    print_cycles("soak", &report);

    // The end, at a quiet point: every gauge at zero, descriptors back.
    let settle_end = settle(pid, addr, args.settle_timeout, Some(after_warmup.open_fds)).await?;
    let end = sample(pid, addr, "end", t0, report.done + report.failed).await?;
    let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    samples.push(end.clone());

    let growth = (end.rss_bytes as f64 / after_warmup.rss_bytes as f64 - 1.0) * 100.0;
    let mut violations = Vec::new();
    let g = end.gauges;
    for (what, v) in [
        ("connections (registry)", g.connections),
        ("participants (registry)", g.participants),
        ("rooms (registry)", g.rooms),
        ("room actors", g.room_actors),
        ("forwarding tasks", g.forwarding_tasks),
        ("subscriptions", g.subscriptions),
        ("peer connections", g.peer_connections),
    ] {
        if v != 0 {
            violations.push(format!("{what}: {v} at the end, want 0"));
        }
    }
    // Growth is a leak; fewer at the end only means something transient was open at
    // the baseline.
    if end.open_fds > after_warmup.open_fds {
        // Which kinds differ, so a leak says what it is (a UDP socket of a peer
        // connection, an eventfd of a runtime, a TCP socket of a client...).
        let kinds_end = procstat::fd_kinds(pid);
        let mut changed: Vec<String> = kinds_end
            .keys()
            .chain(kinds_after_warmup.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|k| {
                let (a, b) = (
                    kinds_after_warmup.get(k).copied().unwrap_or(0),
                    kinds_end.get(k).copied().unwrap_or(0),
                );
                (a != b).then(|| format!("{k} {a} -> {b}"))
            })
            .collect();
        if changed.is_empty() {
            changed.push("no kind changed its count".into());
        }
        violations.push(format!(
            "open fds: {} at the end, {} after warm-up ({})",
            end.open_fds,
            after_warmup.open_fds,
            changed.join(", ")
        ));
    }
    if growth >= args.max_rss_growth {
        violations.push(format!(
            "RSS grew {growth:.1} % (limit {} %)",
            args.max_rss_growth
        ));
    }
    if !args.allow_failures && (report.failed > 0 || report.resident_failures > 0) {
        violations.push(format!(
            "{} cycles and {} residents failed",
            report.failed, report.resident_failures
        ));
    }
    let summary = Summary {
        command,
        started_unix,
        duration_secs: started.elapsed().as_secs_f64(),
        cycles: args.cycles,
        warmup_cycles: args.warmup_cycles,
        rooms: args.rooms,
        concurrency: args.concurrency,
        residents_per_room: args.residents,
        warmup,
        soak: report,
        fds_initial: initial.open_fds,
        fds_after_warmup: after_warmup.open_fds,
        fds_end: end.open_fds,
        rss_after_warmup_bytes: after_warmup.rss_bytes,
        rss_end_bytes: end.rss_bytes,
        rss_growth_percent: growth,
        settle_secs_end: settle_end.as_secs_f64(),
        initial,
        after_warmup,
        end,
        samples,
        passed: violations.is_empty(),
        violations,
    };
    print_table(&summary);
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("{}", path.display()))?;
        println!("summary written to {}", path.display());
    }
    server.stop();
    Ok(summary.passed)
}

async fn wait_healthy(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http_get(addr, "/healthz").await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e.context("/healthz")),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn gauges(addr: SocketAddr) -> Result<Gauges> {
    let health: serde_json::Value = serde_json::from_str(&http_get(addr, "/healthz").await?)?;
    let h = |k: &str| health.get(k).and_then(|v| v.as_i64()).unwrap_or(-1);
    let m = plaza_metrics(addr).await?;
    let mg = |k: &str| metric(&m, k).map_or(-1, |v| v as i64);
    let g = Gauges {
        connections: h("connections"),
        participants: h("participants"),
        rooms: h("rooms"),
        room_actors: mg("plaza_room_actors"),
        forwarding_tasks: mg("plaza_published_tracks"),
        subscriptions: mg("plaza_subscriptions"),
        peer_connections: mg("plaza_peer_connections"),
    };
    Ok(g)
}

async fn sample(pid: u32, addr: SocketAddr, at: &str, t0: Instant, done: u64) -> Result<Sample> {
    let gauges = gauges(addr).await?;
    let p = procstat::sample(pid).context("server process is gone")?;
    let fds = procstat::open_fds(pid).context("server process is gone")?;
    Ok(Sample {
        at: at.into(),
        elapsed_secs: t0.elapsed().as_secs_f64(),
        cycles_done: done,
        open_fds: fds,
        rss_bytes: p.rss_bytes,
        threads: p.threads,
        cpu_secs: p.cpu_secs,
        gauges,
    })
}

/// Waits until every gauge is zero and the open descriptors are back to `fds` or
/// fewer (with `None`: the same in two polls in a row, so a baseline is not taken
/// while a socket, e.g. of our own `/healthz` request, is still closing). Polled, with a
/// bound. On timeout the run goes on, so the figures show what was left.
async fn settle(
    pid: u32,
    addr: SocketAddr,
    within: Duration,
    fds: Option<usize>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut last_open = None;
    loop {
        let g = gauges(addr).await?;
        let open = procstat::open_fds(pid).context("server process is gone")?;
        let fds_settled = match fds {
            Some(f) => open <= f,
            None => last_open == Some(open),
        };
        last_open = Some(open);
        if g.is_zero() && fds_settled {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            eprintln!("not settled after {within:?}: {g:?}, {open} fds (want {fds:?})");
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn print_cycles(phase: &str, r: &SoakReport) {
    println!(
        "{phase}: {} cycles in {:.0} s ({:.1}/s): {} done, {} failed; residents {} (failures {}), chats seen by residents {}",
        r.cycles,
        r.duration_secs,
        r.cycles as f64 / r.duration_secs.max(1e-9),
        r.done,
        r.failed,
        r.residents,
        r.resident_failures,
        r.chats_seen_by_residents
    );
    for (kind, t) in &r.by_kind {
        println!(
            "  {:<16} done {:>6}  failed {:>4}",
            kind.name(),
            t.done,
            t.failed
        );
    }
    for (k, n) in &r.failures {
        println!("  failures {k}: {n}");
    }
    for (k, n) in &r.mid_negotiation_at {
        println!("  mid-negotiation drops, {k}: {n}");
    }
    for e in &r.failure_examples {
        println!("  e.g. {e}");
    }
}

fn print_table(s: &Summary) {
    let g = s.end.gauges;
    let ok = |b: bool| if b { "ok" } else { "FAIL" };
    println!("\n| figure | value | |");
    println!("|---|---|---|");
    println!(
        "| cycles done / failed | {} / {} | |",
        s.soak.done, s.soak.failed
    );
    for (name, v) in [
        ("registry connections", g.connections),
        ("registry participants", g.participants),
        ("registry rooms", g.rooms),
        ("room actors", g.room_actors),
        ("forwarding tasks", g.forwarding_tasks),
        ("subscriptions", g.subscriptions),
        ("peer connections", g.peer_connections),
    ] {
        println!("| {name} at the end | {v} | {} |", ok(v == 0));
    }
    println!(
        "| open fds: initial / after warm-up / end | {} / {} / {} | {} |",
        s.fds_initial,
        s.fds_after_warmup,
        s.fds_end,
        ok(s.fds_end <= s.fds_after_warmup)
    );
    println!(
        "| RSS after warm-up → end | {} → {} ({:+.2} %) | {} |",
        mib(s.rss_after_warmup_bytes),
        mib(s.rss_end_bytes),
        s.rss_growth_percent,
        ok(s.violations.iter().all(|v| !v.starts_with("RSS")))
    );
    let peak = s.samples.iter().map(|x| x.rss_bytes).max().unwrap_or(0);
    println!("| RSS peak (sampled, under load) | {} | |", mib(peak));
    println!("| duration | {:.0} s | |", s.duration_secs);
    for v in &s.violations {
        println!("VIOLATION: {v}");
    }
    println!(
        "{}",
        if s.passed {
            "SOAK PASSED"
        } else {
            "SOAK FAILED"
        }
    );
    if s.initial.open_fds != s.fds_after_warmup {
        println!(
            "(open fds before any connection were {}; the baseline is the quiet point after the warm-up)",
            s.initial.open_fds
        );
    }
}
