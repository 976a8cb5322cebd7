//! One `RTCPeerConnection`, behind the few operations the session needs.
//!
//! Every call runs on the media runtime (`MediaPlane::run`): webrtc-rs 0.17 spawns its
//! internal tasks (ICE, DTLS, SRTP readers, interceptors) on the runtime of whoever calls
//! it, and those must land on the media runtime, not on an actix-web worker.
//!
//! Callbacks only turn webrtc-rs events into `PeerEvent`s for the owner's handler (the
//! session forwards them to its actor with `do_send`); they never touch session state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::track::track_local::TrackLocal;

use plaza_protocol::{IceCandidate, ParticipantId, PeerTarget, ProtocolError, TrackId};

use super::down_track::{DownTrack, SubscriberLink};
pub use super::events::{
    ConnectionState, DataChannel, DataMessage, IceConnectionState, PeerEvent, RemoteTrack,
    SenderHandle,
};
use super::feedback::FeedbackPolicy;
use super::keyframe::KeyframePolicy;
use super::slots;
use super::stats::TaskGuard;
use super::up_track::UpTrack;
use super::{lock, MediaPlane};
use crate::error::Error;

pub type PeerEventHandler = Arc<dyn Fn(PeerEvent) + Send + Sync>;

pub struct Peer {
    pub target: PeerTarget,
    /// The owner's event handler; down tracks report their pauses through it.
    handler: PeerEventHandler,
    pc: Arc<RTCPeerConnection>,
    media: Arc<MediaPlane>,
    /// Set once DTLS is up; down tracks read it to know when sending can start.
    transport_ready: Arc<AtomicBool>,
    /// This (subscriber) connection's down tracks: when the transport comes up, those
    /// already negotiated ask for their first keyframe at once.
    down_tracks: DownTracks,
    closed: AtomicBool,
    /// Remote candidates that came before the remote description (a client may trickle
    /// them right after its offer/answer; they are applied once it is set).
    early_candidates: Arc<std::sync::Mutex<Vec<RTCIceCandidateInit>>>,
    /// Counts this connection in `MediaStats::peer_connections` until `close` finishes.
    guard: std::sync::Mutex<Option<TaskGuard>>,
    /// Cancelled by `close`: ends the tasks this connection spawned (RTCP readers).
    tasks: tokio_util::sync::CancellationToken,
    /// Held by every webrtc-rs call on `pc` and by `close`: a close that comes while an
    /// answer or offer is being made waits for it. Closing in the middle of
    /// `set_local_description` let webrtc-rs start ICE gathering on a closed connection
    /// and leak its UDP sockets (found by the churn soak: about one socket per 11
    /// participants dropping right after their offer).
    ops: Arc<tokio::sync::Mutex<()>>,
}

impl Peer {
    pub(super) async fn new(
        media: Arc<MediaPlane>,
        target: PeerTarget,
        handler: PeerEventHandler,
    ) -> Result<Peer, Error> {
        let api = Arc::clone(&media.api);
        let config = media.rtc_configuration();
        let pc = media
            .run(async move { api.new_peer_connection(config).await })
            .await??;
        let pc = Arc::new(pc);
        let transport_ready = Arc::new(AtomicBool::new(false));
        let down_tracks = DownTracks::default();
        install_handlers(
            &pc,
            target,
            Arc::clone(&handler),
            &transport_ready,
            &down_tracks,
        );
        Ok(Peer {
            target,
            handler,
            guard: std::sync::Mutex::new(Some(TaskGuard::new(&media.stats.peer_connections))),
            pc,
            media,
            transport_ready,
            down_tracks,
            closed: AtomicBool::new(false),
            early_candidates: Arc::default(),
            tasks: tokio_util::sync::CancellationToken::new(),
            ops: Arc::default(),
        })
    }

    /// Starts forwarding a track the client publishes on this (publisher) connection;
    /// keyframe requests for it go out on this connection. See `UpTrack::start`.
    pub fn publish(
        &self,
        track: RemoteTrack,
        publisher: ParticipantId,
        keyframe_policy: KeyframePolicy,
        on_end: impl FnOnce(TrackId) + Send + 'static,
    ) -> Arc<UpTrack> {
        // Started on the media runtime: the read loop must not live on an actix worker.
        let _entered = self.media.handle().enter();
        UpTrack::start(
            track.0,
            &self.pc,
            publisher,
            keyframe_policy,
            Arc::clone(&self.media.stats),
            on_end,
        )
    }

