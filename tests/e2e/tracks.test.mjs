// Plaza end to end, tracks coming and going: the server recycles subscriber m-lines
// (docs/decisions.md §11) and the web client reuses its own publisher transceiver for a
// second video (PlazaClient.setExtraVideo). Real server, real Chromium pages.
//
// 1. A resident stays while 40 others join, publish and leave in waves of 3–4: after
//    every wave it decodes each current member, each tile's track is the member's own
//    (per the m-line's a=msid), and its subscriber SDP stays within 2 m-sections per
//    concurrent publisher + 2. No ghost tile at the end.
// 2. A second video toggled on and off 20 times while another page watches: never
//    refused, no SDP growth on either side after the first toggle, and the watcher
//    decodes it each time it is on and loses it each time it is off.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  PlazaServer,
  assertLoopbackOnly,
  closeParticipant,
  joinRoom,
  launchBrowser,
  remoteMedia,
  sleep,
  tileIds,
  waitFor,
} from './harness.mjs';

/** Wave sizes for the churn test: 40 visitors, at most 4 at once. */
const WAVES = [4, 3, 4, 4, 3, 4, 4, 3, 4, 4, 3];
const TOGGLES = 20;

describe('tracks coming and going', { concurrency: 1 }, () => {
  let server;
  let browser;
  const everyone = [];
  const join = async (opts) => {
    const p = await joinRoom(browser, server, opts);
    everyone.push(p);
    await watchPage(p.page);
    return p;
  };
  /** Closes every page still open, so a failed test does not load the next one. */
  const closeAll = () => Promise.all(everyone.map(closeParticipant));

  before(async () => {
    assertLoopbackOnly();
    // A 5 s heartbeat timeout, not the harness's 2 s: up to 6 pages share two cores here,
    // and a page starved for 2 s would be dropped and rejoin as someone else.
    server = await PlazaServer.start({ logName: 'server-tracks.log', heartbeatTimeout: '5s' });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
    if (server) console.log(`server log: ${server.logPath}`);
  });

  test('a resident outlives 40 visitors in waves: decodes every member, bounded SDP, no ghosts', { timeout: 300_000 }, async () => {
    const t0 = Date.now();
    const room = 'churn';
    try {
      const resident = await join({ room, name: 'Resident', beforeGoto: smallCamera });
      const maxConcurrent = Math.max(...WAVES);
      const bound = 2 * maxConcurrent + 2;
      let visitors = 0;

      for (const [w, size] of WAVES.entries()) {
        const tw = Date.now();
        const wave = await Promise.all(
          Array.from({ length: size }, (_, i) => join({ room, name: `V${w + 1}.${i + 1}`, beforeGoto: smallCamera })),
        );
        visitors += size;
        const tJoined = Date.now();
        // The resident shows exactly this wave, and decodes every member's video, rising.
        // (Ids as the pages know them now: a page that lost its session rejoins as new.)
        const ids = await waitFor(async () => {
          const current = (await Promise.all(wave.map((p) => p.page.evaluate(() => window.plaza.participantId)))).sort();
          return JSON.stringify((await tileIds(resident.page)).sort()) === JSON.stringify(current) && current;
        }, { timeout: 20_000, interval: 200, message: `resident to show wave ${w + 1}'s ${size} tiles` });
        const first = await waitFor(async () => {
          const m = await remoteMedia(resident.page);
          return ids.every((id) => m[id]?.framesDecoded > 0 && m[id].videoWidth > 0) && m;
        }, { timeout: 30_000, interval: 200, message: `resident to decode all of wave ${w + 1}` }).catch(async (err) => {
          // Which tiles did not decode, and what the page knows of them.
          const m = await remoteMedia(resident.page).catch(() => ({}));
          const view = ids.map((id) => `${id}: ${JSON.stringify(m[id] ?? 'no tile')}`).join('; ');
          throw new Error(`${err.message}; the resident's view: ${view}`);
        });
        await waitFor(async () => {
          const m = await remoteMedia(resident.page);
          return ids.every((id) => m[id].framesDecoded > first[id].framesDecoded + 3);
        }, { timeout: 15_000, interval: 200, message: `resident's frames from wave ${w + 1} to keep rising` });

        // Each tile plays the track whose m-line names that member, and only tracks the
        // server says are published.
        const tDecoded = Date.now();
        const owners = await tileOwners(resident.page);
        for (const id of ids) {
          assert.equal(owners[id].msidStream, id, `tile ${id} plays its own m-line (wave ${w + 1})`);
          assert.equal(owners[id].direction, 'sendonly', `tile ${id}'s m-line is sending`);
          assert.deepEqual(owners[id].unpublished, [], `tile ${id} has no unpublished track`);
        }

        const sdp = await sdpSizes(resident.page);
        console.log(`wave ${w + 1}: ${size} visitors (${visitors} so far), resident's subscriber SDP: ` +
          `${sdp.subscriber} m-sections now, ${sdp.subscriberMax} at most (bound ${bound}); joined in ${tJoined - tw} ms, ` +
          `all decoded ${tDecoded - tJoined} ms later`);
        assert.ok(sdp.subscriberMax <= bound, `resident's subscriber SDP ${sdp.subscriberMax} m-sections > ${bound}`);
        for (const p of wave) assert.deepEqual(await pageErrors(p.page), [], `${p.name} got no error`);

        // They leave: they click "Leave"; in every third wave one just closes the tab (the
        // server notices within the heartbeat timeout).
        const closer = w % 3 === 2 ? wave.at(-1) : null;
        await Promise.all(wave.filter((p) => p !== closer).map((p) => p.page.click('[data-testid="leave-button"]')));
        await closer?.page.close();
        await waitFor(async () => (await tileIds(resident.page)).length === 0,
          { timeout: 10_000, message: `wave ${w + 1} to leave the resident's grid` });
        await waitFor(async () => (await server.healthz()).participants === 1,
          { timeout: 10_000, message: `the server to drop wave ${w + 1}` });
        await Promise.all(wave.map(closeParticipant));
        console.log(`wave ${w + 1} gone in ${Date.now() - tDecoded} ms`);
      }
      assert.ok(visitors >= 40, `${visitors} visitors`);

      // Everyone left: give late offers a moment to (wrongly) resurrect anyone.
      await waitFor(async () => (await server.healthz()).tracks === 2, { message: "only the resident's tracks" });
      await sleep(1000);
      assert.deepEqual(await tileIds(resident.page), [], 'no ghost tile');
      assert.equal(await resident.page.evaluate(() => window.plaza.client.announcedTracks.size), 0, 'no remote track announced');
      const end = await sdpSizes(resident.page);
      assert.ok(end.subscriberMax <= bound, `resident's subscriber SDP ${end.subscriberMax} m-sections > ${bound}`);
      assert.equal(end.subscriberSending, 0, 'no m-line left sending to the resident');
      assert.deepEqual(await pageErrors(resident.page), [], 'the resident got no error');
      console.log(`churn: ${visitors} visitors in ${WAVES.length} waves, resident's subscriber SDP at most ` +
        `${end.subscriberMax} m-sections, ${Date.now() - t0} ms`);
    } finally {
      await closeAll();
    }
  });

  test(`a second video toggled ${TOGGLES} times reuses its transceiver; the watcher sees it come and go`, { timeout: 180_000 }, async () => {
    const t0 = Date.now();
    const room = 'extra';
    try {
      const pia = await join({ room, name: 'Pia', beforeGoto: smallCamera });
      const wes = await join({ room, name: 'Wes', beforeGoto: smallCamera });
      await waitFor(async () => (await remoteMedia(wes.page))[pia.id]?.framesDecoded > 0,
        { timeout: 30_000, interval: 200, message: "Wes to decode Pia's camera" });
      const camera = await wes.page.evaluate((pid) => [...window.plaza.client.announcedTracks]
        .find(([, t]) => t.participantId === pid && t.kind === 'video')[0], pia.id);
      await pia.page.evaluate(startCanvas);

      let piaSections = null;
      let piaTransceivers = null;
      let wesSections = null;
      const seen = new Set([camera]);
      for (let i = 1; i <= TOGGLES; i++) {
        // On: a fresh canvas track on the same transceiver.
        await pia.page.evaluate(() => window.plaza.client.setExtraVideo(window.extraCanvas.newTrack()));
        const extra = await waitFor(() => wes.page.evaluate((pid) => window.trackEvents
          .filter((e) => e.type === 'track-added' && e.participantId === pid && e.kind === 'video')
          .map((e) => e.trackId).at(-1), pia.id).then((id) => !seen.has(id) && id),
        { timeout: 10_000, message: `Wes to get Pia's extra video, toggle ${i}` });
        seen.add(extra);
        await waitFor(async () => (await server.healthz()).tracks === 5, { message: `the server to publish the extra video, toggle ${i}` });
        const f0 = await waitFor(() => wes.page.evaluate(framesOf, extra), { timeout: 10_000, message: `Wes to decode the extra video, toggle ${i}` });
        await waitFor(async () => (await wes.page.evaluate(framesOf, extra)) > f0 + 2, { timeout: 10_000, message: `Wes's extra-video frames to rise, toggle ${i}` });
        assert.equal(await wes.page.evaluate(tilePlays, { pid: pia.id, trackId: extra }), true, `Wes's tile for Pia shows the extra video, toggle ${i}`);

        const pub = await settledPublisher(pia.page, 'sendonly');
        const sub = await sdpSizes(wes.page);
        if (i === 1) {
          piaSections = pub.sections;
          piaTransceivers = pub.transceivers;
          wesSections = sub.subscriber;
          console.log(`after the first toggle: Pia's publisher SDP ${piaSections} m-sections, Wes's subscriber SDP ${wesSections}`);
        }
        assert.equal(pub.sections, piaSections, `Pia's publisher m-sections, on ${i}`);
        assert.equal(pub.transceivers, piaTransceivers, `Pia's transceivers, on ${i}`);
        assert.ok(sub.subscriberMax <= wesSections, `Wes's subscriber m-sections ${sub.subscriberMax} > ${wesSections}, on ${i}`);

        // Off: the same transceiver goes inactive.
        await pia.page.evaluate(() => window.plaza.client.setExtraVideo(null).then(() => window.extraCanvas.stopOld()));
        await waitFor(() => wes.page.evaluate((id) => window.trackEvents.some((e) => e.type === 'track-removed' && e.trackId === id), extra),
          { timeout: 10_000, message: `Wes to lose the extra video, toggle ${i}` });
        await waitFor(() => wes.page.evaluate(tilePlays, { pid: pia.id, trackId: camera }),
          { timeout: 5000, message: `Wes's tile for Pia back on the camera, toggle ${i}` });
        // The removal is negotiated (the m-line is free again) before the next toggle.
        await waitFor(() => wes.page.evaluate(removalNegotiated, extra), { timeout: 10_000, message: `Wes's m-line of the extra to go inactive, toggle ${i}` });
        await waitFor(async () => (await server.healthz()).tracks === 4, { message: `the server to unpublish the extra video, toggle ${i}` });
        const pubOff = await settledPublisher(pia.page, 'inactive');
        assert.equal(pubOff.sections, piaSections, `Pia's publisher m-sections, off ${i}`);
        assert.ok((await sdpSizes(wes.page)).subscriberMax <= wesSections, `Wes's subscriber m-sections, off ${i}`);
      }

      // The camera still plays for Wes, frames rising.
      const before = (await remoteMedia(wes.page))[pia.id].framesDecoded;
      await waitFor(async () => (await remoteMedia(wes.page))[pia.id].framesDecoded > before + 3,
        { timeout: 10_000, message: "Wes to keep decoding Pia's camera" });
      for (const p of [pia, wes]) assert.deepEqual(await pageErrors(p.page), [], `${p.name} got no error (e.g. too_many_tracks)`);
      console.log(`${TOGGLES} toggles of the extra video in ${Date.now() - t0} ms; ${seen.size - 1} extra tracks seen by Wes`);
    } finally {
      await closeAll();
    }
  });

  test('no page threw an uncaught error', () => {
    for (const p of everyone) assert.deepEqual(p.errors, [], `${p.name}'s page errors`);
  });
});

