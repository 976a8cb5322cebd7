//! The registry of everything alive: every WebSocket connection and every room.
//!
//! Entries are added by the owner and removed by a guard the owner holds, so no code
//! path (clean leave, dropped socket, heartbeat timeout, panic in a handler) can forget
//! to remove one. `/healthz`, `/metrics` and the tests read it; after every test it is
//! empty.

use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use dashmap::DashMap;

use crate::error::ProtocolError;
use crate::ids::{ParticipantId, RoomId};
use crate::room::Room;
use crate::session::WsSession;

/// One WebSocket connection (a participant from connect to close).
#[derive(Debug, Clone)]
pub struct Connection {
    pub session: Addr<WsSession>,
    pub peer_addr: Option<SocketAddr>,
    pub connected_at: Instant,
    /// Set once the participant has joined a room.
    pub room: Option<RoomId>,
    pub name: Option<Arc<str>>,
}

#[derive(Debug)]
pub struct Registry {
    connections: DashMap<ParticipantId, Connection>,
    rooms: DashMap<RoomId, Addr<Room>>,
    /// Room actors alive, counted by a guard each `Room` holds: an actor that left the
    /// map but never stopped (or stopped but was never dropped) still counts here.
    room_actors: Arc<AtomicI64>,
    started: Instant,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            connections: DashMap::new(),
            rooms: DashMap::new(),
            room_actors: Arc::default(),
            started: Instant::now(),
        }
    }
}

/// Snapshot of what is alive, for `/healthz` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub connections: usize,
    pub participants: usize,
    pub rooms: usize,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Registers a connection; it stays registered exactly as long as the guard lives.
    pub fn register_connection(
        self: &Arc<Self>,
        id: ParticipantId,
        connection: Connection,
    ) -> ConnectionGuard {
        self.connections.insert(id.clone(), connection);
        ConnectionGuard {
            registry: Arc::clone(self),
            id,
        }
    }

    pub fn set_joined(&self, id: &ParticipantId, room: RoomId, name: Arc<str>) {
        if let Some(mut c) = self.connections.get_mut(id) {
            c.room = Some(room);
            c.name = Some(name);
        }
    }

    pub fn connection(&self, id: &ParticipantId) -> Option<Connection> {
        self.connections.get(id).map(|c| c.clone())
    }

    pub fn connections(&self) -> Vec<(ParticipantId, Connection)> {
        self.connections
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    pub fn room(&self, id: &RoomId) -> Option<Addr<Room>> {
        self.rooms.get(id).map(|r| r.clone())
    }

    pub fn rooms(&self) -> Vec<(RoomId, Addr<Room>)> {
        self.rooms
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// The room's actor, started on first use. `start` runs under the map's entry lock,
    /// so two participants joining a new room at once get the same actor.
    pub fn room_or_start(
        &self,
        id: &RoomId,
        max_rooms: usize,
        start: impl FnOnce() -> Addr<Room>,
    ) -> Result<Addr<Room>, ProtocolError> {
        if let Some(room) = self.rooms.get(id) {
            return Ok(room.clone());
        }
        if self.rooms.len() >= max_rooms {
            return Err(ProtocolError::TooManyRooms(max_rooms));
        }
        Ok(self.rooms.entry(id.clone()).or_insert_with(start).clone())
    }

    /// Called by a room that has decided to close; only removes the entry if it is
    /// still that room's (a new room of the same name may have been started since).
    pub fn remove_room(&self, id: &RoomId, addr: &Addr<Room>) {
        self.rooms.remove_if(id, |_, a| a == addr);
    }

    pub fn counts(&self) -> Counts {
        Counts {
            connections: self.connections.len(),
            participants: self.connections.iter().filter(|c| c.room.is_some()).count(),
            rooms: self.rooms.len(),
        }
    }

    /// Room actors alive now (see the field); 0 once every room has stopped.
    pub fn room_actors(&self) -> i64 {
        crate::rtc::stats::MediaStats::gauge(&self.room_actors)
    }

    /// A guard counting one room actor for as long as it lives (held by `Room`).
    pub fn room_actor_guard(&self) -> crate::rtc::stats::TaskGuard {
        crate::rtc::stats::TaskGuard::new(&self.room_actors)
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty() && self.rooms.is_empty()
    }
}

/// Removes its connection from the registry when dropped (held by the session actor).
#[derive(Debug)]
pub struct ConnectionGuard {
    registry: Arc<Registry>,
    id: ParticipantId,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.registry.connections.remove(&self.id);
    }
}
