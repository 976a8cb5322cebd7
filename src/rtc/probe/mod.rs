//! Client-side STUN and TURN probes for `plaza doctor` (the only place the doctor meets
//! webrtc-rs): the host's interfaces as webrtc-ice sees them, a STUN Binding to learn
//! the address a server sees, and a TURN allocation over UDP, TCP or TLS that can send
//! from its relay. Errors come back as [`ProbeError`], in words a person can act on.

mod stream;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use webrtc::turn::client::{Client, ClientConfig};
use webrtc::util::Conn;

pub use self::tls::{load_roots, TlsRoots};

/// How a TURN client reaches its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    Udp,
    Tcp,
    /// TLS over TCP (`turns:`).
    Tls,
}

impl std::fmt::Display for TurnTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TurnTransport::Udp => "UDP",
            TurnTransport::Tcp => "TCP",
            TurnTransport::Tls => "TLS",
        })
    }
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// No answer within the time allowed.
    Timeout,
    /// The TURN server refused the credentials (401).
    Unauthorized,
    /// The TLS handshake failed: the text says why (name, issuer, expiry...).
    Tls(TlsFailure),
    /// Could not connect or send (refused, unreachable...).
    Io(String),
    /// Anything else the STUN/TURN exchange reported.
    Protocol(String),
}

/// What was wrong with a TURN server's certificate or handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate does not name the host in the URL.
    WrongName(String),
    /// Not signed by a CA in the trust store.
    UnknownIssuer,
    /// Expired or not yet valid.
    Expired,
    Other(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Timeout => f.write_str("no answer"),
            ProbeError::Unauthorized => f.write_str("credentials refused (401 Unauthorized)"),
            ProbeError::Tls(TlsFailure::WrongName(why)) => {
                write!(f, "TLS certificate is not valid for this name: {why}")
            }
            ProbeError::Tls(TlsFailure::UnknownIssuer) => {
                f.write_str("TLS certificate is not signed by a trusted CA")
            }
            ProbeError::Tls(TlsFailure::Expired) => {
                f.write_str("TLS certificate has expired or is not valid yet")
            }
            ProbeError::Tls(TlsFailure::Other(why)) => write!(f, "TLS handshake failed: {why}"),
            ProbeError::Io(why) => f.write_str(why),
            ProbeError::Protocol(why) => f.write_str(why),
        }
    }
}

impl From<webrtc::turn::Error> for ProbeError {
    fn from(e: webrtc::turn::Error) -> Self {
        let text = e.to_string();
        // The client reports an error response as "... (error 401: Unauthorized)".
        if text.contains("error 401") {
            ProbeError::Unauthorized
        } else if text.contains("transaction closed") || text.contains("timed out") {
            ProbeError::Timeout
        } else {
            ProbeError::Protocol(text)
        }
    }
}

impl From<webrtc::util::Error> for ProbeError {
    fn from(e: webrtc::util::Error) -> Self {
        ProbeError::Io(e.to_string())
    }
}

impl From<std::io::Error> for ProbeError {
    fn from(e: std::io::Error) -> Self {
        ProbeError::Io(e.to_string())
    }
}

/// The address `server` sees a fresh UDP socket of this host as (a STUN Binding).
pub async fn stun_mapped_address(
    server: SocketAddr,
    within: Duration,
) -> Result<SocketAddr, ProbeError> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    let client = Client::new(client_config(
        server,
        String::new(),
        String::new(),
        Arc::new(socket),
    ))
    .await?;
    client.listen().await?;
    let answer = tokio::time::timeout(within, client.send_binding_request_to(&server.to_string()))
        .await
        .map_err(|_| ProbeError::Timeout)
        .and_then(|r| r.map_err(ProbeError::from));
    let _ = client.close().await;
    answer
}

/// Where and how to allocate.
#[derive(Clone, Debug)]
pub struct TurnTarget {
    pub server: SocketAddr,
    pub transport: TurnTransport,
    /// The host name (or IP) the certificate must be valid for, for TLS.
    pub tls_name: String,
    pub username: String,
    pub password: String,
}

/// A live TURN allocation: its relayed address, and a way to send from it.
pub struct TurnAllocation {
    client: Client,
    relay: Box<dyn Conn + Send + Sync>,
    relayed: SocketAddr,
}

impl TurnAllocation {
    /// Connects (for TCP/TLS: connects and, for TLS, checks the certificate against
    /// `roots`), then allocates a UDP relay with the target's credentials.
    pub async fn allocate(
        target: &TurnTarget,
        roots: &TlsRoots,
        within: Duration,
    ) -> Result<TurnAllocation, ProbeError> {
        tokio::time::timeout(within, Self::allocate_now(target, roots))
            .await
            .map_err(|_| ProbeError::Timeout)?
    }

    async fn allocate_now(
        target: &TurnTarget,
        roots: &TlsRoots,
    ) -> Result<TurnAllocation, ProbeError> {
        let conn: Arc<dyn Conn + Send + Sync> = match target.transport {
            TurnTransport::Udp => {
                let bind: SocketAddr = if target.server.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                Arc::new(tokio::net::UdpSocket::bind(bind).await?)
            }
            TurnTransport::Tcp => {
                let tcp = tokio::net::TcpStream::connect(target.server).await?;
                Arc::new(stream::StreamConn::new(tcp)?)
            }
            TurnTransport::Tls => {
                let tcp = tokio::net::TcpStream::connect(target.server).await?;
                let (local, remote) = (tcp.local_addr()?, tcp.peer_addr()?);
                let tls = tls::connect(tcp, &target.tls_name, roots).await?;
                Arc::new(stream::StreamConn::from_stream(tls, local, remote))
            }
        };
        let client = Client::new(client_config(
            target.server,
            target.username.clone(),
            target.password.clone(),
            conn,
        ))
        .await?;
        client.listen().await?;
        match client.allocate().await {
            Ok(relay) => {
                let relayed = relay.local_addr()?;
                Ok(TurnAllocation {
                    client,
                    relay: Box::new(relay),
                    relayed,
                })
            }
            Err(e) => {
                let _ = client.close().await;
                Err(e.into())
            }
        }
    }

    /// The address the TURN server relays from.
    pub fn relayed_addr(&self) -> SocketAddr {
        self.relayed
    }

    /// Sends one datagram from the relay to `peer` (creating the permission first).
    pub async fn send_to(&self, data: &[u8], peer: SocketAddr) -> Result<(), ProbeError> {
        self.relay.send_to(data, peer).await?;
        Ok(())
    }

    /// Releases the allocation.
    pub async fn close(self) {
        let _ = self.relay.close().await;
        let _ = self.client.close().await;
    }
}

fn client_config(
    server: SocketAddr,
    username: String,
    password: String,
    conn: Arc<dyn Conn + Send + Sync>,
) -> ClientConfig {
    ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username,
        password,
        // Taken from the server's 401 challenge before the authenticated request.
        realm: String::new(),
        software: "plaza doctor".into(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    }
}
