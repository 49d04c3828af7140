//! The stage of a live class: trainees an instructor invited to publish their camera next to
//! theirs (连麦上台). An invitation lets the trainee publish as a guest (WHIP); ending it — by
//! an instructor, or the trainee stepping down — stops what they publish. Every change is
//! announced in the room (`stage_changed`, never dropped), and `GET /api/v1/rooms/{id}/stage`
//! tells a newcomer who is invited. When the live ends, the stage is emptied.
//!
//! The stage is kept by the node that took the invitation, next to the media endpoint that
//! serves the room's publishers (media is not shared between nodes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::Json;
use axum::{Extension, Router, routing::get};
use foundation::http::extract::{ApiJson, ApiPath, CurrentUser};
use foundation::identity::Principal;
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::Hub;
use crate::protocol::{RoomEvent, RoomId, UserId, UserRef};
use crate::store::RoomKind;

/// Trainees on one stage at most (the instructor's picture plus four fits a phone).
pub const MAX_ON_STAGE: usize = 4;

/// Who is invited on each room's stage, and the news of those taken off it.
#[derive(Debug)]
pub struct Stage {
    invited: Mutex<HashMap<RoomId, Vec<UserRef>>>,
    ended: broadcast::Sender<(RoomId, UserId)>,
}

impl Default for Stage {
    fn default() -> Self {
        Self {
            invited: Mutex::new(HashMap::new()),
            ended: broadcast::channel(1024).0,
        }
    }
}

