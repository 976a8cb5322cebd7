//! Synthetic media for headless participants: VP8- and Opus-shaped RTP payloads that
//! the server treats exactly like a browser's (keyframe detection included), each
//! carrying a stamp after the codec header so receivers can tell who sent a packet,
//! which one it was, and how long the relay took (sender and receiver share a clock).

use std::hash::{Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

const MAGIC: &[u8; 4] = b"PLZ1";
/// magic + source + sequence + send time.
pub const STAMP_LEN: usize = 4 + 8 + 8 + 8;
/// Largest RTP payload the generator makes (fits a 1280-byte MTU with SRTP overhead).
pub const MAX_PAYLOAD: usize = 1100;

/// What a receiver reads back from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Random per published track: identifies the publisher's stream.
    pub source: u64,
    /// Packet counter of that track.
    pub seq: u64,
    /// Wall-clock send time, µs since the Unix epoch.
    pub sent_at_us: u64,
}

pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A stable 64-bit fingerprint of a payload, for "what arrived is what was sent".
pub fn payload_hash(payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

fn put_stamp(buf: &mut BytesMut, stamp: Stamp) {
    buf.put_slice(MAGIC);
    buf.put_u64(stamp.source);
    buf.put_u64(stamp.seq);
    buf.put_u64(stamp.sent_at_us);
}

/// Fills `n` bytes that differ per packet, so no two payloads hash alike.
fn put_filler(buf: &mut BytesMut, mut x: u64, n: usize) {
    for _ in 0..n.div_ceil(8) {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf.put_u64(x.wrapping_mul(0x2545_f491_4f6c_dd1d));
    }
    buf.truncate(buf.len() - (n.div_ceil(8) * 8 - n));
}

/// Reads the stamp after a codec header of `header_len` bytes.
pub fn read_stamp(payload: &[u8], header_len: usize) -> Option<Stamp> {
    let p = payload.get(header_len..header_len + STAMP_LEN)?;
    if &p[..4] != MAGIC {
        return None;
    }
    let u = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
    Some(Stamp {
        source: u(4),
        seq: u(12),
        sent_at_us: u(20),
    })
}

/// VP8 packets: the payload descriptor is one byte (S bit on a frame's first packet,
/// partition 0); the first packet also carries the VP8 header byte whose low bit is 0
/// on a keyframe (RFC 7741). That is all the server looks at.
pub fn vp8_frame(source: u64, first_seq: u64, keyframe: bool, frame_bytes: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut remaining = frame_bytes.max(STAMP_LEN + 2);
    let mut seq = first_seq;
    let sent_at_us = unix_us();
    while remaining > 0 {
        let first = out.is_empty();
        let header_len = if first { 2 } else { 1 };
        let body = remaining.min(MAX_PAYLOAD - header_len).max(STAMP_LEN);
        let mut buf = BytesMut::with_capacity(header_len + body);
        buf.put_u8(if first { 0x10 } else { 0x00 });
        if first {
            buf.put_u8(if keyframe { 0x00 } else { 0x01 });
        }
        put_stamp(
            &mut buf,
            Stamp {
                source,
                seq,
                sent_at_us,
            },
        );
        put_filler(
            &mut buf,
            source ^ seq.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15,
            body - STAMP_LEN,
        );
        out.push(buf.freeze());
        remaining = remaining.saturating_sub(body);
        seq += 1;
    }
    out
}

/// Where the stamp starts in a VP8 packet made by `vp8_frame`.
pub fn vp8_header_len(payload: &[u8]) -> usize {
    match payload.first() {
        Some(b) if b & 0x10 != 0 => 2,
        _ => 1,
    }
}

/// An Opus-shaped packet: a TOC byte (0xfc: CELT fullband, 20 ms, stereo, one frame),
/// then the stamp and filler.
pub fn opus_packet(source: u64, seq: u64, bytes: usize) -> Bytes {
    let body = bytes.max(STAMP_LEN + 1) - 1;
    let mut buf = BytesMut::with_capacity(1 + body);
    buf.put_u8(0xfc);
    put_stamp(
        &mut buf,
        Stamp {
            source,
            seq,
            sent_at_us: unix_us(),
        },
    );
    put_filler(
        &mut buf,
        source ^ seq ^ 0x51_7cc1_b727_220a,
        body - STAMP_LEN,
    );
    buf.freeze()
}

pub const OPUS_HEADER_LEN: usize = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use plaza_rtc::PayloadFormat;

    #[test]
    fn vp8_frames_split_and_carry_stamps() {
        let pkts = vp8_frame(42, 100, true, 3000);
        assert_eq!(pkts.len(), 3);
        assert_eq!(pkts.iter().map(|p| p.len()).sum::<usize>(), 3000 + 2 + 2);
        assert!(PayloadFormat::Vp8.is_keyframe_start(&pkts[0]));
        assert!(!PayloadFormat::Vp8.is_keyframe_start(&pkts[1]));
        for (i, p) in pkts.iter().enumerate() {
            let s = read_stamp(p, vp8_header_len(p)).unwrap();
            assert_eq!((s.source, s.seq), (42, 100 + i as u64));
        }
        let delta = vp8_frame(42, 103, false, 500);
        assert_eq!(delta.len(), 1);
        assert!(!PayloadFormat::Vp8.is_keyframe_start(&delta[0]));
        assert_ne!(
            payload_hash(&pkts[0]),
            payload_hash(&vp8_frame(43, 100, true, 3000)[0])
        );
    }

    #[test]
    fn opus_packets_carry_stamps() {
        let p = opus_packet(7, 9, 120);
        assert_eq!(p.len(), 120);
        let s = read_stamp(&p, OPUS_HEADER_LEN).unwrap();
        assert_eq!((s.source, s.seq), (7, 9));
        assert!(read_stamp(&p, 0).is_none());
    }
}
