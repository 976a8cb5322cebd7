//! TURN REST credentials (draft-uberti-behave-turn-rest, as coturn's `use-auth-secret`
//! implements it): username `"<expiry unix time>:<participant id>"`, password
//! `base64(HMAC-SHA1(secret, username))`. coturn checks the HMAC and the expiry, so the
//! browser holds a credential that stops working after `ttl`, never the secret.
//!
//! Or from a provider's REST API ([`provider`]): fetched, cached and refreshed in the
//! background, handed to clients as they are.

mod answer;
pub mod provider;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use plaza_protocol::{IceServer, ParticipantId};

use crate::config::Config;
use provider::TurnProvider;

pub fn rest_credential(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn rest_username(participant: &ParticipantId, ttl: Duration, now: SystemTime) -> String {
    let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + ttl;
    format!("{}:{}", expiry.as_secs(), participant)
}

/// The `ice_servers` a participant gets in `joined`: the configured ones, plus the TURN
/// URLs with freshly minted credentials when a TURN secret is configured, plus the
/// provider's current list when there is one.
pub fn ice_servers_for(
    config: &Config,
    participant: &ParticipantId,
    provider: Option<&TurnProvider>,
) -> Vec<IceServer> {
    let mut servers = config.ice_servers.clone();
    if !config.turn.secret.is_empty() && !config.turn.urls.is_empty() {
        let username = rest_username(participant, config.turn.ttl, SystemTime::now());
        servers.push(IceServer {
            urls: config.turn.urls.clone(),
            credential: Some(rest_credential(&config.turn.secret, &username)),
            username: Some(username),
        });
    }
    if let Some(p) = provider {
        servers.extend(p.servers());
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // Computed independently: printf '%s' '1700000000:alice' |
        //   openssl dgst -sha1 -hmac 'north' -binary | base64
        assert_eq!(
            rest_credential("north", "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
    }

    #[test]
    fn username_carries_expiry_and_participant() {
        let p = ParticipantId::from_client("Pabc");
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(rest_username(&p, Duration::from_secs(60), now), "1060:Pabc");
    }

    #[test]
    fn joined_gets_minted_turn_entry() {
        let mut c = Config::default();
        c.turn.urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        c.turn.secret = "s3cret".into();
        let servers = ice_servers_for(&c, &ParticipantId::from_client("P1"), None);
        assert_eq!(servers.len(), 1);
        let s = &servers[0];
        let user = s.username.as_deref().unwrap();
        assert!(user.ends_with(":P1"));
        assert_eq!(
            s.credential.as_deref(),
            Some(&*rest_credential("s3cret", user))
        );
    }
}
