//! An up track: one track a participant publishes, and the one task that reads its RTP
//! and hands each packet to every subscriber's down track.
//!
//! The subscriber list is copy-on-write (`ArcSwap`): the control plane swaps in a new
//! list, the read loop loads the current one per packet and never waits on a lock or a
//! mailbox. Media never passes through an actor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_remote::TrackRemote;

use plaza_protocol::{MediaKind, ParticipantId, TrackId, TrackInfo};
use plaza_rtc::PayloadFormat;

use super::down_track::{DownTrack, Sent};
use super::keyframe::{KeyframePolicy, KeyframeRequests, KeyframeSource};
use super::lock;
use super::padding::PaddingFilter;
use super::stats::{MediaStats, Tally, TaskGuard};

/// Microseconds since the first call: the forwarders' clock.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

pub struct UpTrack {
    pub id: TrackId,
    pub publisher: ParticipantId,
    pub kind: MediaKind,
    codec: RTCRtpCodecCapability,
    format: PayloadFormat,
    media_ssrc: u32,
    subscribers: ArcSwap<Vec<Arc<DownTrack>>>,
    /// The publisher's connection, to send keyframe requests on. Weak: the connection
    /// owns the track, not the other way round.
    publisher_pc: Weak<RTCPeerConnection>,
    /// When to send the publisher a PLI (`keyframe.rs`); `keyframe_wanted` mirrors
    /// its `pending()` so the read loop takes the lock only while someone waits.
    keyframes: Mutex<KeyframeRequests>,
    keyframe_wanted: AtomicBool,
    /// When an unanswered PLI is looked at again (`KeyframePolicy::retry_after`).
    retry_after: std::time::Duration,
    /// Itself, for the retry timer a PLI leaves behind.
    me: Weak<UpTrack>,
    cancel: CancellationToken,
    stats: Arc<MediaStats>,
}

impl UpTrack {
    /// Starts forwarding a remote track on the current (media) runtime. `on_end` runs
    /// once when the read loop stops for any reason other than `stop()`: the track was
    /// removed by the publisher or its connection closed.
    pub(super) fn start(
        track: Arc<TrackRemote>,
        publisher_pc: &Arc<RTCPeerConnection>,
        publisher: ParticipantId,
        keyframe_policy: KeyframePolicy,
        stats: Arc<MediaStats>,
        on_end: impl FnOnce(TrackId) + Send + 'static,
    ) -> Arc<UpTrack> {
        let codec = track.codec().capability;
        let kind = if codec.mime_type.starts_with("audio/") {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        let up = Arc::new_cyclic(|me| UpTrack {
            me: me.clone(),
            retry_after: keyframe_policy.retry_after,
            id: TrackId::random(),
            publisher,
            kind,
            format: PayloadFormat::from_mime(&codec.mime_type),
            codec,
            media_ssrc: track.ssrc(),
            subscribers: ArcSwap::from_pointee(Vec::new()),
            publisher_pc: Arc::downgrade(publisher_pc),
            keyframes: Mutex::new(KeyframeRequests::new(keyframe_policy)),
            keyframe_wanted: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            stats,
        });
        let guard = TaskGuard::new(&up.stats.forwarding_tasks);
        let looper = Arc::clone(&up);
        tokio::spawn(async move {
            let _guard = guard;
            let cancelled = looper.read_loop(track).await;
            // Subscribers must not keep a dead track's down tracks.
            looper.subscribers.store(Arc::new(Vec::new()));
            if !cancelled {
                on_end(looper.id.clone());
            }
        });
        up
    }

    /// Returns whether the loop ended because of `stop()`.
    async fn read_loop(&self, track: Arc<TrackRemote>) -> bool {
        // Counted locally and published in batches: a shared counter bumped per packet
        // from every forwarding thread would bounce one cache line between cores.
        let mut tally = Tally::default();
        let mut last_flush = now_us();
        let mut padding = PaddingFilter::default();
        let cancelled = loop {
            let mut pkt = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break true,
                r = track.read_rtp() => match r {
                    Ok((pkt, _)) => pkt,
                    Err(_) => break false,
                },
            };
            // Padding-only packets are the publisher's bandwidth probes, not media: not
            // forwarded, and renumbered around (`padding.rs`).
            let seq = padding.renumber(
                pkt.header.ssrc,
                pkt.header.sequence_number,
                pkt.payload.is_empty(),
            );
            let Some(seq) = seq else {
                continue;
            };
            pkt.header.sequence_number = seq;
            tally.packets_in += 1;
            tally.bytes_in += pkt.payload.len() as u64;
            let keyframe = self.format.is_keyframe_start(&pkt.payload);
            let now = now_us();
            if self.keyframe_wanted.load(Ordering::Acquire) {
                // Before the subscribers see the packet: a keyframe serves every request
                // so far; otherwise a request held back by the cap may be due now.
                self.keyframe_tick(keyframe, now);
            }
            let subscribers = self.subscribers.load();
            for down in subscribers.iter() {
                match down.write(&pkt, keyframe, now).await {
                    Sent::Bytes(n) => {
                        tally.packets_out += 1;
                        tally.bytes_out += n as u64;
                        // The n-th subscriber's packet waited for the n-1 before it:
                        // the serial fan-out is part of what this measures.
                        tally.residence.observe_us(now_us().saturating_sub(now));
                    }
                    Sent::WantsKeyframe => self.request_keyframe(),
                    Sent::Skipped => {}
                    Sent::Failed => tally.dropped += 1,
                }
            }
            // Published at most 100 ms late, and at least every 32 packets.
            if tally.packets_in >= 32 || now.saturating_sub(last_flush) > 100_000 {
                tally.flush(&self.stats);
                last_flush = now;
            }
        };
        tally.flush(&self.stats);
        cancelled
    }

