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
use crate::endpoint::{Media, OpenRequest, SessionKind};
use crate::replays::Replays;
use crate::simulcast::Quality;

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

/// `POST /whep/{room}?publisher={user id}&layer=low|medium|high`: whom to play (the main
/// publisher by default) and which simulcast layer fits (the best by default).
#[derive(Debug, Default, Deserialize)]
struct WhepQuery {
    publisher: Option<i64>,
    layer: Option<Quality>,
}

/// What a session asks for beyond its kind.
#[derive(Debug, Default)]
struct SessionOptions {
    record: bool,
    publisher: Option<i64>,
    quality: Quality,
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
    options: SessionOptions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let offer = check_sdp_body(&headers, &body)?;
    let intent = match kind {
        SessionKind::Publish => Intent::Publish,
        SessionKind::Play => Intent::Play,
    };
    let info = routes.access.authorize(&principal, room, intent).await?;
    // Guests (on stage, an examinee's webcam) are not recorded: the replay is the main
    // publisher's.
    let record = kind == SessionKind::Publish
        && info.publish_as == crate::PublishAs::Main
        && (options.record || info.always_recorded);
    let answer = routes
        .media
        .open(OpenRequest {
            kind,
            room,
            user: principal.account_id,
            offer,
            record,
            publish_as: info.publish_as,
            publisher: options.publisher,
            quality: options.quality,
        })
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
    user: Result<CurrentUser, ApiError>,
    ApiPath(room): ApiPath<i64>,
    ApiQuery(query): ApiQuery<WhipQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = publisher(&routes, user, room, &headers).await?;
    let options = SessionOptions {
        record: query.record.unwrap_or(false),
        ..SessionOptions::default()
    };
    open(
        routes,
        SessionKind::Publish,
        principal,
        room,
        options,
        headers,
        body,
    )
    .await
}

async fn whep(
    Extension(routes): Extension<MediaRoutes>,
    CurrentUser(principal): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiQuery(query): ApiQuery<WhepQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let options = SessionOptions {
        publisher: query.publisher,
        quality: query.layer.unwrap_or_default(),
        ..SessionOptions::default()
    };
    open(
        routes,
        SessionKind::Play,
        principal,
        room,
        options,
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
    user: Result<CurrentUser, ApiError>,
    ApiPath(path): ApiPath<(i64, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let principal = publisher(&routes, user, path.0, &headers).await?;
    end(routes, SessionKind::Publish, principal, path).await
}

/// Who a WHIP request publishes as: with `Authorization: Bearer lcsk_…` the account of the
/// room's stream key (OBS Studio; 401 `invalid_stream_key` for any other key, before the offer
/// is looked at), else the session's user. A key counts on WHIP only: everywhere else
/// `CurrentUser` refuses it as an unknown token.
async fn publisher(
    routes: &MediaRoutes,
    user: Result<CurrentUser, ApiError>,
    room: i64,
    headers: &HeaderMap,
) -> Result<foundation::identity::Principal, ApiError> {
    match stream_key(headers) {
        Some(key) => routes
            .access
            .stream_key_principal(room, key)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidStreamKey)),
        None => user.map(|CurrentUser(principal)| principal),
    }
}

/// The stream key of a request's `Authorization: Bearer` header, if it carries one.
fn stream_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    token
        .starts_with(crate::access::STREAM_KEY_PREFIX)
        .then_some(token)
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
