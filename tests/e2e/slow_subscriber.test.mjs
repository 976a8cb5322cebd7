// A slow subscriber costs the others nothing. Three Chromium pages on three hosts (network
// namespaces on a bridge, the server on the bridge's own address), all in one call, each
// sending its fake camera and microphone. We measure every page's inbound video for 15 s
// (phase A), then shape one page's downlink (Cleo's) to 300 kbit/s and measure again
// (phase B). Ann and Ben must not notice: neither from each other's video nor from Cleo's
// (her uplink is not shaped) may they see more freezes, nor less than 85 % of the frame
// rate of phase A. Cleo herself must really be starved, or the test proves nothing.
//
// Needs root (ip netns, veth, bridge, tc); run.sh runs it inside `unshare -n` like the rest.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { after, before, describe, test } from 'node:test';

import { assertLoopbackOnly, inboundVideo, joinRoom, launchBrowser, outboundVideo, remoteMedia, sleep, waitFor } from './harness.mjs';
import { TestNet } from './hosts.mjs';

const SERVER_IP = '198.18.0.1';
const net = new TestNet({
  serverIp: SERVER_IP,
  hosts: { ann: '198.18.0.10', ben: '198.18.0.11', cleo: '198.18.0.12' },
});
const SLOW = 'cleo';
// The issue's figures. Unshaped, Cleo receives 440-760 kbit/s of video in phase A (two
// fake cameras, Chromium's estimate still ramping up), so 300 kbit/s starves her.
// PLAZA_E2E_SLOW_RATE=off leaves phase B unshaped too: two equal windows, for measuring
// how much the figures move by themselves on this machine (the tolerances below).
const RATE = process.env.PLAZA_E2E_SLOW_RATE ?? '300kbit';
const SHAPE = RATE === 'off' ? null : { rate: RATE, burst: '16kbit', latency: '300ms' };
const WINDOW_MS = 15_000;
// Frame rate kept in phase B, at least, compared with phase A (the issue's "done when").
const MIN_FPS_RATIO = 0.85;
// Freezes allowed in phase B beyond phase A's count. Chromium counts a freeze when a frame
// interval exceeds max(3 × the average, average + 150 ms). Seven runs with both windows
// unshaped (PLAZA_E2E_SLOW_RATE=off; 2 shared cores, other browser tests running, load
// average 4-10): 0 freezes in every window but one (a single freeze, in a phase A), frame
// rates 18.9-20.2 fps, B at least 96 % of A. One freeze is room for a load spike. With the
// bug (11 runs), the worst flow of each run froze 2-10 times, at 10-94 % of its frame rate.
const FREEZE_TOLERANCE = 1;

/**
 * Per page: its own participant id (a page that rejoined has a new one and new counters)
 * and per remote participant the inbound video counters (`inboundVideo`).
 */
async function snapshot(people) {
  const entries = await Promise.all(
    Object.entries(people).map(async ([name, p]) => [
      name,
      {
        self: await p.page.evaluate(() => window.plaza.participantId),
        video: await inboundVideo(p.page),
        sent: await outboundVideo(p.page),
      },
    ]),
  );
  return Object.fromEntries(entries);
}

/** CPU time (s) a process used so far: utime + stime from /proc (ticks of 1/100 s). */
function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * One measurement window: counters at the start and at the end of `ms`, and for each
 * page's view of each other participant the deltas as rates (`flows[page][other]`, null
 * when there is nothing to compare). Fixed length on purpose: it is the measurement, not
 * a wait for an event. `rejoined`: pages whose participant id changed meanwhile.
 */
