//! What one subscriber's RTCP says about one down track, and what Plaza does about it.
//! Pure: time is an argument, so the policy is tested without a network or a clock.
//!
//! A subscriber on a link too slow for what it is sent loses most packets. It asks for
//! them again (NACK: answered within a budget, `retransmit.rs`, the mechanism that cost
//! the others most, docs/decisions.md §17) and for keyframes (PLI), and every keyframe
//! costs the publisher's encoder a burst of bits that **everyone** receives. So, per
//! down track:
//!
//! - **Its keyframe requests are budgeted on their own**: one passes to the publisher
//!   at once, the next no sooner than `request_interval` later; a subscriber that keeps
//!   asking right after being served (the keyframe did not help) waits twice as long
//!   each time, up to `max_request_interval`; a quiet spell resets the wait.
//! - **Its video pauses while its loss says a keyframe would not get through**: loss is
//!   judged per `window`, as the larger of what its receiver reports say and the share
//!   of packets it NACKed (receiver reports count a packet repaired by a resend as
//!   received, so on a link that drops most packets they can look fine while hardly a
//!   picture gets through). After `lossy_windows_to_pause` windows in a row with at
//!   least `pause_loss` lost, nothing of this video is sent to it (its audio still is,
//!   and now has the link to itself) and its keyframe requests are dropped. After
//!   `pause_for` the video resumes at the next keyframe, as a probe; a pause soon after
//!   the last one doubles the wait, up to `max_pause`. Without bandwidth estimation
//!   (issue 12) this probe is the only way to learn the link got better.

use std::time::Duration;

/// The thresholds of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackPolicy {
    pub request_interval: Duration,
    pub max_request_interval: Duration,
    /// Loss (of 256, as RTCP reports it) from which a window counts as lossy.
    pub pause_loss: u8,
    pub window: Duration,
    pub lossy_windows_to_pause: u8,
    pub pause_for: Duration,
    pub max_pause: Duration,
}

impl Default for FeedbackPolicy {
    fn default() -> Self {
        Self {
            // A decoder that lost its picture is served at once; one that asks again
            // within a second is already being served by the keyframe in flight.
            request_interval: Duration::from_secs(1),
            max_request_interval: Duration::from_secs(8),
            // A quarter of the packets: a keyframe of 20-50 packets then arrives
            // whole with a chance under 1 in 300 before retransmissions, and the
            // retransmission budget (`retransmit.rs`) is spent.
            pause_loss: 64,
            // Two seconds: one lossy second is a burst, not a link.
            window: Duration::from_secs(1),
            lossy_windows_to_pause: 2,
            pause_for: Duration::from_secs(2),
            max_pause: Duration::from_secs(16),
        }
    }
}

/// A window with fewer packets sent says nothing about loss.
const MIN_WINDOW_PACKETS: u64 = 10;

/// What the caller must do to the down track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Stop sending its video.
    Pause,
    /// Send its video again, from the next keyframe.
    Resume,
}

/// What became of one keyframe request from the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Passed on to the publisher (the up track merges and caps it further).
    Forwarded,
    /// Too soon after the last one this subscriber got.
    Throttled,
    /// Its video is paused: a keyframe now would only be lost.
    Paused,
}

/// The policy's state for one down track.
#[derive(Debug, Clone)]
pub struct SubscriberFeedback {
    policy: FeedbackPolicy,
    /// The current wait between forwarded requests (µs), doubled on repeats.
    request_wait_us: u64,
    last_forwarded_us: Option<u64>,
    /// The loss window under way: when it began, the packets sent by then, the worst
    /// receiver report and the packets NACKed (for the first time) in it.
    window_start: Option<(u64, u64)>,
    window_reported: u8,
    window_nacked: u64,
    lossy_in_a_row: u8,
    /// While paused: when to resume.
    paused_until_us: Option<u64>,
    /// The length of the next pause (µs), doubled on repeats.
    pause_us: u64,
    last_resumed_us: Option<u64>,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

impl SubscriberFeedback {
    pub fn new(policy: FeedbackPolicy) -> Self {
        Self {
            policy,
            request_wait_us: us(policy.request_interval),
            last_forwarded_us: None,
            window_start: None,
            window_reported: 0,
            window_nacked: 0,
            lossy_in_a_row: 0,
            paused_until_us: None,
            pause_us: us(policy.pause_for),
            last_resumed_us: None,
        }
    }

