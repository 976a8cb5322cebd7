//! `Participant`: joining a room step by step, and the handle tests drive afterwards
//! (waiting on events and counters, chatting, leaving or vanishing).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice_transport::ice_candidate_pair::RTCIceCandidatePair;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::RTCPeerConnection;

use crate::api::{build_client_api, rtc_configuration};
use crate::events::{lock, Event, RemoteTrackStats, SentLog, Shared, Step};
use crate::receive::wire_subscriber_tracks;
use crate::signalling::{self, wire_peer};
use crate::{send, ClientError, ClientResult, ParticipantOptions};
use plaza_protocol::{
    ChatIn, ChatOut, ClientMessage, IceServer, ParticipantInfo, PeerTarget, ServerMessage,
    CHAT_CHANNEL_LABEL,
};

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
    /// The socket's writer and reader.
    socket_tasks: Vec<JoinHandle<()>>,
    outbox_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<WsMessage>>>,
    url: String,
    /// The video track we publish now, if any.
    video: Option<PublishedVideo>,
    /// Video tracks published so far (each gets a new track id).
    videos_published: u32,
    fixture: Option<Arc<crate::source::Fixture>>,
}

/// A video track on our publisher connection and the tasks that feed it.
struct PublishedVideo {
    sender: Arc<webrtc::rtp_transceiver::rtp_sender::RTCRtpSender>,
    tasks: Vec<JoinHandle<()>>,
}

impl Participant {
    /// Connects, joins, and starts publishing. Returns once `joined` has arrived and the
    /// publisher offer is sent; media flows shortly after.
    pub async fn join(opts: ParticipantOptions) -> ClientResult<Participant> {
        let (sink, stream, joined) = signalling::connect(&opts).await?;
        let (outbox, outbox_rx) = mpsc::unbounded_channel::<WsMessage>();
        let shared = Arc::new(Shared::new(&opts, outbox, joined.timeline));
        lock(&shared.resume).token = joined.resume_token.clone();
        let outbox_rx = Arc::new(tokio::sync::Mutex::new(outbox_rx));

        let ice_servers = opts
            .ice_servers_override
            .clone()
            .unwrap_or(joined.ice_servers);
        let config = rtc_configuration(&ice_servers, opts.relay_only);
        let (publisher, subscriber) = create_connections(&opts.ice_ips, config, &shared).await?;
        let mut tasks = Vec::new();

        // Publisher side: tracks, the chat channel, then the offer.
        if opts.audio {
            let fixture = opts.fixture.clone();
            tasks.push(send::publish_audio(&publisher, &joined.id, fixture, &shared).await?);
        }
        let mut video_track = None;
        if let Some(video) = opts.video.clone() {
            let fixture = opts.fixture.clone();
            let published =
                send::publish_video(&publisher, &joined.id, "video", video, fixture, &shared);
            let (sender, video_tasks) = published.await?;
            video_track = Some(PublishedVideo {
                sender,
                tasks: video_tasks.into(),
            });
        }
        let chat = open_chat(&publisher, &shared).await?;
        send_offer(&publisher, &shared).await?;

        let socket_tasks = signalling::start(
            sink,
            stream,
            Arc::clone(&outbox_rx),
            &shared,
            &publisher,
            &subscriber,
        )
        .into();

        Ok(Participant {
            id: joined.id,
            others_at_join: joined.others,
            ice_servers,
            shared,
            publisher,
            subscriber,
            chat,
            tasks,
            socket_tasks,
            outbox_rx,
            url: opts.url.clone(),
            video: video_track,
            videos_published: 1,
            fixture: opts.fixture.clone(),
        })
    }

