//! A synthetic participant for Janus VideoRoom, speaking the Janus API over WebSocket
//! (benches/baselines/janus/README.md gives the exact sequence): create a session,
//! attach, join as publisher, publish, then one multistream subscriber handle that
//! subscribes to every other feed and answers each offer Janus makes on it.
//!
//! Media is the same as the Plaza client's (`plaza_client::source`), sent on a
//! webrtc-rs peer connection built like the Plaza client's, so both servers get the
//! same packets. Janus' candidates are in its SDP; ours are gathered before each
//! offer/answer is sent (loopback gathering takes milliseconds), so nothing trickles.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use plaza_client::source::{send_audio, send_video};
use plaza_client::{OnPacket, OnSent, ReceivedPacket};
use plaza_protocol::MediaKind;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_remote::TrackRemote;

use crate::media_plan::MediaPlan;
use crate::recorder::lock;

const PLUGIN: &str = "janus.plugin.videoroom";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Janus destroys a session after 60 s without a request.
const KEEPALIVE: Duration = Duration::from_secs(25);
/// Rooms 1234..=1300 exist at start (janus.plugin.videoroom.jcfg); others are created.
pub const FIRST_ROOM: u64 = 1234;

/// One WebSocket to Janus: requests matched to answers by transaction, everything
/// else (unprompted events) on a channel.
struct Conn {
    out: mpsc::UnboundedSender<Message>,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    next: AtomicU64,
}

impl Conn {
    /// Sends a request and returns its answer: `success`/`error` for synchronous
    /// requests, the `event` after the `ack` for asynchronous ones.
    async fn request(&self, mut msg: Value) -> Result<Value> {
        let tx = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        msg["transaction"] = json!(tx);
        let (done, answer) = oneshot::channel();
        lock(&self.pending).insert(tx.clone(), done);
        self.out
            .send(Message::Text(msg.to_string()))
            .map_err(|_| anyhow!("janus websocket closed"))?;
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, answer)
            .await
            .map_err(|_| anyhow!("janus did not answer {}", msg["janus"]))?
            .map_err(|_| anyhow!("janus websocket closed"))?;
        if reply["janus"] == "error" {
            bail!("janus error: {}", reply["error"]);
        }
        Ok(reply)
    }

    /// Sends without waiting for the answer (trickle, keepalive).
    fn tell(&self, mut msg: Value) {
        msg["transaction"] = json!(format!("n{}", self.next.fetch_add(1, Ordering::Relaxed)));
        let _ = self.out.send(Message::Text(msg.to_string()));
    }
}

/// A joined Janus participant; dropping it stops its tasks and closes its connections.
pub struct JanusMember {
    pub feed_id: Option<u64>,
    tasks: Vec<JoinHandle<()>>,
    pcs: Vec<Arc<RTCPeerConnection>>,
}

impl Drop for JanusMember {
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let pcs: Vec<_> = self.pcs.drain(..).collect();
            rt.spawn(async move {
                for pc in pcs {
                    let _ = pc.close().await;
                }
            });
        }
    }
}

pub struct JoinSpec<'a> {
    pub url: &'a str,
    pub room: u64,
    pub name: &'a str,
    pub media: &'a MediaPlan,
    pub ice_ips: &'a [IpAddr],
    pub on_packet: OnPacket,
    pub on_sent: Option<OnSent>,
}

