//! Counters that are not "what is alive" (that is the registry): errors by code and the
//! join latency histogram, plus the Prometheus text rendering of everything (the
//! media plane's counters and relay residence histogram included).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::admission::Refused;
use crate::histogram::{Histogram, JoinBuckets};
use crate::registry::Counts;
use crate::rtc::MediaStats;

#[derive(Debug, Default)]
pub struct Metrics {
    /// `error` frames sent to clients (and frame-size closes), by code.
    errors_by_code: DashMap<&'static str, AtomicU64>,
    /// Time from a `join` to `joined` (peer connections created, room entered).
    joins: Histogram<JoinBuckets>,
    /// WebSocket upgrades refused, by `Refused` (in `Refused::ALL` order).
    refused: [AtomicU64; Refused::ALL.len()],
}

impl Metrics {
    pub fn count_error(&self, code: &'static str) {
        self.errors_by_code
            .entry(code)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn errors_by_code(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self
            .errors_by_code
            .iter()
            .map(|e| (*e.key(), e.value().load(Ordering::Relaxed)))
            .collect();
        v.sort();
        v
    }

    pub fn count_refused(&self, why: Refused) {
        let i = Refused::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_join(&self, took: Duration) {
        self.joins.observe(took);
    }

    /// The Prometheus text exposition of the server's state.
    pub fn render(&self, counts: Counts, room_actors: i64, media: &MediaStats) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let gauge = |g: &std::sync::atomic::AtomicI64| MediaStats::gauge(g).to_string();
        let counter = |c: &AtomicU64| MediaStats::get(c).to_string();
        one(
            "plaza_rooms",
            "gauge",
            "Rooms open.",
            counts.rooms.to_string(),
        );
        one(
            "plaza_room_actors",
            "gauge",
            "Room actors alive (equals plaza_rooms except while a room is stopping).",
            room_actors.to_string(),
        );
        one(
            "plaza_participants",
            "gauge",
            "Participants in rooms.",
            counts.participants.to_string(),
        );
        one(
            "plaza_connections",
            "gauge",
            "WebSocket connections.",
            counts.connections.to_string(),
        );
        one(
            "plaza_published_tracks",
            "gauge",
            "Published tracks being forwarded.",
            gauge(&media.forwarding_tasks),
        );
        one(
            "plaza_subscriptions",
            "gauge",
            "Down tracks: one per subscriber per published track.",
            gauge(&media.subscriptions),
        );
        one(
            "plaza_peer_connections",
            "gauge",
            "Peer connections open.",
            gauge(&media.peer_connections),
        );
        one(
            "plaza_packets_received_total",
            "counter",
            "RTP packets received from publishers.",
            counter(&media.packets_received),
        );
        one(
            "plaza_bytes_received_total",
            "counter",
            "RTP payload bytes received from publishers.",
            counter(&media.bytes_received),
        );
        one(
            "plaza_packets_forwarded_total",
            "counter",
            "RTP packets sent to subscribers.",
            counter(&media.packets_forwarded),
        );
        one(
            "plaza_bytes_forwarded_total",
            "counter",
            "Bytes sent to subscribers (SRTP).",
            counter(&media.bytes_forwarded),
        );
        one(
            "plaza_packets_dropped_total",
            "counter",
            "Packets that could not be sent to a subscriber.",
            counter(&media.packets_dropped),
        );
        one(
            "plaza_plis_sent_total",
            "counter",
            "Keyframe requests sent to publishers.",
            counter(&media.plis_sent),
        );
        one(
            "plaza_video_pauses_total",
            "counter",
            "Times a subscriber's video was paused because it reported too much loss for video to get through.",
            counter(&media.video_pauses),
        );
        one(
            "plaza_videos_paused",
            "gauge",
            "Subscribers' videos paused now for loss (one per subscriber per video track).",
            gauge(&media.videos_paused),
        );
        labelled(
            &mut out,
            "plaza_subscriber_keyframe_requests_total",
            "Subscribers' keyframe requests (PLI/FIR), by outcome: forwarded to the publisher, throttled (too soon after that subscriber's last one), paused (its video is paused for loss).",
            &[
                ("forwarded", &media.keyframe_requests_forwarded),
                ("throttled", &media.keyframe_requests_throttled),
                ("paused", &media.keyframe_requests_paused),
            ],
        );
        labelled(
            &mut out,
            "plaza_retransmissions_total",
            "Packets subscribers asked for again (NACK), by outcome: sent, too_soon (resent moments ago), over_budget (the subscriber's retransmission budget was spent), unknown (not in the history).",
            &[
                ("sent", &media.retransmissions_sent),
                ("too_soon", &media.retransmissions_too_soon),
                ("over_budget", &media.retransmissions_over_budget),
                ("unknown", &media.retransmissions_unknown),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP plaza_errors_total Errors reported to clients, by code.\n# TYPE plaza_errors_total counter"
        );
        for (code, n) in self.errors_by_code() {
            let _ = writeln!(out, "plaza_errors_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP plaza_connections_refused_total WebSocket upgrades refused before the upgrade, by reason.\n# TYPE plaza_connections_refused_total counter"
        );
        for (why, n) in Refused::ALL.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "plaza_connections_refused_total{{reason=\"{}\"}} {}",
                why.label(),
                n.load(Ordering::Relaxed)
            );
        }
        self.joins
            .render(&mut out, "plaza_join_seconds", "Time from join to joined.");
        media.residence.render(
            &mut out,
            "plaza_relay_residence_seconds",
            "Per packet sent to a subscriber: from the up track's read of it to the write to that subscriber returning (SRTP and the send included; webrtc-rs's receive queue not).",
        );
        out
    }
}

/// A counter with an `outcome` label: one sample per outcome.
fn labelled(out: &mut String, name: &str, help: &str, outcomes: &[(&str, &AtomicU64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (outcome, n) in outcomes {
        let _ = writeln!(
            out,
            "{name}{{outcome=\"{outcome}\"}} {}",
            MediaStats::get(n)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_histograms_are_rendered() {
        let m = Metrics::default();
        m.observe_join(Duration::from_millis(7));
        let text = m.render(
            Counts {
                connections: 0,
                participants: 0,
                rooms: 0,
            },
            0,
            &MediaStats::default(),
        );
        assert!(text.contains("plaza_join_seconds_bucket{le=\"0.01\"} 1"));
        assert!(text.contains("plaza_join_seconds_count 1"));
        assert!(text.contains("plaza_relay_residence_seconds_count 0"));
    }

    #[test]
    fn errors_by_code() {
        let m = Metrics::default();
        m.count_error("bad_json");
        m.count_error("bad_json");
        m.count_error("room_full");
        let text = m.render(
            Counts {
                connections: 0,
                participants: 0,
                rooms: 0,
            },
            0,
            &MediaStats::default(),
        );
        assert!(text.contains("plaza_errors_total{code=\"bad_json\"} 2"));
        assert!(text.contains("plaza_errors_total{code=\"room_full\"} 1"));
    }
}
