//! The codecs Plaza negotiates, and keyframe detection on RTP payloads.
//!
//! An SFU never decodes, but it must know where a decodable picture starts: a new
//! subscriber gets nothing until the start of a keyframe, or its decoder shows garbage
//! (or nothing) until the next one. The parsers read only the first bytes of a payload.

use webrtc::api::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MIME_TYPE_VP9,
};
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::rtp_transceiver::RTCPFeedback;

/// Which payload format a track carries, resolved once per track from its MIME type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    Vp8,
    Vp9,
    H264,
    /// Audio, or a video format we cannot parse: every packet is a fine start.
    Opaque,
}

impl PayloadFormat {
    pub fn from_mime(mime: &str) -> Self {
        if mime.eq_ignore_ascii_case(MIME_TYPE_VP8) {
            PayloadFormat::Vp8
        } else if mime.eq_ignore_ascii_case(MIME_TYPE_VP9) {
            PayloadFormat::Vp9
        } else if mime.eq_ignore_ascii_case(MIME_TYPE_H264) {
            PayloadFormat::H264
        } else {
            PayloadFormat::Opaque
        }
    }

    /// Whether a subscriber must wait for a keyframe before it is sent anything.
    pub fn needs_keyframe(self) -> bool {
        self != PayloadFormat::Opaque
    }

    /// Whether this payload begins a keyframe.
    pub fn is_keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            PayloadFormat::Vp8 => vp8_keyframe_start(payload),
            PayloadFormat::Vp9 => vp9_keyframe_start(payload),
            PayloadFormat::H264 => h264_keyframe_start(payload),
            PayloadFormat::Opaque => true,
        }
    }
}

/// RFC 7741 §4.2: payload descriptor, then (on the first packet of a frame) the VP8
/// payload header whose lowest bit P is 0 for a keyframe.
fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let start_of_partition = b0 & 0x10 != 0;
    let partition_id = b0 & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        // X: extension byte with I, L, T, K flags.
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // I: picture id, 7 or 15 bits (M flag).
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // T or K: TID/Y/KEYIDX
        }
    }
    matches!(p.get(i), Some(h) if h & 0x01 == 0)
}

/// VP9 RTP payload (RFC 9628 §4.2): first byte I P L F B E V Z. A keyframe starts where
/// a frame begins (B) that is not inter-predicted (P = 0), in the base spatial layer.
fn vp9_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let inter_predicted = b0 & 0x40 != 0;
    let begins_frame = b0 & 0x08 != 0;
    if inter_predicted || !begins_frame {
        return false;
    }
    if b0 & 0x20 == 0 {
        return true; // no layer indices: single layer
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&pid) = p.get(i) else { return false };
        i += if pid & 0x80 != 0 { 2 } else { 1 };
    }
    // Layer indices: TID(3) U(1) SID(3) D(1).
    matches!(p.get(i), Some(l) if (l >> 1) & 0x07 == 0)
}

/// RFC 6184: an IDR slice (5) or a sequence parameter set (7, sent just before the IDR)
/// starts a keyframe, alone, inside a STAP-A (24), or as the first fragment of a FU-A (28).
fn h264_keyframe_start(p: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        IDR | SPS => true,
        STAP_A => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                let nal = p[i + 2] & 0x1f;
                if nal == IDR || nal == SPS {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        FU_A => matches!(p.get(1), Some(h) if h & 0x80 != 0 && h & 0x1f == IDR),
        _ => false,
    }
}

/// Registers the codecs Plaza forwards. No RTX: without it Chromium retransmits on the
/// original SSRC, which the forwarder passes through unchanged and the NACK responder
/// on the subscriber side can serve from its cache.
pub fn register_codecs(m: &mut MediaEngine) -> webrtc::error::Result<()> {
    let video_feedback = vec![
        RTCPFeedback {
            typ: "ccm".into(),
            parameter: "fir".into(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: "".into(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: "pli".into(),
        },
    ];
    m.register_codec(
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.into(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
            ..Default::default()
        },
        RTPCodecType::Audio,
    )?;
    let video = [
        (MIME_TYPE_VP8, "", 96),
        (MIME_TYPE_VP9, "profile-id=0", 98),
        (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
        ),
        (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            108,
        ),
    ];
    for (mime, fmtp, pt) in video {
        m.register_codec(
            RTCRtpCodecParameters {
                capability: RTCRtpCodecCapability {
                    mime_type: mime.into(),
                    clock_rate: 90000,
                    channels: 0,
                    sdp_fmtp_line: fmtp.into(),
                    rtcp_feedback: video_feedback.clone(),
                },
                payload_type: pt,
                ..Default::default()
            },
            RTPCodecType::Video,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8() {
        let f = PayloadFormat::Vp8;
        // S=1, PID=0, no extension; VP8 header P=0 (key).
        assert!(f.is_keyframe_start(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // Same but P=1 (inter frame).
        assert!(!f.is_keyframe_start(&[0x10, 0x01]));
        // Continuation packet (S=0).
        assert!(!f.is_keyframe_start(&[0x00, 0x00]));
        // X=1, I=1 with a 15-bit picture id (M=1), then key header: Chromium's usual shape.
        assert!(f.is_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        assert!(!f.is_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x01]));
        // X=1, I, L, T all present.
        assert!(f.is_keyframe_start(&[0x90, 0xe0, 0x05, 0x07, 0x20, 0x00]));
        // Truncated.
        assert!(!f.is_keyframe_start(&[0x90, 0x80]));
        assert!(!f.is_keyframe_start(&[]));
    }

    #[test]
    fn vp9() {
        let f = PayloadFormat::Vp9;
        assert!(f.is_keyframe_start(&[0x08]));
        assert!(!f.is_keyframe_start(&[0x48])); // P set
        assert!(!f.is_keyframe_start(&[0x00])); // not beginning of frame
                                                // I (7-bit pid) + L, SID 0
        assert!(f.is_keyframe_start(&[0xa8, 0x01, 0x00]));
        // SID 1
        assert!(!f.is_keyframe_start(&[0xa8, 0x01, 0x02]));
    }

    #[test]
    fn h264() {
        let f = PayloadFormat::H264;
        assert!(f.is_keyframe_start(&[0x65, 0x88])); // IDR
        assert!(f.is_keyframe_start(&[0x67, 0x42])); // SPS
        assert!(!f.is_keyframe_start(&[0x41, 0x9a])); // non-IDR slice
                                                      // STAP-A with SPS
        assert!(f.is_keyframe_start(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]));
        // STAP-A with only a PPS
        assert!(!f.is_keyframe_start(&[0x78, 0x00, 0x01, 0x68]));
        // FU-A start of IDR, and a middle fragment
        assert!(f.is_keyframe_start(&[0x7c, 0x85, 0x00]));
        assert!(!f.is_keyframe_start(&[0x7c, 0x05, 0x00]));
    }

    #[test]
    fn audio_is_opaque() {
        let f = PayloadFormat::from_mime("audio/opus");
        assert_eq!(f, PayloadFormat::Opaque);
        assert!(!f.needs_keyframe());
        assert_eq!(PayloadFormat::from_mime("video/vp8"), PayloadFormat::Vp8);
    }
}
