//! Churn soak driver: many short participant lives against one server, to prove that
//! whatever a participant does, everything it owned on the server goes away with it.
//!
//! One **cycle** is one participant's life: it joins a room, publishes audio and video,
//! waits until it receives media from someone in the room (bounded), sends a chat
//! message, then leaves in one of three ways, round-robin by cycle number:
//! - [`LeaveKind::Clean`]: a `leave` message; the server closes the socket.
//! - [`LeaveKind::Abrupt`]: the TCP connection is dropped without a close frame and the
//!   peer connections are closed (a crashed tab).
//! - [`LeaveKind::MidNegotiation`]: the socket is dropped during negotiation, in two
//!   alternating variants: right after sending the publisher offer, with the answer
//!   never read (a bare WebSocket client), or once the server's answer and first
//!   candidates have arrived, usually before ICE has connected (a full participant).
//!
//! `concurrency` cycles run at once, spread over `rooms` rooms. Optional long-lived
//! **residents** (per room) keep the rooms from emptying, so cycling participants have
//! someone to receive media from and the rooms see members come and go around them;
//! they leave cleanly at the end so the server can be checked for zeros.
//!
//! Failures are counted by leave kind and stage (`join`, `media`, `chat`, `leave`, ...),
//! never retried or hidden. [`run`] only drives clients; `plaza-soak` and the churn test
//! check the server side.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

use plaza_client::{
    build_client_api, ClientError, Event, Participant, ParticipantOptions, VideoOptions,
};
use plaza_protocol::{ClientMessage, MediaKind, PeerTarget, ServerMessage};

/// How a cycle's participant goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LeaveKind {
    Clean,
    Abrupt,
    MidNegotiation,
}

impl LeaveKind {
    pub const ALL: [LeaveKind; 3] = [
        LeaveKind::Clean,
        LeaveKind::Abrupt,
        LeaveKind::MidNegotiation,
    ];

    /// Round-robin: cycle `i` leaves the `i % 3`-th way.
    pub fn for_cycle(i: u64) -> LeaveKind {
        Self::ALL[(i % 3) as usize]
    }

    pub fn name(self) -> &'static str {
        match self {
            LeaveKind::Clean => "clean",
            LeaveKind::Abrupt => "abrupt",
            LeaveKind::MidNegotiation => "mid_negotiation",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// `ws://host:port/ws`
    pub url: String,
    /// Total cycles (participant lives) to run.
    pub cycles: u64,
    /// Cycles running at once.
    pub concurrency: usize,
    /// Rooms `soak-<prefix>-<n>`; cycle `i` joins room `i % rooms`.
    pub rooms: usize,
    pub room_prefix: String,
    /// Long-lived participants per room, joined first and leaving cleanly at the end.
    pub residents_per_room: usize,
    /// Number of the first cycle (names and leave kinds continue across runs).
    pub first_cycle: u64,
    /// How long a cycle waits to receive audio and video from someone. With residents
    /// a miss is a failure; without, a participant may legitimately be alone.
    pub media_wait: Duration,
    /// Bound for every other step (connect and join, chat channel, leave).
    pub step_timeout: Duration,
    /// What cycling participants and residents publish (kept light: the soak is about
    /// lifecycles, not throughput).
    pub video: VideoOptions,
    /// Local addresses for the participants' candidates.
    pub ice_ips: Vec<IpAddr>,
    /// Incremented as cycles finish (done or failed), for a sampler to read.
    pub progress: Arc<AtomicU64>,
    /// Only this way of leaving (to find which one leaks); `None`: all three in turn.
    pub only: Option<LeaveKind>,
}

impl SoakOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cycles: 300,
            concurrency: 4,
            rooms: 2,
            room_prefix: "soak".into(),
            residents_per_room: 1,
            first_cycle: 0,
            media_wait: Duration::from_secs(10),
            step_timeout: Duration::from_secs(10),
            video: VideoOptions {
                fps: 15,
                bitrate_bps: 100_000,
                keyframe_interval: None,
            },
            ice_ips: vec![IpAddr::from([127, 0, 0, 1])],
            progress: Arc::default(),
            only: None,
        }
    }

    fn room(&self, i: u64) -> String {
        format!("{}-{}", self.room_prefix, i % self.rooms.max(1) as u64)
    }

    fn participant(&self, room: String, name: String) -> ParticipantOptions {
        let mut o = ParticipantOptions::new(self.url.clone(), room, name);
        o.video = Some(self.video.clone());
        o.ice_ips = self.ice_ips.clone();
        o
    }
}

