// Token refresh in the browser: with auth.secret, the page is sent fresh room tokens
// before its own (10 s) one expires; when its socket is closed long after that, it
// rejoins with the latest token (the original has expired), and the address bar (what a
// reload or the "Rejoin" button uses) carries the latest one too.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PlazaServer, REPO, assertLoopbackOnly, joinRoom, launchBrowser, remoteMedia, waitFor } from './harness.mjs';

const SECRET = 'an-e2e-secret-of-some-length';
/** How long after `exp` the server still accepts a token (plaza_protocol::auth::LEEWAY). */
const LEEWAY_MS = 5000;
const ROOM = 'tokens';

/** A room token from `plaza token`, as an operator would mint one. */
function mint(identity, ttl) {
  const bin = process.env.PLAZA_BIN ?? path.join(REPO, 'target', 'debug', 'plaza');
  const args = ['token', '--room', ROOM, '--identity', identity, '--ttl', ttl];
  return execFileSync(bin, args, { env: { ...process.env, PLAZA_AUTH_SECRET: SECRET } }).toString().trim();
}

const claimsOf = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());

/** Every signalling frame a context's pages send and receive, parsed. */
function recordFrames(context) {
  const frames = { sent: [], received: [] };
  context.on('page', (page) =>
    page.on('websocket', (ws) => {
      const keep = (list) => (f) => {
        try {
          list.push(JSON.parse(f.payload));
        } catch { /* not JSON */ }
      };
      ws.on('framesent', keep(frames.sent));
      ws.on('framereceived', keep(frames.received));
    }),
  );
  return frames;
}

describe('Token refresh in Chromium', { concurrency: 1 }, () => {
  let server;
  let browser;

  before(async () => {
    assertLoopbackOnly();
    // No resume: a lost socket means a new join, which needs a valid token.
    server = await PlazaServer.start({ logName: 'server-token.log', extraArgs: ['--auth-secret', SECRET] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
    if (server) console.log(`server log: ${server.logPath}`);
  });

  test('a page outlives its 10 s token and rejoins with the refreshed one', { timeout: 90_000 }, async () => {
    const original = mint('ann@example.com', '10s');
    let frames;
    const ann = await joinRoom(browser, server, {
      room: ROOM,
      name: 'Ann',
      token: original,
      beforeGoto: (context) => {
        frames = recordFrames(context);
      },
    });
    const ben = await joinRoom(browser, server, { room: ROOM, name: 'Ben', token: mint('ben@example.com', '10m') });
    const decodedFrom = async (page, id) => (await remoteMedia(page))[id]?.framesDecoded ?? 0;
    await waitFor(async () => (await decodedFrom(ben.page, ann.id)) > 0, { timeout: 20_000, message: "Ben decodes Ann's video" });

    const tokens = () => frames.received.filter((m) => m.type === 'token');
    const expiredAt = claimsOf(original).exp * 1000 + LEEWAY_MS;
    await waitFor(() => tokens().length >= 3 && Date.now() > expiredAt + 1000, {
      timeout: 45_000,
      interval: 200,
      message: 'three refreshed tokens, and the original expired',
    });
    const latest = tokens().at(-1).token;
    assert.equal(claimsOf(latest).sub, 'ann@example.com');
    assert.equal(claimsOf(latest).exp - claimsOf(latest).iat, 10, 'same lifetime as the original');
    assert.equal(await ann.page.evaluate(() => window.plaza.client.token), latest);
    assert.equal(await ann.page.evaluate(() => new URL(location.href).searchParams.get('token')), latest);
    // Ann stayed in the call all along.
    assert.equal(await ann.page.evaluate(() => window.plaza.participantId), ann.id);
    const before = await decodedFrom(ben.page, ann.id);
    await waitFor(async () => (await decodedFrom(ben.page, ann.id)) > before + 10, { message: "Ann's video still decoding" });

    // The socket closes under the page; it joins again on its own, with the latest token.
    const joinsBefore = frames.sent.filter((m) => m.type === 'join').length;
    await ann.page.evaluate(() => window.plaza.client.ws.close(4000, 'test: socket lost'));
    const newId = await waitFor(
      async () => {
        const id = await ann.page.evaluate(() => window.plaza.participantId);
        return id && id !== ann.id ? id : null;
      },
      { timeout: 15_000, message: 'Ann rejoined (a new participant id)' },
    );
    const rejoin = frames.sent.filter((m) => m.type === 'join').slice(joinsBefore);
    assert.deepEqual(rejoin.map((m) => m.token), [latest], 'one join, with the refreshed token');
    assert.ok(!frames.received.some((m) => m.type === 'error'), JSON.stringify(frames.received.filter((m) => m.type === 'error')));
    await waitFor(async () => (await decodedFrom(ben.page, newId)) > 0, { timeout: 20_000, message: "Ben decodes Ann's video again" });
    assert.deepEqual(ann.errors, []);
  });
});
