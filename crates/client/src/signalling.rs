//! The WebSocket side of a participant: joining, the writer task that drains the
//! outbox, and the reader task that applies the server's offers, answers and
//! candidates to the two peer connections and logs everything else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_connection_state::RTCIceConnectionState;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

use crate::events::{lock, Event, OfferHandling, Shared, Step, Timeline};
use crate::{ClientError, ClientResult, ParticipantOptions};
use plaza_protocol::{
    ClientMessage, IceCandidate, IceServer, ParticipantInfo, PeerTarget, ServerMessage,
};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;
pub(crate) type SocketSink = SplitSink<Socket, WsMessage>;
pub(crate) type SocketStream = SplitStream<Socket>;

/// What `joined` told us.
pub(crate) struct Joined {
    pub(crate) id: String,
    pub(crate) others: Vec<ParticipantInfo>,
    pub(crate) ice_servers: Vec<IceServer>,
    pub(crate) resume_token: Option<String>,
    /// Connect, socket open and `joined`, for the join timeline.
    pub(crate) timeline: Timeline,
}

/// Opens the WebSocket, sends `join` and waits for `joined`, skipping anything else
/// the server sends first. A server `error` before that is a refusal.
pub(crate) async fn connect(
    opts: &ParticipantOptions,
) -> ClientResult<(SocketSink, SocketStream, Joined)> {
    let started = Instant::now();
    // Nagle off, as browsers do: see the server's `tcp_nodelay`.
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(opts.url.as_str(), None, true).await?;
    let socket_open = Instant::now();
    let (mut sink, mut stream) = ws.split();
    let join = ClientMessage::Join {
        room: opts.room.clone(),
        name: opts.name.clone(),
        token: opts.token.clone(),
    };
    sink.send(WsMessage::Text(json(&join))).await?;
    let joined = loop {
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
                resume_token,
                ..
            }) => {
                break Joined {
                    id: participant_id.to_string(),
                    others: participants,
                    ice_servers,
                    resume_token,
                    timeline: Timeline {
                        started,
                        socket_open,
                        joined: Instant::now(),
                        steps: Default::default(),
                    },
                }
            }
            Ok(ServerMessage::Error { code, message }) => {
                return Err(ClientError::Refused { code, message })
            }
            Ok(_) => continue,
            Err(e) => return Err(ClientError::Protocol(format!("{e}: {text}"))),
        }
    };
    Ok((sink, stream, joined))
}

fn json(m: &ClientMessage) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

/// Starts the socket's two tasks once the publisher offer is queued: the writer (which
/// sends the offer and everything after it) and the reader (`signalling`).
/// Opens a new socket and takes over our participant with the resume token: sends
/// `resume`, waits for `resumed`, drops what the outbox still holds and sends again, in
/// order, every message the server says it did not get. Then `start` goes on.
pub(crate) async fn resume(
    url: &str,
    shared: &Shared,
    outbox_rx: &Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<WsMessage>>>,
) -> ClientResult<(SocketSink, SocketStream)> {
    let (token, received) = {
        let r = lock(&shared.resume);
        let token = r
            .token
            .clone()
            .ok_or_else(|| ClientError::Protocol("no resume token".into()))?;
        (token, r.received)
    };
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let (mut sink, mut stream) = ws.split();
    sink.send(WsMessage::Text(json(&ClientMessage::Resume {
        token,
        received,
    })))
    .await?;
    let server_received = loop {
        let msg = stream
            .next()
            .await
            .ok_or_else(|| ClientError::Protocol("closed before resumed".into()))??;
        let WsMessage::Text(text) = msg else { continue };
        match serde_json::from_str::<ServerMessage>(&text) {
            Ok(ServerMessage::Resumed {
                resume_token,
                received,
                ..
            }) => {
                lock(&shared.resume).token = Some(resume_token);
                break received;
            }
            Ok(ServerMessage::Error { code, message }) => {
                return Err(ClientError::Refused { code, message })
            }
            Ok(_) => continue,
            Err(e) => return Err(ClientError::Protocol(format!("{e}: {text}"))),
        }
    };
    // The old writer is gone (aborted), so the receiver is free.
    let mut rx = outbox_rx.lock().await;
    let again: Vec<String> = {
        let r = lock(&shared.resume);
        while rx.try_recv().is_ok() {} // all of it is in the log too
        r.sent
            .iter()
            .filter(|(n, _)| *n > server_received)
            .map(|(_, text)| text.clone())
            .collect()
    };
    drop(rx);
    for text in again {
        sink.send(WsMessage::Text(text)).await?;
    }
    Ok((sink, stream))
}

pub(crate) fn start(
    sink: SocketSink,
    stream: SocketStream,
    outbox_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<WsMessage>>>,
    shared: &Arc<Shared>,
    publisher: &Arc<RTCPeerConnection>,
    subscriber: &Arc<RTCPeerConnection>,
) -> [JoinHandle<()>; 2] {
    let writer = tokio::spawn(write_socket(sink, outbox_rx));
    let reader = tokio::spawn(signalling(
        stream,
        Arc::clone(shared),
        Arc::clone(publisher),
        Arc::clone(subscriber),
    ));
    [writer, reader]
}

