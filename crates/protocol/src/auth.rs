//! Signed room tokens (JWT, HS256). With a secret configured, a `join` must carry a
//! token that names the room; it says who the participant is and what it may do.
//! Without a secret, rooms are open (the development default; `main` warns).
//!
//! Minted by `plaza token` or by the application's backend with any JWT library, and
//! re-minted by the server itself for a participant in a call (`refresh`), so a long
//! call never outlives its token (docs/decisions.md §16).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ProtocolError;

/// How far past `exp` a token is still accepted (clocks differ a little).
pub const LEEWAY: Duration = Duration::from_secs(5);

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
    /// Issued at, Unix seconds. A refreshed token keeps the lifetime `exp - iat`. Read
    /// leniently (a fractional or odd value counts as absent): it never decides
    /// whether a token is valid, so it must not start refusing tokens that were valid.
    #[serde(
        default,
        deserialize_with = "lenient_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub iat: Option<u64>,
    /// Audience: whom the token is for. JWT allows one string or an array; an array is
    /// written back as one string when it holds one.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        serialize_with = "one_or_many_out",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub aud: Vec<String>,
    /// Issuer: who minted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

impl Claims {
    /// Claims for `room` and `sub` that may publish and subscribe, issued now and valid
    /// for `ttl`; no name, audience or issuer.
    pub fn new(room: impl Into<String>, sub: impl Into<String>, ttl: Duration) -> Self {
        let now = unix_now();
        Claims {
            room: room.into(),
            sub: sub.into(),
            name: None,
            publish: true,
            subscribe: true,
            exp: now.saturating_add(ttl.as_secs()),
            iat: Some(now),
            aud: Vec::new(),
            iss: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn lenient_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(serde_json::Value::deserialize(d)?.as_u64())
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn one_or_many_out<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    match v {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

/// What a participant may do once in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: Option<String>,
    pub name: Option<String>,
    pub publish: bool,
    pub subscribe: bool,
    /// The verified token's claims (`None` in open rooms): what a refreshed token
    /// repeats.
    pub claims: Option<Claims>,
}

impl Grant {
    /// Open rooms: anyone may do anything.
    pub fn open() -> Self {
        Grant {
            identity: None,
            name: None,
            publish: true,
            subscribe: true,
            claims: None,
        }
    }
}

/// Checks room tokens against the secret (and the configured audience and issuer), and
/// mints refreshed ones with the same secret.
pub struct TokenVerifier {
    key: DecodingKey,
    signing_key: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier(..)") // never the key
    }
}

impl TokenVerifier {
    /// Checks signature, expiry and room; `aud` and `iss` are not checked (tokens with
    /// or without them are accepted).
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY.as_secs();
        validation.set_required_spec_claims(&["exp", "sub"]);
        // jsonwebtoken refuses any token with an `aud` when no audience is expected;
        // with none configured, the audience is nobody's business here.
        validation.validate_aud = false;
        TokenVerifier {
            key: DecodingKey::from_secret(secret.as_bytes()),
            signing_key: EncodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// From now on a token must name `audience` in its `aud` and `issuer` as its `iss`
    /// (each only when given); one without the claim is refused too.
    pub fn expecting(mut self, audience: Option<&str>, issuer: Option<&str>) -> Self {
        let mut required = vec!["exp", "sub"];
        if let Some(aud) = audience {
            self.validation.set_audience(&[aud]);
            self.validation.validate_aud = true;
            required.push("aud");
        }
        if let Some(iss) = issuer {
            self.validation.set_issuer(&[iss]);
            required.push("iss");
        }
        self.validation.set_required_spec_claims(&required);
        self
    }

    /// Checks the token's signature, expiry, audience, issuer and room.
    pub fn verify(&self, token: Option<&str>, room: &str) -> Result<Grant, ProtocolError> {
        let token = token.ok_or_else(|| {
            ProtocolError::Unauthorized("this server requires a room token".into())
        })?;
        let claims = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| {
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidSignature => "bad token signature",
                    ErrorKind::InvalidAudience => "the token is for another audience",
                    ErrorKind::InvalidIssuer => "the token is from another issuer",
                    ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                        "the token names no audience (aud)"
                    }
                    ErrorKind::MissingRequiredClaim(c) if c == "iss" => {
                        "the token names no issuer (iss)"
                    }
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
            identity: Some(claims.sub.clone()),
            name: claims.name.clone(),
            publish: claims.publish,
            subscribe: claims.subscribe,
            claims: Some(claims),
        })
    }

    /// A token with the same claims as `claims` (room, identity, name, rights,
    /// audience, issuer), issued at `now` (Unix seconds) and valid for `lifetime`.
    /// Returns it with its new claims.
    pub fn refresh(
        &self,
        claims: &Claims,
        now: u64,
        lifetime: Duration,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let fresh = Claims {
            iat: Some(now),
            exp: now.saturating_add(lifetime.as_secs()),
            ..claims.clone()
        };
        let token = encode(&Header::new(Algorithm::HS256), &fresh, &self.signing_key)?;
        Ok((token, fresh))
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

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
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
            iat: None,
            aud: Vec::new(),
            iss: None,
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

    /// A token with these extra claims (as raw JSON, as another JWT library writes them).
    fn raw(secret: &str, extra: serde_json::Value) -> String {
        let mut c = serde_json::json!({
            "room": "demo", "sub": "u", "exp": expiry_in(Duration::from_secs(60)),
        });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_configured() {
        let open = TokenVerifier::new("s3cret");
        let strict = TokenVerifier::new("s3cret").expecting(Some("plaza"), Some("app"));
        use serde_json::json;
        let ok = |v: &TokenVerifier, extra| v.verify(Some(&raw("s3cret", extra)), "demo");
        let why = |v: &TokenVerifier, extra| ok(v, extra).unwrap_err().to_string();
        // Not configured: with or without, one string or an array, all accepted.
        for extra in [
            json!({}),
            json!({"aud": "anyone", "iss": "whoever"}),
            json!({"aud": ["a", "b"]}),
        ] {
            assert!(ok(&open, extra.clone()).is_ok(), "{extra}");
        }
        assert!(ok(&strict, json!({"aud": "plaza", "iss": "app"})).is_ok());
        assert!(ok(&strict, json!({"aud": ["other", "plaza"], "iss": "app"})).is_ok());
        assert!(why(&strict, json!({"aud": "other", "iss": "app"})).contains("audience"));
        assert!(why(&strict, json!({"iss": "app"})).contains("audience"));
        assert!(why(&strict, json!({"aud": "plaza", "iss": "evil"})).contains("issuer"));
        assert!(why(&strict, json!({"aud": "plaza"})).contains("issuer"));
        let code = ok(&strict, json!({})).unwrap_err().code();
        assert_eq!(code, "unauthorized");
        // Only the audience configured: any issuer.
        let aud_only = TokenVerifier::new("s3cret").expecting(Some("plaza"), None);
        assert!(ok(&aud_only, json!({"aud": "plaza", "iss": "x"})).is_ok());
        assert!(ok(&aud_only, json!({"aud": "plaza"})).is_ok());
    }

    #[test]
    fn a_refreshed_token_repeats_the_claims_with_a_new_expiry() {
        let v = TokenVerifier::new("s3cret").expecting(Some("plaza"), Some("app"));
        let original = Claims {
            aud: vec!["plaza".into()],
            iss: Some("app".into()),
            ..claims("demo", expiry_in(Duration::from_secs(60)))
        };
        let now = unix_now();
        let (token, fresh) = v.refresh(&original, now, Duration::from_secs(600)).unwrap();
        assert_eq!((fresh.iat, fresh.exp), (Some(now), now + 600));
        let grant = v.verify(Some(&token), "demo").unwrap();
        let got = grant.claims.unwrap();
        assert_eq!(got, fresh);
        assert_eq!(
            Claims {
                exp: original.exp,
                iat: None,
                ..got
            },
            original,
            "everything but the times is the original's"
        );
        // A single audience is written as a string, as such tokens usually come.
        let json = serde_json::to_value(&fresh).unwrap();
        assert_eq!(json["aud"], "plaza");
        let other = TokenVerifier::new("another secret");
        assert!(other.verify(Some(&token), "demo").is_err());
    }

    #[test]
    fn odd_iat_counts_as_absent() {
        let v = TokenVerifier::new("s3cret");
        let t = raw("s3cret", serde_json::json!({"iat": 1.5e9}));
        let claims = v.verify(Some(&t), "demo").unwrap().claims.unwrap();
        assert_eq!(claims.iat, None);
        let t = raw("s3cret", serde_json::json!({"iat": 1_700_000_000u64}));
        let claims = v.verify(Some(&t), "demo").unwrap().claims.unwrap();
        assert_eq!(claims.iat, Some(1_700_000_000));
    }

    #[test]
    fn constant_time_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}
