//! Shared test harness: an in-process server on a loopback port and headless
//! participants speaking the real protocol with real WebRTC.
//!
//! Every test here does WebRTC, so the suite runs inside a loopback-only network
//! namespace (scripts/test.sh): `unshare -n sh -c 'ip link set lo up && cargo test'`.

#![allow(dead_code)]

pub mod coturn;
pub mod proxy;

use std::time::Duration;

use plaza::config::Config;
use plaza_client::{Event, Participant, ParticipantOptions, RemoteTrackStats};
use plaza_protocol::{MediaKind, ServerMessage};
use plaza_tools::testing::{loopback_config, TestServer};

pub const WAIT: Duration = Duration::from_secs(15);

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "plaza=warn".into()),
        )
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

pub fn server() -> TestServer {
    server_with(|_| {})
}

pub fn server_with(edit: impl FnOnce(&mut Config)) -> TestServer {
    init_logs();
    let mut config = loopback_config();
    edit(&mut config);
    TestServer::start(config).expect("server starts")
}

pub fn options(server: &TestServer, room: &str, name: &str) -> ParticipantOptions {
    let mut o = ParticipantOptions::new(server.ws_url(), room, name);
    o.record_payloads = true;
    o
}

pub async fn join(server: &TestServer, room: &str, name: &str) -> Participant {
    Participant::join(options(server, room, name))
        .await
        .unwrap_or_else(|e| panic!("{name} joins {room}: {e}"))
}

/// Waits until `p` receives audio and video from each of `publishers` (by id), at
/// least `min_packets` each.
pub async fn wait_media_from(
    p: &Participant,
    publishers: &[&Participant],
    min_packets: u64,
) -> Vec<RemoteTrackStats> {
    let want: Vec<String> = publishers.iter().map(|x| x.id.clone()).collect();
    p.wait_media(
        &format!("audio+video from {want:?} at {}", p.id),
        WAIT,
        |tracks| {
            want.iter().all(|id| {
                [MediaKind::Audio, MediaKind::Video].iter().all(|k| {
                    tracks.iter().any(|t| {
                        &t.publisher == id && t.kind == Some(*k) && t.packets >= min_packets
                    })
                })
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the participant's events include this server message.
pub fn has_server_event(p: &Participant, f: impl Fn(&ServerMessage) -> bool) -> bool {
    p.events()
        .iter()
        .any(|e| matches!(e, Event::Server(m) if f(m)))
}

/// A bare WebSocket client for protocol-level tests: sends exactly what it is told.
pub struct RawClient {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

pub enum Received {
    Message(ServerMessage),
    Closed(Option<u16>),
}

impl RawClient {
    pub async fn connect(server: &TestServer) -> RawClient {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .expect("websocket connects");
        RawClient { ws }
    }

    pub async fn send(&mut self, text: impl Into<String>) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Binary(data))
            .await
            .expect("send");
    }

    /// The next protocol message or the close, skipping pings.
    pub async fn recv(&mut self) -> Received {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        // One deadline for the whole wait: the server's pings arrive every 250 ms and
        // must not keep extending it.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("server answers in time");
            match next {
                Some(Ok(Message::Text(t))) => {
                    return Received::Message(
                        serde_json::from_str(&t).expect("server sends valid JSON"),
                    )
                }
                Some(Ok(Message::Close(f))) => {
                    return Received::Closed(f.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    /// Waits for an `error` frame and returns its code.
    pub async fn error_code(&mut self) -> String {
        loop {
            match self.recv().await {
                Received::Message(ServerMessage::Error { code, .. }) => return code,
                Received::Message(_) => continue,
                Received::Closed(c) => panic!("closed ({c:?}) instead of an error frame"),
            }
        }
    }

    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(c) = self.recv().await {
                return c;
            }
        }
    }

    pub async fn join(&mut self, room: &str, name: &str) -> String {
        self.send(format!(
            r#"{{"type":"join","room":"{room}","name":"{name}"}}"#
        ))
        .await;
        loop {
            match self.recv().await {
                Received::Message(ServerMessage::Joined { participant_id, .. }) => {
                    return participant_id.to_string()
                }
                Received::Message(ServerMessage::Error { code, message }) => {
                    panic!("join refused: {code}: {message}")
                }
                Received::Message(_) => continue,
                Received::Closed(c) => panic!("closed ({c:?}) before joined"),
            }
        }
    }
}

/// A real publisher offer (audio + video + data channel) from a webrtc-rs peer, for
/// tests that need valid SDP without a full participant.
pub async fn real_offer() -> String {
    use std::sync::Arc;
    use webrtc::api::media_engine::MediaEngine;
    use webrtc::api::APIBuilder;
    use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
    let mut m = MediaEngine::default();
    m.register_default_codecs().unwrap();
    let api = APIBuilder::new().with_media_engine(m).build();
    let pc = Arc::new(api.new_peer_connection(Default::default()).await.unwrap());
    pc.add_transceiver_from_kind(RTPCodecType::Audio, None)
        .await
        .unwrap();
    pc.add_transceiver_from_kind(RTPCodecType::Video, None)
        .await
        .unwrap();
    pc.create_data_channel("chat", None).await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    let _ = pc.close().await;
    offer.sdp
}

/// A minimal HTTP/1.1 request on loopback (enough for /healthz, /metrics and the admin
/// API): returns the status code and the body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, plaza_tools::server_process::http_body(head, body))
}

/// The value of the sample `name` (with its labels, if any) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
}

/// The server's `/metrics` text.
pub async fn metrics(server: &TestServer) -> String {
    let (status, text) = http(server.addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200, "/metrics: {text}");
    text
}
