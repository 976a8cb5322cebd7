//! Messages a `WsSession` receives from outside the WebSocket: webrtc-rs callbacks (via
//! `do_send`, never touching state directly) and its own tasks. (`Shutdown` comes
//! from the server through the registry: `crate::registry::Shutdown`.)

use actix::Message;

use plaza_protocol::{PeerTarget, TrackId};

use crate::rtc::PeerEvent;

/// An event from one of the participant's two peer connections.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromPeer {
    pub target: PeerTarget,
    pub event: PeerEvent,
}

/// A published track's read loop ended on its own (removed by the client, or its
/// connection closed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpTrackEnded(pub TrackId);

/// Time to (re)offer on the subscriber connection. Sent to self, so several changes
/// already queued in the mailbox are folded into one offer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Negotiate;
