//! Events from the participant's two peer connections (`FromPeer`, sent by the media
//! plane's callbacks with `do_send`), and the client's trickled candidates.

use std::sync::Arc;

use actix::prelude::*;
use plaza_protocol::{IceCandidate, PeerTarget, ProtocolError, ServerMessage, CHAT_CHANNEL_LABEL};
use tracing::{debug, info};

use super::{timeout, FromPeer, WsSession};
use crate::rtc::{ConnectionState, IceConnectionState, PeerEvent, PeerEventHandler};

impl WsSession {
    pub(super) fn peer_handler(ctx: &Context<Self>, target: PeerTarget) -> PeerEventHandler {
        let addr = ctx.address().downgrade();
        Arc::new(move |event| {
            if let Some(addr) = addr.upgrade() {
                addr.do_send(FromPeer { target, event });
            }
        })
    }

    pub(super) fn on_candidate(
        &mut self,
        target: PeerTarget,
        candidate: Option<IceCandidate>,
        ctx: &mut Context<Self>,
    ) {
        let peer = match target {
            PeerTarget::Publisher => self.publisher.clone(),
            PeerTarget::Subscriber => self.subscriber.clone(),
        };
        let Some(peer) = peer else { return };
        let adding = async move { timeout(peer.add_candidate(candidate)).await };
        ctx.wait(adding.into_actor(self).map(|result, act, ctx| {
            if let Err(e) = result {
                act.fail(ctx, e);
            }
        }));
    }

    pub(super) fn on_peer_event(
        &mut self,
        target: PeerTarget,
        event: PeerEvent,
        ctx: &mut Context<Self>,
    ) {
        match event {
            PeerEvent::Candidate(candidate) => {
                self.send(ctx, &ServerMessage::Candidate { target, candidate })
            }
            PeerEvent::IceConnectionState(state) => {
                info!(?target, ?state, "ICE connection state");
                if state == IceConnectionState::Connected {
                    self.on_ice_connected(target);
                }
            }
            PeerEvent::ConnectionState(state) => {
                info!(?target, ?state, "peer connection state");
                if state == ConnectionState::Failed {
                    self.fail(
                        ctx,
                        ProtocolError::PeerFailed(format!(
                            "the {} connection failed (ICE or DTLS)",
                            target_name(target)
                        )),
                    );
                }
            }
            PeerEvent::Track(track) if target == PeerTarget::Publisher => {
                self.on_remote_track(track, ctx)
            }
            PeerEvent::DataChannel(dc) if dc.label() == CHAT_CHANNEL_LABEL => {
                debug!("chat channel open");
                self.chat.open(dc, self.app.media.handle());
            }
            PeerEvent::DataMessage { label, message } if label == CHAT_CHANNEL_LABEL => {
                if let Err(e) = self.on_chat(message, ctx) {
                    self.fail(ctx, e);
                }
            }
            PeerEvent::DataMessage { label, .. } => {
                debug!(%label, "ignoring a message on a data channel with an unknown label");
            }
            PeerEvent::DataChannel(dc) => {
                debug!(
                    label = dc.label(),
                    "ignoring data channel with an unknown label"
                );
            }
            PeerEvent::Track(_) => {}
            PeerEvent::VideoPaused { track, paused } => {
                // Only while it still receives that track (a late report after an
                // unsubscribe says nothing the client can use).
                if self.subscriptions.contains_key(&track) {
                    info!(%track, paused, "video paused for loss on this participant's link");
                    self.send(
                        ctx,
                        &ServerMessage::VideoPaused {
                            track_id: track,
                            paused,
                        },
                    );
                }
            }
        }
    }
}

impl WsSession {
    /// ICE is connected again after a gap (an ICE restart, a path that came back): the
    /// receivers' decoders lost packets and wait for a keyframe, so ask for one at once
    /// rather than waiting for the browsers' own loss recovery to give up and ask.
    fn on_ice_connected(&mut self, target: PeerTarget) {
        let first = match target {
            PeerTarget::Publisher => &mut self.ice_connected_once.0,
            PeerTarget::Subscriber => &mut self.ice_connected_once.1,
        };
        if !std::mem::replace(first, true) {
            return; // the first connection: new subscribers ask for keyframes anyway
        }
        debug!(?target, "ICE reconnected; asking for keyframes");
        match target {
            PeerTarget::Publisher => self.published.values().for_each(|up| up.request_keyframe()),
            PeerTarget::Subscriber => self
                .subscriptions
                .values()
                .for_each(|sub| sub.up.request_keyframe()),
        }
    }
}

fn target_name(t: PeerTarget) -> &'static str {
    match t {
        PeerTarget::Publisher => "publisher",
        PeerTarget::Subscriber => "subscriber",
    }
}

impl Handler<FromPeer> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: FromPeer, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        self.on_peer_event(msg.target, msg.event, ctx);
    }
}