/// Joins `room`, publishes (if the plan has media) and subscribes to every feed there
/// is and will be. Returns once the publish answer is applied.
pub async fn join(spec: JoinSpec<'_>) -> Result<JanusMember> {
    let mut request = spec.url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
    // Nagle off, as browsers do (and as the Plaza client does).
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let (events_tx, mut events) = mpsc::unbounded_channel::<Value>();
    let conn = Arc::new(Conn {
        out,
        pending: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
    });
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    }));
    let reader_conn = Arc::clone(&conn);
    tasks.push(tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if v["janus"] == "ack" {
                continue;
            }
            let waiter = v["transaction"]
                .as_str()
                .and_then(|t| lock(&reader_conn.pending).remove(t));
            match waiter {
                Some(w) => {
                    let _ = w.send(v);
                }
                None => {
                    let _ = events_tx.send(v);
                }
            }
        }
    }));

    let session = id_of(&conn.request(json!({"janus": "create"})).await?)?;
    let ka = Arc::clone(&conn);
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(KEEPALIVE).await;
            ka.tell(json!({"janus": "keepalive", "session_id": session}));
        }
    }));
    let pub_handle = attach(&conn, session).await?;
    let joined = join_room(&conn, session, pub_handle, spec.room, spec.name).await?;
    let t0 = Instant::now();
    let my_feed = joined["id"].as_u64();
    let initial: Vec<u64> = feeds_of(&joined["publishers"]);

    let api = janus_api(spec.ice_ips)?;
    let config = RTCConfiguration::default();
    let mut pcs = Vec::new();
    if spec.media.audio || spec.media.video.is_some() {
        let pc = Arc::new(api.new_peer_connection(config.clone()).await?);
        pcs.push(Arc::clone(&pc));
        let on_sent = spec.on_sent.clone();
        let sent = move |p: &plaza_client::source::SentPacket<'_>| {
            if let Some(h) = &on_sent {
                (h.0)(p)
            }
        };
        if spec.media.audio {
            let track = local_track(MIME_TYPE_OPUS, 48000, 2, "audio", spec.name);
            pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
                .await?;
            tasks.push(tokio::spawn(send_audio(
                track,
                spec.media.fixture.clone(),
                sent.clone(),
            )));
        }
        if let Some(video) = spec.media.video.clone() {
            let track = local_track(MIME_TYPE_VP8, 90000, 0, "video", spec.name);
            let sender = pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
                .await?;
            let force = Arc::new(AtomicBool::new(false));
            let asked = Arc::clone(&force);
            tasks.push(tokio::spawn(async move {
                while let Ok((packets, _)) = sender.read_rtcp().await {
                    if packets.iter().any(|p| {
                        let a = p.as_any();
                        a.is::<PictureLossIndication>() || a.is::<FullIntraRequest>()
                    }) {
                        asked.store(true, Ordering::Release);
                    }
                }
            }));
            tasks.push(tokio::spawn(send_video(
                track,
                video,
                spec.media.fixture.clone(),
                force,
                sent,
            )));
        }
        let offer = pc.create_offer(None).await?;
        let sdp = gathered(&pc, offer).await?;
        let reply = conn
            .request(json!({
                "janus": "message", "session_id": session, "handle_id": pub_handle,
                "body": {"request": "publish", "audio": spec.media.audio,
                         "video": spec.media.video.is_some(), "display": spec.name},
                "jsep": {"type": "offer", "sdp": sdp},
            }))
            .await?;
        plugin_ok(&reply)?;
        let answer = reply["jsep"]["sdp"]
            .as_str()
            .context("publish answer without jsep")?;
        pc.set_remote_description(RTCSessionDescription::answer(answer.to_string())?)
            .await?;
        conn.tell(
            json!({"janus": "trickle", "session_id": session, "handle_id": pub_handle,
                         "candidate": {"completed": true}}),
        );
        tracing::debug!("{}: publish answered after {:?}", spec.name, t0.elapsed());
    }

    // The subscriber side runs on its own: it subscribes to feeds as they appear and
    // answers every offer Janus makes on the subscriber handle.
    let sub_pc = Arc::new(api.new_peer_connection(config).await?);
    pcs.push(Arc::clone(&sub_pc));
    let name = spec.name.to_string();
    sub_pc.on_peer_connection_state_change(Box::new(move |st| {
        tracing::debug!(
            "{name}: subscriber connection {st} after {:?}",
            t0.elapsed()
        );
        Box::pin(async {})
    }));
    let hook = spec.on_packet.clone();
    sub_pc.on_track(Box::new(move |track, _, _| {
        tokio::spawn(receive(track, hook.clone()));
        Box::pin(async {})
    }));
    let driver_conn = Arc::clone(&conn);
    let room = spec.room;
    tasks.push(tokio::spawn(async move {
        let mut sub = Subscriber {
            conn: driver_conn,
            session,
            room,
            private_id: joined["private_id"].as_u64(),
            handle: None,
            pc: sub_pc,
            subscribed: HashSet::new(),
        };
        let mut want: Vec<u64> = initial;
        loop {
            if !want.is_empty() {
                let feeds: Vec<u64> = std::mem::take(&mut want);
                if let Err(e) = sub.subscribe(&feeds).await {
                    tracing::warn!("janus subscribe: {e:#}");
                }
            }
            let Some(ev) = events.recv().await else { break };
            let data = &ev["plugindata"]["data"];
            if ev["sender"].as_u64() == Some(pub_handle) {
                want.extend(feeds_of(&data["publishers"]));
            } else if ev["jsep"]["type"] == "offer" {
                if let Err(e) = sub.answer(&ev).await {
                    tracing::warn!("janus subscriber answer: {e:#}");
                }
            }
        }
    }));
    Ok(JanusMember {
        feed_id: my_feed,
        tasks,
        pcs,
    })
}

