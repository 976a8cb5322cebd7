//! `plaza-load`: a load generator and benchmark for Plaza and its baselines.
//!
//! It starts the server under test as a separate process (or attaches to one by PID),
//! runs synthetic participants that speak the real protocol with real WebRTC
//! (webrtc-rs), and measures the server from /proc (CPU per forwarded packet, memory)
//! and the participants' view (loss, relay latency, join time). Everything stays on
//! loopback: run it inside a loopback-only network namespace.
//!
//! ```text
//! plaza-load --rooms 4 --per-room 4 --duration 20s            # meetings
//! plaza-load --publishers 1 --subscribers 30                   # webinar fan-out
//! plaza-load --ramp-step 4 --ramp-max 24 --plot ramp.png       # ramp, with a plot
//! plaza-load --target janus --rooms 2 --per-room 4             # the same against Janus
//! plaza-load report --out docs/benchmarks.md runs/*.json       # compare saved runs
//! ```

mod cli;
mod compare;
mod janus;
mod measure;
mod media_plan;
mod plot;
mod recorder;
mod report;
mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::cli::{Cli, Cmd, MediaKindArg, RunArgs, Target};
use crate::measure::{percentiles, Meter};
use crate::recorder::{lock, Identify, Recorder};
use crate::report::{Machine, Summary};
use crate::scenario::{MediaPlan, Plan, Protocol, Runner};
use plaza_tools::procstat;
use plaza_tools::server_process::Server;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PLAZA_LOAD_LOG")
                .unwrap_or_else(|_| "warn,webrtc=error,webrtc_ice=error,webrtc_srtp=error,webrtc_dtls=error,dtls=error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let result = match cli.cmd {
        Some(Cmd::Report(args)) => compare::run(&args),
        None => run_blocking(cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plaza-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_blocking(args: RunArgs) -> Result<ExitCode> {
    // The participants' runtime: as many workers as cores, like a real client host.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("load")
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let machine = Machine::read();
    let target = args.target;
    let port = args.port.unwrap_or(match target {
        Target::Plaza => 18080,
        Target::Aiortc => 18090,
        Target::Janus => 18188,
    });
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut server = match (args.url.as_ref(), args.server_pid) {
        (Some(_), Some(pid)) => Server::attach(pid),
        (Some(_), None) => bail!("--url needs --server-pid (the server's CPU is read from /proc)"),
        _ => {
            let argv = server_command(&args, port)?;
            // One log per run: a bench runs the same target several times.
            let stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let log = args
                .log_dir
                .join(format!("{}-{port}-{stamp}.log", target.name()));
            Server::spawn(&argv, addr, &log).await?
        }
    };
    let url = args.url.clone().unwrap_or(match target {
        Target::Janus => format!("ws://{addr}/"),
        _ => format!("ws://{addr}/ws"),
    });
    // Give the server a moment to finish starting before its idle RSS is taken.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = procstat::sample(server.pid).context("server process is gone")?;

    let fixture = match args.media {
        MediaKindArg::Synthetic => None,
        MediaKindArg::Fixture => Some(std::sync::Arc::new(
            plaza_client::source::Fixture::load(
                &args.fixture_dir.join("video.ivf"),
                &args.fixture_dir.join("audio.ogg"),
            )
            .with_context(|| format!("loading the fixture in {}", args.fixture_dir.display()))?,
        )),
    };
    let media_desc = match &fixture {
        Some(f) => format!(
            "fixture VP8 {} fps ~{:.0} kbit/s + Opus (real, looped)",
            f.fps,
            f.video_bitrate_bps() as f64 / 1000.0
        ),
        None => format!(
            "synthetic VP8 {} fps {:.0} kbit/s{} (stamped)",
            args.fps,
            args.video_bitrate as f64 / 1000.0,
            if args.no_audio {
                ""
            } else {
                " + Opus 50 pkt/s"
            }
        ),
    };
    let identify = if fixture.is_some() {
        Identify::Ledger
    } else {
        Identify::Stamp
    };
    let shape = args.shape();
    let plan = Plan {
        protocol: match target {
            Target::Janus => Protocol::Janus,
            _ => Protocol::Plaza,
        },
        url,
        shape: shape.clone(),
        media: MediaPlan {
            audio: !args.no_audio,
            video: (!args.no_video).then_some(plaza_client::VideoOptions {
                fps: args.fps,
                bitrate_bps: args.video_bitrate,
                keyframe_interval: None,
            }),
            fixture,
        },
        ice_ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        join_rate: args.join_rate,
        lead: args.lead,
        settle: args.settle,
        duration: args.duration,
        quiet: args.quiet,
    };
    let recorder = Recorder::new(identify);
    let mut meter = Meter {
        server_pid: server.pid,
        plaza_metrics: (target == Target::Plaza).then_some(addr),
        idle_rss: idle.rss_bytes,
    };
    let mut runner = Runner::new(plan, recorder.clone());
    let steps = runner.run(&mut meter).await;
    let timelines = runner.join_timelines();
    runner.shutdown().await;
    server.stop();
    let steps = steps?;

    let parts = recorder.parts();
    let mut join = Vec::new();
    let mut frame = Vec::new();
    let mut failed = 0;
    for p in &parts {
        let j = p.join_ms();
        let timed_out = j.is_none_or(|ms| ms > args.join_timeout.as_secs_f64() * 1000.0);
        if p.failed.load(Ordering::Acquire) || (p.expects_media && timed_out) {
            failed += 1;
            continue;
        }
        if p.expects_media {
            join.extend(j);
            frame.extend(p.first_frame_ms());
        }
    }
    let mut errors: Vec<String> = lock(&runner.join_errors).clone();
    errors.sort();
    errors.dedup();
    errors.truncate(5);
    let summary = Summary {
        label: args.label.clone().unwrap_or_else(|| shape.describe()),
        target: target.name().into(),
        scenario: shape.describe(),
        media: media_desc,
        command,
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine,
        participants: parts.len(),
        failed_joins: failed,
        join_errors: errors,
        join_samples: join.len(),
        join_ms: percentiles(join),
        first_frame_ms: percentiles(frame),
        idle_rss_mib: idle.rss_bytes as f64 / (1024.0 * 1024.0),
        join_steps: report::join_steps(&timelines),
        slowest_joins: report::slowest_joins(timelines, 3),
        steps,
    };
    report::print(&summary);
    if let Some(path) = &args.json {
        write_json(path, &summary)?;
    }
    if let Some(path) = &args.plot {
        plot::ramp(path, &[(summary.target.clone(), summary.steps.clone())])?;
        println!("plot: {}", path.display());
    }
    Ok(check(&args, &summary))
}

fn write_json(path: &PathBuf, summary: &Summary) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(summary)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// `--expect-*` checks for scripts and the smoke test: exit 1 if one fails.
fn check(args: &RunArgs, s: &Summary) -> ExitCode {
    let mut ok = true;
    let last = s.steps.last();
    if args.expect_forwarded && last.is_none_or(|r| r.received_pkts == 0) {
        eprintln!("check failed: no packets were forwarded");
        ok = false;
    }
    if let Some(max) = args.expect_max_loss {
        let loss = last.and_then(|r| r.loss_pct);
        if loss.is_none_or(|l| l > max) {
            eprintln!("check failed: loss {loss:?} % is not below {max} %");
            ok = false;
        }
    }
    if args.expect_no_failed_joins && s.failed_joins > 0 {
        eprintln!("check failed: {} joins failed", s.failed_joins);
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The command that starts the target server on `port`.
fn server_command(args: &RunArgs, port: u16) -> Result<Vec<String>> {
    if let Some(cmd) = &args.server_cmd {
        return Ok(cmd
            .split_whitespace()
            .map(|s| s.replace("{port}", &port.to_string()))
            .collect());
    }
    let repo = &args.repo;
    Ok(match args.target {
        Target::Plaza => {
            let mut v = plaza_tools::server_process::loopback_command(
                args.server_bin.as_deref(),
                port,
                args.media_threads,
            )?;
            // Webinars put more than the default 16 in one room.
            v.extend(["--max-participants-per-room".into(), "1000".into()]);
            if let Some(n) = args.http_workers {
                v.extend(["--http-workers".into(), n.to_string()]);
            }
            v
        }
        Target::Aiortc => vec![
            repo.join("benches/baselines/aiortc/run.sh")
                .display()
                .to_string(),
            "--port".into(),
            port.to_string(),
            "--log-level".into(),
            "WARNING".into(),
            "--max-participants-per-room".into(),
            "1000".into(),
        ],
        Target::Janus => vec![
            repo.join("benches/baselines/janus/run.sh")
                .display()
                .to_string(),
            "--port".into(),
            port.to_string(),
        ],
    })
}
