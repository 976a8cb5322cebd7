//! Fuzz harnesses for the signalling path, kept in the library so that the libFuzzer
//! targets in `fuzz/` and the ordinary corpus replay test (`tests/fuzz_corpus.rs`) run
//! exactly the same code. Neither harness touches the network, a clock or a thread.
//!
//! - [`decode`]: one WebSocket text frame through `ClientMessage::decode`, plus the
//!   other JSON the server reads or the client library decodes (`ChatIn`,
//!   `ServerMessage`).
//! - [`signalling`]: a whole session, as a sequence of client frames and of the events
//!   the session actor delivers, through the `Signalling` state machine, checked after
//!   every step against a small model of what the state machine promises.
//!
//! Both panic (with `assert!`) when an invariant breaks; that is what the fuzzer finds.
//! `fuzz/README.md` describes the input format and lists the invariants.
#![doc(hidden)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{Grant, TokenVerifier};
use crate::ids::RoomId;
use crate::messages::{ChatIn, ClientMessage, PeerTarget, ServerMessage};
use crate::signalling::{Action, Phase, Signalling, SignallingLimits, MEDIA_SECTIONS_PER_TRACK};
use crate::ProtocolError;

/// The HS256 secret of the token verifier the signalling harness configures when the
/// input asks for one; `scripts/fuzz-seeds.py` signs its seed tokens with it.
pub const SECRET: &str = "plaza-fuzz-secret";

/// The error codes `docs/protocol.md` documents (its error table).
const PROTOCOL_DOC: &str = include_str!("../../../docs/protocol.md");

/// The codes the signalling state machine may answer a client frame with. The others
/// (`room_full`, `bad_sdp`, `peer_failed`, ...) come from the room or the WebRTC stack.
const SIGNALLING_CODES: &[&str] = &[
    "bad_json",
    "bad_message",
    "unknown_type",
    "not_joined",
    "already_joined",
    "invalid_room",
    "invalid_name",
    "out_of_order",
    "too_many_tracks",
    "unauthorized",
    "forbidden",
    "rate_limited",
];

/// Every error a client can get must have a documented code, and its frame must be
/// valid server JSON.
fn check_error(e: &ProtocolError, allowed: &[&str]) {
    let code = e.code();
    assert!(
        allowed.contains(&code),
        "unexpected error code {code}: {e:?}"
    );
    assert!(
        PROTOCOL_DOC.contains(&format!("| `{code}` |")),
        "error code {code} is not in docs/protocol.md's error table"
    );
    let frame = ServerMessage::error(e);
    let json = frame.to_json();
    let back: ServerMessage = serde_json::from_str(&json).expect("error frames parse back");
    assert_eq!(back, frame);
}

fn text_of(data: &[u8]) -> std::borrow::Cow<'_, str> {
    // The WebSocket layer only hands valid UTF-8 text to the session; invalid input is
    // still worth decoding, so it is made valid rather than dropped.
    String::from_utf8_lossy(data)
}

/// Decodes one client text frame (and the same bytes as a chat message and as a
/// server message). Invariants:
/// - decoding never panics;
/// - a failure is `bad_json` exactly when the text is not JSON, otherwise
///   `bad_message` or `unknown_type`, all documented codes;
/// - a decoded message serialises to JSON that decodes to an equal message, whose
///   `type` is the message's `type_name`;
/// - the same round trip for `ChatIn` and `ServerMessage` when the bytes parse as one.
pub fn decode(data: &[u8]) {
    let text = text_of(data);
    let is_json = serde_json::from_str::<serde_json::Value>(&text).is_ok();
    match ClientMessage::decode(&text) {
        Ok(msg) => round_trip_client(&msg),
        Err(e) => {
            check_error(&e, &["bad_json", "bad_message", "unknown_type"]);
            assert_eq!(
                e.code() == "bad_json",
                !is_json,
                "bad_json iff not JSON: {e:?}"
            );
        }
    }
    if let Ok(chat) = serde_json::from_str::<ChatIn>(&text) {
        let json = serde_json::to_string(&chat).expect("chat serialises");
        assert_eq!(serde_json::from_str::<ChatIn>(&json).ok(), Some(chat));
    }
    if let Ok(msg) = serde_json::from_str::<ServerMessage>(&text) {
        let json = msg.to_json();
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).ok(), Some(msg));
    }
}

