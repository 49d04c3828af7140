//! Serves the built browser app (`web/dist`, produced by `npm run build` in `web/app`).
//! Release builds embed the files in the binary; debug builds read them from disk, so a rebuilt
//! front end shows up without recompiling the server.
//!
//! Unknown paths without a file extension get `index.html` (the app routes in the browser);
//! unknown `/api/...` paths get the JSON 404 of the error table.

use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "dist/"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>livecamp</title>\
<p>网页前端尚未构建。请在项目根目录运行 <code>make run</code>（或 <code>make web</code>）。</p>\
<p>The web app has not been built: run <code>make run</code> (or <code>make web</code>).</p>";

/// Fallback handler: static files, else the app shell.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || path == "/api" {
        return foundation::http::api_not_found().await.into_response();
    }
    let file = path.trim_start_matches('/');
    if !file.is_empty() {
        if let Some(asset) = Assets::get(file) {
            // Vite puts content-hashed files under assets/: they never change.
            let cache = if file.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            return (
                [
                    (header::CONTENT_TYPE, asset.metadata.mimetype().to_owned()),
                    (header::CACHE_CONTROL, cache.to_owned()),
                ],
                asset.data,
            )
                .into_response();
        }
        let last = file.rsplit('/').next().unwrap_or_default();
        if last.contains('.') {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        }
    }
    match Assets::get("index.html") {
        Some(index) => ([(header::CACHE_CONTROL, "no-cache")], Html(index.data)).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Html(NOT_BUILT)).into_response(),
    }
}
