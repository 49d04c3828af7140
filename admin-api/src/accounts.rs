//! Platform administration: accounts (list, create, roles, unlock), the effective settings and
//! the audit log with its chain check.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use foundation::audit::VerifyReport;
use foundation::clock::rfc3339;
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, ApiQuery, Client, CurrentUser};
use foundation::identity::fields::{
    IdNumber, NewPassword, PersonName, Phone, Username, parse_label,
};
use foundation::identity::{NewAccount, Principal, Role};
use foundation::org::Ref;
use foundation::{ApiError, ApiResult, AppState};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountRow {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub institution: Option<Ref>,
    pub phone_masked: Option<String>,
    pub id_number_masked: Option<String>,
    /// RFC 3339; set while the account is locked.
    pub locked_until: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    pub items: Vec<AccountRow>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AccountQuery {
    /// Part of a username or name.
    pub q: Option<String>,
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

/// Platform admins see every account; an institution admin the accounts of their institution.
fn account_scope(p: &Principal) -> ApiResult<(i64, Option<i64>)> {
    if p.has(Role::PlatformAdmin) {
        Ok((1, None))
    } else if p.has(Role::InstitutionAdmin) && p.institution_id.is_some() {
        Ok((0, p.institution_id))
    } else {
        Err(ApiError::forbidden())
    }
}

fn like_pattern(q: &str) -> String {
    let escaped = q
        .trim()
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Scope ($1 all, $2 institution) and search: part of the username or name ($3), or a complete
/// phone ($4) or ID number ($5), found through their keyed hashes since both are encrypted.
/// Buyer bots (commerce's simulated traffic) are no people to administer: never listed.
const ACCOUNT_FILTER: &str = "a.is_bot = 0 AND ($1 = 1 OR a.institution_id = $2) AND (LOWER(a.username) LIKE $3 ESCAPE '\\' \
     OR a.name LIKE $3 ESCAPE '\\' OR a.phone_hash = $4 OR a.id_number_hash = $5)";

async fn account_row(state: &AppState, row: &sqlx::any::AnyRow, now: i64) -> ApiResult<AccountRow> {
    let id: i64 = row.try_get(0)?;
    let institution = match (
        row.try_get::<Option<i64>, _>(5)?,
        row.try_get::<Option<String>, _>(6)?,
    ) {
        (Some(id), Some(name)) => Some(Ref { id, name }),
        _ => None,
    };
    let locked_until: Option<i64> = row.try_get(7)?;
    Ok(AccountRow {
        id,
        username: row.try_get(1)?,
        name: row.try_get(2)?,
        roles: state.identity.roles_of(id).await?,
        institution,
        phone_masked: row.try_get(3)?,
        id_number_masked: row.try_get(4)?,
        locked_until: locked_until.filter(|u| *u > now).map(rfc3339),
        created_at: rfc3339(row.try_get(8)?),
    })
}

/// Accounts, searchable and paged.
#[utoipa::path(get, path = "/api/v1/admin/accounts", tag = "admin", params(AccountQuery),
    responses((status = 200, body = AccountPage), (status = 403, body = ErrorBody)))]
pub async fn list_accounts(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiQuery(query): ApiQuery<AccountQuery>,
) -> ApiResult<Json<AccountPage>> {
    let (all, institution) = account_scope(&p)?;
    let page = query.page.unwrap_or(1).max(1);
    let per_page = query.per_page.unwrap_or(20).clamp(1, 100);
    let q = query.q.unwrap_or_default();
    if q.chars().count() > 64 {
        return Err(ApiError::validation("搜索词不能超过 64 个字符"));
    }
    let pattern = like_pattern(&q);
    let keys = state.identity.keys();
    let phone_hash = Phone::parse(&q)
        .ok()
        .map(|phone| keys.lookup.hash("phone", phone.as_str()));
    let id_hash = IdNumber::parse(&q)
        .ok()
        .map(|id| keys.lookup.hash("id_number", id.as_str()));
    let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM accounts a WHERE {ACCOUNT_FILTER}"
    )))
    .bind(all)
    .bind(institution)
    .bind(&pattern)
    .bind(&phone_hash)
    .bind(&id_hash)
    .fetch_one(state.db.pool())
    .await?
    .try_get(0)?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT a.id, a.username, a.name, a.phone_masked, a.id_number_masked, i.id, i.name, a.locked_until, a.created_at \
         FROM accounts a LEFT JOIN institutions i ON i.id = a.institution_id WHERE {ACCOUNT_FILTER} \
         ORDER BY a.username LIMIT $6 OFFSET $7"
    )))
    .bind(all)
    .bind(institution)
    .bind(&pattern)
    .bind(&phone_hash)
    .bind(&id_hash)
    .bind(per_page)
    .bind((page - 1) * per_page)
    .fetch_all(state.db.pool())
    .await?;
    let now = state.clock.now_millis();
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(account_row(&state, row, now).await?);
    }
    Ok(Json(AccountPage {
        items,
        total,
        page,
        per_page,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    pub username: String,
    pub name: String,
    pub password: String,
    /// trainee | instructor | institution_admin | supervisor | platform_admin
    pub role: String,
    pub phone: Option<String>,
    pub id_number: Option<String>,
    pub institution_id: Option<i64>,
    pub region_id: Option<i64>,
    pub certificate_no: Option<String>,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// Create an account. Every field is validated before anything is written.
#[utoipa::path(post, path = "/api/v1/admin/accounts", tag = "admin", request_body = CreateAccountRequest,
    responses((status = 201, body = AccountRow), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_account(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    Client(client): Client,
    ApiJson(body): ApiJson<CreateAccountRequest>,
) -> ApiResult<(StatusCode, Json<AccountRow>)> {
    account_scope(&p)?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::validation(format!(
            "未知角色：{}",
            body.role.chars().take(32).collect::<String>()
        ))
    })?;
    let new = NewAccount {
        username: Username::parse(&body.username)?,
        name: PersonName::parse(&body.name)?,
        password: NewPassword::parse(&body.password)?,
        roles: vec![role],
        phone: non_empty(body.phone)
            .map(|v| Phone::parse(&v))
            .transpose()?,
        id_number: non_empty(body.id_number)
            .map(|v| IdNumber::parse(&v))
            .transpose()?,
        institution_id: body.institution_id,
        region_id: body.region_id,
        certificate_no: non_empty(body.certificate_no)
            .map(|v| parse_label(&v, "讲师证书编号"))
            .transpose()?,
    };
    let id = state
        .identity
        .create_account(Some(&p), new, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(load_account(&state, id).await?)))
}

async fn load_account(state: &AppState, id: i64) -> ApiResult<AccountRow> {
    let row = sqlx::query(
        "SELECT a.id, a.username, a.name, a.phone_masked, a.id_number_masked, i.id, i.name, a.locked_until, a.created_at \
         FROM accounts a LEFT JOIN institutions i ON i.id = a.institution_id WHERE a.id = $1 AND a.is_bot = 0",
    )
    .bind(id)
    .fetch_optional(state.db.pool())
    .await?
    .ok_or_else(ApiError::not_found)?;
    account_row(state, &row, state.clock.now_millis()).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRolesRequest {
    pub roles: Vec<String>,
}

/// Replace an account's roles (platform admins only; audited).
#[utoipa::path(put, path = "/api/v1/admin/accounts/{id}/roles", tag = "admin", request_body = SetRolesRequest,
    params(("id" = i64, Path, description = "account id")),
    responses((status = 200, body = AccountRow), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_roles(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    Client(client): Client,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<SetRolesRequest>,
) -> ApiResult<Json<AccountRow>> {
    p.require(Role::PlatformAdmin)?;
    let roles = body
        .roles
        .iter()
        .map(|r| Role::parse(r).ok_or_else(|| ApiError::validation("未知角色")))
        .collect::<ApiResult<Vec<_>>>()?;
    state.identity.set_roles(&p, id, roles, &client).await?;
    Ok(Json(load_account(&state, id).await?))
}

/// Lift a lockout.
#[utoipa::path(post, path = "/api/v1/admin/accounts/{id}/unlock", tag = "admin",
    params(("id" = i64, Path, description = "account id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn unlock(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    Client(client): Client,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.identity.unlock(&p, id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The effective configuration, secrets hidden.
#[utoipa::path(get, path = "/api/v1/admin/settings", tag = "admin",
    responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
pub async fn settings(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<serde_json::Value>> {
    p.require(Role::PlatformAdmin)?;
    let mut value = state.config.redacted();
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "bus".into(),
            serde_json::to_value(state.bus.health()).unwrap_or_default(),
        );
        map.insert("database_backend".into(), state.db.backend().name().into());
    }
    Ok(Json(value))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub actor: Option<Ref>,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub client_ip: String,
    pub hash: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub limit: Option<i64>,
}

/// The newest audit entries (platform admins).
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = [AuditRow]), (status = 403, body = ErrorBody)))]
pub async fn audit_log(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<AuditRow>>> {
    p.require(Role::PlatformAdmin)?;
    let rows = sqlx::query(
        "SELECT l.seq, l.at, l.actor_id, a.name, l.action, l.target, l.detail, l.client_ip, l.hash \
         FROM audit_log l LEFT JOIN accounts a ON a.id = l.actor_id ORDER BY l.seq DESC LIMIT $1",
    )
    .bind(query.limit.unwrap_or(50).clamp(1, 500))
    .fetch_all(state.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let actor = match (
                r.try_get::<Option<i64>, _>(2)?,
                r.try_get::<Option<String>, _>(3)?,
            ) {
                (Some(id), Some(name)) => Some(Ref { id, name }),
                _ => None,
            };
            let detail: String = r.try_get(6)?;
            Ok(AuditRow {
                seq: r.try_get(0)?,
                at: rfc3339(r.try_get(1)?),
                actor,
                action: r.try_get(4)?,
                target: r.try_get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                client_ip: r.try_get(7)?,
                hash: r.try_get(8)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map(Json)
        .map_err(ApiError::from)
}

/// Walk the audit chain and report the first broken link.
#[utoipa::path(post, path = "/api/v1/admin/audit/verify", tag = "admin",
    responses((status = 200, body = VerifyReport), (status = 403, body = ErrorBody)))]
pub async fn verify_audit(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<VerifyReport>> {
    p.require(Role::PlatformAdmin)?;
    Ok(Json(state.audit.verify().await?))
}
