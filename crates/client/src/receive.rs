//! The subscriber side of media: a task per remote track that counts, measures and
//! fingerprints what arrives.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::track::track_remote::TrackRemote;

use crate::events::{lock, Event, RemoteTrackStats, Shared, Step};
use crate::media::{self, payload_hash, read_stamp, unix_us, Stamp};
use crate::ReceivedPacket;
use plaza_protocol::MediaKind;
use plaza_rtc::PayloadFormat;

/// Logs every track the server adds to the subscriber connection and starts reading it.
pub(crate) fn wire_subscriber_tracks(pc: &Arc<RTCPeerConnection>, shared: &Arc<Shared>) {
    let s = Arc::clone(shared);
    pc.on_track(Box::new(move |track, _, _| {
        let kind = match track.kind() {
            RTPCodecType::Audio => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        s.push(Event::RemoteTrack {
            track_id: track.id(),
            publisher: track.stream_id(),
            kind,
        });
        tokio::spawn(receive(track, kind, Arc::clone(&s)));
        Box::pin(async {})
    }));
}

/// Reads one remote track until it ends: every packet goes to the `on_packet` hook
/// and, with `track_stats`, into the track's `RemoteTrackStats`.
async fn receive(track: Arc<TrackRemote>, kind: MediaKind, shared: Arc<Shared>) {
    let track_id = track.id();
    let publisher = track.stream_id();
    let format = PayloadFormat::from_mime(&track.codec().capability.mime_type);
    while let Ok((pkt, _)) = track.read_rtp().await {
        if pkt.payload.is_empty() {
            continue;
        }
        let now = Instant::now();
        if shared.packets_received.fetch_add(1, Ordering::Relaxed) == 0 {
            shared.timeline.mark(Step::FirstRtp);
        }
        if kind == MediaKind::Video && format.is_keyframe_start(&pkt.payload) {
            shared.timeline.mark(Step::FirstKeyframe);
        }
        if let Some(hook) = &shared.on_packet {
            (hook.0)(&ReceivedPacket {
                publisher: &publisher,
                track_id: &track_id,
                kind,
                header: &pkt.header,
                payload: &pkt.payload,
                at: now,
            });
        }
        if !shared.track_stats {
            continue;
        }
        let header_len = match kind {
            MediaKind::Video => media::vp8_header_len(&pkt.payload),
            MediaKind::Audio => media::OPUS_HEADER_LEN,
        };
        let stamp: Option<Stamp> = read_stamp(&pkt.payload, header_len);
        let latency = stamp.map(|s| unix_us().saturating_sub(s.sent_at_us) as u32);
        let mut remote = lock(&shared.remote);
        let t = remote
            .entry(track_id.clone())
            .or_insert_with(|| RemoteTrackStats {
                track_id: track_id.clone(),
                publisher: publisher.clone(),
                kind: Some(kind),
                ..Default::default()
            });
        if t.packets == 0 {
            t.first_packet_at = Some(now);
            t.first_packet_keyframe = Some(format.is_keyframe_start(&pkt.payload));
        }
        t.packets += 1;
        t.last_seq = Some(pkt.header.sequence_number);
        t.bytes += pkt.payload.len() as u64;
        if let Some(s) = stamp {
            t.stamps += 1;
            t.stamp_min = Some(t.stamp_min.map_or(s.seq, |m| m.min(s.seq)));
            t.stamp_max = Some(t.stamp_max.map_or(s.seq, |m| m.max(s.seq)));
            t.sources.insert(s.source);
        }
        if let Some(l) = latency {
            t.latencies_us.push(l);
        }
        if shared.record_payloads {
            t.hashes.push(payload_hash(&pkt.payload));
        }
    }
}
