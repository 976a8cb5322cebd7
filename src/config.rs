//! Configuration: one struct, layered as defaults < TOML file < `PLAZA_*` environment
//! < command-line flags. `config.example.toml` documents every key; `plaza --help`
//! lists the flags (clap reads each flag's environment variable itself, so "env below
//! flag" comes for free and the file is applied underneath both).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::protocol::IceServer;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP + WebSocket listen address.
    pub listen: SocketAddr,
    /// Folder served at `/` (the web client).
    pub web_root: PathBuf,
    /// actix-web worker threads (signalling); 0 = one per core.
    pub http_workers: usize,
    /// Threads of the media runtime (RTP forwarding, ICE, DTLS); 0 = one per core.
    pub media_threads: usize,
    /// On SIGTERM/SIGINT, the longest the server takes to tell clients and stop.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub heartbeat: HeartbeatConfig,
    pub media: MediaConfig,
    pub ice: IceConfig,
    /// STUN/TURN servers handed to clients in `joined`.
    pub ice_servers: Vec<IceServer>,
    pub turn: TurnConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
}

/// Signed room tokens (see `crate::auth`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret room tokens are signed with. Empty = rooms are open to anyone.
    pub secret: String,
}

/// The admin REST API (`/admin/...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Key clients send in the `X-Api-Key` header. Empty = the admin API is off.
    pub api_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// Forwarding policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// At most one keyframe request (PLI) per published track per this interval,
    /// however many subscribers ask. Shorter: subscribers joining together see video
    /// sooner; longer: publishers spend fewer bits on keyframes.
    #[serde(with = "humantime_serde")]
    pub keyframe_request_interval: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            keyframe_request_interval: crate::rtc::up_track::DEFAULT_KEYFRAME_REQUEST_INTERVAL,
        }
    }
}

/// Where the server's own ICE candidates come from, and how fast a dead connection is
/// noticed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IceConfig {
    /// Gather only on these local IPs (empty = all non-loopback addresses). Listing a
    /// loopback address turns loopback candidates on (tests, single-host setups).
    pub ips: Vec<IpAddr>,
    /// Gather only on these network interfaces (empty = all).
    pub interfaces: Vec<String>,
    /// Public addresses to announce instead of the host addresses (1:1 NAT, Docker,
    /// cloud VMs). One per local address, in the same order, or a single one.
    pub nat_1to1_ips: Vec<String>,
    /// One UDP port for every peer connection (UDP mux). Easiest to open in firewalls
    /// and Docker. Excludes `udp_port_min/max`.
    pub udp_port: Option<u16>,
    /// Ephemeral UDP port range, one port per peer connection per local address.
    pub udp_port_min: Option<u16>,
    pub udp_port_max: Option<u16>,
    /// No traffic from a client for this long: its connection is "disconnected".
    #[serde(with = "humantime_serde")]
    pub disconnected_timeout: Duration,
    /// Still nothing after this long: "failed", and the participant is dropped.
    #[serde(with = "humantime_serde")]
    pub failed_timeout: Duration,
    /// Keep-alive checks on an idle connection.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
}

/// TURN REST credentials (coturn `use-auth-secret`): the server mints a short-lived
/// username/password per participant at join, so no long-lived secret reaches a browser.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// TURN URLs the minted credentials are for, e.g. `turn:turn.example.com:3478?transport=udp`.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`. Empty = no TURN REST credentials.
    pub secret: String,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_participants_per_room: usize,
    pub max_rooms: usize,
    pub max_tracks_per_participant: usize,
    /// Largest WebSocket frame accepted; bigger ones close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Largest chat message relayed.
    pub max_chat_bytes: usize,
    pub max_room_name_len: usize,
    pub max_display_name_len: usize,
    /// Signalling messages a connection may send per second on average...
    pub signalling_rate: f64,
    /// ...and at once.
    pub signalling_burst: u32,
    /// Chat messages a participant may send per second on average, and at once.
    pub chat_rate: f64,
    pub chat_burst: u32,
    /// `join` attempts one IP address may make per minute.
    pub joins_per_ip_per_minute: u32,
}