async function measure(people, ms, serverPid) {
  const cpu0 = cpuSeconds(serverPid);
  const start = await snapshot(people);
  await sleep(ms);
  const end = await snapshot(people);
  const machine = {
    serverCpu: (100 * (cpuSeconds(serverPid) - cpu0)) / (ms / 1000),
    load: os.loadavg()[0],
  };
  const sent = {};
  for (const name of Object.keys(people)) {
    const [a, b] = [start[name].sent, end[name].sent];
    if (!a || !b || start[name].self !== end[name].self) continue;
    const s = (b.timestamp - a.timestamp) / 1000;
    sent[name] = {
      fps: (b.framesSent - a.framesSent) / s,
      kbps: (8 * (b.bytesSent - a.bytesSent)) / s / 1000,
      targetKbps: b.targetBitrate / 1000,
      keyframes: b.keyFramesEncoded - a.keyFramesEncoded,
      plis: b.pliCount - a.pliCount,
      nacks: b.nackCount - a.nackCount,
      limitation: b.limitation,
    };
  }
  const rejoined = Object.keys(people).filter((name) => start[name].self !== end[name].self);
  const flows = {};
  for (const [name, p] of Object.entries(people)) {
    flows[name] = {};
    for (const [otherName, other] of Object.entries(people)) {
      if (other === p) continue;
      const a = start[name].video[other.id];
      const b = end[name].video[other.id];
      // No video from them at one end of the window, or counters of two different
      // connections (this page rejoined): nothing to compare.
      if (!a || !b || rejoined.includes(name)) {
        flows[name][otherName] = null;
        continue;
      }
      const s = (b.timestamp - a.timestamp) / 1000;
      flows[name][otherName] = {
        fps: (b.framesDecoded - a.framesDecoded) / s,
        freezes: b.freezeCount - a.freezeCount,
        frozenS: b.totalFreezesDuration - a.totalFreezesDuration,
        lost: b.packetsLost - a.packetsLost,
        kbps: (8 * (b.bytesReceived - a.bytesReceived)) / s / 1000,
        keyframes: b.keyFramesDecoded - a.keyFramesDecoded,
        plis: b.pliCount - a.pliCount,
        nacks: b.nackCount - a.nackCount,
        width: b.frameWidth,
      };
    }
  }
  return { flows, rejoined, sent, machine };
}

/** The pages' own connection log (`plaza: ... ICE ...`, path changes), timed, for the reader. */
function logPlazaConsole(page, name, t0) {
  page.on('console', (msg) => {
    if (msg.text().startsWith('plaza:')) console.log(`+${((Date.now() - t0) / 1000).toFixed(1)} s ${name}: ${msg.text()}`);
  });
  page.on('websocket', (ws) => ws.on('close', () => console.log(`+${((Date.now() - t0) / 1000).toFixed(1)} s ${name}: socket closed`)));
}

const fmtSent = (m) =>
  m
    ? `${m.fps.toFixed(1)} fps, ${Math.round(m.kbps)} kbit/s (target ${Math.round(m.targetKbps)}), ${m.keyframes} keyframes, ` +
      `${m.plis} PLIs and ${m.nacks} NACKs received, limited by ${m.limitation}`
    : 'nothing';

const fmt = (m) =>
  m
    ? `${m.fps.toFixed(1)} fps, ${m.freezes} freezes (${m.frozenS.toFixed(2)} s), ${m.lost} lost, ` +
      `${Math.round(m.kbps)} kbit/s, ${m.keyframes} keyframes, ${m.plis} PLIs, ${m.nacks} NACKs, ${m.width} px wide`
    : 'no video';

