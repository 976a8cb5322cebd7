//! The signalling state machine of one session, without I/O.
//!
//! It decides what a client message means given where the session is (connected,
//! joining, joined), what the client may do (its token's grant, its rate limit) and the
//! subscriber connection's offer/answer state, and returns one `Action` for the actor
//! to carry out — or the `ProtocolError` to send back. Everything a client can send
//! goes through `on_text` first, so the fuzz targets and property tests drive exactly
//! this code.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::{Grant, TokenVerifier};
use crate::ids::{parse_display_name, RoomId};
use crate::messages::{ClientMessage, IceCandidate, MediaKind, PeerTarget, ServerMessage};
use crate::rate::TokenBucket;
use crate::ProtocolError;

/// The limits the state machine enforces (the server fills them from its
/// `[limits]` configuration, where their defaults are declared).
#[derive(Debug, Clone, PartialEq)]
pub struct SignallingLimits {
    pub max_room_name_len: usize,
    pub max_display_name_len: usize,
    pub max_tracks_per_participant: usize,
    /// Client frames per second on average...
    pub signalling_rate: f64,
    /// ...and at once.
    pub signalling_burst: u32,
}

/// Late answers to superseded offers that are ignored rather than refused.
const MAX_SUPERSEDED: u32 = 4;

/// Media sections a publisher offer may have per track it may publish, sending or not:
/// room for stopped tracks whose sections the client has not reused yet (browsers
/// reuse a transceiver only when asked to, e.g. with `replaceTrack`).
pub const MEDIA_SECTIONS_PER_TRACK: usize = 4;

/// What the session must do for one client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Reply(ServerMessage),
    Join {
        room: RoomId,
        name: Arc<str>,
        grant: Grant,
    },
    /// Apply the client's offer on the publisher connection and answer it.
    AnswerOffer(String),
    /// Apply the client's answer on the subscriber connection.
    ApplyAnswer(String),
    AddCandidate(PeerTarget, Option<IceCandidate>),
    SetMuted(MediaKind, bool),
    /// Re-offer the subscriber connection (with new ICE credentials: `take_ice_restart`).
    RestartIce,
    Leave,
    /// Nothing to do (a message dropped by the rate limit, already reported).
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connected,
    Joining,
    Joined,
}

/// The subscriber connection's offer/answer state: at most one offer in flight.
#[derive(Debug, Default, Clone)]
struct Negotiation {
    in_flight: bool,
    /// The client asked for an ICE restart: the next offer makes new credentials.
    ice_restart: bool,
    /// Something changed while an offer was in flight: offer again after the answer.
    pending: bool,
    /// An offer was made before: from then on, even "no tracks" must be offered.
    offered_once: bool,
    /// Numbers the offers, so a timer set for one offer cannot act on a later one.
    serial: u64,
    /// Offers made again (`offer_unanswered`) whose first answer may still come: such an
    /// answer arriving when nothing is in flight is the client catching up, not a fault.
    superseded: u32,
}

#[derive(Debug, Clone)]
pub struct Signalling {
    phase: Phase,
    grant: Grant,
    negotiation: Negotiation,
    rate: TokenBucket,
    /// When the client was last told it is over its rate (told at most once a second,
    /// so a flood does not turn into a flood of error frames).
    rate_reported: Option<Instant>,
    limits: SignallingLimits,
    verifier: Option<Arc<TokenVerifier>>,
}

