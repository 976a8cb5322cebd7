// Plaza signalling client: the protocol of docs/protocol.md, with no DOM.
//
// One PlazaClient is one participant in one room. It owns the WebSocket and the two
// RTCPeerConnections the protocol asks for:
//   - publisher:  the browser offers; carries our camera/microphone and the "chat"
//                 data channel;
//   - subscriber: the server offers; carries everybody else's tracks.
// Because each connection has exactly one offering side, no glare handling is needed.
//
// Usage:
//   const client = new PlazaClient({ room: 'demo', name: 'Ann', localStream });
//   client.on('track-added', ({ participantId, track }) => ...);
//   await client.join();
//   client.setExtraVideo(screenTrack);   // a second video track; null to stop it
//
// Events (listener receives one object):
//   joined               { participantId, room, participants, rejoin }
//   participant-joined   { participant }
//   participant-updated  { participant }
//   participant-left     { participantId }
//   track-added          { participantId, trackId, kind, track, stream }
//   track-removed        { participantId, trackId, kind }
//   chat                 { from, name, text, ts, to }   (never our own messages)
//   chat-state           { open }
//   error                { code, message, fatal }
//   connection-state     { state, publisher, subscriber, socket }
//   reconnecting         { attempt, delayMs }
//   resumed              { participantId }       (same participant on a new socket)
//   token                { token, expiresAt }    (a fresh room token; `client.token` has it)
//   ice-restart          { reason }
//   closed               { reason, code }

/** Error codes after which the server closes the socket and a retry cannot help. */
const FATAL_CODES = new Set([
  'room_full',
  'too_many_rooms',
  'unauthorized',
  'kicked',
  'room_closed',
  'invalid_room',
  'invalid_name',
  'already_joined',
]);

const DEFAULTS = {
  url: null, // ws(s)://host/ws; derived from location when omitted
  pingIntervalMs: 750,
  silenceCheckMs: 250,
  // No frame at all (not even our pong) for this long means the path is dead even if
  // the browser has not noticed yet (a laptop slept, its address changed): move to a
  // new socket (resume) and restart ICE. Browsers notice a changed address late or
  // never (no `online` event, ICE "disconnected" after 5+ s), so this is the fast signal.
  silenceTimeoutMs: 2000,
  // ICE "disconnected" for this long counts as a dead path: move the socket and
  // restart ICE (Chrome says "disconnected" a few seconds after the last reply).
  iceDisconnectedMs: 1000,
  // At most one path recovery (new socket + ICE restart) this often.
  pathRecoveryMinIntervalMs: 3000,
  reconnect: { baseDelayMs: 500, maxDelayMs: 10000 },
  joinTimeoutMs: 10000,
};

/** Tiny event emitter: keeps the client free of DOM types (EventTarget needs Event). */
class Emitter {
  #listeners = new Map();

