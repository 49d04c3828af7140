//! Extractors that answer bad input in the error table's JSON instead of axum's plain text:
//! [`ApiJson`], [`ApiPath`], [`ApiQuery`], plus [`Client`] (who is calling from where) and
//! [`CurrentUser`] (the authenticated principal, with CSRF checked for cookie sessions).

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum_extra::extract::CookieJar;

use crate::error::{ApiError, ErrorCode};
use crate::identity::{ClientInfo, Principal};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "livecamp_session";
pub const CSRF_COOKIE: &str = "livecamp_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// JSON body; malformed JSON → 400, wrong or missing fields → 422, too large → 413,
/// wrong content type → 415.
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Path parameters; a malformed id → 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query string; malformed → 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::with_message(
                ErrorCode::UnprocessableEntity,
                format!(
                    "请求字段缺失或类型不正确：{}",
                    e.body_text().trim_start_matches(
                        "Failed to deserialize the JSON body into the target type: "
                    )
                ),
            ),
            JsonRejection::JsonSyntaxError(_) => ErrorCode::MalformedJson.into(),
            JsonRejection::MissingJsonContentType(_) => ApiError::with_message(
                ErrorCode::UnsupportedMediaType,
                "请求须为 JSON（Content-Type: application/json）",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ErrorCode::PayloadTooLarge.into()
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ErrorCode::PayloadTooLarge.into()
            }
            _ => ErrorCode::BadRequest.into(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::with_message(ErrorCode::BadRequest, "路径参数格式不正确")
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::with_message(
            ErrorCode::BadRequest,
            format!("查询参数不正确：{}", rejection.body_text()),
        )
    }
}

/// Who is calling from where.
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Client(client_info(parts, state.config.behind_proxy)))
    }
}

pub fn client_info(parts: &Parts, behind_proxy: bool) -> ClientInfo {
    let forwarded = behind_proxy
        .then(|| {
            parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_owned())
        })
        .flatten();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    ClientInfo {
        ip: forwarded.or(peer).unwrap_or_default(),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The authenticated caller. Bearer tokens (API clients) need no CSRF token; cookie sessions
/// (browsers) must echo the CSRF cookie in `X-CSRF-Token` on every unsafe method.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Principal);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(CurrentUser(principal.clone()));
        }
        let (token, via_cookie) = session_token(parts)?;
        let principal = state.identity.authenticate(&token).await?;
        if via_cookie && !parts.method.is_safe() {
            let presented = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !principal.csrf_matches(presented) {
                return Err(ErrorCode::CsrfFailed.into());
            }
        }
        parts.extensions.insert(principal.clone());
        Ok(CurrentUser(principal))
    }
}

/// The session token of a request: `Authorization: Bearer`, else the session cookie, else (GET
/// only, for WebSocket upgrades from browsers that cannot set headers) `?token=`.
fn session_token(parts: &Parts) -> Result<(String, bool), ApiError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        return match value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            Some(token) => Ok((token.trim().to_owned(), false)),
            None => Err(ApiError::with_message(
                ErrorCode::Unauthenticated,
                "Authorization 头须为 Bearer 令牌",
            )),
        };
    }
    let jar = CookieJar::from_headers(&parts.headers);
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        return Ok((cookie.value().to_owned(), true));
    }
    if parts.method == axum::http::Method::GET
        && let Some(query) = parts.uri.query()
        && let Some(token) = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
    {
        return Ok((token.to_owned(), false));
    }
    Err(ErrorCode::Unauthenticated.into())
}
