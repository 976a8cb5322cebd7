//! When to ask a publisher for a keyframe (a PLI) on one up track. Pure: time is an
//! argument, so the policy is tested without a network or a clock.
//!
//! A subscriber sees nothing until the next keyframe, so the request must leave at once;
//! but every keyframe costs the publisher a burst of bits, and a big room must not turn
//! many subscribers' requests into a PLI storm. The policy (after mediasoup's key frame
//! request manager and Janus, which both ask at once per subscriber):
//!
//! - a request when none is pending goes out **at once**, unless the last PLI left less
//!   than `min_interval` ago (the hard cap; then it leaves as soon as the cap allows);
//! - requests while one is **in flight** (sent, no keyframe yet) merge into it;
//! - a keyframe starting clears everything pending;
//! - a PLI that got no keyframe within `retry_after` is sent again (a lost PLI, or a
//!   keyframe that arrived before the subscriber could use it).

use std::time::Duration;

/// Whatever can ask a publisher for a keyframe: the up track. A down track holds one
/// (weakly) to ask the moment it can send, without depending on the up track's type
/// (which depends on it).
pub trait KeyframeSource: Send + Sync {
    fn request_keyframe(&self);
}

/// The two intervals of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframePolicy {
    /// At most one PLI per this interval per track, however many ask.
    pub min_interval: Duration,
    /// A PLI with no keyframe after this long is sent again.
    pub retry_after: Duration,
}

/// The state of one up track's keyframe requests.
#[derive(Debug, Clone)]
pub struct KeyframeRequests {
    min_interval_us: u64,
    retry_after_us: u64,
    /// Someone is waiting for a keyframe.
    pending: bool,
    /// When the last PLI left (µs, the caller's clock), and whether its keyframe has
    /// not arrived yet.
    last_sent_us: Option<u64>,
    in_flight: bool,
}

impl KeyframeRequests {
    pub fn new(policy: KeyframePolicy) -> Self {
        let min_interval_us = policy.min_interval.as_micros() as u64;
        Self {
            min_interval_us,
            // A retry before the cap allows one would only wait for the cap anyway.
            retry_after_us: (policy.retry_after.as_micros() as u64).max(min_interval_us),
            pending: false,
            last_sent_us: None,
            in_flight: false,
        }
    }

    /// Someone needs a keyframe now. True when a PLI must be sent now (the caller sends
    /// it); otherwise the request is merged or waits for the cap (see `poll`).
    pub fn request(&mut self, now_us: u64) -> bool {
        self.pending = true;
        self.poll(now_us)
    }

    /// A keyframe started on the track: every request so far is served.
    pub fn keyframe_arrived(&mut self) {
        self.pending = false;
        self.in_flight = false;
    }

    /// Whether anyone is waiting for a keyframe (cheap check before `poll`).
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// Called as time passes (on every packet of the track): true when a PLI that was
    /// held back by the cap, or one that needs retrying, must be sent now.
    pub fn poll(&mut self, now_us: u64) -> bool {
        if !self.pending {
            return false;
        }
        let due = match self.last_sent_us {
            None => true,
            Some(sent) => {
                let since = now_us.saturating_sub(sent);
                if self.in_flight {
                    since >= self.retry_after_us
                } else {
                    since >= self.min_interval_us
                }
            }
        };
        if due {
            self.last_sent_us = Some(now_us);
            self.in_flight = true;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn requests() -> KeyframeRequests {
        KeyframeRequests::new(KeyframePolicy {
            min_interval: Duration::from_millis(200),
            retry_after: Duration::from_millis(500),
        })
    }

    #[test]
    fn the_first_request_leaves_at_once() {
        let mut k = requests();
        assert!(k.request(10 * MS));
    }

    #[test]
    fn requests_in_flight_merge_and_a_keyframe_clears_them() {
        let mut k = requests();
        assert!(k.request(0));
        // Three more subscribers ask before the keyframe: no more PLIs.
        assert!(!k.request(20 * MS));
        assert!(!k.request(40 * MS));
        assert!(!k.poll(100 * MS));
        k.keyframe_arrived();
        assert!(!k.pending());
        assert!(!k.poll(600 * MS), "nothing pending, nothing to retry");
    }

    #[test]
    fn a_request_after_a_keyframe_waits_only_for_the_cap() {
        let mut k = requests();
        assert!(k.request(0));
        k.keyframe_arrived();
        // A new subscriber 50 ms after the PLI: the cap holds it back, it is not lost.
        assert!(!k.request(50 * MS));
        assert!(!k.poll(150 * MS));
        assert!(k.poll(200 * MS), "sent when the cap allows");
        assert!(!k.poll(210 * MS), "once");
    }

    #[test]
    fn an_unanswered_request_is_retried() {
        let mut k = requests();
        assert!(k.request(0));
        assert!(!k.poll(499 * MS));
        assert!(k.poll(500 * MS), "retried after retry_after");
        assert!(!k.poll(600 * MS));
        assert!(k.poll(1000 * MS), "and again");
    }

    #[test]
    fn the_cap_holds_under_a_flood() {
        let mut k = requests();
        let mut sent = 0;
        // A request every 10 ms for 2 s, a keyframe 30 ms after each PLI.
        let mut keyframe_at = None;
        for t in (0..2000).step_by(10) {
            let now = t * MS;
            if keyframe_at.is_some_and(|at| now >= at) {
                k.keyframe_arrived();
                keyframe_at = None;
            }
            if k.request(now) {
                sent += 1;
                keyframe_at = Some(now + 30 * MS);
            }
        }
        assert_eq!(sent, 10, "one per 200 ms");
    }

    #[test]
    fn retry_is_never_sooner_than_the_cap() {
        let mut k = KeyframeRequests::new(KeyframePolicy {
            min_interval: Duration::from_millis(300),
            retry_after: Duration::from_millis(100),
        });
        assert!(k.request(0));
        assert!(!k.poll(200 * MS));
        assert!(k.poll(300 * MS));
    }
}
