#!/usr/bin/env python3
"""Plaza signalling protocol v1 (docs/protocol.md) on aiortc + aiohttp.

A benchmark baseline: the "original design" of Plaza, a small Python relay, speaking
exactly the wire protocol of the Rust server so that the same client (plaza-load, a
browser) drives either. It is deliberately the straightforward aiortc design:

* one WebSocket per participant at /ws, JSON text frames;
* two RTCPeerConnections per participant: `publisher` (the client offers its tracks and
  the `chat` data channel) and `subscriber` (the server offers the other members'
  tracks, at most one offer in flight, changes collected and re-offered after the
  answer);
* `aiortc.contrib.media.MediaRelay` fans each published track out to every other
  member.

IMPORTANT for benchmarks: aiortc cannot forward RTP. Every received track is decoded
(RTCRtpReceiver's decoder thread), MediaRelay hands the *decoded* frames to each
subscriber's proxy track, and every RTCRtpSender encodes them again with its own
encoder. So this relay costs one decode per published track plus one encode per
(track, subscriber) pair. See README.md beside this file.

ICE: aiortc does not trickle. All of the server's candidates are in its SDP; after each
local description the server sends `candidate {target, candidate: null}` (end of
candidates). The client's trickled candidates are applied with addIceCandidate (queued
until the matching remote description is applied).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import string
import time
import unicodedata
from typing import Any, Optional


def patch_aioice_host_addresses(addresses: list[str]) -> None:
    """aioice skips 127.0.0.1 when it lists host addresses, so in a loopback-only
    network namespace it would gather no candidate at all. Point it at `addresses`."""
    import aioice.ice

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


# The patch above only has to run before the first peer connection gathers (main()).
from aiohttp import WSCloseCode, WSMsgType, web  # noqa: E402
from aiortc import (  # noqa: E402
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402
from aiortc.rtcconfiguration import RTCBundlePolicy  # noqa: E402
from aiortc.sdp import candidate_from_sdp  # noqa: E402

log = logging.getLogger("plaza-aiortc")

PROTOCOL_VERSION = 1
CHAT_LABEL = "chat"
ROOM_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ALNUM = string.ascii_letters + string.digits

# type -> (required fields, optional fields); `type` itself is implied.
CLIENT_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "join": ({"room", "name"}, {"token"}),
    "offer": ({"target", "sdp"}, set()),
    "answer": ({"target", "sdp"}, set()),
    "candidate": ({"target", "candidate"}, set()),
    "mute": ({"kind", "muted"}, set()),
    "leave": (set(), set()),
    "ping": (set(), set()),
}
TARGETS = ("publisher", "subscriber")


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, close: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close  # WebSocket close code, for the errors that close


def check_sdp(sdp: str, what: str) -> None:
    """aiortc's parser accepts almost anything (even "garbage" parses as an empty
    description); refuse what Plaza's WebRTC stack would refuse."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    if not lines or not lines[0].startswith("v=0"):
        raise ProtocolError("bad_sdp", f"{what}: not an SDP (must start with v=0)")
    if not any(line.startswith("m=") for line in lines):
        raise ProtocolError("bad_sdp", f"{what}: no media section")


def random_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ALNUM) for _ in range(12))


def now_ms() -> int:
    return int(time.time() * 1000)


class Config:
    def __init__(self, args: argparse.Namespace) -> None:
        self.max_rooms: int = args.max_rooms
        self.max_participants_per_room: int = args.max_participants_per_room
        self.max_tracks_per_participant: int = args.max_tracks_per_participant
        self.max_chat_bytes: int = args.max_chat_bytes
        self.max_frame_bytes: int = args.max_frame_bytes
        self.heartbeat_interval: float = args.heartbeat_interval
        self.heartbeat_timeout: float = args.heartbeat_timeout