impl Stage {
    /// Empties `room`'s stage (its live ended): those who were on it, each told to
    /// [`Hub::stage_ended`] so their media stops.
    pub(crate) fn clear(&self, room: RoomId) -> Vec<UserRef> {
        let cleared = lock(&self.invited).remove(&room).unwrap_or_default();
        for user in &cleared {
            let _ = self.ended.send((room, user.id));
        }
        cleared
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning only follows a panic elsewhere; the list stays consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `GET /api/v1/rooms/{id}/stage`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StageView {
    pub stage: Vec<StageMember>,
    /// Trainees on the stage at most.
    pub max: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StageMember {
    pub id: i64,
    pub name: String,
}

/// `POST /api/v1/rooms/{id}/stage`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    /// The trainee to invite.
    pub user: i64,
}

impl Hub {
    /// Whether `user` is invited on `room`'s stage.
    pub fn on_stage(&self, room: RoomId, user: UserId) -> bool {
        lock(&self.stage.invited)
            .get(&room)
            .is_some_and(|s| s.iter().any(|u| u.id == user))
    }

    /// Those taken off a stage, to stop what they publish.
    pub fn stage_ended(&self) -> broadcast::Receiver<(RoomId, UserId)> {
        self.stage.ended.subscribe()
    }

    fn stage_of(&self, room: RoomId) -> Vec<UserRef> {
        lock(&self.stage.invited)
            .get(&room)
            .cloned()
            .unwrap_or_default()
    }

    /// The room's kind and `principal`'s role, when they may manage its stage.
    async fn stage_manager(&self, principal: &Principal, room: RoomId) -> ApiResult<i64> {
        let (role, kind, class) = self.member_role(principal, room).await?;
        if kind != RoomKind::LiveClass {
            return Err(ApiError::with_message(
                ErrorCode::Conflict,
                "只有直播课可以邀请学员上台",
            ));
        }
        if !role.moderates() {
            return Err(ApiError::with_message(
                ErrorCode::Forbidden,
                "只有本班讲师可以邀请学员上台",
            ));
        }
        Ok(class)
    }

    /// Invites `user`, a trainee of the class, on the stage.
    pub async fn invite_to_stage(
        &self,
        principal: &Principal,
        room: RoomId,
        user: UserId,
    ) -> ApiResult<Vec<UserRef>> {
        let class = self.stage_manager(principal, room).await?;
        if !self.store().is_class_trainee(class, user).await? {
            return Err(ApiError::with_message(
                ErrorCode::ValidationFailed,
                "只能邀请本班学员上台",
            ));
        }
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM accounts WHERE id = $1")
            .bind(user)
            .fetch_optional(self.app().db.pool())
            .await
            .map_err(ApiError::internal)?;
        let name = name.ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
        let stage = {
            let mut invited = lock(&self.stage.invited);
            let stage = invited.entry(room).or_default();
            if !stage.iter().any(|u| u.id == user) {
                if stage.len() >= MAX_ON_STAGE {
                    return Err(ApiError::with_message(
                        ErrorCode::Conflict,
                        format!("台上最多 {MAX_ON_STAGE} 位学员，请先请一位下台"),
                    ));
                }
                stage.push(UserRef { id: user, name });
            }
            stage.clone()
        };
        self.announce(
            room,
            RoomEvent::StageChanged {
                stage: stage.clone(),
            },
        )
        .await;
        Ok(stage)
    }

    /// Takes `user` off the stage: an instructor may take anyone off, a trainee themselves.
    pub async fn end_stage(
        &self,
        principal: &Principal,
        room: RoomId,
        user: UserId,
    ) -> ApiResult<Vec<UserRef>> {
        if principal.account_id == user {
            self.member_role(principal, room).await?;
        } else {
            self.stage_manager(principal, room).await?;
        }
        let (removed, stage) = {
            let mut invited = lock(&self.stage.invited);
            let stage = invited.entry(room).or_default();
            let before = stage.len();
            stage.retain(|u| u.id != user);
            let removed = stage.len() != before;
            let now = stage.clone();
            if now.is_empty() {
                invited.remove(&room);
            }
            (removed, now)
        };
        if !removed {
            return Err(ApiError::with_message(
                ErrorCode::NotFound,
                "这位学员不在台上",
            ));
        }
        let _ = self.stage.ended.send((room, user));
        self.announce(
            room,
            RoomEvent::StageChanged {
                stage: stage.clone(),
            },
        )
        .await;
        Ok(stage)
    }
}

fn view(stage: Vec<UserRef>) -> StageView {
    StageView {
        stage: stage
            .into_iter()
            .map(|u| StageMember {
                id: u.id,
                name: u.name,
            })
            .collect(),
        max: MAX_ON_STAGE,
    }
}

/// Who is on the stage (everyone who may enter the room may ask).
#[utoipa::path(get, path = "/api/v1/rooms/{id}/stage", tag = "rooms",
    responses((status = 200, body = StageView)))]
pub(crate) async fn get_stage(
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(principal): CurrentUser,
    ApiPath(room): ApiPath<i64>,
) -> ApiResult<Json<StageView>> {
    hub.member_role(&principal, room).await?;
    Ok(Json(view(hub.stage_of(room))))
}

/// An instructor invites a trainee on the stage.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/stage", tag = "rooms", request_body = Invite,
    responses((status = 200, body = StageView)))]
pub(crate) async fn invite(
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(principal): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiJson(body): ApiJson<Invite>,
) -> ApiResult<Json<StageView>> {
    Ok(Json(view(
        hub.invite_to_stage(&principal, room, body.user).await?,
    )))
}

/// An instructor takes a trainee off the stage, or a trainee steps down.
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/stage/{user}", tag = "rooms",
    responses((status = 200, body = StageView)))]
pub(crate) async fn end(
    Extension(hub): Extension<Arc<Hub>>,
    CurrentUser(principal): CurrentUser,
    ApiPath((room, user)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<StageView>> {
    Ok(Json(view(hub.end_stage(&principal, room, user).await?)))
}

/// The stage routes (the hub is added as an extension by the signaling router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rooms/{id}/stage", get(get_stage).post(invite))
        .route(
            "/api/v1/rooms/{id}/stage/{user}",
            axum::routing::delete(end),
        )
}
