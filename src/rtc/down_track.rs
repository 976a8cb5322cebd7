//! A down track: one published track as one subscriber receives it.
//!
//! It is our own `TrackLocal` rather than webrtc-rs's `TrackLocalStaticRTP`, because an
//! SFU needs per-subscriber state between the up track's read loop and the wire: the
//! `Forwarder` (keyframe gating, numbering), the negotiated SSRC and payload type, and
//! knowing whether the subscriber's transport is up yet.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::track::track_local::{TrackLocal, TrackLocalContext, TrackLocalWriter};

use plaza_protocol::{ParticipantId, TrackId};
use plaza_rtc::PayloadFormat;

use super::feedback::Change;
use super::forwarder::{Forwarder, Verdict};
use super::keyframe::KeyframeSource;
use super::lock;
use super::peer::{PeerEvent, PeerEventHandler};
use super::retransmit::{RetransmitPolicy, SentHistory};
use super::stats::{MediaStats, TaskGuard};

mod rtcp;

/// What the negotiation gave this track on the subscriber's connection.
struct Binding {
    context_id: String,
    ssrc: u32,
    payload_type: u8,
    writer: Arc<dyn TrackLocalWriter + Send + Sync>,
    paused: Arc<portable_atomic::AtomicBool>,
}

/// The result of offering one packet to one down track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Bytes(usize),
    /// Not for this subscriber (not negotiated yet, paused, before its keyframe).
    Skipped,
    /// Waiting for a keyframe: the caller should ask the publisher for one.
    WantsKeyframe,
    /// The write failed (the subscriber's connection is closing).
    Failed,
}

/// The subscriber's connection as its down tracks see it: whose it is, whether it can
/// send yet, and where to report to.
#[derive(Clone)]
pub struct SubscriberLink {
    pub subscriber: ParticipantId,
    /// Set by the subscriber's peer connection once DTLS is up; shared by all its
    /// down tracks. Before that, writes are dropped by webrtc-rs, so asking the
    /// publisher for a keyframe would be wasted.
    pub transport_ready: Arc<AtomicBool>,
    /// The subscriber's session, told of each pause and resume of a video.
    pub events: PeerEventHandler,
}

pub struct DownTrack {
    track_id: TrackId,
    /// The publisher: the subscriber's `MediaStream.id`.
    stream_id: String,
    track_id_str: String,
    link: SubscriberLink,
    codec: RTCRtpCodecCapability,
    format: PayloadFormat,
    binding: ArcSwapOption<Binding>,
    forwarder: Mutex<Forwarder>,
    /// The track it forwards, to ask for a keyframe the moment this one can send.
    /// Weak: the up track holds its down tracks, not the other way round.
    up: Weak<dyn KeyframeSource>,
    /// Set while the subscriber's loss says its video cannot get through
    /// (`feedback.rs`): nothing of this track is sent to it.
    video_paused: AtomicBool,
    /// What was sent, to answer the subscriber's NACKs and judge its loss (video only:
    /// browsers NACK video, and only video pauses; `retransmit.rs`).
    history: Option<Mutex<SentHistory>>,
    stats: Arc<MediaStats>,
    /// Counts this down track in `MediaStats::subscriptions` while it lives.
    _alive: TaskGuard,
}

impl DownTrack {
    pub fn new(
        up: Weak<dyn KeyframeSource>,
        track_id: TrackId,
        publisher: &ParticipantId,
        codec: RTCRtpCodecCapability,
        link: SubscriberLink,
        stats: &Arc<MediaStats>,
    ) -> Self {
        let format = PayloadFormat::from_mime(&codec.mime_type);
        Self {
            track_id_str: track_id.to_string(),
            track_id,
            stream_id: publisher.to_string(),
            link,
            forwarder: Mutex::new(Forwarder::new(format, codec.clock_rate)),
            format,
            codec,
            binding: ArcSwapOption::empty(),
            up,
            video_paused: AtomicBool::new(false),
            history: format
                .needs_keyframe()
                .then(|| Mutex::new(SentHistory::new(RetransmitPolicy::default()))),
            stats: Arc::clone(stats),
            _alive: TaskGuard::new(&stats.subscriptions),
        }
    }

    /// Asks for a keyframe if this track can send now (negotiated and the transport up):
    /// the subscriber's first picture should not wait for the next packet to notice.
    /// Called when either becomes true.
    pub(super) fn ask_keyframe_if_ready(&self) {
        if self.binding.load().is_some() && self.link.transport_ready.load(Ordering::Acquire) {
            if let Some(up) = self.up.upgrade() {
                up.request_keyframe();
            }
        }
    }

    pub fn track_id(&self) -> &TrackId {
        &self.track_id
    }

    pub fn subscriber(&self) -> &ParticipantId {
        &self.link.subscriber
    }

    pub fn codec(&self) -> &RTCRtpCodecCapability {
        &self.codec
    }

    pub fn format(&self) -> PayloadFormat {
        self.format
    }

