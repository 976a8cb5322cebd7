//! Configuration: one struct, layered as defaults < TOML file < `PLAZA_*` environment
//! < command-line flags. Each setting is declared once, in the `settings!` block below:
//! its field, TOML key, default, flag, variable and help all come from that one entry.
//! (When they were written out separately, some flags were parsed and never applied, so
//! `PLAZA_AUTH_SECRET` left rooms open.) `config.example.toml` documents every key;
//! `plaza --help` lists the flags and their variables.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::client_addr::{Cidr, ForwardedHeader};
use crate::error::{Error, Result};
use plaza_protocol::IceServer;

#[macro_use]
mod settings;
#[cfg(test)]
mod tests;
mod value;

pub use settings::{ConfigArgs, Setting};
use value::Value;

/// Plaza at info; webrtc-rs only at error, because it logs routine teardown (closed
/// sockets, closed agents) as warnings. Lower it to `warn` when debugging ICE.
pub const DEFAULT_LOG_FILTER: &str = "info,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_sctp=error,webrtc_srtp=error,webrtc_mdns=error";

settings! {
    /// Everything the server is configured with (see config.example.toml).
    pub struct Config {
        /// HTTP + WebSocket listen address.
        listen: SocketAddr = "0.0.0.0:8080", flag "listen", env "PLAZA_LISTEN", sample "127.0.0.1:9000";
        /// Folder served at / (the web client).
        web_root: PathBuf = "web", flag "web-root", env "PLAZA_WEB_ROOT", sample "/srv/plaza/web";
        /// actix-web worker threads (signalling); 0 = one per core.
        http_workers: usize = "0", flag "http-workers", env "PLAZA_HTTP_WORKERS", sample "4";
        /// Threads of the media runtime (RTP forwarding, ICE, DTLS); 0 = one per core.
        media_threads: usize = "0", flag "media-threads", env "PLAZA_MEDIA_THREADS", sample "2";
        /// On SIGTERM/SIGINT, the longest the server takes to tell clients and stop.
        shutdown_timeout: Duration = "5s",
            flag "shutdown-timeout", env "PLAZA_SHUTDOWN_TIMEOUT", sample "30s";
        /// STUN/TURN servers handed to clients in `joined`; on the command line as JSON:
        /// [{"urls":["stun:host:3478"]}, ...]
        ice_servers: Vec<IceServer> = "", flag "ice-servers", env "PLAZA_ICE_SERVERS",
            sample r#"[{"urls":["stun:stun.example.com:3478"],"username":"u","credential":"c"}]"#;
    }

    pub struct HeartbeatConfig in heartbeat {
        /// WebSocket ping interval.
        interval: Duration = "5s", flag "heartbeat-interval", env "PLAZA_HEARTBEAT_INTERVAL", sample "1s";
        /// Drop a connection silent for this long.
        timeout: Duration = "15s", flag "heartbeat-timeout", env "PLAZA_HEARTBEAT_TIMEOUT", sample "30s";
        /// Close a connection that has not joined a room within this long (close code
        /// 4408), pings or not: an idle socket costs a slot and proves nothing.
        join_timeout: Duration = "10s", flag "join-timeout", env "PLAZA_JOIN_TIMEOUT", sample "3s";
    }

    /// Who may open a WebSocket, and how the client's address is known behind proxies.
    pub struct AccessConfig in access {
        /// Origins (scheme://host[:port]) of pages on other sites that may open /ws, or
        /// "*" for any. Pages served by this server itself (Origin host:port = the
        /// request's Host) and clients that send no Origin (not a browser) are always
        /// allowed; any other Origin gets 403.
        allowed_origins: Vec<String> = "", flag "allowed-origin", env "PLAZA_ALLOWED_ORIGINS",
            sample "https://app.example.com";
        /// Reverse proxies (IPs or CIDRs) whose forwarded-for header is believed; empty =
        /// none: every client is its TCP peer's address. Per-address limits and logs use
        /// the address found this way.
        trusted_proxies: Vec<Cidr> = "", flag "trusted-proxy", env "PLAZA_TRUSTED_PROXIES",
            sample "127.0.0.1,10.0.0.0/8";
        /// The header the trusted proxies set: x-forwarded-for or forwarded (RFC 7239).
        /// Only this one is read, so a client cannot slip in the other.
        forwarded_header: ForwardedHeader = "x-forwarded-for",
            flag "forwarded-header", env "PLAZA_FORWARDED_HEADER", sample "forwarded";
    }

    /// A participant's life apart from its WebSocket.
    pub struct SessionConfig in session {
        /// How long a joined participant whose WebSocket dropped (no close frame: a
        /// network change, a dead path) is kept, peer connections and all, for the
        /// client to come back with its resume token; 0 = no resume (leave at once).
        resume_grace: Duration = "20s",
            flag "resume-grace", env "PLAZA_RESUME_GRACE", sample "30s";
    }

    /// Forwarding policy.
    pub struct MediaConfig in media {
        /// The hard cap on keyframe requests (PLIs): at most one per published track
        /// per this interval, however many subscribers ask.
        // A new subscriber's request leaves at once and requests while one is in flight
        // merge (rtc/keyframe.rs), so the cap only matters when many join together: a
        // big room must not cause a PLI storm (each keyframe costs the publisher a burst
        // of bits), and a subscriber held back by it waits at most this long.
        // 50 ms: a subscriber ready just after someone else's keyframe waits up to the
        // cap; at 100 ms, 50 viewers joining at 10/s kept every request waiting for it
        // (webinar first frame p95 132 ms, 95 ms at 50 ms). docs/decisions.md §5.
        keyframe_request_interval: Duration = "50ms",
            flag "keyframe-request-interval", env "PLAZA_KEYFRAME_REQUEST_INTERVAL", sample "300ms";
        /// A keyframe request that got no keyframe within this long is sent again.
        keyframe_retry: Duration = "400ms",
            flag "keyframe-retry", env "PLAZA_KEYFRAME_RETRY", sample "1s";
    }

    /// Where the server's own ICE candidates come from, and how fast a dead connection
    /// is noticed.
    pub struct IceConfig in ice {
        /// Gather ICE candidates only on these local IPs (empty = all non-loopback
        /// addresses). Listing a loopback address turns loopback candidates on.
        ips: Vec<IpAddr> = "", flag "ice-ip", env "PLAZA_ICE_IPS", sample "127.0.0.1,10.0.0.2";
        /// Gather ICE candidates only on these network interfaces (empty = all).
        interfaces: Vec<String> = "", flag "ice-interface", env "PLAZA_ICE_INTERFACES", sample "eth0,eth1";
        /// Public IPs to announce instead of the host addresses (1:1 NAT, Docker, cloud
        /// VMs): one per local address, in the same order, or a single one.
        nat_1to1_ips: Vec<String> = "", flag "nat-1to1-ip", env "PLAZA_NAT_1TO1_IPS", sample "203.0.113.7";
        /// One UDP port for every peer connection (UDP mux): the easiest to open in
        /// firewalls and Docker. Excludes udp_port_min/max.
        udp_port: Option<u16> = "", flag "udp-port", env "PLAZA_UDP_PORT", sample "50000";
        /// Lowest port of the ephemeral range: one UDP port per peer connection per
        /// local address.
        udp_port_min: Option<u16> = "", flag "udp-port-min", env "PLAZA_UDP_PORT_MIN", sample "50000";
        /// Highest port of the ephemeral range.
        udp_port_max: Option<u16> = "", flag "udp-port-max", env "PLAZA_UDP_PORT_MAX", sample "60000";
        /// A client's connection is "disconnected" after this long without traffic.
        disconnected_timeout: Duration = "5s",
            flag "ice-disconnected-timeout", env "PLAZA_ICE_DISCONNECTED_TIMEOUT", sample "10s";
        /// Still nothing this long after "disconnected": "failed", and the participant is
        /// dropped (webrtc-ice counts it from the disconnect: a client that vanished is
        /// dropped after disconnected_timeout + failed_timeout, 20 s by default).
        failed_timeout: Duration = "15s",
            flag "ice-failed-timeout", env "PLAZA_ICE_FAILED_TIMEOUT", sample "30s";
        /// Keep-alive checks on an idle connection.
        keepalive_interval: Duration = "2s",
            flag "ice-keepalive-interval", env "PLAZA_ICE_KEEPALIVE_INTERVAL", sample "1s";
        /// STUN/TURN servers the server's own peer connections use (a server behind NAT
        /// without a 1:1 mapping): server-reflexive and relayed candidates. Apart from
        /// what clients get (ice_servers, turn); JSON on the command line.
        servers: Vec<IceServer> = "", flag "server-ice-servers", env "PLAZA_SERVER_ICE_SERVERS",
            sample r#"[{"urls":["turn:turn.example.com:3478"],"username":"plaza","credential":"c"}]"#;
    }

    /// TURN REST credentials (coturn `use-auth-secret`): the server mints a short-lived
    /// username/password per participant at join, so no long-lived secret reaches a
    /// browser.
    pub struct TurnConfig in turn {
        /// TURN URLs the minted credentials are for, e.g.
        /// turn:turn.example.com:3478?transport=udp
        urls: Vec<String> = "", flag "turn-url", env "PLAZA_TURN_URLS",
            sample "turn:turn.example.com:3478?transport=udp,turns:turn.example.com:443";
        /// coturn's static-auth-secret; empty = no TURN REST credentials. Prefer the
        /// variable to the flag.
        secret: String = "", flag "turn-secret", env "PLAZA_TURN_SECRET", sample "turn-secret-0123", secret;
        /// Lifetime of minted TURN credentials.
        ttl: Duration = "24h", flag "turn-ttl", env "PLAZA_TURN_TTL", sample "1h";
    }

    /// TURN credentials fetched from a provider's REST API (Metered-style: a GET that
    /// answers an `iceServers` array with short-lived credentials), cached, refreshed in
    /// the background and handed to clients in `joined`.
    pub struct TurnProviderConfig in turn_provider {
        /// The provider's credentials URL, e.g.
        /// https://APP.metered.live/api/v1/turn/credentials; empty = no provider. Put
        /// the key in api_key, not here.
        url: String = "", flag "turn-provider-url", env "PLAZA_TURN_PROVIDER_URL",
            sample "https://plaza.metered.live/api/v1/turn/credentials";
        /// The provider's API key. Never logged or sent to clients. Prefer the variable
        /// to the flag.
        api_key: String = "", flag "turn-provider-api-key", env "PLAZA_TURN_PROVIDER_API_KEY",
            sample "provider-key-0123", secret;
        /// The query parameter that carries the key (Metered: apiKey); empty = send it
        /// as `Authorization: Bearer <key>` instead.
        api_key_param: String = "apiKey", flag "turn-provider-api-key-param",
            env "PLAZA_TURN_PROVIDER_API_KEY_PARAM", sample "key";
        /// How long fetched credentials are valid when the answer does not say (a `ttl`
        /// in seconds); they are fetched again when 80 % of it has passed.
        ttl: Duration = "1h", flag "turn-provider-ttl", env "PLAZA_TURN_PROVIDER_TTL", sample "10m";
        /// The longest one fetch may take.
        timeout: Duration = "5s", flag "turn-provider-timeout", env "PLAZA_TURN_PROVIDER_TIMEOUT",
            sample "2s";
        /// After a failed fetch, the first retry waits this long; each further failure
        /// doubles it, up to a minute (or the refresh period, if shorter).
        retry_interval: Duration = "2s", flag "turn-provider-retry-interval",
            env "PLAZA_TURN_PROVIDER_RETRY_INTERVAL", sample "500ms";
    }

    pub struct LimitsConfig in limits {
        /// Participants per room.
        max_participants_per_room: usize = "16",
            flag "max-participants-per-room", env "PLAZA_MAX_PARTICIPANTS_PER_ROOM", sample "8";
        /// Rooms per server.
        max_rooms: usize = "1000", flag "max-rooms", env "PLAZA_MAX_ROOMS", sample "10";
        /// Media tracks one participant may publish.
        max_tracks_per_participant: usize = "4",
            flag "max-tracks-per-participant", env "PLAZA_MAX_TRACKS_PER_PARTICIPANT", sample "2";
        /// Largest WebSocket frame accepted, in bytes; bigger ones close the socket with 1009.
        max_frame_bytes: usize = "65536",
            flag "max-frame-bytes", env "PLAZA_MAX_FRAME_BYTES", sample "131072";
        /// Largest chat message relayed, in bytes.
        max_chat_bytes: usize = "16384", flag "max-chat-bytes", env "PLAZA_MAX_CHAT_BYTES", sample "1024";
        /// Longest room name.
        max_room_name_len: usize = "64",
            flag "max-room-name-len", env "PLAZA_MAX_ROOM_NAME_LEN", sample "32";
        /// Longest display name, in characters.
        max_display_name_len: usize = "64",
            flag "max-display-name-len", env "PLAZA_MAX_DISPLAY_NAME_LEN", sample "32";
        /// Signalling messages a connection may send per second, on average.
        signalling_rate: f64 = "20", flag "signalling-rate", env "PLAZA_SIGNALLING_RATE", sample "2.5";
        /// Signalling messages a connection may send at once.
        signalling_burst: u32 = "50", flag "signalling-burst", env "PLAZA_SIGNALLING_BURST", sample "10";
        /// Chat messages a participant may send per second, on average.
        chat_rate: f64 = "5", flag "chat-rate", env "PLAZA_CHAT_RATE", sample "1.5";
        /// Chat messages a participant may send at once.
        chat_burst: u32 = "20", flag "chat-burst", env "PLAZA_CHAT_BURST", sample "5";
        /// Join attempts one IP address may make per minute.
        joins_per_ip_per_minute: u32 = "60",
            flag "joins-per-ip-per-minute", env "PLAZA_JOINS_PER_IP_PER_MINUTE", sample "600";
        /// Open WebSocket connections, in total; more are refused with HTTP 503.
        max_connections: usize = "5000",
            flag "max-connections", env "PLAZA_MAX_CONNECTIONS", sample "100";
        /// Open WebSocket connections from one client address; more are refused with
        /// HTTP 429. Many people behind one NAT share an address: keep it well above a
        /// room's size.
        max_connections_per_ip: usize = "100",
            flag "max-connections-per-ip", env "PLAZA_MAX_CONNECTIONS_PER_IP", sample "20";
    }

    /// Signed room tokens (see `plaza_protocol::auth`).
    pub struct AuthConfig in auth {
        /// HS256 secret room tokens are signed with; empty = rooms are open to anyone.
        /// Prefer the variable to the flag.
        secret: String = "", flag "auth-secret", env "PLAZA_AUTH_SECRET", sample "0123456789abcdef0123", secret;
        /// When set, a room token must name this audience in its `aud` claim (else
        /// `unauthorized`); unset: `aud` is not checked. Needs auth.secret.
        audience: Option<String> = "", flag "auth-audience", env "PLAZA_AUTH_AUDIENCE", sample "plaza.example.com";
        /// When set, a room token's `iss` claim must be this issuer (else
        /// `unauthorized`); unset: `iss` is not checked. Needs auth.secret.
        issuer: Option<String> = "", flag "auth-issuer", env "PLAZA_AUTH_ISSUER", sample "https://app.example.com";
    }

    /// The admin REST API (`/admin/...`).
    pub struct AdminConfig in admin {
        /// Key clients send in the X-Api-Key header; empty = the admin API is off. Prefer
        /// the variable to the flag.
        api_key: String = "", flag "admin-api-key", env "PLAZA_ADMIN_API_KEY", sample "key-0123456789abcdef", secret;
        /// How long a kicked participant may not rejoin the room, unless the kick
        /// request says (`?ban_seconds=N`); 0 = may rejoin at once.
        kick_ban: Duration = "10m", flag "kick-ban", env "PLAZA_KICK_BAN", sample "1h";
        /// How long a closed room refuses joins, unless the close request says
        /// (`?closed_for_seconds=N`); 0 = may be reopened at once.
        room_closed_for: Duration = "5m",
            flag "room-closed-for", env "PLAZA_ROOM_CLOSED_FOR", sample "1h";
    }

    pub struct LogConfig in log {
        /// A tracing filter, e.g. info or plaza=debug,webrtc=warn; empty = the default.
        level: String = DEFAULT_LOG_FILTER, flag "log-level", env "PLAZA_LOG", sample "plaza=debug";
        /// One JSON object per line instead of human-readable text.
        json: bool = "false", flag "log-json", env "PLAZA_LOG_JSON", sample "true";
    }
}