    pub fn paused(&self) -> bool {
        self.paused_until_us.is_some()
    }

    /// The subscriber asked for a keyframe (PLI or FIR).
    pub fn keyframe_request(&mut self, now_us: u64) -> RequestOutcome {
        if self.paused() {
            return RequestOutcome::Paused;
        }
        if let Some(last) = self.last_forwarded_us {
            let since = now_us.saturating_sub(last);
            if since < self.request_wait_us {
                return RequestOutcome::Throttled;
            }
            let base = us(self.policy.request_interval);
            self.request_wait_us = if since < 2 * self.request_wait_us {
                // Asked again as soon as it could: the last keyframe did not help.
                (2 * self.request_wait_us).min(us(self.policy.max_request_interval))
            } else if since > 4 * us(self.policy.max_request_interval) {
                base
            } else {
                self.request_wait_us
            };
        }
        self.last_forwarded_us = Some(now_us);
        RequestOutcome::Forwarded
    }

    /// A receiver report block about this down track: `fraction_lost` of 256 packets
    /// were lost since the subscriber's last report.
    pub fn receiver_report(&mut self, fraction_lost: u8) {
        // While paused nothing of the video is sent: its reports say nothing of the link.
        if !self.paused() {
            self.window_reported = self.window_reported.max(fraction_lost);
        }
    }

    /// The subscriber NACKed `packets` for the first time.
    pub fn nacked(&mut self, packets: u64) {
        if !self.paused() {
            self.window_nacked += packets;
        }
    }

    /// When `tick` next has something to do (µs, the caller's clock); `None` until the
    /// first tick.
    pub fn next_wakeup(&self) -> Option<u64> {
        self.paused_until_us
            .or(self.window_start.map(|(at, _)| at + us(self.policy.window)))
    }

    /// Called at `next_wakeup` (and once to start): ends a pause that has lasted long
    /// enough, or judges the loss window that ended. `packets_sent` is everything sent
    /// on this down track so far.
    pub fn tick(&mut self, now_us: u64, packets_sent: u64) -> Option<Change> {
        if let Some(until) = self.paused_until_us {
            if now_us < until {
                return None;
            }
            self.paused_until_us = None;
            self.last_resumed_us = Some(now_us);
            self.start_window(now_us, packets_sent);
            // The probe's first keyframe is asked for by the forwarder, not here; the
            // subscriber's own next request is budgeted from now.
            self.last_forwarded_us = Some(now_us);
            return Some(Change::Resume);
        }
        let Some((started, sent_before)) = self.window_start else {
            self.start_window(now_us, packets_sent);
            return None;
        };
        if now_us < started + us(self.policy.window) {
            return None;
        }
        let sent = packets_sent.saturating_sub(sent_before);
        let nacked = if sent >= MIN_WINDOW_PACKETS {
            (self.window_nacked * 256 / sent).min(255) as u8
        } else {
            0
        };
        let loss = nacked.max(self.window_reported);
        self.start_window(now_us, packets_sent);
        if loss < self.policy.pause_loss {
            self.lossy_in_a_row = 0;
            return None;
        }
        self.lossy_in_a_row += 1;
        if self.lossy_in_a_row < self.policy.lossy_windows_to_pause {
            return None;
        }
        self.lossy_in_a_row = 0;
        let base = us(self.policy.pause_for);
        let max = us(self.policy.max_pause);
        // Lossy again soon after a probe: the link has not got better, wait longer.
        // A long healthy spell since: start over.
        self.pause_us = match self.last_resumed_us {
            Some(r) if now_us.saturating_sub(r) < 2 * self.pause_us + 2 * base => {
                (2 * self.pause_us).min(max)
            }
            _ => base,
        };
        self.paused_until_us = Some(now_us + self.pause_us);
        Some(Change::Pause)
    }