/// Cycles of one leave kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindTally {
    pub done: u64,
    pub failed: u64,
}

/// What the clients saw. Server-side figures are the caller's job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    pub cycles: u64,
    pub done: u64,
    pub failed: u64,
    pub by_kind: BTreeMap<LeaveKind, KindTally>,
    /// Failures by `kind/stage`, e.g. `abrupt/media`.
    pub failures: BTreeMap<String, u64>,
    /// The first few failure messages, for the report.
    pub failure_examples: Vec<String>,
    /// Cycles (clean or abrupt) that got no media and were alone in the room, so
    /// there was nobody to receive from (only without residents; not failures).
    pub alone_without_media: u64,
    /// Where mid-negotiation drops actually happened.
    pub mid_negotiation_at: BTreeMap<String, u64>,
    pub residents: usize,
    /// Residents that failed to join or to leave cleanly.
    pub resident_failures: u64,
    /// Chat messages from cycling participants that residents received.
    pub chats_seen_by_residents: u64,
    pub duration_secs: f64,
}

const MAX_EXAMPLES: usize = 20;

#[derive(Default)]
struct Tallies {
    report: SoakReport,
}

impl Tallies {
    fn done(&mut self, kind: LeaveKind) {
        self.report.done += 1;
        self.report.by_kind.entry(kind).or_default().done += 1;
    }

    fn failed(&mut self, kind: LeaveKind, stage: &str, i: u64, error: &str) {
        self.report.failed += 1;
        self.report.by_kind.entry(kind).or_default().failed += 1;
        *self
            .report
            .failures
            .entry(format!("{}/{stage}", kind.name()))
            .or_default() += 1;
        if self.report.failure_examples.len() < MAX_EXAMPLES {
            self.report
                .failure_examples
                .push(format!("cycle {i} {}/{stage}: {error}", kind.name()));
        }
    }

