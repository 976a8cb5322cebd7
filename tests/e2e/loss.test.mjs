// Real browsers keep working on a lossy link, because Plaza answers their NACKs. Two
// Chromium pages (Ann, Ben) on two hosts (network namespaces on a bridge, the server on the
// bridge's own address), in one call, each sending its fake camera and microphone. We
// measure Ben's view of Ann for 15 s unshaped (phase A), then drop 2 % of the UDP packets
// to Ben's host (nftables `numgen random` on his veth: this kernel has no netem) and
// measure again (phase B). In B, Ben must still decode Ann at ≥ 80 % of A's frame rate
// and with few freezes, because what was lost is sent again: his browser NACKed
// (inbound-rtp nackCount), the server resent (plaza_retransmissions_total{outcome="sent"}),
// and the nft counter proves packets really were dropped. 2 % is far from the loss at
// which the server pauses a subscriber's video (≥ 25 % two seconds in a row), so
// plaza_video_pauses_total stays 0 and Ben is never told video_paused.
//
// The SRTP profile in use is logged (getStats() transport srtpCipher, both connections of
// both pages); see the README's loss entry for why only one of the two profiles Chromium
// offers can be exercised here.
//
// Needs root (ip netns, veth, bridge, nft); run.sh runs it inside `unshare -n` like the rest.

import assert from 'node:assert/strict';
import os from 'node:os';
import { after, before, describe, test } from 'node:test';

import { assertLoopbackOnly, inboundVideo, joinRoom, launchBrowser, outboundVideo, sleep, waitFor } from './harness.mjs';
import { TestNet } from './hosts.mjs';

const SERVER_IP = '198.18.0.1';
const net = new TestNet({
  serverIp: SERVER_IP,
  hosts: { ann: '198.18.0.10', ben: '198.18.0.11' },
});
const LOSSY = 'ben';
const SENDER = 'ann';
// The issue's figure. PLAZA_E2E_LOSS_PERCENT=0 keeps the rules (and counters) but drops
// nothing: two equal windows, for measuring how much the figures move by themselves on
// this machine (the tolerances below).
const LOSS_PERCENT = Number(process.env.PLAZA_E2E_LOSS_PERCENT ?? 2);
// 15 s per window, as slow_subscriber: long enough that one freeze or a keyframe is not
// the whole figure, short enough that the file stays well under 90 s (two windows plus
// ~10-15 s of browser start and joining).
const WINDOW_MS = 15_000;
// Frame rate kept in phase B, at least, compared with phase A (the issue's figure).
const MIN_FPS_RATIO = 0.8;
// Freezes allowed in Ben ← Ann in phase B beyond phase A's count. Chromium counts a
// freeze when a frame interval exceeds max(3 × the average, average + 150 ms); a packet
// repaired by one NACK round trip on this bridge (< 10 ms) does not make one, a lost
// resend (2 % of 2 %) waits the server's 100 ms resend gap and may. Measured on 2 shared
// cores, whose load from other work varied, 16 runs: with 2 % loss at load average
// 1.5-6 (7 runs) and 11-13 (2), Ben ← Ann froze 0 times in either window, B at 100-117 %
// of A's frame rate, every lost video packet repaired (packetsLost 0); at load 8-9 (1 run)
// 0 → 1 freeze, and the unlossy Ann ← Ben froze once too; at load 20 (2 runs) phase A
// was already poor. With nothing dropped (PLAZA_E2E_LOSS_PERCENT=0, 6 runs): 0 → 0 in 5,
// one freeze in the other direction at load 6; at load 10-12 (1 run) both directions fell
// to 12-13 fps and Ben ← Ann froze 6 times. One freeze is room for a load spike.
const FREEZE_TOLERANCE = 1;

/** The server's Prometheus text as { 'name{labels}': value }. */
async function serverMetrics(server) {
  const res = await fetch(`${server.base}/metrics`);
  assert.equal(res.status, 200, '/metrics answered');
  const out = {};
  for (const line of (await res.text()).split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

const RETRANSMISSIONS = ['sent', 'too_soon', 'over_budget', 'unknown'];
const retransmissions = (m, outcome) => m[`plaza_retransmissions_total{outcome="${outcome}"}`] ?? 0;

/**
 * The DTLS/SRTP parameters of each of the page's connections (getStats() transport):
 * which SRTP profile protects its media, and which DTLS role the browser had (the DTLS
 * server picks the profile from the client's list).
 */
function transports(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const [name, pc] of [['subscriber', window.plaza.subscriberPc], ['publisher', window.plaza.publisherPc]]) {
      for (const s of pc ? (await pc.getStats()).values() : []) {
        if (s.type === 'transport') {
          out[name] = { srtpCipher: s.srtpCipher, dtlsCipher: s.dtlsCipher, dtlsRole: s.dtlsRole, tlsVersion: s.tlsVersion };
        }
      }
    }
    return out;
  });
}