    /// Takes our participant over on a new WebSocket after the old one was lost (or
    /// to move off a socket that still looks alive): same participant id, and the peer
    /// connections, tracks and subscriptions never stopped. Messages either side missed
    /// are sent again. Fails with `resume_failed` after the server's grace period.
    pub async fn resume(&mut self) -> ClientResult<()> {
        for t in self.socket_tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        let (sink, stream) = signalling::resume(&self.url, &self.shared, &self.outbox_rx).await?;
        self.socket_tasks = signalling::start(
            sink,
            stream,
            Arc::clone(&self.outbox_rx),
            &self.shared,
            &self.publisher,
            &self.subscriber,
        )
        .into();
        Ok(())
    }

    /// Moves to a new socket as the web client does when the network changed: the old
    /// socket is closed with a close frame whose `code` says whether we will resume
    /// (`plaza_protocol::close`), then `resume` takes the participant over.
    pub async fn close_socket_and_resume(&mut self, code: u16) -> ClientResult<()> {
        let before = closes(&self.events());
        self.shared.send_close(code, "moving to a new socket");
        self.wait_for(
            "the server to close the socket",
            Duration::from_secs(5),
            |events| (closes(events) > before).then_some(()),
        )
        .await?;
        self.resume().await
    }

    /// Stops publishing our video track, as a camera switched off: the track is removed
    /// from the publisher connection (its m-line goes inactive) and renegotiated; audio
    /// and the connection stay.
    pub async fn unpublish_video(&mut self) -> ClientResult<()> {
        let Some(video) = self.video.take() else {
            return Err(ClientError::Protocol("no video track to unpublish".into()));
        };
        for t in video.tasks {
            t.abort();
        }
        self.publisher.remove_track(&video.sender).await?;
        send_offer(&self.publisher, &self.shared).await
    }

    /// Publishes a new video track (a new track id) and renegotiates, as a camera
    /// switched back on or a screen share started.
    pub async fn publish_video(&mut self, options: crate::VideoOptions) -> ClientResult<()> {
        if self.video.is_some() {
            return Err(ClientError::Protocol("already publishing video".into()));
        }
        self.videos_published += 1;
        let track_id = format!("video-{}", self.videos_published);
        let fixture = self.fixture.clone();
        let published = send::publish_video(
            &self.publisher,
            &self.id,
            &track_id,
            options,
            fixture,
            &self.shared,
        );
        let (sender, tasks) = published.await?;
        self.video = Some(PublishedVideo {
            sender,
            tasks: tasks.into(),
        });
        send_offer(&self.publisher, &self.shared).await
    }

    /// The room token to rejoin with: the one joined with, or the latest the server
    /// sent (`token` messages) to replace it before it expired. A session that cannot
    /// be resumed is joined again with this, not with the original.
    pub fn latest_token(&self) -> Option<String> {
        lock(&self.shared.token).clone()
    }

