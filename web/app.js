// Plaza web app: the UI around PlazaClient (signaling.js holds all protocol logic).

import { PlazaClient } from './signaling.js';

const $ = (sel, root = document) => root.querySelector(sel);

const ROOM_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const STORAGE = { name: 'plaza.name', room: 'plaza.room' };
const SPEAKING_LEVEL = 0.03; // inbound audioLevel (0..1) above which a tile lights up

/** Friendly words for the server's error codes (docs/protocol.md, "Error codes"). */
const ERROR_TEXT = {
  room_full: 'This room is full. Try again later or pick another room.',
  too_many_rooms: 'The server cannot open another room right now. Try an existing room or come back later.',
  unauthorized: 'You are not allowed to join this room (the invite link may have expired).',
  kicked: 'You were removed from the room.',
  room_closed: 'This room was closed by its operator. Try again later.',
  invalid_room: 'Room names may only use letters, digits, "-", "_" and "." (at most 64).',
  invalid_name: 'Please choose another display name (1–64 characters, no control characters).',
  message_too_large: 'That message is too long to send.',
  bad_message: 'The server did not understand a message from this page.',
  peer_failed: 'The media connection failed. Reconnecting…',
  server_shutdown: 'The server is restarting. Reconnecting…',
  rate_limited: 'Too many messages at once. Slow down a little.',
  too_many_tracks: 'The server refused some of your camera/microphone tracks.',
  internal: 'The server hit an internal error.',
  connection_failed: 'Could not reach the Plaza server. Check your connection and try again.',
};

const state = {
  client: null,
  localStream: null,
  withMedia: true,
  room: '',
  name: '',
  token: null,
  /** participant id → { el, video, audio, info, media: Map(track id → track), tracks: { audio, video } (shown) } */
  tiles: new Map(),
  unread: 0,
  statsTimer: null,
  /** performance.now() marks of the join path, for tests and for anyone tuning it. */
  metrics: {},
};

// ====================================================================== start-up

function init() {
  const params = new URLSearchParams(location.search);
  $('#room-input').value = params.get('room') ?? localStorage.getItem(STORAGE.room) ?? '';
  $('#name-input').value = params.get('name') ?? localStorage.getItem(STORAGE.name) ?? '';
  state.token = params.get('token');

  $('#join-form').addEventListener('submit', onJoinSubmit);
  $('#retry-media').addEventListener('click', () => joinFromForm({ withMedia: true }));
  $('#join-without-media').addEventListener('click', () => joinFromForm({ withMedia: false }));
  $('#rejoin').addEventListener('click', () => startCall({ withMedia: state.withMedia }));
  $('#back-to-lobby').addEventListener('click', () => showScreen('lobby'));

  $('#toggle-mic').addEventListener('click', () => toggleMute('audio'));
  $('#toggle-camera').addEventListener('click', () => toggleMute('video'));
  $('#leave').addEventListener('click', leaveCall);
  for (const btn of document.querySelectorAll('[data-action="copy-link"]')) {
    btn.addEventListener('click', copyInviteLink);
  }
  $('#chat-form').addEventListener('submit', onChatSubmit);
  $('#toggle-chat').addEventListener('click', () => togglePanel('chat'));
  $('#toggle-people').addEventListener('click', () => togglePanel('people'));
  $('#close-panel').addEventListener('click', () => setPanelOpen(false));
  for (const tab of document.querySelectorAll('.tab')) {
    tab.addEventListener('click', () => selectTab(tab.dataset.tab));
  }
  $('#enable-sound').addEventListener('click', retryBlockedAudio);

  // Wide screens have room for the chat beside the videos; phones open it on demand.
  const wide = window.matchMedia('(min-width: 901px)');
  setPanelOpen(wide.matches);
  wide.addEventListener('change', (e) => setPanelOpen(e.matches));
  new ResizeObserver(layoutGrid).observe($('#stage'));
  setInterval(updateClock, 10_000);
  updateClock();
  exposeForTests();
  (params.get('room') ? $('#name-input') : $('#room-input')).focus();
}

