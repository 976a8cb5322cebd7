//! The HTTP side: `/ws` signalling, `/healthz`, `/metrics`, the web client at `/`, and
//! the whole server's lifecycle (`Plaza::run`: serve until `shutdown` resolves, then
//! tell every client, close every connection, stop within a bound).

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws;
use serde::Serialize;
use tracing::{debug, info, warn};

use plaza_protocol::auth::TokenVerifier;
use plaza_protocol::rate::PerIpLimiter;

use crate::admission::{check_origin, ConnectionSlots, Refused};
use crate::bans::Bans;
use crate::client_addr::TrustedProxies;
use crate::config::Config;
use crate::error::Result;
use crate::guard::gauge;
use crate::metrics::Metrics;
use crate::registry::{Registry, Shutdown};
use crate::rtc::{MediaPlane, MediaStats};
use crate::session::WsSocket;
use crate::state::AppState;
use crate::turn::provider::{ProviderHealth, TurnProvider};

/// A configured server, ready to `run`. Tests keep `registry()` and `media_stats()` to
/// check teardown from outside.
pub struct Plaza {
    state: Arc<AppState>,
}

impl Plaza {
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        let media = MediaPlane::new(&config.ice, config.media_threads)?;
        // What browsers will be offered, and a loud warning when none could reach us.
        crate::ice_addresses::announced_addresses(&config.ice, &crate::rtc::local_addresses())
            .log();
        let auth = &config.auth;
        let tokens = (!auth.secret.is_empty()).then(|| {
            Arc::new(
                TokenVerifier::new(&auth.secret)
                    .expecting(auth.audience.as_deref(), auth.issuer.as_deref()),
            )
        });
        if tokens.is_none() {
            warn!("no auth.secret: rooms are open to anyone who can reach this server");
        }
        let turn_provider = TurnProvider::new(&config.turn_provider);
        Ok(Self {
            state: Arc::new(AppState {
                turn_provider,
                join_limiter: PerIpLimiter::new(config.limits.joins_per_ip_per_minute),
                slots: ConnectionSlots::new(
                    config.limits.max_connections,
                    config.limits.max_connections_per_ip,
                ),
                proxies: TrustedProxies {
                    proxies: config.access.trusted_proxies.clone(),
                    header: config.access.forwarded_header,
                },
                bans: Bans::default(),
                config: Arc::new(config),
                registry: Registry::new(),
                media,
                tokens,
                metrics: Metrics::default(),
            }),
        })
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.state.registry)
    }

    pub fn media_stats(&self) -> Arc<MediaStats> {
        Arc::clone(&self.state.media.stats)
    }

    pub fn media(&self) -> Arc<MediaPlane> {
        Arc::clone(&self.state.media)
    }

    /// Serves on `listener` until `shutdown` resolves. Must run inside an actix system
    /// (`actix_web::rt::System`), as `main` and `plaza_tools::testing` do.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let state = Arc::clone(&self.state);
        let config = Arc::clone(&state.config);
        let addr = listener.local_addr()?;
        let web_root = config.web_root.clone();
        if !web_root.join("index.html").is_file() {
            warn!(web_root = %web_root.display(), "no index.html in the web root: the web client will not load");
        }
        // The provider's first fetch comes before the first client is served, so the
        // first `joined` has its credentials; a failure does not stop the server.
        let provider_task = match &state.turn_provider {
            Some(provider) => {
                let client = provider.client();
                let wait = provider.fetch_and_record(&client).await;
                Some(actix_web::rt::spawn(
                    Arc::clone(provider).keep_fresh(client, wait),
                ))
            }
            None => None,
        };
        let data = web::Data::from(Arc::clone(&state));
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/ws", web::get().to(ws_route))
                .route("/healthz", web::get().to(healthz))
                .route("/metrics", web::get().to(metrics))
                .configure(crate::admin::routes)
                .service(actix_files::Files::new("/", &web_root).index_file("index.html"))
        })
        // Signalling is small messages in quick succession (an answer, then candidates):
        // with Nagle on, one waits for the ACK of the one before, which the other side
        // delays up to 40 ms. Must be set before `listen`, which reads it.
        .tcp_nodelay(true)
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(1);
        if config.http_workers > 0 {
            server = server.workers(config.http_workers);
        }
        let server = server.run();
        let handle = server.handle();
        info!(%addr, "listening: http://{addr}/ (signalling at /ws)");

        tokio::pin!(shutdown);
        let server_task = actix_web::rt::spawn(server);
        shutdown.await;

        // The budget: most of it for clients to be told and to go, the rest for the
        // HTTP server and the media runtime to wind down.
        let started = Instant::now();
        let budget = config.shutdown_timeout;
        info!(
            ?budget,
            "shutting down: no new connections; telling every client"
        );
        handle.pause().await;
        for (_, connection) in state.registry.connections() {
            connection.session.do_send(Shutdown);
        }
        let deadline = started + budget.mul_f32(0.6);
        while !state.registry.is_empty() && Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        let left = state.registry.counts();
        if !state.registry.is_empty() {
            warn!(?left, "clients still connected at the shutdown deadline");
        }
        handle.stop(false).await;
        let _ = server_task.await;
        if let Some(task) = provider_task {
            task.abort();
        }
        let media = Arc::clone(&state.media);
        let grace = budget
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        // Dropping a runtime inside another runtime's context panics: do it on a thread.
        let _ = std::thread::spawn(move || media.shutdown(grace)).join();
        info!(took = ?started.elapsed(), "stopped");
        Ok(())
    }
}

