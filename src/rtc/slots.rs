//! Subscriber m-lines are slots: a track that goes away frees its transceiver, and the
//! next track of the same kind takes it over, so a subscriber offer's size follows what
//! the participant receives now, not the room's history (before, every track that ever
//! passed through the room left an inactive m-section, and a long-lived participant's
//! answer outgrew the WebSocket frame limit after ~160 tracks).
//!
//! How a slot changes hands (webrtc-rs 0.17, with two small patches in vendor/):
//! 1. Freeing: `remove_track` stops the sender (our patch makes `stop` release its
//!    SRTP and interceptor streams) and turns the transceiver `inactive`; the next offer
//!    carries that, without `a=ssrc` lines, so a webrtc-rs client stops its receiver.
//! 2. A slot is free once that inactive state is negotiated (its current direction has
//!    no send): Chromium fires `track` on a transceiver only when it was not receiving.
//! 3. Taking it: a new sender (patch: `new_rtp_sender`) with a new SSRC is put on the
//!    transceiver, which becomes `sendonly` again; the next offer carries the new
//!    `a=msid` (the new publisher and track) and SSRC, so both Chromium and webrtc-rs
//!    see a new track on the same m-line. Reusing the old sender (`replace_track`)
//!    would keep the old SSRC (SRTP replay state, and the client's receiver, keyed by
//!    it) and the old msid.

use std::sync::Arc;

use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTCRtpCodecParameters};
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCRtpTransceiver, RTCRtpTransceiverInit};
use webrtc::track::track_local::TrackLocal;

use crate::error::Error;

/// Puts `track` on the subscriber connection: on a free slot of its kind if there is
/// one, else on a new transceiver. Either way the transceiver offers only `codec`.
pub(super) async fn occupy(
    pc: &RTCPeerConnection,
    track: Arc<dyn TrackLocal + Send + Sync>,
    codec: &RTCRtpCodecCapability,
) -> Result<Arc<RTCRtpSender>, Error> {
    let transceiver = match free_slot(pc, &track).await {
        Some(t) => {
            let sender = pc.new_rtp_sender(Arc::clone(&track)).await?;
            t.set_sender(sender).await;
            t.set_direction(RTCRtpTransceiverDirection::Sendonly).await;
            t
        }
        None => {
            // Sendonly: the server never receives on a subscriber connection. (Not
            // `add_track`: its reuse branch fails on a removed sender of the same id.)
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                send_encodings: Vec::new(),
            };
            pc.add_transceiver_from_track(track, Some(init)).await?
        }
    };
    // Offer only the codec the publisher sends: the subscriber cannot pick another
    // one, since an SFU forwards without transcoding.
    let only = RTCRtpCodecParameters {
        capability: codec.clone(),
        ..Default::default()
    };
    transceiver.set_codec_preferences(vec![only]).await?;
    Ok(transceiver.sender().await)
}

/// A transceiver of the track's kind whose last occupant left and whose inactive state
/// the subscriber has already answered.
async fn free_slot(
    pc: &RTCPeerConnection,
    track: &Arc<dyn TrackLocal + Send + Sync>,
) -> Option<Arc<RTCRtpTransceiver>> {
    for t in pc.get_transceivers().await {
        let negotiated = t.mid().is_some();
        let idle = !t.direction().has_send() && !t.current_direction().has_send();
        if t.kind() == track.kind()
            && negotiated
            && idle
            && t.sender().await.track().await.is_none()
        {
            return Some(t);
        }
    }
    None
}
