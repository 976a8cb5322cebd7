//! A headless participant: speaks Plaza's protocol over a real WebSocket and sends and
//! receives real WebRTC media (webrtc-rs), like a browser tab without a screen. The
//! tests and the load generator use it.
//!
//! Media is synthetic (see `media`): VP8- and Opus-shaped packets stamped with a source
//! id, a counter and the send time. The publisher answers keyframe requests (PLI/FIR)
//! with a keyframe and records them, so tests can watch the server ask.

pub mod media;
pub mod source;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_candidate_pair::RTCIceCandidatePair;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp::header::Header;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_remote::TrackRemote;

use self::media::{payload_hash, read_stamp, unix_us, Stamp};
use self::source::{Fixture, SentPacket};
use crate::protocol::{
    ChatIn, ChatOut, ClientMessage, IceCandidate, IceServer, MediaKind, ParticipantInfo,
    PeerTarget, ServerMessage, CHAT_CHANNEL_LABEL,
};
use crate::rtc::codec::{register_codecs, PayloadFormat};

pub type ClientResult<T> = Result<T, ClientError>;

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error("server refused: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

#[derive(Debug, Clone)]
pub struct VideoOptions {
    pub fps: u32,
    pub bitrate_bps: u32,
    /// Send a keyframe this often even unasked (real encoders do, rarely). `None`:
    /// only the first frame and frames answering a keyframe request are keyframes.
    pub keyframe_interval: Option<Duration>,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            fps: 30,
            bitrate_bps: 500_000,
            keyframe_interval: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ParticipantOptions {
    /// `ws://host:port/ws`
    pub url: String,
    pub room: String,
    pub name: String,
    pub token: Option<String>,
    pub audio: bool,
    pub video: Option<VideoOptions>,
    /// Local addresses to gather candidates on (loopback in tests).
    pub ice_ips: Vec<IpAddr>,
    /// Use only relayed (TURN) candidates, like a client behind a strict firewall.
    pub relay_only: bool,
    /// Replace the `ice_servers` from `joined` (e.g. to test wrong TURN credentials).
    pub ice_servers_override: Option<Vec<IceServer>>,
    /// Keep the hash of every payload sent and received (tests compare them).
    pub record_payloads: bool,
    /// Publish this real recording instead of synthetic stamped packets (for servers
    /// that decode what they relay). `video` still says whether video is sent.
    pub fixture: Option<Arc<Fixture>>,
    /// Called for every media packet received, on the receiving task: a load generator
    /// keeps its own counters here instead of polling `remote_tracks`.
    pub on_packet: Option<OnPacket>,
    /// Called for every media packet just before it is sent.
    pub on_sent: Option<OnSent>,
    /// Keep per-track counters and latency samples (`remote_tracks`). A load generator
    /// with its own `on_packet` turns this off to save a lock and a growing vector per
    /// packet.
    pub track_stats: bool,
}

/// Called for every media packet a subscriber receives (see `ParticipantOptions`).
#[derive(Clone)]
pub struct OnPacket(pub Arc<dyn Fn(&ReceivedPacket<'_>) + Send + Sync>);

/// Called for every media packet a publisher sends (see `ParticipantOptions`).
#[derive(Clone)]
pub struct OnSent(pub Arc<dyn Fn(&SentPacket<'_>) + Send + Sync>);

impl std::fmt::Debug for OnPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnPacket(..)")
    }
}

impl std::fmt::Debug for OnSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnSent(..)")
    }
}

/// One media packet as a subscriber received it.
pub struct ReceivedPacket<'a> {
    /// The publisher's participant id (the stream id).
    pub publisher: &'a str,
    pub track_id: &'a str,
    pub kind: MediaKind,
    pub header: &'a Header,
    pub payload: &'a [u8],
    pub at: Instant,
}

impl ParticipantOptions {
    pub fn new(url: impl Into<String>, room: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            room: room.into(),
            name: name.into(),
            token: None,
            audio: true,
            video: Some(VideoOptions::default()),
            ice_ips: vec![IpAddr::from([127, 0, 0, 1])],
            relay_only: false,
            ice_servers_override: None,
            record_payloads: false,
            fixture: None,
            on_packet: None,
            on_sent: None,
            track_stats: true,
        }
    }
}

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