/// Plaza at info; webrtc-rs only at error, because it logs routine teardown (closed
/// sockets, closed agents) as warnings. Lower it to `warn` when debugging ICE.
pub const DEFAULT_LOG_FILTER: &str = "info,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_sctp=error,webrtc_srtp=error,webrtc_mdns=error";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `plaza=debug,webrtc=warn`.
    pub level: String,
    /// One JSON object per line instead of human-readable text.
    pub json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            web_root: PathBuf::from("web"),
            http_workers: 0,
            media_threads: 0,
            shutdown_timeout: Duration::from_secs(5),
            heartbeat: HeartbeatConfig::default(),
            media: MediaConfig::default(),
            ice: IceConfig::default(),
            ice_servers: Vec::new(),
            turn: TurnConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            ips: Vec::new(),
            interfaces: Vec::new(),
            nat_1to1_ips: Vec::new(),
            udp_port: None,
            udp_port_min: None,
            udp_port_max: None,
            disconnected_timeout: Duration::from_secs(5),
            failed_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(2),
        }
    }
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: String::new(),
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_participants_per_room: 16,
            max_rooms: 1000,
            max_tracks_per_participant: 4,
            max_frame_bytes: 64 * 1024,
            max_chat_bytes: 16 * 1024,
            max_room_name_len: 64,
            max_display_name_len: 64,
            signalling_rate: 20.0,
            signalling_burst: 50,
            chat_rate: 5.0,
            chat_burst: 20,
            joins_per_ip_per_minute: 60,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: DEFAULT_LOG_FILTER.into(),
            json: false,
        }
    }
}