class Track:
    """A published track: the remote track on the publisher connection."""

    def __init__(self, owner: "Participant", kind: str, codec: str, source: MediaStreamTrack) -> None:
        self.id = random_id("T")
        self.owner = owner
        self.kind = kind
        self.codec = codec
        self.source = source
        self.sink: Optional[MediaStreamTrack] = None  # relay proxy that is always read
        self.sink_task: Optional[asyncio.Task] = None

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "participant_id": self.owner.id, "kind": self.kind, "codec": self.codec}


class Room:
    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[str, Participant] = {}

    def others(self, who: "Participant") -> list["Participant"]:
        return [p for p in self.members.values() if p is not who]


class Server:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rooms: dict[str, Room] = {}
        self.pcs: set[RTCPeerConnection] = set()
        self.sessions: set[Session] = set()
        self.relay = MediaRelay()

    def new_pc(self) -> RTCPeerConnection:
        # No ICE servers at all: aiortc would otherwise default to a public STUN server.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.pcs.add(pc)
        return pc

    async def close_pc(self, pc: Optional[RTCPeerConnection]) -> None:
        if pc is None:
            return
        self.pcs.discard(pc)
        try:
            await pc.close()
        except Exception:  # closing must never take the server down
            log.exception("closing a peer connection")


class Participant:
    def __init__(self, session: "Session", room: Room, name: str) -> None:
        self.id = random_id("P")
        self.session = session
        self.room = room
        self.name = name
        self.audio_muted = False
        self.video_muted = False
        self.tracks: dict[str, Track] = {}  # published, by track id
        self.chat = None  # the client's `chat` RTCDataChannel

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "audio_muted": self.audio_muted, "video_muted": self.video_muted}