impl Config {
    /// Defaults < the file (`--config`, else `PLAZA_CONFIG`) < `PLAZA_*` < flags, then
    /// [`validate`](Self::validate).
    pub fn load(args: &ConfigArgs) -> Result<Self> {
        Self::load_from(
            &|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()),
            args,
        )
    }

    /// [`load`](Self::load) with the environment read through `env`.
    pub fn load_from(env: &dyn Fn(&str) -> Option<String>, args: &ConfigArgs) -> Result<Self> {
        let config = Self::layered(env, args)?;
        config.validate()?;
        Ok(config)
    }

    fn layered(env: &dyn Fn(&str) -> Option<String>, args: &ConfigArgs) -> Result<Self> {
        let file = args
            .config
            .clone()
            .or_else(|| env("PLAZA_CONFIG").map(PathBuf::from));
        let mut config = match file.as_deref() {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        for s in SETTINGS {
            if let Some(text) = env(s.env) {
                (s.set)(&mut config, &text)
                    .map_err(|e| Error::Config(format!("{}: {e}", s.env)))?;
            }
        }
        for (s, text) in &args.flags {
            (s.set)(&mut config, text).map_err(|e| Error::Config(format!("--{}: {e}", s.flag)))?;
        }
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// Rejects values that would only fail later, naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("{key}: {why}")));
        if self.shutdown_timeout < Duration::from_millis(500) {
            return bad("shutdown_timeout", "must be at least 500ms".into());
        }
        if self.media.keyframe_request_interval < Duration::from_millis(50) {
            return bad(
                "media.keyframe_request_interval",
                "must be at least 50ms (a keyframe takes longer than that to arrive)".into(),
            );
        }
        if self.media.keyframe_retry < self.media.keyframe_request_interval {
            return bad(
                "media.keyframe_retry",
                format!(
                    "must be at least media.keyframe_request_interval ({}): a retry cannot \
                     leave sooner than the cap allows",
                    humantime::format_duration(self.media.keyframe_request_interval)
                ),
            );
        }
        if self.heartbeat.join_timeout < Duration::from_millis(100) {
            return bad(
                "heartbeat.join_timeout",
                "must be at least 100ms (a join takes a round trip)".into(),
            );
        }
        for origin in &self.access.allowed_origins {
            let o = origin.trim();
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return bad(
                    "access.allowed_origins",
                    format!("{origin:?} is not an origin (http(s)://host[:port]) or *"),
                );
            }
        }
        for (key, d) in [
            ("admin.kick_ban", self.admin.kick_ban),
            ("admin.room_closed_for", self.admin.room_closed_for),
        ] {
            if d > crate::bans::MAX_BAN {
                return bad(
                    key,
                    format!(
                        "at most {}",
                        humantime::format_duration(crate::bans::MAX_BAN)
                    ),
                );
            }
        }
        if self.heartbeat.interval.is_zero() {
            return bad("heartbeat.interval", "must be more than 0".into());
        }
        if self.heartbeat.timeout <= self.heartbeat.interval {
            return bad(
                "heartbeat.timeout",
                format!(
                    "must be longer than heartbeat.interval ({})",
                    humantime::format_duration(self.heartbeat.interval)
                ),
            );
        }
        let ice = &self.ice;
        match (ice.udp_port, ice.udp_port_min, ice.udp_port_max) {
            (Some(0), _, _) => return bad("ice.udp_port", "must be 1-65535".into()),
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return bad(
                    "ice.udp_port",
                    "set either one UDP port (mux) or a port range (udp_port_min/max), not both"
                        .into(),
                )
            }
            (None, Some(min), Some(max)) if min == 0 || min > max => {
                return bad(
                    "ice.udp_port_min",
                    format!("range {min}-{max} is empty or starts at 0"),
                )
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                return bad(
                    "ice.udp_port_min",
                    "set both udp_port_min and udp_port_max".into(),
                )
            }
            _ => {}
        }
        // As webrtc-ice's mapper reads it: refused here rather than at the first call.
        if let Err(why) = crate::ice_addresses::nat::NatMapping::parse(&ice.nat_1to1_ips) {
            return bad(
                "ice.nat_1to1_ips",
                format!(
                    "{why}: give one public IP per address family (e.g. 203.0.113.7), or \
                     public/local pairs (203.0.113.7/10.0.0.5)"
                ),
            );
        }
        if ice.keepalive_interval.is_zero()
            || ice.disconnected_timeout <= ice.keepalive_interval
            || ice.failed_timeout < ice.disconnected_timeout
        {
            return bad(
                "ice.failed_timeout",
                "need keepalive_interval < disconnected_timeout <= failed_timeout".into(),
            );
        }
        for (i, s) in self.ice_servers.iter().enumerate() {
            if s.urls.is_empty() {
                return bad(&format!("ice_servers[{i}].urls"), "is empty".into());
            }
            for url in &s.urls {
                check_ice_url(url).or_else(|why| bad(&format!("ice_servers[{i}].urls"), why))?;
            }
        }
        if !self.turn.secret.is_empty() && self.turn.urls.is_empty() {
            return bad("turn.urls", "turn.secret is set but no TURN URL is".into());
        }
        if self.turn.secret.is_empty() && !self.turn.urls.is_empty() {
            return bad(
                "turn.secret",
                "turn.urls is set but turn.secret is empty, so no TURN credentials would be \
                 minted (for static credentials, list the server in ice_servers instead)"
                    .into(),
            );
        }
        for url in &self.turn.urls {
            check_ice_url(url).or_else(|why| bad("turn.urls", why))?;
            if !(url.starts_with("turn:") || url.starts_with("turns:")) {
                return bad("turn.urls", format!("{url:?} is not a turn: or turns: URL"));
            }
        }
        if self.turn.ttl.is_zero() {
            return bad("turn.ttl", "must be more than 0".into());
        }
        for (i, s) in self.ice.servers.iter().enumerate() {
            if s.urls.is_empty() {
                return bad(&format!("ice.servers[{i}].urls"), "is empty".into());
            }
            for url in &s.urls {
                check_ice_url(url).or_else(|why| bad(&format!("ice.servers[{i}].urls"), why))?;
            }
        }
        self.validate_turn_provider()?;
        let l = &self.limits;
        for (key, v) in [
            (
                "limits.max_participants_per_room",
                l.max_participants_per_room,
            ),
            ("limits.max_rooms", l.max_rooms),
            (
                "limits.max_tracks_per_participant",
                l.max_tracks_per_participant,
            ),
            ("limits.max_chat_bytes", l.max_chat_bytes),
            ("limits.max_room_name_len", l.max_room_name_len),
            ("limits.max_display_name_len", l.max_display_name_len),
            ("limits.max_connections", l.max_connections),
            ("limits.max_connections_per_ip", l.max_connections_per_ip),
        ] {
            if v == 0 {
                return bad(key, "must be more than 0".into());
            }
        }
        for (key, v) in [
            ("limits.signalling_rate", l.signalling_rate),
            ("limits.chat_rate", l.chat_rate),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(key, "must be a number more than 0".into());
            }
        }
        for (key, v) in [
            ("limits.signalling_burst", l.signalling_burst),
            ("limits.chat_burst", l.chat_burst),
            ("limits.joins_per_ip_per_minute", l.joins_per_ip_per_minute),
        ] {
            if v == 0 {
                return bad(key, "must be more than 0".into());
            }
        }
        if !self.auth.secret.is_empty() && self.auth.secret.len() < 16 {
            return bad("auth.secret", "use at least 16 characters".into());
        }
        for (key, v) in [
            ("auth.audience", &self.auth.audience),
            ("auth.issuer", &self.auth.issuer),
        ] {
            if v.is_some() && self.auth.secret.is_empty() {
                // Without a secret no token is read, so the check would silently not happen.
                return bad(
                    key,
                    "is set but auth.secret is empty, so no token is checked".into(),
                );
            }
        }
        if !self.admin.api_key.is_empty() && self.admin.api_key.len() < 16 {
            return bad("admin.api_key", "use at least 16 characters".into());
        }
        if l.max_frame_bytes < 1024 {
            return bad("limits.max_frame_bytes", "must be at least 1024".into());
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad(
                "log.level",
                format!("{:?} is not a log filter", self.log.level),
            );
        }
        Ok(())
    }
}

