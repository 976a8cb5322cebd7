//! The outside views the probes take: a bare WebSocket client that sends exactly what
//! it is told, a minimal HTTP GET, a real WebRTC offer, and the participant's options.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use plaza_client::ParticipantOptions;
use plaza_protocol::{IceServer, PeerTarget, ServerMessage};

pub type Res<T = ()> = Result<T, String>;

/// What a bare client reads from the server.
#[derive(Debug)]
pub enum Frame {
    Msg(ServerMessage),
    Ping,
    /// Closed, with the close code if there was a close frame.
    Closed(Option<u16>),
}

pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
    closed: bool,
}

impl Ws {
    pub async fn connect(addr: SocketAddr) -> Res<Ws> {
        let url = format!("ws://{addr}/ws");
        let (inner, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .map_err(|_| "websocket connect timed out".to_string())?
        .map_err(|e| format!("websocket connect: {e}"))?;
        Ok(Ws {
            inner,
            closed: false,
        })
    }

    /// Opens `/ws` with extra request headers: the socket, or the HTTP status refusing it.
    pub async fn connect_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Res<Result<Ws, u16>> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let mut req = format!("ws://{addr}/ws")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        for (k, v) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                HeaderValue::from_str(v).map_err(|e| e.to_string())?,
            );
        }
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .map_err(|_| "websocket connect timed out".to_string())?;
        match connected {
            Ok((inner, _)) => Ok(Ok(Ws {
                inner,
                closed: false,
            })),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Ok(Err(r.status().as_u16())),
            Err(e) => Err(format!("websocket connect: {e}")),
        }
    }

    pub async fn send(&mut self, text: impl Into<String>) -> Res {
        self.inner
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// The next frame that means something (text, ping, close), by `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Res<Frame> {
        if self.closed {
            return Ok(Frame::Closed(None));
        }
        loop {
            let next = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .map_err(|_| "nothing more from the server in time".to_string())?;
            return Ok(match next {
                Some(Ok(Message::Text(t))) => Frame::Msg(
                    serde_json::from_str(&t).map_err(|e| format!("bad JSON {t:?}: {e}"))?,
                ),
                Some(Ok(Message::Ping(_))) => Frame::Ping,
                Some(Ok(Message::Close(f))) => {
                    self.closed = true;
                    Frame::Closed(f.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    self.closed = true;
                    Frame::Closed(None)
                }
            });
        }
    }

    /// Reads until `want` picks a frame (it sees every one, the close included), for
    /// at most `within`.
    pub async fn until<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut want: impl FnMut(&Frame) -> Option<T>,
    ) -> Res<T> {
        let deadline = Instant::now() + within;
        loop {
            let frame = self
                .next(deadline)
                .await
                .map_err(|e| format!("waiting for {what}: {e}"))?;
            if let Some(t) = want(&frame) {
                return Ok(t);
            }
            if let Frame::Closed(code) = frame {
                return Err(format!("closed ({code:?}) while waiting for {what}"));
            }
        }
    }
}

/// What the server said to `join`.
#[derive(Debug)]
pub enum JoinResult {
    Joined {
        participant_id: String,
        ice_servers: Vec<IceServer>,
    },
    Refused(String),
}

/// Connects and sends `join`; returns the socket and `joined` or the refusal's code.
pub async fn join(
    addr: SocketAddr,
    room: &str,
    name: &str,
    token: Option<&str>,
) -> Res<(Ws, JoinResult)> {
    join_on(Ws::connect(addr).await?, room, name, token).await
}

/// Sends `join` on an open socket.
pub async fn join_on(
    mut ws: Ws,
    room: &str,
    name: &str,
    token: Option<&str>,
) -> Res<(Ws, JoinResult)> {
    let mut msg = serde_json::json!({"type": "join", "room": room, "name": name});
    if let Some(t) = token {
        msg["token"] = t.into();
    }
    ws.send(msg.to_string()).await?;
    let result = ws
        .until("joined or an error", Duration::from_secs(5), |f| match f {
            Frame::Msg(ServerMessage::Joined {
                participant_id,
                ice_servers,
                ..
            }) => Some(JoinResult::Joined {
                participant_id: participant_id.to_string(),
                ice_servers: ice_servers.clone(),
            }),
            Frame::Msg(ServerMessage::Error { code, .. }) => {
                Some(JoinResult::Refused(code.clone()))
            }
            _ => None,
        })
        .await?;
    Ok((ws, result))
}