/// Serves `config` on `listener` until `shutdown` resolves (inside an actix system).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    Plaza::new(config)?.run(listener, shutdown).await
}

/// The WebSocket upgrade, after the admission checks: the page's Origin (403), then a
/// connection slot in total (503) and for the client's address (429). A refusal is an
/// ordinary HTTP answer, so the browser's WebSocket fails at once and the reason is in
/// the response and in `/metrics`.
async fn ws_route(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let peer_addr = req.peer_addr();
    let client_ip = peer_addr.map(|peer| {
        let name = state.proxies.header.name();
        let lines = req.headers().get_all(name).map(|v| v.to_str().ok());
        state.proxies.client_ip(peer.ip(), lines)
    });
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Err(why) = check_origin(
        header(actix_web::http::header::ORIGIN),
        header(actix_web::http::header::HOST),
        &state.config.access.allowed_origins,
    ) {
        return Ok(refuse(&state, Refused::Origin, client_ip, why));
    }
    // A peer address is missing only on a Unix socket, which Plaza does not listen on.
    let client = client_ip.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED.into());
    let slot = match state.slots.take(client) {
        Ok(slot) => slot,
        Err(why @ Refused::AddressFull) => {
            let text = format!(
                "more than {} connections from this address; try again later",
                state.config.limits.max_connections_per_ip
            );
            return Ok(refuse(&state, why, client_ip, text));
        }
        Err(why) => {
            let text = format!(
                "the server has {} connections, its limit; try again later",
                state.config.limits.max_connections
            );
            return Ok(refuse(&state, why, client_ip, text));
        }
    };
    let socket = WsSocket::new(state.clone().into_inner(), peer_addr, client_ip, slot);
    ws::WsResponseBuilder::new(socket, &req, stream)
        .frame_size(state.config.limits.max_frame_bytes)
        .start()
}

fn refuse(
    state: &AppState,
    why: Refused,
    client: Option<std::net::IpAddr>,
    text: String,
) -> HttpResponse {
    state.metrics.count_refused(why);
    // A refused Origin is usually a deployment mistake worth seeing; caps are counted
    // in /metrics, and logging each refusal would let a flood flood the log too.
    if why == Refused::Origin {
        info!(client = ?client, "websocket refused: {text}");
    } else {
        debug!(client = ?client, reason = why.label(), "websocket refused: {text}");
    }
    let mut response = match why {
        Refused::Origin => HttpResponse::Forbidden(),
        Refused::ServerFull => HttpResponse::ServiceUnavailable(),
        Refused::AddressFull => HttpResponse::TooManyRequests(),
    };
    if why != Refused::Origin {
        response.insert_header(("Retry-After", "10"));
    }
    response
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    uptime_secs: u64,
    rooms: usize,
    room_actors: i64,
    participants: usize,
    connections: usize,
    tracks: i64,
    subscriptions: i64,
    peer_connections: i64,
    /// The TURN credentials provider, when one is configured. Its failing does not
    /// make the server unhealthy: clients keep the last good list (or direct paths).
    #[serde(skip_serializing_if = "Option::is_none")]
    turn_provider: Option<ProviderHealth>,
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let counts = state.registry.counts();
    let stats = &state.media.stats;
    HttpResponse::Ok().json(Health {
        status: "ok",
        uptime_secs: state.registry.uptime().as_secs(),
        rooms: counts.rooms,
        room_actors: state.registry.room_actors(),
        participants: counts.participants,
        connections: counts.connections,
        tracks: gauge(&stats.forwarding_tasks),
        subscriptions: gauge(&stats.subscriptions),
        peer_connections: gauge(&stats.peer_connections),
        turn_provider: state.turn_provider.as_ref().map(|p| p.health()),
    })
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut text = state.metrics.render(
        state.registry.counts(),
        state.registry.room_actors(),
        &state.media.stats,
    );
    if let Some(provider) = &state.turn_provider {
        provider.render_metrics(&mut text);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}