class Session:
    """One WebSocket connection, from connect to close."""

    def __init__(self, server: Server, ws: web.WebSocketResponse, peer: str) -> None:
        self.server = server
        self.cfg = server.cfg
        self.ws = ws
        self.peer = peer
        self.me: Optional[Participant] = None
        self.closed = False
        self.out: asyncio.Queue = asyncio.Queue()
        self.last_seen = time.monotonic()
        self.pub_pc: Optional[RTCPeerConnection] = None
        self.sub_pc: Optional[RTCPeerConnection] = None
        # subscriber side: track id -> (transceiver, relay proxy)
        self.sub: dict[str, tuple[Any, MediaStreamTrack]] = {}
        self.sub_offer_pending = False  # an offer is being made or awaits its answer
        self.sub_dirty = False  # changes arrived while an offer was in flight
        self.pending_candidates: dict[str, list] = {"publisher": [], "subscriber": []}
        self.tasks: set[asyncio.Task] = set()

    # ---------------------------------------------------------------- sending
    def send(self, msg: dict[str, Any]) -> None:
        if not self.closed:
            self.out.put_nowait(json.dumps(msg, separators=(",", ":")))

    def send_error(self, code: str, message: str) -> None:
        self.send({"type": "error", "code": code, "message": message})

    def close_with(self, code: int, message: str = "") -> None:
        """Close after everything queued so far has been sent."""
        if not self.closed:
            self.out.put_nowait((code, message))

    async def writer(self) -> None:
        while True:
            item = await self.out.get()
            try:
                if isinstance(item, tuple):
                    await self.ws.close(code=item[0], message=item[1].encode())
                    return
                await self.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def heartbeat(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            if time.monotonic() - self.last_seen > self.cfg.heartbeat_timeout:
                log.info("%s: heartbeat timeout", self.label())
                await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"heartbeat timeout")
                return
            try:
                await self.ws.ping()
            except (ConnectionError, RuntimeError):
                return

    def label(self) -> str:
        return self.me.id if self.me else self.peer

    # ---------------------------------------------------------------- receiving
    async def handle_text(self, text: str) -> None:
        try:
            try:
                msg = json.loads(text)
            except ValueError as e:
                raise ProtocolError("bad_json", str(e))
            mtype = self.validate(msg)
            if self.me is None and mtype not in ("join", "ping"):
                raise ProtocolError("not_joined", "send join first")
            await getattr(self, "on_" + mtype)(msg)
        except ProtocolError as e:
            self.send_error(e.code, e.message)
            if e.close is not None:
                self.close_with(e.close, e.code)
        except Exception as e:  # a bug of ours: tell the client, keep going
            log.exception("%s: handling %r", self.label(), text[:200])
            self.send_error("internal", str(e))

    @staticmethod
    def validate(msg: Any) -> str:
        if not isinstance(msg, dict):
            raise ProtocolError("bad_message", "a message must be a JSON object")
        if "type" not in msg:
            raise ProtocolError("bad_message", "missing field `type`")
        mtype = msg["type"]
        if not isinstance(mtype, str):
            raise ProtocolError("bad_message", "`type` must be a string")
        if mtype not in CLIENT_FIELDS:
            raise ProtocolError("unknown_type", f"unknown message type {mtype[:32]!r}")
        required, optional = CLIENT_FIELDS[mtype]
        keys = set(msg) - {"type"}
        for k in sorted(keys - required - optional):
            raise ProtocolError("bad_message", f"unknown field `{k}`")
        for k in sorted(required - keys):
            raise ProtocolError("bad_message", f"missing field `{k}`")

        def want(cond: bool, what: str) -> None:
            if not cond:
                raise ProtocolError("bad_message", what)

        if mtype == "join":
            want(isinstance(msg["room"], str), "`room` must be a string")
            want(isinstance(msg["name"], str), "`name` must be a string")
            want(msg.get("token") is None or isinstance(msg["token"], str), "`token` must be a string")
        elif mtype in ("offer", "answer", "candidate"):
            want(msg["target"] in TARGETS, "`target` must be publisher or subscriber")
            if mtype == "candidate":
                c = msg["candidate"]
                want(c is None or isinstance(c, dict), "`candidate` must be an object or null")
                if c is not None:
                    want(isinstance(c.get("candidate"), str), "`candidate.candidate` must be a string")
                    want(c.get("sdpMid") is None or isinstance(c["sdpMid"], str), "`sdpMid` must be a string")
                    idx = c.get("sdpMLineIndex")
                    want(idx is None or (isinstance(idx, int) and not isinstance(idx, bool) and 0 <= idx < 65536),
                         "`sdpMLineIndex` must be a u16")
                    want(c.get("usernameFragment") is None or isinstance(c["usernameFragment"], str),
                         "`usernameFragment` must be a string")
            else:
                want(isinstance(msg["sdp"], str), "`sdp` must be a string")
        elif mtype == "mute":
            want(msg["kind"] in ("audio", "video"), "`kind` must be audio or video")
            want(isinstance(msg["muted"], bool), "`muted` must be a boolean")
        return mtype

    # ---------------------------------------------------------------- messages
    async def on_ping(self, msg: dict) -> None:
        self.send({"type": "pong"})

    async def on_leave(self, msg: dict) -> None:
        self.close_with(WSCloseCode.OK, "leave")

    async def on_join(self, msg: dict) -> None:
        if self.me is not None:
            raise ProtocolError("already_joined", "this connection has already joined a room")
        room_name = msg["room"]
        if not ROOM_RE.match(room_name):
            raise ProtocolError("invalid_room", "room must be 1-64 of A-Z a-z 0-9 - _ .")
        name = msg["name"].strip()
        if not 1 <= len(name) <= 64 or any(unicodedata.category(ch) == "Cc" for ch in name):
            raise ProtocolError("invalid_name", "name must be 1-64 characters without control characters")
        srv = self.server
        room = srv.rooms.get(room_name)
        if room is None:
            if len(srv.rooms) >= self.cfg.max_rooms:
                raise ProtocolError("too_many_rooms", f"the server has too many rooms ({self.cfg.max_rooms})",
                                    close=WSCloseCode.POLICY_VIOLATION)
            room = srv.rooms[room_name] = Room(room_name)
        elif len(room.members) >= self.cfg.max_participants_per_room:
            raise ProtocolError("room_full", f"room is full ({self.cfg.max_participants_per_room} participants)",
                                close=WSCloseCode.POLICY_VIOLATION)
        me = self.me = Participant(self, room, name)
        others = room.others(me)
        room.members[me.id] = me
        log.info("%s (%s) joined room %s from %s", me.id, name, room_name, self.peer)

        self.pub_pc = self.new_pc("publisher")
        self.sub_pc = self.new_pc("subscriber")

        self.send({
            "type": "joined",
            "protocol": PROTOCOL_VERSION,
            "room": room_name,
            "participant_id": me.id,
            "participants": [p.info() for p in others],
            "ice_servers": [],
            "limits": {"max_chat_bytes": self.cfg.max_chat_bytes, "max_frame_bytes": self.cfg.max_frame_bytes},
        })
        for p in others:
            for t in p.tracks.values():
                self.send({"type": "track_published", "track": t.info()})
        for p in others:
            p.session.send({"type": "participant_joined", "participant": me.info()})
        self.request_sub_negotiation()

    def new_pc(self, target: str) -> RTCPeerConnection:
        pc = self.server.new_pc()

        @pc.on("iceconnectionstatechange")
        def on_ice() -> None:
            log.info("%s %s: ICE connection state %s", self.label(), target, pc.iceConnectionState)

        @pc.on("connectionstatechange")
        def on_conn() -> None:
            log.info("%s %s: connection state %s", self.label(), target, pc.connectionState)
            if pc.connectionState == "failed" and not self.closed:
                self.send_error("peer_failed", f"the {target} peer connection failed")
                self.close_with(WSCloseCode.POLICY_VIOLATION, "peer_failed")

        if target == "publisher":
            @pc.on("datachannel")
            def on_datachannel(channel) -> None:
                if channel.label != CHAT_LABEL or self.me is None:
                    log.info("%s: ignoring data channel %r", self.label(), channel.label)
                    return
                self.me.chat = channel

                @channel.on("message")
                def on_message(message) -> None:
                    self.on_chat(message)

        return pc

    async def on_offer(self, msg: dict) -> None:
        if msg["target"] != "publisher":
            raise ProtocolError("out_of_order", "the server makes the subscriber offers")
        me, pc = self.me, self.pub_pc
        assert me is not None and pc is not None
        sdp = msg["sdp"]
        check_sdp(sdp, "publisher offer")
        n_media = sum(1 for line in sdp.splitlines() if line.startswith(("m=audio", "m=video")))
        if n_media > self.cfg.max_tracks_per_participant:
            raise ProtocolError("too_many_tracks",
                                f"too many tracks published (limit {self.cfg.max_tracks_per_participant})")
        new_sources: list[MediaStreamTrack] = []

        def on_track(track: MediaStreamTrack) -> None:
            new_sources.append(track)

        pc.on("track", on_track)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as e:
            raise ProtocolError("bad_sdp", f"cannot apply the publisher offer: {e!r}")
        finally:
            pc.remove_listener("track", on_track)
        self.send({"type": "answer", "target": "publisher", "sdp": pc.localDescription.sdp})
        self.send({"type": "candidate", "target": "publisher", "candidate": None})
        await self.flush_candidates("publisher")

        # Tracks the client stopped sending in this offer are unpublished.
        # (`_offerDirection` is the client's direction reversed: we receive when it is
        # recvonly or sendrecv.)
        receiving = {tr.receiver.track: tr for tr in pc.getTransceivers() if tr.receiver.track is not None}
        for t in list(me.tracks.values()):
            tr = receiving.get(t.source)
            if tr is None or tr._offerDirection not in ("recvonly", "sendrecv"):
                self.unpublish(t)
        for source in new_sources:
            tr = receiving.get(source)
            codec = "unknown"
            if tr is not None:
                codecs = [c for c in tr._codecs if not c.mimeType.lower().endswith("/rtx")]
                if codecs:
                    codec = codecs[0].mimeType
            self.publish(Track(me, source.kind, codec, source))

    def publish(self, track: Track) -> None:
        me = self.me
        assert me is not None
        me.tracks[track.id] = track
        log.info("%s published %s track %s (%s)", me.id, track.kind, track.id, track.codec)
        # Always consume the source through the relay. aiortc decodes every received
        # frame into RemoteStreamTrack's unbounded queue, and MediaRelay only starts
        # reading once a proxy is read: without this sink a publisher alone in its
        # room would pile up decoded frames without limit (and the first subscriber
        # would get a burst of stale ones).
        track.sink = self.server.relay.subscribe(track.source, buffered=False)
        track.sink_task = self.spawn(drain(track.sink))

        @track.source.on("ended")
        def on_ended() -> None:
            if me.tracks.get(track.id) is track:
                self.unpublish(track)

        for p in me.room.others(me):
            p.session.send({"type": "track_published", "track": track.info()})
            p.session.request_sub_negotiation()

    def unpublish(self, track: Track) -> None:
        me = self.me
        assert me is not None
        if me.tracks.pop(track.id, None) is None:
            return
        if track.sink is not None:
            stop_proxy(track.sink)
            track.sink = None
        log.info("%s unpublished track %s", me.id, track.id)
        for p in me.room.others(me):
            p.session.send({"type": "track_unpublished", "track_id": track.id, "participant_id": me.id})
            p.session.request_sub_negotiation()

    # ------------------------------------------------------- subscriber side
    def request_sub_negotiation(self) -> None:
        if self.closed or self.me is None:
            return
        if self.sub_offer_pending:
            self.sub_dirty = True
            return
        self.sub_offer_pending = True
        self.spawn(self.negotiate_subscriber())

    def apply_sub_changes(self) -> bool:
        """Make the subscriber connection's senders match the room; True if changed."""
        me, pc = self.me, self.sub_pc
        assert me is not None and pc is not None
        wanted = {t.id: t for p in me.room.others(me) for t in p.tracks.values()}
        changed = False
        for tid in [tid for tid in self.sub if tid not in wanted]:
            transceiver, proxy = self.sub.pop(tid)
            transceiver.direction = "inactive"
            stop_proxy(proxy)
            changed = True
        for tid, t in wanted.items():
            if tid in self.sub:
                continue
            # buffered=False: a slow encoder skips to the newest frame instead of
            # queueing without bound (aiortc's own advice for live sources). Audio keeps
            # every frame.
            proxy = self.server.relay.subscribe(t.source, buffered=(t.kind == "audio"))
            proxy._id = t.id  # MediaStreamTrack.id of the track the subscriber sees
            transceiver = pc.addTransceiver(proxy, direction="sendonly")
            transceiver.sender._stream_id = t.owner.id  # MediaStream.id: the publisher
            prefs = [c for c in RTCRtpSender.getCapabilities(t.kind).codecs
                     if c.mimeType.lower() == t.codec.lower() or c.mimeType.lower() == "video/rtx"]
            if t.kind == "audio" or not prefs:
                prefs = [c for c in prefs if not c.mimeType.lower().endswith("/rtx")]
            if prefs:
                transceiver.setCodecPreferences(prefs)
            self.sub[tid] = (transceiver, proxy)
            changed = True
        return changed

    async def negotiate_subscriber(self) -> None:
        pc = self.sub_pc
        try:
            self.sub_dirty = False
            if self.closed or pc is None or not self.apply_sub_changes():
                self.sub_offer_pending = False
                return
            offer = await pc.createOffer()
            await pc.setLocalDescription(offer)
            if self.closed:
                return
            self.send({"type": "offer", "target": "subscriber", "sdp": pc.localDescription.sdp})
            log.info("%s: subscriber offer with %d tracks", self.label(), len(self.sub))
            self.send({"type": "candidate", "target": "subscriber", "candidate": None})
        except Exception as e:
            log.exception("%s: subscriber offer", self.label())
            self.sub_offer_pending = False
            self.send_error("internal", f"subscriber offer failed: {e!r}")

    async def on_answer(self, msg: dict) -> None:
        if msg["target"] != "subscriber":
            raise ProtocolError("out_of_order", "the client makes the publisher offers")
        pc = self.sub_pc
        assert pc is not None
        if not self.sub_offer_pending or pc.signalingState != "have-local-offer":
            raise ProtocolError("out_of_order", "no subscriber offer is pending")
        check_sdp(msg["sdp"], "subscriber answer")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
        except Exception as e:
            raise ProtocolError("bad_sdp", f"cannot apply the subscriber answer: {e!r}")
        self.sub_offer_pending = False
        await self.flush_candidates("subscriber")
        if self.sub_dirty:
            self.request_sub_negotiation()

    # ------------------------------------------------------------ candidates
    def remote_applied(self, target: str) -> bool:
        pc = self.pub_pc if target == "publisher" else self.sub_pc
        if pc is None or pc.remoteDescription is None:
            return False
        return not (target == "subscriber" and pc.signalingState == "have-local-offer")

    async def on_candidate(self, msg: dict) -> None:
        target, cand = msg["target"], msg["candidate"]
        if not self.remote_applied(target):
            self.pending_candidates[target].append(cand)
            return
        await self.add_candidate(target, cand)

    async def flush_candidates(self, target: str) -> None:
        pending, self.pending_candidates[target] = self.pending_candidates[target], []
        for cand in pending:
            try:
                await self.add_candidate(target, cand)
            except ProtocolError as e:
                self.send_error(e.code, e.message)

    async def add_candidate(self, target: str, cand: Optional[dict]) -> None:
        pc = self.pub_pc if target == "publisher" else self.sub_pc
        assert pc is not None
        try:
            line = "" if cand is None else cand["candidate"]
            if line.startswith("candidate:"):
                line = line[len("candidate:"):]
            if not line.strip():
                await pc.addIceCandidate(None)  # end of candidates
                return
            c = candidate_from_sdp(line)
            c.sdpMid = cand.get("sdpMid")
            c.sdpMLineIndex = cand.get("sdpMLineIndex")
            if c.sdpMid is None and c.sdpMLineIndex is None:
                c.sdpMLineIndex = 0
            await pc.addIceCandidate(c)
        except Exception as e:
            raise ProtocolError("bad_candidate", f"candidate refused: {e!r}")

    # ------------------------------------------------------------------ mute
    async def on_mute(self, msg: dict) -> None:
        me = self.me
        assert me is not None
        if msg["kind"] == "audio":
            me.audio_muted = msg["muted"]
        else:
            me.video_muted = msg["muted"]
        for p in me.room.others(me):
            p.session.send({"type": "participant_updated", "participant": me.info()})

    # ------------------------------------------------------------------ chat
    def on_chat(self, message: Any) -> None:
        me = self.me
        if me is None or self.closed:
            return
        raw = message.encode() if isinstance(message, str) else bytes(message)
        if len(raw) > self.cfg.max_chat_bytes:
            self.send_error("message_too_large", f"chat message over {self.cfg.max_chat_bytes} bytes")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self.send_error("bad_message", "a chat message must be JSON")
            return
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            self.send_error("bad_message", "a chat message needs `text`")
            return
        to = body.get("to")
        out = {"from": me.id, "name": me.name, "text": body["text"], "ts": now_ms()}
        if to is not None:
            target = me.room.members.get(to) if isinstance(to, str) else None
            if target is None or target is me:
                self.send_error("bad_message", "chat to an unknown participant")
                return
            out["to"] = to
            recipients = [target]
        else:
            recipients = me.room.others(me)
        text = json.dumps(out, separators=(",", ":"))
        for p in recipients:
            if p.chat is not None and p.chat.readyState == "open":
                p.chat.send(text)

    # -------------------------------------------------------------- teardown
    async def teardown(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        me = self.me
        if me is not None:
            room = me.room
            for t in list(me.tracks.values()):
                self.unpublish(t)
            room.members.pop(me.id, None)
            for p in room.others(me):
                p.session.send({"type": "participant_left", "participant_id": me.id})
            if not room.members and self.server.rooms.get(room.name) is room:
                del self.server.rooms[room.name]
            log.info("%s left room %s", me.id, room.name)
        for _, proxy in self.sub.values():
            stop_proxy(proxy)
        self.sub.clear()
        await self.server.close_pc(self.pub_pc)
        await self.server.close_pc(self.sub_pc)


async def drain(track: MediaStreamTrack) -> None:
    """Read and drop frames until the track ends."""
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        pass


def stop_proxy(proxy: MediaStreamTrack) -> None:
    """Stop a MediaRelay proxy and wake the sender blocked in its recv(), so the
    sender's RTP loop ends instead of waiting forever."""
    proxy.stop()
    if getattr(proxy, "_buffered", True):
        if proxy._queue is not None:
            proxy._queue.put_nowait(None)
    else:
        proxy._frame = None
        proxy._new_frame_event.set()


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    server: Server = request.app["server"]
    cfg = server.cfg
    # autoping off: we answer pings ourselves and count pongs as signs of life, as
    # Plaza does (drop after heartbeat_timeout of silence).
    ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=cfg.max_frame_bytes)
    await ws.prepare(request)
    session = Session(server, ws, request.remote or "?")
    server.sessions.add(session)
    writer = asyncio.ensure_future(session.writer())
    heartbeat = asyncio.ensure_future(session.heartbeat())
    try:
        async for msg in ws:
            session.last_seen = time.monotonic()
            if msg.type == WSMsgType.TEXT:
                await session.handle_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                session.send_error("bad_message", "binary frames are not supported")
            elif msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                pass
            elif msg.type == WSMsgType.ERROR:
                log.info("%s: websocket error %s", session.label(), ws.exception())
                break
    finally:
        heartbeat.cancel()
        await session.teardown()
        writer.cancel()
        server.sessions.discard(session)
    return ws


