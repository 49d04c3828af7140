//! HTTP side of the hub: the WebSocket endpoint, the rooms API and the word list.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, ApiQuery, CurrentUser};
use foundation::identity::Role;
use foundation::identity::fields::parse_label;
use foundation::org::{Ref, Scope};
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::hub::Hub;
use crate::protocol::MemberRole;
use crate::store::{RoomKind, RoomRecord};
use crate::stream_keys;
use crate::words::{WordAction, WordFilter};

#[derive(OpenApi)]
#[openapi(
    paths(create_room, get_room, list_rooms, get_words, put_words,
          crate::stream_keys::create_stream_key, crate::stream_keys::get_stream_key,
          crate::stream_keys::delete_stream_key, crate::stage::get_stage,
          crate::stage::invite, crate::stage::end),
    components(schemas(RoomKind)),
    tags((name = "rooms", description = "Live rooms; their real-time channel is the WebSocket at /ws (docs/protocol.md)"))
)]
pub struct SignalingApi;

/// The hub's routes; the hub itself travels as an extension.
pub fn router(hub: Arc<Hub>) -> Router<AppState> {
    Router::new()
        .route("/ws", get(websocket))
        .route("/api/v1/rooms", get(list_rooms).post(create_room))
        .route("/api/v1/rooms/{id}", get(get_room))
        .route(
            "/api/v1/rooms/{id}/stream-key",
            get(stream_keys::get_stream_key)
                .post(stream_keys::create_stream_key)
                .delete(stream_keys::delete_stream_key),
        )
        .merge(crate::stage::routes())
        .route(
            "/api/v1/admin/sensitive-words",
            get(get_words).put(put_words),
        )
        .layer(Extension(hub))
}

/// Largest client frame.
const MAX_FRAME: usize = 16 * 1024;

/// Upgrades to the hub's WebSocket (authenticated by the session cookie, `?token=` or bearer).
async fn websocket(
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(principal): CurrentUser,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(_) => {
            return ApiError::with_message(ErrorCode::BadRequest, "此地址只接受 WebSocket 连接")
                .into_response();
        }
    };
    // Browsers send Origin on WebSocket handshakes: refuse pages of other sites riding the
    // session cookie.
    if let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let origin = origin.to_str().unwrap_or_default();
        let host = host.to_str().unwrap_or_default();
        let same = origin.split("://").nth(1).is_some_and(|o| o == host);
        if !same {
            return ApiError::with_message(ErrorCode::Forbidden, "不允许跨站连接").into_response();
        }
    }
    upgrade
        // tungstenite preallocates 128 KiB per socket by default; chat frames are tiny.
        .read_buffer_size(512)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade({
            // Shared, not copied: the principal lives as long as the connection, twice over
            // (this closure and the connection's future).
            let principal = Arc::new(principal);
            move |socket| hub.serve(socket, principal)
        })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    pub class_id: i64,
    pub kind: RoomKind,
    /// 1–64 characters.
    pub title: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomView {
    pub id: i64,
    pub class: Ref,
    pub kind: RoomKind,
    pub title: String,
    pub host: Ref,
    /// idle | live | ended
    pub status: String,
    pub live: bool,
    pub peak_viewers: i64,
    pub likes: i64,
    /// The caller's role in the room.
    pub my_role: MemberRole,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

fn view(record: &RoomRecord, my_role: MemberRole) -> RoomView {
    use foundation::clock::rfc3339;
    RoomView {
        id: record.id,
        class: Ref {
            id: record.class_id,
            name: record.class_name.clone(),
        },
        kind: record.kind,
        title: record.title.clone(),
        host: Ref {
            id: record.host_id,
            name: record.host_name.clone(),
        },
        status: record.status.clone(),
        live: record.status == "live",
        peak_viewers: record.peak_viewers,
        likes: record.likes,
        my_role,
        created_at: rfc3339(record.created_at),
        started_at: record.started_at.map(rfc3339),
        ended_at: record.ended_at.map(rfc3339),
    }
}

/// Create a room for a class: a trainee of the class opens a live-commerce room; an instructor
/// of the class opens any kind.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "rooms", request_body = CreateRoom,
    responses((status = 201, body = RoomView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_room(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(p): CurrentUser,
    ApiJson(body): ApiJson<CreateRoom>,
) -> ApiResult<(StatusCode, Json<RoomView>)> {
    let title = parse_label(&body.title, "直播间标题")?;
    if !state
        .org
        .class_visible(&Scope::of(&p), body.class_id)
        .await?
    {
        return Err(ApiError::with_message(ErrorCode::NotFound, "班期不存在"));
    }
    let store = hub.store();
    let teaches = p.has(Role::Instructor)
        && store
            .is_class_instructor(body.class_id, p.account_id)
            .await?;
    let attends =
        p.has(Role::Trainee) && store.is_class_trainee(body.class_id, p.account_id).await?;
    let allowed = teaches || (attends && body.kind == RoomKind::LiveCommerce);
    if !allowed {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "只有本班学员可以开设带货直播间，本班讲师可以开设任何直播间",
        ));
    }
    let id = store
        .create(
            body.class_id,
            body.kind,
            &title,
            p.account_id,
            state.clock.now_millis(),
        )
        .await?;
    let record = store.get(id).await?.ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::CREATED, Json(view(&record, MemberRole::Host))))
}

