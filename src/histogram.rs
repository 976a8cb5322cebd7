//! Latency histograms in the Prometheus shape (`_bucket{le}`, `_sum`, `_count`).
//!
//! Buckets are stored per bucket, not cumulatively, so an observation is one
//! increment; `render` sums them up. A hot loop counts into a [`LocalHistogram`] and
//! adds it to the shared one in batches (see `rtc::stats::Tally`), so a packet costs a
//! few plain additions and no atomic operation.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// At most this many finite buckets (a local histogram is a fixed array).
pub const MAX_BUCKETS: usize = 15;

/// The upper bounds of a histogram's buckets, in microseconds, ascending.
pub trait Buckets {
    const UPPER_US: &'static [u64];
}

/// Join time: `join` to `joined`.
pub struct JoinBuckets;
impl Buckets for JoinBuckets {
    const UPPER_US: &'static [u64] = &[
        5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    ];
}

/// A forwarded packet's time in Plaza: from the up track's read returning the packet
/// to the down track's write to one subscriber returning.
pub struct ResidenceBuckets;
impl Buckets for ResidenceBuckets {
    const UPPER_US: &'static [u64] = &[
        50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    ];
}

/// Which bucket an observation of `us` microseconds falls in (`len` = `+Inf`).
fn bucket<B: Buckets>(us: u64) -> usize {
    B::UPPER_US
        .iter()
        .position(|&upper| us <= upper)
        .unwrap_or(B::UPPER_US.len())
}

/// A shared histogram.
pub struct Histogram<B: Buckets> {
    /// One per finite bucket, then `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
    _buckets: PhantomData<B>,
}

impl<B: Buckets> Default for Histogram<B> {
    fn default() -> Self {
        const { assert!(B::UPPER_US.len() <= MAX_BUCKETS) };
        Histogram {
            counts: (0..=B::UPPER_US.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            _buckets: PhantomData,
        }
    }
}

impl<B: Buckets> std::fmt::Debug for Histogram<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram(count {})", self.count())
    }
}

impl<B: Buckets> Histogram<B> {
    pub fn observe(&self, took: Duration) {
        let us = took.as_micros() as u64;
        self.counts[bucket::<B>(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Adds a batch counted locally, and empties it.
    pub fn absorb(&self, local: &mut LocalHistogram<B>) {
        for (shared, n) in self.counts.iter().zip(local.counts) {
            if n > 0 {
                shared.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.sum_us.fetch_add(local.sum_us, Ordering::Relaxed);
        *local = LocalHistogram::default();
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes the histogram as `name` (in seconds) with its HELP and TYPE lines.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match B::UPPER_US.get(i) {
                Some(&upper) => {
                    let le = upper as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Counts kept by one task between two `Histogram::absorb`s.
pub struct LocalHistogram<B: Buckets> {
    counts: [u64; MAX_BUCKETS + 1],
    sum_us: u64,
    _buckets: PhantomData<B>,
}

impl<B: Buckets> Default for LocalHistogram<B> {
    fn default() -> Self {
        LocalHistogram {
            counts: [0; MAX_BUCKETS + 1],
            sum_us: 0,
            _buckets: PhantomData,
        }
    }
}

impl<B: Buckets> std::fmt::Debug for LocalHistogram<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LocalHistogram({:?})",
            &self.counts[..=B::UPPER_US.len()]
        )
    }
}

impl<B: Buckets> LocalHistogram<B> {
    pub fn observe_us(&mut self, us: u64) {
        self.counts[bucket::<B>(us)] += 1;
        self.sum_us += us;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_cumulatively_in_seconds() {
        let h = Histogram::<JoinBuckets>::default();
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_millis(300));
        h.observe(Duration::from_secs(9));
        let mut text = String::new();
        h.render(&mut text, "plaza_join_seconds", "Time from join to joined.");
        assert!(text.contains("# TYPE plaza_join_seconds histogram"));
        assert!(text.contains("plaza_join_seconds_bucket{le=\"0.005\"} 0"));
        assert!(text.contains("plaza_join_seconds_bucket{le=\"0.01\"} 1"));
        assert!(text.contains("plaza_join_seconds_bucket{le=\"0.5\"} 2"));
        assert!(text.contains("plaza_join_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("plaza_join_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("plaza_join_seconds_sum 9.307"));
        assert!(text.contains("plaza_join_seconds_count 3"));
    }

    #[test]
    fn local_counts_are_added_in_one_batch_and_emptied() {
        let h = Histogram::<ResidenceBuckets>::default();
        let mut local = LocalHistogram::default();
        for us in [10, 50, 51, 2_000, 5_000_000] {
            local.observe_us(us);
        }
        h.absorb(&mut local);
        h.absorb(&mut local); // empty now: adds nothing
        assert_eq!(h.count(), 5);
        let mut text = String::new();
        h.render(&mut text, "r", "h");
        assert!(text.contains("r_bucket{le=\"0.00005\"} 2"), "{text}");
        assert!(text.contains("r_bucket{le=\"0.0001\"} 3"), "{text}");
        assert!(text.contains("r_bucket{le=\"0.0025\"} 4"), "{text}");
        assert!(text.contains("r_bucket{le=\"1\"} 4"), "{text}");
        assert!(text.contains("r_bucket{le=\"+Inf\"} 5"), "{text}");
        assert!(text.contains("r_sum 5.002111"), "{text}");
    }
}
