//! The per-subscriber packet decision: whether an up-track packet goes to this down
//! track, and with which sequence number and timestamp. Pure logic, no I/O, no clock
//! of its own (time is an argument), so it is tested and benchmarked directly.
//!
//! Rules, learnt from the field (see ../shared/notes/sfu-field.md):
//! - A video subscriber starts at the beginning of a keyframe; until then nothing is
//!   sent and the caller asks the publisher for one (PLI).
//! - The publisher's sequence numbers pass through unchanged (offset 0), so a loss
//!   upstream stays visible to the subscriber's NACK/jitter logic. Numbering is only
//!   offset when the source changes (new SSRC: a republish or another layer), so the
//!   subscriber sees one continuous stream.
//! - Packets older than the point where forwarding (re)started are dropped: they refer
//!   to pictures the subscriber never had.

use webrtc::rtp::header::Header;

use plaza_rtc::PayloadFormat;

/// What to do with one packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it with these fields rewritten.
    Forward(Rewrite),
    /// Not for this subscriber (too old, or mid-picture before a keyframe while a
    /// keyframe request is already out).
    Drop,
    /// Waiting for a keyframe: drop, and ask the publisher for one.
    NeedKeyframe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub sequence_number: u16,
    pub timestamp: u32,
}

impl Rewrite {
    /// Writes the rewritten fields, plus the subscriber's own SSRC and payload type,
    /// into an outgoing header.
    #[inline]
    pub fn apply(&self, header: &mut Header, ssrc: u32, payload_type: u8) {
        header.sequence_number = self.sequence_number;
        header.timestamp = self.timestamp;
        header.ssrc = ssrc;
        header.payload_type = payload_type;
    }
}

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    /// First input sequence number forwarded from this source.
    start_seq: u16,
    seq_offset: u16,
    ts_offset: u32,
}

#[derive(Debug, Clone, Copy)]
struct LastOut {
    seq: u16,
    ts: u32,
    at_us: u64,
}

#[derive(Debug, Clone)]
pub struct Forwarder {
    format: PayloadFormat,
    clock_rate: u32,
    /// The source being forwarded; `None` until the first (key)frame start.
    source: Option<Source>,
    /// A source whose forwarding was interrupted by `restart`: when it starts again its
    /// numbering mapping is kept.
    paused: Option<Source>,
    last_out: Option<LastOut>,
}

impl Forwarder {
    pub fn new(format: PayloadFormat, clock_rate: u32) -> Self {
        Self {
            format,
            clock_rate: clock_rate.max(1),
            source: None,
            paused: None,
            last_out: None,
        }
    }

