//! The run summary: a table on stdout and the same figures as JSON.

use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::measure::{percentiles, Percentiles, StepResult};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Free text naming the scenario (the bench script groups runs by it).
    pub label: String,
    /// plaza, janus or aiortc.
    pub target: String,
    pub scenario: String,
    pub media: String,
    pub command: String,
    pub unix_time: u64,
    pub machine: Machine,
    pub participants: usize,
    pub failed_joins: usize,
    /// The first distinct join errors.
    pub join_errors: Vec<String>,
    /// WebSocket open → first media packet, for participants joining a room where
    /// someone already published.
    pub join_ms: Option<Percentiles>,
    /// WebSocket open → first packet of a video keyframe (the first frame a decoder
    /// can show).
    pub first_frame_ms: Option<Percentiles>,
    pub join_samples: usize,
    pub idle_rss_mib: f64,
    /// Plaza only: each step of joining (`Participant::timeline`), ms from the start of
    /// `join`, over every participant that reached it.
    #[serde(default)]
    pub join_steps: Vec<JoinStep>,
    /// Plaza only: the timelines of the slowest joins (by first packet), to see which
    /// step a tail comes from.
    #[serde(default)]
    pub slowest_joins: Vec<Vec<(String, f64)>>,
    pub steps: Vec<StepResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinStep {
    pub step: String,
    pub ms: Percentiles,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Percentiles of each step, in the order the steps are listed.
pub fn join_steps(timelines: &[Vec<(&'static str, Duration)>]) -> Vec<JoinStep> {
    let mut order: Vec<&'static str> = Vec::new();
    for (name, _) in timelines.iter().flatten() {
        if !order.contains(name) {
            order.push(name);
        }
    }
    order
        .into_iter()
        .filter_map(|step| {
            let values = timelines
                .iter()
                .flatten()
                .filter(|(n, _)| *n == step)
                .map(|(_, d)| ms(*d))
                .collect();
            percentiles(values).map(|ms| JoinStep {
                step: step.into(),
                ms,
            })
        })
        .collect()
}

/// The `n` timelines whose first RTP came last.
pub fn slowest_joins(
    mut timelines: Vec<Vec<(&'static str, Duration)>>,
    n: usize,
) -> Vec<Vec<(String, f64)>> {
    let first_rtp = |t: &Vec<(&'static str, Duration)>| {
        t.iter()
            .find(|(name, _)| *name == "first RTP")
            .map_or(Duration::ZERO, |(_, d)| *d)
    };
    timelines.sort_by_key(|t| std::cmp::Reverse(first_rtp(t)));
    timelines
        .into_iter()
        .take(n)
        .map(|t| t.into_iter().map(|(s, d)| (s.to_string(), ms(d))).collect())
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory_gib: f64,
    /// 1-minute load average when the run started (others' work on a shared machine).
    pub loadavg_at_start: f64,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0.0),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.0} GiB, Linux {}",
            self.cores, self.cpu, self.memory_gib, self.kernel
        )
    }
}

pub fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.digits$}"))
}

/// The human-readable table.
pub fn print(s: &Summary) {
    println!();
    println!(
        "{} — target {}, {}, media {}",
        s.label, s.target, s.scenario, s.media
    );
    println!(
        "joins: {} participants, {} failed; join (open → first packet) ms p50/p95/p99 {}; first frame ms {} ({} samples)",
        s.participants,
        s.failed_joins,
        pct(s.join_ms),
        pct(s.first_frame_ms),
        s.join_samples
    );
    for e in &s.join_errors {
        println!("  join error: {e}");
    }
    if !s.join_steps.is_empty() {
        let steps: Vec<String> = s
            .join_steps
            .iter()
            .map(|j| format!("{} {:.0}/{:.0}", j.step, j.ms.p50, j.ms.p95))
            .collect();
        println!("join steps ms p50/p95: {}", steps.join(", "));
    }
    for t in &s.slowest_joins {
        let steps: Vec<String> = t.iter().map(|(n, ms)| format!("{n} {ms:.0}")).collect();
        println!("  slow join: {}", steps.join(", "));
    }
    println!(
        "{:>6} {:>8} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8} {:>20} {:>8} {:>8}",
        "parts",
        "srv cpu%",
        "µs/pkt",
        "pkts/s",
        "Mbit/s",
        "pkts/s/core",
        "RSS MiB",
        "KiB/part",
        "loss %",
        "latency ms p50/95/99",
        "load cpu%",
        "load µs"
    );
    for r in &s.steps {
        println!(
            "{:>6} {:>8.1} {:>9} {:>9.0} {:>8.2} {:>10} {:>8.1} {:>8.0} {:>8} {:>20} {:>8.1} {:>8}",
            r.participants,
            r.server_cpu_pct,
            opt(r.cpu_us_per_pkt, 1),
            r.received_pps,
            r.received_bps / 1e6,
            opt(r.pps_per_core, 0),
            r.server_rss_mib,
            r.rss_per_participant_kib,
            opt(r.loss_pct, 3),
            r.latency_ms.map_or("n/a".into(), |l| format!(
                "{:.2}/{:.2}/{:.2}",
                l.p50, l.p95, l.p99
            )),
            r.load_cpu_pct,
            opt(r.load_cpu_us_per_pkt, 1),
        );
        if let Some(f) = r.server_forwarded_pps {
            println!(
                "       server count: {f:.0} forwarded pkts/s; owed by what was sent: {:.0}/s; duplicates {}, unidentified {}",
                r.expected_pps, r.duplicates, r.unidentified
            );
        } else {
            println!(
                "       owed by what was sent: {:.0} pkts/s; duplicates {}, unidentified {}",
                r.expected_pps, r.duplicates, r.unidentified
            );
        }
    }
}

pub fn pct(p: Option<Percentiles>) -> String {
    p.map_or("n/a".into(), |p| {
        format!("{:.0}/{:.0}/{:.0}", p.p50, p.p95, p.p99)
    })
}