fn round_trip_client(msg: &ClientMessage) {
    let value = serde_json::to_value(msg).expect("client messages serialise");
    assert_eq!(
        value.get("type").and_then(|t| t.as_str()),
        Some(msg.type_name())
    );
    let json = value.to_string();
    assert_eq!(ClientMessage::decode(&json).as_ref(), Ok(msg), "{json}");
}

/// What the harness knows about the session, from what the state machine returned:
/// the reference the state machine is checked against.
struct Model {
    phase: Phase,
    grant: Grant,
    /// A join the harness was asked to resolve later.
    deferred_join: Option<Grant>,
    /// Answers handed to the (simulated) subscriber connection, not yet applied.
    deferred_answers: u32,
    /// A subscriber offer was made and not yet answered (or failed).
    in_flight: bool,
    /// An offer was made once: from then on, even "no tracks" is offered.
    offered_once: bool,
    /// Something changed while the offer was in flight.
    changed: bool,
    /// Offers made again whose late answers are still forgiven (at most 4).
    superseded: u32,
    /// The client asked for an ICE restart that no offer has made yet.
    ice_restart: bool,
    has_tracks: bool,
    /// Messages the rate limit let through, and when the limit was last reported.
    accepted: u64,
    reported: Option<Instant>,
    /// The socket is closed (after `leave` or a fatal error): nothing more arrives.
    closed: bool,
}

/// How the (simulated) asynchronous part of an action ends.
#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Ok,
    Fail,
    Later,
}

struct Harness {
    s: Signalling,
    m: Model,
    limits: SignallingLimits,
    verifier: bool,
    start: Instant,
    now: Instant,
}

/// Runs a whole session through `Signalling`. The input:
/// - byte 0, flags: bit 0 configures a token verifier (secret [`SECRET`]); bit 1 tight
///   limits (2 tracks, 2 messages/s with a burst of 3, names of at most 8).
/// - the rest, steps separated by `0xFF` (never in UTF-8 text). A step starting with
///   - `0x01 [n]`: time passes, `n` × 10 ms (1 s without `n`);
///   - `0x02 [f]`: the room changed: `offer_needed(f & 1 != 0)`; an offer it asks for
///     fails to be made when `f & 2`;
///   - `0x03 text`: a client frame whose asynchronous part (the join, applying the
///     answer) fails; `0x04 text`: one whose asynchronous part ends later;
///   - `0x05` / `0x06`: that later part succeeds / fails;
///   - `0x07`: the subscriber offer's answer timer fires (or its answer did not apply):
///     `offer_unanswered` for the current offer;
///   - anything else: a client frame whose asynchronous part succeeds.
///
/// After every step the state machine is checked against what it promises (see
/// `fuzz/README.md`); any difference panics.
pub fn signalling(data: &[u8]) {
    let Some((&flags, steps)) = data.split_first() else {
        return;
    };
    // The server's defaults (config.example.toml), or tight ones with flag bit 1.
    let mut limits = SignallingLimits {
        max_room_name_len: 64,
        max_display_name_len: 64,
        max_tracks_per_participant: 4,
        signalling_rate: 20.0,
        signalling_burst: 50,
    };
    if flags & 2 != 0 {
        limits.max_tracks_per_participant = 2;
        limits.signalling_rate = 2.0;
        limits.signalling_burst = 3;
        limits.max_room_name_len = 8;
        limits.max_display_name_len = 8;
    }
    let verifier = flags & 1 != 0;
    let start = Instant::now();
    let mut h = Harness {
        s: Signalling::new(
            &limits,
            verifier.then(|| Arc::new(TokenVerifier::new(SECRET))),
        ),
        m: Model {
            phase: Phase::Connected,
            grant: Grant::open(),
            deferred_join: None,
            deferred_answers: 0,
            in_flight: false,
            superseded: 0,
            ice_restart: false,
            offered_once: false,
            changed: false,
            has_tracks: false,
            accepted: 0,
            reported: None,
            closed: false,
        },
        limits,
        verifier,
        start,
        now: start,
    };
    for step in steps.split(|&b| b == 0xFF) {
        if h.m.closed {
            break;
        }
        match step {
            [0x01] => h.now += Duration::from_secs(1),
            [0x01, n, ..] => h.now += Duration::from_millis(10 * u64::from(*n)),
            [0x02] => h.room_changed(0),
            [0x02, f, ..] => h.room_changed(*f),
            [0x03, text @ ..] => h.frame(text, Outcome::Fail),
            [0x04, text @ ..] => h.frame(text, Outcome::Later),
            [0x05, ..] => h.resolve(true),
            [0x06, ..] => h.resolve(false),
            [0x07, ..] => h.offer_timer(),
            text => h.frame(text, Outcome::Ok),
        }
        h.check_state();
    }
}