struct Shared {
    events: Mutex<Vec<Event>>,
    changed: Notify,
    remote: Mutex<HashMap<String, RemoteTrackStats>>,
    sent: Mutex<SentLog>,
    record_payloads: bool,
    outbox: mpsc::UnboundedSender<WsMessage>,
    force_keyframe: Arc<AtomicBool>,
    packets_received: AtomicU64,
    on_packet: Option<OnPacket>,
    on_sent: Option<OnSent>,
    track_stats: bool,
}

impl Shared {
    fn push(&self, e: Event) {
        lock(&self.events).push(e);
        self.changed.notify_waiters();
    }

    fn send(&self, m: &ClientMessage) {
        if let Ok(text) = serde_json::to_string(m) {
            let _ = self.outbox.send(WsMessage::Text(text));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Participant {
    pub id: String,
    /// The members present when we joined.
    pub others_at_join: Vec<ParticipantInfo>,
    pub ice_servers: Vec<IceServer>,
    shared: Arc<Shared>,
    publisher: Arc<RTCPeerConnection>,
    subscriber: Arc<RTCPeerConnection>,
    chat: Arc<RTCDataChannel>,
    tasks: Vec<JoinHandle<()>>,
}

impl Participant {
    /// Connects, joins, and starts publishing. Returns once `joined` has arrived and the
    /// publisher offer is sent; media flows shortly after.
    pub async fn join(opts: ParticipantOptions) -> ClientResult<Participant> {
        let (ws, _) = tokio_tungstenite::connect_async(opts.url.as_str()).await?;
        let (mut sink, mut stream) = ws.split();
        let join = ClientMessage::Join {
            room: opts.room.clone(),
            name: opts.name.clone(),
            token: opts.token.clone(),
        };
        sink.send(WsMessage::Text(json(&join))).await?;
        let (id, others, servers) = loop {
            let msg = stream
                .next()
                .await
                .ok_or_else(|| ClientError::Protocol("closed before joined".into()))??;
            let WsMessage::Text(text) = msg else { continue };
            match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Joined {
                    participant_id,
                    participants,
                    ice_servers,
                    ..
                }) => break (participant_id.to_string(), participants, ice_servers),
                Ok(ServerMessage::Error { code, message }) => {
                    return Err(ClientError::Refused { code, message })
                }
                Ok(_) => continue,
                Err(e) => return Err(ClientError::Protocol(format!("{e}: {text}"))),
            }
        };

        let (outbox, mut outbox_rx) = mpsc::unbounded_channel::<WsMessage>();
        let shared = Arc::new(Shared {
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
        });

        let ice_servers = opts.ice_servers_override.clone().unwrap_or(servers);
        let config = RTCConfiguration {
            ice_servers: ice_servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone().unwrap_or_default(),
                    credential: s.credential.clone().unwrap_or_default(),
                })
                .collect(),
            ice_transport_policy: if opts.relay_only {
                RTCIceTransportPolicy::Relay
            } else {
                RTCIceTransportPolicy::All
            },
            ..Default::default()
        };
        let api = build_client_api(&opts.ice_ips)?;
        let publisher = Arc::new(api.new_peer_connection(config.clone()).await?);
        let subscriber = Arc::new(api.new_peer_connection(config).await?);
        let mut tasks = Vec::new();

        wire_peer(&publisher, PeerTarget::Publisher, &shared);
        wire_peer(&subscriber, PeerTarget::Subscriber, &shared);
        wire_subscriber_tracks(&subscriber, &shared);

