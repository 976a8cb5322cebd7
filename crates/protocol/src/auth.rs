//! Signed room tokens (JWT, HS256). With a secret configured, a `join` must carry a
//! token that names the room; it says who the participant is and what it may do.
//! Without a secret, rooms are open (the development default; `main` warns).
//!
//! Minted by `plaza token` or by the application's backend with any JWT library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ProtocolError;

/// The claims of a room token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The room this token admits to.
    pub room: String,
    /// Who the participant is in the application (logged; shown to operators).
    pub sub: String,
    /// Display name; when set, it replaces the name the client asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "yes")]
    pub publish: bool,
    #[serde(default = "yes")]
    pub subscribe: bool,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

fn yes() -> bool {
    true
}

/// What a participant may do once in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: Option<String>,
    pub name: Option<String>,
    pub publish: bool,
    pub subscribe: bool,
}

impl Grant {
    /// Open rooms: anyone may do anything.
    pub fn open() -> Self {
        Grant {
            identity: None,
            name: None,
            publish: true,
            subscribe: true,
        }
    }
}

pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier(..)") // never the key
    }
}

impl TokenVerifier {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenVerifier {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Checks the token's signature, expiry and room.
    pub fn verify(&self, token: Option<&str>, room: &str) -> Result<Grant, ProtocolError> {
        let token = token.ok_or_else(|| {
            ProtocolError::Unauthorized("this server requires a room token".into())
        })?;
        let claims = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| {
                let why = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad token signature",
                    _ => "the token is not valid",
                };
                ProtocolError::Unauthorized(why.into())
            })?
            .claims;
        if claims.room != room {
            return Err(ProtocolError::Unauthorized(
                "the token is for another room".into(),
            ));
        }
        Ok(Grant {
            identity: Some(claims.sub),
            name: claims.name,
            publish: claims.publish,
            subscribe: claims.subscribe,
        })
    }
}

/// Mints a token (for `plaza token` and tests).
pub fn mint(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// `exp` for a token valid for `ttl` from now.
pub fn expiry_in(ttl: Duration) -> u64 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + ttl)
        .as_secs()
}

/// Compares secrets in constant time (an attacker timing the comparison learns nothing
/// about how much of a guess was right).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(room: &str, exp: u64) -> Claims {
        Claims {
            room: room.into(),
            sub: "user-1".into(),
            name: Some("Ann".into()),
            publish: false,
            subscribe: true,
            exp,
        }
    }

    #[test]
    fn valid_token_gives_its_grant() {
        let t = mint(
            "s3cret",
            &claims("demo", expiry_in(Duration::from_secs(60))),
        )
        .unwrap();
        let g = TokenVerifier::new("s3cret")
            .verify(Some(&t), "demo")
            .unwrap();
        assert_eq!(g.identity.as_deref(), Some("user-1"));
        assert_eq!(g.name.as_deref(), Some("Ann"));
        assert!(!g.publish && g.subscribe);
    }

    #[test]
    fn bad_tokens_are_refused() {
        let v = TokenVerifier::new("s3cret");
        let code = |r: Result<Grant, ProtocolError>| r.unwrap_err().code();
        let good = mint(
            "s3cret",
            &claims("demo", expiry_in(Duration::from_secs(60))),
        )
        .unwrap();
        assert_eq!(code(v.verify(None, "demo")), "unauthorized");
        assert_eq!(code(v.verify(Some("garbage"), "demo")), "unauthorized");
        assert_eq!(code(v.verify(Some(&good), "other")), "unauthorized");
        let forged = mint("wrong", &claims("demo", expiry_in(Duration::from_secs(60)))).unwrap();
        assert_eq!(code(v.verify(Some(&forged), "demo")), "unauthorized");
        let expired = mint("s3cret", &claims("demo", 1_000)).unwrap();
        let e = v.verify(Some(&expired), "demo").unwrap_err();
        assert!(e.to_string().contains("expired"));
    }

    #[test]
    fn constant_time_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}