/**
 * One measurement window of fixed length (it is the measurement, not a wait for an
 * event): every counter at both ends, and the deltas. `flows[page]` is that page's view
 * of the other page's video.
 */
async function measure({ server, people, ms }) {
  const snap = async () => ({
    metrics: await serverMetrics(server),
    drops: net.dropStats(LOSSY),
    flows: Object.fromEntries(
      await Promise.all(
        Object.entries(people).map(async ([name, p]) => {
          const other = Object.values(people).find((o) => o !== p);
          return [name, { self: await p.page.evaluate(() => window.plaza.participantId), in: (await inboundVideo(p.page))[other.id] ?? null, out: await outboundVideo(p.page) }];
        }),
      ),
    ),
  });
  const a = await snap();
  await sleep(ms);
  const b = await snap();
  const flows = {};
  for (const name of Object.keys(people)) {
    const [x, y] = [a.flows[name], b.flows[name]];
    if (!x.in || !y.in || x.self !== y.self) {
      flows[name] = null;
      continue;
    }
    const s = (y.in.timestamp - x.in.timestamp) / 1000;
    const d = (k) => y.in[k] - x.in[k];
    flows[name] = {
      fps: d('framesDecoded') / s,
      framesDropped: d('framesDropped'),
      freezes: d('freezeCount'),
      frozenS: d('totalFreezesDuration'),
      packets: d('packetsReceived'),
      lost: d('packetsLost'),
      rtxReceived: d('retransmittedPacketsReceived'),
      kbps: (8 * d('bytesReceived')) / s / 1000,
      nacks: d('nackCount'),
      plis: d('pliCount'),
      keyframes: d('keyFramesDecoded'),
      width: y.in.frameWidth,
      jitterBufferMs: d('jitterBufferEmittedCount') ? (1000 * d('jitterBufferDelay')) / d('jitterBufferEmittedCount') : 0,
      // What the sender's own browser saw meanwhile: NACKs reaching it mean the server
      // passed its subscriber's loss upstream instead of answering it.
      senderNacks: (() => {
        const other = Object.keys(people).find((n) => n !== name);
        const [u, v] = [a.flows[other].out, b.flows[other].out];
        return u && v ? v.nackCount - u.nackCount : null;
      })(),
    };
  }
  const retrans = Object.fromEntries(RETRANSMISSIONS.map((o) => [o, retransmissions(b.metrics, o) - retransmissions(a.metrics, o)]));
  return {
    flows,
    retrans,
    pauses: (b.metrics.plaza_video_pauses_total ?? 0) - (a.metrics.plaza_video_pauses_total ?? 0),
    drops: { udp: b.drops.udp - a.drops.udp, dropped: b.drops.dropped - a.drops.dropped },
    load: os.loadavg()[0],
  };
}

const fmt = (m) =>
  m
    ? `${m.fps.toFixed(1)} fps, ${m.freezes} freezes (${m.frozenS.toFixed(2)} s), ${m.framesDropped} frames dropped, ` +
      `${m.packets} packets, ${m.lost} lost after repair, ${m.rtxReceived} RTX packets, ${Math.round(m.kbps)} kbit/s, ` +
      `${m.nacks} NACKs, ${m.plis} PLIs, ${m.keyframes} keyframes, jitter buffer ${m.jitterBufferMs.toFixed(0)} ms, ${m.width} px wide; ` +
      `sender got ${m.senderNacks} NACKs`
    : 'no video';

const fmtPhase = (p) =>
  `retransmissions ${RETRANSMISSIONS.map((o) => `${o} ${p.retrans[o]}`).join(', ')}; ` +
  `nft: ${p.drops.dropped} of ${p.drops.udp} UDP packets to ${LOSSY} dropped` +
  (p.drops.udp ? ` (${((100 * p.drops.dropped) / p.drops.udp).toFixed(2)} %)` : '') +
  `; video pauses ${p.pauses}; load average ${p.load.toFixed(1)}`;