    /// `up` as `subscriber` will get it on this (subscriber) connection; it receives
    /// packets once added with `UpTrack::add_subscriber`.
    pub fn down_track_for(&self, up: &Arc<UpTrack>, subscriber: ParticipantId) -> Arc<DownTrack> {
        let up_weak: std::sync::Weak<UpTrack> = Arc::downgrade(up);
        let down = Arc::new(DownTrack::new(
            up_weak,
            up.id.clone(),
            &up.publisher,
            up.codec().clone(),
            SubscriberLink {
                subscriber,
                transport_ready: self.transport_ready(),
                events: Arc::clone(&self.handler),
            },
            up.stats(),
        ));
        let mut list = lock(&self.down_tracks);
        list.retain(|d| d.strong_count() > 0);
        list.push(Arc::downgrade(&down));
        down
    }

    pub fn transport_ready(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.transport_ready)
    }

    /// Applies the client's offer and returns our answer (publisher connection).
    pub async fn answer(&self, offer_sdp: String) -> Result<String, ProtocolError> {
        let offer = RTCSessionDescription::offer(offer_sdp)
            .map_err(|e| ProtocolError::BadSdp(format!("offer does not parse: {e}")))?;
        let pc = Arc::clone(&self.pc);
        let early = Arc::clone(&self.early_candidates);
        let ops = Arc::clone(&self.ops);
        self.media
            .run(async move {
                let _op = ops.lock().await;
                pc.set_remote_description(offer)
                    .await
                    .map_err(|e| ProtocolError::BadSdp(format!("offer refused: {e}")))?;
                apply_early_candidates(&pc, &early).await;
                let answer = pc
                    .create_answer(None)
                    .await
                    .map_err(|e| ProtocolError::BadSdp(format!("cannot answer this offer: {e}")))?;
                let gathered = pc.gathering_complete_promise().await;
                pc.set_local_description(answer.clone())
                    .await
                    .map_err(|e| ProtocolError::Internal(e.to_string()))?;
                Ok(with_candidates(&pc, gathered, answer.sdp).await)
            })
            .await
            .map_err(internal)?
    }

    /// Creates and applies a new offer (subscriber connection); with `ice_restart`, with
    /// new ICE credentials (the client's path changed: `restart_ice`).
    pub async fn offer(&self, ice_restart: bool) -> Result<String, Error> {
        let pc = Arc::clone(&self.pc);
        let ops = Arc::clone(&self.ops);
        self.media
            .run(async move {
                let _op = ops.lock().await;
                let options = ice_restart.then(|| RTCOfferOptions {
                    ice_restart,
                    ..Default::default()
                });
                let offer = pc.create_offer(options).await?;
                let gathered = pc.gathering_complete_promise().await;
                pc.set_local_description(offer.clone()).await?;
                Ok::<_, Error>(with_candidates(&pc, gathered, offer.sdp).await)
            })
            .await?
    }

    /// Applies the client's answer to our last offer (subscriber connection).
    pub async fn accept_answer(&self, answer_sdp: String) -> Result<(), ProtocolError> {
        let answer = RTCSessionDescription::answer(answer_sdp)
            .map_err(|e| ProtocolError::BadSdp(format!("answer does not parse: {e}")))?;
        let pc = Arc::clone(&self.pc);
        let early = Arc::clone(&self.early_candidates);
        let ops = Arc::clone(&self.ops);
        self.media
            .run(async move {
                let _op = ops.lock().await;
                pc.set_remote_description(answer)
                    .await
                    .map_err(|e| ProtocolError::BadSdp(format!("answer refused: {e}")))?;
                apply_early_candidates(&pc, &early).await;
                Ok(())
            })
            .await
            .map_err(internal)?
    }

    /// Adds a trickled remote candidate. `None` (end of candidates) needs nothing.
    pub async fn add_candidate(
        &self,
        candidate: Option<IceCandidate>,
    ) -> Result<(), ProtocolError> {
        let Some(c) = candidate else { return Ok(()) };
        if c.candidate.is_empty() {
            return Ok(());
        }
        // Parsed now, so garbage is refused at once even if it would have been queued.
        let value = c
            .candidate
            .strip_prefix("candidate:")
            .unwrap_or(&c.candidate);
        webrtc::ice::candidate::candidate_base::unmarshal_candidate(value)
            .map_err(|e| ProtocolError::BadCandidate(format!("candidate does not parse: {e}")))?;
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        };
        let pc = Arc::clone(&self.pc);
        let early = Arc::clone(&self.early_candidates);
        let ops = Arc::clone(&self.ops);
        self.media
            .run(async move {
                let _op = ops.lock().await;
                if pc.remote_description().await.is_none() {
                    let mut queue = lock(&early);
                    if queue.len() >= MAX_EARLY_CANDIDATES {
                        return Err(ProtocolError::BadCandidate(
                            "too many candidates before the description they belong to".into(),
                        ));
                    }
                    queue.push(init);
                    return Ok(());
                }
                pc.add_ice_candidate(init)
                    .await
                    .map_err(|e| ProtocolError::BadCandidate(format!("candidate refused: {e}")))
            })
            .await
            .map_err(internal)?
    }

    /// Adds a down track to this (subscriber) connection and starts serving its RTCP
    /// (`DownTrack::serve_feedback`: keyframe requests, NACKs, loss). The next offer
    /// carries it.
    pub async fn add_down_track(&self, down: Arc<DownTrack>) -> Result<SenderHandle, Error> {
        let pc = Arc::clone(&self.pc);
        // Cancelled when this track is removed, or the connection closes.
        let stop = self.tasks.child_token();
        let reader_stop = stop.clone();
        let ops = Arc::clone(&self.ops);
        self.media
            .run(async move {
                let _op = ops.lock().await;
                let codec = down.codec().clone();
                let track: Arc<dyn TrackLocal + Send + Sync> = Arc::clone(&down) as _;
                let sender = slots::occupy(&pc, track, &codec).await?;
                let reader = Arc::clone(&sender);
                // Ends when the sender stops (track removed or connection closed), or
                // at the latest when this connection closes.
                tokio::spawn(async move {
                    down.serve_feedback(reader, stop, FeedbackPolicy::default())
                        .await;
                });
                Ok::<_, Error>(SenderHandle {
                    sender,
                    reader_stop,
                })
            })
            .await?
    }

    /// Takes a down track off this connection; its m-line goes inactive in the next
    /// offer and is free for the next track of its kind after that (`slots.rs`).
    pub async fn remove_down_track(&self, handle: SenderHandle) -> Result<(), Error> {
        handle.reader_stop.cancel();
        let sender = handle.sender;
        let pc = Arc::clone(&self.pc);
        let ops = Arc::clone(&self.ops);
        self.media
            .run(async move {
                let _op = ops.lock().await;
                pc.remove_track(&sender).await
            })
            .await??;
        Ok(())
    }

    /// Closes the connection in the background. Idempotent. Handlers are replaced by
    /// no-ops first: webrtc-rs 0.17 keeps callback boxes alive after close (#772), and
    /// nothing should reach a session that is gone.
    pub fn close(&self) {
        self.tasks.cancel();
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let pc = Arc::clone(&self.pc);
        let guard = lock(&self.guard).take();
        let ops = Arc::clone(&self.ops);
        self.media.handle().spawn(async move {
            let _op = ops.lock().await;
            clear_handlers(&pc);
            // Closing while ICE still gathers, while DTLS still waits for a client that
            // is gone, or while a transport comes up leaves nothing running only with
            // our patched webrtc and webrtc-ice (vendor/README.md, docs/decisions.md
            // §8): 0.17.2 as published keeps the connection and its sockets forever.
            let _ = pc.close().await;
            drop(guard);
        });
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.close();
    }
}