    /// Options to join again as this participant after its session ended: `opts`
    /// with the latest room token.
    pub fn rejoin_options(&self, opts: &ParticipantOptions) -> ParticipantOptions {
        ParticipantOptions {
            token: self.latest_token(),
            ..opts.clone()
        }
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

    /// Makes the participant drop the next `drop` subscriber offers without answering,
    /// then answer the next `garble` with an SDP that cannot apply: the faults a lost
    /// message or a broken client cause, to check that the server offers again.
    pub fn misbehave(&self, drop: u64, garble: u64) {
        let m = &self.shared.misbehave;
        m.drop_offers.store(drop, Ordering::Release);
        m.garble_answers.store(garble, Ordering::Release);
    }

    /// How long each step of joining took, from the start of `join`: connecting the
    /// socket, `joined`, then each `Step` reached so far.
    pub fn timeline(&self) -> Vec<(&'static str, Duration)> {
        let t = &self.shared.timeline;
        let mut v = vec![
            ("socket open", t.socket_open - t.started),
            ("joined", t.joined - t.started),
        ];
        for step in Step::ALL {
            if let Some(at) = t.steps[step as usize].get() {
                v.push((step.name(), *at - t.started));
            }
        }
        v
    }

    /// The last subscriber offer's size: bytes and `m=` sections.
    pub fn last_subscriber_offer(&self) -> Option<(usize, usize)> {
        lock(&self.shared.events)
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::SubscriberOffer {
                    bytes, m_sections, ..
                } => Some((*bytes, *m_sections)),
                _ => None,
            })
    }

    pub fn packets_received(&self) -> u64 {
        self.shared.packets_received.load(Ordering::Relaxed)
    }

    /// Sends a chat message on the data channel (once it is open).
    pub async fn chat(&self, text: &str, to: Option<&str>) -> ClientResult<()> {
        let msg = ChatIn {
            text: text.into(),
            to: to.map(plaza_protocol::ids::ParticipantId::from_client),
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
        self.shared.send_text(text.into());
    }

    /// Leaves cleanly and waits for the server to close the socket.
    pub async fn leave(self) -> ClientResult<()> {
        // After a resume the old socket's close is in the log already: wait for a new one.
        let before = closes(&self.events());
        self.shared.send(&ClientMessage::Leave {});
        self.wait_for("the socket to close", Duration::from_secs(5), |events| {
            (closes(events) > before).then_some(())
        })
        .await
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
        for t in self.tasks.drain(..).chain(self.socket_tasks.drain(..)) {
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
        let video = self.video.take().map(|v| v.tasks).unwrap_or_default();
        let socket = self.socket_tasks.drain(..);
        for t in self.tasks.drain(..).chain(video).chain(socket) {
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

/// Creates the publisher and subscriber connections, gathering candidates only on
/// `ice_ips`, and wires them before any description is set so no candidate or state
/// change is missed: both trickle their candidates to the server and log their state,
/// and the subscriber's remote tracks are logged and read.
async fn create_connections(
    ice_ips: &[IpAddr],
    config: RTCConfiguration,
    shared: &Arc<Shared>,
) -> ClientResult<(Arc<RTCPeerConnection>, Arc<RTCPeerConnection>)> {
    let api = build_client_api(ice_ips)?;
    let publisher = Arc::new(api.new_peer_connection(config.clone()).await?);
    let subscriber = Arc::new(api.new_peer_connection(config).await?);
    wire_peer(&publisher, PeerTarget::Publisher, shared);
    wire_peer(&subscriber, PeerTarget::Subscriber, shared);
    wire_subscriber_tracks(&subscriber, shared);
    Ok((publisher, subscriber))
}

/// Creates the chat data channel on the publisher connection (before the offer, so the
/// offer includes it) and logs every chat message the server relays on it.
async fn open_chat(
    publisher: &RTCPeerConnection,
    shared: &Arc<Shared>,
) -> ClientResult<Arc<RTCDataChannel>> {
    let chat = publisher
        .create_data_channel(CHAT_CHANNEL_LABEL, None)
        .await?;
    let chat_shared = Arc::clone(shared);
    chat.on_message(Box::new(move |msg| {
        if let Ok(c) = serde_json::from_slice::<ChatOut>(&msg.data) {
            chat_shared.push(Event::Chat(c));
        }
        Box::pin(async {})
    }));
    Ok(chat)
}

/// Offers the publisher connection (our tracks and the chat channel) to the server; its
/// answer comes back through the signalling reader.
async fn send_offer(publisher: &RTCPeerConnection, shared: &Shared) -> ClientResult<()> {
    let offer = publisher.create_offer(None).await?;
    publisher.set_local_description(offer.clone()).await?;
    shared.send(&ClientMessage::Offer {
        target: PeerTarget::Publisher,
        sdp: offer.sdp,
    });
    Ok(())
}

fn summary(tracks: &[RemoteTrackStats]) -> String {
    let parts: Vec<String> = tracks
        .iter()
        .map(|t| format!("{}/{:?}: {} pkts", t.publisher, t.kind, t.packets))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// How many sockets have closed so far (a resumed participant has had several).
fn closes(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Closed(_)))
        .count()
}