    /// True while nothing can be forwarded until a keyframe arrives.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.source.is_none() && self.format.needs_keyframe()
    }

    /// Decide for one packet. `keyframe_start` is the up track's parse of the payload
    /// (done once per packet, not once per subscriber); `now_us` is any monotonic clock.
    #[inline]
    pub fn forward(&mut self, h: &Header, keyframe_start: bool, now_us: u64) -> Verdict {
        let source = match self.source {
            Some(s) if s.ssrc == h.ssrc => s,
            _ => {
                // First packet, or a new source: start only where a picture can be decoded.
                if self.format.needs_keyframe() && !keyframe_start {
                    // A new SSRC means the old source ended. Ask for a keyframe on
                    // every packet until one comes; the up track throttles requests.
                    self.source = None;
                    return Verdict::NeedKeyframe;
                }
                self.start(h, now_us)
            }
        };
        // Older than where we started (wrapping compare): the subscriber never had it.
        if (h.sequence_number.wrapping_sub(source.start_seq) as i16) < 0 {
            return Verdict::Drop;
        }
        let out = Rewrite {
            sequence_number: h.sequence_number.wrapping_add(source.seq_offset),
            timestamp: h.timestamp.wrapping_add(source.ts_offset),
        };
        match self.last_out {
            Some(last) if (out.sequence_number.wrapping_sub(last.seq) as i16) <= 0 => {
                // A retransmission or reordering: forward it, but keep the highest.
            }
            _ => {
                self.last_out = Some(LastOut {
                    seq: out.sequence_number,
                    ts: out.timestamp,
                    at_us: now_us,
                })
            }
        }
        Verdict::Forward(out)
    }

    fn start(&mut self, h: &Header, now_us: u64) -> Source {
        if let Some(p) = self.paused.take().filter(|p| p.ssrc == h.ssrc) {
            let s = Source {
                start_seq: h.sequence_number,
                ..p
            };
            self.source = Some(s);
            return s;
        }
        let (seq_offset, ts_offset) = match self.last_out {
            // Continue right after what the subscriber last got, with a timestamp that
            // advanced by the wall-clock time since then.
            Some(last) => {
                let elapsed_ticks = (now_us.saturating_sub(last.at_us) as u128
                    * self.clock_rate as u128
                    / 1_000_000) as u32;
                let want_seq = last.seq.wrapping_add(1);
                let want_ts = last.ts.wrapping_add(elapsed_ticks.max(1));
                (
                    want_seq.wrapping_sub(h.sequence_number),
                    want_ts.wrapping_sub(h.timestamp),
                )
            }
            None => (0, 0),
        };
        let s = Source {
            ssrc: h.ssrc,
            start_seq: h.sequence_number,
            seq_offset,
            ts_offset,
        };
        self.source = Some(s);
        s
    }

    /// The packet the caller was told to forward could not be sent (the subscriber's
    /// transport is not up yet): start again at the next keyframe of the same source,
    /// keeping the numbering, so nothing undecodable reaches the subscriber.
    pub fn restart(&mut self) {
        if self.format.needs_keyframe() {
            if let Some(s) = self.source.take() {
                self.paused = Some(s);
            }
        }
    }

    /// The subscriber was sent nothing for a while on purpose (its video was paused,
    /// `feedback.rs`): start again at the next keyframe, numbered right after the last
    /// packet it got. Keeping the publisher's numbering, as `restart` does, would show
    /// it a gap of hundreds of packets, and it would ask for all of them again (NACK).
    pub fn skip_ahead(&mut self) {
        if self.format.needs_keyframe() {
            self.source = None;
            self.paused = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(ssrc: u32, seq: u16, ts: u32) -> Header {
        Header {
            version: 2,
            ssrc,
            sequence_number: seq,
            timestamp: ts,
            payload_type: 96,
            ..Default::default()
        }
    }

    fn fwd(v: Verdict) -> (u16, u32) {
        match v {
            Verdict::Forward(r) => (r.sequence_number, r.timestamp),
            other => panic!("expected Forward, got {other:?}"),
        }
    }

    #[test]
    fn video_waits_for_keyframe_then_passes_numbering_through() {
        let mut f = Forwarder::new(PayloadFormat::Vp8, 90_000);
        assert!(f.waiting_for_keyframe());
        assert_eq!(
            f.forward(&hdr(1, 100, 9000), false, 0),
            Verdict::NeedKeyframe
        );
        assert_eq!(
            f.forward(&hdr(1, 101, 9000), false, 0),
            Verdict::NeedKeyframe
        );
        assert_eq!(fwd(f.forward(&hdr(1, 102, 12000), true, 0)), (102, 12000));
        assert!(!f.waiting_for_keyframe());
        // Rest of the keyframe and the following delta frames pass unchanged.
        assert_eq!(fwd(f.forward(&hdr(1, 103, 12000), false, 0)), (103, 12000));
        assert_eq!(fwd(f.forward(&hdr(1, 105, 15000), false, 0)), (105, 15000));
    }

    #[test]
    fn audio_starts_at_once() {
        let mut f = Forwarder::new(PayloadFormat::Opaque, 48_000);
        assert!(!f.waiting_for_keyframe());
        assert_eq!(fwd(f.forward(&hdr(7, 5, 960), false, 0)), (5, 960));
    }

    #[test]
    fn packets_older_than_the_start_are_dropped_retransmissions_after_pass() {
        let mut f = Forwarder::new(PayloadFormat::Vp8, 90_000);
        fwd(f.forward(&hdr(1, 500, 0), true, 0));
        fwd(f.forward(&hdr(1, 502, 0), false, 0));
        assert_eq!(f.forward(&hdr(1, 499, 0), false, 0), Verdict::Drop);
        // 501 arrives late (reordered or retransmitted): after the start, so it goes.
        assert_eq!(fwd(f.forward(&hdr(1, 501, 0), false, 0)), (501, 0));
    }

    #[test]
    fn sequence_wraps() {
        let mut f = Forwarder::new(PayloadFormat::Opaque, 48_000);
        fwd(f.forward(&hdr(1, 65534, u32::MAX - 10), false, 0));
        assert_eq!(
            fwd(f.forward(&hdr(1, 65535, u32::MAX), false, 0)),
            (65535, u32::MAX)
        );
        assert_eq!(fwd(f.forward(&hdr(1, 0, 950), false, 0)), (0, 950));
        assert_eq!(fwd(f.forward(&hdr(1, 1, 1910), false, 0)), (1, 1910));
    }

    #[test]
    fn source_switch_continues_numbering_at_a_keyframe() {
        let mut f = Forwarder::new(PayloadFormat::Vp8, 90_000);
        fwd(f.forward(&hdr(1, 1000, 50_000), true, 0));
        fwd(f.forward(&hdr(1, 1001, 53_000), false, 33_000));
        // New source (e.g. republish), random numbering; 100 ms later.
        assert_eq!(
            f.forward(&hdr(2, 40_000, 7), false, 100_000),
            Verdict::NeedKeyframe
        );
        let (seq, ts) = fwd(f.forward(&hdr(2, 40_001, 7), true, 133_000));
        assert_eq!(seq, 1002, "continues after the last sequence number sent");
        assert_eq!(ts, 53_000 + 9_000, "advances by 100 ms at 90 kHz");
        assert_eq!(
            fwd(f.forward(&hdr(2, 40_002, 3007), false, 166_000)),
            (1003, 62_000 + 3000)
        );
    }

    #[test]
    fn restart_waits_for_the_next_keyframe_and_keeps_numbering() {
        let mut f = Forwarder::new(PayloadFormat::Vp8, 90_000);
        fwd(f.forward(&hdr(1, 10, 100), true, 0));
        f.restart();
        assert!(f.waiting_for_keyframe());
        assert_eq!(f.forward(&hdr(1, 11, 100), false, 0), Verdict::NeedKeyframe);
        assert_eq!(fwd(f.forward(&hdr(1, 20, 900), true, 0)), (20, 900));
    }

    #[test]
    fn skip_ahead_waits_for_a_keyframe_and_leaves_no_gap() {
        let mut f = Forwarder::new(PayloadFormat::Vp8, 90_000);
        fwd(f.forward(&hdr(1, 10, 100), true, 0));
        fwd(f.forward(&hdr(1, 11, 3100), false, 33_000));
        f.skip_ahead();
        assert!(f.waiting_for_keyframe());
        assert_eq!(
            f.forward(&hdr(1, 12, 6100), false, 66_000),
            Verdict::NeedKeyframe
        );
        // Two seconds and 400 packets later, a keyframe: numbered as the next packet.
        let (seq, ts) = fwd(f.forward(&hdr(1, 412, 186_100), true, 2_033_000));
        assert_eq!(seq, 12, "no gap for the subscriber to NACK");
        assert_eq!(ts, 3100 + 180_000, "advanced by the 2 s that passed");
        assert_eq!(
            fwd(f.forward(&hdr(1, 413, 189_100), false, 2_066_000)),
            (13, 186_100)
        );
    }

    #[test]
    fn rewrite_sets_subscriber_ssrc_and_payload_type() {
        let mut h = hdr(1, 1, 1);
        Rewrite {
            sequence_number: 9,
            timestamp: 8,
        }
        .apply(&mut h, 0xdead, 100);
        assert_eq!(
            (h.sequence_number, h.timestamp, h.ssrc, h.payload_type),
            (9, 8, 0xdead, 100)
        );
    }
}