impl Harness {
    fn check_state(&self) {
        assert_eq!(self.s.phase(), self.m.phase);
        if self.m.phase == Phase::Joined {
            assert_eq!(self.s.grant(), &self.m.grant);
        }
    }

    fn frame(&mut self, data: &[u8], outcome: Outcome) {
        let text = text_of(data);
        let before = self.m.phase;
        let result = self.s.on_text(&text, self.now);
        if let Err(e) = &result {
            check_error(e, SIGNALLING_CODES);
            // The actor closes the socket after a fatal error: nothing more arrives.
            self.m.closed |= e.is_fatal();
        }
        // The rate limit: a dropped message is `Nothing`, or `rate_limited` at most
        // once a second; the bucket never lets more through than burst + rate × time.
        let since_report = self.m.reported.map(|at| self.now - at);
        match &result {
            Ok(Action::Nothing) => {
                assert!(since_report.is_some_and(|d| d < Duration::from_secs(1)));
                assert_eq!(self.s.phase(), before);
                return;
            }
            Err(ProtocolError::RateLimited(_)) => {
                assert!(since_report.is_none_or(|d| d >= Duration::from_secs(1)));
                self.m.reported = Some(self.now);
                assert_eq!(self.s.phase(), before);
                return;
            }
            _ => {}
        }
        self.m.accepted += 1;
        let elapsed = (self.now - self.start).as_secs_f64();
        let allowed =
            f64::from(self.limits.signalling_burst) + self.limits.signalling_rate * elapsed;
        assert!(
            self.m.accepted as f64 <= allowed + 1e-6,
            "{} messages accepted in {elapsed} s",
            self.m.accepted
        );
        // What the frame is, decoded independently: the state machine must give the
        // decoder's error, or the action that message calls for in this phase.
        let msg = match ClientMessage::decode(&text) {
            Ok(msg) => msg,
            Err(e) => {
                assert_eq!(result, Err(e));
                return;
            }
        };
        let code = result.as_ref().err().map(ProtocolError::code);
        match (before, msg) {
            (_, ClientMessage::Ping {}) => {
                assert_eq!(result, Ok(Action::Reply(ServerMessage::Pong)));
            }
            (Phase::Connected, ClientMessage::Join { room, name, token }) => {
                self.join(result, &room, &name, token.is_some(), outcome);
                return;
            }
            (_, ClientMessage::Join { .. }) => assert_eq!(code, Some("already_joined")),
            // Only a new socket's first frame may resume; the socket handles that.
            (_, ClientMessage::Resume { .. }) => assert_eq!(code, Some("out_of_order")),
            (Phase::Connected, _) => assert_eq!(code, Some("not_joined")),
            (Phase::Joining, _) => assert_eq!(code, Some("out_of_order")),
            (Phase::Joined, ClientMessage::Offer { target, sdp }) => {
                let expected = if target == PeerTarget::Subscriber {
                    "out_of_order"
                } else {
                    let (sections, sending) = count_media(&sdp);
                    if sending > 0 && !self.m.grant.publish {
                        "forbidden"
                    } else if sending > self.limits.max_tracks_per_participant
                        || sections
                            > self.limits.max_tracks_per_participant * MEDIA_SECTIONS_PER_TRACK
                    {
                        "too_many_tracks"
                    } else {
                        assert_eq!(result, Ok(Action::AnswerOffer(sdp)));
                        return;
                    }
                };
                assert_eq!(code, Some(expected));
            }
            (Phase::Joined, ClientMessage::Answer { target, sdp }) => {
                if target == PeerTarget::Subscriber && self.m.in_flight {
                    assert_eq!(result, Ok(Action::ApplyAnswer(sdp)));
                    match outcome {
                        Outcome::Ok => self.answer_applied(),
                        // The offer stays in flight: a later answer may still do.
                        Outcome::Fail => {}
                        Outcome::Later => self.m.deferred_answers += 1,
                    }
                } else if target == PeerTarget::Subscriber && self.m.superseded > 0 {
                    // A late answer to an offer that was made again: ignored.
                    assert_eq!(result, Ok(Action::Nothing));
                    self.m.superseded -= 1;
                } else {
                    assert_eq!(code, Some("out_of_order"));
                }
            }
            (Phase::Joined, ClientMessage::Candidate { target, candidate }) => {
                assert_eq!(result, Ok(Action::AddCandidate(target, candidate)));
            }
            (Phase::Joined, ClientMessage::Mute { kind, muted }) => {
                assert_eq!(result, Ok(Action::SetMuted(kind, muted)));
            }
            (Phase::Joined, ClientMessage::RestartIce {}) => {
                assert_eq!(result, Ok(Action::RestartIce));
                // Only a connection that was offered has ICE to restart.
                self.m.ice_restart |= self.m.offered_once;
                // The actor asks for an offer, as for a room change.
                let flags = u8::from(self.m.has_tracks);
                self.room_changed(flags);
            }
            (Phase::Joined, ClientMessage::Leave {}) => {
                assert_eq!(result, Ok(Action::Leave));
                self.m.closed = true;
            }
        }
        // Only a join moves the phase.
        assert_eq!(self.s.phase(), before);
    }