    fn mid_at(&mut self, at: &str) {
        *self
            .report
            .mid_negotiation_at
            .entry(at.to_string())
            .or_default() += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `opts.cycles` cycles and returns what happened. Residents join before the
/// first cycle and leave cleanly after the last, so on return the server should be
/// (or be about to become) empty of everything this run created.
pub async fn run(opts: &SoakOptions) -> SoakReport {
    let started = Instant::now();
    let tallies = Arc::new(Mutex::new(Tallies::default()));
    let opts = Arc::new(opts.clone());

    let mut residents = Vec::new();
    for r in 0..opts.rooms {
        for k in 0..opts.residents_per_room {
            let mut o = opts.participant(
                opts.room(r as u64),
                format!("resident-{}-{r}-{k}", opts.room_prefix),
            );
            // Residents live long: keep no per-packet statistics.
            o.track_stats = false;
            match tokio::time::timeout(opts.step_timeout, Participant::join(o)).await {
                Ok(Ok(p)) => residents.push(p),
                Ok(Err(e)) => resident_failed(&tallies, &format!("join: {e}")),
                Err(_) => resident_failed(&tallies, "join: timed out"),
            }
        }
    }
    lock(&tallies).report.residents = residents.len();

    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (opts, next, tallies) = (Arc::clone(&opts), Arc::clone(&next), Arc::clone(&tallies));
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= opts.cycles {
                    break;
                }
                cycle(&opts, opts.first_cycle + n, &tallies).await;
                opts.progress.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        if let Err(e) = w.await {
            // A panicking cycle is a failure of the driver, reported as such.
            resident_failed(&tallies, &format!("worker panicked: {e}"));
        }
    }

    let mut chats = 0;
    for p in residents {
        let events = p.events();
        chats += events
            .iter()
            .filter(|e| matches!(e, Event::Chat(c) if c.text.starts_with("soak ")))
            .count() as u64;
        // A resident the server closed during the run (e.g. 1009: its answer outgrew
        // the frame limit) is a failure even though its room went on.
        if let Some(code) = events.iter().find_map(|e| match e {
            Event::Closed(code) => Some(*code),
            _ => None,
        }) {
            resident_failed(
                &tallies,
                &format!("closed by the server during the run ({code:?})"),
            );
            continue;
        }
        match tokio::time::timeout(opts.step_timeout, p.leave()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => resident_failed(&tallies, &format!("leave: {e}")),
            Err(_) => resident_failed(&tallies, "leave: timed out"),
        }
    }
    let mut t = lock(&tallies);
    t.report.chats_seen_by_residents = chats;
    t.report.cycles = opts.cycles;
    t.report.duration_secs = started.elapsed().as_secs_f64();
    t.report.clone()
}

fn resident_failed(tallies: &Mutex<Tallies>, what: &str) {
    let mut t = lock(tallies);
    t.report.resident_failures += 1;
    if t.report.failure_examples.len() < MAX_EXAMPLES {
        t.report.failure_examples.push(format!("resident {what}"));
    }
}

/// One participant's life. Every failure is recorded; the participant is then dropped,
/// which is itself an abrupt leave the server must clean up after.
async fn cycle(opts: &SoakOptions, i: u64, tallies: &Mutex<Tallies>) {
    let kind = opts.only.unwrap_or(LeaveKind::for_cycle(i));
    let room = opts.room(i);
    let name = format!("cycler-{i}");
    // Mid-negotiation drops alternate between their two variants.
    let bare_variant = match opts.only {
        Some(_) => i.is_multiple_of(2),
        None => (i / 3).is_multiple_of(2),
    };
    let result = match kind {
        LeaveKind::MidNegotiation if bare_variant => offer_then_drop(opts, &room, &name)
            .await
            .map(|()| "offer sent, answer unread".to_string()),
        LeaveKind::MidNegotiation => answered_then_drop(opts, room, name).await,
        _ => full_life(opts, kind, i, room, name, tallies)
            .await
            .map(|()| String::new()),
    };
    let mut t = lock(tallies);
    match result {
        Ok(at) => {
            if kind == LeaveKind::MidNegotiation {
                t.mid_at(&at);
            }
            t.done(kind);
        }
        Err((stage, e)) => t.failed(kind, stage, i, &e),
    }
}

type StepResult<T> = Result<T, (&'static str, String)>;

async fn step<T>(
    stage: &'static str,
    within: Duration,
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> StepResult<T> {
    match tokio::time::timeout(within, f).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err((stage, e.to_string())),
        Err(_) => Err((stage, format!("timed out after {within:?}"))),
    }
}

/// Join, publish, receive, chat, then leave cleanly or vanish.
async fn full_life(
    opts: &SoakOptions,
    kind: LeaveKind,
    i: u64,
    room: String,
    name: String,
    tallies: &Mutex<Tallies>,
) -> StepResult<()> {
    let p = step(
        "join",
        opts.step_timeout,
        Participant::join(opts.participant(room, name)),
    )
    .await?;
    // Audio and video from one publisher, at least one packet each.
    let got_media = p
        .wait_media("audio+video from someone", opts.media_wait, |tracks| {
            tracks.iter().any(|a| {
                a.kind == Some(MediaKind::Audio)
                    && a.packets > 0
                    && tracks.iter().any(|v| {
                        v.kind == Some(MediaKind::Video)
                            && v.packets > 0
                            && v.publisher == a.publisher
                    })
            })
        })
        .await;
    if let Err(e) = got_media {
        if opts.residents_per_room > 0 || !p.others_at_join.is_empty() {
            return Err(("media", e.to_string()));
        }
        lock(tallies).report.alone_without_media += 1;
    }
    step(
        "chat",
        opts.step_timeout,
        p.chat(&format!("soak {i} from {}", p.id), None),
    )
    .await?;
    match kind {
        LeaveKind::Clean => step("leave", opts.step_timeout, p.leave()).await,
        _ => {
            p.vanish();
            Ok(())
        }
    }
}

/// A full participant that vanishes as soon as the server's answer and first
/// publisher candidate have arrived. Returns whether ICE had connected by then.
async fn answered_then_drop(opts: &SoakOptions, room: String, name: String) -> StepResult<String> {
    let p = step(
        "join",
        opts.step_timeout,
        Participant::join(opts.participant(room, name)),
    )
    .await?;
    step(
        "answer",
        opts.step_timeout,
        p.wait_for(
            "the server's first publisher candidate",
            opts.step_timeout,
            |ev| {
                ev.iter()
                    .any(|e| {
                        matches!(
                            e,
                            Event::ServerCandidate {
                                target: PeerTarget::Publisher,
                                ..
                            }
                        )
                    })
                    .then_some(())
            },
        ),
    )
    .await?;
    let connected = p.events().iter().any(|e| {
        matches!(
            e,
            Event::PublisherState(
                webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState::Connected
            )
        )
    });
    p.vanish();
    Ok(if connected {
        "answered, ICE already connected".into()
    } else {
        "answered, before ICE connected".into()
    })
}

/// A bare WebSocket client: joins, sends a real publisher offer, and drops the TCP
/// connection (no close frame) without reading the answer.
async fn offer_then_drop(opts: &SoakOptions, room: &str, name: &str) -> StepResult<()> {
    let offer = step("offer", opts.step_timeout, make_offer(&opts.ice_ips)).await?;
    let (mut ws, _) = step("join", opts.step_timeout, async {
        Ok(tokio_tungstenite::connect_async(opts.url.as_str()).await?)
    })
    .await?;
    let join = ClientMessage::Join {
        room: room.into(),
        name: name.into(),
        token: None,
    };
    let send = |m: &ClientMessage| WsMessage::Text(serde_json::to_string(m).unwrap_or_default());
    step("join", opts.step_timeout, async {
        ws.send(send(&join)).await?;
        loop {
            let msg = ws
                .next()
                .await
                .ok_or_else(|| ClientError::Protocol("closed before joined".into()))??;
            let WsMessage::Text(text) = msg else { continue };
            match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Joined { .. }) => return Ok(()),
                Ok(ServerMessage::Error { code, message }) => {
                    return Err(ClientError::Refused { code, message })
                }
                _ => continue,
            }
        }
    })
    .await?;
    let offer = ClientMessage::Offer {
        target: PeerTarget::Publisher,
        sdp: offer,
    };
    step("offer", opts.step_timeout, async {
        Ok(ws.send(send(&offer)).await?)
    })
    .await?;
    // Dropping the stream closes the TCP connection without a close frame.
    drop(ws);
    Ok(())
}

