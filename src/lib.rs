//! The `livecamp` application: assembles every crate's router into one axum app and runs it.
//! `main.rs` is only the command line around this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::routing::get;
use foundation::AppState;
use foundation::config::{Config, LogFormat};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

mod commerce_rooms;
mod commerce_videos;
mod media_access;

/// The long-running parts of a node that routers share.
#[derive(Debug, Clone)]
pub struct Services {
    pub hub: Arc<signaling::Hub>,
    pub media: media::Media,
    pub replays: media::Replays,
    pub commerce: commerce::Commerce,
}

impl Services {
    pub async fn start(state: &AppState) -> anyhow::Result<Self> {
        let hub = signaling::Hub::start(state.clone()).await?;
        let (bind, public_ip) = state.config.media_address()?;
        let media = media::Media::start(media::MediaConfig {
            bind,
            public_ip,
            connect_timeout: Duration::from_secs(30),
            recordings_dir: state.config.data_dir.join("recordings"),
        })
        .await?;
        tokio::spawn(media_access::announce(media.events(), hub.clone()));
        tokio::spawn(media_access::end_stage_media(hub.clone(), media.clone()));
        let replays = media::Replays::start(state, media.events()).await?;
        let commerce = commerce::Commerce::start(
            state,
            Arc::new(commerce_rooms::HubRooms(hub.clone())),
            Arc::new(commerce_videos::FfmpegTranscoder),
        )
        .await?;
        Ok(Self {
            hub,
            media,
            replays,
            commerce,
        })
    }
}

/// The whole HTTP surface of one node.
pub fn app(state: AppState, services: &Services) -> Router {
    let routes = Router::new()
        .merge(foundation::http::identity_router())
        .merge(foundation::http::ops_router())
        .merge(admin_api::router())
        .merge(signaling::router(services.hub.clone()))
        .merge(commerce::router(services.commerce.clone()))
        .merge(media::router(
            services.media.clone(),
            services.replays.clone(),
            Arc::new(media_access::HubAccess(services.hub.clone())),
            media::http::IceServers {
                urls: state.config.turn_urls.clone(),
                username: state.config.turn_username.clone(),
                credential: state.config.turn_password.clone(),
            },
        ))
        .route("/api/openapi.json", get(|| async { Json(openapi()) }))
        .fallback(web::serve);
    foundation::http::with_common_layers(routes, state)
}

/// The OpenAPI document of every crate's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = foundation::http::FoundationApi::openapi();
    doc.merge(admin_api::AdminApi::openapi());
    doc.merge(signaling::SignalingApi::openapi());
    doc.merge(commerce::CommerceApi::openapi());
    doc.info.title = "livecamp API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "马兰花网络创业培训教学辅助平台 livecamp. Errors are JSON {code, message}. \
         Authenticate with `Authorization: Bearer <token>` from /api/v1/auth/login, or the session \
         cookie plus the `X-CSRF-Token` header on unsafe methods."
            .into(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
            foundation::http::extract::SESSION_COOKIE,
        ))),
    );
    doc
}

/// Installs the global tracing subscriber (text or JSON lines).
pub fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    // The DTLS library warns about every TLS extension a browser offers that it does not know
    // (one line per handshake); a directive for it in `log_level` still wins.
    let directives = format!("rtc_dtls=error,{}", config.log_level);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second initialisation (tests) is harmless; ignore it.
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Serves until `shutdown` completes, then lets in-flight requests finish for up to the
/// configured grace period.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(state.config.shutdown_grace_seconds);
    let db = state.db.clone();
    let services = Services::start(&state).await?;
    let hub = services.hub.clone();
    let commerce = services.commerce.clone();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        app(state, &services).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        // Buyer bots leave first (their crowds resume at the next start), then WebSockets, which
        // would hold the shutdown open, are told to reconnect elsewhere, and the rooms save
        // their counters.
        commerce.shutdown(Duration::from_secs(2)).await;
        hub.shutdown(Duration::from_secs(2)).await;
        let _ = stopped_tx.send(());
    });
    let server = tokio::spawn(async move { server.await });
    // Once shutdown starts, wait at most `grace` for connections to drain.
    let result = tokio::select! {
        r = server => r.map_err(|e| anyhow::anyhow!("server task failed: {e}"))?.map_err(anyhow::Error::from),
        _ = async { let _ = stopped_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over; closing remaining connections");
            Ok(())
        }
    };
    db.close().await;
    result
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Pending connections the kernel may queue before `accept` (capped by `net.core.somaxconn`).
/// Tokio's default is 1,024: when every viewer of a big room reconnects at once, a short queue
/// overflows and the dropped SYNs are retried only after a second.
const LISTEN_BACKLOG: u32 = 8192;

/// A listening socket on `listen` (`host:port`), with a backlog sized for reconnect storms.
pub async fn bind(listen: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // A restarted server must not wait for the old connections' TIME_WAIT to end.
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}
