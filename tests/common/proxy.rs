//! A TCP proxy in front of a test server whose connections can be reset at will: a
//! client's WebSocket cut as when its network path dies (tests/resume.rs,
//! tests/token_refresh.rs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A TCP proxy in front of the server whose connections can be reset at will.
pub struct Proxy {
    addr: SocketAddr,
    cut: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(Notify::new());
        let cuts = Arc::clone(&cut);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let cut = Arc::clone(&cuts);
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.notified() => {
                            // SO_LINGER 0: closing sends a reset, both ways. (Deprecated
                            // because a non-zero linger blocks on drop; zero does not.)
                            #[allow(deprecated)]
                            let _ = client.set_linger(Some(Duration::ZERO));
                            #[allow(deprecated)]
                            let _ = server.set_linger(Some(Duration::ZERO));
                        }
                    }
                });
            }
        });
        Proxy { addr, cut, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Resets every connection open now; later ones pass.
    pub fn cut(&self) {
        self.cut.notify_waiters();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