describe('a slow subscriber costs the others nothing', { concurrency: 1 }, () => {
  let server;
  const browsers = [];
  const people = {};

  before(async () => {
    // Before the bridge exists: proof that we run in a namespace of our own.
    assertLoopbackOnly();
    net.up();
    server = await net.startServer('slow-subscriber-server.log');
  });

  after(() => net.tearDown(server, browsers));

  test('one page on a 300 kbit/s downlink: the other two see no more freezes and ≥ 85 % of their frame rate', { timeout: 180_000 }, async (t) => {
    const pageServer = net.pageServer(server);
    const t0 = Date.now();
    for (const name of Object.keys(net.hosts)) {
      const browser = await launchBrowser({ executablePath: net.chromium(name, pageServer.base) });
      browsers.push(browser);
      people[name] = await joinRoom(browser, pageServer, {
        room: 'slow',
        name: name[0].toUpperCase() + name.slice(1),
        beforeGoto: async (context) => context.on('page', (page) => logPlazaConsole(page, name, t0)),
      });
    }
    const all = Object.values(people);
    // Everyone decodes everyone before phase A starts.
    for (const p of all) {
      for (const other of all.filter((o) => o !== p)) {
        await waitFor(async () => (await inboundVideo(p.page))[other.id]?.framesDecoded > 30, {
          timeout: 20_000,
          message: `${p.name} to decode ${other.name}'s video`,
        });
      }
    }

    // What the slow page is told and hears: each video_paused it gets (with whether its
    // tile then shows the note), and its audio packet counts around each phase.
    const slowPage = people[SLOW].page;
    await slowPage.evaluate(() => {
      window.testPaused = [];
      window.plaza.client.on('video-paused', (e) => {
        const tile = document.querySelector(`[data-testid="tile"][data-participant-id="${e.participantId}"]`);
        const note = tile?.querySelector('[data-testid="video-paused"]');
        window.testPaused.push({ ...e, noteShown: Boolean(note?.checkVisibility()) });
      });
    });
    const audioPackets = async () =>
      Object.values(await remoteMedia(slowPage)).reduce((sum, m) => sum + m.packetsReceived, 0);

    // The baseline: an unshaped call on this machine decodes the fake camera's 20 fps
    // without freezes (measured: 19.8-20.1 fps, 0 freezes, every flow of every run). If
    // phase A is poor, something else loads the machine (seen: load average 12-18 with
    // another Chromium test beside this one) and a comparison would mean nothing: it is
    // measured again, up to three times in all, and the test is skipped, saying why, if
    // it never is healthy.
    const poorFlows = (flows) => {
      const poor = [];
      for (const [name, views] of Object.entries(flows)) {
        for (const [other, m] of Object.entries(views)) {
          if (!m || m.fps < 15 || m.freezes > FREEZE_TOLERANCE) poor.push(`${name} ← ${other}: ${fmt(m)}`);
        }
      }
      return poor;
    };
    let phaseA;
    let audio0;
    let poor = [];
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      audio0 = await audioPackets();
      console.log(`+${((Date.now() - t0) / 1000).toFixed(1)} s phase A (unshaped), attempt ${attempt}`);
      phaseA = await measure(people, WINDOW_MS, server.proc.pid);
      poor = poorFlows(phaseA.flows);
      if (!poor.length) break;
      console.log(`phase A is poor (load average ${phaseA.machine.load.toFixed(1)}): ${poor.join('; ')}`);
    }
    if (poor.length) {
      t.skip(`the machine is too busy to judge: phase A was poor three times (${poor.join('; ')})`);
      return;
    }
    const { flows: a, rejoined: rejoinedA, sent: sentA, machine: machineA } = phaseA;
    const audio1 = await audioPackets();
    // Egress of the bridge-side veth = what reaches Cleo's host. Her uplink stays free.
    if (SHAPE) net.shapeDownlink(SLOW, SHAPE);
    console.log(`+${((Date.now() - t0) / 1000).toFixed(1)} s phase B (${SLOW}'s downlink ${SHAPE ? `at ${SHAPE.rate}` : 'unshaped'})`);
    const { flows: b, rejoined: rejoinedB, sent: sentB, machine: machineB } = await measure(people, WINDOW_MS, server.proc.pid);
    const audio2 = await audioPackets();
    const paused = await slowPage.evaluate(() => window.testPaused);
    console.log(`${SLOW} hears ${audio1 - audio0} audio packets in A, ${audio2 - audio1} in B; told video_paused: ` +
      paused.map((e) => `${e.paused ? 'paused' : 'resumed'}${e.paused && !e.noteShown ? ' (no note!)' : ''}`).join(', '));
    console.log(`${SLOW}'s qdisc after phase B: ${net.shaperStats(SLOW).replace(/\s+/g, ' ')}`);
    for (const [name, views] of Object.entries(a)) {
      for (const other of Object.keys(views)) {
        const shaped = SHAPE && name === SLOW ? ' (shaped)' : '';
        console.log(`${name} ← ${other}${shaped}:\n  A: ${fmt(a[name][other])}\n  B: ${fmt(b[name][other])}`);
      }
    }
    for (const name of Object.keys(people)) {
      console.log(`${name} sends:\n  A: ${fmtSent(sentA[name])}\n  B: ${fmtSent(sentB[name])}`);
    }
    const fmtMachine = (m) => `server CPU ${Math.round(m.serverCpu)} %, load average ${m.load.toFixed(1)}`;
    console.log(`machine: A ${fmtMachine(machineA)}; B ${fmtMachine(machineB)}`);
    if (rejoinedA.length || rejoinedB.length) console.log(`rejoined (new participant id): A ${rejoinedA}, B ${rejoinedB}`);

    // Cleo is starved (else the shaping missed her downlink and the test proves nothing):
    // her received video bitrate falls to at most half, and to what the shaper carries.
    const videoKbps = (m) => Object.values(m[SLOW]).reduce((sum, v) => sum + (v?.kbps ?? 0), 0);
    console.log(`${SLOW} receives ${Math.round(videoKbps(a))} kbit/s of video in A, ${Math.round(videoKbps(b))} kbit/s in B`);
    if (SHAPE) {
      assert.ok(videoKbps(b) <= 0.5 * videoKbps(a), `${SLOW}'s downlink is shaped: her video ${Math.round(videoKbps(b))} kbit/s in B vs ${Math.round(videoKbps(a))} in A`);
      const rateKbit = parseFloat(SHAPE.rate) * (/mbit/i.test(SHAPE.rate) ? 1000 : 1);
      assert.ok(videoKbps(b) <= rateKbit, `${SLOW} receives at most what ${SHAPE.rate}/s carries (${Math.round(videoKbps(b))} kbit/s)`);
    }

    // The others: from each other and from Cleo (the same participant all along), as
    // good as before.
    const problems = [];
    for (const name of Object.keys(people).filter((n) => n !== SLOW)) {
      for (const [other, before] of Object.entries(a[name])) {
        const now = b[name][other];
        const flow = `${name} ← ${other}`;
        if (!now) {
          const why = rejoinedB.includes(other) ? ` (${other} rejoined under a new participant id)` : '';
          problems.push(`${flow}: no video at the end of B${why}`);
          continue;
        }
        if (now.freezes > before.freezes + FREEZE_TOLERANCE) {
          problems.push(`${flow}: ${now.freezes} freezes in B (${now.frozenS.toFixed(2)} s) vs ${before.freezes} in A`);
        }
        if (now.fps < MIN_FPS_RATIO * before.fps) {
          problems.push(`${flow}: ${now.fps.toFixed(1)} fps in B vs ${before.fps.toFixed(1)} in A (${Math.round((100 * now.fps) / before.fps)} %)`);
        }
      }
    }
    assert.deepEqual(problems, [], 'the unshaped pages noticed the slow subscriber');

    if (SHAPE) {
      // The slow page itself: its video was paused (it is told, and its tile says so)
      // so that its audio has the link: it hears at least half as much as unshaped.
      const pausedEvents = paused.filter((e) => e.paused);
      assert.ok(pausedEvents.length > 0, `${SLOW} was never told her video is paused`);
      assert.ok(pausedEvents.every((e) => e.noteShown), `${SLOW}'s tile showed no "video paused" note`);
      assert.ok(audio2 - audio1 >= 0.5 * (audio1 - audio0),
        `${SLOW} heard ${audio2 - audio1} audio packets in B vs ${audio1 - audio0} in A`);
    }
    for (const p of all) assert.deepEqual(p.errors, [], `${p.name}'s page threw`);
  });
});