/** Hooks for tests and debugging: stats come from the subscriber connection. */
function exposeForTests() {
  window.plaza = {
    get client() { return state.client; },
    get subscriberPc() { return state.client?.subscriberPc ?? null; },
    get publisherPc() { return state.client?.publisherPc ?? null; },
    get participantId() { return state.client?.participantId ?? null; },
    metrics: state.metrics,
  };
}

// ====================================================================== joining

function onJoinSubmit(event) {
  event.preventDefault();
  joinFromForm({ withMedia: true });
}

/** Validates the lobby form (as the server would), remembers it, and starts the call. */
function joinFromForm({ withMedia }) {
  const room = $('#room-input').value.trim();
  const name = $('#name-input').value.trim();
  const roomOk = ROOM_PATTERN.test(room);
  const nameOk = name.length > 0 && [...name].length <= 64 && !/\p{Cc}/u.test(name);
  $('#room-input').setAttribute('aria-invalid', String(!roomOk));
  $('#name-input').setAttribute('aria-invalid', String(!nameOk));
  if (!roomOk || !nameOk) {
    showJoinError(!roomOk ? ERROR_TEXT.invalid_room : ERROR_TEXT.invalid_name);
    return;
  }
  state.room = room;
  state.name = name;
  localStorage.setItem(STORAGE.room, room);
  localStorage.setItem(STORAGE.name, name);
  startCall({ withMedia });
}

async function startCall({ withMedia }) {
  for (const key of Object.keys(state.metrics)) delete state.metrics[key];
  state.metrics.joinClickedAt = performance.now();
  state.withMedia = withMedia;
  showJoinError(null);
  $('#media-error').hidden = true;
  setJoining(true);

  let stream = null;
  if (withMedia) {
    try {
      stream = await getLocalMedia();
    } catch (err) {
      setJoining(false);
      showScreen('lobby');
      showMediaError(err);
      return;
    }
  }
  state.localStream = stream;
  state.metrics.mediaReadyAt = performance.now();
  await enterRoom(stream);
  setJoining(false);
}

/** Camera and microphone; if one device is missing or busy, settles for the other. */
async function getLocalMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw Object.assign(new Error('insecure'), { name: 'InsecureContext' });
  }
  const video = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video });
  } catch (err) {
    if (err.name === 'NotAllowedError' || err.name === 'SecurityError') throw err;
    for (const constraints of [{ audio: true }, { video }]) {
      try {
        const partial = await navigator.mediaDevices.getUserMedia(constraints);
        toast(constraints.audio ? 'No camera available: joining with microphone only.' : 'No microphone available: joining with camera only.');
        return partial;
      } catch {
        /* try the next device */
      }
    }
    throw err;
  }
}

function showMediaError(err) {
  const text = {
    NotAllowedError: 'Permission to use your camera and microphone was denied. Allow it in your browser (the camera icon in the address bar or the site settings) and try again.',
    SecurityError: 'Your browser does not allow camera access on this page.',
    NotFoundError: 'No camera or microphone was found on this device.',
    NotReadableError: 'Your camera or microphone is being used by another application. Close it and try again.',
    OverconstrainedError: 'Your camera cannot provide a usable picture.',
    InsecureContext: 'Camera and microphone need a secure page (https:// or localhost).',
  }[err.name] ?? `Your camera or microphone could not be started (${err.name || err.message}).`;
  $('#media-error-text').textContent = `${text} You can also join without them: you will still see, hear and chat with everyone.`;
  $('#media-error').hidden = false;
}

async function enterRoom(stream) {
  const client = new PlazaClient({ room: state.room, name: state.name, token: state.token, localStream: stream });
  state.client = client;
  wireClient(client);
  try {
    await client.join();
  } catch (err) {
    if (state.client && state.client !== client) return; // a newer attempt took over
    state.client = null;
    stopLocalMedia();
    // Refusals that belong to the form (bad room name, full room...) go back to it.
    showScreen('lobby');
    showJoinError(ERROR_TEXT[err.code] ?? err.message);
  }
}

