//! What the media plane reports to a session, in Plaza's own types (the session never
//! names a webrtc-rs type), and the handles a session keeps: a published track as it
//! arrives, a data channel, a down track's place on a connection.

use std::sync::Arc;

use webrtc::data_channel::data_channel_message::DataChannelMessage;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice_transport::ice_connection_state::RTCIceConnectionState;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_remote::TrackRemote;

use plaza_protocol::{IceCandidate, TrackId};

/// What a peer connection reports to its owner, in Plaza's own types: the session
/// never sees a webrtc-rs type.
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the client; `None` when gathering is done.
    Candidate(Option<IceCandidate>),
    ConnectionState(ConnectionState),
    IceConnectionState(IceConnectionState),
    /// A remote track arrived (publisher connection only).
    Track(RemoteTrack),
    /// The client opened a data channel (publisher connection only).
    DataChannel(DataChannel),
    /// A message on one of the client's data channels (by label).
    DataMessage {
        label: String,
        message: DataMessage,
    },
    /// A video this (subscriber) connection receives was paused for the subscriber's
    /// loss, or resumed (`feedback.rs`).
    VideoPaused {
        track: TrackId,
        paused: bool,
    },
}

/// `RTCPeerConnectionState`, for the session: it fails the participant on `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

impl From<RTCPeerConnectionState> for ConnectionState {
    fn from(s: RTCPeerConnectionState) -> Self {
        use RTCPeerConnectionState as S;
        match s {
            S::Unspecified | S::New => Self::New,
            S::Connecting => Self::Connecting,
            S::Connected => Self::Connected,
            S::Disconnected => Self::Disconnected,
            S::Failed => Self::Failed,
            S::Closed => Self::Closed,
        }
    }
}

/// `RTCIceConnectionState`, for logging (and, later, ICE restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceConnectionState {
    New,
    Checking,
    Connected,
    Completed,
    Disconnected,
    Failed,
    Closed,
}

impl From<RTCIceConnectionState> for IceConnectionState {
    fn from(s: RTCIceConnectionState) -> Self {
        use RTCIceConnectionState as S;
        match s {
            S::Unspecified | S::New => Self::New,
            S::Checking => Self::Checking,
            S::Connected => Self::Connected,
            S::Completed => Self::Completed,
            S::Disconnected => Self::Disconnected,
            S::Failed => Self::Failed,
            S::Closed => Self::Closed,
        }
    }
}

/// A track a client publishes, as it arrives: handed to `UpTrack::start`.
pub struct RemoteTrack(pub(super) Arc<TrackRemote>);

/// A data channel the client opened on its publisher connection.
#[derive(Clone)]
pub struct DataChannel(pub(super) Arc<RTCDataChannel>);

impl DataChannel {
    pub fn label(&self) -> &str {
        self.0.label()
    }
}

/// One data-channel message: text or binary bytes.
#[derive(Debug, Clone)]
pub struct DataMessage {
    pub is_text: bool,
    pub data: bytes::Bytes,
}

impl From<DataChannelMessage> for DataMessage {
    fn from(m: DataChannelMessage) -> Self {
        Self {
            is_text: m.is_string,
            data: m.data,
        }
    }
}

/// A down track's place on a subscriber connection, to remove it by.
pub struct SenderHandle {
    pub(super) sender: Arc<RTCRtpSender>,
    /// Ends the task that reads the subscriber's RTCP for this track.
    pub(super) reader_stop: tokio_util::sync::CancellationToken,
}
