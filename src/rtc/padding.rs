//! Publishers' padding-only packets are not forwarded, and leave no hole behind.
//! Pure: tested directly.
//!
//! Chromium probes its uplink's bandwidth with padding-only RTP packets on the media
//! SSRC (Plaza negotiates no RTX stream for them to go on): up to a hundred a second.
//! They carry no media and are meant for the publisher's own link, so sending them on
//! to every subscriber would spend the subscribers' links for nothing. But dropping
//! them while passing the publisher's sequence numbers through left gaps: every
//! subscriber counted those numbers as lost (Chromium's `packetsLost` and its receiver
//! reports, which `feedback.rs` reads to pause video), and asked for them again (NACK).
//!
//! So each up track renumbers: a packet's number drops by the count of padding packets
//! dropped before it. Gaps that are real losses upstream stay gaps, so a subscriber
//! still sees them. A late packet (reordered, or the publisher's retransmission of one
//! we asked for) is numbered by the padding dropped before *its* position, which is
//! why the runs of dropped padding are remembered for a while.

use std::collections::VecDeque;

/// How far back (in sequence numbers) a late packet is still renumbered; older ones
/// are dropped. Covers the NACK generator's log (`plaza_rtc::NACK_GENERATOR_LOG2_MINUS_6`,
/// 1024 packets) with room to spare.
const REMEMBER: u64 = 4096;

/// Runs of padding remembered at most (a run is a burst of consecutive padding).
const MAX_RUNS: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Run {
    /// Extended sequence number of the run's first packet.
    start: u64,
    len: u64,
}

#[derive(Debug, Default, Clone)]
pub struct PaddingFilter {
    ssrc: Option<u32>,
    /// Extended (unwrapped) sequence number of the highest packet seen.
    highest: u64,
    /// Padding packets dropped in order, ever (for this SSRC).
    dropped: u64,
    /// The most recent runs of dropped padding, oldest first.
    runs: VecDeque<Run>,
    /// Late packets before this (extended) number cannot be renumbered exactly.
    horizon: u64,
}

impl PaddingFilter {
    /// The number to forward this packet with, or `None` to drop it (padding, or too
    /// late to renumber).
    pub fn renumber(&mut self, ssrc: u32, seq: u16, padding_only: bool) -> Option<u16> {
        if self.ssrc != Some(ssrc) {
            // A new source: numbering starts over (the forwarder handles the switch).
            *self = Self {
                ssrc: Some(ssrc),
                // Far from zero, so unwrapping below never underflows.
                highest: (1 << 32) + u64::from(seq) - 1,
                horizon: 1 << 32,
                ..Self::default()
            };
        }
        let ext = self.extend(seq);
        if ext > self.highest {
            self.highest = ext;
            if padding_only {
                self.drop_in_order(ext);
                return None;
            }
            return Some((ext - self.dropped) as u16);
        }
        if padding_only || ext < self.horizon {
            // Late padding: its number was already counted as sent, so dropping it leaves
            // one gap (rare: padding is sent in order). Too old: dropped.
            return None;
        }
        let dropped_after: u64 = self
            .runs
            .iter()
            .rev()
            .take_while(|r| r.start > ext)
            .map(|r| r.len)
            .sum();
        Some((ext - (self.dropped - dropped_after)) as u16)
    }

