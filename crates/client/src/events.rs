//! What a participant records: the ordered event log tests wait on, the per-track
//! receive counters, the log of what our publisher sent, and the `Shared` state the
//! participant's tasks and webrtc-rs callbacks write them through.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

use crate::options::{OnPacket, OnSent, ParticipantOptions};
use plaza_protocol::{ChatOut, ClientMessage, IceCandidate, MediaKind, PeerTarget, ServerMessage};

/// Something that happened to the participant, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A server message other than offer/answer/candidate (handled internally).
    Server(ServerMessage),
    Chat(ChatOut),
    /// A remote track arrived on the subscriber connection.
    RemoteTrack {
        track_id: String,
        publisher: String,
        kind: MediaKind,
    },
    /// Our publisher connection's state changed.
    PublisherState(RTCPeerConnectionState),
    SubscriberState(RTCPeerConnectionState),
    /// The server asked us (the publisher) for a keyframe.
    KeyframeRequested,
    /// The WebSocket closed; the close code if there was a close frame.
    Closed(Option<u16>),
    /// A candidate the server trickled for one of our connections (`None`: the server
    /// finished gathering). Recorded so tests can check what the server announces
    /// (UDP mux port, NAT 1:1 address); the client applies it as well.
    ServerCandidate {
        target: PeerTarget,
        candidate: Option<IceCandidate>,
    },
    /// The server offered on the subscriber connection: the offer's size, so tests
    /// can check it follows what the participant receives, not the room's history.
    SubscriberOffer {
        bytes: usize,
        /// `m=` sections in it.
        m_sections: usize,
        /// What the client did with it (see `Misbehave`).
        handled: OfferHandling,
    },
}

/// What the client did with a subscriber offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferHandling {
    Answered,
    /// Dropped on purpose (`Participant::misbehave`): no answer sent.
    Dropped,
    /// Answered with an SDP that cannot apply (`Participant::misbehave`).
    Garbled,
    /// The offer did not apply here.
    Refused,
}

/// When each step of joining happened, for the join timeline (docs/benchmarks.md): set
/// once each, by whichever task sees the step.
#[derive(Debug)]
pub(crate) struct Timeline {
    pub(crate) started: Instant,
    pub(crate) socket_open: Instant,
    pub(crate) joined: Instant,
    pub(crate) steps: [std::sync::OnceLock<Instant>; Step::COUNT],
}

/// The steps after `joined`, in the order they usually happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The server's answer to our publisher offer arrived.
    PublisherAnswer,
    /// Our publisher connection is connected (ICE and DTLS done).
    PublisherConnected,
    /// The server's first subscriber offer arrived.
    SubscriberOffer,
    /// ICE on our subscriber connection is connected (DTLS follows): splits the
    /// subscriber connection's time between the two.
    SubscriberIceConnected,
    /// Our subscriber connection is connected.
    SubscriberConnected,
    /// The first RTP packet of any remote track.
    FirstRtp,
    /// The first video packet that starts a keyframe.
    FirstKeyframe,
}

impl Step {
    pub const COUNT: usize = 7;
    pub const ALL: [Step; Step::COUNT] = [
        Step::PublisherAnswer,
        Step::PublisherConnected,
        Step::SubscriberOffer,
        Step::SubscriberIceConnected,
        Step::SubscriberConnected,
        Step::FirstRtp,
        Step::FirstKeyframe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::PublisherAnswer => "publisher answer",
            Step::PublisherConnected => "publisher connected",
            Step::SubscriberOffer => "first subscriber offer",
            Step::SubscriberIceConnected => "subscriber ICE connected",
            Step::SubscriberConnected => "subscriber connected",
            Step::FirstRtp => "first RTP",
            Step::FirstKeyframe => "first keyframe",
        }
    }
}

impl Timeline {
    pub(crate) fn mark(&self, step: Step) {
        let _ = self.steps[step as usize].set(Instant::now());
    }
}

/// Faults a test asks the participant to commit on the next subscriber offers, to
/// check that the server's negotiation recovers.
#[derive(Debug, Default)]
pub(crate) struct Misbehave {
    /// Offers to drop without answering.
    pub(crate) drop_offers: AtomicU64,
    /// Offers to answer with garbage.
    pub(crate) garble_answers: AtomicU64,
}

/// Everything received on one remote track.
#[derive(Debug, Clone, Default)]
pub struct RemoteTrackStats {
    pub track_id: String,
    /// The publisher's participant id (the stream id).
    pub publisher: String,
    pub kind: Option<MediaKind>,
    pub packets: u64,
    pub bytes: u64,
    /// Whether the first packet received started a keyframe (video).
    pub first_packet_keyframe: Option<bool>,
    pub first_packet_at: Option<Instant>,
    /// The sequence number of the last packet received (to NACK in tests).
    pub last_seq: Option<u16>,
    /// Stamps: distinct counters seen, and their range (for loss).
    pub stamps: u64,
    pub stamp_min: Option<u64>,
    pub stamp_max: Option<u64>,
    pub sources: HashSet<u64>,
    /// Relay latency samples (send stamp → receipt), µs.
    pub latencies_us: Vec<u32>,
    /// Payload fingerprints (with `record_payloads`).
    pub hashes: Vec<u64>,
}

