//! The chat data channel: in-order sending without blocking the caller.
//!
//! `RTCDataChannel::send_text` is async; spawning a task per message would let two
//! messages overtake each other. One outbox task per channel keeps them in order, and
//! its bounded queue means a stuck receiver costs a bounded amount of memory (messages
//! beyond it are dropped and counted).

use std::sync::Arc;

use tokio::sync::mpsc;
use webrtc::data_channel::RTCDataChannel;

use super::events::DataChannel;

/// Messages waiting to be sent to one participant before new ones are dropped.
const OUTBOX: usize = 256;

pub struct ChatChannel {
    outbox: mpsc::Sender<String>,
    channel: Arc<RTCDataChannel>,
}

impl ChatChannel {
    /// Starts the outbox on the media runtime. (Incoming messages are wired when the
    /// channel is announced: see `peer.rs`.)
    pub fn attach(channel: DataChannel, media: &tokio::runtime::Handle) -> ChatChannel {
        let channel: Arc<RTCDataChannel> = channel.0;
        // webrtc-rs announces a remote channel before it is open (sends would fail),
        // so the outbox starts draining on `on_open`, which also fires if it already is.
        let (opened_tx, opened) = tokio::sync::oneshot::channel::<()>();
        channel.on_open(Box::new(move || {
            let _ = opened_tx.send(());
            Box::pin(async {})
        }));
        let (tx, mut rx) = mpsc::channel::<String>(OUTBOX);
        let sender = Arc::clone(&channel);
        media.spawn(async move {
            if opened.await.is_err() {
                return;
            }
            while let Some(text) = rx.recv().await {
                if sender.send_text(text).await.is_err() {
                    break;
                }
            }
        });
        ChatChannel {
            outbox: tx,
            channel,
        }
    }

    /// Queues a message. Returns false if it was dropped (receiver too slow or gone).
    pub fn send(&self, text: String) -> bool {
        self.outbox.try_send(text).is_ok()
    }

    pub fn label(&self) -> &str {
        self.channel.label()
    }
}

impl Drop for ChatChannel {
    fn drop(&mut self) {
        self.channel.on_message(Box::new(|_| Box::pin(async {})));
        self.channel.on_open(Box::new(|| Box::pin(async {})));
    }
}
