//! What the synthetic participants see: per participant, when media first arrived
//! (join time) and, inside a measurement window, packets, bytes, loss and relay
//! latency per received stream.
//!
//! Every packet is identified by the sender's stream and its per-stream packet number:
//! read from the stamp in the payload (synthetic media), or looked up by payload hash in
//! the `Ledger` the senders fill (real recordings, which cannot carry a stamp). One
//! clock: senders and receivers are in this process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use dashmap::DashMap;
use hdrhistogram::Histogram;
use plaza_client::media::{self, payload_hash, read_stamp, unix_us};
use plaza_client::source::SentPacket;
use plaza_client::ReceivedPacket;
use plaza_protocol::MediaKind;
use plaza_rtc::PayloadFormat;

/// Latency samples above this (µs) are clamped: a minute means "lost in a queue".
const MAX_LATENCY_US: u64 = 60_000_000;
/// A stream's window covers at most this many packet numbers (bits in its bitmap).
const MAX_SEQ_SPAN: u64 = 1 << 24;

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Send times of real-recording packets, keyed by (publisher slot, payload hash). A
/// recording loops, so a key is overwritten once per loop; latency is far shorter.
#[derive(Default)]
pub struct Ledger {
    sent: DashMap<(u32, u64), (u64, u64)>,
    /// Publisher identity as receivers see it (participant or feed id) → slot.
    slots: DashMap<String, u32>,
}

impl Ledger {
    pub fn name_slot(&self, publisher: &str, slot: u32) {
        self.slots.insert(publisher.to_string(), slot);
    }

    /// An `on_sent` observer for the publisher in `slot`: numbers its packets per kind.
    pub fn observer(self: &Arc<Self>, slot: u32) -> impl Fn(&SentPacket<'_>) + Send + Sync {
        let ledger = Arc::clone(self);
        let counters = [AtomicU64::new(0), AtomicU64::new(0)];
        move |p: &SentPacket<'_>| {
            let n = counters[kind_index(p.kind)].fetch_add(1, Ordering::Relaxed);
            ledger
                .sent
                .insert((slot, payload_hash(p.payload)), (unix_us(), n));
        }
    }

    fn lookup(&self, publisher: &str, kind: MediaKind, payload: &[u8]) -> Option<(u64, u64, u64)> {
        let slot = *self.slots.get(publisher)?;
        let (sent_us, seq) = *self.sent.get(&(slot, payload_hash(payload)))?;
        Some((stream_key(slot, kind), seq, sent_us))
    }
}

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

fn stream_key(slot: u32, kind: MediaKind) -> u64 {
    ((slot as u64) << 1) | kind_index(kind) as u64
}

/// Packet numbers seen on one stream inside the window.
#[derive(Default)]
struct SeqTracker {
    base: Option<u64>,
    max: u64,
    bits: Vec<u64>,
    distinct: u64,
    duplicates: u64,
    /// Older than the first packet of the window (reordered across its start).
    before_base: u64,
}

