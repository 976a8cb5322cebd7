//! A TURN credentials provider's answer, read: the `iceServers` list in the shapes
//! providers send it, and how long it is valid.

use std::time::Duration;

use serde::Deserialize;

use plaza_protocol::IceServer;

/// What one fetch brought: the list and how long it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub servers: Vec<IceServer>,
    pub valid_for: Duration,
}

/// Reads a provider's answer: a bare `iceServers` array (Metered) or an object with one
/// (`{"iceServers": [...]}`, also `ice_servers`), each entry's `urls` a string or an
/// array. A `ttl` in seconds (number or string) beside the list sets its lifetime, else
/// `default_ttl`. An answer with no usable server is an error: keeping the last good
/// list beats replacing it with nothing.
pub fn parse_answer(body: &[u8], default_ttl: Duration) -> Result<Fetched, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Answer {
        List(Vec<Entry>),
        Object {
            #[serde(alias = "ice_servers", rename = "iceServers")]
            ice_servers: Vec<Entry>,
            #[serde(default)]
            ttl: Option<Ttl>,
        },
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ttl {
        Number(f64),
        Text(String),
    }
    #[derive(Deserialize)]
    struct Entry {
        urls: Urls,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        credential: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        One(String),
        Many(Vec<String>),
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        format!("the answer is not an iceServers list (a JSON array, or an object with iceServers): {e}")
    })?;
    let (entries, ttl) = match answer {
        Answer::List(entries) => (entries, None),
        Answer::Object { ice_servers, ttl } => (ice_servers, ttl),
    };
    let valid_for = match ttl {
        None => default_ttl,
        Some(Ttl::Number(n)) => secs(n)?,
        Some(Ttl::Text(t)) => secs(t.trim().parse().map_err(|_| format!("ttl {t:?}"))?)?,
    };
    let servers: Vec<IceServer> = entries
        .into_iter()
        .map(|e| IceServer {
            urls: match e.urls {
                Urls::One(u) => vec![u],
                Urls::Many(u) => u,
            },
            username: e.username,
            credential: e.credential,
        })
        .filter(|s| {
            !s.urls.is_empty()
                && s.urls.iter().all(|u| {
                    ["stun:", "stuns:", "turn:", "turns:"]
                        .iter()
                        .any(|p| u.starts_with(p))
                })
        })
        .collect();
    if servers.is_empty() {
        return Err("the answer lists no stun:/turn: server".into());
    }
    Ok(Fetched { servers, valid_for })
}

fn secs(n: f64) -> Result<Duration, String> {
    if n.is_finite() && n >= 1.0 {
        Ok(Duration::from_secs_f64(n.min(365.0 * 86_400.0)))
    } else {
        Err(format!("ttl {n} is not a number of seconds (at least 1)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn reads_a_bare_metered_array_with_string_urls() {
        let body = br#"[{"urls":"stun:stun.relay.example:80"},
            {"urls":"turn:relay.example:80","username":"u1","credential":"p1"},
            {"urls":["turn:relay.example:443?transport=tcp"],"username":"u1","credential":"p1"}]"#;
        let f = parse_answer(body, HOUR).unwrap();
        assert_eq!(f.valid_for, HOUR);
        assert_eq!(f.servers.len(), 3);
        assert_eq!(f.servers[0].urls, vec!["stun:stun.relay.example:80"]);
        assert_eq!(f.servers[0].username, None);
        assert_eq!(f.servers[1].username.as_deref(), Some("u1"));
        assert_eq!(f.servers[2].credential.as_deref(), Some("p1"));
    }

    #[test]
    fn reads_an_object_with_ice_servers_and_ttl() {
        let body = br#"{"iceServers":[{"urls":["turn:t:3478"],"username":"u","credential":"c"}],"ttl":"120"}"#;
        let f = parse_answer(body, HOUR).unwrap();
        assert_eq!(f.valid_for, Duration::from_secs(120));
        assert_eq!(f.servers[0].urls, vec!["turn:t:3478"]);
        let body = br#"{"ice_servers":[{"urls":"stun:s"}],"ttl":30}"#;
        assert_eq!(
            parse_answer(body, HOUR).unwrap().valid_for,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn refuses_what_is_not_a_list_of_servers() {
        for body in [
            &b"<html>oops</html>"[..],
            b"{\"error\":\"Invalid API Key\"}",
            b"[]",
            b"[{\"urls\":\"http://not-ice\"}]",
            b"{\"iceServers\":[{\"urls\":\"turn:t\"}],\"ttl\":0}",
            b"[{\"urls\":\"turn:t\"}",
        ] {
            assert!(
                parse_answer(body, HOUR).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