    /// Offers one up-track packet. Runs in the up track's read loop, once per
    /// subscriber per packet: keep it cheap.
    pub async fn write(&self, pkt: &Packet, keyframe_start: bool, now_us: u64) -> Sent {
        let Some(binding) = self.binding.load_full() else {
            return Sent::Skipped;
        };
        if binding.paused.load(Ordering::Relaxed)
            || self.video_paused.load(Ordering::Relaxed)
            || !self.link.transport_ready.load(Ordering::Acquire)
        {
            return Sent::Skipped;
        }
        let verdict = self
            .lock_forwarder()
            .forward(&pkt.header, keyframe_start, now_us);
        let rewrite = match verdict {
            Verdict::Forward(r) => r,
            Verdict::Drop => return Sent::Skipped,
            Verdict::NeedKeyframe => return Sent::WantsKeyframe,
        };
        // A fresh header: the publisher's header extensions carry ids negotiated on the
        // publisher's connection and mean nothing (or something else) here.
        let mut header = Header {
            version: 2,
            marker: pkt.header.marker,
            csrc: pkt.header.csrc.clone(),
            ..Default::default()
        };
        rewrite.apply(&mut header, binding.ssrc, binding.payload_type);
        let out = Packet {
            header,
            payload: pkt.payload.clone(),
        };
        match binding.writer.write_rtp(&out).await {
            Ok(0) => {
                // webrtc-rs drops writes until SRTP is ready; start over at a keyframe.
                self.lock_forwarder().restart();
                Sent::Skipped
            }
            Ok(n) => {
                if let Some(history) = &self.history {
                    lock(history).record(out, n);
                }
                Sent::Bytes(n)
            }
            Err(_) => Sent::Failed,
        }
    }

    /// Pauses or resumes this video for the subscriber, and tells its session.
    fn apply(&self, change: Change) {
        match change {
            Change::Pause => {
                if self.video_paused.swap(true, Ordering::Relaxed) {
                    return;
                }
                self.stats.video_pauses.fetch_add(1, Ordering::Relaxed);
                self.stats.videos_paused.fetch_add(1, Ordering::Relaxed);
            }
            Change::Resume => {
                // Numbering first, then the flag: the next packet the read loop lets
                // through waits for a keyframe and leaves no gap.
                self.lock_forwarder().skip_ahead();
                if !self.video_paused.swap(false, Ordering::Relaxed) {
                    return;
                }
                self.stats.videos_paused.fetch_sub(1, Ordering::Relaxed);
            }
        }
        (self.link.events)(PeerEvent::VideoPaused {
            track: self.track_id.clone(),
            paused: change == Change::Pause,
        });
    }

    fn lock_forwarder(&self) -> std::sync::MutexGuard<'_, Forwarder> {
        lock(&self.forwarder)
    }
}

/// The negotiated codec matching ours: same MIME type and, where both have one, the
/// same fmtp line (H.264 profiles differ only there); otherwise the MIME type alone.
fn find_codec(
    ours: &RTCRtpCodecCapability,
    negotiated: &[RTCRtpCodecParameters],
) -> Option<RTCRtpCodecParameters> {
    let same_mime =
        |c: &&RTCRtpCodecParameters| c.capability.mime_type.eq_ignore_ascii_case(&ours.mime_type);
    negotiated
        .iter()
        .filter(same_mime)
        .find(|c| c.capability.sdp_fmtp_line == ours.sdp_fmtp_line)
        .or_else(|| negotiated.iter().find(same_mime))
        .cloned()
}

#[async_trait]
impl TrackLocal for DownTrack {
    async fn bind(&self, t: &TrackLocalContext) -> webrtc::error::Result<RTCRtpCodecParameters> {
        let codec = find_codec(&self.codec, t.codec_parameters())
            .ok_or(webrtc::Error::ErrUnsupportedCodec)?;
        self.binding.store(Some(Arc::new(Binding {
            context_id: t.id(),
            ssrc: t.ssrc(),
            payload_type: codec.payload_type,
            writer: t.write_stream(),
            paused: t.paused(),
        })));
        self.ask_keyframe_if_ready();
        Ok(codec)
    }

    async fn unbind(&self, t: &TrackLocalContext) -> webrtc::error::Result<()> {
        let current = self.binding.load();
        if current.as_ref().is_some_and(|b| b.context_id == t.id()) {
            self.binding.store(None);
        }
        Ok(())
    }

    fn id(&self) -> &str {
        &self.track_id_str
    }

    fn rid(&self) -> Option<&str> {
        None
    }

    fn stream_id(&self) -> &str {
        &self.stream_id
    }

    fn kind(&self) -> RTPCodecType {
        if self.codec.mime_type.starts_with("audio/") {
            RTPCodecType::Audio
        } else {
            RTPCodecType::Video
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(mime: &str, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: mime.into(),
                clock_rate: 90000,
                sdp_fmtp_line: fmtp.into(),
                ..Default::default()
            },
            payload_type: pt,
            ..Default::default()
        }
    }

    #[test]
    fn codec_matching_prefers_exact_fmtp() {
        let negotiated = [
            codec("video/VP8", "", 96),
            codec("video/H264", "profile-level-id=42001f", 108),
            codec("video/H264", "profile-level-id=42e01f", 102),
        ];
        let h264 = codec("video/H264", "profile-level-id=42e01f", 0).capability;
        assert_eq!(find_codec(&h264, &negotiated).unwrap().payload_type, 102);
        let vp8 = codec("video/vp8", "x", 0).capability;
        assert_eq!(find_codec(&vp8, &negotiated).unwrap().payload_type, 96);
        let vp9 = codec("video/VP9", "", 0).capability;
        assert!(find_codec(&vp9, &negotiated).is_none());
    }
}
