// Plaza end to end: real server, real Chromium pages, fake camera and microphone.
// The tests run in order and share one room, the way a real call unfolds:
// three people meet, chat, mute, one leaves, a stranger uses another room, and one
// tab is closed without saying goodbye.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  HEARTBEAT_TIMEOUT_MS,
  OUT_DIR,
  PlazaServer,
  assertLoopbackOnly,
  chatMessages,
  closeParticipant,
  joinRoom,
  launchBrowser,
  remoteMedia,
  sleep,
  tileIds,
  waitFor,
} from './harness.mjs';

const ROOM = 'e2e';

describe('Plaza in Chromium', { concurrency: 1 }, () => {
  let server;
  let browser;
  /** ann, ben, cleo: the three people in room e2e. */
  const people = {};
  /** Everyone who ever joined, for the page-error check at the end. */
  const everyone = [];
  const join = async (opts) => {
    const p = await joinRoom(browser, server, opts);
    everyone.push(p);
    return p;
  };

  before(async () => {
    assertLoopbackOnly();
    server = await PlazaServer.start();
    browser = await launchBrowser();
    console.log(`server ${server.base}, Chromium ${browser.version()}`);
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
    if (server) console.log(`server log: ${server.logPath}`);
  });

  const others = (me) => Object.values(people).filter((p) => p !== me);

  test('1. three people in room e2e see and hear each other', { timeout: 90_000 }, async () => {
    for (const name of ['Ann', 'Ben', 'Cleo']) {
      people[name.toLowerCase()] = await join({ room: ROOM, name });
    }
    const all = Object.values(people);

    // Everyone sees the two others, by name.
    for (const p of all) {
      await waitFor(async () => (await tileIds(p.page)).length === 2, { message: `${p.name} to see 2 tiles` });
      const media = await remoteMedia(p.page);
      const names = others(p).map((o) => media[o.id]?.name).sort();
      assert.deepEqual(names, others(p).map((o) => o.name).sort(), `${p.name} sees the right names`);
    }

    // Frames are decoded and audio arrives, and keeps arriving, for every remote.
    const first = new Map();
    for (const p of all) {
      first.set(p, await waitFor(async () => {
        const m = await remoteMedia(p.page);
        return others(p).every((o) => m[o.id]?.framesDecoded > 0 && m[o.id]?.packetsReceived > 0) && m;
      }, { timeout: 20_000, message: `${p.name} to decode video and receive audio from both others` }));
    }
    for (const p of all) {
      const before = first.get(p);
      const now = await waitFor(async () => {
        const m = await remoteMedia(p.page);
        return others(p).every((o) => {
          const a = before[o.id];
          const b = m[o.id];
          return b.framesDecoded > a.framesDecoded + 5 && b.packetsReceived > a.packetsReceived &&
            b.bytesReceived > a.bytesReceived && b.videoWidth > 0;
        }) && m;
      }, { timeout: 10_000, message: `${p.name}: frames, audio packets and bytes increasing` });
      for (const o of others(p)) {
        const m = now[o.id];
        assert.ok(m.videoWidth > 0 && m.videoHeight > 0, `${p.name} plays ${o.name}'s video (${m.videoWidth}x${m.videoHeight})`);
        assert.equal(m.paused, false, `${p.name}: ${o.name}'s video is playing`);
        assert.equal(m.placeholder, false, `${p.name}: ${o.name}'s tile shows video, not the placeholder`);
      }
    }

    for (const p of all) {
      const r = await p.firstFrame;
      p.firstFrameMs = r.ms;
      const phases = r.phases ? ` [camera ready ${r.phases.media} ms, joined ${r.phases.joined} ms, first remote track ${r.phases.track} ms, subscriber connected ${r.phases.connected} ms]` : '';
      console.log(`join→first decoded remote frame, ${p.name}: ${r.ms != null ? `${Math.round(r.ms)} ms` : r.error}${phases}` +
        (p === people.ann ? ' (includes waiting for Ben to join)' : ''));
    }
    const health = await server.healthz();
    assert.equal(health.participants, 3);
    assert.equal(health.tracks, 6, 'three cameras and three microphones published');

    await screenshot(people.ann.page);
  });

  test('2. a chat message reaches everyone once, with the sender name', { timeout: 30_000 }, async () => {
    const { ann, ben, cleo } = people;
    const text = `Hello from Ann ${Date.now()}`;
    await ann.page.fill('[data-testid="chat-input"]', text);
    await ann.page.click('[data-testid="chat-send"]');

    for (const p of [ben, cleo]) {
      const msgs = await waitFor(async () => {
        const m = (await chatMessages(p.page)).filter((x) => x.text === text);
        return m.length > 0 && m;
      }, { message: `${p.name} to receive Ann's message` });
      assert.equal(msgs.length, 1, `${p.name} shows the message once`);
      assert.equal(msgs[0].sender, 'Ann');
      assert.equal(msgs[0].own, false);
      assert.match(msgs[0].time, /\d/);
    }

    // A reply from Ben travels the same relay; once Ann has it, any echo of her own
    // message would have arrived too.
    const reply = `Hi Ann, Ben here ${Date.now()}`;
    await ben.page.fill('[data-testid="chat-input"]', reply);
    await ben.page.press('[data-testid="chat-input"]', 'Enter');
    await waitFor(async () => (await chatMessages(ann.page)).some((x) => x.text === reply), { message: "Ann to get Ben's reply" });
    await waitFor(async () => (await chatMessages(cleo.page)).some((x) => x.text === reply), { message: "Cleo to get Ben's reply" });

    const own = (await chatMessages(ann.page)).filter((x) => x.text === text);
    assert.equal(own.length, 1, 'Ann sees her message exactly once');
    assert.equal(own[0].own, true, "Ann's own message is marked as hers");
    assert.equal((await chatMessages(ben.page)).filter((x) => x.text === reply).length, 1, 'Ben sees his reply once');
    assert.equal(await ann.page.inputValue('[data-testid="chat-input"]'), '', 'the input is cleared after sending');

    await screenshot(ann.page);
  });

  test("3. Ben's muted camera shows as muted for Ann and Cleo", { timeout: 30_000 }, async () => {
    const { ann, ben, cleo } = people;
    await ben.page.click('[data-testid="toggle-camera"]');
    assert.equal(await ben.page.getAttribute('[data-testid="toggle-camera"]', 'aria-pressed'), 'true');
    assert.equal(await ben.page.evaluate(() => window.plaza.client.localStream.getVideoTracks()[0].enabled), false,
      'the camera track is disabled locally');

    for (const p of [ann, cleo]) {
      const m = await waitFor(async () => {
        const media = (await remoteMedia(p.page))[ben.id];
        return media?.videoMuted && media.cameraIndicator && media.placeholder && media;
      }, { message: `${p.name} to see Ben's camera muted` });
      assert.equal(m.micIndicator, false, "Ben's microphone is still on");
      // Cleo, who did not mute, still shows video.
      const other = others(p).find((o) => o !== ben);
      assert.equal((await remoteMedia(p.page))[other.id].videoMuted, false);
    }

    // And back on.
    await ben.page.click('[data-testid="toggle-camera"]');
    for (const p of [ann, cleo]) {
      await waitFor(async () => {
        const media = (await remoteMedia(p.page))[ben.id];
        return media && !media.videoMuted && !media.cameraIndicator && !media.placeholder;
      }, { message: `${p.name} to see Ben's camera back` });
    }
  });

  test('4. Cleo leaves: her tile goes within 2 s and the server counts one fewer', { timeout: 30_000 }, async () => {
    const { ann, ben, cleo } = people;
    const before = (await server.healthz()).participants;
    const t0 = Date.now();
    await cleo.page.click('[data-testid="leave-button"]');

    for (const p of [ann, ben]) {
      await waitFor(async () => !(await tileIds(p.page)).includes(cleo.id), { timeout: 2000, interval: 25, message: `Cleo's tile to go from ${p.name}` });
    }
    console.log(`Cleo's tile gone from Ann and Ben ${Date.now() - t0} ms after clicking leave`);
    await waitFor(async () => (await server.healthz()).participants === before - 1, { timeout: 2000, message: '/healthz participants to drop by one' });
    await cleo.page.waitForSelector('[data-testid="ended"]:not([hidden])', { timeout: 2000 });
    assert.deepEqual(await tileIds(ann.page), [ben.id]);
    assert.deepEqual(await tileIds(ben.page), [ann.id]);
    await closeParticipant(cleo);
    delete people.cleo;
  });

  test('5. someone in room "other" sees nobody and nobody sees them', { timeout: 30_000 }, async () => {
    const { ann, ben } = people;
    const before = await server.healthz();
    const dev = await join({ room: 'other', name: 'Dev' });
    try {
      // Dev is fully in: connected, and the server holds Dev's two tracks.
      await dev.page.waitForSelector('[data-testid="connection-state"][data-state="connected"]', { timeout: 15_000 });
      await waitFor(async () => {
        const h = await server.healthz();
        return h.rooms === before.rooms + 1 && h.participants === before.participants + 1 && h.tracks === before.tracks + 2;
      }, { message: "Dev's room and tracks on the server" });
      // Absence needs a window of time to be meaningful: give any leak a second to show.
      await sleep(1000);
      assert.deepEqual(await tileIds(dev.page), [], 'Dev sees no one');
      assert.equal(await dev.page.locator('[data-testid="participant-list-item"]').count(), 1, "Dev's list has only Dev");
      assert.equal(await dev.page.evaluate(() => window.plaza.subscriberPc.getReceivers().filter((r) => r.track.readyState === 'live' && r.transport).length), 0,
        'no media is sent to Dev');
      for (const p of [ann, ben]) {
        assert.deepEqual(await tileIds(p.page), others(p).map((o) => o.id), `${p.name} does not see Dev`);
        assert.equal(await p.page.locator(`[data-participant-id="${dev.id}"]`).count(), 0);
      }
    } finally {
      await closeParticipant(dev);
    }
    await waitFor(async () => (await server.healthz()).participants === before.participants, { timeout: 5000, message: 'Dev gone from the server' });
  });

  test('6. a tab closed without leaving is cleaned up within the heartbeat timeout', { timeout: 45_000 }, async () => {
    const { ann, ben } = people;
    const eve = await join({ room: ROOM, name: 'Eve' });
    // Eve is really in the call: Ann and Ben decode her video.
    for (const p of [ann, ben]) {
      await waitFor(async () => (await remoteMedia(p.page))[eve.id]?.framesDecoded > 0, { timeout: 15_000, message: `${p.name} to see Eve's video` });
    }
    const before = (await server.healthz()).participants;
    const t0 = Date.now();
    await eve.page.close(); // no leave, no goodbye: the tab is simply gone
    const limit = HEARTBEAT_TIMEOUT_MS + 1000; // the timeout plus one heartbeat interval of slack
    await waitFor(async () => (await server.healthz()).participants === before - 1, { timeout: limit, interval: 50, message: 'the server to drop Eve' });
    console.log(`Eve dropped by the server ${Date.now() - t0} ms after her tab closed`);
    for (const p of [ann, ben]) {
      await waitFor(async () => !(await tileIds(p.page)).includes(eve.id), { timeout: limit, message: `Eve's tile to go from ${p.name}` });
    }
    console.log(`Eve's tile gone for Ann and Ben ${Date.now() - t0} ms after her tab closed`);
    await closeParticipant(eve);
  });

  test('7. a tab closed right after joining leaves no ghost tile behind', { timeout: 45_000 }, async () => {
    // Closing while the others' subscriber offers are still in flight: an offer applied
    // after participant_left must not bring the tile back.
    const { ann, ben } = people;
    const before = (await server.healthz()).participants;
    const fay = await join({ room: ROOM, name: 'Fay' });
    await waitFor(async () => (await tileIds(ann.page)).includes(fay.id), { message: 'Ann to see Fay' });
    await fay.page.close();
    await waitFor(async () => (await server.healthz()).participants === before, { timeout: HEARTBEAT_TIMEOUT_MS + 1000, message: 'the server to drop Fay' });
    for (const p of [ann, ben]) {
      await waitFor(async () => !(await tileIds(p.page)).includes(fay.id), { timeout: 3000, message: `Fay's tile to go from ${p.name}` });
    }
    // Give late renegotiations time to (wrongly) bring the tile back, then look again.
    await waitFor(async () => (await server.healthz()).tracks === 4, { message: 'only Ann and Ben publishing' });
    await sleep(1000);
    for (const p of [ann, ben]) {
      assert.deepEqual(await tileIds(p.page), others(p).map((o) => o.id), `${p.name} shows no ghost`);
    }
    await closeParticipant(fay);
  });

  test('8. with the camera permission refused, the user is told and can join without camera/microphone', { timeout: 45_000 }, async () => {
    const { ann, ben } = people;
    // The fake-UI flag grants every request, so the refusal is simulated the way Chrome
    // reports it: getUserMedia rejects with NotAllowedError.
    const gus = await join({
      room: ROOM,
      name: 'Gus',
      beforeGoto: (context) => context.addInitScript(() => {
        navigator.mediaDevices.getUserMedia = async () => {
          throw new DOMException('Permission denied', 'NotAllowedError');
        };
      }),
      expectRoom: false,
    });
    const error = gus.page.locator('[data-testid="media-error"]');
    await error.waitFor({ state: 'visible', timeout: 5000 });
    assert.match(await error.textContent(), /denied/i, 'the reason is shown plainly');
    await gus.page.click('[data-testid="join-without-media"]');
    await gus.enterRoom();

    // Gus sees and hears the others...
    await waitFor(async () => {
      const m = await remoteMedia(gus.page);
      return others(gus).every((o) => m[o.id]?.framesDecoded > 0 && m[o.id]?.packetsReceived > 0);
    }, { timeout: 15_000, message: 'Gus to receive Ann and Ben' });
    for (const id of ['toggle-mic', 'toggle-camera']) {
      assert.equal(await gus.page.isDisabled(`[data-testid="${id}"]`), true, `${id} is disabled without devices`);
    }
    // ...and they see Gus as a placeholder with both indicators on.
    for (const p of [ann, ben]) {
      await waitFor(async () => {
        const m = (await remoteMedia(p.page))[gus.id];
        return m && m.name === 'Gus' && m.placeholder && m.cameraIndicator && m.micIndicator;
      }, { message: `${p.name} to see Gus without camera and microphone` });
    }
    await gus.page.click('[data-testid="leave-button"]');
    for (const p of [ann, ben]) {
      await waitFor(async () => !(await tileIds(p.page)).includes(gus.id), { timeout: 2000, message: `Gus's tile to go from ${p.name}` });
    }
    await closeParticipant(gus);
  });

  test('9. an error from the server is shown to the user', { timeout: 15_000 }, async () => {
    const { ann } = people;
    // A direct message to someone who does not exist: the server answers with `error`.
    await ann.page.evaluate(() => window.plaza.client.sendChat('psst', 'Pnobody0000000'));
    const toast = ann.page.locator('[data-testid="toast"][data-kind="error"]');
    await toast.first().waitFor({ state: 'visible', timeout: 5000 });
    assert.equal(await toast.first().getAttribute('data-code'), 'bad_message');
  });

  test('10. the invite link can be copied and leads to the room', { timeout: 15_000 }, async () => {
    const { ann } = people;
    await ann.page.click('[data-testid="copy-link"]');
    await ann.page.locator('[data-testid="toast"]', { hasText: 'Invite link copied' }).waitFor({ timeout: 5000 });
    const url = new URL(ann.page.url()); // the address bar carries the room after joining
    assert.equal(url.searchParams.get('room'), ROOM);
  });

  test('11. when the server restarts, everyone sees "reconnecting…" and is back in the call', { timeout: 60_000 }, async () => {
    const { ann, ben } = people;
    const port = server.port;
    await server.stop();
    for (const p of [ann, ben]) {
      await p.page.locator('[data-testid="reconnecting-banner"]').waitFor({ state: 'visible', timeout: 5000 });
      assert.equal(await p.page.getAttribute('[data-testid="connection-state"]', 'data-state'), 'reconnecting');
    }
    server = await PlazaServer.start({ port, logName: 'server-restarted.log' });
    for (const p of [ann, ben]) {
      await p.page.locator('[data-testid="reconnecting-banner"]').waitFor({ state: 'hidden', timeout: 20_000 });
    }
    // New session, new ids: the tiles are rebuilt and video flows again.
    for (const p of [ann, ben]) p.id = await p.page.evaluate(() => window.plaza.participantId);
    for (const p of [ann, ben]) {
      await waitFor(async () => {
        const m = await remoteMedia(p.page);
        const ids = Object.keys(m);
        const other = others(p)[0];
        return ids.length === 1 && m[other.id]?.framesDecoded > 0 && m[other.id].name === other.name;
      }, { timeout: 20_000, message: `${p.name} to see the other again after the restart` });
    }
    assert.equal((await server.healthz()).participants, 2);
  });

  test('12. no page threw an uncaught error', () => {
    for (const p of everyone) assert.deepEqual(p.errors, [], `${p.name}'s page errors`);
  });
});

async function screenshot(page) {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const file = path.join(OUT_DIR, 'room.png');
  await page.screenshot({ path: file });
  console.log(`screenshot: ${file}`);
}
