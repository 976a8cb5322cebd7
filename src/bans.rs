//! Durable kicks and closures: a participant an operator kicked stays out of that room,
//! and a room an operator closed stays closed, for as long as the operator chose
//! (admin API; `admin.kick_ban` and `admin.room_closed_for` by default). Checked when a
//! join arrives, before any peer connection is made.
//!
//! Who "the participant" is on a rejoin ([`Rejoiner`], docs/decisions.md): with room
//! tokens, the token's subject; without, the display name together with the client's
//! address. Entries expire by themselves; expired ones are dropped as joins look them
//! up, and the maps are swept when they grow.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use plaza_protocol::{ProtocolError, RoomId};

/// The longest ban or closure the admin API (and the defaults) accept: 30 days. Here,
/// in a leaf module, so the configuration can check its defaults against it without
/// importing the admin API.
pub const MAX_BAN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Who a kick keeps out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rejoiner {
    /// The room token's subject (`sub`): the identity the operator's own auth issued.
    Subject(Arc<str>),
    /// No token identity: the display name from that client address.
    NameAt(Arc<str>, Option<IpAddr>),
}

/// When the maps grow past this, expired entries are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
pub struct Bans {
    kicked: DashMap<(RoomId, Rejoiner), Instant>,
    closed: DashMap<RoomId, Instant>,
}

impl Bans {
    /// Keeps `who` out of `room` for `ban` (nothing for zero).
    pub fn kick(&self, room: &RoomId, who: Rejoiner, ban: Duration, now: Instant) {
        if ban.is_zero() {
            return;
        }
        if self.kicked.len() > SWEEP_ABOVE {
            self.kicked.retain(|_, until| *until > now);
        }
        self.kicked.insert((room.clone(), who), now + ban);
    }

    /// Undoes [`kick`](Self::kick) (the kick found nobody).
    pub fn forgive(&self, room: &RoomId, who: &Rejoiner) {
        self.kicked.remove(&(room.clone(), who.clone()));
    }

    /// Keeps `room` closed for `closed_for` (nothing for zero).
    pub fn close(&self, room: &RoomId, closed_for: Duration, now: Instant) {
        if closed_for.is_zero() {
            return;
        }
        if self.closed.len() > SWEEP_ABOVE {
            self.closed.retain(|_, until| *until > now);
        }
        self.closed.insert(room.clone(), now + closed_for);
    }

    /// `Ok` if `who` may join `room` now; else the refusal, with the time left.
    pub fn admit(&self, room: &RoomId, who: &Rejoiner, now: Instant) -> Result<(), ProtocolError> {
        if let Some(left) = left(&self.closed, room, now) {
            return Err(ProtocolError::RoomClosed(format!(
                "this room was closed by an operator; it opens again in {} s",
                secs(left)
            )));
        }
        let key = (room.clone(), who.clone());
        if let Some(left) = left(&self.kicked, &key, now) {
            return Err(ProtocolError::Kicked(format!(
                "you were removed from this room; you may join again in {} s",
                secs(left)
            )));
        }
        Ok(())
    }
}

/// Time left on `key`'s entry; an expired entry is removed.
fn left<K: Eq + std::hash::Hash>(
    map: &DashMap<K, Instant>,
    key: &K,
    now: Instant,
) -> Option<Duration> {
    let until = *map.get(key)?;
    if until > now {
        return Some(until - now);
    }
    map.remove_if(key, |_, u| *u <= now);
    None
}

/// Whole seconds, rounded up (never "0 s" while still refused).
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kicks_and_closures_expire() {
        let bans = Bans::default();
        let t0 = Instant::now();
        let room = RoomId::parse("r", 64).unwrap();
        let other = RoomId::parse("s", 64).unwrap();
        let ann = Rejoiner::Subject("ann".into());
        let bob = Rejoiner::NameAt("Bob".into(), Some("192.0.2.1".parse().unwrap()));
        bans.kick(&room, ann.clone(), Duration::from_secs(10), t0);
        let e = bans.admit(&room, &ann, t0).unwrap_err();
        assert_eq!(e.code(), "kicked");
        assert!(e.to_string().contains("10 s"), "{e}");
        assert!(
            bans.admit(&other, &ann, t0).is_ok(),
            "other rooms unaffected"
        );
        assert!(bans.admit(&room, &bob, t0).is_ok(), "others unaffected");
        assert!(bans
            .admit(&room, &ann, t0 + Duration::from_secs(10))
            .is_ok());
        assert!(bans.kicked.is_empty(), "expired entry dropped");

        bans.close(&room, Duration::from_secs(5), t0);
        assert_eq!(
            bans.admit(&room, &bob, t0).unwrap_err().code(),
            "room_closed"
        );
        assert!(bans.admit(&other, &bob, t0).is_ok());
        assert!(bans.admit(&room, &bob, t0 + Duration::from_secs(6)).is_ok());

        bans.kick(&room, bob.clone(), Duration::ZERO, t0);
        bans.close(&room, Duration::ZERO, t0);
        assert!(bans.admit(&room, &bob, t0).is_ok(), "zero means no ban");
        bans.kick(&room, bob.clone(), Duration::from_secs(5), t0);
        bans.forgive(&room, &bob);
        assert!(bans.admit(&room, &bob, t0).is_ok());
    }
}