    fn join(
        &mut self,
        result: Result<Action, ProtocolError>,
        room: &str,
        asked: &str,
        has_token: bool,
        outcome: Outcome,
    ) {
        let grant = match result {
            Ok(Action::Join {
                room: id,
                name,
                grant,
            }) => {
                assert_eq!(id.as_str(), room);
                assert!(RoomId::parse(room, self.limits.max_room_name_len).is_ok());
                // The token's name wins over the one asked for; either is trimmed.
                let shown = grant.name.as_deref().unwrap_or(asked).trim();
                assert_eq!(&*name, shown);
                let chars = name.chars().count();
                assert!(chars >= 1 && chars <= self.limits.max_display_name_len);
                assert!(!name.chars().any(char::is_control));
                if self.verifier {
                    assert!(has_token && grant.identity.is_some());
                } else {
                    assert_eq!(grant, Grant::open());
                }
                grant
            }
            Ok(other) => panic!("join gave {other:?}"),
            Err(e) => {
                let mut codes = vec!["invalid_room", "invalid_name"];
                if self.verifier {
                    codes.push("unauthorized");
                }
                check_error(&e, &codes);
                assert_eq!(self.s.phase(), Phase::Connected);
                return;
            }
        };
        assert_eq!(self.s.phase(), Phase::Joining);
        self.m.phase = Phase::Joining;
        match outcome {
            Outcome::Ok => self.join_done(Ok(grant)),
            Outcome::Fail => self.join_done(Err(())),
            Outcome::Later => self.m.deferred_join = Some(grant),
        }
    }

    fn join_done(&mut self, result: Result<Grant, ()>) {
        match result {
            Ok(grant) => {
                self.s.join_done(Ok(&grant));
                self.m.phase = Phase::Joined;
                self.m.grant = grant;
            }
            Err(()) => {
                self.s.join_done(Err(()));
                // A refused join can be retried on the same connection.
                self.m.phase = Phase::Connected;
            }
        }
    }

    /// The asynchronous part of the last deferred join or answer ends.
    fn resolve(&mut self, ok: bool) {
        if let Some(grant) = self.m.deferred_join.take() {
            self.join_done(if ok { Ok(grant) } else { Err(()) });
        } else if self.m.deferred_answers > 0 {
            self.m.deferred_answers -= 1;
            // With no offer in flight the connection is stable and refuses an answer.
            if ok && self.m.in_flight {
                self.answer_applied();
            }
        }
    }