// ====================================================================== page helpers

/**
 * A smaller fake camera (320x240 at 15 fps) for the crowd: a 2-core machine decodes 4
 * remote videos on each of 5 pages at once here. The app still asks for its usual media.
 */
function smallCamera(context) {
  return context.addInitScript(() => {
    const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (c) =>
      gum(c?.video ? { ...c, video: { width: 320, height: 240, frameRate: 15 } } : c);
  });
}

/**
 * Records, in the page, what its client reports: track events, `error` events, and the
 * largest subscriber SDP (m-sections) ever applied.
 */
async function watchPage(page) {
  await waitFor(() => page.evaluate(() => !!window.plaza.subscriberPc), { message: 'the subscriber connection' });
  await page.evaluate(() => {
    const client = window.plaza.client;
    window.trackEvents = [];
    window.clientErrors = [];
    window.maxSubscriberSections = 0;
    for (const type of ['track-added', 'track-removed']) {
      client.on(type, ({ participantId, trackId, kind }) => {
        const mid = client.announcedTracks.get(trackId)?.transceiver.mid ?? null;
        window.trackEvents.push({ type, participantId, trackId, kind, mid });
      });
    }
    client.on('error', ({ code, message }) => window.clientErrors.push(`${code}: ${message}`));
    const count = (sdp) => (sdp?.match(/^m=/gm) ?? []).length;
    const watched = new WeakSet();
    const sample = () => {
      const pc = client.subscriberPc;
      if (pc && !watched.has(pc)) {
        // Every applied offer passes through have-remote-offer; the timer is a backstop
        // (and finds the new connection after a rejoin).
        watched.add(pc);
        pc.addEventListener('signalingstatechange', sample);
      }
      window.maxSubscriberSections = Math.max(window.maxSubscriberSections, count(pc?.remoteDescription?.sdp));
    };
    setInterval(sample, 50);
    sample();
  });
}