function setJoining(busy) {
  const btn = $('#join-button');
  btn.disabled = busy;
  btn.textContent = busy ? 'Joining…' : 'Join room';
  $('#join-without-media').disabled = busy;
  $('#rejoin').disabled = busy;
}

function showJoinError(text) {
  $('#join-error').textContent = text ?? '';
  $('#join-error').hidden = !text;
}

// ====================================================================== client events

function wireClient(client) {
  // Events from a client we already left behind (e.g. late callbacks) are ignored.
  const on = (type, fn) => client.on(type, (d) => state.client === client && fn(d));

  on('joined', onJoined);
  on('participant-joined', ({ participant }) => {
    upsertParticipant(participant);
    toast(`${participant.name} joined`);
  });
  on('participant-updated', ({ participant }) => upsertParticipant(participant));
  on('participant-left', ({ participantId }) => {
    const name = state.tiles.get(participantId)?.info.name;
    removeTile(participantId);
    renderPeople();
    if (name && client.state !== 'reconnecting' && !client.closedForGood) toast(`${name} left`);
  });
  on('track-added', ({ participantId, trackId, track }) => attachTrack(participantId, trackId, track));
  on('track-removed', ({ participantId, trackId }) => detachTrack(participantId, trackId));
  on('video-paused', ({ participantId, trackId, paused }) => {
    const tile = state.tiles.get(participantId);
    if (!tile) return;
    if (paused) tile.pausedVideos.add(trackId);
    else tile.pausedVideos.delete(trackId);
    updateVideoVisibility(tile);
  });
  on('chat', (msg) => addChatMessage(msg));
  on('chat-state', ({ open }) => {
    $('#chat-input').placeholder = open ? 'Message everyone' : 'Connecting chat…';
  });
  on('connection-state', renderConnection);
  on('reconnecting', ({ attempt }) => {
    $('#reconnecting-text').textContent = attempt > 1 ? `Reconnecting… (attempt ${attempt})` : 'Reconnecting…';
  });
  on('error', onClientError);
  on('closed', onClosed);
  on('token', ({ token }) => {
    // The "Rejoin" button and a page reload must not use the expired original.
    state.token = token;
    history.replaceState(null, '', inviteUrl({ keepToken: true }));
  });
}

function onJoined({ participants, rejoin }) {
  state.metrics.joinedAt ??= performance.now();
  if (rejoin) {
    toast('Reconnected', 'ok');
  } else {
    $('#room-name').textContent = state.room;
    document.title = `${state.room} · Plaza`;
    history.replaceState(null, '', inviteUrl({ keepToken: true }));
    showLocalPreview();
    clearChat();
    showScreen('room');
  }
  for (const p of participants) upsertParticipant(p);
  renderOwnControls();
  renderPeople();
  startStatsLoop();
}

function onClientError({ code, message, fatal }) {
  if (fatal) return; // onClosed / the join promise explain it on their screens
  const friendly = ERROR_TEXT[code];
  toast(friendly ? `${friendly}` : message, 'error', code);
}

function onClosed({ reason }) {
  stopStatsLoop();
  clearTiles();
  stopLocalMedia();
  state.client = null;
  if (reason === 'left' || reason === 'connection_failed') return; // handled by their callers
  // A closing error from the server (full room, kicked, ...): say so on the ended screen.
  if ($('#room').hidden) return; // still in the lobby: enterRoom shows it on the form
  showEnded('The call ended', ERROR_TEXT[reason] ?? `The server closed the session (${reason}).`);
}

// ====================================================================== tiles