    fn start_window(&mut self, now_us: u64, packets_sent: u64) {
        self.window_start = Some((now_us, packets_sent));
        self.window_reported = 0;
        self.window_nacked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;
    const S: u64 = 1_000_000;
    const LOSSY: u8 = 200; // 78 %
    const CLEAN: u8 = 2; // under 1 %

    fn feedback() -> SubscriberFeedback {
        SubscriberFeedback::new(FeedbackPolicy::default())
    }

    #[test]
    fn a_first_request_passes_at_once_and_a_second_within_the_interval_does_not() {
        let mut f = feedback();
        assert_eq!(f.keyframe_request(5 * S), RequestOutcome::Forwarded);
        assert_eq!(
            f.keyframe_request(5 * S + 300 * MS),
            RequestOutcome::Throttled
        );
        assert_eq!(
            f.keyframe_request(5 * S + 999 * MS),
            RequestOutcome::Throttled
        );
        assert_eq!(f.keyframe_request(6 * S), RequestOutcome::Forwarded);
    }

    #[test]
    fn a_subscriber_asking_over_and_over_is_served_less_and_less_often() {
        let mut f = feedback();
        // A request every 100 ms for a minute: what a decoder behind 85 % loss does.
        let mut forwarded = Vec::new();
        for t in (0..60 * S).step_by(100 * MS as usize) {
            if f.keyframe_request(t) == RequestOutcome::Forwarded {
                forwarded.push(t / MS);
            }
        }
        // 0, 1 s, then 2, 4, 8 s apart, then every 8 s.
        assert_eq!(&forwarded[..5], &[0, 1000, 3000, 7000, 15000]);
        assert!(forwarded.windows(2).all(|w| w[1] - w[0] <= 8000));
        assert_eq!(forwarded.len(), 10, "{forwarded:?}");
    }

    #[test]
    fn a_quiet_spell_resets_the_wait() {
        let mut f = feedback();
        for t in [0, S, 3 * S, 7 * S] {
            assert_eq!(f.keyframe_request(t), RequestOutcome::Forwarded);
        }
        // Over half a minute without asking: the next loss is served promptly again.
        assert_eq!(f.keyframe_request(60 * S), RequestOutcome::Forwarded);
        assert_eq!(f.keyframe_request(61 * S), RequestOutcome::Forwarded);
    }

    /// One second of sending: `sent` packets, `nacked` of them NACKed, the worst
    /// receiver report `reported`; returns what the tick at its end said.
    fn second(
        f: &mut SubscriberFeedback,
        t: &mut u64,
        total: &mut u64,
        (sent, nacked, reported): (u64, u64, u8),
    ) -> Option<Change> {
        f.nacked(nacked);
        f.receiver_report(reported);
        *t += S;
        *total += sent;
        f.tick(*t, *total)
    }

    fn started() -> (SubscriberFeedback, u64, u64) {
        let mut f = feedback();
        assert_eq!(f.next_wakeup(), None);
        assert_eq!(f.tick(0, 0), None);
        assert_eq!(f.next_wakeup(), Some(S));
        (f, 0, 0)
    }

    const HEAVY_NACKS: (u64, u64, u8) = (100, 60, 3);
    const HEAVY_REPORTS: (u64, u64, u8) = (100, 0, LOSSY);
    const HEALTHY: (u64, u64, u8) = (100, 2, CLEAN);

    #[test]
    fn one_lossy_second_is_a_burst_two_pause_the_video() {
        let (mut f, mut t, mut n) = started();
        assert_eq!(second(&mut f, &mut t, &mut n, HEAVY_NACKS), None);
        assert_eq!(second(&mut f, &mut t, &mut n, HEALTHY), None);
        assert_eq!(second(&mut f, &mut t, &mut n, HEAVY_NACKS), None);
        assert_eq!(
            second(&mut f, &mut t, &mut n, HEAVY_REPORTS),
            Some(Change::Pause)
        );
        assert!(f.paused());
        assert_eq!(f.keyframe_request(t + 1), RequestOutcome::Paused);
        assert_eq!(f.next_wakeup(), Some(t + 2 * S));
        // Reports and NACKs while paused say nothing (no video was sent).
        f.receiver_report(LOSSY);
        f.nacked(1000);
        assert_eq!(f.tick(t + 2 * S - 1, n), None);
        assert_eq!(f.tick(t + 2 * S, n), Some(Change::Resume));
        assert!(!f.paused());
        // A new window starts at the resume, with nothing carried over.
        t += 2 * S;
        assert_eq!(second(&mut f, &mut t, &mut n, HEALTHY), None);
    }

    #[test]
    fn nacks_count_even_when_retransmissions_hide_the_loss_from_reports() {
        let (mut f, mut t, mut n) = started();
        // 60 % NACKed, but every report says under 1 %: the resends made it, the
        // link still cannot carry the stream.
        assert_eq!(second(&mut f, &mut t, &mut n, HEAVY_NACKS), None);
        assert_eq!(
            second(&mut f, &mut t, &mut n, HEAVY_NACKS),
            Some(Change::Pause)
        );
    }

    #[test]
    fn too_few_packets_say_nothing() {
        let (mut f, mut t, mut n) = started();
        for _ in 0..5 {
            assert_eq!(second(&mut f, &mut t, &mut n, (5, 5, CLEAN)), None);
        }
    }

    #[test]
    fn a_link_that_stays_bad_is_probed_less_and_less_often() {
        let (mut f, mut t, mut n) = started();
        let mut pauses = Vec::new();
        for _ in 0..6 {
            assert_eq!(second(&mut f, &mut t, &mut n, HEAVY_NACKS), None);
            assert_eq!(
                second(&mut f, &mut t, &mut n, HEAVY_NACKS),
                Some(Change::Pause)
            );
            let until = f.next_wakeup().expect("paused");
            pauses.push((until - t) / S);
            assert_eq!(f.tick(until, n), Some(Change::Resume));
            t = until;
        }
        assert_eq!(pauses, [2, 4, 8, 16, 16, 16]);
    }

    #[test]
    fn a_link_that_got_better_starts_over_at_the_short_pause() {
        let (mut f, mut t, mut n) = started();
        second(&mut f, &mut t, &mut n, HEAVY_NACKS);
        assert_eq!(
            second(&mut f, &mut t, &mut n, HEAVY_NACKS),
            Some(Change::Pause)
        );
        t += 2 * S;
        assert_eq!(f.tick(t, n), Some(Change::Resume));
        second(&mut f, &mut t, &mut n, HEAVY_NACKS);
        assert_eq!(
            second(&mut f, &mut t, &mut n, HEAVY_NACKS),
            Some(Change::Pause)
        );
        assert_eq!(f.next_wakeup(), Some(t + 4 * S), "soon again: 4 s");
        t += 4 * S;
        assert_eq!(f.tick(t, n), Some(Change::Resume));
        // A minute of healthy seconds, then a bad spell: a short pause again.
        for _ in 0..60 {
            assert_eq!(second(&mut f, &mut t, &mut n, HEALTHY), None);
        }
        second(&mut f, &mut t, &mut n, HEAVY_NACKS);
        assert_eq!(
            second(&mut f, &mut t, &mut n, HEAVY_NACKS),
            Some(Change::Pause)
        );
        assert_eq!(f.next_wakeup(), Some(t + 2 * S));
    }

    #[test]
    fn ordinary_loss_never_pauses() {
        let (mut f, mut t, mut n) = started();
        // 2 % random loss, as on a poor Wi-Fi: NACKs repair it.
        for _ in 0..100 {
            assert_eq!(second(&mut f, &mut t, &mut n, (150, 3, 5)), None);
        }
        assert!(!f.paused());
    }
}
