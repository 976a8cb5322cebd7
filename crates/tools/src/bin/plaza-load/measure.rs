//! One measurement window: the server's CPU and memory from /proc, its own packet
//! counters where it has them (Plaza's /metrics), the load generator's own CPU, and
//! what the participants received.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::recorder::WindowTotals;
use plaza_tools::procstat::{self, Sample};
use plaza_tools::server_process as server;

pub struct Meter {
    pub server_pid: u32,
    /// Plaza's HTTP address, for /metrics (None for baselines).
    pub plaza_metrics: Option<SocketAddr>,
    /// Server RSS before anyone joined.
    pub idle_rss: u64,
}

pub struct Start {
    at: Instant,
    server: Sample,
    load: Sample,
    forwarded: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub participants: usize,
    pub publishers: usize,
    pub seconds: f64,
    /// Server CPU, percent of one core.
    pub server_cpu_pct: f64,
    /// Packets the participants received (all targets: the common measure).
    pub received_pkts: u64,
    pub received_pps: f64,
    /// RTP payload bits/s the participants received.
    pub received_bps: f64,
    /// Plaza's own count of packets written to subscribers (`plaza_packets_forwarded_total`).
    pub server_forwarded_pps: Option<f64>,
    /// Deliveries a forwarding server owed for what was sent in the window (sent × (members − 1)).
    pub expected_pps: f64,
    /// Server CPU µs per packet received by the participants.
    pub cpu_us_per_pkt: Option<f64>,
    /// Forwarded packets per second one core would sustain at this cost (1e6 / µs).
    pub pps_per_core: Option<f64>,
    pub server_rss_mib: f64,
    /// (RSS now − RSS before any join) / participants.
    pub rss_per_participant_kib: f64,
    pub server_threads: u64,
    /// Packets missing among those identified, percent.
    pub loss_pct: Option<f64>,
    pub duplicates: u64,
    /// Packets that could not be traced to a send (a re-encoding relay).
    pub unidentified: u64,
    pub latency_ms: Option<Percentiles>,
    /// Load generator CPU, percent of one core, and µs per packet it received.
    pub load_cpu_pct: f64,
    pub load_cpu_us_per_pkt: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Meter {
    pub async fn begin(&self) -> Result<Start> {
        let forwarded = match self.plaza_metrics {
            Some(addr) => forwarded(addr).await,
            None => None,
        };
        Ok(Start {
            at: Instant::now(),
            server: procstat::sample(self.server_pid).context("server process is gone")?,
            load: procstat::sample(procstat::self_pid()).unwrap_or_default(),
            forwarded,
        })
    }

    pub async fn end(
        &self,
        start: Start,
        t: WindowTotals,
        expected: u64,
        participants: usize,
        publishers: usize,
    ) -> Result<StepResult> {
        let secs = start.at.elapsed().as_secs_f64().max(1e-3);
        let server = procstat::sample(self.server_pid).context("server process died")?;
        let load = procstat::sample(procstat::self_pid()).unwrap_or_default();
        let forwarded = match self.plaza_metrics {
            Some(addr) => forwarded(addr).await,
            None => None,
        };
        let cpu = server.cpu_secs - start.server.cpu_secs;
        let load_cpu = load.cpu_secs - start.load.cpu_secs;
        let per_pkt = |cpu: f64| (t.packets > 0).then(|| cpu * 1e6 / t.packets as f64);
        let cpu_us = per_pkt(cpu);
        let identified = t.expected;
        // Loss and latency only mean something when (nearly) every packet received can
        // be traced to its send; a re-encoding relay's packets cannot.
        let traced = identified > 0 && t.unidentified * 100 <= t.packets;
        Ok(StepResult {
            participants,
            publishers,
            seconds: secs,
            server_cpu_pct: cpu / secs * 100.0,
            received_pkts: t.packets,
            received_pps: t.packets as f64 / secs,
            received_bps: t.bytes as f64 * 8.0 / secs,
            server_forwarded_pps: match (start.forwarded, forwarded) {
                (Some(a), Some(b)) => Some((b - a) / secs),
                _ => None,
            },
            expected_pps: expected as f64 / secs,
            cpu_us_per_pkt: cpu_us,
            pps_per_core: cpu_us.filter(|u| *u > 0.0).map(|u| 1e6 / u),
            server_rss_mib: server.rss_bytes as f64 / (1024.0 * 1024.0),
            rss_per_participant_kib: (server.rss_bytes.saturating_sub(self.idle_rss)) as f64
                / 1024.0
                / participants.max(1) as f64,
            server_threads: server.threads,
            loss_pct: traced.then(|| t.lost as f64 * 100.0 / identified as f64),
            duplicates: t.duplicates,
            unidentified: t.unidentified,
            latency_ms: traced.then(|| Percentiles {
                p50: t.latency_us.value_at_quantile(0.50) as f64 / 1000.0,
                p95: t.latency_us.value_at_quantile(0.95) as f64 / 1000.0,
                p99: t.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
                max: t.latency_us.max() as f64 / 1000.0,
            }),
            load_cpu_pct: load_cpu / secs * 100.0,
            load_cpu_us_per_pkt: per_pkt(load_cpu),
        })
    }
}

async fn forwarded(addr: SocketAddr) -> Option<f64> {
    let m = server::plaza_metrics(addr).await.ok()?;
    server::metric(&m, "plaza_packets_forwarded_total")
}

/// Percentiles of a list of samples (nearest rank).
pub fn percentiles(mut v: Vec<f64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = percentiles((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert!(percentiles(vec![]).is_none());
    }
}