        // Publisher side: tracks, the chat channel, then the offer.
        if opts.audio {
            let track = Arc::new(TrackLocalStaticRTP::new(
                RTCRtpCodecCapability {
                    mime_type: MIME_TYPE_OPUS.into(),
                    clock_rate: 48000,
                    channels: 2,
                    ..Default::default()
                },
                "audio".into(),
                id.clone(),
            ));
            publisher
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
                .await?;
            tasks.push(tokio::spawn(send_audio(
                track,
                opts.fixture.clone(),
                Arc::clone(&shared),
            )));
        }
        if let Some(video) = opts.video.clone() {
            let track = Arc::new(TrackLocalStaticRTP::new(
                RTCRtpCodecCapability {
                    mime_type: MIME_TYPE_VP8.into(),
                    clock_rate: 90000,
                    ..Default::default()
                },
                "video".into(),
                id.clone(),
            ));
            let sender = publisher
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
                .await?;
            let rtcp_shared = Arc::clone(&shared);
            tasks.push(tokio::spawn(async move {
                while let Ok((packets, _)) = sender.read_rtcp().await {
                    let asks = packets.iter().any(|p| {
                        let a = p.as_any();
                        a.is::<PictureLossIndication>() || a.is::<FullIntraRequest>()
                    });
                    if asks {
                        lock(&rtcp_shared.sent)
                            .keyframe_requests
                            .push(Instant::now());
                        rtcp_shared.force_keyframe.store(true, Ordering::Release);
                        rtcp_shared.push(Event::KeyframeRequested);
                    }
                }
            }));
            tasks.push(tokio::spawn(send_video(
                track,
                video,
                opts.fixture.clone(),
                Arc::clone(&shared),
            )));
        }
        let chat = publisher
            .create_data_channel(CHAT_CHANNEL_LABEL, None)
            .await?;
        let chat_shared = Arc::clone(&shared);
        chat.on_message(Box::new(move |msg| {
            if let Ok(c) = serde_json::from_slice::<ChatOut>(&msg.data) {
                chat_shared.push(Event::Chat(c));
            }
            Box::pin(async {})
        }));
        let offer = publisher.create_offer(None).await?;
        publisher.set_local_description(offer.clone()).await?;
        shared.send(&ClientMessage::Offer {
            target: PeerTarget::Publisher,
            sdp: offer.sdp,
        });

        tasks.push(tokio::spawn(async move {
            while let Some(m) = outbox_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        }));
        tasks.push(tokio::spawn(signalling(
            stream,
            Arc::clone(&shared),
            Arc::clone(&publisher),
            Arc::clone(&subscriber),
        )));

