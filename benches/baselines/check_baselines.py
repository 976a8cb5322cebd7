#!/usr/bin/env python3
"""Proves that the two benchmark baselines relay media, and gives a first CPU figure.

For each baseline (the aiortc relay speaking Plaza protocol v1, and Janus VideoRoom)
this starts the server, connects N participants (default 3) that each publish a
generated VP8 video track and an Opus audio track, checks that every participant
receives decoded frames from every other participant (and, on the aiortc baseline, that
stream/track ids are the publisher's participant id / the announced track id, and that
chat is relayed), reads the server's CPU from /proc/PID/stat over a window, then stops
everything.

Run it inside a loopback-only network namespace (after the one-off setup, which needs
the network):

    benches/baselines/aiortc/run.sh --setup-only       # venv with aiortc (pip)
    benches/baselines/janus/run.sh --setup-only        # apt-get install janus, shim
    unshare -n sh -c 'ip link set lo up && python3 benches/baselines/check_baselines.py'

It re-executes itself with target/baselines/venv/bin/python when aiortc is not
importable. Exit status 0 when every check passed.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(ROOT, "target", "baselines", "venv")
VENV_PY = os.path.join(VENV, "bin", "python")

try:
    import aiohttp  # noqa: F401
    import aiortc  # noqa: F401
except ImportError:
    if os.path.exists(VENV_PY) and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__), *sys.argv[1:]])
    sys.exit("aiortc is missing: run benches/baselines/aiortc/run.sh --setup-only first (outside the namespace)")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import collections  # noqa: E402
import fractions  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any, Optional  # noqa: E402

import aiortc.codecs.vpx  # noqa: E402
import av  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack  # noqa: E402
from aiortc.rtcconfiguration import RTCBundlePolicy  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(HERE, "aiortc"))
from server import patch_aioice_host_addresses  # noqa: E402  (the baseline's own patch)

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_DIR = os.path.join(ROOT, "target", "baselines", "logs")


# ------------------------------------------------------------------ test media
class PatternVideo(VideoStreamTrack):
    """Moving luma bars, a colour per participant, paced at 30 fps by VideoStreamTrack."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        super().__init__()
        self.frames = []
        for i in range(30):
            f = av.VideoFrame(width, height, "yuv420p")
            for idx, plane in enumerate(f.planes):
                w = plane.width
                rows = plane.height
                pad = bytes(plane.line_size - w)
                if idx == 0:
                    row = bytes(((x * 4 + i * 9) & 0xFF) for x in range(w)) + pad
                    data = b"".join(row if (y // 16 + i) % 2 else bytes(x ^ 0x55 for x in row) for y in range(rows))
                else:
                    data = (bytes([(seed * 70 + idx * 50 + i) & 0xFF]) * w + pad) * rows
                plane.update(data)
            self.frames.append(f)
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        src = self.frames[self.n % len(self.frames)]
        self.n += 1
        frame = av.VideoFrame(src.width, src.height, "yuv420p")
        for dst, s in zip(frame.planes, src.planes):
            dst.update(bytes(s))
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneAudio(MediaStreamTrack):
    """A 400 Hz tone, 48 kHz mono, 20 ms frames (50 packets/s once Opus-encoded)."""

    kind = "audio"
    RATE = 48000
    SAMPLES = 960

    def __init__(self) -> None:
        super().__init__()
        pcm = [int(8000 * math.sin(2 * math.pi * 400 * n / self.RATE)) for n in range(self.SAMPLES)]
        self.pcm = b"".join(v.to_bytes(2, "little", signed=True) for v in pcm)
        self._start: Optional[float] = None
        self._ts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._ts += self.SAMPLES
            await asyncio.sleep(self._start + self._ts / self.RATE - time.time())
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(self.pcm)
        frame.pts = self._ts
        frame.sample_rate = self.RATE
        frame.time_base = fractions.Fraction(1, self.RATE)
        return frame


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


def msid_by_mid(sdp: str) -> dict[str, tuple[str, str]]:
    """mid -> (stream id, track id) from the a=msid lines of each media section."""
    out: dict[str, tuple[str, str]] = {}
    mid = msid = None
    for line in sdp.splitlines() + ["m=end"]:
        if line.startswith("m="):
            if mid is not None and msid is not None:
                out[mid] = msid
            mid = msid = None
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=msid:"):
            bits = line[7:].split()
            if len(bits) >= 2:
                msid = (bits[0], bits[1])
    return out


class Receiving:
    """Counts decoded frames per received track; key = (publisher, track, kind)."""

    def __init__(self) -> None:
        self.frames: collections.Counter = collections.Counter()
        self.receivers: dict[tuple, Any] = {}
        self.tasks: list[asyncio.Task] = []
        self.seen: set[int] = set()

    def attach(self, key: tuple, transceiver) -> None:
        track = transceiver.receiver.track
        if track is None or id(track) in self.seen:
            return
        self.seen.add(id(track))
        self.receivers[key] = transceiver.receiver
        self.tasks.append(asyncio.ensure_future(self._consume(key, track)))

    async def _consume(self, key: tuple, track) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            self.frames[key] += 1

    async def packets(self) -> collections.Counter:
        """RTP packets received so far, by kind."""
        total: collections.Counter = collections.Counter()
        for key, r in self.receivers.items():
            for s in (await r.getStats()).values():
                if getattr(s, "type", "") == "inbound-rtp":
                    total[key[2]] += s.packetsReceived
        return total

    def stop(self) -> None:
        for t in self.tasks:
            t.cancel()


async def sent_counts(pc: RTCPeerConnection) -> collections.Counter:
    """RTP packets and bytes sent so far on a publisher connection, by kind."""
    total: collections.Counter = collections.Counter()
    for sender in pc.getSenders():
        for s in (await sender.getStats()).values():
            if getattr(s, "type", "") == "outbound-rtp":
                total[s.kind + "_pkts"] += s.packetsSent
                total[s.kind + "_bytes"] += s.bytesSent
    return total


# ------------------------------------------------------ Plaza protocol client
class PlazaClient:
    def __init__(self, url: str, room: str, name: str, seed: int, args) -> None:
        self.url, self.room, self.name = url, room, name
        self.video = PatternVideo(args.width, args.height, seed)
        self.audio = ToneAudio()
        self.pid: Optional[str] = None
        self.peers: dict[str, str] = {}
        self.tracks: dict[str, dict] = {}  # announced by track_published
        self.errors: list[dict] = []
        self.chat_in: list[dict] = []
        self.rx = Receiving()
        self.joined = asyncio.Event()
        self.pub = new_pc()
        self.sub = new_pc()
        self.chat = None
        self.sub_offers = 0
        self.unpublished: list[str] = []
        self.left: list[str] = []

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.ws = await http.ws_connect(self.url)
        self.reader = asyncio.ensure_future(self.read_loop())
        await self.send({"type": "join", "room": self.room, "name": self.name})
        await asyncio.wait_for(self.joined.wait(), 10)

    async def send(self, msg: dict) -> None:
        await self.ws.send_str(json.dumps(msg))

    async def read_loop(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            m = json.loads(msg.data)
            try:
                await self.on_message(m)
            except Exception as e:  # keep reading; the checks will fail visibly
                self.errors.append({"client_exception": repr(e), "msg_type": m.get("type")})

    async def on_message(self, m: dict) -> None:
        t = m["type"]
        if t == "joined":
            self.pid = m["participant_id"]
            self.peers.update({p["id"]: p["name"] for p in m["participants"]})
            self.pub.addTransceiver(self.audio, direction="sendonly")
            self.pub.addTransceiver(self.video, direction="sendonly")
            # The data channel after the transceivers: with max-bundle, an aiortc
            # *offerer* that creates the channel first stops its only ICE transport when
            # the answer arrives (aiortc 1.16 __createSctpTransport marks the SCTP
            # transport unbundled, then treats it as a bundle slave). The aiortc server
            # as answerer is not affected, whatever the m-line order of the offer.
            self.chat = self.pub.createDataChannel("chat")
            self.chat.on("message", lambda data: self.chat_in.append(json.loads(data)))
            await self.pub.setLocalDescription(await self.pub.createOffer())
            await self.send({"type": "offer", "target": "publisher", "sdp": self.pub.localDescription.sdp})
            await self.trickle("publisher", self.pub.localDescription.sdp)
            self.joined.set()
        elif t == "answer":
            await self.pub.setRemoteDescription(RTCSessionDescription(m["sdp"], "answer"))
        elif t == "offer":
            self.sub_offers += 1
            await self.sub.setRemoteDescription(RTCSessionDescription(m["sdp"], "offer"))
            ids = msid_by_mid(m["sdp"])
            for tr in self.sub.getTransceivers():
                if tr.mid in ids and tr.receiver.track is not None:
                    stream_id, track_id = ids[tr.mid]
                    self.rx.attach((stream_id, track_id, tr.kind), tr)
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            await self.send({"type": "answer", "target": "subscriber", "sdp": self.sub.localDescription.sdp})
            await self.trickle("subscriber", self.sub.localDescription.sdp)
        elif t == "track_published":
            self.tracks[m["track"]["id"]] = m["track"]
        elif t == "track_unpublished":
            self.unpublished.append(m["track_id"])
        elif t == "participant_joined":
            self.peers[m["participant"]["id"]] = m["participant"]["name"]
        elif t == "participant_left":
            self.left.append(m["participant_id"])
        elif t == "error":
            self.errors.append(m)

    async def trickle(self, target: str, sdp: str) -> None:
        """aiortc puts its candidates in the SDP; send them again the browser way
        (trickle, then end-of-candidates) to exercise the server's candidate path."""
        ufrag = next((line[12:] for line in sdp.splitlines() if line.startswith("a=ice-ufrag:")), None)
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                await self.send({"type": "candidate", "target": target,
                                 "candidate": {"candidate": line[2:], "sdpMid": "0", "sdpMLineIndex": 0,
                                               "usernameFragment": ufrag}})
                break  # BUNDLE: the candidates repeat in every media section
        await self.send({"type": "candidate", "target": target, "candidate": None})

    def check(self, others: list["PlazaClient"], min_video: int, min_audio: int) -> list[str]:
        problems = []
        for o in others:
            for kind, minimum in (("video", min_video), ("audio", min_audio)):
                keys = [k for k in self.rx.frames if k[0] == o.pid and k[2] == kind]
                if not keys:
                    problems.append(f"{self.name}: no {kind} track with stream id {o.pid} ({o.name})")
                    continue
                for k in keys:
                    tinfo = self.tracks.get(k[1])
                    if tinfo is None or tinfo["participant_id"] != o.pid or tinfo["kind"] != kind:
                        problems.append(f"{self.name}: track id {k[1]} not announced for {o.pid}/{kind}")
                    if self.rx.frames[k] < minimum:
                        problems.append(f"{self.name}: only {self.rx.frames[k]} {kind} frames from {o.name}")
        if self.errors:
            problems.append(f"{self.name}: errors {self.errors}")
        return problems

    async def close(self) -> None:
        self.rx.stop()
        try:
            await self.send({"type": "leave"})
        except Exception:
            pass
        await self.ws.close()
        self.reader.cancel()
        await self.pub.close()
        await self.sub.close()


# ------------------------------------------------------------ Janus client
class JanusClient:
    """Speaks the Janus API over WebSocket (subprotocol janus-protocol): a publisher
    handle and one multistream subscriber handle per participant."""

    def __init__(self, url: str, room: int, name: str, seed: int, args, transcript=None) -> None:
        self.url, self.room, self.name = url, room, name
        self.video = PatternVideo(args.width, args.height, seed)
        self.audio = ToneAudio()
        self.transcript = transcript
        self.pending: dict[str, asyncio.Future] = {}
        self.pub = new_pc()
        self.sub = new_pc()
        self.rx = Receiving()
        self.errors: list[Any] = []
        self.feeds: dict[int, str] = {}  # publisher id -> display, known from events
        self.subscribed: set[int] = set()
        self.sub_handle: Optional[int] = None
        self.sub_wake = asyncio.Event()
        self.sub_lock = asyncio.Lock()
        self.tasks: list[asyncio.Task] = []
        self.my_id: Optional[int] = None
        self.webrtcup = 0

    def log(self, direction: str, msg: dict) -> None:
        if self.transcript is not None:
            shown = json.loads(json.dumps(msg))
            jsep = shown.get("jsep")
            if isinstance(jsep, dict) and len(jsep.get("sdp", "")) > 80:
                full = msg["jsep"]["sdp"]
                jsep["sdp"] = full[:40] + f"...({len(full)} chars; m-lines: " + "; ".join(
                    line for line in full.splitlines() if line.startswith(("m=", "a=mid:", "a=msid:"))) + ")"
            self.transcript.write(f"{direction} {json.dumps(shown)}\n")

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.ws = await http.ws_connect(self.url, protocols=("janus-protocol",))
        self.tasks.append(asyncio.ensure_future(self.read_loop()))
        r = await self.call({"janus": "create"})
        self.session_id = r["data"]["id"]
        self.tasks.append(asyncio.ensure_future(self.keepalive()))
        self.pub_handle = (await self.call({"janus": "attach", "plugin": "janus.plugin.videoroom"}))["data"]["id"]
        ev = await self.message(self.pub_handle, {"request": "join", "ptype": "publisher", "room": self.room,
                                                  "display": self.name})
        data = ev["plugindata"]["data"]
        if data.get("videoroom") != "joined":
            raise RuntimeError(f"join failed: {data}")
        self.my_id, self.private_id = data["id"], data["private_id"]
        self.on_publishers(data.get("publishers", []))
        self.tasks.append(asyncio.ensure_future(self.subscriber_loop()))
        # publish audio + video (the "publish" request; "configure" with a JSEP works too)
        self.pub.addTransceiver(self.audio, direction="sendonly")
        self.pub.addTransceiver(self.video, direction="sendonly")
        await self.pub.setLocalDescription(await self.pub.createOffer())
        ev = await self.message(self.pub_handle, {"request": "publish", "audio": True, "video": True,
                                                  "display": self.name},
                                jsep={"type": "offer", "sdp": self.pub.localDescription.sdp})
        if "jsep" not in ev:
            raise RuntimeError(f"publish failed: {ev}")
        await self.pub.setRemoteDescription(RTCSessionDescription(ev["jsep"]["sdp"], ev["jsep"]["type"]))
        await self.trickle_done(self.pub_handle)

    async def send(self, msg: dict) -> None:
        self.log(">>", msg)
        await self.ws.send_str(json.dumps(msg))

    async def call(self, msg: dict, handle: Optional[int] = None) -> dict:
        tx = secrets.token_hex(6)
        msg = dict(msg, transaction=tx)
        if getattr(self, "session_id", None) is not None:
            msg["session_id"] = self.session_id
        if handle is not None:
            msg["handle_id"] = handle
        fut = asyncio.get_running_loop().create_future()
        self.pending[tx] = fut
        await self.send(msg)
        reply = await asyncio.wait_for(fut, 20)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus error: {reply}")
        return reply

    async def message(self, handle: int, body: dict, jsep: Optional[dict] = None) -> dict:
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = await self.call(msg, handle)
        data = reply.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise RuntimeError(f"videoroom error: {data}")
        return reply

    async def trickle_done(self, handle: int) -> None:
        # aiortc puts every candidate in the SDP; tell Janus there are no more.
        await self.send({"janus": "trickle", "candidate": {"completed": True}, "transaction": secrets.token_hex(6),
                         "session_id": self.session_id, "handle_id": handle})

    async def keepalive(self) -> None:
        while True:  # Janus drops a session after 60 s (session_timeout) without a request
            await self.send({"janus": "keepalive", "session_id": self.session_id, "transaction": secrets.token_hex(6)})
            await asyncio.sleep(25)

    async def read_loop(self) -> None:
        async for raw in self.ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(raw.data)
            self.log("<<", msg)
            kind = msg.get("janus")
            fut = self.pending.get(msg.get("transaction", ""))
            if kind == "ack":
                continue
            if fut is not None and kind in ("success", "error", "event") and not fut.done():
                del self.pending[msg["transaction"]]
                fut.set_result(msg)
                continue
            if kind == "event":
                asyncio.ensure_future(self.on_event(msg))
            elif kind == "webrtcup":
                self.webrtcup += 1
            elif kind in ("hangup", "detached", "timeout"):
                self.errors.append(msg)

    async def on_event(self, msg: dict) -> None:
        data = msg.get("plugindata", {}).get("data", {})
        sender = msg.get("sender")
        try:
            if sender == self.pub_handle and "publishers" in data:
                self.on_publishers(data["publishers"])
            elif sender == self.sub_handle and "jsep" in msg:
                await self.answer_subscriber(msg)  # e.g. a postponed or automatic update
        except Exception as e:
            self.errors.append(repr(e))

    def on_publishers(self, publishers: list[dict]) -> None:
        for p in publishers:
            if p["id"] != self.my_id:
                self.feeds[p["id"]] = p.get("display", "")
        self.sub_wake.set()

    async def subscriber_loop(self) -> None:
        """Subscribe to every known feed with one multistream subscriber handle; one
        request at a time (Janus postpones overlapping renegotiations anyway)."""
        while True:
            await self.sub_wake.wait()
            self.sub_wake.clear()
            new = [f for f in self.feeds if f not in self.subscribed]
            if not new:
                continue
            streams = [{"feed": f} for f in new]
            try:
                if self.sub_handle is None:
                    self.sub_handle = (await self.call({"janus": "attach", "plugin": "janus.plugin.videoroom"}))["data"]["id"]
                    ev = await self.message(self.sub_handle, {"request": "join", "ptype": "subscriber", "room": self.room,
                                                              "private_id": self.private_id, "use_msid": True,
                                                              "streams": streams})
                else:
                    ev = await self.message(self.sub_handle, {"request": "subscribe", "streams": streams})
                self.subscribed.update(new)
                if "jsep" in ev:
                    await self.answer_subscriber(ev)
            except Exception as e:
                self.errors.append(repr(e))

    async def answer_subscriber(self, ev: dict) -> None:
        async with self.sub_lock:
            data = ev["plugindata"]["data"]
            by_mid = {s["mid"]: s for s in data.get("streams", []) if "feed_id" in s}
            await self.sub.setRemoteDescription(RTCSessionDescription(ev["jsep"]["sdp"], ev["jsep"]["type"]))
            for tr in self.sub.getTransceivers():
                s = by_mid.get(tr.mid)
                if s is not None:
                    self.rx.attach((s["feed_id"], s.get("feed_mid"), tr.kind), tr)
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            await self.message(self.sub_handle, {"request": "start"},
                               jsep={"type": "answer", "sdp": self.sub.localDescription.sdp})
            await self.trickle_done(self.sub_handle)

    def check(self, others: list["JanusClient"], min_video: int, min_audio: int) -> list[str]:
        problems = []
        for o in others:
            for kind, minimum in (("video", min_video), ("audio", min_audio)):
                keys = [k for k in self.rx.frames if k[0] == o.my_id and k[2] == kind]
                if not keys:
                    problems.append(f"{self.name}: no {kind} stream from feed {o.my_id} ({o.name})")
                for k in keys:
                    if self.rx.frames[k] < minimum:
                        problems.append(f"{self.name}: only {self.rx.frames[k]} {kind} frames from {o.name}")
        if self.errors:
            problems.append(f"{self.name}: errors {self.errors}")
        return problems

    async def close(self) -> None:
        self.rx.stop()
        try:
            await self.send({"janus": "destroy", "session_id": self.session_id, "transaction": secrets.token_hex(6)})
        except Exception:
            pass
        for t in self.tasks:
            t.cancel()
        await self.ws.close()
        await self.pub.close()
        await self.sub.close()


# ------------------------------------------------------------------ harness
def proc_cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


async def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port}")


def stop_proc(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_baseline(name: str, args) -> bool:
    os.makedirs(LOG_DIR, exist_ok=True)
    log_path = os.path.join(LOG_DIR, f"{name}.log")
    transcript = None
    if name == "aiortc":
        port = args.aiortc_port
        cmd = [os.path.join(HERE, "aiortc", "run.sh"), "--port", str(port)]
    else:
        port = args.janus_port
        cmd = [os.path.join(HERE, "janus", "run.sh"), "--port", str(port)]
        transcript = open(os.path.join(LOG_DIR, "janus-ws-transcript.txt"), "w")
    print(f"\n=== {name}: starting {' '.join(cmd)} (log {os.path.relpath(log_path, ROOT)})", flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    clients: list = []
    ok = False
    try:
        await wait_port(port, proc)
        idle0 = proc_cpu_ticks(proc.pid)
        await asyncio.sleep(2)
        idle_cpu = (proc_cpu_ticks(proc.pid) - idle0) / CLK_TCK / 2
        print(f"server pid {proc.pid}, idle CPU {idle_cpu * 100:.1f}%, RSS {proc_rss_kib(proc.pid) / 1024:.1f} MiB",
              flush=True)
        async with aiohttp.ClientSession() as http:
            t0 = time.monotonic()
            for i in range(args.participants):
                if name == "aiortc":
                    c = PlazaClient(f"ws://127.0.0.1:{port}/ws", "check", f"user{i}", i, args)
                else:
                    c = JanusClient(f"ws://127.0.0.1:{port}", args.janus_room, f"user{i}", i, args,
                                    transcript if i == 0 else None)
                await c.start(http)
                clients.append(c)
                print(f"  {c.name} joined at +{time.monotonic() - t0:.1f}s "
                      f"(id {c.pid if name == 'aiortc' else c.my_id})", flush=True)

            # wait until every participant decodes frames from every other one
            deadline = time.monotonic() + args.timeout
            while True:
                problems = [p for c in clients for p in c.check([o for o in clients if o is not c],
                                                                args.min_video_frames, args.min_audio_frames)]
                if not problems or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            print(f"  media flowing everywhere after {time.monotonic() - t0:.1f}s" if not problems
                  else f"  timed out after {args.timeout}s", flush=True)

            # CPU window, at steady state
            me = os.getpid()
            f0 = {c.name: sum(c.rx.frames.values()) for c in clients}
            p0 = sum([await c.rx.packets() for c in clients], collections.Counter())
            q0 = sum([await sent_counts(c.pub) for c in clients], collections.Counter())
            s0, m0, w0 = proc_cpu_ticks(proc.pid), proc_cpu_ticks(me), time.monotonic()
            await asyncio.sleep(args.cpu_window)
            s1, m1, w1 = proc_cpu_ticks(proc.pid), proc_cpu_ticks(me), time.monotonic()
            p1 = sum([await c.rx.packets() for c in clients], collections.Counter())
            q1 = sum([await sent_counts(c.pub) for c in clients], collections.Counter())
            wall = w1 - w0
            server_cpu = (s1 - s0) / CLK_TCK
            rx, tx = p1 - p0, q1 - q0
            pkts = sum(rx.values())
            fan = args.participants - 1
            print(f"  CPU window {wall:.1f}s: server {server_cpu / wall * 100:.1f}% of one core "
                  f"({server_cpu:.2f} s CPU), RSS {proc_rss_kib(proc.pid) / 1024:.1f} MiB, "
                  f"{proc_threads(proc.pid)} threads; check client {(m1 - m0) / CLK_TCK / wall * 100:.1f}%", flush=True)
            for kind in ("audio", "video"):
                print(f"  {kind}: publishers sent {tx[kind + '_pkts'] / wall:.0f} pkt/s "
                      f"({tx[kind + '_bytes'] * 8 / wall / 1000 / args.participants:.0f} kbit/s each); "
                      f"subscribers received {rx[kind] / wall:.0f} pkt/s "
                      f"(a pure forwarder would deliver {tx[kind + '_pkts'] * fan / wall:.0f})", flush=True)
            print(f"  packets received by all subscribers: {pkts} ({pkts / wall:.0f}/s) -> "
                  f"{server_cpu * 1e6 / max(pkts, 1):.0f} us server CPU per delivered packet", flush=True)
            for c in clients:
                per = collections.defaultdict(int)
                for k, v in c.rx.frames.items():
                    per[(k[0], k[2])] += v
                fps = (sum(c.rx.frames.values()) - f0[c.name]) / wall
                shown = ", ".join(f"{src}/{kind}={n}" for (src, kind), n in sorted(per.items(), key=str))
                print(f"  {c.name}: decoded frames {shown}; {fps:.0f} frames/s in window", flush=True)

            if name == "aiortc":
                # chat: everyone says hello; everyone hears the two others, never itself
                for c in clients:
                    c.chat.send(json.dumps({"text": f"hello from {c.name}"}))
                await asyncio.sleep(1.5)
                for c in clients:
                    got = sorted((m["from"], m["name"], m["text"]) for m in c.chat_in)
                    want = sorted((o.pid, o.name, f"hello from {o.name}") for o in clients if o is not c)
                    if got != want or any("ts" not in m for m in c.chat_in):
                        problems.append(f"{c.name}: chat got {c.chat_in}, wanted {want}")
                print(f"  chat: {sum(len(c.chat_in) for c in clients)} messages relayed", flush=True)
                print(f"  subscriber offers per participant: {[c.sub_offers for c in clients]}", flush=True)
                # the last one leaves: the others get track_unpublished x2, participant_left
                # and a subscriber offer that removes the tracks, which they answer
                gone = clients.pop()
                offers_before = [c.sub_offers for c in clients]
                await gone.close()
                await asyncio.sleep(1.5)
                for c, before in zip(clients, offers_before):
                    gone_tracks = {k[1] for k in c.rx.frames if k[0] == gone.pid}
                    if set(c.unpublished) != gone_tracks or c.left != [gone.pid] or c.sub_offers <= before \
                            or c.sub.signalingState != "stable" or c.errors:
                        problems.append(f"{c.name}: after {gone.name} left: unpublished {c.unpublished}, "
                                        f"left {c.left}, offers {before}->{c.sub_offers}, errors {c.errors}")
                print(f"  {gone.name} left: others got track_unpublished/participant_left and answered the "
                      f"re-offer: {[c.sub_offers for c in clients]} offers", flush=True)
            else:
                print(f"  webrtcup events per participant: {[c.webrtcup for c in clients]}", flush=True)

            for p in problems:
                print(f"  FAIL {p}", flush=True)
            # leave one by one, last joined first (user0 then sees the others leave)
            for c in reversed(clients):
                await c.close()
                await asyncio.sleep(0.5)
            clients = []
            ok = not problems
    except Exception as e:
        print(f"  FAIL {name}: {e!r}", flush=True)
    finally:
        for c in clients:
            try:
                await c.close()
            except Exception:
                pass
        stop_proc(proc)
        if transcript is not None:
            transcript.close()
    print(f"=== {name}: {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("aiortc", "janus"))
    ap.add_argument("--participants", type=int, default=3)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--video-bitrate", type=int, default=1_500_000,
                    help="start bitrate of the test clients' VP8 encoders (aiortc's default is 500 kbit/s)")
    ap.add_argument("--timeout", type=float, default=45, help="seconds to wait for media everywhere")
    ap.add_argument("--min-video-frames", type=int, default=30)
    ap.add_argument("--min-audio-frames", type=int, default=25)
    ap.add_argument("--cpu-window", type=float, default=10)
    ap.add_argument("--aiortc-port", type=int, default=8090)
    ap.add_argument("--janus-port", type=int, default=8188)
    ap.add_argument("--janus-room", type=int, default=1234)
    args = ap.parse_args()

    patch_aioice_host_addresses(["127.0.0.1"])
    aiortc.codecs.vpx.DEFAULT_BITRATE = args.video_bitrate  # read by each new Vp8Encoder
    print(f"participants {args.participants}, test video {args.width}x{args.height} 30 fps VP8 "
          f"(start bitrate {args.video_bitrate} bit/s), audio Opus 48 kHz 20 ms; {os.cpu_count()} CPUs", flush=True)
    results = {}
    for name in ("aiortc", "janus"):
        if args.only in (None, name):
            results[name] = await run_baseline(name, args)
    print("\nsummary: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