function pageErrors(page) {
  return page.evaluate(() => window.clientErrors);
}

/** m-sections of the subscriber's current offer (and the most ever), and how many send. */
function sdpSizes(page) {
  return page.evaluate(() => {
    const sdp = window.plaza.subscriberPc.remoteDescription?.sdp ?? '';
    const sections = sdp.split(/\r\n(?=m=)/).slice(1);
    return {
      subscriber: sections.length,
      subscriberMax: window.maxSubscriberSections,
      subscriberSending: sections.filter((s) => /\r\na=(sendonly|sendrecv)/.test(s)).length,
    };
  });
}

/** Per tile: the stream id (a=msid) and direction of the m-line its video plays. */
function tileOwners(page) {
  return page.evaluate(() => {
    const client = window.plaza.client;
    const pc = client.subscriberPc;
    const sections = pc.remoteDescription.sdp.split(/\r\n(?=m=)/).slice(1);
    const out = {};
    for (const tile of document.querySelectorAll('[data-testid="grid"] [data-testid="tile"]')) {
      const id = tile.dataset.participantId;
      const track = tile.querySelector('video').srcObject?.getVideoTracks()[0];
      const t = pc.getTransceivers().find((x) => x.receiver.track === track);
      const section = sections.find((s) => s.includes(`\r\na=mid:${t?.mid}\r\n`)) ?? '';
      const published = [...client.tracks.keys()];
      out[id] = {
        msidStream: section.match(/\r\na=msid:(\S+) /)?.[1] ?? null,
        direction: section.match(/\r\na=(sendonly|sendrecv|recvonly|inactive)/)?.[1] ?? null,
        unpublished: [...client.announcedTracks].filter(([tid, a]) => a.participantId === id && !published.includes(tid)).map(([tid]) => tid),
      };
    }
    return out;
  });
}

