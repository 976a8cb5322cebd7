//! Media-plane counters, read by `/metrics` and `/healthz`, and the gauges tests use to
//! prove teardown (no forwarding task, no peer connection left).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

pub use crate::guard::TaskGuard;
use crate::histogram::{Histogram, LocalHistogram, ResidenceBuckets};

#[derive(Debug, Default)]
pub struct MediaStats {
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub packets_forwarded: AtomicU64,
    pub bytes_forwarded: AtomicU64,
    /// Writes to a subscriber that failed (its connection was closing).
    pub packets_dropped: AtomicU64,
    /// Keyframe requests sent to publishers.
    pub plis_sent: AtomicU64,
    /// Subscribers' keyframe requests (PLI/FIR), by what became of them (`feedback.rs`):
    /// passed on to the publisher, too soon after the subscriber's last one, or dropped
    /// because its video is paused.
    pub keyframe_requests_forwarded: AtomicU64,
    pub keyframe_requests_throttled: AtomicU64,
    pub keyframe_requests_paused: AtomicU64,
    /// Times a subscriber's video was paused because its loss was too high.
    pub video_pauses: AtomicU64,
    /// Down tracks paused now.
    pub videos_paused: AtomicI64,
    /// Subscribers' NACKs, per packet asked for (`retransmit.rs`): resent, or not
    /// because it was resent moments ago, the subscriber's budget was spent, or it is
    /// not (any more) in the history.
    pub retransmissions_sent: AtomicU64,
    pub retransmissions_too_soon: AtomicU64,
    pub retransmissions_over_budget: AtomicU64,
    pub retransmissions_unknown: AtomicU64,
    /// Each forwarded packet's time in Plaza, read to sent (`up_track.rs`).
    pub residence: Histogram<ResidenceBuckets>,
    /// Up-track read loops running now.
    pub forwarding_tasks: Arc<AtomicI64>,
    /// Peer connections created and not yet closed.
    pub peer_connections: Arc<AtomicI64>,
    /// Down tracks alive (one per subscriber per published track).
    pub subscriptions: Arc<AtomicI64>,
}

impl MediaStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn gauge(g: &AtomicI64) -> i64 {
        g.load(Ordering::Acquire)
    }
}

/// Per-loop counts, published to `MediaStats` in batches.
#[derive(Debug, Default)]
pub struct Tally {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub dropped: u64,
    pub residence: LocalHistogram<ResidenceBuckets>,
}

impl Tally {
    pub fn flush(&mut self, stats: &MediaStats) {
        let r = Ordering::Relaxed;
        stats.packets_received.fetch_add(self.packets_in, r);
        stats.bytes_received.fetch_add(self.bytes_in, r);
        stats.packets_forwarded.fetch_add(self.packets_out, r);
        stats.bytes_forwarded.fetch_add(self.bytes_out, r);
        stats.packets_dropped.fetch_add(self.dropped, r);
        stats.residence.absorb(&mut self.residence);
        *self = Tally::default();
    }
}