/// One room, if the caller may enter it.
#[utoipa::path(get, path = "/api/v1/rooms/{id}", tag = "rooms",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 200, body = RoomView), (status = 404, body = ErrorBody)))]
async fn get_room(
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<RoomView>> {
    let record = hub
        .store()
        .get(id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "直播间不存在或无权进入"))?;
    let role = hub.role_in(&p, &record).await?;
    Ok(Json(view(&record, role)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RoomQuery {
    /// Only rooms that are live now.
    pub live: Option<bool>,
}

/// Rooms the caller may enter (the classes in their scope).
#[utoipa::path(get, path = "/api/v1/rooms", tag = "rooms", params(RoomQuery),
    responses((status = 200, body = [RoomView])))]
async fn list_rooms(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(p): CurrentUser,
    ApiQuery(query): ApiQuery<RoomQuery>,
) -> ApiResult<Json<Vec<RoomView>>> {
    let classes = state.org.classes(&Scope::of(&p)).await?;
    let ids: Vec<i64> = classes.iter().map(|c| c.id).collect();
    let records = hub
        .store()
        .list_for_classes(&ids, query.live.unwrap_or(false))
        .await?;
    let mut views = Vec::with_capacity(records.len());
    for record in &records {
        views.push(view(record, hub.role_in(&p, record).await?));
    }
    Ok(Json(views))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Word {
    pub word: String,
    /// mask | block
    pub action: String,
}

/// The sensitive-word list (platform admins).
#[utoipa::path(get, path = "/api/v1/admin/sensitive-words", tag = "rooms",
    responses((status = 200, body = [Word]), (status = 403, body = ErrorBody)))]
async fn get_words(
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<Vec<Word>>> {
    p.require(Role::PlatformAdmin)?;
    let words = hub.store().list_words().await?;
    Ok(Json(
        words
            .into_iter()
            .map(|(word, action)| Word { word, action })
            .collect(),
    ))
}

/// Replace the sensitive-word list; takes effect in every room at once.
#[utoipa::path(put, path = "/api/v1/admin/sensitive-words", tag = "rooms", request_body = [Word],
    responses((status = 200, body = [Word]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn put_words(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(p): CurrentUser,
    ApiJson(words): ApiJson<Vec<Word>>,
) -> ApiResult<Json<Vec<Word>>> {
    p.require(Role::PlatformAdmin)?;
    if words.len() > 10_000 {
        return Err(ApiError::validation("词表最多 10000 个词"));
    }
    let mut parsed = Vec::with_capacity(words.len());
    let mut seen = std::collections::HashSet::new();
    for w in &words {
        let word = w.word.trim();
        if !seen.insert(word.to_lowercase()) {
            return Err(ApiError::validation(format!("敏感词重复：{word}")));
        }
        if word.is_empty() || word.chars().count() > 32 {
            let shown: String = word.chars().take(32).collect();
            return Err(ApiError::validation(format!(
                "敏感词须为 1–32 个字符：「{shown}」"
            )));
        }
        let action = match w.action.as_str() {
            "mask" => WordAction::Mask,
            "block" => WordAction::Block,
            _ => {
                return Err(ApiError::validation(
                    "处理方式须为 mask（屏蔽为＊）或 block（拒绝发送）",
                ));
            }
        };
        parsed.push((word.to_owned(), action));
    }
    hub.store()
        .replace_words(&parsed, state.clock.now_millis())
        .await?;
    hub.set_words(WordFilter::new(parsed)).await;
    get_words(Extension(hub), CurrentUser(p)).await
}