    fn answer_applied(&mut self) {
        let again = self.s.answer_applied();
        assert_eq!(
            again, self.m.changed,
            "a new offer is due exactly when something changed while the last was in flight"
        );
        self.m.in_flight = false;
        self.m.changed = false;
        if again {
            // The actor schedules a negotiation, which must make the offer.
            let has_tracks = self.m.has_tracks;
            assert!(self.s.offer_needed(has_tracks), "the due offer is made");
            self.m.in_flight = true;
            self.offer_made();
        }
    }

    /// The offer timer fires: an offer in flight is made again (fresh, carrying any
    /// pending change), once; a timer for an older offer does nothing.
    fn offer_timer(&mut self) {
        let serial = self.s.offer_serial();
        let again = self.s.offer_unanswered(serial);
        assert_eq!(
            again, self.m.in_flight,
            "exactly an offer in flight is made again"
        );
        if again {
            self.offer_made();
            self.m.changed = false;
            self.m.superseded = (self.m.superseded + 1).min(4);
            assert!(
                !self.s.offer_unanswered(serial),
                "the replaced offer's timer is stale"
            );
        }
    }

    /// An offer is being made: it restarts ICE exactly when the client asked since the
    /// last one.
    fn offer_made(&mut self) {
        assert_eq!(
            self.s.take_ice_restart(),
            std::mem::take(&mut self.m.ice_restart),
            "an offer restarts ICE exactly when asked"
        );
    }

    /// A member published or unpublished a track; the actor asks for an offer.
    fn room_changed(&mut self, flags: u8) {
        // The actor only negotiates once the join made the peer connections.
        if self.m.phase != Phase::Joined {
            return;
        }
        self.m.has_tracks = flags & 1 != 0;
        let offer = self.s.offer_needed(self.m.has_tracks);
        if self.m.in_flight {
            assert!(!offer, "at most one subscriber offer in flight");
            self.m.changed = true;
            return;
        }
        let expected = self.m.has_tracks || self.m.offered_once;
        assert_eq!(
            offer, expected,
            "an offer is made unless the connection never had tracks"
        );
        if offer {
            self.m.offered_once = true;
            self.offer_made();
            if flags & 2 != 0 {
                self.s.offer_failed();
            } else {
                self.m.in_flight = true;
            }
        }
    }
}

/// Counts an offer's audio/video sections and those that send, independently of the
/// state machine's own parser: a section sends unless it says `recvonly`/`inactive`.
fn count_media(sdp: &str) -> (usize, usize) {
    let (mut sections, mut sending) = (0, 0);
    let mut current = None;
    for line in sdp.lines() {
        if let Some(kind) = line.strip_prefix("m=") {
            sending += usize::from(current == Some(true));
            current = (kind.starts_with("audio") || kind.starts_with("video")).then_some(true);
            sections += usize::from(current.is_some());
        } else if current.is_some() && matches!(line.trim_end(), "a=recvonly" | "a=inactive") {
            current = Some(false);
        }
    }
    (sections, sending + usize::from(current == Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_media_sections() {
        let sdp = "v=0\r\nm=audio 9 X 111\r\na=recvonly\r\nm=video 9 X 96\r\nm=application 9 X\r\na=sendonly\r\n";
        assert_eq!(count_media(sdp), (2, 1));
        assert_eq!(count_media("m=video 1\r\na=inactive  \r\n"), (1, 0));
        assert_eq!(count_media(""), (0, 0));
    }

    #[test]
    fn a_whole_session_passes() {
        let sdp = "v=0\\r\\nm=audio 9 X 111\\r\\na=sendonly\\r\\n";
        let mut input = vec![0u8];
        for step in [
            r#"{"type":"join","room":"demo","name":"Ann"}"#.as_bytes(),
            format!(r#"{{"type":"offer","target":"publisher","sdp":"{sdp}"}}"#).as_bytes(),
            &[0x02, 1],
            &[0x02, 1],
            br#"{"type":"answer","target":"subscriber","sdp":"v=0"}"#,
            br#"{"type":"answer","target":"subscriber","sdp":"v=0"}"#,
            &[0x01, 50],
            br#"{"type":"leave"}"#,
        ] {
            input.extend_from_slice(step);
            input.push(0xFF);
        }
        signalling(&input);
        decode(br#"{"type":"mute","kind":"video","muted":true}"#);
    }
}
