//! Events from the participant's two peer connections (`FromPeer`, sent by the media
//! plane's callbacks with `do_send`), and the client's trickled candidates.

use std::sync::Arc;

use actix::prelude::*;
use actix_web_actors::ws;
use plaza_protocol::{IceCandidate, PeerTarget, ProtocolError, ServerMessage, CHAT_CHANNEL_LABEL};
use tracing::{debug, info};

use super::{timeout, FromPeer, WsSession};
use crate::rtc::{ConnectionState, PeerEvent, PeerEventHandler};

impl WsSession {
    pub(super) fn peer_handler(
        ctx: &ws::WebsocketContext<Self>,
        target: PeerTarget,
    ) -> PeerEventHandler {
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
        ctx: &mut ws::WebsocketContext<Self>,
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
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        match event {
            PeerEvent::Candidate(candidate) => {
                self.send(ctx, &ServerMessage::Candidate { target, candidate })
            }
            PeerEvent::IceConnectionState(state) => {
                info!(?target, ?state, "ICE connection state");
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
