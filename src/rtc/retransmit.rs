//! Answering a subscriber's NACKs: what was sent to it, and how much of its link
//! retransmissions may take. Pure: time and byte counts are arguments.
//!
//! Plaza answers NACKs itself rather than with webrtc-rs's responder, because the
//! responder resends every packet every time it is asked. A subscriber whose link
//! drops most packets asks for each one again and again, every resend is dropped by
//! the same full link, and it asks again: measured with Chromium behind a 300 kbit/s
//! shaper, the server sent that page about 2,300 packets a second (its shaper dropped
//! 33,792 in 15 s), doubling the server's CPU and delaying every other subscriber's
//! packets (issue 11). Here, per down track:
//!
//! - a packet is resent at most once per `min_resend_gap` (a NACK repeated sooner is
//!   the same loss asked about again, and the resend is probably still on its way);
//! - resends may take at most `budget_ratio` of what is sent to the subscriber (a
//!   token bucket filled by the bytes forwarded, capped at `budget_cap` bytes);
//! - the first NACK of each packet is counted, so `feedback.rs` can tell how much of
//!   the link is lost before retransmissions hide it.

use webrtc::rtp::packet::Packet;

/// Packets kept per down track: 512, about 3 s of 1.5 Mbit/s video, longer than any
/// retransmission is still useful (as webrtc-rs's responder was configured before).
pub const HISTORY: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetransmitPolicy {
    pub min_resend_gap_us: u64,
    pub budget_ratio: f64,
    pub budget_cap: f64,
}

impl Default for RetransmitPolicy {
    fn default() -> Self {
        Self {
            // Longer than a resend takes to arrive on any link a call works on, shorter
            // than the browser's own NACK retry interval on a slow one.
            min_resend_gap_us: 100_000,
            // A healthy link repairs a few per cent; a quarter is already a link that
            // cannot carry the stream (`feedback.rs` pauses it).
            budget_ratio: 0.25,
            // About a keyframe's worth at once.
            budget_cap: 64.0 * 1024.0,
        }
    }
}

struct Sent {
    packet: Packet,
    last_resent_us: Option<u64>,
    nacked: bool,
}

/// What became of one NACKed sequence number.
#[derive(Debug, PartialEq)]
pub enum Resend {
    /// Send this again.
    Packet(Box<Packet>),
    /// Resent less than `min_resend_gap` ago.
    TooSoon,
    /// Not sent to this subscriber, or too long ago.
    Unknown,
    /// Over the subscriber's retransmission budget.
    OverBudget,
}

/// The packets last sent on one down track, and its retransmission budget.
pub struct SentHistory {
    slots: Vec<Option<Sent>>,
    policy: RetransmitPolicy,
    tokens: f64,
    /// Packets recorded (sent to the subscriber) so far, for the loss window.
    packets_sent: u64,
    /// First NACKs of packets, since `take_first_nacks`.
    first_nacks: u64,
}

impl SentHistory {
    pub fn new(policy: RetransmitPolicy) -> Self {
        Self {
            slots: (0..HISTORY).map(|_| None).collect(),
            policy,
            tokens: policy.budget_cap,
            packets_sent: 0,
            first_nacks: 0,
        }
    }

    /// Keeps a packet just sent, `bytes` on the wire: the bytes fill the budget (resends
    /// are not recorded, so they earn no budget for more resends).
    pub fn record(&mut self, packet: Packet, bytes: usize) {
        self.packets_sent += 1;
        self.tokens =
            (self.tokens + bytes as f64 * self.policy.budget_ratio).min(self.policy.budget_cap);
        let slot = &mut self.slots[usize::from(packet.header.sequence_number) % HISTORY];
        *slot = Some(Sent {
            packet,
            last_resent_us: None,
            nacked: false,
        });
    }

    /// Packets recorded so far.
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// The subscriber asked for `seq` again.
    pub fn resend(&mut self, seq: u16, now_us: u64) -> Resend {
        let Some(sent) = self.slots[usize::from(seq) % HISTORY]
            .as_mut()
            .filter(|s| s.packet.header.sequence_number == seq)
        else {
            return Resend::Unknown;
        };
        if !sent.nacked {
            sent.nacked = true;
            self.first_nacks += 1;
        }
        if sent
            .last_resent_us
            .is_some_and(|at| now_us.saturating_sub(at) < self.policy.min_resend_gap_us)
        {
            return Resend::TooSoon;
        }
        let len = sent.packet.payload.len() as f64;
        if self.tokens < len {
            return Resend::OverBudget;
        }
        self.tokens -= len;
        sent.last_resent_us = Some(now_us);
        Resend::Packet(Box::new(sent.packet.clone()))
    }

    /// Packets NACKed for the first time since the last call.
    pub fn take_first_nacks(&mut self) -> u64 {
        std::mem::take(&mut self.first_nacks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use webrtc::rtp::header::Header;

    const MS: u64 = 1000;

    fn packet(seq: u16, len: usize) -> Packet {
        Packet {
            header: Header {
                sequence_number: seq,
                ..Default::default()
            },
            payload: Bytes::from(vec![0u8; len]),
        }
    }

    fn history() -> SentHistory {
        SentHistory::new(RetransmitPolicy::default())
    }

    fn seq_of(r: Resend) -> u16 {
        match r {
            Resend::Packet(p) => p.header.sequence_number,
            other => panic!("expected a resend, got {other:?}"),
        }
    }

    #[test]
    fn a_sent_packet_is_resent_once_per_gap() {
        let mut h = history();
        h.record(packet(7, 1000), 1000);
        assert_eq!(seq_of(h.resend(7, 0)), 7);
        assert_eq!(h.resend(7, 50 * MS), Resend::TooSoon);
        assert_eq!(seq_of(h.resend(7, 100 * MS)), 7);
    }

    #[test]
    fn unknown_and_overwritten_packets_are_not_resent() {
        let mut h = history();
        assert_eq!(h.resend(3, 0), Resend::Unknown);
        h.record(packet(3, 100), 100);
        h.record(packet(3 + HISTORY as u16, 100), 100);
        assert_eq!(h.resend(3, 0), Resend::Unknown, "its slot was taken");
    }

    #[test]
    fn retransmissions_take_at_most_a_quarter_of_the_link() {
        let mut h = history();
        // 10 s: 100 packets of 1000 bytes a second sent; the subscriber asks for every
        // packet twice (it loses most of them, resends included).
        let (mut forwarded, mut resent_bytes) = (0u64, 0u64);
        for i in 0..1000u64 {
            let seq = i as u16;
            h.record(packet(seq, 1000), 1000);
            forwarded += 1000;
            let now = i * 10 * MS;
            for s in [seq, seq.wrapping_sub(20)] {
                if let Resend::Packet(p) = h.resend(s, now) {
                    resent_bytes += p.payload.len() as u64;
                }
            }
        }
        let ratio = resent_bytes as f64 / forwarded as f64;
        assert!(
            ratio <= 0.25 + 64.0 * 1024.0 / forwarded as f64,
            "resent {ratio:.2} of what was sent"
        );
        assert!(ratio > 0.2, "but the budget is used: {ratio:.2}");
    }

    #[test]
    fn first_nacks_are_counted_once_per_packet() {
        let mut h = history();
        for seq in 0..10 {
            h.record(packet(seq, 100), 100);
        }
        for _ in 0..3 {
            for seq in 0..4 {
                h.resend(seq, 0);
            }
        }
        h.resend(50, 0); // never sent: not counted
        assert_eq!(h.take_first_nacks(), 4);
        assert_eq!(h.take_first_nacks(), 0);
    }
}