impl Signalling {
    pub fn new(limits: &SignallingLimits, verifier: Option<Arc<TokenVerifier>>) -> Self {
        Self {
            phase: Phase::Connected,
            grant: Grant::open(),
            negotiation: Negotiation::default(),
            rate: TokenBucket::new(limits.signalling_rate, limits.signalling_burst),
            rate_reported: None,
            limits: limits.clone(),
            verifier,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// One text frame from the client.
    pub fn on_text(&mut self, text: &str, now: Instant) -> Result<Action, ProtocolError> {
        if !self.rate.take(now) {
            if self
                .rate_reported
                .is_some_and(|at| now.saturating_duration_since(at).as_secs() < 1)
            {
                return Ok(Action::Nothing);
            }
            self.rate_reported = Some(now);
            return Err(ProtocolError::RateLimited(format!(
                "more than {} messages per second; messages are being dropped",
                self.limits.signalling_rate
            )));
        }
        let msg = ClientMessage::decode(text)?;
        self.on_message(msg)
    }

    pub fn on_message(&mut self, msg: ClientMessage) -> Result<Action, ProtocolError> {
        match msg {
            ClientMessage::Ping {} => Ok(Action::Reply(ServerMessage::Pong)),
            ClientMessage::Join { room, name, token } => self.join(&room, &name, token.as_deref()),
            // The socket takes a `resume` before a participant exists; one that reaches
            // a participant came too late.
            ClientMessage::Resume { .. } => Err(ProtocolError::OutOfOrder(
                "resume must be the first message on a new connection".into(),
            )),
            _ if self.phase == Phase::Joining => Err(ProtocolError::OutOfOrder(
                "wait for `joined` before sending this".into(),
            )),
            _ if self.phase == Phase::Connected => Err(ProtocolError::NotJoined),
            ClientMessage::Offer { target, sdp } => self.offer(target, sdp),
            ClientMessage::Answer { target, sdp } => self.answer(target, sdp),
            ClientMessage::Candidate { target, candidate } => {
                Ok(Action::AddCandidate(target, candidate))
            }
            ClientMessage::Mute { kind, muted } => Ok(Action::SetMuted(kind, muted)),
            ClientMessage::RestartIce {} => {
                // A connection never offered has no ICE session to restart.
                self.negotiation.ice_restart |= self.negotiation.offered_once;
                Ok(Action::RestartIce)
            }
            ClientMessage::Leave {} => Ok(Action::Leave),
        }
    }

    /// Whether the offer being made now must restart ICE (asked by `restart_ice`);
    /// clears the request.
    pub fn take_ice_restart(&mut self) -> bool {
        std::mem::take(&mut self.negotiation.ice_restart)
    }

    fn join(
        &mut self,
        room: &str,
        name: &str,
        token: Option<&str>,
    ) -> Result<Action, ProtocolError> {
        if self.phase != Phase::Connected {
            return Err(ProtocolError::AlreadyJoined);
        }
        let room = RoomId::parse(room, self.limits.max_room_name_len)?;
        let grant = match &self.verifier {
            Some(v) => v.verify(token, room.as_str())?,
            None => Grant::open(),
        };
        // A name the token gives wins over the one the client asks for.
        let name = grant.name.as_deref().unwrap_or(name);
        let name = parse_display_name(name, self.limits.max_display_name_len)?;
        self.phase = Phase::Joining;
        Ok(Action::Join { room, name, grant })
    }

    /// The join the last `Action::Join` asked for went through (or not).
    pub fn join_done(&mut self, result: Result<&Grant, ()>) {
        match result {
            Ok(grant) => {
                self.grant = grant.clone();
                self.phase = Phase::Joined;
            }
            Err(()) => self.phase = Phase::Connected,
        }
    }

    fn offer(&mut self, target: PeerTarget, sdp: String) -> Result<Action, ProtocolError> {
        if target != PeerTarget::Publisher {
            return Err(ProtocolError::OutOfOrder(
                "the server makes the subscriber offers; answer them instead".into(),
            ));
        }
        let sending = media_sections(&sdp).filter(|m| m.sends).count();
        if sending > 0 && !self.grant.publish {
            return Err(ProtocolError::Forbidden(
                "this participant may not publish (its token says so)".into(),
            ));
        }
        // Only sections that send are tracks: a stopped track's section stays in the
        // SDP (inactive) until the client reuses it, and must not count. The sections
        // kept around are bounded too, so an offer cannot grow without end.
        let max = self.limits.max_tracks_per_participant;
        if sending > max {
            return Err(ProtocolError::TooManyTracks(max));
        }
        let sections = media_sections(&sdp).count();
        let max_sections = max.saturating_mul(MEDIA_SECTIONS_PER_TRACK);
        if sections > max_sections {
            return Err(ProtocolError::TooManyTracks(max));
        }
        Ok(Action::AnswerOffer(sdp))
    }

    fn answer(&mut self, target: PeerTarget, sdp: String) -> Result<Action, ProtocolError> {
        if target != PeerTarget::Subscriber {
            return Err(ProtocolError::OutOfOrder(
                "the client makes the publisher offers; the server answers them".into(),
            ));
        }
        if !self.negotiation.in_flight {
            if self.negotiation.superseded > 0 {
                // A slow client answering an offer that was made again meanwhile.
                self.negotiation.superseded -= 1;
                return Ok(Action::Nothing);
            }
            return Err(ProtocolError::OutOfOrder(
                "no subscriber offer is waiting for an answer".into(),
            ));
        }
        Ok(Action::ApplyAnswer(sdp))
    }

    /// Something changed on the subscriber connection. Returns whether to make an offer
    /// now (otherwise one is already in flight, and another follows its answer).
    pub fn offer_needed(&mut self, has_tracks: bool) -> bool {
        if self.negotiation.in_flight {
            self.negotiation.pending = true;
            return false;
        }
        if !has_tracks && !self.negotiation.offered_once {
            return false;
        }
        self.negotiation.in_flight = true;
        self.negotiation.offered_once = true;
        self.negotiation.serial += 1;
        true
    }

    /// The offer in flight (or the last one), as numbered by `offer_needed`.
    pub fn offer_serial(&self) -> u64 {
        self.negotiation.serial
    }

    /// Offer `serial` got no usable answer: none came in time (lost, or the client
    /// failed to make one), or the one that came did not apply. Returns whether to
    /// offer again now: a fresh offer, which also carries whatever changed meanwhile.
    /// False when that offer is no longer the one in flight.
    pub fn offer_unanswered(&mut self, serial: u64) -> bool {
        let n = &mut self.negotiation;
        if !n.in_flight || n.serial != serial {
            return false;
        }
        n.pending = false;
        n.serial += 1;
        // Bounded: a client that never answers must not buy itself unlimited silence.
        n.superseded = (n.superseded + 1).min(MAX_SUPERSEDED);
        true
    }

    /// The offer could not be made.
    pub fn offer_failed(&mut self) {
        self.negotiation.in_flight = false;
    }

    /// The client's answer was applied. Returns whether to offer again (changes came
    /// in while it was in flight).
    pub fn answer_applied(&mut self) -> bool {
        self.negotiation.in_flight = false;
        std::mem::take(&mut self.negotiation.pending)
    }
}

/// One `m=` section of an SDP: its kind and whether it sends media.
struct MediaSection {
    sends: bool,
}

/// The audio and video sections of an offer (the data channel's `m=application` is not
/// a track). A section sends unless it says `recvonly` or `inactive`.
fn media_sections(sdp: &str) -> impl Iterator<Item = MediaSection> + '_ {
    let mut sections = Vec::new();
    let mut current: Option<MediaSection> = None;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            if let Some(s) = current.take() {
                sections.push(s);
            }
            if line.starts_with("m=audio") || line.starts_with("m=video") {
                current = Some(MediaSection { sends: true });
            }
        } else if let Some(s) = current.as_mut() {
            let line = line.trim_end();
            if line == "a=recvonly" || line == "a=inactive" {
                s.sends = false;
            }
        }
    }
    sections.extend(current);
    sections.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> SignallingLimits {
        SignallingLimits {
            max_room_name_len: 64,
            max_display_name_len: 64,
            max_tracks_per_participant: 2,
            signalling_rate: 20.0,
            signalling_burst: 50,
        }
    }

    fn joined() -> Signalling {
        let mut s = Signalling::new(&limits(), None);
        let Ok(Action::Join { grant, .. }) =
            s.on_text(r#"{"type":"join","room":"r","name":"n"}"#, Instant::now())
        else {
            panic!("join")
        };
        s.join_done(Ok(&grant));
        s
    }

    const AV: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";

    #[test]
    fn phases_gate_messages() {
        let mut s = Signalling::new(&limits(), None);
        let now = Instant::now();
        let err = |s: &mut Signalling, t: &str| s.on_text(t, now).unwrap_err().code();
        assert_eq!(err(&mut s, r#"{"type":"leave"}"#), "not_joined");
        assert_eq!(
            s.on_text(r#"{"type":"ping"}"#, now).unwrap(),
            Action::Reply(ServerMessage::Pong)
        );
        assert!(matches!(
            s.on_text(r#"{"type":"join","room":"r","name":" n "}"#, now).unwrap(),
            Action::Join { ref name, .. } if &**name == "n"
        ));
        assert_eq!(s.phase(), Phase::Joining);
        assert_eq!(err(&mut s, r#"{"type":"leave"}"#), "out_of_order");
        assert_eq!(
            err(&mut s, r#"{"type":"join","room":"r","name":"n"}"#),
            "already_joined"
        );
        s.join_done(Err(()));
        assert_eq!(s.phase(), Phase::Connected, "a refused join can be retried");
    }

    #[test]
    fn offers_and_answers_follow_the_two_connection_rules() {
        let mut s = joined();
        let msg = |t: &str, sdp: &str| {
            serde_json::json!({"type": t, "target": if t == "offer" { "publisher" } else { "subscriber" }, "sdp": sdp}).to_string()
        };
        let now = Instant::now();
        assert_eq!(
            s.on_text(&msg("offer", AV), now).unwrap(),
            Action::AnswerOffer(AV.into())
        );
        assert_eq!(
            s.on_text(&msg("answer", "x"), now).unwrap_err().code(),
            "out_of_order"
        );
        assert!(s.offer_needed(true));
        assert!(!s.offer_needed(true), "one offer in flight");
        assert_eq!(
            s.on_text(&msg("answer", "x"), now).unwrap(),
            Action::ApplyAnswer("x".into())
        );
        assert!(
            s.answer_applied(),
            "the change made meanwhile needs a new offer"
        );
        assert!(s.offer_needed(true));
        assert!(!s.answer_applied());
        let three = format!("{AV}m=video 9 UDP/TLS/RTP/SAVPF 96\r\n");
        assert_eq!(
            s.on_text(&msg("offer", &three), now).unwrap_err().code(),
            "too_many_tracks"
        );
    }

    #[test]
    fn stopped_tracks_do_not_count_against_the_limit() {
        let mut s = joined(); // at most 2 tracks
        let now = Instant::now();
        let msg = |t: &str, sdp: &str| {
            serde_json::json!({"type": t, "target": "publisher", "sdp": sdp}).to_string()
        };
        let stopped = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\n";
        let offer_with = |n: usize| format!("{AV}{}", stopped.repeat(n));
        // Audio and video sending, plus stopped screen shares not reused yet.
        assert!(s.on_text(&msg("offer", &offer_with(6)), now).is_ok());
        assert_eq!(
            s.on_text(&msg("offer", &offer_with(7)), now)
                .unwrap_err()
                .code(),
            "too_many_tracks",
            "but the sections kept are bounded (4 per track)"
        );
    }

    #[test]
    fn no_offer_for_an_empty_connection_until_it_had_tracks() {
        let mut s = joined();
        assert!(!s.offer_needed(false));
        assert!(s.offer_needed(true));
        s.answer_applied();
        assert!(
            s.offer_needed(false),
            "removing the last track must be offered"
        );
    }

    #[test]
    fn subscribe_only_grants_cannot_send_media_but_can_chat() {
        let mut s = joined();
        s.grant.publish = false;
        let now = Instant::now();
        let offer = |sdp: &str| {
            serde_json::json!({"type":"offer","target":"publisher","sdp":sdp}).to_string()
        };
        assert_eq!(s.on_text(&offer(AV), now).unwrap_err().code(), "forbidden");
        let chat_only = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        assert!(s.on_text(&offer(chat_only), now).is_ok());
        let recv_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n";
        assert!(s.on_text(&offer(recv_only), now).is_ok());
    }

    #[test]
    fn an_unanswered_offer_is_made_again_once() {
        let mut s = joined();
        assert!(s.offer_needed(true));
        let first = s.offer_serial();
        assert!(!s.offer_needed(true), "one offer in flight");
        assert!(s.offer_unanswered(first), "timed out: offer again");
        let second = s.offer_serial();
        assert_ne!(first, second);
        assert!(!s.offer_unanswered(first), "the old offer's timer is stale");
        // The fresh offer carried the pending change: nothing left after its answer.
        assert!(!s.answer_applied());
        assert!(!s.offer_unanswered(second), "answered: nothing to redo");
        // The first offer's answer, late: ignored once, then refused as before.
        let now = Instant::now();
        let answer = r#"{"type":"answer","target":"subscriber","sdp":"x"}"#;
        assert_eq!(s.on_text(answer, now).unwrap(), Action::Nothing);
        assert_eq!(s.on_text(answer, now).unwrap_err().code(), "out_of_order");
    }

    #[test]
    fn message_rate_is_limited() {
        let l = SignallingLimits {
            signalling_rate: 10.0,
            signalling_burst: 5,
            ..limits()
        };
        let mut s = Signalling::new(&l, None);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(s.on_text(r#"{"type":"ping"}"#, t0).is_ok());
        }
        assert_eq!(
            s.on_text(r#"{"type":"ping"}"#, t0).unwrap_err().code(),
            "rate_limited"
        );
        assert_eq!(
            s.on_text(r#"{"type":"ping"}"#, t0).unwrap(),
            Action::Nothing,
            "reported once"
        );
        assert_eq!(
            s.on_text(r#"{"type":"ping"}"#, t0 + Duration::from_millis(150))
                .unwrap(),
            Action::Reply(ServerMessage::Pong)
        );
    }

    #[test]
    fn tokens_decide_room_and_name() {
        let secret = "k";
        let v = Arc::new(TokenVerifier::new(secret));
        let mut s = Signalling::new(&limits(), Some(v));
        let now = Instant::now();
        assert_eq!(
            s.on_text(r#"{"type":"join","room":"r","name":"n"}"#, now)
                .unwrap_err()
                .code(),
            "unauthorized"
        );
        let token = crate::auth::mint(
            secret,
            &crate::auth::Claims {
                room: "r".into(),
                sub: "u".into(),
                name: Some("From Token".into()),
                publish: true,
                subscribe: false,
                exp: crate::auth::expiry_in(Duration::from_secs(60)),
                iat: None,
                aud: Vec::new(),
                iss: None,
            },
        )
        .unwrap();
        let join =
            serde_json::json!({"type":"join","room":"r","name":"asked","token":token}).to_string();
        let Action::Join { name, grant, .. } = s.on_text(&join, now).unwrap() else {
            panic!("join")
        };
        assert_eq!(&*name, "From Token");
        assert!(!grant.subscribe);
    }
}