function upsertParticipant(info) {
  const tile = ensureTile(info.id, info);
  tile.info = info;
  $('[data-testid="tile-name"]', tile.el).textContent = info.name;
  $('.avatar', tile.el).textContent = initials(info.name);
  tile.el.style.setProperty('--avatar', colorFor(info.id));
  tile.el.dataset.audioMuted = String(info.audio_muted);
  tile.el.dataset.videoMuted = String(info.video_muted);
  show($('[data-testid="mic-muted"]', tile.el), info.audio_muted);
  show($('[data-testid="camera-muted"]', tile.el), info.video_muted);
  updateVideoVisibility(tile);
  renderPeople();
}

function ensureTile(participantId, info) {
  let tile = state.tiles.get(participantId);
  if (tile) return tile;
  const el = $('#tile-template').content.firstElementChild.cloneNode(true);
  el.dataset.participantId = participantId;
  tile = {
    el,
    video: $('video', el),
    audio: $('audio', el),
    info: info ?? { id: participantId, name: '…', audio_muted: false, video_muted: false },
    /** Every track we receive from this participant, by the server's track id, in arrival order. */
    media: new Map(),
    /** The ones the tile plays: the latest of each kind (a second video, e.g. a screen share, wins over the camera until it stops). */
    tracks: { audio: null, video: null },
    hasFrame: false,
    /** Server track ids of this participant's videos the server paused for our link's loss. */
    pausedVideos: new Set(),
  };
  // A tile shows its avatar until real frames arrive, so nobody stares at black.
  tile.video.addEventListener('resize', () => onFirstFrame(tile));
  tile.video.addEventListener('playing', () => onFirstFrame(tile));
  state.tiles.set(participantId, tile);
  $('#grid').insertBefore(el, $('#self-view'));
  if (!info) upsertParticipant(tile.info);
  updateVideoVisibility(tile);
  layoutGrid();
  return tile;
}

function onFirstFrame(tile) {
  if (!tile.video.videoWidth) return;
  tile.hasFrame = true;
  state.metrics.firstRemoteFrameAt ??= performance.now();
  updateVideoVisibility(tile);
}

function attachTrack(participantId, trackId, track) {
  state.metrics.firstRemoteTrackAt ??= performance.now();
  const tile = ensureTile(participantId, state.client?.participants.get(participantId));
  tile.media.delete(trackId);
  tile.media.set(trackId, track);
  showLatest(tile, track.kind);
}

function detachTrack(participantId, trackId) {
  const tile = state.tiles.get(participantId);
  const track = tile?.media.get(trackId);
  if (!track) return;
  // By the server's track id: the MediaStreamTrack of a recycled m-line keeps the id of
  // its first occupant (docs/decisions.md §11), so track.id may name another track.
  tile.media.delete(trackId);
  tile.pausedVideos.delete(trackId);
  showLatest(tile, track.kind);
}

/** Plays the participant's latest track of `kind` (or none) in its tile. */
function showLatest(tile, kind) {
  let latest = null;
  for (const t of tile.media.values()) if (t.kind === kind) latest = t;
  if (tile.tracks[kind] !== latest) {
    tile.tracks[kind] = latest;
    const el = tile[kind];
    if (kind === 'video') tile.hasFrame = false;
    el.srcObject = latest ? new MediaStream([latest]) : null;
    if (latest && kind === 'video') el.play().catch(() => { /* muted video may always autoplay; retried on playing */ });
    if (latest && kind === 'audio') el.play().catch(() => { $('#sound-banner').hidden = false; });
  }
  updateVideoVisibility(tile);
}

function updateVideoVisibility(tile) {
  const showVideo = tile.tracks.video && tile.hasFrame && !tile.info.video_muted;
  tile.el.classList.toggle('no-video', !showVideo);
  // The last picture stays; the note says why it does not move.
  const shownId = [...tile.media].find(([, t]) => t === tile.tracks.video)?.[0];
  const paused = Boolean(shownId && tile.pausedVideos.has(shownId) && !tile.info.video_muted);
  tile.el.dataset.videoPaused = String(paused);
  show($('[data-testid="video-paused"]', tile.el), paused);
}

