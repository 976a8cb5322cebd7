// Shared helpers for Plaza's browser tests: start the real server, drive Debian Chromium
// with Playwright, and read what a user would see (DOM) or what WebRTC reports (getStats).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const OUT_DIR = path.join(REPO, 'target', 'e2e');

/** Exactly the flags known to work on these machines (shared/notes/testing.md). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

export const HEARTBEAT_TIMEOUT_MS = 2000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * WebRTC in these tests must never leave the machine. Inside `unshare -n` the only
 * interface is loopback; anywhere else we refuse to start unless explicitly allowed.
 */
export function assertLoopbackOnly() {
  if (process.env.PLAZA_E2E_ALLOW_NETWORK === '1') return;
  const external = Object.entries(os.networkInterfaces()).flatMap(([name, addrs]) =>
    (addrs ?? []).filter((a) => !a.internal).map((a) => `${name}=${a.address}`),
  );
  if (external.length) {
    throw new Error(
      `non-loopback interfaces present (${external.join(', ')}). Run the browser tests in a ` +
        `loopback-only network namespace: unshare -n sh -c 'ip link set lo up && tests/e2e/run.sh'`,
    );
  }
}

/** Polls `fn` until it returns something truthy; throws with the last value on timeout. */
export async function waitFor(fn, { timeout = 10_000, interval = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError ? ` (last error: ${lastError.message})` : ` (last value: ${JSON.stringify(last)})`;
      throw new Error(`timed out after ${timeout} ms waiting for ${message}${detail}`);
    }
    await sleep(interval);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ====================================================================== server

export class PlazaServer {
  constructor(proc, port, logPath) {
    this.proc = proc;
    this.port = port;
    this.logPath = logPath;
    this.base = `http://127.0.0.1:${port}`;
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /**
   * Starts target/debug/plaza (or $PLAZA_BIN); `port` to restart on the same address.
   * `heartbeatTimeout`: how long a silent client lasts (a closed tab is noticed after it).
   * `extraArgs`: more command-line flags.
   */
  static async start({
    port = null,
    logName = 'server.log',
    heartbeatTimeout = '2s',
    // 0 s: a dropped socket ends the participant at once (the room tests time that);
    // the ICE restart test sets a real grace period.
    resumeGrace = '0s',
    listenHost = '127.0.0.1',
    iceIp = '127.0.0.1',
    // More flags, e.g. ['--auth-secret', S] (the token test).
    extraArgs = [],
  } = {}) {
    const bin = process.env.PLAZA_BIN ?? path.join(REPO, 'target', 'debug', 'plaza');
    if (!fs.existsSync(bin)) {
      throw new Error(`server binary ${bin} not found: run \`cargo build\` first (or set PLAZA_BIN)`);
    }
    fs.mkdirSync(OUT_DIR, { recursive: true });
    port ??= await freePort();
    const logPath = path.join(OUT_DIR, logName);
    const log = fs.openSync(logPath, 'w');
    const args = [
      '--listen', `${listenHost}:${port}`,
      '--web-root', path.join(REPO, 'web'),
      '--ice-ip', iceIp,
      '--heartbeat-interval', '500ms',
      '--heartbeat-timeout', heartbeatTimeout,
      '--resume-grace', resumeGrace,
      ...extraArgs,
    ];
    const proc = spawn(bin, args, {
      stdio: ['ignore', log, log],
      env: process.env, // PLAZA_LOG=plaza=debug for a detailed server log
    });
    fs.closeSync(log);
    const server = new PlazaServer(proc, port, logPath);
    let exited = null;
    server.exited.then((e) => (exited = e));
    await waitFor(
      async () => {
        if (exited) throw new Error(`server exited early (${JSON.stringify(exited)}): ${server.logTail()}`);
        return (await server.healthz().catch(() => null))?.status === 'ok';
      },
      { timeout: 20_000, interval: 100, message: `GET ${server.base}/healthz` },
    );
    return server;
  }

  async healthz() {
    const res = await fetch(`${this.base}/healthz`);
    if (!res.ok) throw new Error(`/healthz answered ${res.status}`);
    return res.json();
  }

  logTail(lines = 30) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const done = await Promise.race([this.exited, sleep(5000).then(() => null)]);
    if (!done) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }
}

// ====================================================================== browser

export async function launchBrowser({ executablePath = null } = {}) {
  return chromium.launch({
    executablePath: executablePath ?? process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/**
 * One participant: its own browser context (own storage, own camera permission), a page
 * on the Plaza app with ?room=&name= prefilled, and the join button clicked.
 * `beforeGoto(context)` can prepare the context; with `expectRoom: false` the caller
 * finishes with `await p.enterRoom()` (e.g. after answering a media error).
 */
export async function joinRoom(browser, server, { room, name, token = null, beforeGoto = null, expectRoom = true }) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 720 },
    permissions: ['camera', 'microphone'],
  });
  if (beforeGoto) await beforeGoto(context);
  const page = await context.newPage();
  const p = { name, room, context, page, errors: [], id: null, firstFrameMs: null };
  page.on('pageerror', (err) => {
    p.errors.push(err.message);
    console.log(`[${name}] page error: ${err.message}`);
  });
  if (process.env.PLAZA_E2E_TRACE === '1') traceSignalling(page, name);
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') console.log(`[${name}] console.${msg.type()}: ${msg.text()}`);
  });

  const link = `${server.base}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}`;
  await page.goto(token ? `${link}&token=${encodeURIComponent(token)}` : link);
  // The form is prefilled from the link; the user only clicks "Join".
  const prefilled = await page.evaluate(() => [
    document.querySelector('[data-testid="room-input"]').value,
    document.querySelector('[data-testid="name-input"]').value,
  ]);
  if (prefilled[0] !== room || prefilled[1] !== name) throw new Error(`form not prefilled: ${prefilled}`);

  await page.click('[data-testid="join-button"]');
  // Measured inside the page: from the click (app's metrics) to the first decoded frame.
  p.firstFrame = page.evaluate(measureFirstFrame, 30_000).catch((err) => ({ error: err.message }));
  p.enterRoom = async () => {
    await page.waitForSelector('[data-testid="room"]:not([hidden])', { timeout: 15_000 });
    p.id = await waitFor(() => page.evaluate(() => window.plaza.participantId), { message: `${name}'s participant id` });
  };
  if (expectRoom) await p.enterRoom();
  return p;
}