/** Frames decoded so far on the receiver of the client's track `trackId` (0 if none). */
async function framesOf(trackId) {
  const info = window.plaza.client.announcedTracks.get(trackId);
  if (!info) return 0;
  let frames = 0;
  for (const s of (await info.transceiver.receiver.getStats()).values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded ?? 0;
  }
  return frames;
}

/** Whether the participant's tile plays the client's track `trackId`. */
function tilePlays({ pid, trackId }) {
  const info = window.plaza.client.announcedTracks.get(trackId);
  const video = document.querySelector(`[data-testid="tile"][data-participant-id="${pid}"] video`);
  return !!info && video?.srcObject?.getVideoTracks()[0] === info.track;
}

/** The m-line that carried `trackId` has negotiated "inactive", and no offer is pending. */
function removalNegotiated(trackId) {
  const pc = window.plaza.subscriberPc;
  const mid = window.trackEvents.find((e) => e.type === 'track-added' && e.trackId === trackId)?.mid;
  const t = pc.getTransceivers().find((x) => x.mid === mid);
  return pc.signalingState === 'stable' && t?.currentDirection === 'inactive';
}

/** Pia's publisher once its offer/answer settled with the extra video `direction`. */
async function settledPublisher(page, direction) {
  return waitFor(() => page.evaluate((dir) => {
    const client = window.plaza.client;
    const pc = client.publisherPc;
    const t = client.extraTransceiver;
    if (pc.signalingState !== 'stable' || t.currentDirection !== dir) return false;
    return { sections: (pc.localDescription.sdp.match(/^m=/gm) ?? []).length, transceivers: pc.getTransceivers().length };
  }, direction), { timeout: 10_000, message: `Pia's publisher to settle ${direction}` });
}

/** In Pia's page: a canvas that keeps drawing, handing out a fresh video track per "on". */
function startCanvas() {
  const canvas = document.createElement('canvas');
  canvas.width = 320;
  canvas.height = 180;
  const ctx = canvas.getContext('2d');
  let n = 0;
  setInterval(() => {
    n += 1;
    ctx.fillStyle = `hsl(${(n * 7) % 360} 60% 45%)`;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#fff';
    ctx.font = '40px sans-serif';
    ctx.fillText(`share ${n}`, 20, 100);
  }, 66);
  let current = null;
  let old = null;
  window.extraCanvas = {
    newTrack() {
      current = canvas.captureStream(15).getVideoTracks()[0];
      return current;
    },
    stopOld() {
      old = current;
      current = null;
      old?.stop();
    },
  };
}