    /// The extended number of `seq`: the one closest to the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let delta = seq.wrapping_sub(self.highest as u16) as i16;
        self.highest.wrapping_add_signed(i64::from(delta))
    }

    fn drop_in_order(&mut self, ext: u64) {
        self.dropped += 1;
        match self.runs.back_mut() {
            Some(run) if run.start + run.len == ext => run.len += 1,
            _ => self.runs.push_back(Run { start: ext, len: 1 }),
        }
        // Forget what no late packet can need any more.
        while let Some(oldest) = self.runs.front() {
            let too_many = self.runs.len() > MAX_RUNS;
            if !too_many && oldest.start + REMEMBER > self.highest {
                break;
            }
            self.horizon = self.horizon.max(oldest.start + oldest.len);
            self.runs.pop_front();
        }
        self.horizon = self.horizon.max(self.highest.saturating_sub(REMEMBER));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 7;

    /// Feeds (seq, padding) in order; returns the numbers forwarded.
    fn run(f: &mut PaddingFilter, packets: &[(u16, bool)]) -> Vec<Option<u16>> {
        packets
            .iter()
            .map(|&(seq, pad)| f.renumber(SSRC, seq, pad))
            .collect()
    }

    #[test]
    fn media_alone_passes_through_unchanged() {
        let mut f = PaddingFilter::default();
        let out = run(&mut f, &[(100, false), (101, false), (102, false)]);
        assert_eq!(out, [Some(100), Some(101), Some(102)]);
    }

    #[test]
    fn padding_is_dropped_and_leaves_no_gap() {
        let mut f = PaddingFilter::default();
        let out = run(
            &mut f,
            &[
                (10, false),
                (11, true),
                (12, true),
                (13, false),
                (14, true),
                (15, false),
            ],
        );
        assert_eq!(out, [Some(10), None, None, Some(11), None, Some(12)]);
    }

    #[test]
    fn a_real_loss_stays_visible() {
        let mut f = PaddingFilter::default();
        // 11 is padding; 13 was lost upstream.
        let out = run(&mut f, &[(10, false), (11, true), (12, false), (14, false)]);
        assert_eq!(out, [Some(10), None, Some(11), Some(13)]);
        // ... and its retransmission, late, fills exactly that gap.
        assert_eq!(f.renumber(SSRC, 13, false), Some(12));
    }

    #[test]
    fn a_late_packet_is_numbered_by_the_padding_before_it() {
        let mut f = PaddingFilter::default();
        // 21 lost for now; padding at 23-24 and 27.
        let out = run(
            &mut f,
            &[
                (20, false),
                (22, false),
                (23, true),
                (24, true),
                (25, false),
                (26, false),
                (27, true),
                (28, false),
            ],
        );
        assert_eq!(
            out,
            [
                Some(20),
                Some(22),
                None,
                None,
                Some(23),
                Some(24),
                None,
                Some(25)
            ]
        );
        assert_eq!(f.renumber(SSRC, 21, false), Some(21), "before any padding");
        assert_eq!(
            f.renumber(SSRC, 26, false),
            Some(24),
            "after the first run only"
        );
        // Late padding is dropped.
        assert_eq!(f.renumber(SSRC, 23, true), None);
    }

    #[test]
    fn numbering_wraps() {
        let mut f = PaddingFilter::default();
        let out = run(
            &mut f,
            &[
                (65534, false),
                (65535, true),
                (0, true),
                (1, false),
                (2, false),
            ],
        );
        assert_eq!(out, [Some(65534), None, None, Some(65535), Some(0)]);
        assert_eq!(
            f.renumber(SSRC, 65534, false),
            Some(65534),
            "late, before the wrap"
        );
    }

    #[test]
    fn a_new_source_starts_over() {
        let mut f = PaddingFilter::default();
        run(&mut f, &[(1, false), (2, true), (3, false)]);
        assert_eq!(f.renumber(99, 5000, false), Some(5000));
        assert_eq!(f.renumber(99, 5001, false), Some(5001));
    }

    #[test]
    fn a_packet_too_late_to_renumber_is_dropped() {
        let mut f = PaddingFilter::default();
        let mut seq: u16 = 0;
        // 10,000 packets, every tenth padding.
        for i in 0..10_000u32 {
            f.renumber(SSRC, seq, i % 10 == 5);
            seq = seq.wrapping_add(1);
        }
        let old = seq.wrapping_sub(9000);
        assert_eq!(f.renumber(SSRC, old, false), None, "9000 behind");
        let recent = seq.wrapping_sub(100);
        assert!(f.renumber(SSRC, recent, false).is_some(), "100 behind");
    }

    #[test]
    fn long_streams_of_padding_keep_memory_bounded() {
        let mut f = PaddingFilter::default();
        let mut seq: u16 = 0;
        for i in 0..200_000u32 {
            f.renumber(SSRC, seq, i % 2 == 0);
            seq = seq.wrapping_add(1);
        }
        assert!(f.runs.len() <= MAX_RUNS);
    }
}
