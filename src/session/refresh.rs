//! Token refresh: with `auth.secret` set, a joined participant is sent a fresh room
//! token (`token {token, expires_at}`) before the current one expires, so a client that
//! has to rejoin late in a long call still has a valid one. The server mints it itself,
//! with the same secret and the same claims, keeping the original token's lifetime
//! (docs/decisions.md §16).
//!
//! One timer at a time on the participant's actor: it dies with the actor, and it keeps
//! running while the socket is away (the token is kept for the resume like any other
//! message). No token is minted for an identity kicked from the room or for a room an
//! operator closed: refreshing must not hand out what a rejoin would be refused.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use plaza_protocol::auth::{unix_now, Claims};
use plaza_protocol::{RoomId, ServerMessage};
use tracing::{info, warn};

use super::WsSession;
use crate::bans::Rejoiner;

/// The shortest lifetime a refreshed token gets: with `REFRESH_MARGIN` it leaves at
/// least 5 s between refreshes, however short the original token was.
pub const MIN_LIFETIME: Duration = Duration::from_secs(10);
/// The longest: a token whose `iat` is far in the past (or zero) must not turn into
/// refreshed tokens valid for years.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A fresh token is sent at the latest this long before the current one expires, so it
/// arrives in time over a slow or briefly lost socket (the resume grace keeps it).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5);

/// What keeps a participant's token fresh.
pub(super) struct TokenRefresh {
    /// The current token's claims (the last one sent, or the one joined with).
    claims: Claims,
    /// How long each refreshed token is valid.
    lifetime: Duration,
    room: RoomId,
    rejoiner: Rejoiner,
}

/// The lifetime refreshed tokens get: the original's `exp - iat` when it says when it
/// was issued, else what was left of it at join (`now`, Unix seconds); within
/// [`MIN_LIFETIME`, `MAX_LIFETIME`].
pub fn lifetime(claims: &Claims, now: u64) -> Duration {
    let secs = match claims.iat {
        Some(iat) if iat < claims.exp => claims.exp - iat,
        _ => claims.exp.saturating_sub(now),
    };
    Duration::from_secs(secs).clamp(MIN_LIFETIME, MAX_LIFETIME)
}

/// How long to wait before sending the next token, when the current one has
/// `remaining` left: two thirds of it, and never later than `REFRESH_MARGIN` before it
/// expires (at once when that has passed).
pub fn refresh_delay(remaining: Duration) -> Duration {
    (remaining * 2 / 3).min(remaining.saturating_sub(REFRESH_MARGIN))
}

/// Time left until `exp` (Unix seconds), to the millisecond.
fn remaining(exp: u64) -> Duration {
    let expires = UNIX_EPOCH + Duration::from_secs(exp);
    expires
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

impl WsSession {
    /// Starts refreshing once joined, when the server checks tokens (open rooms get no
    /// tokens).
    pub(super) fn start_token_refresh(
        &mut self,
        room: RoomId,
        rejoiner: Rejoiner,
        ctx: &mut Context<Self>,
    ) {
        if self.app.tokens.is_none() {
            return;
        }
        let Some(claims) = self.signalling.grant().claims.clone() else {
            return;
        };
        let lifetime = lifetime(&claims, unix_now());
        self.token_refresh = Some(TokenRefresh {
            claims,
            lifetime,
            room,
            rejoiner,
        });
        self.schedule_token_refresh(ctx);
    }

    fn schedule_token_refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(refresh) = &self.token_refresh else {
            return;
        };
        let delay = refresh_delay(remaining(refresh.claims.exp));
        // Tied to the actor's context: stopping the participant cancels it.
        ctx.run_later(delay, |act, ctx| act.refresh_token(ctx));
    }

    fn refresh_token(&mut self, ctx: &mut Context<Self>) {
        let _e = self.span.clone().entered();
        let (Some(refresh), Some(tokens)) = (&mut self.token_refresh, &self.app.tokens) else {
            return;
        };
        if let Err(refused) = self
            .app
            .bans
            .admit(&refresh.room, &refresh.rejoiner, Instant::now())
        {
            // Kicked (this identity, maybe on another connection) or the room closed:
            // a fresh token would only be refused, and must not outlive the ban.
            info!(code = refused.code(), "no more token refreshes");
            self.token_refresh = None;
            return;
        }
        let (token, fresh) = match tokens.refresh(&refresh.claims, unix_now(), refresh.lifetime) {
            Ok(minted) => minted,
            Err(e) => {
                // Encoding our own claims with an HMAC key does not fail in practice;
                // if it does, the client keeps its token and rejoins with it or not.
                warn!(error = %e, "could not mint a refreshed token");
                self.token_refresh = None;
                return;
            }
        };
        let expires_at = fresh.exp;
        refresh.claims = fresh;
        self.send(ctx, &ServerMessage::Token { token, expires_at });
        self.schedule_token_refresh(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64, iat: Option<u64>) -> Claims {
        Claims {
            exp,
            iat,
            ..Claims::new("r", "u", Duration::ZERO)
        }
    }

    #[test]
    fn refreshed_tokens_keep_the_original_lifetime() {
        let now = 1_000_000;
        // iat known: the whole lifetime, however late the join.
        assert_eq!(
            lifetime(&claims(now + 100, Some(now - 500)), now),
            Duration::from_secs(600)
        );
        // No iat (or a nonsense one): what was left at join.
        assert_eq!(
            lifetime(&claims(now + 120, None), now),
            Duration::from_secs(120)
        );
        assert_eq!(
            lifetime(&claims(now + 120, Some(now + 500)), now),
            Duration::from_secs(120)
        );
        // Within the floor and the ceiling.
        assert_eq!(lifetime(&claims(now + 3, Some(now)), now), MIN_LIFETIME);
        assert_eq!(lifetime(&claims(now + 1, None), now), MIN_LIFETIME);
        assert_eq!(lifetime(&claims(now - 2, None), now), MIN_LIFETIME);
        assert_eq!(lifetime(&claims(now + 60, Some(0)), now), MAX_LIFETIME);
    }

    #[test]
    fn the_next_token_comes_at_two_thirds_and_at_least_the_margin_before_expiry() {
        let s = Duration::from_secs;
        assert_eq!(refresh_delay(s(3600)), s(2400));
        assert_eq!(refresh_delay(s(30)), s(20));
        // Two thirds of 12 s would leave 4 s: the margin wins.
        assert_eq!(refresh_delay(s(12)), s(7));
        assert_eq!(refresh_delay(s(10)), s(5));
        assert_eq!(refresh_delay(s(5)), Duration::ZERO);
        assert_eq!(refresh_delay(Duration::ZERO), Duration::ZERO);
        // Each refreshed token has at least MIN_LIFETIME, so refreshes never come
        // faster than this (no busy loop whatever the original token).
        assert!(refresh_delay(MIN_LIFETIME) >= s(5));
        for secs in 0..100 {
            let d = refresh_delay(s(secs));
            assert!(d <= s(secs).saturating_sub(REFRESH_MARGIN) && d <= s(secs) * 2 / 3);
        }
    }
}