struct Subscriber {
    conn: Arc<Conn>,
    session: u64,
    room: u64,
    private_id: Option<u64>,
    handle: Option<u64>,
    pc: Arc<RTCPeerConnection>,
    subscribed: HashSet<u64>,
}

impl Subscriber {
    async fn subscribe(&mut self, feeds: &[u64]) -> Result<()> {
        let new: Vec<u64> = feeds
            .iter()
            .copied()
            .filter(|f| self.subscribed.insert(*f))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let streams: Vec<Value> = new.iter().map(|f| json!({"feed": f})).collect();
        let reply = match self.handle {
            None => {
                let handle = attach(&self.conn, self.session).await?;
                self.handle = Some(handle);
                let mut body = json!({"request": "join", "ptype": "subscriber", "room": self.room,
                                      "use_msid": true, "streams": streams});
                if let Some(p) = self.private_id {
                    body["private_id"] = json!(p);
                }
                self.conn
                    .request(json!({"janus": "message", "session_id": self.session,
                                    "handle_id": handle, "body": body}))
                    .await?
            }
            Some(handle) => {
                self.conn
                    .request(json!({"janus": "message", "session_id": self.session,
                                    "handle_id": handle,
                                    "body": {"request": "subscribe", "streams": streams}}))
                    .await?
            }
        };
        plugin_ok(&reply)?;
        // "updating" (an offer of ours is unanswered) comes without an offer; the
        // combined offer follows as an unprompted event.
        if reply["jsep"]["type"] == "offer" {
            self.answer(&reply).await?;
        }
        Ok(())
    }

    async fn answer(&mut self, ev: &Value) -> Result<()> {
        let handle = self.handle.context("offer before the subscriber handle")?;
        let sdp = ev["jsep"]["sdp"].as_str().context("offer without sdp")?;
        self.pc
            .set_remote_description(RTCSessionDescription::offer(sdp.to_string())?)
            .await?;
        let answer = self.pc.create_answer(None).await?;
        let sdp = gathered(&self.pc, answer).await?;
        let reply = self
            .conn
            .request(
                json!({"janus": "message", "session_id": self.session, "handle_id": handle,
                            "body": {"request": "start"},
                            "jsep": {"type": "answer", "sdp": sdp}}),
            )
            .await?;
        plugin_ok(&reply)?;
        self.conn
            .tell(json!({"janus": "trickle", "session_id": self.session,
                              "handle_id": handle, "candidate": {"completed": true}}));
        tracing::debug!("subscriber answer sent (handle {handle})");
        Ok(())
    }
}