function removeTile(participantId) {
  const tile = state.tiles.get(participantId);
  if (!tile) return;
  tile.video.srcObject = null;
  tile.audio.srcObject = null;
  tile.el.remove();
  state.tiles.delete(participantId);
  layoutGrid();
}

function clearTiles() {
  for (const id of [...state.tiles.keys()]) removeTile(id);
}

/** Picks the column count that gives the biggest 16:9 tiles (ours included) for the stage. */
function layoutGrid() {
  const grid = $('#grid');
  const remotes = state.tiles.size;
  const n = remotes + 1;
  $('#stage').classList.toggle('solo', remotes === 0);
  $('#people-count').textContent = String(n);
  const gap = 12;
  const { width, height } = grid.getBoundingClientRect();
  if (!width || !height) return;
  let best = { w: 0, h: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    let w = (width - gap * (cols - 1)) / cols;
    let h = (w * 9) / 16;
    if (h * rows + gap * (rows - 1) > height) {
      h = (height - gap * (rows - 1)) / rows;
      w = (h * 16) / 9;
    }
    if (w > best.w) best = { w, h };
  }
  grid.style.setProperty('--gap', `${gap}px`);
  grid.style.setProperty('--tile-w', `${Math.floor(best.w)}px`);
  grid.style.setProperty('--tile-h', `${Math.floor(best.h)}px`);
}

// ====================================================================== own media

function showLocalPreview() {
  const video = $('#local-video');
  video.srcObject = state.localStream;
  $('#self-name').textContent = `${state.name} (you)`;
  $('#self-avatar').textContent = initials(state.name);
  $('#self-view').style.setProperty('--avatar', colorFor(state.client?.participantId ?? state.name));
  renderOwnControls();
}

function toggleMute(kind) {
  const client = state.client;
  if (!client || !client.hasLocal(kind)) return;
  client.setMuted(kind, !client.isMuted(kind));
  renderOwnControls();
  renderPeople();
}

function renderOwnControls() {
  const client = state.client;
  for (const [kind, id, noun] of [['audio', '#toggle-mic', 'microphone'], ['video', '#toggle-camera', 'camera']]) {
    const btn = $(id);
    const has = client?.hasLocal(kind) ?? false;
    const muted = !has || client.isMuted(kind);
    btn.disabled = !has;
    btn.setAttribute('aria-pressed', String(muted));
    btn.dataset.muted = String(muted);
    btn.title = !has ? `No ${noun}` : muted ? `Turn ${noun} on` : `Turn ${noun} off`;
    btn.setAttribute('aria-label', btn.title);
  }
  const videoOff = !client?.hasLocal('video') || client.isMuted('video');
  $('#self-view').classList.toggle('no-video', videoOff);
  show($('[data-testid="local-mic-muted"]'), !client?.hasLocal('audio') || client.isMuted('audio'));
}

function stopLocalMedia() {
  for (const track of state.localStream?.getTracks() ?? []) track.stop();
  state.localStream = null;
  $('#local-video').srcObject = null;
}

function leaveCall() {
  const client = state.client;
  if (!client) return;
  state.client = null; // ignore the events that leaving itself produces
  client.leave();
  stopStatsLoop();
  clearTiles();
  stopLocalMedia();
  showEnded('You left the room', `You were in “${state.room}”.`);
}

function showEnded(title, text) {
  $('#ended-title').textContent = title;
  $('#ended-text').textContent = text;
  $('#reconnecting-banner').hidden = true;
  showScreen('ended');
}

// ====================================================================== connection state

const CONNECTION_LABELS = {
  connecting: 'Connecting…',
  joined: 'Connecting…',
  connected: 'Connected',
  unstable: 'Unstable connection',
  failed: 'Connection failed',
  reconnecting: 'Reconnecting…',
  closed: 'Disconnected',
  idle: 'Not connected',
};

function renderConnection({ state: connState, subscriber }) {
  if (subscriber === 'connected') state.metrics.subscriberConnectedAt ??= performance.now();
  const el = $('#connection');
  el.dataset.state = connState;
  $('#connection-label').textContent = CONNECTION_LABELS[connState] ?? connState;
  $('#reconnecting-banner').hidden = connState !== 'reconnecting';
}

