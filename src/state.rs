//! What every HTTP handler and every session shares: the configuration, the registry,
//! the media plane, the token verifier, the join limiter and the counters. Its own
//! module, so that the session and the admin API can use it without importing the
//! HTTP server that builds it.

use std::sync::Arc;

use plaza_protocol::auth::TokenVerifier;
use plaza_protocol::rate::PerIpLimiter;

use crate::admission::ConnectionSlots;
use crate::bans::Bans;
use crate::client_addr::TrustedProxies;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::rtc::MediaPlane;
use crate::turn::provider::TurnProvider;

/// What every handler and actor shares.
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub media: Arc<MediaPlane>,
    /// Verifies room tokens; `None` when rooms are open (no `auth.secret`).
    pub tokens: Option<Arc<TokenVerifier>>,
    pub join_limiter: PerIpLimiter,
    pub metrics: Metrics,
    /// TURN credentials from a provider's API, when `turn_provider.url` is set.
    pub turn_provider: Option<Arc<TurnProvider>>,
    /// Open WebSocket connections against their caps.
    pub slots: Arc<ConnectionSlots>,
    /// Whose forwarded-for header is believed.
    pub proxies: TrustedProxies,
    /// Kicked participants and closed rooms, until their time is up.
    pub bans: Bans,
}
