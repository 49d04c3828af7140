//! Stream keys: a per-room secret for OBS Studio's WHIP output (or any WHIP encoder), sent as its
//! Bearer Token instead of a login session, which a new login of the host would end.
//!
//! One active key per room (schema `0012_stream_keys.sql`), created, rotated and revoked by
//! whoever may publish in the room (the host; in a live class also the class's instructors).
//! Only its SHA-256 is stored; the key itself is shown once, in the answer that created it. A
//! key stands for the account that created it, only on `POST /whip/{room}` and
//! `DELETE /whip/{room}/{session}` of its own room (the media crate asks through
//! `RoomAccess::stream_key_principal`); the publish rule is checked again on every use. It is
//! no session: `CurrentUser` refuses it like any unknown token, so it opens no API and no WHEP.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use foundation::audit::AuditEvent;
use foundation::clock::rfc3339;
use foundation::crypto::{random_token, sha256_hex};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiPath, Client, CurrentUser};
use foundation::identity::Principal;
use foundation::org::Ref;
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use crate::hub::{Hub, may_publish};
use crate::protocol::RoomId;

/// How every stream key begins (`lcsk_` = livecamp stream key), so that the WHIP handlers can
/// tell one from a session token; the media crate's `access::STREAM_KEY_PREFIX` is the same.
pub const KEY_PREFIX: &str = "lcsk_";

/// Length of the random part: 32 bytes in unpadded URL-safe base64.
const RANDOM_LEN: usize = 43;

/// A new key: the prefix and 256 random bits, URL-safe.
pub fn generate() -> String {
    format!("{KEY_PREFIX}{}", random_token())
}

/// Whether `key` has the shape of a key this module issues (checked before any query).
fn well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == RANDOM_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn key_hash(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

fn whip_url(room: RoomId) -> String {
    format!("/whip/{room}")
}

/// The account `key` publishes as in `room`, when it is that room's active key (its last use
/// is noted); `None` for any other key, including the active key of another room. The caller
/// still checks that the account may publish there.
pub(crate) async fn principal(
    app: &AppState,
    room: RoomId,
    key: &str,
) -> ApiResult<Option<Principal>> {
    if !well_formed(key) {
        return Ok(None);
    }
    let hash = key_hash(key);
    let row = sqlx::query(
        "SELECT a.id, a.username, a.name, a.institution_id, a.region_id, a.disabled \
         FROM stream_keys k JOIN accounts a ON a.id = k.account_id \
         WHERE k.room_id = $1 AND k.key_hash = $2",
    )
    .bind(room)
    .bind(&hash)
    .fetch_optional(app.db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.try_get::<i64, _>(5)? != 0 {
        return Err(ErrorCode::AccountDisabled.into());
    }
    let account_id: i64 = row.try_get(0)?;
    sqlx::query("UPDATE stream_keys SET last_used_at = $1 WHERE room_id = $2 AND key_hash = $3")
        .bind(app.clock.now_millis())
        .bind(room)
        .bind(&hash)
        .execute(app.db.pool())
        .await?;
    Ok(Some(Principal {
        account_id,
        username: row.try_get(1)?,
        name: row.try_get(2)?,
        roles: app.identity.roles_of(account_id).await?,
        institution_id: row.try_get(3)?,
        region_id: row.try_get(4)?,
        // No session: nothing that needs one (CSRF, the hub's sockets) can be reached with it.
        session_hash: String::new(),
        csrf_token: String::new(),
        bot_class: None,
    }))
}

/// 404 for who may not enter the room, 403 for who may enter but not publish.
async fn check_publisher(hub: &Hub, p: &Principal, room: RoomId) -> ApiResult<()> {
    let (role, kind, _) = hub.member_role(p, room).await?;
    if may_publish(role, kind) {
        Ok(())
    } else {
        Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "只有主播（直播课中也包括本班讲师）可以管理推流密钥",
        ))
    }
}

/// A key just created: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewStreamKey {
    /// `lcsk_` and 43 URL-safe characters.
    pub key: String,
    /// The WHIP endpoint of the room, relative to the server (`/whip/{id}`).
    pub whip_url: String,
    /// What to enter as OBS's Bearer Token: the key.
    pub bearer_token: String,
    pub created_at: String,
}

