//! TURN over a byte stream (TCP, or TLS over TCP), as the packet-shaped `Conn` the
//! webrtc-rs TURN client wants. RFC 8656 §12: on a stream, STUN messages frame
//! themselves (20-byte header with a length), and ChannelData messages are padded to a
//! multiple of four bytes.

use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;
use webrtc::util::Conn;

type Result<T> = std::result::Result<T, webrtc::util::Error>;

pub(super) struct StreamConn<S> {
    reader: Mutex<ReadHalf<S>>,
    writer: Mutex<WriteHalf<S>>,
    local: SocketAddr,
    remote: SocketAddr,
}

impl StreamConn<tokio::net::TcpStream> {
    pub(super) fn new(tcp: tokio::net::TcpStream) -> std::io::Result<Self> {
        let (local, remote) = (tcp.local_addr()?, tcp.peer_addr()?);
        Ok(Self::from_stream(tcp, local, remote))
    }
}

impl<S: AsyncRead + AsyncWrite> StreamConn<S> {
    pub(super) fn from_stream(stream: S, local: SocketAddr, remote: SocketAddr) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        StreamConn {
            reader: Mutex::new(reader),
            writer: Mutex::new(writer),
            local,
            remote,
        }
    }
}

/// The length on the wire of the message whose first four bytes are `head`, and the
/// length of the message without its padding.
fn framed_len(head: [u8; 4]) -> (usize, usize) {
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    if head[0] & 0xC0 == 0 {
        // STUN: 20-byte header, then `len` bytes of attributes (always a multiple of 4).
        (20 + len, 20 + len)
    } else {
        // ChannelData: 4-byte header, `len` bytes of data, padded to 4.
        (4 + len.div_ceil(4) * 4, 4 + len)
    }
}

fn closed() -> webrtc::util::Error {
    std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()
}

#[async_trait]
impl<S: AsyncRead + AsyncWrite + Send + Sync + 'static> Conn for StreamConn<S> {
    async fn connect(&self, _addr: SocketAddr) -> Result<()> {
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr)> {
        let mut reader = self.reader.lock().await;
        let mut head = [0u8; 4];
        reader.read_exact(&mut head).await?;
        let (wire, message) = framed_len(head);
        if wire > buf.len() {
            return Err(closed());
        }
        buf[..4].copy_from_slice(&head);
        reader.read_exact(&mut buf[4..wire]).await?;
        Ok((message, self.remote))
    }

    async fn send(&self, buf: &[u8]) -> Result<usize> {
        self.send_to(buf, self.remote).await
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> Result<usize> {
        let mut writer = self.writer.lock().await;
        writer.write_all(buf).await?;
        let padding = buf.len().div_ceil(4) * 4 - buf.len();
        if padding > 0 {
            writer.write_all(&[0u8; 3][..padding]).await?;
        }
        writer.flush().await?;
        Ok(buf.len())
    }

    fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.remote)
    }

    async fn close(&self) -> Result<()> {
        let _ = self.writer.lock().await.shutdown().await;
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_messages_frame_by_their_length() {
        // A Binding success response with 12 bytes of attributes.
        assert_eq!(framed_len([0x01, 0x01, 0, 12]), (32, 32));
    }

    #[test]
    fn channel_data_is_padded_to_four() {
        assert_eq!(framed_len([0x40, 0x00, 0, 5]), (12, 9));
        assert_eq!(framed_len([0x40, 0x00, 0, 8]), (12, 12));
    }
}
