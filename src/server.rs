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
use tracing::{info, warn};

use plaza_protocol::auth::TokenVerifier;
use plaza_protocol::rate::PerIpLimiter;

use crate::config::Config;
use crate::error::Result;
use crate::guard::gauge;
use crate::metrics::Metrics;
use crate::registry::{Registry, Shutdown};
use crate::rtc::{MediaPlane, MediaStats};
use crate::session::WsSocket;
use crate::state::AppState;

/// A configured server, ready to `run`. Tests keep `registry()` and `media_stats()` to
/// check teardown from outside.
pub struct Plaza {
    state: Arc<AppState>,
}

impl Plaza {
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        let media = MediaPlane::new(&config.ice, config.media_threads)?;
        let tokens = (!config.auth.secret.is_empty())
            .then(|| Arc::new(TokenVerifier::new(&config.auth.secret)));
        if tokens.is_none() {
            warn!("no auth.secret: rooms are open to anyone who can reach this server");
        }
        Ok(Self {
            state: Arc::new(AppState {
                join_limiter: PerIpLimiter::new(config.limits.joins_per_ip_per_minute),
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

async fn ws_route(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let socket = WsSocket::new(state.clone().into_inner(), req.peer_addr());
    ws::WsResponseBuilder::new(socket, &req, stream)
        .frame_size(state.config.limits.max_frame_bytes)
        .start()
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
    })
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let text = state.metrics.render(
        state.registry.counts(),
        state.registry.room_actors(),
        &state.media.stats,
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}
