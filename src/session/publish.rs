//! The publisher connection: the client offers, we answer; each track it sends becomes
//! an up track published to the room.

use std::sync::Arc;

use actix::prelude::*;
use plaza_protocol::{PeerTarget, ServerMessage};
use tracing::info;

use super::{timeout, UpTrackEnded, WsSession};
use crate::room;
use crate::rtc::{KeyframePolicy, RemoteTrack};

impl WsSession {
    pub(super) fn on_offer(&mut self, sdp: String, ctx: &mut Context<Self>) {
        let Some(peer) = self.publisher.clone() else {
            return;
        };
        let answering = async move { timeout(peer.answer(sdp)).await };
        ctx.wait(
            answering
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(sdp) => act.send(
                        ctx,
                        &ServerMessage::Answer {
                            target: PeerTarget::Publisher,
                            sdp,
                        },
                    ),
                    Err(e) => act.fail(ctx, e),
                }),
        );
    }

    pub(super) fn on_remote_track(&mut self, track: RemoteTrack, ctx: &mut Context<Self>) {
        let (Some(peer), Some(room)) = (self.publisher.clone(), self.room().cloned()) else {
            return;
        };
        let addr = ctx.address().downgrade();
        let up = peer.publish(
            track,
            self.id.clone(),
            KeyframePolicy {
                min_interval: self.app.config.media.keyframe_request_interval,
                retry_after: self.app.config.media.keyframe_retry,
            },
            move |track_id| {
                if let Some(addr) = addr.upgrade() {
                    addr.do_send(UpTrackEnded(track_id));
                }
            },
        );
        info!(track = %up.id, codec = %up.mime_type(), "publishing");
        self.published.insert(up.id.clone(), Arc::clone(&up));
        room.do_send(room::Publish {
            participant_id: self.id.clone(),
            track: up,
        });
    }
}

impl Handler<UpTrackEnded> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: UpTrackEnded, _ctx: &mut Self::Context) {
        let _e = self.span.clone().entered();
        if self.published.remove(&msg.0).is_some() {
            info!(track = %msg.0, "track ended");
            if let Some(room) = self.room() {
                room.do_send(room::Unpublish {
                    participant_id: self.id.clone(),
                    track_id: msg.0,
                });
            }
        }
    }
}