impl Config {
    fn validate_turn_provider(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("{key}: {why}")));
        let p = &self.turn_provider;
        if p.url.is_empty() {
            if !p.api_key.is_empty() {
                return bad(
                    "turn_provider.url",
                    "turn_provider.api_key is set but no provider URL is".into(),
                );
            }
            return Ok(());
        }
        if !(p.url.starts_with("https://") || p.url.starts_with("http://")) {
            // Never echo the URL: someone may have pasted the key into it.
            return bad(
                "turn_provider.url",
                "must start with https:// (or http:// for a local provider)".into(),
            );
        }
        if p.url.contains(['#', ' ']) {
            return bad("turn_provider.url", "must not contain '#' or spaces".into());
        }
        if p.api_key_param.contains(['&', '=', '?', '#', ' ']) {
            return bad(
                "turn_provider.api_key_param",
                "must be a plain query parameter name".into(),
            );
        }
        if p.ttl < Duration::from_secs(1) {
            return bad("turn_provider.ttl", "must be at least 1s".into());
        }
        if p.timeout.is_zero() {
            return bad("turn_provider.timeout", "must be more than 0".into());
        }
        if p.retry_interval < Duration::from_millis(10) {
            return bad(
                "turn_provider.retry_interval",
                "must be at least 10ms".into(),
            );
        }
        Ok(())
    }
}

fn check_ice_url(url: &str) -> std::result::Result<(), String> {
    const SCHEMES: [&str; 4] = ["stun:", "stuns:", "turn:", "turns:"];
    let Some(rest) = SCHEMES.iter().find_map(|s| url.strip_prefix(s)) else {
        return Err(format!(
            "{url:?} must start with stun:, stuns:, turn: or turns:"
        ));
    };
    // host[:port][?transport=udp|tcp]; browsers reject a URL without a host.
    let host = rest.split(['?', ':']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}