async def on_shutdown(app: web.Application) -> None:
    server: Server = app["server"]
    for session in list(server.sessions):
        session.send_error("server_shutdown", "the server is shutting down")
        session.close_with(WSCloseCode.GOING_AWAY, "server_shutdown")
    await asyncio.sleep(0.2)
    for session in list(server.sessions):
        await session.teardown()
    await asyncio.gather(*(pc.close() for pc in list(server.pcs)), return_exceptions=True)
    server.pcs.clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--ice-addresses", default="127.0.0.1",
                    help="comma-separated host addresses aioice gathers on (default 127.0.0.1)")
    ap.add_argument("--max-rooms", type=int, default=1000)
    ap.add_argument("--max-participants-per-room", type=int, default=64)
    ap.add_argument("--max-tracks-per-participant", type=int, default=4)
    ap.add_argument("--max-chat-bytes", type=int, default=16 * 1024)
    ap.add_argument("--max-frame-bytes", type=int, default=64 * 1024)
    ap.add_argument("--heartbeat-interval", type=float, default=5.0)
    ap.add_argument("--heartbeat-timeout", type=float, default=15.0)
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args()

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("aioice").setLevel(logging.WARNING)  # one INFO line per ICE check otherwise
    patch_aioice_host_addresses([a.strip() for a in args.ice_addresses.split(",") if a.strip()])

    app = web.Application()
    app["server"] = Server(Config(args))
    app.router.add_get("/ws", ws_handler)
    app.on_shutdown.append(on_shutdown)
    log.info("plaza aiortc baseline on ws://%s:%d/ws", args.host, args.port)
    web.run_app(app, host=args.host, port=args.port, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
