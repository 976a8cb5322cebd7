//! The messages between a WebSocket (`session::WsSocket`) and the participant behind it
//! (`session::WsSession`). Two actors, so a participant can outlive its socket for the
//! resume grace period (docs/decisions.md, "Session resume"). Their own module, so the
//! registry can hold a participant's resume entry without importing the session.

use actix::{Message, Recipient};
use actix_web_actors::ws::CloseCode;
use plaza_protocol::ProtocolError;

/// A socket's serial number: tells the participant's current socket from one it was
/// taken over from (whose late `Gone` must not detach it).
pub type SocketId = u64;

/// Socket → participant.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum FromSocket {
    /// A text frame from the client.
    Text(String),
    /// The socket refused a frame itself (binary): the participant reports it.
    Refused(ProtocolError),
    /// The socket is gone. `clean`: the client closed it (close frame), or the server
    /// did (oversized frame): the participant leaves. Otherwise (TCP dropped, heartbeat
    /// timeout) it waits for a resume.
    Gone { socket: SocketId, clean: bool },
}

/// Participant → socket.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ToSocket {
    Text(String),
    Close(CloseCode, String),
}

/// A new socket takes over a participant (a `resume` with its token). The participant
/// answers with where the socket forwards frames from now on, or `Err` when it cannot
/// be resumed (ending, or messages the client missed are no longer kept).
#[derive(Message)]
#[rtype(result = "Result<Recipient<FromSocket>, ProtocolError>")]
pub struct Attach {
    pub socket: Recipient<ToSocket>,
    pub socket_id: SocketId,
    /// How many server messages the client received since `joined` (see protocol.md).
    pub received: u64,
}
