//! The publisher side of media: our audio and video tracks, the loops that feed them
//! (from `source`), the `SentLog`, and answering the server's keyframe requests.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocal;

use crate::events::{lock, Event, Shared};
use crate::media::payload_hash;
use crate::source::{self, Fixture, SentPacket};
use crate::{ClientResult, VideoOptions};

/// Adds an Opus track (id `audio`, stream id = our participant id) to the publisher
/// connection and starts sending on it. Returns the sending task.
pub(crate) async fn publish_audio(
    publisher: &RTCPeerConnection,
    stream_id: &str,
    fixture: Option<Arc<Fixture>>,
    shared: &Arc<Shared>,
) -> ClientResult<JoinHandle<()>> {
    let track = Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.into(),
            clock_rate: 48000,
            channels: 2,
            ..Default::default()
        },
        "audio".into(),
        stream_id.to_string(),
    ));
    publisher
        .add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
        .await?;
    Ok(tokio::spawn(send_audio(track, fixture, Arc::clone(shared))))
}

/// Adds a VP8 track (id `track_id`, stream id = our participant id) to the publisher
/// connection and starts two tasks: one reading the track's RTCP for keyframe
/// requests, one sending frames (which turns the next frame into a keyframe when asked).
pub(crate) async fn publish_video(
    publisher: &RTCPeerConnection,
    stream_id: &str,
    track_id: &str,
    video: VideoOptions,
    fixture: Option<Arc<Fixture>>,
    shared: &Arc<Shared>,
) -> ClientResult<(Arc<RTCRtpSender>, [JoinHandle<()>; 2])> {
    let track = Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_VP8.into(),
            clock_rate: 90000,
            ..Default::default()
        },
        track_id.into(),
        stream_id.to_string(),
    ));
    let sender = publisher
        .add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
        .await?;
    let rtcp = tokio::spawn(read_keyframe_requests(
        Arc::clone(&sender),
        Arc::clone(shared),
    ));
    let frames = tokio::spawn(send_video(track, video, fixture, Arc::clone(shared)));
    Ok((sender, [rtcp, frames]))
}

/// Reads the video sender's RTCP until it ends. A PLI or FIR is the server asking for
/// a keyframe: it is logged (`SentLog::keyframe_requests`, `Event::KeyframeRequested`)
/// and flags the video loop to send one.
async fn read_keyframe_requests(sender: Arc<RTCRtpSender>, shared: Arc<Shared>) {
    while let Ok((packets, _)) = sender.read_rtcp().await {
        let asks = packets.iter().any(|p| {
            let a = p.as_any();
            a.is::<PictureLossIndication>() || a.is::<FullIntraRequest>()
        });
        if asks {
            lock(&shared.sent).keyframe_requests.push(Instant::now());
            shared.force_keyframe.store(true, Ordering::Release);
            shared.push(Event::KeyframeRequested);
        }
    }
}

/// Counts a packet about to be sent in the `SentLog`, then tells the `on_sent` hook.
fn record_sent(shared: &Shared, sent: &SentPacket<'_>) {
    let mut log = lock(&shared.sent);
    log.packets += 1;
    if sent.keyframe {
        log.keyframes += 1;
    }
    if shared.record_payloads {
        log.hashes.insert(payload_hash(sent.payload));
    }
    drop(log);
    if let Some(hook) = &shared.on_sent {
        (hook.0)(sent);
    }
}

async fn send_audio(
    track: Arc<TrackLocalStaticRTP>,
    fixture: Option<Arc<Fixture>>,
    shared: Arc<Shared>,
) {
    source::send_audio(track, fixture, |p| record_sent(&shared, p)).await
}

async fn send_video(
    track: Arc<TrackLocalStaticRTP>,
    opts: VideoOptions,
    fixture: Option<Arc<Fixture>>,
    shared: Arc<Shared>,
) {
    let force = Arc::clone(&shared.force_keyframe);
    source::send_video(track, opts, fixture, force, |p| record_sent(&shared, p)).await
}