        Ok(Participant {
            id,
            others_at_join: others,
            ice_servers,
            shared,
            publisher,
            subscriber,
            chat,
            tasks,
        })
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.shared.events).clone()
    }

    /// Waits until `check` finds what it wants in the event history (all events so
    /// far, so order of arrival does not matter).
    pub async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&[Event]) -> Option<T>,
    ) -> ClientResult<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.changed.notified();
            if let Some(t) = check(&lock(&self.shared.events)) {
                return Ok(t);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ClientError::Timeout(what.to_string()));
            }
        }
    }

    /// Waits until the server sends an `error` with this code.
    pub async fn wait_error(&self, code: &str, within: Duration) -> ClientResult<String> {
        self.wait_for(&format!("error {code}"), within, |events| {
            events.iter().find_map(|e| match e {
                Event::Server(ServerMessage::Error { code: c, message }) if c == code => {
                    Some(message.clone())
                }
                _ => None,
            })
        })
        .await
    }

    /// A snapshot of every remote track's counters.
    pub fn remote_tracks(&self) -> Vec<RemoteTrackStats> {
        lock(&self.shared.remote).values().cloned().collect()
    }

    /// Polls the media counters (they change per packet, so there is no event to await)
    /// until `check` is satisfied.
    pub async fn wait_media(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&[RemoteTrackStats]) -> bool,
    ) -> ClientResult<Vec<RemoteTrackStats>> {
        let deadline = Instant::now() + within;
        loop {
            let tracks = self.remote_tracks();
            if check(&tracks) {
                return Ok(tracks);
            }
            if Instant::now() > deadline {
                return Err(ClientError::Timeout(format!(
                    "{what}; have {}",
                    summary(&tracks)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn sent<T>(&self, f: impl FnOnce(&SentLog) -> T) -> T {
        f(&lock(&self.shared.sent))
    }

    pub fn packets_received(&self) -> u64 {
        self.shared.packets_received.load(Ordering::Relaxed)
    }

    /// Sends a chat message on the data channel (once it is open).
    pub async fn chat(&self, text: &str, to: Option<&str>) -> ClientResult<()> {
        let msg = ChatIn {
            text: text.into(),
            to: to.map(crate::ids::ParticipantId::from_client),
        };
        self.chat_raw(serde_json::to_string(&msg).unwrap_or_default())
            .await
    }

    /// Sends any text on the chat channel, waiting for it to open.
    pub async fn chat_raw(&self, text: String) -> ClientResult<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.chat.ready_state()
            != webrtc::data_channel::data_channel_state::RTCDataChannelState::Open
        {
            if Instant::now() > deadline {
                return Err(ClientError::Timeout("chat channel open".into()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.chat.send_text(text).await?;
        Ok(())
    }

    /// Sends a protocol message.
    pub fn send(&self, msg: &ClientMessage) {
        self.shared.send(msg);
    }

    /// Sends any text frame (for bad-input tests).
    pub fn send_raw(&self, text: impl Into<String>) {
        let _ = self.shared.outbox.send(WsMessage::Text(text.into()));
    }

    /// Leaves cleanly and waits for the server to close the socket.
    pub async fn leave(self) -> ClientResult<()> {
        self.shared.send(&ClientMessage::Leave {});
        self.wait_closed(Duration::from_secs(5)).await.map(|_| ())
    }

    /// Waits until the WebSocket is closed; returns the close code, if there was one.
    pub async fn wait_closed(&self, within: Duration) -> ClientResult<Option<u16>> {
        self.wait_for("the socket to close", within, |events| {
            events.iter().find_map(|e| match e {
                Event::Closed(code) => Some(*code),
                _ => None,
            })
        })
        .await
    }

    /// Vanishes like a crashed tab: the TCP connection drops with no close frame (the
    /// peer connections are closed as the participant is dropped).
    pub fn vanish(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// Closes both peer connections but keeps the WebSocket: the server sees media
    /// stop and must notice the connection failed.
    pub async fn close_media(&self) {
        let _ = self.publisher.close().await;
        let _ = self.subscriber.close().await;
    }

    pub fn publisher_connection(&self) -> &Arc<RTCPeerConnection> {
        &self.publisher
    }

    pub fn subscriber_connection(&self) -> &Arc<RTCPeerConnection> {
        &self.subscriber
    }

    /// The candidate pair a connection sends its media on, once ICE has chosen one:
    /// tells a test whether media really went through TURN (`local.typ` relay) or to
    /// the UDP mux port (`remote.port`).
    pub async fn selected_pair(&self, target: PeerTarget) -> Option<RTCIceCandidatePair> {
        let pc = match target {
            PeerTarget::Publisher => &self.publisher,
            PeerTarget::Subscriber => &self.subscriber,
        };
        // Media and data share one bundled transport, reachable through the SCTP one.
        pc.sctp()
            .transport()
            .ice_transport()
            .get_selected_candidate_pair()
            .await
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let (p, s) = (Arc::clone(&self.publisher), Arc::clone(&self.subscriber));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = p.close().await;
                let _ = s.close().await;
            });
        }
    }
}

fn summary(tracks: &[RemoteTrackStats]) -> String {
    let parts: Vec<String> = tracks
        .iter()
        .map(|t| format!("{}/{:?}: {} pkts", t.publisher, t.kind, t.packets))
        .collect();
    format!("[{}]", parts.join(", "))
}

fn json(m: &ClientMessage) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

/// The webrtc-rs API every headless participant uses: Plaza's codecs, the default
/// interceptors, candidates only on `ice_ips`. Public for other protocol adapters.
pub fn build_client_api(ice_ips: &[IpAddr]) -> ClientResult<webrtc::api::API> {
    let mut media = MediaEngine::default();
    register_codecs(&mut media)?;
    let registry = crate::rtc::interceptors(&mut media)?;
    let mut s = SettingEngine::default();
    crate::rtc::tune_ice(&mut s);
    if !ice_ips.is_empty() {
        let allowed = ice_ips.to_vec();
        s.set_ip_filter(Box::new(move |ip| allowed.contains(&ip)));
        s.set_include_loopback_candidate(ice_ips.iter().any(IpAddr::is_loopback));
    }
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(s)
        .build())
}

fn wire_peer(pc: &Arc<RTCPeerConnection>, target: PeerTarget, shared: &Arc<Shared>) {
    let s = Arc::clone(shared);
    pc.on_ice_candidate(Box::new(move |c| {
        let candidate = c.and_then(|c| c.to_json().ok()).map(|i| IceCandidate {
            candidate: i.candidate,
            sdp_mid: i.sdp_mid,
            sdp_mline_index: i.sdp_mline_index,
            username_fragment: i.username_fragment,
        });
        s.send(&ClientMessage::Candidate { target, candidate });
        Box::pin(async {})
    }));
    let s = Arc::clone(shared);
    pc.on_peer_connection_state_change(Box::new(move |state| {
        s.push(match target {
            PeerTarget::Publisher => Event::PublisherState(state),
            PeerTarget::Subscriber => Event::SubscriberState(state),
        });
        Box::pin(async {})
    }));
}

fn wire_subscriber_tracks(pc: &Arc<RTCPeerConnection>, shared: &Arc<Shared>) {
    let s = Arc::clone(shared);
    pc.on_track(Box::new(move |track, _, _| {
        let kind = match track.kind() {
            RTPCodecType::Audio => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        s.push(Event::RemoteTrack {
            track_id: track.id(),
            publisher: track.stream_id(),
            kind,
        });
        tokio::spawn(receive(track, kind, Arc::clone(&s)));
        Box::pin(async {})
    }));
}

async fn receive(track: Arc<TrackRemote>, kind: MediaKind, shared: Arc<Shared>) {
    let track_id = track.id();
    let publisher = track.stream_id();
    let format = PayloadFormat::from_mime(&track.codec().capability.mime_type);
    while let Ok((pkt, _)) = track.read_rtp().await {
        if pkt.payload.is_empty() {
            continue;
        }
        let now = Instant::now();
        shared.packets_received.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &shared.on_packet {
            (hook.0)(&ReceivedPacket {
                publisher: &publisher,
                track_id: &track_id,
                kind,
                header: &pkt.header,
                payload: &pkt.payload,
                at: now,
            });
        }
        if !shared.track_stats {
            continue;
        }
        let header_len = match kind {
            MediaKind::Video => media::vp8_header_len(&pkt.payload),
            MediaKind::Audio => media::OPUS_HEADER_LEN,
        };
        let stamp: Option<Stamp> = read_stamp(&pkt.payload, header_len);
        let latency = stamp.map(|s| unix_us().saturating_sub(s.sent_at_us) as u32);
        let mut remote = lock(&shared.remote);
        let t = remote
            .entry(track_id.clone())
            .or_insert_with(|| RemoteTrackStats {
                track_id: track_id.clone(),
                publisher: publisher.clone(),
                kind: Some(kind),
                ..Default::default()
            });
        if t.packets == 0 {
            t.first_packet_at = Some(now);
            t.first_packet_keyframe = Some(format.is_keyframe_start(&pkt.payload));
        }
        t.packets += 1;
        t.bytes += pkt.payload.len() as u64;
        if let Some(s) = stamp {
            t.stamps += 1;
            t.stamp_min = Some(t.stamp_min.map_or(s.seq, |m| m.min(s.seq)));
            t.stamp_max = Some(t.stamp_max.map_or(s.seq, |m| m.max(s.seq)));
            t.sources.insert(s.source);
        }
        if let Some(l) = latency {
            t.latencies_us.push(l);
        }
        if shared.record_payloads {
            t.hashes.push(payload_hash(&pkt.payload));
        }
    }
}

fn record_sent(shared: &Shared, sent: &SentPacket<'_>) {
    let mut log = lock(&shared.sent);
    log.packets += 1;
    if sent.keyframe {
        log.keyframes += 1;
    }
    if shared.record_payloads {
        log.hashes.insert(payload_hash(sent.payload));
    }
    drop(log);
    if let Some(hook) = &shared.on_sent {
        (hook.0)(sent);
    }
}

async fn send_audio(
    track: Arc<TrackLocalStaticRTP>,
    fixture: Option<Arc<Fixture>>,
    shared: Arc<Shared>,
) {
    source::send_audio(track, fixture, |p| record_sent(&shared, p)).await
}

async fn send_video(
    track: Arc<TrackLocalStaticRTP>,
    opts: VideoOptions,
    fixture: Option<Arc<Fixture>>,
    shared: Arc<Shared>,
) {
    let force = Arc::clone(&shared.force_keyframe);
    source::send_video(track, opts, fixture, force, |p| record_sent(&shared, p)).await
}

/// Reads server messages in order and drives both peer connections.
async fn signalling(
    mut stream: futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
    shared: Arc<Shared>,
    publisher: Arc<RTCPeerConnection>,
    subscriber: Arc<RTCPeerConnection>,
) {
    // Candidates that arrive before the description they belong to.
    let mut early: HashMap<PeerTarget, Vec<RTCIceCandidateInit>> = HashMap::new();
    let mut close_code = None;
    loop {
        let msg = match stream.next().await {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                tracing::info!(error = %e, "signalling socket failed");
                break;
            }
            None => break,
        };
        let text = match msg {
            WsMessage::Text(t) => t,
            WsMessage::Close(frame) => {
                // Worth a line: a participant the server closed (oversized frame,
                // kicked, peer failed) otherwise vanishes from a soak without a trace.
                if let Some(f) = frame.as_ref().filter(|f| f.code != CloseCode::Normal) {
                    tracing::info!(code = u16::from(f.code), reason = %f.reason, "closed by the server");
                }
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => continue,
        };
        let Ok(msg) = serde_json::from_str::<ServerMessage>(&text) else {
            continue;
        };
        match msg {
            ServerMessage::Answer { sdp, .. } => {
                if let Ok(answer) = RTCSessionDescription::answer(sdp) {
                    let _ = publisher.set_remote_description(answer).await;
                    flush(&publisher, early.remove(&PeerTarget::Publisher)).await;
                }
            }
            ServerMessage::Offer { sdp, .. } => {
                let Ok(offer) = RTCSessionDescription::offer(sdp) else {
                    continue;
                };
                if subscriber.set_remote_description(offer).await.is_err() {
                    continue;
                }
                flush(&subscriber, early.remove(&PeerTarget::Subscriber)).await;
                if let Ok(answer) = subscriber.create_answer(None).await {
                    // Sent before gathering starts, so no candidate overtakes it.
                    shared.send(&ClientMessage::Answer {
                        target: PeerTarget::Subscriber,
                        sdp: answer.sdp.clone(),
                    });
                    let _ = subscriber.set_local_description(answer).await;
                }
            }
            ServerMessage::Candidate {
                target,
                candidate: Some(c),
            } => {
                shared.push(Event::ServerCandidate {
                    target,
                    candidate: Some(c.clone()),
                });
                let init = RTCIceCandidateInit {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_mline_index: c.sdp_mline_index,
                    username_fragment: c.username_fragment,
                };
                let pc = match target {
                    PeerTarget::Publisher => &publisher,
                    PeerTarget::Subscriber => &subscriber,
                };
                if pc.remote_description().await.is_some() {
                    let _ = pc.add_ice_candidate(init).await;
                } else {
                    early.entry(target).or_default().push(init);
                }
            }
            ServerMessage::Candidate {
                target,
                candidate: None,
            } => shared.push(Event::ServerCandidate {
                target,
                candidate: None,
            }),
            other => shared.push(Event::Server(other)),
        }
    }
    shared.push(Event::Closed(close_code));
}

async fn flush(pc: &RTCPeerConnection, candidates: Option<Vec<RTCIceCandidateInit>>) {
    for c in candidates.unwrap_or_default() {
        let _ = pc.add_ice_candidate(c).await;
    }
}
