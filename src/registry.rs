//! The registry of everything alive: every WebSocket connection and every room.
//!
//! Entries are added by their owner and removed by a guard the owner holds
//! ([`ConnectionGuard`] in the session, an [`OnDrop`] in the room), so no code path
//! (clean leave, dropped socket, heartbeat timeout, panic in a handler) can forget to
//! remove one. `/healthz`, `/metrics`, the admin API and the tests read it; after every
//! test it is empty.
//!
//! It knows a session only as what it needs to stop it (a `Recipient<Shutdown>`), and a
//! room as its address; neither imports this module back.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use actix::{Addr, Message, Recipient};
use dashmap::DashMap;
use plaza_protocol::{ParticipantId, ProtocolError, RoomId};

use crate::bans::Rejoiner;
use crate::guard::{OnDrop, TaskGuard};
use crate::link::Attach;
use crate::room::Room;

/// The server is shutting down: the session tells its client and closes.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Shutdown;

/// One WebSocket connection (a participant from connect to close).
#[derive(Debug, Clone)]
pub struct Connection {
    /// How to stop it.
    pub session: Recipient<Shutdown>,
    pub peer_addr: Option<SocketAddr>,
    /// The client's address (behind trusted proxies, what they forwarded).
    pub client_ip: Option<IpAddr>,
    pub connected_at: Instant,
    /// Set once the participant has joined a room.
    pub room: Option<RoomId>,
    pub name: Option<Arc<str>>,
    /// Who a kick keeps out of the room (set with `room`).
    pub rejoiner: Option<Rejoiner>,
}

/// A room in the map. The serial tells a room from a newer one of the same name, so a
/// closing room's guard never removes its successor.
#[derive(Debug, Clone)]
struct RoomEntry {
    serial: u64,
    addr: Addr<Room>,
}

#[derive(Debug)]
pub struct Registry {
    connections: DashMap<ParticipantId, Connection>,
    /// Resume tokens (single use) → the participant they resume. An entry lives no
    /// longer than its participant's connection entry (the guard removes both).
    resume_tokens: DashMap<String, (ParticipantId, Recipient<Attach>)>,
    rooms: DashMap<RoomId, RoomEntry>,
    next_serial: AtomicU64,
    /// Room actors alive, counted by a guard each `Room` holds: an actor that left the
    /// map but never stopped (or stopped but was never dropped) still counts here.
    room_actors: Arc<AtomicI64>,
    started: Instant,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            connections: DashMap::new(),
            resume_tokens: DashMap::new(),
            rooms: DashMap::new(),
            next_serial: AtomicU64::new(0),
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

/// What a new room actor is given to stay registered: dropping (or running) `entry`
/// removes the room from the map; `alive` counts the actor until it is dropped.
pub struct RoomRegistration {
    pub entry: OnDrop,
    pub alive: TaskGuard,
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

    pub fn set_joined(&self, id: &ParticipantId, room: RoomId, name: Arc<str>, who: Rejoiner) {
        if let Some(mut c) = self.connections.get_mut(id) {
            c.room = Some(room);
            c.name = Some(name);
            c.rejoiner = Some(who);
        }
    }

    /// Makes `token` resume participant `id` (replacing the participant's older token).
    pub fn set_resume_token(&self, token: String, id: &ParticipantId, attach: Recipient<Attach>) {
        self.resume_tokens.retain(|_, (owner, _)| owner != id);
        self.resume_tokens.insert(token, (id.clone(), attach));
    }

    /// Takes the participant a resume token is for: a token works once.
    pub fn take_resume_token(&self, token: &str) -> Option<(ParticipantId, Recipient<Attach>)> {
        self.resume_tokens.remove(token).map(|(_, v)| v)
    }

    /// Resume tokens outstanding (one per participant that can be resumed).
    pub fn resume_tokens(&self) -> usize {
        self.resume_tokens.len()
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
        self.rooms.get(id).map(|r| r.addr.clone())
    }

    pub fn rooms(&self) -> Vec<(RoomId, Addr<Room>)> {
        self.rooms
            .iter()
            .map(|e| (e.key().clone(), e.value().addr.clone()))
            .collect()
    }

    /// The room's actor, started on first use. `start` runs under the map's entry lock,
    /// so two participants joining a new room at once get the same actor; it is handed
    /// the registration the actor must hold.
    pub fn room_or_start(
        self: &Arc<Self>,
        id: &RoomId,
        max_rooms: usize,
        start: impl FnOnce(RoomRegistration) -> Addr<Room>,
    ) -> Result<Addr<Room>, ProtocolError> {
        if let Some(room) = self.rooms.get(id) {
            return Ok(room.addr.clone());
        }
        if self.rooms.len() >= max_rooms {
            return Err(ProtocolError::TooManyRooms(max_rooms));
        }
        let entry = self.rooms.entry(id.clone()).or_insert_with(|| {
            let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
            let registry: Weak<Registry> = Arc::downgrade(self);
            let room_id = id.clone();
            let registration = RoomRegistration {
                entry: OnDrop::new(move || {
                    if let Some(registry) = registry.upgrade() {
                        registry.remove_room_entry(&room_id, serial);
                    }
                }),
                alive: TaskGuard::new(&self.room_actors),
            };
            RoomEntry {
                serial,
                addr: start(registration),
            }
        });
        Ok(entry.addr.clone())
    }

    /// Forgets a room that refused a join as closing or whose actor is gone, so the
    /// next try starts a fresh one (only that room: a newer one of the name stays).
    pub fn forget_room(&self, id: &RoomId, addr: &Addr<Room>) {
        self.rooms.remove_if(id, |_, e| &e.addr == addr);
    }

    fn remove_room_entry(&self, id: &RoomId, serial: u64) {
        self.rooms.remove_if(id, |_, e| e.serial == serial);
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
        crate::guard::gauge(&self.room_actors)
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty() && self.rooms.is_empty() && self.resume_tokens.is_empty()
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
        let id = &self.id;
        self.registry
            .resume_tokens
            .retain(|_, (owner, _)| owner != id);
    }
}