/// Whether a room has a key, never the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamKeyView {
    pub active: bool,
    pub whip_url: String,
    /// Who created the active key (it publishes as them); null without one.
    pub created_by: Option<Ref>,
    pub created_at: Option<String>,
    /// The last WHIP request it authenticated.
    pub last_used_at: Option<String>,
}

/// Create the room's stream key, replacing (revoking) the one it had.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/stream-key", tag = "rooms",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 201, body = NewStreamKey), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn create_stream_key(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(p): CurrentUser,
    Client(client): Client,
    ApiPath(room): ApiPath<RoomId>,
) -> ApiResult<(StatusCode, Json<NewStreamKey>)> {
    check_publisher(&hub, &p, room).await?;
    let key = generate();
    let now = state.clock.now_millis();
    let mut tx = state.db.begin_write().await?;
    let replaced = sqlx::query("SELECT 1 FROM stream_keys WHERE room_id = $1")
        .bind(room)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    sqlx::query(
        "INSERT INTO stream_keys (room_id, account_id, key_hash, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, NULL) \
         ON CONFLICT (room_id) DO UPDATE SET account_id = excluded.account_id, \
         key_hash = excluded.key_hash, created_at = excluded.created_at, last_used_at = NULL",
    )
    .bind(room)
    .bind(p.account_id)
    .bind(key_hash(&key))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    state
        .audit
        .append_in(
            &mut tx,
            AuditEvent::new(
                Some(p.account_id),
                "stream_key_created",
                format!("room:{room}"),
            )
            .detail(serde_json::json!({"replaced": replaced}))
            .ip(&client.ip),
        )
        .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(NewStreamKey {
            bearer_token: key.clone(),
            key,
            whip_url: whip_url(room),
            created_at: rfc3339(now),
        }),
    ))
}

/// Whether the room has a stream key, who created it and when it was last used.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/stream-key", tag = "rooms",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 200, body = StreamKeyView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn get_stream_key(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<RoomId>,
) -> ApiResult<Json<StreamKeyView>> {
    check_publisher(&hub, &p, room).await?;
    let row = sqlx::query(
        "SELECT k.account_id, a.name, k.created_at, k.last_used_at \
         FROM stream_keys k JOIN accounts a ON a.id = k.account_id WHERE k.room_id = $1",
    )
    .bind(room)
    .fetch_optional(state.db.pool())
    .await?;
    let view = match row {
        Some(row) => StreamKeyView {
            active: true,
            whip_url: whip_url(room),
            created_by: Some(Ref {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
            }),
            created_at: Some(rfc3339(row.try_get(2)?)),
            last_used_at: row.try_get::<Option<i64>, _>(3)?.map(rfc3339),
        },
        None => StreamKeyView {
            active: false,
            whip_url: whip_url(room),
            created_by: None,
            created_at: None,
            last_used_at: None,
        },
    };
    Ok(Json(view))
}

/// Revoke the room's stream key (204 also when it had none). A publishing session that the
/// key opened goes on until the encoder stops.
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/stream-key", tag = "rooms",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_stream_key(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(p): CurrentUser,
    Client(client): Client,
    ApiPath(room): ApiPath<RoomId>,
) -> ApiResult<StatusCode> {
    check_publisher(&hub, &p, room).await?;
    let mut tx = state.db.begin_write().await?;
    let removed = sqlx::query("DELETE FROM stream_keys WHERE room_id = $1")
        .bind(room)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed > 0 {
        state
            .audit
            .append_in(
                &mut tx,
                AuditEvent::new(
                    Some(p.account_id),
                    "stream_key_revoked",
                    format!("room:{room}"),
                )
                .ip(&client.ip),
            )
            .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_url_safe() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert_eq!(a.len(), KEY_PREFIX.len() + RANDOM_LEN);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        // A session token (43 characters, no prefix) or a truncated key is not a key.
        assert!(!well_formed(&random_token()));
        assert!(!well_formed(&a[..a.len() - 1]));
        assert!(!well_formed(&format!("{a}=")));
        assert!(!well_formed("lcsk_"));
    }

    #[test]
    fn only_the_hash_is_kept() {
        let key = generate();
        let hash = key_hash(&key);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&key[KEY_PREFIX.len()..]));
        assert_eq!(hash, key_hash(&key));
    }
}