/// Writes the outbox to the socket until either ends, then closes the socket. Everything
/// we send goes through the outbox, so callbacks (candidates) never wait on the socket.
async fn write_socket(
    mut sink: SocketSink,
    outbox_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<WsMessage>>>,
) {
    let mut outbox_rx = outbox_rx.lock().await;
    while let Some(m) = outbox_rx.recv().await {
        if sink.send(m).await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Sends our candidates for `pc` to the server and logs its state changes.
pub(crate) fn wire_peer(pc: &Arc<RTCPeerConnection>, target: PeerTarget, shared: &Arc<Shared>) {
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
    if target == PeerTarget::Subscriber {
        let s = Arc::clone(shared);
        pc.on_ice_connection_state_change(Box::new(move |state| {
            if state == RTCIceConnectionState::Connected {
                s.timeline.mark(Step::SubscriberIceConnected);
            }
            Box::pin(async {})
        }));
    }
    let s = Arc::clone(shared);
    pc.on_peer_connection_state_change(Box::new(move |state| {
        if state == RTCPeerConnectionState::Connected {
            s.timeline.mark(match target {
                PeerTarget::Publisher => Step::PublisherConnected,
                PeerTarget::Subscriber => Step::SubscriberConnected,
            });
        }
        s.push(match target {
            PeerTarget::Publisher => Event::PublisherState(state),
            PeerTarget::Subscriber => Event::SubscriberState(state),
        });
        Box::pin(async {})
    }));
}

/// Reads server messages in order and drives both peer connections.
async fn signalling(
    mut stream: SocketStream,
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
        if !matches!(msg, ServerMessage::Pong | ServerMessage::Resumed { .. }) {
            lock(&shared.resume).received += 1;
        }
        match msg {
            ServerMessage::Answer { sdp, .. } => {
                shared.timeline.mark(Step::PublisherAnswer);
                if let Ok(answer) = RTCSessionDescription::answer(sdp) {
                    let _ = publisher.set_remote_description(answer).await;
                    flush(&publisher, early.remove(&PeerTarget::Publisher)).await;
                }
            }
            ServerMessage::Offer { sdp, .. } => {
                shared.timeline.mark(Step::SubscriberOffer);
                let handled = answer_offer(&subscriber, &shared, &mut early, &sdp).await;
                shared.push(Event::SubscriberOffer {
                    bytes: sdp.len(),
                    m_sections: sdp.lines().filter(|l| l.starts_with("m=")).count(),
                    handled,
                });
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
            other => {
                if let ServerMessage::Token { token, .. } = &other {
                    // Before the event, so whoever waits for it finds the new token.
                    *lock(&shared.token) = Some(token.clone());
                }
                shared.push(Event::Server(other))
            }
        }
    }
    shared.push(Event::Closed(close_code));
}

/// Applies a subscriber offer and answers it, unless a test asked for a fault.
async fn answer_offer(
    subscriber: &RTCPeerConnection,
    shared: &Shared,
    early: &mut HashMap<PeerTarget, Vec<RTCIceCandidateInit>>,
    sdp: &str,
) -> OfferHandling {
    if take_one(&shared.misbehave.drop_offers) {
        return OfferHandling::Dropped;
    }
    let Ok(offer) = RTCSessionDescription::offer(sdp.to_string()) else {
        return OfferHandling::Refused;
    };
    if subscriber.set_remote_description(offer).await.is_err() {
        return OfferHandling::Refused;
    }
    flush(subscriber, early.remove(&PeerTarget::Subscriber)).await;
    let Ok(answer) = subscriber.create_answer(None).await else {
        return OfferHandling::Refused;
    };
    let garble = take_one(&shared.misbehave.garble_answers);
    // Sent before gathering starts, so no candidate overtakes it. A garbled answer is
    // well-formed JSON with an SDP that cannot apply (a client bug, or one mangled on
    // the way); our side applies the real one, so the server's next offer applies here.
    let sdp = if garble {
        "v=0\r\nthis is not an answer\r\n".to_string()
    } else {
        answer.sdp.clone()
    };
    shared.send(&ClientMessage::Answer {
        target: PeerTarget::Subscriber,
        sdp,
    });
    let _ = subscriber.set_local_description(answer).await;
    if garble {
        OfferHandling::Garbled
    } else {
        OfferHandling::Answered
    }
}

/// Takes one from a fault counter; false when it is zero.
fn take_one(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

/// Applies the candidates held back until their connection had a remote description.
async fn flush(pc: &RTCPeerConnection, candidates: Option<Vec<RTCIceCandidateInit>>) {
    for c in candidates.unwrap_or_default() {
        let _ = pc.add_ice_candidate(c).await;
    }
}
