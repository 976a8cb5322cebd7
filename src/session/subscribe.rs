//! The subscriber connection: we offer, the client answers. Each track published in
//! the room becomes a down track here; changes made while an offer is in flight are
//! folded into the next one (`Signalling` keeps that state).

use std::sync::Arc;

use actix::prelude::*;
use plaza_protocol::{PeerTarget, ProtocolError, ServerMessage, TrackId};
use tracing::{debug, warn};

use super::{timeout, Negotiate, WsSession, PEER_CALL_TIMEOUT};

/// A subscriber offer with no answer after this long is made again. Browsers answer in
/// milliseconds, but a page on a starved machine can take seconds (seen: 9 s joins with
/// the load average at 15): long enough not to overtake a slow but working client,
/// whose late answer to the superseded offer is then ignored (`Signalling`).
const OFFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::rtc::{SenderHandle, UpTrack};

/// One track this participant receives.
pub(super) struct Subscription {
    pub(super) up: Arc<UpTrack>,
    /// Where it sits on the subscriber connection; set once added.
    sender: Option<SenderHandle>,
}

impl WsSession {
    pub(super) fn subscribe(&mut self, up: Arc<UpTrack>, ctx: &mut Context<Self>) {
        let Some(peer) = self.subscriber.clone() else {
            return;
        };
        if !self.signalling.grant().subscribe {
            return; // a publish-only token: this participant receives no media
        }
        self.send(ctx, &ServerMessage::TrackPublished { track: up.info() });
        let down = peer.down_track_for(&up, self.id.clone());
        let track_id = up.id.clone();
        self.subscriptions.insert(
            track_id.clone(),
            Subscription {
                up: Arc::clone(&up),
                sender: None,
            },
        );
        let adding = {
            let down = Arc::clone(&down);
            async move { peer.add_down_track(down).await }
        };
        ctx.wait(adding.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok(sender) => {
                    if let Some(sub) = act.subscriptions.get_mut(&track_id) {
                        sub.sender = Some(sender);
                        // Packets flow as soon as the answer binds the track and the
                        // transport is up; the forwarder waits for a keyframe.
                        sub.up.add_subscriber(down);
                    }
                }
                Err(e) => warn!(track = %track_id, error = %e, "cannot subscribe"),
            }
            act.schedule_negotiation(ctx);
        }));
    }

    pub(super) fn unsubscribe(&mut self, track_id: &TrackId, ctx: &mut Context<Self>) {
        let Some(sub) = self.subscriptions.remove(track_id) else {
            return;
        };
        sub.up.remove_subscriber(&self.id);
        if let (Some(peer), Some(sender)) = (self.subscriber.clone(), sub.sender) {
            let removing = async move { peer.remove_down_track(sender).await };
            ctx.wait(removing.into_actor(self).map(|result, act, ctx| {
                if let Err(e) = result {
                    debug!(error = %e, "remove track");
                }
                act.schedule_negotiation(ctx);
            }));
        }
    }

    pub(super) fn schedule_negotiation(&mut self, ctx: &mut Context<Self>) {
        if !self.negotiation_scheduled {
            self.negotiation_scheduled = true;
            ctx.notify(Negotiate);
        }
    }

    pub(super) fn on_answer(&mut self, sdp: String, ctx: &mut Context<Self>) {
        let Some(peer) = self.subscriber.clone() else {
            return;
        };
        let applying = async move { timeout(peer.accept_answer(sdp)).await };
        ctx.wait(
            applying
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(()) => {
                        if act.signalling.answer_applied() {
                            act.schedule_negotiation(ctx);
                        }
                    }
                    Err(e) => {
                        // Told why, then given a fresh offer to answer: waiting for a
                        // better answer to the same offer could wait forever.
                        act.fail(ctx, e);
                        let serial = act.signalling.offer_serial();
                        if act.signalling.offer_unanswered(serial) {
                            act.make_offer(ctx);
                        }
                    }
                }),
        );
    }

    /// Creates the next subscriber offer and sends it; if no answer comes within
    /// `OFFER_TIMEOUT` (lost, or the client could not make one), offers again.
    fn make_offer(&mut self, ctx: &mut Context<Self>) {
        let Some(peer) = self.subscriber.clone() else {
            return;
        };
        let serial = self.signalling.offer_serial();
        let ice_restart = self.signalling.take_ice_restart();
        if ice_restart {
            debug!("subscriber offer restarts ICE");
        }
        let offering = async move {
            tokio::time::timeout(PEER_CALL_TIMEOUT, peer.offer(ice_restart))
                .await
                .map_err(|_| crate::error::Error::Timeout("create offer"))?
        };
        ctx.wait(
            offering
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(sdp) => {
                        act.send(
                            ctx,
                            &ServerMessage::Offer {
                                target: PeerTarget::Subscriber,
                                sdp,
                            },
                        );
                        ctx.run_later(OFFER_TIMEOUT, move |act, ctx| {
                            if act.signalling.offer_unanswered(serial) {
                                let _e = act.span.clone().entered();
                                warn!(timeout = ?OFFER_TIMEOUT, "subscriber offer not answered; offering again");
                                act.make_offer(ctx);
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot create subscriber offer");
                        act.signalling.offer_failed();
                        act.fail(
                            ctx,
                            ProtocolError::Internal("cannot create an offer".into()),
                        );
                    }
                }),
        );
    }
}

impl Handler<Negotiate> for WsSession {
    type Result = ();

    fn handle(&mut self, _msg: Negotiate, ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        self.negotiation_scheduled = false;
        if self.subscriber.is_none()
            || !self.signalling.offer_needed(!self.subscriptions.is_empty())
        {
            return;
        }
        self.make_offer(ctx);
    }
}
