//! The HTTP edge shared by every router: extractors, the identity routes, operational endpoints
//! (/healthz, /readyz, /metrics) and the layers every request passes through (body limit, panic
//! catching, request ids, tracing, metrics, JSON 404/405).

pub mod auth;
pub mod extract;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// OpenAPI description of the foundation's routes.
#[derive(OpenApi)]
#[openapi(
    paths(auth::login, auth::logout, auth::me, auth::change_password),
    components(schemas(crate::error::ErrorBody, crate::identity::Role))
)]
pub struct FoundationApi;

/// Identity routes, to be nested at the root.
pub fn identity_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/me/password", put(auth::change_password))
}

/// /healthz, /readyz and /metrics.
pub fn ops_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

/// Liveness says the process runs; readiness that the database answers. A disconnected Redis
/// bus makes the node "degraded" but still ready: it keeps serving its own clients.
async fn readyz(State(state): State<AppState>) -> Response {
    let db_ok = tokio::time::timeout(Duration::from_secs(2), state.db.ping())
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let bus = state.bus.health();
    let status = match (db_ok, bus.connected) {
        (false, _) => "unavailable",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let body = serde_json::json!({
        "status": status,
        "database": {"backend": state.db.backend().name(), "ok": db_ok},
        "bus": bus,
    });
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// The process-wide Prometheus recorder (installed once, shared by every app in a test process).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; the handle then renders our own
        // (empty) registry, which is harmless.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let bus = state.bus.health();
    metrics::gauge!("livecamp_bus_connected").set(if bus.connected { 1.0 } else { 0.0 });
    metrics::gauge!("livecamp_bus_published").set(bus.published as f64);
    metrics::gauge!("livecamp_bus_relay_failures").set(bus.relay_failures as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics_handle().render(),
    )
        .into_response()
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("path", path), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// JSON 404 for unknown API paths.
pub async fn api_not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ErrorCode::MethodNotAllowed.into()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(ErrorCode::Internal).into_response()
}

/// Wraps the assembled application in the layers every request passes through.
pub fn with_common_layers(router: Router<AppState>, state: AppState) -> Router {
    metrics_handle();
    let request_id = HeaderName::from_static("x-request-id");
    router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .route_layer(middleware::from_fn(record_metrics))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
