//! What a headless publisher sends, paced like a real encoder: synthetic stamped
//! packets (the default, see `media`) or a real VP8 + Opus recording (`Fixture`) for
//! servers that decode what they relay and would drop synthetic payloads.
//!
//! The loops are free functions over a `TrackLocalStaticRTP`, so the Plaza client and
//! other protocol adapters (the load generator's Janus client) send the same media.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use webrtc::media::io::ivf_reader::IVFReader;
use webrtc::media::io::ogg_reader::OggReader;
use webrtc::rtp::codecs::vp8::Vp8Payloader;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp::packetizer::Payloader;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;

use super::media;
use super::VideoOptions;
use plaza_protocol::MediaKind;

/// Largest RTP payload made from a fixture frame (as `media::MAX_PAYLOAD`).
const FIXTURE_MTU: usize = media::MAX_PAYLOAD;

/// One packet just handed to the track, for observers (tests, the load generator).
pub struct SentPacket<'a> {
    pub kind: MediaKind,
    pub header: &'a Header,
    pub payload: &'a Bytes,
    /// The first packet of a keyframe.
    pub keyframe: bool,
}

/// A real recording, looped: VP8 frames from an IVF file and Opus packets from an Ogg
/// file (one packet per page: make it with `ffmpeg ... -page_duration 20000`).
#[derive(Debug)]
pub struct Fixture {
    /// Frames in order, with whether each is a keyframe.
    pub video: Vec<(Bytes, bool)>,
    pub fps: u32,
    pub audio: Vec<Bytes>,
}

impl Fixture {
    pub fn load(ivf: &Path, ogg: &Path) -> std::io::Result<Fixture> {
        let bad = |what: &str, e: webrtc::media::Error| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {e}"))
        };
        let (mut reader, header) =
            IVFReader::new(BufReader::new(File::open(ivf)?)).map_err(|e| bad("ivf", e))?;
        let fps = header
            .timebase_denominator
            .checked_div(header.timebase_numerator)
            .map_or(30, |f| f.clamp(1, 120));
        let mut video = Vec::new();
        while let Ok((frame, _)) = reader.parse_next_frame() {
            // VP8 frame tag: bit 0 of the first byte is 0 on a keyframe (RFC 6386 9.1).
            let key = frame.first().is_some_and(|b| b & 0x01 == 0);
            video.push((frame.freeze(), key));
        }
        let (mut ogg_reader, _) =
            OggReader::new(BufReader::new(File::open(ogg)?), true).map_err(|e| bad("ogg", e))?;
        let mut audio = Vec::new();
        while let Ok((page, _)) = ogg_reader.parse_next_page() {
            if page.starts_with(b"OpusTags") || page.is_empty() {
                continue;
            }
            audio.push(page.freeze());
        }
        if video.first().map(|f| f.1) != Some(true) || audio.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "fixture: the video must start with a keyframe and the audio must not be empty",
            ));
        }
        Ok(Fixture { video, fps, audio })
    }

    /// Average video bitrate of the recording.
    pub fn video_bitrate_bps(&self) -> u64 {
        let bytes: usize = self.video.iter().map(|(f, _)| f.len()).sum();
        bytes as u64 * 8 * self.fps as u64 / self.video.len().max(1) as u64
    }
}

fn first_header(payload_type: u8) -> Header {
    Header {
        version: 2,
        payload_type,
        sequence_number: rand::random(),
        timestamp: rand::random(),
        ..Default::default()
    }
}

/// Sends Opus every 20 ms until the track stops accepting writes.
pub async fn send_audio(
    track: Arc<TrackLocalStaticRTP>,
    fixture: Option<Arc<Fixture>>,
    mut on_sent: impl FnMut(&SentPacket<'_>) + Send,
) {
    let source: u64 = rand::random();
    let mut header = first_header(111);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for seq in 0u64.. {
        tick.tick().await;
        let payload = match &fixture {
            Some(f) => f.audio[seq as usize % f.audio.len()].clone(),
            None => media::opus_packet(source, seq, 120),
        };
        let pkt = Packet {
            header: header.clone(),
            payload,
        };
        on_sent(&SentPacket {
            kind: MediaKind::Audio,
            header: &pkt.header,
            payload: &pkt.payload,
            keyframe: false,
        });
        if track.write_rtp(&pkt).await.is_err() {
            return;
        }
        header.sequence_number = header.sequence_number.wrapping_add(1);
        header.timestamp = header.timestamp.wrapping_add(960);
    }
}

/// Sends video frames at `opts.fps` until the track stops accepting writes. A keyframe
/// is sent first, when `force_keyframe` is set (a PLI/FIR arrived) and every
/// `opts.keyframe_interval`; with a fixture, "sending a keyframe" means jumping back to
/// the recording's first frame, which is one.
pub async fn send_video(
    track: Arc<TrackLocalStaticRTP>,
    opts: VideoOptions,
    fixture: Option<Arc<Fixture>>,
    force_keyframe: Arc<AtomicBool>,
    mut on_sent: impl FnMut(&SentPacket<'_>) + Send,
) {
    let source: u64 = rand::random();
    let fps = fixture.as_ref().map_or(opts.fps, |f| f.fps).max(1);
    let frame_bytes = (opts.bitrate_bps / 8 / fps) as usize;
    let ts_step = 90_000 / fps;
    let mut header = first_header(96);
    let mut payloader = Vp8Payloader::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / fps as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stamp_seq = 0u64;
    let mut frame_index = 0usize;
    let mut last_keyframe: Option<Instant> = None;
    loop {
        tick.tick().await;
        let periodic = match (opts.keyframe_interval, last_keyframe) {
            (Some(every), Some(at)) => at.elapsed() >= every,
            _ => false,
        };
        let want_keyframe =
            last_keyframe.is_none() || periodic || force_keyframe.swap(false, Ordering::AcqRel);
        let (packets, keyframe) = match &fixture {
            Some(f) => {
                if want_keyframe {
                    frame_index = 0;
                }
                let (frame, key) = &f.video[frame_index % f.video.len()];
                frame_index = (frame_index + 1) % f.video.len();
                let packets = payloader.payload(FIXTURE_MTU, frame).unwrap_or_default();
                (packets, *key)
            }
            None => {
                let packets = media::vp8_frame(source, stamp_seq, want_keyframe, frame_bytes);
                stamp_seq += packets.len() as u64;
                (packets, want_keyframe)
            }
        };
        if keyframe {
            last_keyframe = Some(Instant::now());
        }
        let last = packets.len().saturating_sub(1);
        for (i, payload) in packets.into_iter().enumerate() {
            header.marker = i == last;
            let pkt = Packet {
                header: header.clone(),
                payload,
            };
            on_sent(&SentPacket {
                kind: MediaKind::Video,
                header: &pkt.header,
                payload: &pkt.payload,
                keyframe: keyframe && i == 0,
            });
            if track.write_rtp(&pkt).await.is_err() {
                return;
            }
            header.sequence_number = header.sequence_number.wrapping_add(1);
        }
        header.timestamp = header.timestamp.wrapping_add(ts_step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_fixture_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/fixtures");
        let f = Fixture::load(&dir.join("video.ivf"), &dir.join("audio.ogg")).unwrap();
        assert_eq!(f.fps, 30);
        assert!(f.video.len() >= 120, "{} frames", f.video.len());
        assert!(
            f.video.iter().filter(|v| v.1).count() >= 2,
            "periodic keyframes"
        );
        assert!(f.audio.len() >= 200, "{} opus packets", f.audio.len());
        assert!(f.audio.iter().all(|p| !p.starts_with(b"Opus")));
    }
}
