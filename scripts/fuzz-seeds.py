#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (see fuzz/README.md).

- fuzz/corpus/decode/: every JSON example of docs/protocol.md (the lines of its ```json
  blocks and its inline `{...}` objects), plus a few edge cases.
- fuzz/corpus/signalling/: whole sessions in the signalling harness's input format
  (src/fuzzing.rs): a flags byte, then steps separated by 0xFF.

Seeds are named seed-*, so re-running replaces them and leaves the fuzzer's own files.
Room tokens are HS256 JWTs signed with plaza::fuzzing::SECRET, expiring in 2100.
"""
import base64
import hashlib
import hmac
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"
CORPUS = ROOT / "fuzz" / "corpus"
SECRET = b"plaza-fuzz-secret"  # = plaza::fuzzing::SECRET
EXP = 4102444800  # 2100-01-01


def doc_examples():
    text = DOC.read_text()
    found = []
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        found += [line for line in block.splitlines() if line.strip()]
    found += re.findall(r"`(\{[^`]*\})`", text)
    # Keep only what is JSON in the document (some inline objects are sketches).
    examples = []
    for e in found:
        try:
            json.loads(e)
        except ValueError:
            continue
        if e not in examples:
            examples.append(e)
    return examples


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(room, **claims):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"room": room, "sub": "user-1", "exp": EXP, **claims}).encode())
    signature = hmac.new(SECRET, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def msg(**fields):
    return json.dumps(fields, separators=(",", ":")).encode()


AV = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
CHAT_ONLY = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
RECV_ONLY = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\n"
THREE = AV + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
ONE_SENDING = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n"

JOIN = msg(type="join", room="demo", name="Ann")
OFFER = msg(type="offer", target="publisher", sdp=AV)
ANSWER = msg(type="answer", target="subscriber", sdp="v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n")
CANDIDATE = msg(
    type="candidate",
    target="publisher",
    candidate={"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "abcd"},
)
END_OF_CANDIDATES = msg(type="candidate", target="subscriber", candidate=None)
MUTE = msg(type="mute", kind="video", muted=True)
PING = msg(type="ping")
LEAVE = msg(type="leave")

# Harness events (src/fuzzing.rs).
def tick(n=None):
    return bytes([0x01] if n is None else [0x01, n])


def room_changed(has_tracks=True, offer_fails=False):
    return bytes([0x02, int(has_tracks) | (2 if offer_fails else 0)])


def failing(frame):
    return b"\x03" + frame


def later(frame):
    return b"\x04" + frame


LATER_OK, LATER_FAIL = b"\x05", b"\x06"
OPEN, TOKENS, TIGHT = 0, 1, 2


def session(flags, *steps):
    return bytes([flags]) + b"\xff".join(steps)


SESSIONS = {
    "open-full": session(
        OPEN, JOIN, OFFER, CANDIDATE, room_changed(), room_changed(), ANSWER, ANSWER,
        room_changed(False), ANSWER, MUTE, END_OF_CANDIDATES, PING, tick(50), LEAVE,
    ),
    "open-out-of-order": session(
        OPEN, LEAVE, OFFER, ANSWER, MUTE, PING, JOIN, JOIN,
        msg(type="offer", target="subscriber", sdp="v=0"),
        msg(type="answer", target="publisher", sdp="v=0"), ANSWER,
    ),
    "open-join-fails-then-retry": session(OPEN, failing(JOIN), MUTE, JOIN, MUTE),
    "open-join-later": session(OPEN, later(JOIN), PING, MUTE, JOIN, LATER_OK, MUTE, room_changed(), ANSWER),
    "open-join-later-fails": session(OPEN, later(JOIN), LATER_FAIL, JOIN),
    "open-answer-fails-and-later": session(
        OPEN, JOIN, room_changed(False), room_changed(), failing(ANSWER), later(ANSWER),
        room_changed(), LATER_OK, ANSWER, room_changed(True, True), room_changed(),
    ),
    "open-bad-names": session(
        OPEN, msg(type="join", room="no spaces", name="Ann"), msg(type="join", room="", name="Ann"),
        msg(type="join", room="demo", name="  "), msg(type="join", room="demo", name="a\u0007b"),
        msg(type="join", room="x" * 65, name="Ann"), msg(type="join", room="demo", name=" Zoë 🎥 "),
    ),
    "open-offers": session(
        OPEN, JOIN, msg(type="offer", target="publisher", sdp=CHAT_ONLY),
        msg(type="offer", target="publisher", sdp=RECV_ONLY), msg(type="offer", target="publisher", sdp=THREE),
        msg(type="offer", target="publisher", sdp=AV * 3),
    ),
    "open-garbage": session(
        OPEN, b"{not json", b"[1,2]", b'{"type":7}', b'{"type":"dance"}', b'{"type":"ping","extra":1}',
        b"", b'{"type":"join","room":"demo"}', b"\xc3\x28",
    ),
    "tight-flood": session(TIGHT, *([PING] * 6), tick(10), PING, tick(60), PING, tick(), *([PING] * 5)),
    "tight-tracks": session(
        TIGHT, msg(type="join", room="r", name="12345678"), msg(type="offer", target="publisher", sdp=AV),
        msg(type="offer", target="publisher", sdp=THREE),
    ),
    "token-ok": session(
        TOKENS, msg(type="join", room="demo", name="asked", token=token("demo", name="From Token")),
        OFFER, room_changed(), ANSWER, LEAVE,
    ),
    "token-subscribe-only": session(
        TOKENS, msg(type="join", room="demo", name="Ann", token=token("demo", publish=False, subscribe=True)),
        OFFER, msg(type="offer", target="publisher", sdp=CHAT_ONLY), msg(type="offer", target="publisher", sdp=RECV_ONLY),
        msg(type="offer", target="publisher", sdp=ONE_SENDING),
    ),
    "token-missing": session(TOKENS, JOIN, PING),
    "token-other-room": session(TOKENS, msg(type="join", room="other", name="Ann", token=token("demo"))),
    "token-forged": session(
        TOKENS, msg(type="join", room="demo", name="Ann", token=token("demo")[:-4] + "AAAA"),
    ),
    "token-tight": session(
        TOKENS | TIGHT, msg(type="join", room="demo", name="Ann", token=token("demo", name="A long token name")),
        msg(type="join", room="demo", name="Ann", token=token("demo")), LEAVE,
    ),
}

EXTRA_DECODE = [
    JOIN, OFFER, ANSWER, CANDIDATE, END_OF_CANDIDATES, MUTE, PING, LEAVE,
    msg(type="join", room="demo", name="Ann", token=token("demo")),
    msg(type="join", room="demo", name="Ann", token=None),
    b'{"type":"candidate","target":"publisher","candidate":{"candidate":""}}',
    b'{"type":"mute","kind":"audio","muted":false,"muted":true}',
    b'{"type":"leave","type":"ping"}',
    b'{"text":"psst","to":"Pq8Wm2LrT0aC"}',
    b'{"type":"pong"}',
    b'"\\ud800"',
    b"[" * 200 + b"]" * 200,
    b'{"type":"' + "é".encode() * 40 + b'"}',
]


def write(directory, name, data):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"seed-{name}").write_bytes(data)


def main():
    decode = CORPUS / "decode"
    for old in list(decode.glob("seed-*")) + list((CORPUS / "signalling").glob("seed-*")):
        old.unlink()
    examples = [e.encode() for e in doc_examples()] + EXTRA_DECODE
    for i, e in enumerate(dict.fromkeys(examples)):
        write(decode, f"{i:02}", e)
    for name, data in SESSIONS.items():
        write(CORPUS / "signalling", name, data)
    # The documented examples also as sessions: each after a join, with and without one.
    doc = [e.encode() for e in doc_examples()]
    write(CORPUS / "signalling", "doc-examples", session(OPEN, *doc))
    write(CORPUS / "signalling", "doc-examples-joined", session(OPEN, JOIN, *doc))
    print(f"decode: {len(list(decode.iterdir()))} files; signalling: {len(list((CORPUS / 'signalling').iterdir()))} files")


if __name__ == "__main__":
    main()
