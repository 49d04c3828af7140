//! Identity routes: login, logout, the current user and password change.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, CSRF_COOKIE, Client, CurrentUser, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::identity::{Profile, Role};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginUser {
    pub id: i64,
    pub name: String,
    pub roles: Vec<Role>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for API clients (browsers use the HttpOnly cookie set alongside).
    pub token: String,
    /// Send back as `X-CSRF-Token` on unsafe requests authenticated by the cookie.
    pub csrf_token: String,
    pub user: LoginUser,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub old_password: String,
    pub new_password: String,
}

/// Log in with username and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "identity", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody),
              (status = 423, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    Client(client): Client,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<impl IntoResponse> {
    if body.username.len() > 64 || body.password.len() > 256 {
        return Err(ErrorCode::InvalidCredentials.into());
    }
    if state.login_limiter.check_key(&client.ip).is_err() {
        return Err(ErrorCode::RateLimited.into());
    }
    let success = state
        .identity
        .login(&body.username, &body.password, &client)
        .await?;
    let secure = state.config.secure_cookies();
    let max_age = time::Duration::hours(i64::from(state.config.session_max_hours));
    let session = Cookie::build((SESSION_COOKIE, success.token.clone()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .path("/")
        .max_age(max_age);
    let csrf = Cookie::build((CSRF_COOKIE, success.principal.csrf_token.clone()))
        .same_site(SameSite::Strict)
        .secure(secure)
        .path("/")
        .max_age(max_age);
    let response = LoginResponse {
        token: success.token,
        csrf_token: success.principal.csrf_token.clone(),
        user: LoginUser {
            id: success.principal.account_id,
            name: success.principal.name.clone(),
            roles: success.principal.roles.clone(),
        },
    };
    Ok((jar.add(session).add(csrf), Json(response)))
}

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "identity",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    CurrentUser(principal): CurrentUser,
    Client(client): Client,
    jar: CookieJar,
) -> ApiResult<impl IntoResponse> {
    state.identity.logout(&principal, &client).await?;
    let jar = jar
        .remove(Cookie::build(SESSION_COOKIE).path("/"))
        .remove(Cookie::build(CSRF_COOKIE).path("/"));
    Ok((jar, StatusCode::NO_CONTENT))
}

/// The current user, sensitive fields masked.
#[utoipa::path(get, path = "/api/v1/me", tag = "identity",
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    CurrentUser(principal): CurrentUser,
) -> ApiResult<Json<Profile>> {
    Ok(Json(state.identity.profile(principal.account_id).await?))
}

/// Change the current user's password.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "identity", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(principal): CurrentUser,
    Client(client): Client,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    if body.old_password.len() > 256 || body.new_password.len() > 512 {
        return Err(ApiError::new(ErrorCode::WeakPassword));
    }
    state
        .identity
        .change_password(&principal, &body.old_password, &body.new_password, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
