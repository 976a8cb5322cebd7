//! The forwarding hot path without a network (`cargo bench --bench forwarder`).
//!
//! - `forwarder`: one subscriber's per-packet decision (`Forwarder::forward`) and the
//!   header rewrite (`Rewrite::apply`): the pure part of `DownTrack::write`.
//! - `fanout/N`: one publisher packet offered to N subscribers the way the up track's
//!   read loop does it: per subscriber, lock its forwarder, decide, build the fresh
//!   header, clone the packet (the payload is shared `Bytes`), and marshal it, which is
//!   what webrtc-rs does first in `write_rtp`. N = 1, 10, 100.
//! - `fanout_srtp/N`: the same plus SRTP encryption per subscriber (AES-128-GCM, the
//!   profile two webrtc-rs peers pick), the next step of `write_rtp`.
//!
//! Throughput is per subscriber packet: criterion's "elem/s" is forwarded packets/s on
//! one core, and time/N is ns per forwarded packet. What is left out — interceptors,
//! the async write path, the socket — is what the load test (`plaza-load`) measures.
//! `DownTrack::write` itself cannot run here: it needs a webrtc-rs `TrackLocalContext`,
//! which only a peer connection can make.

use std::hint::black_box;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use plaza::rtc::forwarder::{Forwarder, Verdict};
use plaza_client::media;
use plaza_rtc::PayloadFormat;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::srtp::context::Context;
use webrtc::srtp::protection_profile::ProtectionProfile;
use webrtc::util::marshal::{Marshal, MarshalSize};

/// A 1.5 Mbit/s, 30 fps synthetic frame's packets: ~1100-byte payloads like the load.
fn packets() -> Vec<Packet> {
    let frame = media::vp8_frame(1, 0, true, 6250);
    frame
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Packet {
            header: Header {
                version: 2,
                payload_type: 96,
                sequence_number: 1000 + i as u16,
                timestamp: 90_000,
                ssrc: 0x1234_5678,
                marker: false,
                ..Default::default()
            },
            payload,
        })
        .collect()
}

/// Advances a packet to the next sequence number (and frame, every 6 packets).
fn next(p: &mut Packet, n: u64) {
    p.header.sequence_number = p.header.sequence_number.wrapping_add(1);
    if n.is_multiple_of(6) {
        p.header.timestamp = p.header.timestamp.wrapping_add(3000);
    }
}

struct Sub {
    forwarder: Mutex<Forwarder>,
    ssrc: u32,
    buf: BytesMut,
    srtp: Option<Context>,
}

fn subscribers(n: usize, srtp: bool) -> Vec<Sub> {
    (0..n)
        .map(|i| Sub {
            forwarder: Mutex::new(Forwarder::new(PayloadFormat::Vp8, 90_000)),
            ssrc: 0xabc0_0000 + i as u32,
            buf: BytesMut::with_capacity(1500),
            srtp: srtp.then(|| {
                Context::new(
                    &[i as u8; 16],
                    &[7; 12],
                    ProtectionProfile::AeadAes128Gcm,
                    None,
                    None,
                )
                .expect("valid SRTP key and salt lengths")
            }),
        })
        .collect()
}

/// The body of `DownTrack::write` up to the webrtc-rs writer, then marshal (+ SRTP).
/// Not inlined, so callgrind can count its instructions alone (see `main`).
#[inline(never)]
fn offer(subs: &mut [Sub], pkt: &Packet, keyframe: bool, now_us: u64) -> usize {
    let mut bytes = 0;
    for s in subs.iter_mut() {
        let verdict = s
            .forwarder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forward(&pkt.header, keyframe, now_us);
        let Verdict::Forward(rewrite) = verdict else {
            continue;
        };
        let mut header = Header {
            version: 2,
            marker: pkt.header.marker,
            csrc: pkt.header.csrc.clone(),
            ..Default::default()
        };
        rewrite.apply(&mut header, s.ssrc, 96);
        let out = Packet {
            header,
            payload: pkt.payload.clone(),
        };
        s.buf.clear();
        s.buf.resize(out.marshal_size(), 0);
        let n = out.marshal_to(&mut s.buf).unwrap_or(0);
        bytes += match &mut s.srtp {
            Some(ctx) => ctx.encrypt_rtp(&s.buf[..n]).map_or(0, |b: Bytes| b.len()),
            None => n,
        };
    }
    bytes
}

/// One subscriber's decision and header rewrite (not inlined, for callgrind).
#[inline(never)]
fn decide(f: &mut Forwarder, h: &Header, now_us: u64, out: &mut Header) {
    if let Verdict::Forward(r) = f.forward(h, false, now_us) {
        r.apply(out, 0xdead_beef, 96);
    }
}

fn forwarder(c: &mut Criterion) {
    let mut g = c.benchmark_group("forwarder");
    g.throughput(Throughput::Elements(1));
    g.bench_function("forward+rewrite", |b| {
        let mut f = Forwarder::new(PayloadFormat::Vp8, 90_000);
        let mut p = packets().remove(0);
        let _ = f.forward(&p.header, true, 0);
        let mut out = p.header.clone();
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            next(&mut p, n);
            decide(&mut f, black_box(&p.header), n, &mut out);
            black_box(&out);
        });
    });
    g.finish();
}

fn fanout(c: &mut Criterion, name: &str, srtp: bool) {
    let mut g = c.benchmark_group(name);
    for n in [1usize, 10, 100] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut subs = subscribers(n, srtp);
            let mut p = packets().remove(0);
            offer(&mut subs, &p, true, 0);
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                next(&mut p, i);
                black_box(offer(&mut subs, black_box(&p), false, i));
            });
        });
    }
    g.finish();
}

fn fanout_plain(c: &mut Criterion) {
    fanout(c, "fanout", false);
}

fn fanout_srtp(c: &mut Criterion) {
    fanout(c, "fanout_srtp", true);
}

/// `FORWARDER_COUNT=<bench>/<subscribers>:<packets>` (e.g. `fanout_srtp/10:20000`):
/// instead of timing, push that many packets through one configuration and exit, for
/// `valgrind --tool=callgrind --toggle-collect='*forwarder::offer*'` (or `decide`),
/// whose instruction total / (packets × subscribers) is a per-packet cost that does
/// not depend on what else the machine is doing.
fn count_only(spec: &str) -> Option<()> {
    let (id, count) = spec.split_once(':')?;
    let (name, n) = id.split_once('/')?;
    let (n, count): (usize, u64) = (n.parse().ok()?, count.parse().ok()?);
    let mut p = packets().remove(0);
    if name == "forwarder" {
        let mut f = Forwarder::new(PayloadFormat::Vp8, 90_000);
        let _ = f.forward(&p.header, true, 0);
        let mut out = p.header.clone();
        for i in 1..=count {
            next(&mut p, i);
            decide(&mut f, black_box(&p.header), i, &mut out);
        }
        black_box(&out);
        return Some(());
    }
    let mut subs = subscribers(n, name == "fanout_srtp");
    offer(&mut subs, &p, true, 0);
    for i in 1..=count {
        next(&mut p, i);
        black_box(offer(&mut subs, black_box(&p), false, i));
    }
    Some(())
}

criterion_group! {
    name = benches;
    // No HTML plots: numbers on stdout are the result, and criterion's plotting
    // would need a system font.
    config = Criterion::default().without_plots();
    targets = forwarder, fanout_plain, fanout_srtp
}
fn main() {
    if let Ok(spec) = std::env::var("FORWARDER_COUNT") {
        if count_only(&spec).is_none() {
            eprintln!("FORWARDER_COUNT must look like fanout/10:20000");
            std::process::exit(2);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