describe(`${LOSS_PERCENT} % random UDP loss on one downlink: NACKs are answered, video keeps going`, { concurrency: 1 }, () => {
  let server;
  const browsers = [];
  const people = {};

  before(async () => {
    // Before the bridge exists: proof that we run in a namespace of our own.
    assertLoopbackOnly();
    net.up();
    server = await net.startServer('loss-server.log');
  });

  after(() => net.tearDown(server, browsers));

  test(`Ben's downlink drops ${LOSS_PERCENT} % of UDP: he decodes Ann at ≥ 80 % of the frame rate, NACKs and is answered, never paused`, { timeout: 180_000 }, async (t) => {
    const pageServer = net.pageServer(server);
    const t0 = Date.now();
    const at = () => `+${((Date.now() - t0) / 1000).toFixed(1)} s`;
    for (const name of Object.keys(net.hosts)) {
      const browser = await launchBrowser({ executablePath: net.chromium(name, pageServer.base) });
      browsers.push(browser);
      people[name] = await joinRoom(browser, pageServer, { room: 'loss', name: name[0].toUpperCase() + name.slice(1) });
    }
    const [ann, ben] = [people[SENDER], people[LOSSY]];
    for (const [p, other] of [[ben, ann], [ann, ben]]) {
      await waitFor(async () => (await inboundVideo(p.page))[other.id]?.framesDecoded > 30, {
        timeout: 20_000,
        message: `${p.name} to decode ${other.name}'s video`,
      });
    }
    console.log(`${at()} both decode each other`);

    // Which SRTP profile the call uses. Chromium offers AES_CM_128_HMAC_SHA1_80 first and
    // the GCM profiles after it; whichever side is the DTLS server, the choice falls on
    // AES-CM (see README). Logged, so a change (a Chromium or webrtc-rs update) shows.
    for (const [name, p] of Object.entries(people)) {
      for (const [pc, tr] of Object.entries(await transports(p.page))) {
        console.log(`${name}'s ${pc} connection: SRTP ${tr.srtpCipher}, DTLS ${tr.tlsVersion} ${tr.dtlsCipher}, browser is DTLS ${tr.dtlsRole}`);
      }
    }
    const cipher = (await transports(ben.page)).subscriber?.srtpCipher;
    assert.ok(cipher, `${LOSSY}'s subscriber connection reports its SRTP profile`);

    // Every video_paused Ben is told (must be none).
    await ben.page.evaluate(() => {
      window.testPaused = [];
      window.plaza.client.on('video-paused', (e) => window.testPaused.push(e));
    });
    // The rules exist in A already, dropping nothing, so A's counters show how much UDP
    // Ben gets unshaped and B's that the rule matched it.
    net.dropDownlink(LOSSY, 0);

    // The baseline: an unlossy call on this machine decodes the fake camera without
    // freezes. If A is poor, something else loads the machine (seen at load average 20)
    // and B would mean nothing: A is measured again, three times in all, and the test
    // is skipped, saying why, if it never is healthy.
    const healthy = (f) => f && f.fps >= 15 && f.freezes <= FREEZE_TOLERANCE;
    let a;
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      console.log(`${at()} phase A (no loss), attempt ${attempt}`);
      a = await measure({ server, people, ms: WINDOW_MS });
      if (healthy(a.flows[LOSSY])) break;
      console.log(`phase A is poor (load average ${a.load.toFixed(1)}): ${fmt(a.flows[LOSSY])}`);
    }
    if (!healthy(a.flows[LOSSY])) {
      t.skip(`the machine is too busy to judge: phase A was poor three times (${fmt(a.flows[LOSSY])})`);
      return;
    }
    net.dropDownlink(LOSSY, LOSS_PERCENT);
    console.log(`${at()} phase B (${LOSS_PERCENT} % of UDP to ${LOSSY} dropped)`);
    const b = await measure({ server, people, ms: WINDOW_MS });
    net.undropDownlink(LOSSY);
    const paused = await ben.page.evaluate(() => window.testPaused);
    const totals = await serverMetrics(server);

    for (const name of Object.keys(people)) {
      const other = Object.keys(people).find((n) => n !== name);
      const lossy = name === LOSSY ? ` (${LOSS_PERCENT} % loss in B)` : '';
      console.log(`${name} ← ${other}${lossy}:\n  A: ${fmt(a.flows[name])}\n  B: ${fmt(b.flows[name])}`);
    }
    console.log(`server, A: ${fmtPhase(a)}\nserver, B: ${fmtPhase(b)}`);
    console.log(`SRTP profile on ${LOSSY}'s downlink: ${cipher}; video pauses in all: ${totals.plaza_video_pauses_total}; ` +
      `${LOSSY} told video_paused ${paused.length} times`);
    const x = a.flows[LOSSY];
    const y = b.flows[LOSSY];
    if (x && y) {
      console.log(`SUMMARY ${cipher}: ${LOSSY} ← ${SENDER} ${x.fps.toFixed(1)} → ${y.fps.toFixed(1)} fps ` +
        `(${Math.round((100 * y.fps) / x.fps)} %), freezes ${x.freezes} → ${y.freezes}, NACKs ${y.nacks}, ` +
        `retransmissions sent ${b.retrans.sent}, nft dropped ${b.drops.dropped}/${b.drops.udp}`);
    }

    assert.ok(x, `${LOSSY} decodes ${SENDER}'s video through phase A (same participant)`);

    // The loss happened: the nft rule saw Ben's UDP and dropped about LOSS_PERCENT % of it.
    assert.ok(b.drops.udp > 1000, `the loss rule saw ${LOSSY}'s UDP in B (${b.drops.udp} packets)`);
    if (LOSS_PERCENT > 0) {
      assert.ok(b.drops.dropped > 0, `the nft rule dropped packets to ${LOSSY} in B (${b.drops.dropped})`);
    }

    // The control: Ann ← Ben crosses no lossy link in either phase. When it too loses
    // frame rate or freezes in B, the machine was busy then (seen in calibration runs with
    // no loss at all, load average above 10: both flows fell to 12-13 fps, encoders to
    // 320 px), and a failure below says more about the machine than about the loss.
    const [c0, c1] = [a.flows[SENDER], b.flows[SENDER]];
    const busy = c0 && c1 && (c1.fps < MIN_FPS_RATIO * c0.fps || c1.freezes > c0.freezes + FREEZE_TOLERANCE)
      ? ` (the unlossy ${SENDER} ← ${LOSSY} degraded too, ${c0.fps.toFixed(1)} → ${c1.fps.toFixed(1)} fps, ` +
        `${c0.freezes} → ${c1.freezes} freezes, load average ${b.load.toFixed(1)}: the machine was busy, run again)`
      : '';

    // Ben still watches Ann: same participant all along, most of the frame rate, hardly
    // a freeze more than without loss.
    assert.ok(y, `${LOSSY} decodes ${SENDER}'s video through phase B (same participant)`);
    assert.ok(y.fps >= MIN_FPS_RATIO * x.fps,
      `${LOSSY} ← ${SENDER}: ${y.fps.toFixed(1)} fps in B vs ${x.fps.toFixed(1)} in A (${Math.round((100 * y.fps) / x.fps)} %, at least ${100 * MIN_FPS_RATIO} %)${busy}`);
    assert.ok(y.freezes <= x.freezes + FREEZE_TOLERANCE,
      `${LOSSY} ← ${SENDER}: ${y.freezes} freezes in B (${y.frozenS.toFixed(2)} s) vs ${x.freezes} in A${busy}`);

    if (LOSS_PERCENT > 0) {
      // Because what was lost came again: Ben's browser asked, the server answered.
      assert.ok(y.nacks > 0, `${LOSSY}'s browser sent NACKs in B (${y.nacks})`);
      assert.ok(b.retrans.sent > 0, `the server resent packets in B (plaza_retransmissions_total{outcome="sent"} +${b.retrans.sent})`);
    }

    // 2 % loss is no reason to pause video (the server pauses at ≥ 25 % for 2 s).
    assert.equal(totals.plaza_video_pauses_total ?? 0, 0, 'plaza_video_pauses_total');
    assert.deepEqual(paused, [], `${LOSSY} was told video_paused`);
    for (const p of Object.values(people)) assert.deepEqual(p.errors, [], `${p.name}'s page threw`);
  });
});
