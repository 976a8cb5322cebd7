//! Chat: messages from the client's `chat` data channel go to the room actor, which
//! relays them; messages for this participant go out on its channel, or wait in a
//! bounded backlog until the channel opens.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use plaza_protocol::rate::TokenBucket;
use plaza_protocol::{ChatIn, ProtocolError};
use tracing::debug;

use super::WsSession;
use crate::config::LimitsConfig;
use crate::room;
use crate::rtc::{ChatChannel, DataChannel, DataMessage};

/// Chat messages kept for a participant whose chat channel is not open yet.
const CHAT_BACKLOG: usize = 64;

pub(super) struct ChatState {
    channel: Option<ChatChannel>,
    /// What this participant may send.
    rate: TokenBucket,
    /// Chat for this participant that arrived before its chat channel opened.
    backlog: Vec<Arc<str>>,
}

impl ChatState {
    pub(super) fn new(limits: &LimitsConfig) -> Self {
        Self {
            channel: None,
            rate: TokenBucket::new(limits.chat_rate, limits.chat_burst),
            backlog: Vec::new(),
        }
    }

    /// The client opened its chat channel: send what waited for it.
    pub(super) fn open(&mut self, dc: DataChannel, media: &tokio::runtime::Handle) {
        let channel = ChatChannel::attach(dc, media);
        for json in self.backlog.drain(..) {
            channel.send(json.to_string());
        }
        self.channel = Some(channel);
    }

    /// A message relayed by the room, for this participant.
    pub(super) fn deliver(&mut self, json: Arc<str>) {
        match &self.channel {
            Some(channel) => {
                if !channel.send(json.to_string()) {
                    debug!("chat message dropped: receiver too slow");
                }
            }
            // Joined, but the data channel is not open yet: keep a bounded backlog.
            None if self.backlog.len() < CHAT_BACKLOG => self.backlog.push(json),
            None => debug!("chat message dropped: channel not open"),
        }
    }

    pub(super) fn close(&mut self) {
        self.channel = None;
    }
}

impl WsSession {
    pub(super) fn on_chat(
        &mut self,
        msg: DataMessage,
        ctx: &mut Context<Self>,
    ) -> Result<(), ProtocolError> {
        if !self.chat.rate.take(Instant::now()) {
            return Err(ProtocolError::RateLimited(format!(
                "more than {} chat messages per second",
                self.app.config.limits.chat_rate
            )));
        }
        let max = self.app.config.limits.max_chat_bytes;
        if msg.data.len() > max {
            return Err(ProtocolError::MessageTooLarge(format!(
                "chat message of {} bytes; the limit is {max}",
                msg.data.len()
            )));
        }
        let chat: ChatIn = serde_json::from_slice(&msg.data)
            .map_err(|e| ProtocolError::BadMessage(format!("chat message: {e}")))?;
        let Some(room) = self.room().cloned() else {
            return Err(ProtocolError::NotJoined);
        };
        let relay = room.send(room::Chat {
            from: self.id.clone(),
            text: chat.text,
            to: chat.to,
        });
        ctx.wait(relay.into_actor(self).map(|result, act, ctx| {
            if let Ok(Err(e)) = result {
                act.fail(ctx, e);
            }
        }));
        Ok(())
    }
}
