//! Replays: the rows that follow a recording from the live to a playable file, the packaging job
//! that runs when a recording's files are complete, and the HTTP API that lists and serves them
//! (`GET /api/v1/replays/{id}` with range requests, so the browser's player can seek).
//!
//! A replay is `recording` while its publisher is live, `packaging` while ffmpeg remuxes it,
//! then `ready` (with file, duration and size) or `failed` (with the reason). Packaging that was
//! interrupted by a restart is picked up again at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use foundation::db::Db;
use foundation::http::extract::{ApiPath, CurrentUser};
use foundation::{ApiError, AppState, ErrorCode};
use serde::Serialize;
use sqlx::Row;
use tokio::sync::broadcast;
use tower::ServiceExt;

use crate::access::{Intent, RoomAccess};
use crate::endpoint::MediaEvent;

/// One replay as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    pub id: i64,
    pub room_id: i64,
    pub class_id: i64,
    pub publisher_id: i64,
    /// recording | packaging | ready | failed
    pub status: String,
    pub content_type: Option<String>,
    pub duration_ms: Option<i64>,
    pub bytes: Option<i64>,
    pub error: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub ready_at: Option<i64>,
    /// Where to play it, once ready.
    pub url: Option<String>,
}

const COLUMNS: &str = "id, room_id, class_id, publisher_id, status, content_type, duration_ms, bytes, \
     error, started_at, ended_at, ready_at, file_path, recording_dir";

fn from_row(row: &sqlx::any::AnyRow) -> Result<(Replay, Option<String>, String), sqlx::Error> {
    let id: i64 = row.try_get(0)?;
    let status: String = row.try_get(4)?;
    let url = (status == "ready").then(|| format!("/api/v1/replays/{id}"));
    Ok((
        Replay {
            id,
            room_id: row.try_get(1)?,
            class_id: row.try_get(2)?,
            publisher_id: row.try_get(3)?,
            status,
            content_type: row.try_get(5)?,
            duration_ms: row.try_get(6)?,
            bytes: row.try_get(7)?,
            error: row.try_get(8)?,
            started_at: row.try_get(9)?,
            ended_at: row.try_get(10)?,
            ready_at: row.try_get(11)?,
            url,
        },
        row.try_get(12)?,
        row.try_get(13)?,
    ))
}

/// The replay rows and the packaging job.
#[derive(Clone)]
pub struct Replays {
    db: Db,
    clock: Arc<dyn foundation::clock::Clock>,
}

impl std::fmt::Debug for Replays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replays").finish_non_exhaustive()
    }
}

impl Replays {
    /// Starts the packaging job: it listens for finished recordings, and first packages those a
    /// restart interrupted.
    pub async fn start(
        state: &AppState,
        mut events: broadcast::Receiver<MediaEvent>,
    ) -> anyhow::Result<Self> {
        let replays = Self {
            db: state.db.clone(),
            clock: state.clock.clone(),
        };
        let pending: Vec<String> = sqlx::query(
            "SELECT recording_dir FROM replays WHERE status IN ('recording', 'packaging')",
        )
        .fetch_all(replays.db.pool())
        .await?
        .iter()
        .filter_map(|row| row.try_get(0).ok())
        .collect();
        let job = replays.clone();
        tokio::spawn(async move {
            for dir in pending {
                job.package(PathBuf::from(dir)).await;
            }
            loop {
                match events.recv().await {
                    Ok(MediaEvent::RecordingFinished { dir, .. }) => job.package(dir).await,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "replay job lagged behind media events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(replays)
    }

    /// A recording began.
    pub async fn recording(
        &self,
        room: i64,
        class: i64,
        publisher: i64,
        dir: &Path,
    ) -> Result<i64, ApiError> {
        let id: i64 = sqlx::query(
            "INSERT INTO replays (room_id, class_id, publisher_id, status, recording_dir, started_at) \
             VALUES ($1, $2, $3, 'recording', $4, $5) RETURNING id",
        )
        .bind(room)
        .bind(class)
        .bind(publisher)
        .bind(dir.to_string_lossy().into_owned())
        .bind(self.clock.now_millis())
        .fetch_one(self.db.pool())
        .await?
        .try_get(0)?;
        Ok(id)
    }

    async fn set_status(&self, dir: &str, status: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE replays SET status = $1, ended_at = COALESCE(ended_at, $2) WHERE recording_dir = $3")
            .bind(status)
            .bind(self.clock.now_millis())
            .bind(dir)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Packages one recording and records the outcome.
    async fn package(&self, dir: PathBuf) {
        let key = dir.to_string_lossy().into_owned();
        if let Err(e) = self.set_status(&key, "packaging").await {
            tracing::error!(error = %e, "replay status");
            return;
        }
        let started = std::time::Instant::now();
        let job_dir = dir.clone();
        let outcome = tokio::task::spawn_blocking(move || crate::package::package(&job_dir)).await;
        let now = self.clock.now_millis();
        let result = match outcome {
            Ok(Ok(packaged)) => {
                tracing::info!(dir = %key, duration_ms = packaged.duration_ms, took_ms = started.elapsed().as_millis() as u64, "replay packaged");
                sqlx::query(
                    "UPDATE replays SET status = 'ready', file_path = $1, content_type = $2, duration_ms = $3, \
                     bytes = $4, ready_at = $5 WHERE recording_dir = $6",
                )
                .bind(packaged.path.to_string_lossy().into_owned())
                .bind(packaged.content_type)
                .bind(packaged.duration_ms)
                .bind(packaged.bytes)
                .bind(now)
                .bind(&key)
                .execute(self.db.pool())
                .await
            }
            Ok(Err(e)) => {
                tracing::warn!(dir = %key, error = %e, "replay not packaged");
                self.fail(&key, &format!("{e:#}")).await
            }
            Err(e) => self.fail(&key, &format!("packaging crashed: {e}")).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "replay status");
        }
    }

    async fn fail(&self, dir: &str, error: &str) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        sqlx::query("UPDATE replays SET status = 'failed', error = $1 WHERE recording_dir = $2")
            .bind(error)
            .bind(dir)
            .execute(self.db.pool())
            .await
    }

    async fn list(&self, column: &str, id: i64) -> Result<Vec<Replay>, ApiError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM replays WHERE {column} = $1 ORDER BY started_at DESC, id DESC"
        )))
        .bind(id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| from_row(row).map(|(replay, _, _)| replay))
            .collect::<Result<_, _>>()
            .map_err(ApiError::from)
    }

    async fn get(&self, id: i64) -> Result<Option<(Replay, Option<String>)>, ApiError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM replays WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref()
            .map(|row| from_row(row).map(|(replay, file, _)| (replay, file)))
            .transpose()
            .map_err(ApiError::from)
    }
}

