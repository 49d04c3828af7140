//! WHIP (RFC 9725) and WHEP: `POST /whip/{room}` publishes, `POST /whep/{room}` plays; the body
//! is the SDP offer (`application/sdp`), the answer comes back with 201 and the session's
//! `Location`; `DELETE` on that location ends the session. ICE is not trickled: the answer
//! carries the one candidate there is (the shared UDP port), and `PATCH` answers 405 as the
//! WHIP specification asks of servers without trickle. TURN servers, when configured, are
//! advertised in `Link` headers (`rel="ice-server"`), which OBS and browsers' WHIP clients read.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use foundation::http::extract::{ApiPath, ApiQuery, CurrentUser};
use foundation::{ApiError, AppState, ErrorCode};
use serde::Deserialize;

use crate::access::{Intent, RoomAccess};
use crate::endpoint::{Media, SessionKind};
use crate::replays::Replays;

/// Largest SDP offer accepted (browsers send a few KB; simulcast offers stay well below this).
const MAX_OFFER_BYTES: usize = 64 * 1024;

/// TURN servers handed to clients.
#[derive(Debug, Clone, Default)]
pub struct IceServers {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl IceServers {
    /// One `Link` header value per server (RFC 9725 §4.6).
    fn link_headers(&self) -> Vec<HeaderValue> {
        self.urls
            .iter()
            .filter_map(|url| {
                let mut value = format!("<{url}>; rel=\"ice-server\"");
                if let (Some(user), Some(credential)) = (&self.username, &self.credential) {
                    value.push_str(&format!(
                        "; username=\"{user}\"; credential=\"{credential}\"; credential-type=\"password\""
                    ));
                }
                HeaderValue::from_str(&value).ok()
            })
            .collect()
    }
}

#[derive(Clone)]
struct MediaRoutes {
    media: Media,
    replays: Replays,
    access: Arc<dyn RoomAccess>,
    ice: IceServers,
}

/// `POST /whip/{room}?record=true`: record this session (live classes always are).
#[derive(Debug, Default, Deserialize)]
struct WhipQuery {
    record: Option<bool>,
}

/// The WHIP/WHEP routes, and `GET /api/v1/media/stats` for administrators.
pub fn router(
    media: Media,
    replays: Replays,
    access: Arc<dyn RoomAccess>,
    ice: IceServers,
) -> Router<AppState> {
    Router::new()
        .route("/whip/{room}", post(whip))
        .route("/whep/{room}", post(whep))
        .route("/whip/{room}/{session}", delete(end_whip).patch(no_trickle))
        .route("/whep/{room}/{session}", delete(end_whep).patch(no_trickle))
        .route("/api/v1/media/stats", axum::routing::get(stats))
        .merge(crate::replays::router(replays.clone(), access.clone()))
        .layer(Extension(MediaRoutes {
            media,
            replays,
            access,
            ice,
        }))
}

fn check_sdp_body(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    let is_sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        });
    if !is_sdp {
        return Err(ApiError::with_message(
            ErrorCode::UnsupportedMediaType,
            "请求内容类型须为 application/sdp",
        ));
    }
    if body.len() > MAX_OFFER_BYTES {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::with_message(ErrorCode::InvalidSdp, "SDP 不是有效的 UTF-8 文本"))?;
    if !text.trim_start().starts_with("v=0") {
        return Err(ApiError::with_message(
            ErrorCode::InvalidSdp,
            "SDP 无效：应以 v=0 开头",
        ));
    }
    Ok(text.to_owned())
}

async fn open(
    routes: MediaRoutes,
    kind: SessionKind,
    principal: foundation::identity::Principal,
    room: i64,
    record: bool,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let offer = check_sdp_body(&headers, &body)?;
    let intent = match kind {
        SessionKind::Publish => Intent::Publish,
        SessionKind::Play => Intent::Play,
    };
    let info = routes.access.authorize(&principal, room, intent).await?;
    let record = kind == SessionKind::Publish && (record || info.always_recorded);
    let answer = routes
        .media
        .open(kind, room, principal.account_id, offer, record)
        .await?;
    if let Some(dir) = &answer.recording {
        routes
            .replays
            .recording(room, info.class_id, principal.account_id, dir)
            .await?;
    }
    let prefix = match kind {
        SessionKind::Publish => "whip",
        SessionKind::Play => "whep",
    };
    let location = format!("/{prefix}/{room}/{}", answer.session);
    let mut response = (
        StatusCode::CREATED,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/sdp"),
            ),
            (
                header::LOCATION,
                HeaderValue::from_str(&location).map_err(|_| ApiError::new(ErrorCode::Internal))?,
            ),
        ],
        answer.sdp,
    )
        .into_response();
    for link in routes.ice.link_headers() {
        response.headers_mut().append(header::LINK, link);
    }
    Ok(response)
}

async fn whip(
    Extension(routes): Extension<MediaRoutes>,
    CurrentUser(principal): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiQuery(query): ApiQuery<WhipQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let record = query.record.unwrap_or(false);
    open(
        routes,
        SessionKind::Publish,
        principal,
        room,
        record,
        headers,
        body,
    )
    .await
}

async fn whep(
    Extension(routes): Extension<MediaRoutes>,
    CurrentUser(principal): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    open(
        routes,
        SessionKind::Play,
        principal,
        room,
        false,
        headers,
        body,
    )
    .await
}

async fn end(
    routes: MediaRoutes,
    kind: SessionKind,
    principal: foundation::identity::Principal,
    (room, session): (i64, String),
) -> Result<StatusCode, ApiError> {
    routes
        .media
        .close(kind, room, session, principal.account_id)
        .await?;
    Ok(StatusCode::OK)
}

async fn end_whip(
    Extension(routes): Extension<MediaRoutes>,
    CurrentUser(principal): CurrentUser,
    ApiPath(path): ApiPath<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    end(routes, SessionKind::Publish, principal, path).await
}

async fn end_whep(
    Extension(routes): Extension<MediaRoutes>,
    CurrentUser(principal): CurrentUser,
    ApiPath(path): ApiPath<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    end(routes, SessionKind::Play, principal, path).await
}

/// Trickle ICE is not supported: the answer already has every candidate.
async fn no_trickle() -> ApiError {
    ApiError::with_message(
        ErrorCode::MethodNotAllowed,
        "不支持 trickle ICE：应答已包含全部候选地址",
    )
}

async fn stats(
    Extension(routes): Extension<MediaRoutes>,
    CurrentUser(principal): CurrentUser,
) -> Result<Json<crate::endpoint::MediaStats>, ApiError> {
    if !principal.has(foundation::identity::Role::PlatformAdmin) {
        return Err(ApiError::new(ErrorCode::Forbidden));
    }
    Ok(Json(routes.media.stats().await?))
}