/// Command-line flags of `plaza` (and `plaza serve`). Every flag is optional and, when
/// given (on the command line or through its `PLAZA_*` variable), overrides the file.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// TOML configuration file (see config.example.toml).
    #[arg(long, env = "PLAZA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP/WebSocket listen address [default: 0.0.0.0:8080]
    #[arg(long, env = "PLAZA_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Folder served at / [default: web]
    #[arg(long, env = "PLAZA_WEB_ROOT", value_name = "DIR")]
    pub web_root: Option<PathBuf>,
    /// actix-web worker threads, 0 = one per core [default: 0]
    #[arg(long, env = "PLAZA_HTTP_WORKERS", value_name = "N")]
    pub http_workers: Option<usize>,
    /// Media runtime threads, 0 = one per core [default: 0]
    #[arg(long, env = "PLAZA_MEDIA_THREADS", value_name = "N")]
    pub media_threads: Option<usize>,
    /// Longest graceful shutdown on SIGTERM/SIGINT [default: 5s]
    #[arg(long, env = "PLAZA_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// WebSocket ping interval [default: 5s]
    #[arg(long, env = "PLAZA_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Drop a connection silent for this long [default: 15s]
    #[arg(long, env = "PLAZA_HEARTBEAT_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub heartbeat_timeout: Option<Duration>,
    /// At most one keyframe request per published track per this interval [default: 1s]
    #[arg(long, env = "PLAZA_KEYFRAME_REQUEST_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keyframe_request_interval: Option<Duration>,
    /// Gather ICE candidates only on these IPs (repeat or comma-separate)
    #[arg(
        long = "ice-ip",
        env = "PLAZA_ICE_IPS",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub ice_ips: Option<Vec<IpAddr>>,
    /// Gather ICE candidates only on these interfaces (repeat or comma-separate)
    #[arg(
        long = "ice-interface",
        env = "PLAZA_ICE_INTERFACES",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub ice_interfaces: Option<Vec<String>>,
    /// Public IP(s) to announce in candidates (1:1 NAT)
    #[arg(
        long = "nat-1to1-ip",
        env = "PLAZA_NAT_1TO1_IPS",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub nat_1to1_ips: Option<Vec<String>>,
    /// One UDP port for all peer connections (UDP mux)
    #[arg(long, env = "PLAZA_UDP_PORT", value_name = "PORT")]
    pub udp_port: Option<u16>,
    /// Lowest UDP port for per-connection sockets
    #[arg(long, env = "PLAZA_UDP_PORT_MIN", value_name = "PORT")]
    pub udp_port_min: Option<u16>,
    /// Highest UDP port for per-connection sockets
    #[arg(long, env = "PLAZA_UDP_PORT_MAX", value_name = "PORT")]
    pub udp_port_max: Option<u16>,
    /// A client's connection is disconnected after this long without traffic [default: 5s]
    #[arg(long, env = "PLAZA_ICE_DISCONNECTED_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ice_disconnected_timeout: Option<Duration>,
    /// ... and failed (participant dropped) after this long [default: 15s]
    #[arg(long, env = "PLAZA_ICE_FAILED_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ice_failed_timeout: Option<Duration>,
    /// ICE keep-alive interval on idle connections [default: 2s]
    #[arg(long, env = "PLAZA_ICE_KEEPALIVE_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ice_keepalive_interval: Option<Duration>,
    /// STUN/TURN servers for clients, as JSON: [{"urls":["stun:host:3478"]}, ...]
    #[arg(long, env = "PLAZA_ICE_SERVERS", value_name = "JSON", value_parser = parse_ice_servers)]
    pub ice_servers: Option<Vec<IceServer>>,
    /// TURN URLs for REST credentials (repeat or comma-separate)
    #[arg(
        long = "turn-url",
        env = "PLAZA_TURN_URLS",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub turn_urls: Option<Vec<String>>,
    /// TURN shared secret (coturn static-auth-secret); prefer the env variable
    #[arg(
        long,
        env = "PLAZA_TURN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// Lifetime of minted TURN credentials [default: 24h]
    #[arg(long, env = "PLAZA_TURN_TTL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub turn_ttl: Option<Duration>,
    /// Participants per room [default: 16]
    #[arg(long, env = "PLAZA_MAX_PARTICIPANTS_PER_ROOM", value_name = "N")]
    pub max_participants_per_room: Option<usize>,
    /// Rooms per server [default: 1000]
    #[arg(long, env = "PLAZA_MAX_ROOMS", value_name = "N")]
    pub max_rooms: Option<usize>,
    /// Media tracks one participant may publish [default: 4]
    #[arg(long, env = "PLAZA_MAX_TRACKS_PER_PARTICIPANT", value_name = "N")]
    pub max_tracks_per_participant: Option<usize>,
    /// Largest WebSocket frame, bytes [default: 65536]
    #[arg(long, env = "PLAZA_MAX_FRAME_BYTES", value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Largest chat message, bytes [default: 16384]
    #[arg(long, env = "PLAZA_MAX_CHAT_BYTES", value_name = "BYTES")]
    pub max_chat_bytes: Option<usize>,
    /// Longest room name [default: 64]
    #[arg(long, env = "PLAZA_MAX_ROOM_NAME_LEN", value_name = "N")]
    pub max_room_name_len: Option<usize>,
    /// Longest display name, in characters [default: 64]
    #[arg(long, env = "PLAZA_MAX_DISPLAY_NAME_LEN", value_name = "N")]
    pub max_display_name_len: Option<usize>,
    /// Signalling messages per second per connection [default: 20]
    #[arg(long, env = "PLAZA_SIGNALLING_RATE", value_name = "N")]
    pub signalling_rate: Option<f64>,
    /// Signalling messages a connection may send at once [default: 50]
    #[arg(long, env = "PLAZA_SIGNALLING_BURST", value_name = "N")]
    pub signalling_burst: Option<u32>,
    /// Chat messages per second per participant [default: 5]
    #[arg(long, env = "PLAZA_CHAT_RATE", value_name = "N")]
    pub chat_rate: Option<f64>,
    /// Chat messages a participant may send at once [default: 20]
    #[arg(long, env = "PLAZA_CHAT_BURST", value_name = "N")]
    pub chat_burst: Option<u32>,
    /// Join attempts per IP address per minute [default: 60]
    #[arg(long, env = "PLAZA_JOINS_PER_IP_PER_MINUTE", value_name = "N")]
    pub joins_per_ip_per_minute: Option<u32>,
    /// Secret for signed room tokens (HS256); empty = open rooms. Prefer the env variable
    #[arg(
        long,
        env = "PLAZA_AUTH_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub auth_secret: Option<String>,
    /// Key for the admin API (X-Api-Key header); empty = admin API off. Prefer the env variable
    #[arg(
        long,
        env = "PLAZA_ADMIN_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub admin_api_key: Option<String>,
    /// Log filter, e.g. info or plaza=debug [default: info, webrtc-rs at error]
    #[arg(long, env = "PLAZA_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log one JSON object per line
    #[arg(long, env = "PLAZA_LOG_JSON")]
    pub log_json: Option<bool>,
}