/// How long an offer or answer waits for our candidates to be gathered, so it can carry
/// them (see `with_candidates`). Host candidates take a few milliseconds; anything
/// slower still goes out by trickle.
const CANDIDATES_IN_SDP_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The local description with the candidates gathered so far in it, else `sdp`.
///
/// Candidates are trickled as well, but a description that already carries them lets
/// the other side start its connectivity checks the moment it applies it. A webrtc-rs
/// peer (the test client, the load tool) otherwise waits for its next 200 ms check
/// tick after the trickled candidates arrive: measured, that was ~200 ms of every
/// join's time to the first picture (docs/benchmarks.md, join timeline).
async fn with_candidates(
    pc: &RTCPeerConnection,
    mut gathered: tokio::sync::mpsc::Receiver<()>,
    sdp: String,
) -> String {
    let _ = tokio::time::timeout(CANDIDATES_IN_SDP_WAIT, gathered.recv()).await;
    match pc.local_description().await {
        Some(d) if d.sdp.contains("a=candidate") => d.sdp,
        _ => sdp,
    }
}

/// Candidates kept per connection while its remote description is missing.
const MAX_EARLY_CANDIDATES: usize = 64;

async fn apply_early_candidates(
    pc: &RTCPeerConnection,
    early: &std::sync::Mutex<Vec<RTCIceCandidateInit>>,
) {
    let queued = std::mem::take(&mut *lock(early));
    for c in queued {
        // A bad one was the client's mistake; the rest still count.
        let _ = pc.add_ice_candidate(c).await;
    }
}