impl RemoteTrackStats {
    /// Packets missing among the stamped ones between first and last received.
    pub fn lost(&self) -> u64 {
        match (self.stamp_min, self.stamp_max) {
            (Some(a), Some(b)) => (b - a + 1).saturating_sub(self.stamps),
            _ => 0,
        }
    }
}

/// What our own publisher sent.
#[derive(Debug, Default)]
pub struct SentLog {
    pub hashes: HashSet<u64>,
    pub packets: u64,
    pub keyframes: u64,
    pub keyframe_requests: Vec<Instant>,
}

/// The state a `Participant` shares with its tasks (socket reader, media senders and
/// receivers) and with the webrtc-rs callbacks.
pub(crate) struct Shared {
    pub(crate) events: Mutex<Vec<Event>>,
    /// Woken on every new event (`Participant::wait_for`).
    pub(crate) changed: Notify,
    pub(crate) remote: Mutex<HashMap<String, RemoteTrackStats>>,
    pub(crate) sent: Mutex<SentLog>,
    pub(crate) record_payloads: bool,
    /// Frames for the socket writer task.
    pub(crate) outbox: mpsc::UnboundedSender<WsMessage>,
    /// Set when a keyframe request arrives; the video sender makes the next frame one.
    pub(crate) force_keyframe: Arc<AtomicBool>,
    pub(crate) packets_received: AtomicU64,
    pub(crate) on_packet: Option<OnPacket>,
    pub(crate) on_sent: Option<OnSent>,
    pub(crate) track_stats: bool,
    pub(crate) misbehave: Misbehave,
    pub(crate) timeline: Timeline,
    /// What a resume needs (docs/protocol.md, "Resuming a session").
    pub(crate) resume: Mutex<ResumeState>,
    /// The latest room token: the one joined with, then each the server refreshed.
    pub(crate) token: Mutex<Option<String>>,
}

/// Both sides number the messages sent since `joined`; a resume sends again what the
/// other side did not get.
#[derive(Debug, Default)]
pub(crate) struct ResumeState {
    pub(crate) token: Option<String>,
    /// Server messages received since `joined` (`pong` and `resumed` not counted).
    pub(crate) received: u64,
    /// Our messages since `joined`, numbered, the last `SENT_KEPT`.
    pub(crate) sent: std::collections::VecDeque<(u64, String)>,
    pub(crate) sent_count: u64,
}

const SENT_KEPT: usize = 512;

impl Shared {
    /// Empty logs and counters, with the recording switches and hooks from `opts`.
    pub(crate) fn new(
        opts: &ParticipantOptions,
        outbox: mpsc::UnboundedSender<WsMessage>,
        timeline: Timeline,
    ) -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            changed: Notify::new(),
            remote: Mutex::new(HashMap::new()),
            sent: Mutex::new(SentLog::default()),
            record_payloads: opts.record_payloads,
            outbox,
            force_keyframe: Arc::new(AtomicBool::new(false)),
            packets_received: AtomicU64::new(0),
            on_packet: opts.on_packet.clone(),
            on_sent: opts.on_sent.clone(),
            track_stats: opts.track_stats,
            misbehave: Misbehave::default(),
            timeline,
            resume: Mutex::new(ResumeState::default()),
            token: Mutex::new(opts.token.clone()),
        }
    }

    pub(crate) fn push(&self, e: Event) {
        lock(&self.events).push(e);
        self.changed.notify_waiters();
    }

    pub(crate) fn send(&self, m: &ClientMessage) {
        if let Ok(text) = serde_json::to_string(m) {
            self.send_text(text);
        }
    }

    /// Numbers and keeps the frame (for a resume), and queues it for the socket; under
    /// one lock, so a resume sees each frame either in the outbox or in the log's tail.
    pub(crate) fn send_text(&self, text: String) {
        let mut r = lock(&self.resume);
        r.sent_count += 1;
        let n = r.sent_count;
        if r.sent.len() == SENT_KEPT {
            r.sent.pop_front();
        }
        r.sent.push_back((n, text.clone()));
        let _ = self.outbox.send(WsMessage::Text(text));
    }

    /// Queues a close frame: the socket's writer sends it after what is queued before.
    pub(crate) fn send_close(&self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = self.outbox.send(WsMessage::Close(Some(frame)));
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