impl Config {
    /// Defaults, then the file named by `--config`, then every flag/variable given.
    pub fn load(args: &ConfigArgs) -> Result<Self> {
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
                Self::from_toml(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => Self::default(),
        };
        config.apply(args);
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    fn apply(&mut self, a: &ConfigArgs) {
        fn set<T: Clone>(field: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *field = v.clone();
            }
        }
        set(&mut self.listen, &a.listen);
        set(&mut self.web_root, &a.web_root);
        set(&mut self.http_workers, &a.http_workers);
        set(&mut self.media_threads, &a.media_threads);
        set(&mut self.shutdown_timeout, &a.shutdown_timeout);
        set(&mut self.heartbeat.interval, &a.heartbeat_interval);
        set(&mut self.heartbeat.timeout, &a.heartbeat_timeout);
        set(
            &mut self.media.keyframe_request_interval,
            &a.keyframe_request_interval,
        );
        set(&mut self.ice.ips, &a.ice_ips);
        set(&mut self.ice.interfaces, &a.ice_interfaces);
        set(&mut self.ice.nat_1to1_ips, &a.nat_1to1_ips);
        if a.udp_port.is_some() {
            self.ice.udp_port = a.udp_port;
        }
        if a.udp_port_min.is_some() {
            self.ice.udp_port_min = a.udp_port_min;
        }
        if a.udp_port_max.is_some() {
            self.ice.udp_port_max = a.udp_port_max;
        }
        set(
            &mut self.ice.disconnected_timeout,
            &a.ice_disconnected_timeout,
        );
        set(&mut self.ice.failed_timeout, &a.ice_failed_timeout);
        set(&mut self.ice.keepalive_interval, &a.ice_keepalive_interval);
        set(&mut self.ice_servers, &a.ice_servers);
        set(&mut self.turn.urls, &a.turn_urls);
        set(&mut self.turn.secret, &a.turn_secret);
        set(&mut self.turn.ttl, &a.turn_ttl);
        set(
            &mut self.limits.max_participants_per_room,
            &a.max_participants_per_room,
        );
        set(&mut self.limits.max_rooms, &a.max_rooms);
        set(
            &mut self.limits.max_tracks_per_participant,
            &a.max_tracks_per_participant,
        );
        set(&mut self.limits.max_frame_bytes, &a.max_frame_bytes);
        set(&mut self.limits.max_chat_bytes, &a.max_chat_bytes);
        set(&mut self.limits.max_room_name_len, &a.max_room_name_len);
        set(
            &mut self.limits.max_display_name_len,
            &a.max_display_name_len,
        );
        set(&mut self.limits.signalling_rate, &a.signalling_rate);
        set(&mut self.limits.signalling_burst, &a.signalling_burst);
        set(&mut self.limits.chat_rate, &a.chat_rate);
        set(&mut self.limits.chat_burst, &a.chat_burst);
        set(
            &mut self.limits.joins_per_ip_per_minute,
            &a.joins_per_ip_per_minute,
        );
        set(&mut self.auth.secret, &a.auth_secret);
        set(&mut self.admin.api_key, &a.admin_api_key);
        set(&mut self.log.level, &a.log_level);
        set(&mut self.log.json, &a.log_json);
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
        for mapping in &ice.nat_1to1_ips {
            // "public" or "public/local" (which local address it stands for).
            let ok = mapping.split('/').count() <= 2
                && mapping.split('/').all(|ip| ip.parse::<IpAddr>().is_ok());
            if !ok {
                return bad(
                    "ice.nat_1to1_ips",
                    format!("{mapping:?} is not an IP address (or public/local pair)"),
                );
            }
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

fn parse_ice_servers(json: &str) -> std::result::Result<Vec<IceServer>, String> {
    serde_json::from_str(json).map_err(|e| format!("expected [{{\"urls\": [...]}}]: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.heartbeat.interval, Duration::from_secs(5));
    }

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = include_str!("../config.example.toml");
        let c = Config::from_toml(text).unwrap();
        c.validate().unwrap();
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.heartbeat.timeout, d.heartbeat.timeout);
        assert_eq!(
            c.limits.max_participants_per_room,
            d.limits.max_participants_per_room
        );
        assert_eq!(c.limits.max_chat_bytes, d.limits.max_chat_bytes);
    }

    #[test]
    fn flags_override_file() {
        let mut c = Config::from_toml(
            "listen = \"127.0.0.1:9000\"\n[heartbeat]\ninterval = \"1s\"\ntimeout = \"3s\"",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        c.apply(&ConfigArgs {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..Default::default()
        });
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.heartbeat.interval, Duration::from_secs(1));
    }

    /// The rate limits, the auth secret and the admin key were parsed but never applied,
    /// so `PLAZA_AUTH_SECRET` left rooms open: every one of them must take effect.
    #[test]
    fn limit_auth_and_admin_flags_take_effect() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: ConfigArgs,
        }
        let cli = Cli::parse_from([
            "plaza",
            "--signalling-rate",
            "1.5",
            "--signalling-burst",
            "2",
            "--chat-rate",
            "3.5",
            "--chat-burst",
            "4",
            "--joins-per-ip-per-minute",
            "5",
            "--auth-secret",
            "0123456789abcdef0123",
            "--admin-api-key",
            "key-0123456789",
        ]);
        let mut c = Config::default();
        c.apply(&cli.config);
        assert_eq!(c.limits.signalling_rate, 1.5);
        assert_eq!(c.limits.signalling_burst, 2);
        assert_eq!(c.limits.chat_rate, 3.5);
        assert_eq!(c.limits.chat_burst, 4);
        assert_eq!(c.limits.joins_per_ip_per_minute, 5);
        assert_eq!(c.auth.secret, "0123456789abcdef0123");
        assert_eq!(c.admin.api_key, "key-0123456789");
    }