/// The Plaza client's WebRTC setup (codecs, interceptors, loopback candidates), except
/// that as the answerer (Janus offers the subscriber connection) we take the DTLS
/// server role. As DTLS client, webrtc-rs sent its ClientHello as soon as its own ICE
/// side was up; about one join in three, Janus was not ready yet, dropped it, and the
/// connection waited for webrtc-rs's 1 s retransmission: a client artifact that would
/// have been counted as Janus' join time.
fn janus_api(ice_ips: &[IpAddr]) -> Result<webrtc::api::API> {
    use webrtc::api::interceptor_registry::register_default_interceptors;
    use webrtc::api::media_engine::MediaEngine;
    use webrtc::api::setting_engine::SettingEngine;
    use webrtc::dtls_transport::dtls_role::DTLSRole;
    use webrtc::interceptor::registry::Registry;

    let mut media = MediaEngine::default();
    plaza_rtc::register_codecs(&mut media)?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let mut s = SettingEngine::default();
    plaza_rtc::tune_ice(&mut s);
    let allowed = ice_ips.to_vec();
    s.set_ip_filter(Box::new(move |ip| allowed.contains(&ip)));
    s.set_include_loopback_candidate(ice_ips.iter().any(IpAddr::is_loopback));
    s.set_answering_dtls_role(DTLSRole::Server)?;
    Ok(webrtc::api::APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(s)
        .build())
}

async fn attach(conn: &Conn, session: u64) -> Result<u64> {
    id_of(
        &conn
            .request(json!({"janus": "attach", "plugin": PLUGIN, "session_id": session}))
            .await?,
    )
}

/// Joins as publisher; creates the room first when Janus does not have it (426).
async fn join_room(conn: &Conn, session: u64, handle: u64, room: u64, name: &str) -> Result<Value> {
    let join = json!({"janus": "message", "session_id": session, "handle_id": handle,
                      "body": {"request": "join", "ptype": "publisher", "room": room,
                               "display": name}});
    let reply = conn.request(join.clone()).await?;
    if reply["plugindata"]["data"]["error_code"] == 426 {
        // Same settings as the preconfigured rooms; 427 (created meanwhile) is fine.
        conn.request(
            json!({"janus": "message", "session_id": session, "handle_id": handle,
                            "body": {"request": "create", "room": room, "publishers": 32,
                                     "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0,
                                     "fir_freq": 0, "notify_joining": true}}),
        )
        .await?;
        let reply = conn.request(join).await?;
        plugin_ok(&reply)?;
        return Ok(reply["plugindata"]["data"].clone());
    }
    plugin_ok(&reply)?;
    Ok(reply["plugindata"]["data"].clone())
}

fn id_of(reply: &Value) -> Result<u64> {
    reply["data"]["id"]
        .as_u64()
        .with_context(|| format!("no id in {reply}"))
}

fn plugin_ok(reply: &Value) -> Result<()> {
    let data = &reply["plugindata"]["data"];
    if let Some(code) = data["error_code"].as_u64() {
        bail!("videoroom error {code}: {}", data["error"]);
    }
    Ok(())
}

/// Feed ids of a `publishers` list.
fn feeds_of(list: &Value) -> Vec<u64> {
    list.as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default()
}

fn local_track(
    mime: &str,
    clock: u32,
    channels: u16,
    id: &str,
    stream: &str,
) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: mime.into(),
            clock_rate: clock,
            channels,
            ..Default::default()
        },
        id.into(),
        stream.into(),
    ))
}

/// Sets the local description and returns the SDP once ICE gathering is complete, so
/// it carries every candidate.
async fn gathered(pc: &RTCPeerConnection, desc: RTCSessionDescription) -> Result<String> {
    let mut done = pc.gathering_complete_promise().await;
    pc.set_local_description(desc).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), done.recv()).await;
    Ok(pc
        .local_description()
        .await
        .context("no local description")?
        .sdp)
}

/// Reads one remote track and reports each packet. With `use_msid` the stream id is
/// the publisher's feed id, like a Plaza participant id.
async fn receive(track: Arc<TrackRemote>, hook: OnPacket) {
    let kind = match track.kind() {
        RTPCodecType::Audio => MediaKind::Audio,
        _ => MediaKind::Video,
    };
    let publisher = track.stream_id();
    let track_id = track.id();
    while let Ok((pkt, _)) = track.read_rtp().await {
        if pkt.payload.is_empty() {
            continue;
        }
        (hook.0)(&ReceivedPacket {
            publisher: &publisher,
            track_id: &track_id,
            kind,
            header: &pkt.header,
            payload: &pkt.payload,
            at: Instant::now(),
        });
    }
}