/// Joins and insists on `joined`.
pub async fn joined(addr: SocketAddr, room: &str, name: &str) -> Res<(Ws, String)> {
    match join(addr, room, name, None).await? {
        (ws, JoinResult::Joined { participant_id, .. }) => Ok((ws, participant_id)),
        (_, JoinResult::Refused(code)) => Err(format!("{name} refused from {room}: {code}")),
    }
}

/// The ICE candidates the server announces for a publisher connection: join, send a
/// real offer (which carries no candidate), collect until the end of candidates.
pub async fn announced_candidates(addr: SocketAddr) -> Res<Vec<Candidate>> {
    let (mut ws, _) = joined(addr, "ice", "Ann").await?;
    let offer =
        serde_json::json!({"type": "offer", "target": "publisher", "sdp": real_offer().await?});
    ws.send(offer.to_string()).await?;
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ws.next(deadline).await? {
            Frame::Msg(ServerMessage::Answer { sdp, .. }) => lines.extend(
                sdp.lines()
                    .filter(|l| l.starts_with("a=candidate:"))
                    .map(str::to_string),
            ),
            Frame::Msg(ServerMessage::Candidate {
                target: PeerTarget::Publisher,
                candidate,
            }) => match candidate {
                Some(c) => lines.push(c.candidate),
                None => break,
            },
            Frame::Msg(ServerMessage::Error { code, message }) => {
                return Err(format!("offer refused: {code}: {message}"))
            }
            Frame::Closed(c) => return Err(format!("closed ({c:?}) before end of candidates")),
            _ => {}
        }
    }
    lines.iter().map(|l| Candidate::parse(l)).collect()
}

/// One candidate line, the fields a deployment cares about.
#[derive(Debug)]
pub struct Candidate {
    pub line: String,
    pub address: String,
    pub port: u16,
}

impl Candidate {
    fn parse(line: &str) -> Res<Candidate> {
        // candidate:<foundation> <component> <protocol> <priority> <address> <port> typ <type>
        let f: Vec<&str> = line
            .trim_start_matches("a=")
            .trim_start_matches("candidate:")
            .split_whitespace()
            .collect();
        if f.len() < 8 || f[6] != "typ" {
            return Err(format!("not a candidate line: {line:?}"));
        }
        Ok(Candidate {
            line: line.to_string(),
            address: f[4].to_string(),
            port: f[5].parse().map_err(|_| format!("bad port in {line:?}"))?,
        })
    }
}

/// A real publisher offer (audio + video + data channel) from a webrtc-rs peer,
/// made once.
pub async fn real_offer() -> Res<String> {
    static OFFER: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    OFFER
        .get_or_try_init(|| async {
            use webrtc::api::media_engine::MediaEngine;
            use webrtc::api::APIBuilder;
            use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
            let e = |e: webrtc::Error| e.to_string();
            let mut m = MediaEngine::default();
            m.register_default_codecs().map_err(e)?;
            let api = APIBuilder::new().with_media_engine(m).build();
            let pc = api
                .new_peer_connection(Default::default())
                .await
                .map_err(e)?;
            pc.add_transceiver_from_kind(RTPCodecType::Audio, None)
                .await
                .map_err(e)?;
            pc.add_transceiver_from_kind(RTPCodecType::Video, None)
                .await
                .map_err(e)?;
            pc.create_data_channel("chat", None).await.map_err(e)?;
            let offer = pc.create_offer(None).await.map_err(e)?;
            let _ = pc.close().await;
            Ok(offer.sdp)
        })
        .await
        .cloned()
}

/// `GET path` (HTTP/1.1, `Connection: close`) with extra headers: the status and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Res<(u16, String)> {
    http_request(addr, "GET", path, headers).await
}

pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Res<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&raw).to_string())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("{method} {path} timed out"))??;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((status, plaza_tools::server_process::http_body(head, body)))
}

/// `/healthz` as JSON.
pub async fn healthz(addr: SocketAddr) -> Res<serde_json::Value> {
    match http_get(addr, "/healthz", &[]).await? {
        (200, body) => serde_json::from_str(&body).map_err(|e| format!("healthz {body:?}: {e}")),
        (status, body) => Err(format!("healthz: HTTP {status} {body}")),
    }
}

/// A participant on this server: chat only unless told otherwise.
pub fn options(addr: SocketAddr, room: &str, name: &str) -> ParticipantOptions {
    let mut o = ParticipantOptions::new(format!("ws://{addr}/ws"), room, name);
    o.audio = false;
    o.video = None;
    // Never gather through a STUN/TURN server, whatever `joined` lists.
    o.ice_servers_override = Some(Vec::new());
    o
}
