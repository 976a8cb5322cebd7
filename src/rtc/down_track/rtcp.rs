//! What a down track does with its subscriber's RTCP (`DownTrack::serve_feedback`):
//! keyframe requests and loss go to the policy in `feedback.rs`, NACKs are answered
//! from the track's own history within the subscriber's budget (`retransmit.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use webrtc::rtcp::packet::Packet as RtcpPacket;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;

use super::super::feedback::{Change, FeedbackPolicy, RequestOutcome, SubscriberFeedback};
use super::super::lock;
use super::super::retransmit::Resend;
use super::super::up_track::now_us;
use super::DownTrack;

impl DownTrack {
    /// Reads what the subscriber's RTCP says about this track until `stop` (the track
    /// was removed or the connection closed) or the sender stops, and acts on it.
    pub(in crate::rtc) async fn serve_feedback(
        &self,
        sender: Arc<RTCRtpSender>,
        stop: CancellationToken,
        policy: FeedbackPolicy,
    ) {
        let mut feedback = SubscriberFeedback::new(policy);
        // Only video pauses: audio is small, and the last thing to lose.
        let video = self.format.needs_keyframe();
        if video {
            feedback.tick(now_us(), self.packets_sent());
        }
        loop {
            let wake = feedback.next_wakeup();
            let packets = tokio::select! {
                _ = stop.cancelled() => break,
                _ = sleep_until_us(wake), if wake.is_some() => {
                    if let Some(change) = feedback.tick(now_us(), self.packets_sent()) {
                        self.apply(change);
                    }
                    continue;
                }
                // webrtc-rs's `read_rtcp` misses a stop that happens while no read is
                // pending (a `notify_waiters` with no waiter), and on a sender that never
                // started sending it would then wait forever, keeping the sender, its
                // track and the connection's transport (sockets) alive: hence `stop`.
                read = sender.read_rtcp() => match read {
                    Ok((packets, _)) => packets,
                    Err(_) => break,
                },
            };
            if !self.on_rtcp(&packets, &mut feedback, video).await {
                break;
            }
        }
        if feedback.paused() {
            self.apply(Change::Resume);
        }
    }

    /// One compound RTCP packet from the subscriber. False when the up track is gone.
    async fn on_rtcp(
        &self,
        packets: &[Box<dyn RtcpPacket + Send + Sync>],
        feedback: &mut SubscriberFeedback,
        video: bool,
    ) -> bool {
        let now = now_us();
        let ssrc = self.binding.load().as_ref().map(|b| b.ssrc);
        let mut wants_keyframe = false;
        let mut resends = Vec::new();
        for p in packets {
            let any = p.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                wants_keyframe = true;
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                for report in rr.reports.iter().filter(|r| Some(r.ssrc) == ssrc && video) {
                    feedback.receiver_report(report.fraction_lost);
                }
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                if Some(nack.media_ssrc) == ssrc {
                    self.collect_resends(nack, now, &mut resends);
                }
            }
        }
        if let Some(history) = &self.history {
            feedback.nacked(lock(history).take_first_nacks());
        }
        self.resend(resends).await;
        if wants_keyframe {
            let counter = match feedback.keyframe_request(now) {
                RequestOutcome::Forwarded => {
                    match self.up.upgrade() {
                        Some(up) => up.request_keyframe(),
                        None => return false,
                    }
                    &self.stats.keyframe_requests_forwarded
                }
                RequestOutcome::Throttled => &self.stats.keyframe_requests_throttled,
                RequestOutcome::Paused => &self.stats.keyframe_requests_paused,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// The packets a NACK asks for that may be sent again.
    fn collect_resends(&self, nack: &TransportLayerNack, now: u64, out: &mut Vec<Packet>) {
        let Some(history) = &self.history else {
            return;
        };
        let mut history = lock(history);
        for seq in nack.nacks.iter().flat_map(|pair| pair.into_iter()) {
            let counter = match history.resend(seq, now) {
                Resend::Packet(p) => {
                    out.push(*p);
                    continue;
                }
                Resend::TooSoon => &self.stats.retransmissions_too_soon,
                Resend::OverBudget => &self.stats.retransmissions_over_budget,
                Resend::Unknown => &self.stats.retransmissions_unknown,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Video packets sent to the subscriber so far (the loss window's denominator).
    fn packets_sent(&self) -> u64 {
        self.history.as_ref().map_or(0, |h| lock(h).packets_sent())
    }

    async fn resend(&self, packets: Vec<Packet>) {
        if packets.is_empty() {
            return;
        }
        let Some(binding) = self.binding.load_full() else {
            return;
        };
        for p in &packets {
            if binding.writer.write_rtp(p).await.is_ok() {
                self.stats
                    .retransmissions_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Sleeps until `at_us` on the forwarders' clock (`now_us`); forever without one.
async fn sleep_until_us(at_us: Option<u64>) {
    match at_us {
        Some(at) => {
            let wait = at.saturating_sub(now_us());
            tokio::time::sleep(Duration::from_micros(wait)).await;
        }
        None => std::future::pending().await,
    }
}