impl SeqTracker {
    fn see(&mut self, seq: u64) {
        let base = *self.base.get_or_insert(seq);
        if seq < base {
            self.before_base += 1;
            return;
        }
        let off = seq - base;
        if off >= MAX_SEQ_SPAN {
            return;
        }
        let (word, bit) = ((off / 64) as usize, off % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.bits[word] |= 1 << bit;
        self.distinct += 1;
        self.max = self.max.max(seq);
    }

    /// Packet numbers between the first and the highest seen that never arrived.
    fn lost(&self) -> u64 {
        match self.base {
            Some(b) => (self.max - b + 1).saturating_sub(self.distinct),
            None => 0,
        }
    }
}

/// Counters of one participant for the current window.
pub struct Window {
    pub packets: u64,
    pub bytes: u64,
    pub unidentified: u64,
    pub latency_us: Histogram<u64>,
    streams: HashMap<u64, SeqTracker>,
}

impl Window {
    fn new() -> Self {
        Window {
            packets: 0,
            bytes: 0,
            unidentified: 0,
            latency_us: new_histogram(),
            streams: HashMap::new(),
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 3 significant digits from 1 µs to a minute: a few tens of KiB.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| {
        // The bounds above are constants that hdrhistogram accepts.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// One synthetic participant, as the recorder knows it.
pub struct Part {
    /// When it started to connect (the WebSocket open is the start of the join).
    pub started: Instant,
    /// Whether media from someone already publishing is expected at once: only then is
    /// the time to first packet a join time.
    pub expects_media: bool,
    pub first_media: OnceLock<Instant>,
    pub first_frame: OnceLock<Instant>,
    pub failed: AtomicBool,
    window: Mutex<Window>,
}

impl Part {
    pub fn join_ms(&self) -> Option<f64> {
        ms_since(self.started, self.first_media.get())
    }

    pub fn first_frame_ms(&self) -> Option<f64> {
        ms_since(self.started, self.first_frame.get())
    }
}

fn ms_since(start: Instant, at: Option<&Instant>) -> Option<f64> {
    at.map(|t| t.saturating_duration_since(start).as_secs_f64() * 1000.0)
}

/// How a receiver identifies packets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Identify {
    /// Stamps in the payload (synthetic media).
    Stamp,
    /// Payload hash in the ledger (a real recording: identified only where the relay
    /// forwards payloads untouched; a re-encoding relay's packets stay unidentified).
    Ledger,
}

pub struct Recorder {
    measuring: AtomicBool,
    identify: Identify,
    pub ledger: Arc<Ledger>,
    parts: Mutex<Vec<Arc<Part>>>,
}

/// Everything the window saw, summed over participants.
pub struct WindowTotals {
    pub packets: u64,
    pub bytes: u64,
    pub lost: u64,
    pub expected: u64,
    pub duplicates: u64,
    pub unidentified: u64,
    pub latency_us: Histogram<u64>,
}

impl Recorder {
    pub fn new(identify: Identify) -> Arc<Self> {
        Arc::new(Recorder {
            measuring: AtomicBool::new(false),
            identify,
            ledger: Arc::new(Ledger::default()),
            parts: Mutex::new(Vec::new()),
        })
    }

    pub fn add_part(&self, expects_media: bool) -> Arc<Part> {
        let p = Arc::new(Part {
            started: Instant::now(),
            expects_media,
            first_media: OnceLock::new(),
            first_frame: OnceLock::new(),
            failed: AtomicBool::new(false),
            window: Mutex::new(Window::new()),
        });
        lock(&self.parts).push(Arc::clone(&p));
        p
    }

    pub fn parts(&self) -> Vec<Arc<Part>> {
        lock(&self.parts).clone()
    }

    /// The per-packet observer of one participant.
    pub fn observer(
        self: &Arc<Self>,
        part: &Arc<Part>,
    ) -> impl Fn(&ReceivedPacket<'_>) + Send + Sync {
        let rec = Arc::clone(self);
        let part = Arc::clone(part);
        move |p: &ReceivedPacket<'_>| rec.record(&part, p)
    }

    fn record(&self, part: &Part, p: &ReceivedPacket<'_>) {
        part.first_media.get_or_init(|| p.at);
        // The first frame a decoder can show starts at a keyframe. Plaza sends nothing
        // before one; a server that forwards from any packet (Janus) may deliver
        // undecodable delta frames first, which do not count.
        if p.kind == MediaKind::Video && PayloadFormat::Vp8.is_keyframe_start(p.payload) {
            part.first_frame.get_or_init(|| p.at);
        }
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        let now_us = unix_us();
        let id = match self.identify {
            Identify::Stamp => {
                let header_len = match p.kind {
                    MediaKind::Video => media::vp8_header_len(p.payload),
                    MediaKind::Audio => media::OPUS_HEADER_LEN,
                };
                read_stamp(p.payload, header_len)
                    // A stamp from the future or older than a minute is not ours.
                    .filter(|s| s.sent_at_us <= now_us && now_us - s.sent_at_us < MAX_LATENCY_US)
                    .map(|s| (s.source, s.seq, s.sent_at_us))
            }
            Identify::Ledger => self.ledger.lookup(p.publisher, p.kind, p.payload),
        };
        let mut w = lock(&part.window);
        w.packets += 1;
        w.bytes += p.payload.len() as u64;
        match id {
            Some((stream, seq, sent_us)) => {
                let latency = now_us.saturating_sub(sent_us).clamp(1, MAX_LATENCY_US);
                let _ = w.latency_us.record(latency);
                w.streams.entry(stream).or_default().see(seq);
            }
            None => w.unidentified += 1,
        }
    }

    /// Clears every participant's window and starts counting.
    pub fn start_window(&self) {
        for p in self.parts() {
            *lock(&p.window) = Window::new();
        }
        self.measuring.store(true, Ordering::Release);
    }

    /// Stops counting and sums the window.
    pub fn end_window(&self) -> WindowTotals {
        self.measuring.store(false, Ordering::Release);
        let mut t = WindowTotals {
            packets: 0,
            bytes: 0,
            lost: 0,
            expected: 0,
            duplicates: 0,
            unidentified: 0,
            latency_us: new_histogram(),
        };
        for p in self.parts() {
            let w = lock(&p.window);
            t.packets += w.packets;
            t.bytes += w.bytes;
            t.unidentified += w.unidentified;
            let _ = t.latency_us.add(&w.latency_us);
            for s in w.streams.values() {
                t.lost += s.lost();
                t.expected += s.lost() + s.distinct;
                t.duplicates += s.duplicates;
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_counts_gaps_not_duplicates() {
        let mut t = SeqTracker::default();
        for s in [10, 11, 13, 13, 14, 12, 17] {
            t.see(s);
        }
        assert_eq!(t.distinct, 6);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.lost(), 2); // 15 and 16
        t.see(9);
        assert_eq!(t.before_base, 1);
    }
}