    /// The codec's MIME type, e.g. `video/VP8`.
    pub fn mime_type(&self) -> &str {
        &self.codec.mime_type
    }

    pub(super) fn codec(&self) -> &RTCRtpCodecCapability {
        &self.codec
    }

    pub(super) fn stats(&self) -> &Arc<MediaStats> {
        &self.stats
    }

    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            id: self.id.clone(),
            participant_id: self.publisher.clone(),
            kind: self.kind,
            codec: self.codec.mime_type.clone(),
        }
    }

    pub fn add_subscriber(&self, down: Arc<DownTrack>) {
        self.subscribers.rcu(|list| {
            let mut next: Vec<_> = list
                .iter()
                .filter(|d| d.subscriber() != down.subscriber())
                .cloned()
                .collect();
            next.push(Arc::clone(&down));
            next
        });
    }

    pub fn remove_subscriber(&self, subscriber: &ParticipantId) {
        self.subscribers.rcu(|list| {
            list.iter()
                .filter(|d| d.subscriber() != subscriber)
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.load().len()
    }

    /// Asks the publisher for a keyframe (PLI) for a subscriber that needs one: at once,
    /// merged with one already in flight, or as soon as the per-track cap allows
    /// (`keyframe.rs`). Called when a down track can first send, from the read loop
    /// (a subscriber still waiting), and from subscribers' RTCP (their decoder lost the
    /// picture). Must run on the media runtime.
    pub fn request_keyframe(&self) {
        if !self.format.needs_keyframe() {
            return;
        }
        let send = {
            let mut k = self.lock_keyframes();
            let send = k.request(now_us());
            self.keyframe_wanted.store(k.pending(), Ordering::Release);
            send
        };
        if send {
            self.send_pli();
        }
    }

    /// The read loop's half of the policy, for one packet.
    fn keyframe_tick(&self, keyframe: bool, now: u64) {
        let send = {
            let mut k = self.lock_keyframes();
            if keyframe {
                k.keyframe_arrived();
            }
            let send = k.poll(now);
            self.keyframe_wanted.store(k.pending(), Ordering::Release);
            send
        };
        if send {
            self.send_pli();
        }
    }

    fn lock_keyframes(&self) -> std::sync::MutexGuard<'_, KeyframeRequests> {
        lock(&self.keyframes)
    }

    fn send_pli(&self) {
        let Some(pc) = self.publisher_pc.upgrade() else {
            return;
        };
        self.stats.plis_sent.fetch_add(1, Ordering::Relaxed);
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: self.media_ssrc,
        };
        let me = self.me.clone();
        let retry_after = self.retry_after;
        tokio::spawn(async move {
            let _ = pc.write_rtcp(&[Box::new(pli)]).await;
            drop(pc);
            // If no keyframe has come by then, the PLI goes again (or as soon as the cap
            // allows): on a timer, not on the next packet or request, which on a slow
            // stream (a screen share at 1 fps) or with subscribers' requests budgeted
            // (`feedback.rs`) may be a second away.
            tokio::time::sleep(retry_after).await;
            if let Some(up) = me.upgrade() {
                if up.keyframe_wanted.load(Ordering::Acquire) {
                    up.keyframe_tick(false, now_us());
                }
            }
        });
    }

    /// Stops the read loop (the track was unpublished or its publisher left).
    pub fn stop(&self) {
        self.cancel.cancel();
        self.subscribers.store(Arc::new(Vec::new()));
    }
}

impl KeyframeSource for UpTrack {
    fn request_keyframe(&self) {
        UpTrack::request_keyframe(self);
    }
}

impl Drop for UpTrack {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