/// A real publisher offer (audio, video, chat channel) from a webrtc-rs peer that is
/// closed again at once: valid SDP whose ICE will never answer.
async fn make_offer(ice_ips: &[IpAddr]) -> Result<String, ClientError> {
    let api = build_client_api(ice_ips)?;
    let pc = api.new_peer_connection(Default::default()).await?;
    let result = async {
        pc.add_transceiver_from_kind(RTPCodecType::Audio, None)
            .await?;
        pc.add_transceiver_from_kind(RTPCodecType::Video, None)
            .await?;
        pc.create_data_channel(plaza_protocol::CHAT_CHANNEL_LABEL, None)
            .await?;
        Ok::<_, ClientError>(pc.create_offer(None).await?.sdp)
    }
    .await;
    let _ = pc.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_kinds_rotate() {
        let kinds: Vec<_> = (0..6).map(LeaveKind::for_cycle).collect();
        assert_eq!(
            kinds,
            [
                LeaveKind::Clean,
                LeaveKind::Abrupt,
                LeaveKind::MidNegotiation,
                LeaveKind::Clean,
                LeaveKind::Abrupt,
                LeaveKind::MidNegotiation
            ]
        );
    }

    #[test]
    fn cycles_spread_over_rooms() {
        let mut o = SoakOptions::new("ws://127.0.0.1:1/ws");
        o.rooms = 3;
        o.room_prefix = "t".into();
        assert_eq!(o.room(0), "t-0");
        assert_eq!(o.room(4), "t-1");
    }
}