// ====================================================================== chat

function onChatSubmit(event) {
  event.preventDefault();
  const input = $('#chat-input');
  const text = input.value.trim();
  if (!text || !state.client) return;
  try {
    // The server never echoes our own messages: show them here, once.
    addChatMessage(state.client.sendChat(text));
    input.value = '';
  } catch (err) {
    toast(ERROR_TEXT[err.code] ?? err.message, 'error', err.code);
  }
}

function addChatMessage({ from, name, text, ts, to, own = false }) {
  $('#chat-empty').hidden = true;
  const li = document.createElement('li');
  li.className = `msg${own ? ' own' : ''}${to ? ' direct' : ''}`;
  li.dataset.testid = 'chat-message';
  li.dataset.from = from ?? '';
  li.dataset.own = String(own);

  const meta = document.createElement('div');
  meta.className = 'meta';
  const sender = document.createElement('span');
  sender.className = 'sender';
  sender.dataset.testid = 'chat-sender';
  sender.textContent = name;
  meta.append(sender);
  if (own) meta.append(tag('span', 'you', 'you'));
  if (to) meta.append(tag('span', 'you', own ? 'private' : 'to you'));
  const time = document.createElement('time');
  time.dataset.testid = 'chat-time';
  time.dateTime = new Date(ts).toISOString();
  time.textContent = formatTime(ts);
  meta.append(time);

  const body = tag('div', 'text', text); // textContent: chat is never parsed as HTML
  body.dataset.testid = 'chat-text';
  li.append(meta, body);

  const log = $('#chat-log');
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(li);
  if (atBottom || own) log.scrollTop = log.scrollHeight;
  if (!own && !isChatVisible()) setUnread(state.unread + 1);
}

function clearChat() {
  for (const li of document.querySelectorAll('#chat-log .msg')) li.remove();
  $('#chat-empty').hidden = false;
  setUnread(0);
}

function setUnread(n) {
  state.unread = n;
  $('#unread').textContent = n > 9 ? '9+' : String(n);
  $('#unread').hidden = n === 0;
}

// ====================================================================== side panel

function isChatVisible() {
  return !$('#room').classList.contains('panel-closed') && $('#side-panel').dataset.tab === 'chat';
}

function setPanelOpen(open) {
  $('#room').classList.toggle('panel-closed', !open);
  $('#toggle-chat').classList.toggle('active', open && $('#side-panel').dataset.tab === 'chat');
  $('#toggle-people').classList.toggle('active', open && $('#side-panel').dataset.tab === 'people');
  if (isChatVisible()) setUnread(0);
  requestAnimationFrame(layoutGrid);
}

function selectTab(tab) {
  $('#side-panel').dataset.tab = tab;
  setPanelOpen(true);
}

function togglePanel(tab) {
  const open = !$('#room').classList.contains('panel-closed');
  if (open && $('#side-panel').dataset.tab === tab) setPanelOpen(false);
  else selectTab(tab);
  if (isChatVisible()) $('#chat-input').focus();
}

function renderPeople() {
  const client = state.client;
  const list = $('#participant-list');
  list.replaceChildren();
  const self = {
    id: client?.participantId ?? 'self',
    name: state.name,
    audio_muted: !client?.hasLocal('audio') || client.isMuted('audio'),
    video_muted: !client?.hasLocal('video') || client.isMuted('video'),
  };
  const others = [...state.tiles.values()].map((t) => t.info);
  for (const p of [self, ...others]) list.append(personRow(p, p === self));
  $('#people-tab-count').textContent = `(${others.length + 1})`;
}