#[derive(Clone)]
struct ReplayRoutes {
    replays: Replays,
    access: Arc<dyn RoomAccess>,
}

/// `GET /api/v1/rooms/{id}/replays`, `GET /api/v1/classes/{id}/replays`, `GET /api/v1/replays/{id}`.
pub fn router(replays: Replays, access: Arc<dyn RoomAccess>) -> Router<AppState> {
    Router::new()
        .route("/api/v1/rooms/{id}/replays", get(room_replays))
        .route("/api/v1/classes/{id}/replays", get(class_replays))
        .route("/api/v1/replays/{id}", get(replay_file))
        .layer(Extension(ReplayRoutes { replays, access }))
}

async fn room_replays(
    Extension(routes): Extension<ReplayRoutes>,
    CurrentUser(principal): CurrentUser,
    ApiPath(room): ApiPath<i64>,
) -> Result<Json<Vec<Replay>>, ApiError> {
    routes
        .access
        .authorize(&principal, room, Intent::Play)
        .await?;
    Ok(Json(routes.replays.list("room_id", room).await?))
}

async fn class_replays(
    Extension(routes): Extension<ReplayRoutes>,
    CurrentUser(principal): CurrentUser,
    ApiPath(class): ApiPath<i64>,
) -> Result<Json<Vec<Replay>>, ApiError> {
    if !routes.access.class_visible(&principal, class).await? {
        return Err(ApiError::with_message(ErrorCode::NotFound, "班级不存在"));
    }
    Ok(Json(routes.replays.list("class_id", class).await?))
}

/// The replay's file, with range requests, to those who may enter its room.
async fn replay_file(
    Extension(routes): Extension<ReplayRoutes>,
    CurrentUser(principal): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    request: Request,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "回放不存在");
    let (replay, file) = routes.replays.get(id).await?.ok_or_else(not_found)?;
    // Someone who may not enter the room learns nothing, not even that the replay exists.
    routes
        .access
        .authorize(&principal, replay.room_id, Intent::Play)
        .await
        .map_err(|_| not_found())?;
    let Some(file) = file.filter(|_| replay.status == "ready") else {
        let message = match replay.status.as_str() {
            "failed" => "回放生成失败",
            _ => "回放正在生成，请稍后再试",
        };
        return Err(ApiError::with_message(ErrorCode::Conflict, message));
    };
    let mut response = tower_http::services::ServeFile::new(file)
        .oneshot(request)
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal))?
        .into_response();
    if let Some(content_type) = replay.content_type.as_deref()
        && let Ok(value) = HeaderValue::from_str(content_type)
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}