  on(type, fn) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  emit(type, detail = {}) {
    for (const fn of [...(this.#listeners.get(type) ?? [])]) {
      try {
        fn(detail);
      } catch (err) {
        // A broken listener must not break the protocol state machine.
        console.error(`plaza: listener for "${type}" threw`, err);
      }
    }
  }
}

export class PlazaError extends Error {
  constructor(code, message, fatal = false) {
    super(message);
    this.name = 'PlazaError';
    this.code = code;
    this.fatal = fatal;
  }
}

export function defaultSocketUrl(loc = globalThis.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

/**
 * One peer connection plus the bookkeeping trickle ICE needs: remote candidates wait
 * until a remote description is applied, and our own candidates wait until the
 * description they belong to has been sent.
 */
class Peer {
  constructor(target, config, send) {
    this.target = target;
    this.pc = new RTCPeerConnection(config);
    this.send = send;
    this.remoteCandidates = [];
    this.localCandidates = [];
    this.remoteReady = false;
    this.localSent = false;

    this.pc.addEventListener('icecandidate', (e) => this.#onLocalCandidate(e.candidate));
  }

  #onLocalCandidate(candidate) {
    // Chrome may signal the end of a generation with an empty candidate string.
    const json = candidate && candidate.candidate ? candidate.toJSON() : null;
    if (json && json.usernameFragment == null) delete json.usernameFragment;
    if (this.localSent) this.#sendCandidate(json);
    else this.localCandidates.push(json);
  }

  #sendCandidate(candidate) {
    this.send({ type: 'candidate', target: this.target, candidate });
  }

  /** Call after our offer/answer went out: the server must see it before candidates. */
  markLocalSent() {
    this.localSent = true;
    for (const c of this.localCandidates.splice(0)) this.#sendCandidate(c);
  }

  async addRemoteCandidate(candidate) {
    if (candidate && candidate.sdpMid === '') {
      // webrtc-rs sends an empty mid; without it the browser falls back to sdpMLineIndex.
      const { sdpMid, ...rest } = candidate;
      candidate = rest;
    }
    if (!this.remoteReady) {
      this.remoteCandidates.push(candidate);
      return;
    }
    await this.#apply(candidate);
  }

  /** Call after setRemoteDescription resolved. */
  async markRemoteReady() {
    this.remoteReady = true;
    for (const c of this.remoteCandidates.splice(0)) await this.#apply(c);
  }

  async #apply(candidate) {
    try {
      // null means end of candidates; an argument-less call says exactly that.
      if (candidate) await this.pc.addIceCandidate(candidate);
      else await this.pc.addIceCandidate();
    } catch (err) {
      // One bad candidate is not fatal: others may still connect.
      console.warn(`plaza: ${this.target} candidate refused`, err);
    }
  }

  close() {
    try {
      this.pc.close();
    } catch {
      /* already closed */
    }
  }
}

export class PlazaClient extends Emitter {
  /**
   * @param {object} opts
   * @param {string} opts.room
   * @param {string} opts.name
   * @param {string} [opts.token]
   * @param {MediaStream|null} [opts.localStream] tracks to publish; null to only receive
   * @param {string} [opts.url] WebSocket URL, default `ws(s)://<this host>/ws`
   */
  constructor(opts) {
    super();
    this.opts = { ...DEFAULTS, ...opts, reconnect: { ...DEFAULTS.reconnect, ...opts.reconnect } };
    this.room = opts.room;
    this.name = opts.name;
    /**
     * The room token a `join` sends: the one given, then the latest the server sent to
     * replace it before it expired, so a rejoin late in a long call still gets in.
     */
    this.token = opts.token ?? null;
    this.localStream = opts.localStream ?? null;

    this.participantId = null;
    this.limits = { max_chat_bytes: 16384, max_frame_bytes: 65536 };
    /** Other members, id → ParticipantInfo. */
    this.participants = new Map();
    /** Published tracks by track id → TrackInfo (from track_published). */
    this.tracks = new Map();
    /** Remote MediaStreamTracks we told listeners about, track id → {participantId, kind}. */
    this.announcedTracks = new Map();
    /** What we told the room about our own media; replayed after a rejoin. */
    this.muted = { audio: false, video: false };
    /** The second video track (setExtraVideo), its transceiver, and the chain of changes. */
    this.extraVideo = null;
    this.extraTransceiver = null;
    this.extraVideoOps = Promise.resolve();

    this.ws = null;
    this.publisher = null;
    this.subscriber = null;
    this.chatChannel = null;
    this.chatQueue = [];
    this.subscriberQueue = Promise.resolve();
    this.publisherBusy = false;
    this.publisherAgain = false;

    this.state = 'idle';
    this.leaving = false;
    this.closedForGood = false;
    this.everJoined = false;
    this.attempt = 0;
    this.timers = { ping: null, reconnect: null, joinTimeout: null };
    this.lastFrameAt = 0;
    this.pendingJoin = null;

    // Session resume (docs/protocol.md, "Resuming"): both sides number the messages
    // sent since `joined`, so a new socket sends again what the old one lost.
    this.resumeToken = null;
    /** Server messages received since `joined` (`resumed` not counted). */
    this.received = 0;
    /** Our messages since `joined`: [number, json], the recent ones. */
    this.sentLog = [];
    this.sentCount = 0;
    /** This socket has said `joined` or `resumed`: its frames are numbered. */
    this.socketReady = false;
    /** Messages waiting for a socket that is ready (while resuming). */
    this.outbox = [];
    this.lastPathRecovery = 0;
    this.iceTimers = new Map();
    this.onOnline = () => this.#onPathChange('online');
    globalThis.addEventListener?.('online', this.onOnline);

    for (const kind of ['audio', 'video']) {
      this.muted[kind] = !this.#localTracks(kind).some((t) => t.enabled);
    }
  }

  // ---------------------------------------------------------------- public API

  /** Connects and joins; resolves with the `joined` message, rejects with PlazaError. */
  join() {
    if (this.closedForGood) return Promise.reject(new PlazaError('closed', 'client was closed'));
    return new Promise((resolve, reject) => {
      this.pendingJoin = { resolve, reject };
      this.#connect();
    });
  }

  /** Leaves the room for good: no reconnect after this. */
  leave() {
    this.leaving = true;
    this.#send({ type: 'leave' });
    this.#shutdown('left');
  }