function personRow(p, isSelf) {
  const li = document.createElement('li');
  li.dataset.testid = 'participant-list-item';
  li.dataset.participantId = p.id;
  const avatar = tag('div', 'avatar', initials(p.name));
  avatar.style.setProperty('--avatar', colorFor(p.id));
  const name = tag('span', 'pname', p.name);
  if (isSelf) name.append(tag('span', 'you', '(you)'));
  li.append(avatar, name, icon(p.audio_muted ? 'i-mic-off' : 'i-mic', p.audio_muted), icon(p.video_muted ? 'i-cam-off' : 'i-cam', p.video_muted));
  return li;
}

// ====================================================================== stats: who is speaking

function startStatsLoop() {
  stopStatsLoop();
  state.statsTimer = setInterval(updateSpeaking, 400);
}

function stopStatsLoop() {
  clearInterval(state.statsTimer);
  state.statsTimer = null;
}

async function updateSpeaking() {
  const client = state.client;
  if (!client) return;
  const speaking = new Set();
  // Stats name the MediaStreamTrack, whose id on a recycled m-line is not the server's
  // track id the client keys its tracks by.
  const owners = new Map([...client.announcedTracks.values()].map((t) => [t.track.id, t.participantId]));
  for (const s of await client.getStats()) {
    if (s.type !== 'inbound-rtp' || s.kind !== 'audio' || !(s.audioLevel > SPEAKING_LEVEL)) continue;
    const owner = owners.get(s.trackIdentifier);
    if (owner) speaking.add(owner);
  }
  for (const [id, tile] of state.tiles) {
    tile.el.classList.toggle('speaking', speaking.has(id) && !tile.info.audio_muted);
  }
}

// ====================================================================== small helpers

function showScreen(name) {
  for (const id of ['lobby', 'room', 'ended']) $(`#${id}`).hidden = id !== name;
  if (name === 'room') requestAnimationFrame(layoutGrid);
}

function inviteUrl({ keepToken = false } = {}) {
  const url = new URL(location.href);
  url.search = '';
  url.searchParams.set('room', state.room);
  // A token may be personal; only our own address bar keeps it.
  if (keepToken && state.token) url.searchParams.set('token', state.token);
  return url.toString();
}

async function copyInviteLink() {
  const link = inviteUrl();
  try {
    await navigator.clipboard.writeText(link);
    toast('Invite link copied', 'ok');
  } catch {
    // The async clipboard API needs a permission some browsers refuse (and https on
    // other hosts); the older selection-based copy still works from a click.
    if (legacyCopy(link)) toast('Invite link copied', 'ok');
    else window.prompt('Copy this invite link:', link);
  }
}

function legacyCopy(text) {
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.cssText = 'position:fixed;opacity:0;pointer-events:none';
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

function retryBlockedAudio() {
  for (const tile of state.tiles.values()) tile.audio.play().catch(() => {});
  $('#sound-banner').hidden = true;
}

function toast(text, kind = 'info', code = null) {
  const el = tag('div', `toast ${kind}`, text);
  el.dataset.testid = 'toast';
  el.dataset.kind = kind;
  if (code) {
    el.dataset.code = code;
    el.append(tag('span', 'code', code));
  }
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  $('#toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 3500);
}

/** Shows or hides any element; SVG elements have no `hidden` property, only the attribute. */
function show(el, visible) {
  el.toggleAttribute('hidden', !visible);
}

function tag(name, className, text) {
  const el = document.createElement(name);
  el.className = className;
  if (text != null) el.textContent = text;
  return el;
}

function icon(id, off) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', `ind${off ? ' off' : ''}`);
  const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
  use.setAttribute('href', `#${id}`);
  svg.append(use);
  return svg;
}

function initials(name) {
  const words = String(name).trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  return letters.map((w) => [...w][0]).join('').toUpperCase() || '?';
}

/** A stable, pleasant colour per participant for avatars. */
function colorFor(key) {
  let h = 0;
  for (const ch of String(key)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 55% 48%)`;
}

function formatTime(ts) {
  return new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' }).format(new Date(ts));
}

function updateClock() {
  $('#clock').textContent = formatTime(Date.now());
}

init();
