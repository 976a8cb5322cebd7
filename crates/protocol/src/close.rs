//! WebSocket close codes that carry meaning beyond RFC 6455 (docs/protocol.md,
//! "WebSocket close codes").
//!
//! A browser cannot drop a socket without a close frame: `WebSocket.close()` always
//! sends one when the connection is open. So a client that gives up on a socket it
//! still means to resume (no frame for a while, or the network changed) says so in
//! the code, and the server keeps the participant for a resume instead of ending it.

/// Server → client: no `join` succeeded within `heartbeat.join_timeout` of connecting
/// (4xxx is the application's range; 408 as in HTTP's timeout).
pub const JOIN_TIMEOUT: u16 = 4408;

/// Client → server: nothing arrived on this socket for a while; the client resumes on
/// a new one.
pub const RESUMING_NO_ANSWER: u16 = 4001;

/// Client → server: the network changed (or ICE lost its path); the client resumes on
/// a new socket and restarts ICE.
pub const RESUMING_PATH_CHANGED: u16 = 4003;

/// Whether a close frame with this code, sent by a joined client, means it will resume
/// (the participant is kept for `session.resume_grace`) rather than leave.
pub fn client_will_resume(code: u16) -> bool {
    matches!(code, RESUMING_NO_ANSWER | RESUMING_PATH_CHANGED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_resuming_codes_keep_the_participant() {
        assert!(client_will_resume(RESUMING_NO_ANSWER));
        assert!(client_will_resume(RESUMING_PATH_CHANGED));
        // Normal, going away (a closed tab), the web client's "connection failed"
        // (it starts a new session), anything else: the participant leaves.
        for code in [1000, 1001, 4000, 4002, JOIN_TIMEOUT] {
            assert!(!client_will_resume(code), "{code}");
        }
    }
}