  /** Mutes or unmutes our own microphone ("audio") or camera ("video") and tells the room. */
  setMuted(kind, muted) {
    // Disabling (not stopping) keeps the sender and its negotiation intact, so unmuting is
    // instant; a disabled track sends silence / black frames.
    for (const track of this.#localTracks(kind)) track.enabled = !muted;
    this.muted[kind] = muted;
    if (this.participantId) this.#send({ type: 'mute', kind, muted });
    this.#emitConnectionState();
  }

  isMuted(kind) {
    return this.muted[kind];
  }

  hasLocal(kind) {
    return this.#localTracks(kind).length > 0;
  }

  /**
   * Publishes a second video track besides the camera (what a screen share will use: on
   * the wire it is a track like any other), or stops publishing it with `null`. The
   * others get it as one more `track-added` of kind "video" from us, and `track-removed`
   * when it stops. Resolves once the change is applied locally; the publisher
   * renegotiation follows by itself (`negotiationneeded`). Survives a rejoin.
   *
   * The first call adds a sendonly transceiver; every later one reuses it: off is
   * `replaceTrack(null)` and direction "inactive", on is `replaceTrack(track)` and
   * "sendonly". Not addTrack/removeTrack: removeTrack leaves the transceiver and its
   * m-section in place (direction "recvonly"), and addTrack reuses only a transceiver
   * whose sender has never sent, so in Chromium (156, measured against this server)
   * every off/on added one more video m-section (~4.8 KB of SDP) for good: with camera
   * and microphone, the 13th toggle's offer passed the 64 KiB WebSocket frame limit (the
   * server closed with 1009 and we rejoined); `too_many_tracks` (more than 16 sections)
   * would have come next.
   */
  setExtraVideo(track) {
    if (track && track.kind !== 'video') throw new TypeError('setExtraVideo needs a video track');
    this.extraVideo = track ?? null;
    // One change at a time, in call order; each applies the latest wish.
    const op = this.extraVideoOps.then(() => this.#applyExtraVideo());
    this.extraVideoOps = op.catch(() => {});
    return op;
  }

  /**
   * Sends a chat message to the room, or to one member when `to` is set. The server does
   * not echo it back, so the returned message is what a UI should show for ourselves.
   */
  sendChat(text, to = undefined) {
    const body = to ? { text, to } : { text };
    const payload = JSON.stringify(body);
    if (new TextEncoder().encode(payload).length > this.limits.max_chat_bytes) {
      throw new PlazaError('message_too_large', `A chat message may be at most ${this.limits.max_chat_bytes} bytes.`);
    }
    if (this.chatChannel?.readyState === 'open') this.chatChannel.send(payload);
    else this.chatQueue.push(payload); // sent as soon as the channel opens (or reopens)
    return { from: this.participantId, name: this.name, text, ts: Date.now(), to, own: true };
  }

  get chatOpen() {
    return this.chatChannel?.readyState === 'open';
  }

  /** The RTCPeerConnection that receives the others' media (for stats and debugging). */
  get subscriberPc() {
    return this.subscriber?.pc ?? null;
  }

  get publisherPc() {
    return this.publisher?.pc ?? null;
  }

  /** Subscriber-side stats as a plain array of stats objects. */
  async getStats() {
    const pc = this.subscriberPc;
    if (!pc) return [];
    const report = await pc.getStats();
    return [...report.values()];
  }

  // ---------------------------------------------------------------- socket

  #connect() {
    // With a live participant on the server (its peer connections are still ours),
    // take it over instead of joining again.
    const resuming = Boolean(this.participantId && this.resumeToken && this.publisher);
    this.socketReady = false;
    this.#setState(this.everJoined ? 'reconnecting' : 'connecting');
    const url = this.opts.url ?? defaultSocketUrl();
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      // Only a malformed URL throws here; retrying cannot fix that.
      this.#failJoin(new PlazaError('connection_failed', `Cannot open ${url}: ${err.message}`));
      this.#shutdown('connection_failed');
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      if (resuming) {
        ws.send(JSON.stringify({ type: 'resume', token: this.resumeToken, received: this.received }));
      } else {
        this.#sendJoin();
      }
      this.timers.joinTimeout = setTimeout(() => {
        if (ws === this.ws && !this.socketReady) this.#dropSocket(4000, 'join timed out');
      }, this.opts.joinTimeoutMs);
    });
    ws.addEventListener('message', (e) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      this.#onFrame(e.data);
    });
    ws.addEventListener('close', (e) => {
      if (ws !== this.ws) return;
      this.#onSocketClosed(e.code, e.reason);
    });
  }

  #sendJoin() {
    const join = { type: 'join', room: this.room, name: this.name };
    if (this.token) join.token = this.token;
    this.ws?.send(JSON.stringify(join));
  }

  #send(msg) {
    const json = JSON.stringify(msg);
    // Once joined, every message is numbered and kept a while, for a resume.
    if (this.participantId) {
      this.sentCount += 1;
      this.sentLog.push([this.sentCount, json]);
      if (this.sentLog.length > 512) this.sentLog.shift();
      if (!this.socketReady) return false; // sent again after `resumed`
    }
    if (this.ws?.readyState === WebSocket.OPEN && this.socketReady) {
      this.ws.send(json);
      return true;
    }
    return false;
  }

  /**
   * Gives up on the current socket at once: after `ws.close()` a browser fires `close`
   * only when the closing handshake completes or times out, which on a dead path takes
   * a minute. The participant lives on on the server; the next socket resumes it. The
   * code matters when the close frame does reach the server: 4001 and 4003 say "I will
   * resume" (the participant is kept), any other code is a leave (docs/protocol.md).
   */
  #dropSocket(code, reason) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
    this.#onSocketClosed(code, reason);
  }

  #startKeepAlive() {
    this.#stopKeepAlive();
    let lastPing = 0;
    let lastTick = Date.now();
    this.timers.ping = setInterval(() => {
      const now = Date.now();
      // A page that was frozen (a starved machine, a throttled tab) heard nothing
      // because it ran nothing: frames that arrived meanwhile are still queued behind
      // this timer. Silence counts only from when the page runs again. (A background
      // tab's timers run once a second: well under this, so it still notices.)
      if (now - lastTick > (this.opts.silenceTimeoutMs * 3) / 4) this.lastFrameAt = Math.max(this.lastFrameAt, now);
      lastTick = now;
      if (now - lastPing >= this.opts.pingIntervalMs) {
        lastPing = now;
        this.#send({ type: 'ping' });
      }
      if (now - this.lastFrameAt > this.opts.silenceTimeoutMs) {
        // Half-open TCP: nothing will ever arrive; drop it and resume on a new one
        // (which restarts ICE once resumed).
        this.lastPathRecovery = Date.now();
        this.#dropSocket(4001, 'no answer from server');
      }
    }, this.opts.silenceCheckMs);
  }

  #stopKeepAlive() {
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.joinTimeout);
    this.timers.ping = null;
  }

  #onSocketClosed(code, reason) {
    this.ws = null;
    this.socketReady = false;
    this.#stopKeepAlive();
    // Say "reconnecting" before the teardown announces everyone as gone, so a UI can tell
    // a network blip from people really leaving.
    if (this.everJoined && !this.leaving && !this.closedForGood) this.#setState('reconnecting');
    if (!this.leaving && !this.closedForGood && this.participantId && this.resumeToken && this.publisher) {
      // Keep everything: the first resume attempt goes out at once, later ones back off.
      this.#scheduleReconnect(this.attempt === 0 ? 0 : undefined);
      return;
    }
    this.#teardownSession();
    if (this.leaving || this.closedForGood) {
      this.#shutdown('left', code);
      return;
    }
    if (!this.everJoined) {
      // The very first attempt failed: let the caller decide (the UI shows the error).
      this.#failJoin(new PlazaError('connection_failed', `Could not connect to the server (WebSocket closed with ${code}${reason ? `: ${reason}` : ''}).`));
      this.#shutdown('connection_failed', code);
      return;
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect(fixedDelayMs = undefined) {
    this.attempt += 1;
    const { baseDelayMs, maxDelayMs } = this.opts.reconnect;
    const exp = Math.min(maxDelayMs, baseDelayMs * 2 ** (this.attempt - 1));
    // Jitter so a room full of clients does not reconnect in lockstep after a restart.
    const delayMs = fixedDelayMs ?? Math.round(exp / 2 + Math.random() * (exp / 2));
    this.#setState('reconnecting');
    this.emit('reconnecting', { attempt: this.attempt, delayMs });
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => this.#connect(), delayMs);
  }

  #failJoin(err) {
    const pending = this.pendingJoin;
    this.pendingJoin = null;
    pending?.reject(err);
  }

  /** Ends the client for good: closes everything and stops reconnecting. */
  #shutdown(reason, code = 1000) {
    globalThis.removeEventListener?.('online', this.onOnline);
    if (this.closedForGood) return;
    this.closedForGood = true;
    clearTimeout(this.timers.reconnect);
    this.#stopKeepAlive();
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, reason);
    this.#teardownSession();
    this.#setState('closed');
    this.emit('closed', { reason, code });
  }

  // ---------------------------------------------------------------- incoming frames

  #onFrame(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('plaza: server sent a frame that is not JSON', data);
      return;
    }
    // Numbered like the server numbers them: everything after `joined`/`resumed` on a
    // socket that said one of them.
    if (this.socketReady && msg.type !== 'resumed' && msg.type !== 'pong') this.received += 1;
    switch (msg.type) {
      case 'joined':
        return this.#onJoined(msg);
      case 'resumed':
        return this.#onResumed(msg);
      case 'participant_joined':
        this.participants.set(msg.participant.id, msg.participant);
        return this.emit('participant-joined', { participant: msg.participant });
      case 'participant_updated':
        this.participants.set(msg.participant.id, msg.participant);
        return this.emit('participant-updated', { participant: msg.participant });
      case 'participant_left':
        return this.#removeParticipant(msg.participant_id);
      case 'track_published':
        this.tracks.set(msg.track.id, msg.track);
        return;
      case 'track_unpublished':
        this.tracks.delete(msg.track_id);
        return this.#announceTrackRemoved(msg.track_id);
      case 'video_paused': {
        // Our link lost too much of this video; the server paused it (audio goes on)
        // and will try again (docs/protocol.md, "Slow links").
        const participantId = this.tracks.get(msg.track_id)?.participant_id;
        if (participantId) this.emit('video-paused', { participantId, trackId: msg.track_id, paused: msg.paused });
        return;
      }
      case 'offer':
        return this.#onSubscriberOffer(msg);
      case 'answer':
        return this.#onPublisherAnswer(msg);
      case 'candidate':
        return this.#onRemoteCandidate(msg);
      case 'error':
        return this.#onServerError(msg);
      case 'pong':
        return;
      case 'token':
        this.token = msg.token;
        // expires_at is Unix seconds; listeners get milliseconds, like Date.now().
        return this.emit('token', { token: msg.token, expiresAt: msg.expires_at * 1000 });
      default:
        console.warn('plaza: unknown message from server', msg);
    }
  }

  #onJoined(msg) {
    clearTimeout(this.timers.joinTimeout);
    const rejoin = this.everJoined;
    this.everJoined = true;
    this.attempt = 0;
    this.participantId = msg.participant_id;
    this.resumeToken = msg.resume_token ?? null;
    this.received = 0;
    this.sentLog = [];
    this.sentCount = 0;
    this.outbox = [];
    this.socketReady = true;
    this.#startKeepAlive();
    if (msg.limits) this.limits = msg.limits;
    this.participants = new Map(msg.participants.map((p) => [p.id, p]));

    this.#createPeers(msg.ice_servers ?? []);
    // The server starts everyone unmuted; tell it what we really send.
    for (const kind of ['audio', 'video']) {
      if (this.muted[kind]) this.#send({ type: 'mute', kind, muted: true });
    }
    this.#setState('joined');
    this.emit('joined', {
      participantId: this.participantId,
      room: msg.room,
      participants: [...this.participants.values()],
      rejoin,
    });
    const pending = this.pendingJoin;
    this.pendingJoin = null;
    pending?.resolve(msg);
  }

  /** The server took us back on this socket: same participant, same connections. */
  #onResumed(msg) {
    clearTimeout(this.timers.joinTimeout);
    this.resumeToken = msg.resume_token;
    this.attempt = 0;
    this.socketReady = true;
    this.#startKeepAlive();
    // What the server never got, again, in order.
    for (const [n, json] of this.sentLog) {
      if (n > msg.received) this.ws?.send(json);
    }
    this.#setState('joined');
    this.emit('resumed', { participantId: this.participantId });
    // The socket moved because the path changed or died: the media paths need new
    // ICE candidates too.
    this.#restartIce('resumed');
  }

  /**
   * The network changed (the browser went online again, or ICE lost its path): move
   * the signalling to a new socket (the old one is bound to an address that may be
   * gone) and restart ICE on both connections once resumed.
   */
  #onPathChange(reason) {
    if (!this.participantId || !this.publisher || this.leaving || this.closedForGood) return;
    const now = Date.now();
    if (now - this.lastPathRecovery < this.opts.pathRecoveryMinIntervalMs) return;
    this.lastPathRecovery = now;
    console.info(`plaza: path changed (${reason}): resuming on a new socket`);
    if (this.ws && this.socketReady) this.#dropSocket(4003, `path changed: ${reason}`);
    // Otherwise a resume is under way already; it restarts ICE when done.
  }

  #restartIce(reason) {
    const pub = this.publisher?.pc;
    if (!pub) return;
    this.emit('ice-restart', { reason });
    // The next publisher offer gets new credentials (negotiationneeded follows).
    pub.restartIce();
    this.publisherAgain = this.publisherBusy;
    // The server re-offers the subscriber connection with new credentials.
    this.#send({ type: 'restart_ice' });
  }

  #onServerError(msg) {
    if (msg.code === 'resume_failed' && !this.socketReady && this.ws) {
      // The participant is gone on the server (grace period over, or too much missed):
      // start over on this socket.
      this.#teardownSession();
      this.#setState('reconnecting');
      this.#sendJoin();
      return;
    }
    // Closing but retryable errors (peer_failed, server_shutdown) end in a socket close,
    // which the reconnect logic handles; only the hopeless ones stop us here.
    const fatal = FATAL_CODES.has(msg.code);
    this.emit('error', { code: msg.code, message: msg.message, fatal });
    if (!fatal) return;
    const err = new PlazaError(msg.code, msg.message, true);
    this.#failJoin(err);
    this.#shutdown(msg.code);
  }

  #removeParticipant(participantId) {
    for (const [trackId, info] of [...this.announcedTracks]) {
      if (info.participantId === participantId) this.#announceTrackRemoved(trackId);
    }
    for (const [trackId, t] of [...this.tracks]) {
      if (t.participant_id === participantId) this.tracks.delete(trackId);
    }
    if (this.participants.delete(participantId)) {
      this.emit('participant-left', { participantId });
    }
  }

  // ---------------------------------------------------------------- peer connections

  #createPeers(iceServers) {
    const config = { iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };
    const send = (m) => this.#send(m);
    this.publisher = new Peer('publisher', config, send);
    this.subscriber = new Peer('subscriber', config, send);
    this.subscriberQueue = Promise.resolve();
    this.publisherBusy = false;
    this.publisherAgain = false;

    for (const peer of [this.publisher, this.subscriber]) {
      peer.pc.addEventListener('connectionstatechange', () => this.#onPeerState(peer));
      peer.pc.addEventListener('iceconnectionstatechange', () => this.#onIceState(peer));
    }
    this.subscriber.pc.addEventListener('track', (e) => this.#onRemoteTrack(e));

    const pub = this.publisher.pc;
    pub.addEventListener('negotiationneeded', () => this.#negotiatePublisher());
    // The data channel must exist before the first offer so it is in that offer.
    this.#attachChat(pub.createDataChannel('chat'));
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) {
        pub.addTransceiver(track, { direction: 'sendonly', streams: [this.localStream] });
      }
    }
    this.extraTransceiver = null;
    if (this.extraVideo) this.#addExtraTransceiver(this.extraVideo);
  }

  #addExtraTransceiver(track) {
    // The server relabels every track it forwards (stream id = our participant id, track
    // id = its own), so the others attribute this one to us whatever our msid says;
    // sharing the camera's stream keeps our own SDP grouped the same way.
    const streams = this.localStream ? [this.localStream] : [];
    this.extraTransceiver = this.publisher.pc.addTransceiver(track, { direction: 'sendonly', streams });
  }

  async #applyExtraVideo() {
    const peer = this.publisher;
    if (!peer) return; // not in a room: #createPeers adds it on (re)join
    const track = this.extraVideo;
    const transceiver = this.extraTransceiver;
    if (!transceiver) {
      if (track) this.#addExtraTransceiver(track);
      return;
    }
    if (transceiver.sender.track === track && transceiver.direction === (track ? 'sendonly' : 'inactive')) return;
    await transceiver.sender.replaceTrack(track);
    if (peer !== this.publisher) return; // a rejoin happened meanwhile; it used the new wish
    // A direction change makes the connection fire negotiationneeded: the usual offer.
    transceiver.direction = track ? 'sendonly' : 'inactive';
  }

  async #negotiatePublisher() {
    // Chrome only fires negotiationneeded in "stable", but a second change can land while
    // our offer waits for its answer: remember it and offer again afterwards.
    if (this.publisherBusy) {
      this.publisherAgain = true;
      return;
    }
    const peer = this.publisher;
    this.publisherBusy = true;
    try {
      await peer.pc.setLocalDescription();
      if (peer !== this.publisher) return;
      this.#send({ type: 'offer', target: 'publisher', sdp: peer.pc.localDescription.sdp });
      peer.markLocalSent();
    } catch (err) {
      this.publisherBusy = false;
      this.emit('error', { code: 'local_offer_failed', message: String(err?.message ?? err), fatal: false });
    }
  }

  async #onPublisherAnswer(msg) {
    const peer = this.publisher;
    if (!peer || msg.target !== 'publisher') return;
    try {
      await peer.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      await peer.markRemoteReady();
    } catch (err) {
      this.emit('error', { code: 'bad_sdp', message: `Could not apply the server's answer: ${err.message}`, fatal: false });
    }
    if (peer !== this.publisher) return;
    this.publisherBusy = false;
    if (this.publisherAgain) {
      this.publisherAgain = false;
      this.#negotiatePublisher();
    }
  }

  #onSubscriberOffer(msg) {
    if (msg.target !== 'subscriber') return;
    const peer = this.subscriber;
    if (!peer) return;
    // Offers are answered strictly one after the other, in arrival order.
    this.subscriberQueue = this.subscriberQueue.then(async () => {
      if (peer !== this.subscriber) return;
      try {
        await peer.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
        await peer.markRemoteReady();
        await peer.pc.setLocalDescription();
        if (peer !== this.subscriber) return;
        this.#send({ type: 'answer', target: 'subscriber', sdp: peer.pc.localDescription.sdp });
        peer.markLocalSent();
        this.#sweepEndedTracks();
      } catch (err) {
        // Undo a half-applied offer, so the fresh one the server sends when no answer
        // comes can apply (a remote offer cannot follow another one).
        if (peer.pc.signalingState === 'have-remote-offer') {
          await peer.pc.setRemoteDescription({ type: 'rollback' }).catch(() => {});
        }
        this.emit('error', { code: 'bad_sdp', message: `Could not answer the server's offer: ${err.message}`, fatal: false });
      }
    });
  }

  #onIceState(peer) {
    const state = peer.pc.iceConnectionState;
    console.info(`plaza: ${peer.target} ICE ${state}`);
    clearTimeout(this.iceTimers.get(peer.target));
    if (state === 'failed') {
      this.#onPathChange(`${peer.target} ICE failed`);
    } else if (state === 'disconnected') {
      this.iceTimers.set(
        peer.target,
        setTimeout(() => {
          if (peer.pc.iceConnectionState === 'disconnected' && peer === this[peer.target]) {
            this.#onPathChange(`${peer.target} ICE disconnected`);
          }
        }, this.opts.iceDisconnectedMs),
      );
    }
  }

  #onPeerState(peer) {
    this.#emitConnectionState();
    if (peer.pc.connectionState !== 'failed') return;
    // ICE failing is a path change (#onIceState restarts ICE). DTLS failing cannot be
    // repaired on this connection: the server tears the session down as well
    // (peer_failed); if it has not yet, closing the socket ourselves starts a clean
    // rejoin sooner.
    if (peer.pc.iceConnectionState === 'failed') return;
    setTimeout(() => {
      if (peer.pc.connectionState === 'failed' && (peer === this.publisher || peer === this.subscriber)) {
        this.resumeToken = null; // a new session, not this one
        this.#dropSocket(4002, `${peer.target} connection failed`);
      }
    }, 1000);
  }

  #onRemoteCandidate(msg) {
    const peer = msg.target === 'publisher' ? this.publisher : this.subscriber;
    if (!peer) return;
    peer.addRemoteCandidate(msg.candidate ?? null);
  }

  #onRemoteTrack(event) {
    const { track, streams, transceiver } = event;
    const trackId = this.#serverTrackId(transceiver) ?? track.id;
    // The stream id is the publisher's participant id (docs/protocol.md, "Which track is
    // whose"); track_published is the fallback if a stream is missing.
    const participantId = streams[0]?.id ?? this.tracks.get(trackId)?.participant_id;
    if (!participantId) {
      console.warn('plaza: remote track with no owner', trackId);
      return;
    }
    // A recycled m-line: whatever this transceiver carried before has gone.
    for (const [id, old] of [...this.announcedTracks]) {
      if (old.transceiver === transceiver && id !== trackId) this.#announceTrackRemoved(id);
    }
    // Offers are applied in order, so an offer queued before a participant_left can still
    // deliver that participant's tracks afterwards; announcing them would resurrect a
    // ghost tile. The removal follows in the server's next offer.
    if (!this.participants.has(participantId)) return;
    const info = { participantId, kind: track.kind, transceiver, track };
    this.announcedTracks.set(trackId, info);
    // Removal by renegotiation ends up here when track_unpublished was missed.
    streams[0]?.addEventListener('removetrack', (e) => {
      if (e.track === track && this.announcedTracks.get(trackId) === info) {
        this.#announceTrackRemoved(trackId);
      }
    });
    this.emit('track-added', {
      participantId,
      trackId,
      kind: track.kind,
      track,
      stream: streams[0] ?? new MediaStream([track]),
    });
  }

  /**
   * The server's id for the track now on `transceiver`: the a=msid of its m-line in the
   * subscriber connection's remote description. Not `track.id`: the browser keeps one
   * MediaStreamTrack per transceiver, named after its first occupant, and the server
   * recycles m-lines for later tracks (docs/decisions.md §11).
   */
  #serverTrackId(transceiver) {
    const mid = transceiver?.mid;
    const sdp = this.subscriber?.pc.remoteDescription?.sdp;
    if (mid == null || !sdp) return null;
    for (const section of sdp.split(/\r?\n(?=m=)/)) {
      const lines = section.split(/\r?\n/);
      if (!lines.includes(`a=mid:${mid}`)) continue;
      const msid = lines.find((l) => l.startsWith('a=msid:'));
      return msid?.split(' ')[1] ?? null;
    }
    return null;
  }

  /** After a renegotiation, tracks whose transceiver stopped receiving are gone. */
  #sweepEndedTracks() {
    for (const [trackId, info] of [...this.announcedTracks]) {
      const dir = info.transceiver?.currentDirection;
      if (info.track.readyState === 'ended' || dir === 'inactive' || dir === 'stopped') {
        this.#announceTrackRemoved(trackId);
      }
    }
  }

  #announceTrackRemoved(trackId) {
    const info = this.announcedTracks.get(trackId);
    if (!info) return;
    this.announcedTracks.delete(trackId);
    this.emit('track-removed', { participantId: info.participantId, trackId, kind: info.kind });
  }

  // ---------------------------------------------------------------- chat

  #attachChat(channel) {
    this.chatChannel = channel;
    channel.addEventListener('open', () => {
      if (channel !== this.chatChannel) return;
      for (const payload of this.chatQueue.splice(0)) channel.send(payload);
      this.emit('chat-state', { open: true });
    });
    channel.addEventListener('close', () => {
      if (channel === this.chatChannel) this.emit('chat-state', { open: false });
    });
    channel.addEventListener('message', (e) => this.#onChatMessage(e.data));
  }

  #onChatMessage(data) {
    let msg;
    try {
      msg = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch {
      console.warn('plaza: chat frame is not JSON', data);
      return;
    }
    if (typeof msg.text !== 'string') return;
    const name = msg.name ?? this.participants.get(msg.from)?.name ?? 'Someone';
    this.emit('chat', { from: msg.from, name, text: msg.text, ts: msg.ts ?? Date.now(), to: msg.to });
  }

  // ---------------------------------------------------------------- teardown & state

  /** Drops everything tied to one server session; listeners learn that everyone left. */
  #teardownSession() {
    for (const id of [...this.participants.keys()]) this.#removeParticipant(id);
    for (const trackId of [...this.announcedTracks.keys()]) this.#announceTrackRemoved(trackId);
    this.tracks.clear();
    this.participantId = null;
    if (this.chatChannel) {
      const ch = this.chatChannel;
      this.chatChannel = null;
      try {
        ch.close();
      } catch {
        /* already closed */
      }
      this.emit('chat-state', { open: false });
    }
    this.publisher?.close();
    this.subscriber?.close();
    this.publisher = null;
    this.subscriber = null;
  }

  #localTracks(kind) {
    return this.localStream ? this.localStream.getTracks().filter((t) => t.kind === kind) : [];
  }

  #setState(state) {
    this.state = state;
    this.#emitConnectionState();
  }

  /**
   * One summary state for a UI: "connecting", "connected", "unstable", "failed",
   * "reconnecting" or "closed". A subscriber that is still "new" is fine: alone in a room
   * the server has nothing to send and never offers.
   */
  #emitConnectionState() {
    const publisher = this.publisher?.pc.connectionState ?? 'none';
    const subscriber = this.subscriber?.pc.connectionState ?? 'none';
    let state = this.state;
    if (state === 'joined') {
      const states = [publisher, subscriber];
      if (states.includes('failed')) state = 'failed';
      else if (states.includes('disconnected')) state = 'unstable';
      else if (publisher === 'connected' && (subscriber === 'connected' || subscriber === 'new')) state = 'connected';
      else state = 'connecting';
    }
    const socket = this.ws ? ['connecting', 'open', 'closing', 'closed'][this.ws.readyState] : 'none';
    this.emit('connection-state', { state, publisher, subscriber, socket });
  }
}

export default PlazaClient;
