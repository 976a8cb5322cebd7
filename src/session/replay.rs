//! The server messages a participant was sent since `joined`, numbered from 1, the
//! last `KEPT` of them kept: a client that resumes says how many it received, and gets
//! the rest again (those sent to a socket that was already dead, and those sent while
//! it had none).

use std::collections::VecDeque;

/// Enough for a burst of renegotiation and candidates during a network change; a
/// client that missed more than this joins again.
const KEPT: usize = 512;

#[derive(Debug, Default)]
pub(super) struct Replay {
    /// Messages sent since `joined`.
    sent: u64,
    kept: VecDeque<String>,
}

impl Replay {
    pub(super) fn push(&mut self, text: String) {
        self.sent += 1;
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(text);
    }

    /// The messages after the first `received`, or `None` when some of them are no
    /// longer kept (or the client claims more than was sent).
    pub(super) fn since(&self, received: u64) -> Option<Vec<String>> {
        let missed = self.sent.checked_sub(received)?;
        let missed = usize::try_from(missed).ok()?;
        if missed > self.kept.len() {
            return None;
        }
        Some(
            self.kept
                .iter()
                .skip(self.kept.len() - missed)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_again_what_the_client_missed() {
        let mut r = Replay::default();
        for i in 1..=3 {
            r.push(format!("m{i}"));
        }
        assert_eq!(r.since(1), Some(vec!["m2".to_string(), "m3".to_string()]));
        assert_eq!(r.since(3), Some(vec![]));
        assert_eq!(r.since(4), None, "more than was sent");
        for i in 4..=(KEPT as u64 + 10) {
            r.push(format!("m{i}"));
        }
        assert_eq!(r.since(5), None, "no longer kept");
        assert_eq!(r.since(10).map(|v| v.len()), Some(KEPT));
    }
}