    /// `plaza --help` and config.example.toml agree: every key the example documents
    /// (commented-out ones included) has a flag, and every flag a documented key.
    #[test]
    fn every_key_has_a_flag_and_every_flag_a_key() {
        use clap::{Args, Command};
        let flag_for = |key: &str| -> String {
            let special = [
                ("ice.ips", "ice-ip"),
                ("ice.interfaces", "ice-interface"),
                ("ice.nat_1to1_ips", "nat-1to1-ip"),
                ("turn.urls", "turn-url"),
                ("log.level", "log-level"),
                ("log.json", "log-json"),
            ];
            if let Some((_, f)) = special.iter().find(|(k, _)| *k == key) {
                return f.to_string();
            }
            let (section, name) = key.split_once('.').unwrap_or(("", key));
            let name = match section {
                "heartbeat" | "turn" | "auth" | "admin" => format!("{section}_{name}"),
                "ice" if name.ends_with("timeout") || name.ends_with("interval") => {
                    format!("ice_{name}")
                }
                _ => name.to_string(),
            };
            name.replace('_', "-")
        };
        let mut section = String::new();
        let mut documented = Vec::new();
        for line in include_str!("../config.example.toml").lines() {
            let line = line.trim();
            let header = line.trim_start_matches('#').trim();
            if let Some(s) = header.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim_matches(['[', ']']).to_string();
                if section == "ice_servers" {
                    documented.push("ice_servers".to_string());
                }
                continue;
            }
            let body = line.trim_start_matches('#').trim();
            let Some((key, _)) = body.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            {
                continue;
            }
            if section.is_empty() || section == "ice_servers" {
                if ["urls", "username", "credential"].contains(&key) {
                    continue;
                }
                documented.push(key.to_string());
            } else {
                documented.push(format!("{section}.{key}"));
            }
        }
        documented.sort();
        documented.dedup();
        let cmd = ConfigArgs::augment_args(Command::new("plaza"));
        let flags: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .filter(|f| f != "config")
            .collect();
        let wanted: Vec<String> = documented.iter().map(|k| flag_for(k)).collect();
        for (key, flag) in documented.iter().zip(&wanted) {
            assert!(flags.contains(flag), "key {key} has no flag --{flag}");
        }
        for flag in &flags {
            assert!(
                wanted.contains(flag),
                "flag --{flag} is not documented in config.example.toml"
            );
        }
        assert!(documented.len() >= 25, "parsed {documented:?}");
    }

    #[test]
    fn errors_name_the_key() {
        let err = |toml: &str| {
            Config::from_toml(toml)
                .and_then(|c| c.validate())
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("[heartbeat]\ninterval = \"10s\"\ntimeout = \"5s\"").contains("heartbeat.timeout")
        );
        assert!(
            err("[ice]\nudp_port = 5000\nudp_port_min = 10\nudp_port_max = 20")
                .contains("ice.udp_port")
        );
        assert!(err("[ice]\nnat_1to1_ips = [\"nope\"]").contains("ice.nat_1to1_ips"));
        assert!(err("[[ice_servers]]\nurls = [\"http://x\"]").contains("ice_servers[0].urls"));
        assert!(err("[limits]\nmax_rooms = 0").contains("limits.max_rooms"));
        assert!(err("lisen = \"x\"").contains("lisen"));
        assert!(err("[turn]\nsecret = \"s\"").contains("turn.urls"));
        assert!(err("[turn]\nurls = [\"turn:t.example:3478\"]").contains("turn.secret"));
        assert!(err("[[ice_servers]]\nurls = [\"turn::3478\"]").contains("no host"));
    }
}