fn internal(e: Error) -> ProtocolError {
    ProtocolError::Internal(e.to_string())
}

type DownTracks = Arc<std::sync::Mutex<Vec<Weak<DownTrack>>>>;

fn install_handlers(
    pc: &Arc<RTCPeerConnection>,
    target: PeerTarget,
    handler: PeerEventHandler,
    transport_ready: &Arc<AtomicBool>,
    down_tracks: &DownTracks,
) {
    let h = Arc::clone(&handler);
    pc.on_ice_candidate(Box::new(move |c| {
        let candidate = c.and_then(|c| c.to_json().ok()).map(|init| IceCandidate {
            candidate: init.candidate,
            // webrtc-rs leaves the mid empty; an empty mid names no media section, so
            // leave it out and let sdpMLineIndex (0, the bundle's first) say it.
            sdp_mid: init.sdp_mid.filter(|m| !m.is_empty()),
            sdp_mline_index: init.sdp_mline_index,
            username_fragment: init.username_fragment,
        });
        h(PeerEvent::Candidate(candidate));
        Box::pin(async {})
    }));
    let h = Arc::clone(&handler);
    let ready = Arc::clone(transport_ready);
    let downs = Arc::clone(down_tracks);
    pc.on_peer_connection_state_change(Box::new(move |s| {
        if s == RTCPeerConnectionState::Connected {
            ready.store(true, Ordering::Release);
            let waiting: Vec<_> = lock(&downs).iter().filter_map(Weak::upgrade).collect();
            for down in waiting {
                down.ask_keyframe_if_ready();
            }
        }
        h(PeerEvent::ConnectionState(s.into()));
        Box::pin(async {})
    }));
    let h = Arc::clone(&handler);
    pc.on_ice_connection_state_change(Box::new(move |s| {
        h(PeerEvent::IceConnectionState(s.into()));
        Box::pin(async {})
    }));
    if target == PeerTarget::Publisher {
        let h = Arc::clone(&handler);
        pc.on_track(Box::new(move |track, _receiver, _transceiver| {
            h(PeerEvent::Track(RemoteTrack(track)));
            Box::pin(async {})
        }));
        let h = handler;
        pc.on_data_channel(Box::new(move |dc| {
            // webrtc-rs starts reading the channel right after this callback returns,
            // so the message handler must be in place now, not after an actor hop
            // (or the client's first messages are lost).
            let on_message = Arc::clone(&h);
            let label = dc.label().to_string();
            dc.on_message(Box::new(move |message| {
                on_message(PeerEvent::DataMessage {
                    label: label.clone(),
                    message: message.into(),
                });
                Box::pin(async {})
            }));
            h(PeerEvent::DataChannel(DataChannel(dc)));
            Box::pin(async {})
        }));
    }
}

fn clear_handlers(pc: &RTCPeerConnection) {
    pc.on_ice_candidate(Box::new(|_| Box::pin(async {})));
    pc.on_peer_connection_state_change(Box::new(|_| Box::pin(async {})));
    pc.on_ice_connection_state_change(Box::new(|_| Box::pin(async {})));
    pc.on_track(Box::new(|_, _, _| Box::pin(async {})));
    pc.on_data_channel(Box::new(|_| Box::pin(async {})));
}