/** PLAZA_E2E_TRACE=1: print every signalling frame (SDP shortened) for debugging. */
function traceSignalling(page, name) {
  const short = (payload) => String(payload).replace(/"sdp":"(.{60}).*?"(,|})/g, '"sdp":"$1…"$2');
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => console.log(`[${name}] → ${short(f.payload)}`));
    ws.on('framereceived', (f) => console.log(`[${name}] ← ${short(f.payload)}`));
    ws.on('close', () => console.log(`[${name}] socket closed`));
  });
}

/** Runs in the page: polls subscriber stats until a remote video frame is decoded. */
async function measureFirstFrame(timeoutMs) {
  const start = performance.now();
  for (;;) {
    const pc = window.plaza?.subscriberPc;
    if (pc) {
      const stats = await pc.getStats();
      for (const s of stats.values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) {
          const m = window.plaza.metrics;
          const since = (t) => (t == null ? null : Math.round(t - m.joinClickedAt));
          return {
            ms: performance.now() - m.joinClickedAt,
            phases: { media: since(m.mediaReadyAt), joined: since(m.joinedAt), track: since(m.firstRemoteTrackAt), connected: since(m.subscriberConnectedAt) },
          };
        }
      }
    }
    if (performance.now() - start > timeoutMs) return { error: 'no decoded frame' };
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Participant ids of the remote tiles the user sees. */
export function tileIds(page) {
  return page.$$eval('[data-testid="grid"] [data-testid="tile"]', (els) => els.map((e) => e.dataset.participantId));
}

/**
 * Per remote tile: its name label, mute indicators, the <video> size, and the inbound
 * RTP stats of the tracks it plays (matched by track id).
 */
export function remoteMedia(page) {
  return page.evaluate(async () => {
    const pc = window.plaza.subscriberPc;
    const stats = pc ? [...(await pc.getStats()).values()] : [];
    const inbound = (track) =>
      track && stats.find((s) => s.type === 'inbound-rtp' && s.trackIdentifier === track.id);
    const out = {};
    for (const tile of document.querySelectorAll('[data-testid="grid"] [data-testid="tile"]')) {
      const video = tile.querySelector('video');
      const audio = tile.querySelector('audio');
      const vTrack = video.srcObject?.getVideoTracks()[0];
      const aTrack = audio.srcObject?.getAudioTracks()[0];
      const v = inbound(vTrack);
      const a = inbound(aTrack);
      out[tile.dataset.participantId] = {
        name: tile.querySelector('[data-testid="tile-name"]').textContent,
        videoWidth: video.videoWidth,
        videoHeight: video.videoHeight,
        paused: video.paused,
        framesDecoded: v?.framesDecoded ?? 0,
        packetsReceived: a?.packetsReceived ?? 0,
        bytesReceived: a?.bytesReceived ?? 0,
        audioPaused: audio.paused,
        videoMuted: tile.dataset.videoMuted === 'true',
        audioMuted: tile.dataset.audioMuted === 'true',
        // What is on screen, not what a property says: checkVisibility() honours CSS.
        cameraIndicator: tile.querySelector('[data-testid="camera-muted"]').checkVisibility(),
        micIndicator: tile.querySelector('[data-testid="mic-muted"]').checkVisibility(),
        placeholder: tile.querySelector('[data-testid="tile-placeholder"]').checkVisibility(),
      };
    }
    return out;
  });
}

/**
 * Per remote tile (participant id): the inbound-rtp stats of the video it plays, the
 * counters a viewer's experience shows in (frames decoded, freezes, loss, bytes), and the
 * stats' own timestamp (ms) for rates. `null` for a tile with no video stats yet.
 */
export function inboundVideo(page) {
  return page.evaluate(async () => {
    const pc = window.plaza.subscriberPc;
    const stats = pc ? [...(await pc.getStats()).values()] : [];
    const out = {};
    for (const tile of document.querySelectorAll('[data-testid="grid"] [data-testid="tile"]')) {
      const track = tile.querySelector('video').srcObject?.getVideoTracks()[0];
      const s = track && stats.find((x) => x.type === 'inbound-rtp' && x.trackIdentifier === track.id);
      out[tile.dataset.participantId] = s
        ? {
            timestamp: s.timestamp,
            framesDecoded: s.framesDecoded ?? 0,
            freezeCount: s.freezeCount ?? 0,
            totalFreezesDuration: s.totalFreezesDuration ?? 0,
            packetsLost: s.packetsLost ?? 0,
            packetsReceived: s.packetsReceived ?? 0,
            bytesReceived: s.bytesReceived ?? 0,
            keyFramesDecoded: s.keyFramesDecoded ?? 0,
            framesDropped: s.framesDropped ?? 0,
            pliCount: s.pliCount ?? 0,
            nackCount: s.nackCount ?? 0,
            // Only resends on an RTX stream count here; Plaza resends on the original SSRC.
            retransmittedPacketsReceived: s.retransmittedPacketsReceived ?? 0,
            jitterBufferDelay: s.jitterBufferDelay ?? 0,
            jitterBufferEmittedCount: s.jitterBufferEmittedCount ?? 0,
            frameWidth: s.frameWidth ?? 0,
          }
        : null;
    }
    return out;
  });
}

/** Chat messages as shown: sender label, text, and whether marked as our own. */
export function chatMessages(page) {
  return page.$$eval('[data-testid="chat-message"]', (els) =>
    els.map((e) => ({
      sender: e.querySelector('[data-testid="chat-sender"]').textContent,
      text: e.querySelector('[data-testid="chat-text"]').textContent,
      time: e.querySelector('[data-testid="chat-time"]').textContent,
      own: e.dataset.own === 'true',
    })),
  );
}

export async function closeParticipant(p) {
  await p.context.close().catch(() => {});
}

/**
 * What the page's camera sends (publisher outbound-rtp), for the logs of the multi-host
 * tests: whether a publisher slowed down (its encoder, its bandwidth estimate, keyframe
 * requests, resends) tells a reader where frames went missing.
 */
export function outboundVideo(page) {
  return page.evaluate(async () => {
    const pc = window.plaza.publisherPc;
    for (const s of pc ? (await pc.getStats()).values() : []) {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        return {
          timestamp: s.timestamp,
          framesSent: s.framesSent ?? 0,
          bytesSent: s.bytesSent ?? 0,
          keyFramesEncoded: s.keyFramesEncoded ?? 0,
          retransmittedPacketsSent: s.retransmittedPacketsSent ?? 0,
          pliCount: s.pliCount ?? 0,
          nackCount: s.nackCount ?? 0,
          targetBitrate: s.targetBitrate ?? 0,
          limitation: s.qualityLimitationReason,
        };
      }
    }
    return null;
  });
}
