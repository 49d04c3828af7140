//! Short videos (短视频) of products: the shop owner uploads a clip, the server turns it into an
//! H.264/AAC MP4 with a JPEG cover, and the product plays it in the shop and in the live room.
//!
//! `POST /api/v1/products/{id}/videos` takes the raw file as the body (no form), streamed to a
//! temporary file under `{data_dir}/videos/incoming` and never held in memory, at most
//! `video_max_bytes`. Its headers are probed before the answer, so what is not a video, or is too
//! long, is refused at once (415 / 400); then the answer is `202` with the video `processing`,
//! and a job transcodes it, one at a time per node (a semaphore; ffmpeg uses both cores), on the
//! blocking pool. The job writes `video.mp4.part` and `cover.jpg.part` and renames them only when
//! both are complete, then marks the row `ready`; a failure marks it `failed` with an English
//! code in `error` (the web app words it in Chinese). Nothing half-written is ever served: the
//! file routes serve only `ready` videos, and only the final names. A restart resumes the jobs
//! it interrupted (up to [`MAX_ATTEMPTS`] starts each), or fails them as `interrupted`, so no
//! video stays `processing` forever; each node resumes only the jobs whose files are in its own
//! data directory (the `store-id` stamped there).
//!
//! The transcoder is the [`VideoTranscoder`] trait, implemented by the binary over
//! `media::transcode` (`src/commerce_videos.rs`), the same way the hub is reached through
//! [`crate::LiveRooms`]: commerce stays free of the SFU crate and of FFmpeg's C libraries (it
//! builds and tests without them), and the binary decides which implementation runs.
//!
//! Who sees a video: the same people as its product (owners always; others only `ready` videos
//! of listed products of open shops in their scope, see `shops::visible_product`), and anyone who
//! may enter a room whose shelf holds the product.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiPath, CurrentUser};
use foundation::identity::Principal;
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use futures::StreamExt;
use serde::Serialize;
use sqlx::Row;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;
use utoipa::ToSchema;

use crate::{Commerce, lock, shops};

/// Videos a product may have (processing or ready; failed ones do not count).
pub const MAX_VIDEOS_PER_PRODUCT: i64 = 5;
/// Transcoding starts per video: one restart in the middle is retried, a second is not (a clip
/// that kills the process must not do so at every start).
pub const MAX_ATTEMPTS: i64 = 2;
/// Transcodes at once per node: x264 and the decoder already use both cores.
const TRANSCODES_AT_ONCE: usize = 1;
/// An oversized upload is read (and dropped) this far past the limit before the 413, so the
/// client, still sending, sees the answer instead of a reset connection; beyond it, the
/// connection is closed.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
/// Temporary uploads older than this are left-overs of a crash (a live upload keeps writing).
const STALE_UPLOAD: Duration = Duration::from_secs(600);
const INCOMING: &str = "incoming";

/// What a transcoder found out about a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFacts {
    /// 0 when the container does not say (a probe only).
    pub duration_ms: i64,
    pub width: u32,
    pub height: u32,
    pub has_audio: bool,
}

/// Why a clip was refused.
#[derive(Debug, thiserror::Error)]
pub enum VideoFailure {
    /// Not a video this server can read.
    #[error("unsupported video: {0}")]
    Unsupported(String),
    /// Its pictures cannot be decoded.
    #[error("undecodable video: {0}")]
    Undecodable(String),
    #[error("the clip lasts {duration_ms} ms, more than {max_ms} ms")]
    TooLong { duration_ms: i64, max_ms: i64 },
    #[error("the clip lasts only {duration_ms} ms")]
    TooShort { duration_ms: i64 },
    #[error("transcoding took too long")]
    TimedOut,
    #[error("cancelled")]
    Cancelled,
    /// The server's fault (a missing encoder, a full disk).
    #[error("{0}")]
    Internal(String),
}

impl VideoFailure {
    /// The `error` of a failed video: a stable English code the client words.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "video_unsupported",
            Self::Undecodable(_) => "video_undecodable",
            Self::TooLong { .. } => "video_too_long",
            Self::TooShort { .. } => "video_too_short",
            Self::TimedOut => "video_timeout",
            Self::Cancelled => "cancelled",
            Self::Internal(_) => "internal",
        }
    }

    /// The answer to the upload when the probe already refuses the file.
    fn api_error(&self) -> ApiError {
        match self {
            Self::Unsupported(_) | Self::Undecodable(_) => {
                ApiError::new(ErrorCode::VideoUnsupported)
            }
            Self::TooShort { .. } => ApiError::with_message(
                ErrorCode::VideoUnsupported,
                "视频太短（不到半秒），请上传一段真正的视频",
            ),
            Self::TooLong { max_ms, .. } => ApiError::with_message(
                ErrorCode::VideoTooLong,
                format!("视频不能超过 {} 秒，请剪短后再上传", max_ms / 1000),
            ),
            Self::TimedOut | Self::Cancelled | Self::Internal(_) => ApiError::internal(self),
        }
    }
}

/// Turns uploads into playable MP4s with a cover (blocking; called on the blocking pool).
pub trait VideoTranscoder: Send + Sync {
    /// Reads the headers only: refuses what is not a video, or is longer than `max_duration_ms`.
    fn probe(&self, input: &Path, max_duration_ms: i64) -> Result<VideoFacts, VideoFailure>;

    /// Writes an H.264/AAC MP4 (streamable) to `mp4` and a JPEG cover to `cover`; stops with
    /// [`VideoFailure::Cancelled`] soon after `cancel` is set.
    fn transcode(
        &self,
        input: &Path,
        mp4: &Path,
        cover: &Path,
        max_duration_ms: i64,
        cancel: &AtomicBool,
    ) -> Result<VideoFacts, VideoFailure>;
}

/// The node's video store and job runner (part of [`Commerce`]).
pub(crate) struct Videos {
    transcoder: Arc<dyn VideoTranscoder>,
    /// `{data_dir}/videos`: `store-id`, `incoming/`, and one folder per video id.
    dir: PathBuf,
    store_id: tokio::sync::OnceCell<String>,
    permits: Arc<tokio::sync::Semaphore>,
    /// The cancel flag of each queued or running job, set when its video is deleted.
    jobs: Mutex<HashMap<i64, Arc<AtomicBool>>>,
}

impl Videos {
    pub(crate) fn new(app: &AppState, transcoder: Arc<dyn VideoTranscoder>) -> Self {
        Self {
            transcoder,
            dir: app.config.data_dir.join("videos"),
            store_id: tokio::sync::OnceCell::new(),
            permits: Arc::new(tokio::sync::Semaphore::new(TRANSCODES_AT_ONCE)),
            jobs: Mutex::default(),
        }
    }

    fn folder(&self, id: i64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// The id of this data directory, created with it on first use.
    async fn store_id(&self) -> std::io::Result<&str> {
        self.store_id
            .get_or_try_init(|| async {
                tokio::fs::create_dir_all(self.dir.join(INCOMING)).await?;
                let path = self.dir.join("store-id");
                loop {
                    match tokio::fs::read_to_string(&path).await {
                        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
                        Ok(_) => {
                            return Err(std::io::Error::other(format!(
                                "{} is empty",
                                path.display()
                            )));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                    let id = hex::encode(rand::random::<[u8; 16]>());
                    let created = tokio::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .await;
                    match created {
                        Ok(mut file) => {
                            file.write_all(id.as_bytes()).await?;
                            file.sync_all().await?;
                            return Ok(id);
                        }
                        // Someone else stamped it first: read theirs.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                }
            })
            .await
            .map(String::as_str)
    }

    /// Streams `body` into a temporary file, refusing more than `limit` bytes.
    async fn receive(&self, body: Body, limit: u64) -> ApiResult<Upload> {
        let incoming = self.dir.join(INCOMING);
        let temp = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix("upload-")
                .suffix(".part")
                .tempfile_in(incoming)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        let file = temp.as_file().try_clone().map_err(ApiError::internal)?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
        let mut stream = body.into_data_stream();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                ApiError::with_message(ErrorCode::BadRequest, "上传中断了，请重新上传")
            })?;
            bytes += chunk.len() as u64;
            if bytes > limit {
                // `temp` is dropped with the error: the partial file goes with it.
                drain(&mut stream, DRAIN_BYTES).await;
                return Err(too_large(limit));
            }
            out.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        out.flush().await.map_err(ApiError::internal)?;
        Ok(Upload { temp, bytes })
    }

    async fn probe(&self, path: PathBuf, max_ms: i64) -> ApiResult<VideoFacts> {
        let transcoder = self.transcoder.clone();
        match tokio::task::spawn_blocking(move || transcoder.probe(&path, max_ms)).await {
            Ok(Ok(facts)) => Ok(facts),
            Ok(Err(failure)) => Err(failure.api_error()),
            Err(e) => Err(ApiError::internal(format!("video probe crashed: {e}"))),
        }
    }
}

/// An upload on disk; deleted when dropped unless moved into its video's folder.
struct Upload {
    temp: tempfile::NamedTempFile,
    bytes: u64,
}

async fn drain(stream: &mut axum::body::BodyDataStream, mut budget: u64) {
    while let Some(Ok(chunk)) = stream.next().await {
        let Some(left) = budget.checked_sub(chunk.len() as u64) else {
            return;
        };
        budget = left;
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::with_message(
        ErrorCode::VideoTooLarge,
        format!(
            "视频文件不能超过 {} MB，请压缩或剪短后再上传",
            limit / (1024 * 1024)
        ),
    )
}

/// A ready video, as products and shelves show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VideoSummary {
    pub id: i64,
    pub duration_ms: i64,
    pub width: i64,
    pub height: i64,
    /// The MP4 (range requests).
    pub file_url: String,
    /// The JPEG cover.
    pub cover_url: String,
}

/// A video with its processing state.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoView {
    pub id: i64,
    pub product_id: i64,
    /// processing | ready | failed
    pub status: String,
    /// Bytes uploaded.
    pub source_bytes: i64,
    /// Of the MP4, when ready.
    pub bytes: Option<i64>,
    pub duration_ms: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub has_audio: Option<bool>,
    /// When failed: video_unsupported | video_undecodable | video_too_long | video_too_short |
    /// video_timeout | interrupted | internal
    pub error: Option<String>,
    pub file_url: Option<String>,
    pub cover_url: Option<String>,
    pub created_at: i64,
    pub ready_at: Option<i64>,
}

/// A product's videos, and what an upload may be.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductVideos {
    /// Oldest first; others than the owner see only the ready ones.
    pub videos: Vec<VideoView>,
    pub max_bytes: u64,
    pub max_seconds: u32,
    pub max_videos: i64,
}

struct VideoRow {
    id: i64,
    product_id: i64,
    status: String,
    source_bytes: i64,
    bytes: Option<i64>,
    duration_ms: Option<i64>,
    width: Option<i64>,
    height: Option<i64>,
    has_audio: Option<i64>,
    error: Option<String>,
    created_at: i64,
    ready_at: Option<i64>,
}

const COLUMNS: &str = "id, product_id, status, source_bytes, bytes, duration_ms, width, height, \
     has_audio, error, created_at, ready_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<VideoRow, sqlx::Error> {
    Ok(VideoRow {
        id: row.try_get(0)?,
        product_id: row.try_get(1)?,
        status: row.try_get(2)?,
        source_bytes: row.try_get(3)?,
        bytes: row.try_get(4)?,
        duration_ms: row.try_get(5)?,
        width: row.try_get(6)?,
        height: row.try_get(7)?,
        has_audio: row.try_get(8)?,
        error: row.try_get(9)?,
        created_at: row.try_get(10)?,
        ready_at: row.try_get(11)?,
    })
}

fn file_url(id: i64) -> String {
    format!("/api/v1/videos/{id}/file")
}

fn cover_url(id: i64) -> String {
    format!("/api/v1/videos/{id}/cover")
}

impl VideoRow {
    fn view(&self) -> VideoView {
        let ready = self.status == "ready";
        VideoView {
            id: self.id,
            product_id: self.product_id,
            status: self.status.clone(),
            source_bytes: self.source_bytes,
            bytes: self.bytes,
            duration_ms: self.duration_ms,
            width: self.width,
            height: self.height,
            has_audio: self.has_audio.map(|a| a != 0),
            error: self.error.clone(),
            file_url: ready.then(|| file_url(self.id)),
            cover_url: ready.then(|| cover_url(self.id)),
            created_at: self.created_at,
            ready_at: self.ready_at,
        }
    }
}

async fn video_row(state: &AppState, id: i64) -> ApiResult<Option<VideoRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM product_videos WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(state.db.pool())
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

fn summary(row: &sqlx::any::AnyRow) -> Result<VideoSummary, sqlx::Error> {
    let id: i64 = row.try_get(0)?;
    Ok(VideoSummary {
        id,
        duration_ms: row.try_get::<Option<i64>, _>(1)?.unwrap_or_default(),
        width: row.try_get::<Option<i64>, _>(2)?.unwrap_or_default(),
        height: row.try_get::<Option<i64>, _>(3)?.unwrap_or_default(),
        file_url: file_url(id),
        cover_url: cover_url(id),
    })
}

/// A product's ready videos, oldest first (for `ProductView`).
pub(crate) async fn ready_of(state: &AppState, product: i64) -> ApiResult<Vec<VideoSummary>> {
    let rows = sqlx::query(
        "SELECT id, duration_ms, width, height FROM product_videos \
         WHERE product_id = $1 AND status = 'ready' ORDER BY id",
    )
    .bind(product)
    .fetch_all(state.db.pool())
    .await?;
    Ok(rows.iter().map(summary).collect::<Result<_, _>>()?)
}

/// The ready videos of every product on a room's shelf, by product, in one query.
pub(crate) async fn ready_on_shelf(
    state: &AppState,
    room: i64,
) -> ApiResult<HashMap<i64, Vec<VideoSummary>>> {
    let rows = sqlx::query(
        "SELECT v.id, v.duration_ms, v.width, v.height, v.product_id FROM product_videos v \
         JOIN room_products rp ON rp.product_id = v.product_id \
         WHERE rp.room_id = $1 AND v.status = 'ready' ORDER BY v.id",
    )
    .bind(room)
    .fetch_all(state.db.pool())
    .await?;
    let mut by_product: HashMap<i64, Vec<VideoSummary>> = HashMap::new();
    for row in &rows {
        let product: i64 = row.try_get(4)?;
        by_product.entry(product).or_default().push(summary(row)?);
    }
    Ok(by_product)
}

/// The video if `p` may see it, and whether they own it.
async fn viewable(
    state: &AppState,
    commerce: &Commerce,
    p: &Principal,
    id: i64,
) -> ApiResult<(VideoRow, bool)> {
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "视频不存在");
    let row = video_row(state, id).await?.ok_or_else(not_found)?;
    match shops::visible_product(state, p, row.product_id).await {
        Ok((_, shop)) => {
            let owner = shop.owner_id == p.account_id;
            if !owner && row.status != "ready" {
                return Err(not_found());
            }
            Ok((row, owner))
        }
        Err(_) if row.status == "ready" && on_a_shelf_for(commerce, p, row.product_id).await => {
            Ok((row, false))
        }
        Err(_) => Err(not_found()),
    }
}

/// Whether a listed `product` is on the shelf of a room `p` may enter (a room's viewers see
/// its shelf even when the shop is outside their scope).
async fn on_a_shelf_for(commerce: &Commerce, p: &Principal, product: i64) -> bool {
    let rooms: Vec<i64> = match sqlx::query_scalar(
        "SELECT rp.room_id FROM room_products rp JOIN products pr ON pr.id = rp.product_id \
         WHERE rp.product_id = $1 AND pr.status = 'listed' ORDER BY rp.room_id LIMIT 20",
    )
    .bind(product)
    .fetch_all(commerce.app.db.pool())
    .await
    {
        Ok(rooms) => rooms,
        Err(e) => {
            tracing::warn!(error = %e, "rooms of a product");
            return false;
        }
    };
    for room in rooms {
        if commerce.access(p, room).await.is_ok() {
            return true;
        }
    }
    false
}

fn check_content_type(headers: &HeaderMap) -> ApiResult<()> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if kind.starts_with("video/") || kind == "application/octet-stream" {
        Ok(())
    } else {
        Err(ApiError::with_message(
            ErrorCode::UnsupportedMediaType,
            "请直接上传视频文件本身（Content-Type 为 video/* 或 application/octet-stream），不要用表单",
        ))
    }
}

async fn count_active(db: &mut sqlx::AnyConnection, product: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM product_videos WHERE product_id = $1 AND status <> 'failed'",
    )
    .bind(product)
    .fetch_one(db)
    .await
}

fn too_many() -> ApiError {
    ApiError::with_message(
        ErrorCode::Conflict,
        format!("每个商品最多 {MAX_VIDEOS_PER_PRODUCT} 个视频，请先删除不用的视频"),
    )
}

/// Upload a product video (owner only): the raw file as the body, `Content-Type: video/*` or
/// `application/octet-stream`. Refused at once when it is not a video or too long; else `202`
/// with the video `processing` — poll `GET /api/v1/videos/{id}` until `ready` or `failed`.
#[utoipa::path(post, path = "/api/v1/products/{id}/videos", tag = "commerce",
    params(("id" = i64, Path, description = "product id")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the video file itself (any common format), at most `video_max_bytes`"),
    responses((status = 202, body = VideoView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(product_id): ApiPath<i64>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<VideoView>)> {
    let (product, _) = shops::owned_product(&state, &p, product_id).await?;
    check_content_type(&headers)?;
    let limit = state.config.video_max_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.saturating_add(DRAIN_BYTES)) {
        return Err(too_large(limit));
    }
    {
        let mut conn = state.db.pool().acquire().await?;
        if count_active(&mut conn, product.id).await? >= MAX_VIDEOS_PER_PRODUCT {
            return Err(too_many());
        }
    }
    let videos = &commerce.videos;
    let store = videos
        .store_id()
        .await
        .map_err(|e| ApiError::internal(format!("video store: {e}")))?
        .to_owned();
    let upload = videos.receive(body, limit).await?;
    if upload.bytes == 0 {
        return Err(ApiError::validation("上传的文件是空的，请选择一个视频文件"));
    }
    let max_ms = i64::from(state.config.video_max_seconds) * 1000;
    videos
        .probe(upload.temp.path().to_path_buf(), max_ms)
        .await?;
    let bytes = upload.bytes;

    // From the row's insert to the job's start runs in a task of its own: a client that hangs
    // up now (which drops this handler's future) cannot leave a row `processing` with no job.
    let product_id = product.id;
    let uploader = p.account_id;
    let keep = tokio::spawn({
        let (state, commerce) = (state.clone(), commerce.clone());
        async move {
            let videos = &commerce.videos;
            let now = state.clock.now_millis();
            let mut tx = state.db.begin_write().await?;
            // SQLite's write transaction is already exclusive; PostgreSQL's must lock the
            // product, or two uploads at once could both count 4 and make 6.
            if state.db.backend() == foundation::db::Backend::Postgres {
                sqlx::query("SELECT id FROM products WHERE id = $1 FOR UPDATE")
                    .bind(product_id)
                    .execute(&mut *tx)
                    .await?;
            }
            if count_active(&mut tx, product_id).await? >= MAX_VIDEOS_PER_PRODUCT {
                return Err(too_many());
            }
            let id: i64 = sqlx::query(
            "INSERT INTO product_videos (product_id, uploader_id, status, store_id, source_bytes, created_at) \
             VALUES ($1, $2, 'processing', $3, $4, $5) RETURNING id",
        )
        .bind(product_id)
        .bind(uploader)
        .bind(&store)
        .bind(bytes as i64)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
            tx.commit().await?;

            let folder = videos.folder(id);
            let adopted = async {
                tokio::fs::create_dir_all(&folder).await?;
                let source = folder.join("source");
                tokio::task::spawn_blocking(move || upload.temp.persist(source).map(drop))
                    .await
                    .map_err(std::io::Error::other)?
                    .map_err(|e| e.error)
            }
            .await;
            if let Err(e) = adopted {
                let _ = sqlx::query("DELETE FROM product_videos WHERE id = $1")
                    .bind(id)
                    .execute(state.db.pool())
                    .await;
                let _ = tokio::fs::remove_dir_all(&folder).await;
                return Err(ApiError::internal(format!("keeping an upload: {e}")));
            }
            tracing::info!(video = id, product = product_id, bytes, "video uploaded");
            start_job(&commerce, id);
            Ok::<i64, ApiError>(id)
        }
    });
    let id = keep
        .await
        .map_err(|e| ApiError::internal(format!("keeping an upload: {e}")))??;
    let row = video_row(&state, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::ACCEPTED, Json(row.view())))
}

/// A product's videos: all of them for its owner (with their state), the ready ones for others.
#[utoipa::path(get, path = "/api/v1/products/{id}/videos", tag = "commerce",
    params(("id" = i64, Path, description = "product id")),
    responses((status = 200, body = ProductVideos), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(product_id): ApiPath<i64>,
) -> ApiResult<Json<ProductVideos>> {
    let (product, shop) = shops::visible_product(&state, &p, product_id).await?;
    let owner = shop.owner_id == p.account_id;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM product_videos WHERE product_id = $1 AND ($2 = 1 OR status = 'ready') \
         ORDER BY id"
    )))
    .bind(product.id)
    .bind(i64::from(owner))
    .fetch_all(state.db.pool())
    .await?;
    let videos = rows
        .iter()
        .map(|r| from_row(r).map(|v| v.view()))
        .collect::<Result<_, _>>()?;
    Ok(Json(ProductVideos {
        videos,
        max_bytes: state.config.video_max_bytes,
        max_seconds: state.config.video_max_seconds,
        max_videos: MAX_VIDEOS_PER_PRODUCT,
    }))
}

#[utoipa::path(get, path = "/api/v1/videos/{id}", tag = "commerce",
    params(("id" = i64, Path, description = "video id")),
    responses((status = 200, body = VideoView), (status = 404, body = ErrorBody)))]
pub async fn get_video(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<VideoView>> {
    let (row, _) = viewable(&state, &commerce, &p, id).await?;
    Ok(Json(row.view()))
}

/// Serves `name` of a ready video, with range requests and conditional GETs.
async fn serve(
    state: &AppState,
    commerce: &Commerce,
    p: &Principal,
    id: i64,
    name: &str,
    request: Request,
) -> ApiResult<Response> {
    let (row, _) = viewable(state, commerce, p, id).await?;
    if row.status != "ready" {
        return Err(match row.status.as_str() {
            "failed" => {
                ApiError::with_message(ErrorCode::NotFound, "视频处理失败，没有可播放的文件")
            }
            _ => ErrorCode::VideoNotReady.into(),
        });
    }
    let path = commerce.videos.folder(id).join(name);
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        // Another node's disk (each node keeps its own uploads), or a lost file.
        tracing::warn!(video = id, path = %path.display(), "a ready video's file is missing");
        return Err(ApiError::with_message(
            ErrorCode::NotFound,
            "视频文件不在这台服务器上",
        ));
    }
    let mut response = tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(ApiError::internal)?
        .into_response();
    // A video's files never change; a deleted one is gone within the hour.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// The MP4 (H.264/AAC, `moov` first), with range requests.
#[utoipa::path(get, path = "/api/v1/videos/{id}/file", tag = "commerce",
    params(("id" = i64, Path, description = "video id")),
    responses((status = 200, description = "video/mp4"), (status = 206, description = "a range of it"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn video_file(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    request: Request,
) -> ApiResult<Response> {
    serve(&state, &commerce, &p, id, "video.mp4", request).await
}

/// The JPEG cover (a frame at about 1 s).
#[utoipa::path(get, path = "/api/v1/videos/{id}/cover", tag = "commerce",
    params(("id" = i64, Path, description = "video id")),
    responses((status = 200, description = "image/jpeg"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn video_cover(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    request: Request,
) -> ApiResult<Response> {
    serve(&state, &commerce, &p, id, "cover.jpg", request).await
}

/// Delete a video (owner only); a job still working on it stops.
#[utoipa::path(delete, path = "/api/v1/videos/{id}", tag = "commerce",
    params(("id" = i64, Path, description = "video id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_video(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let row = video_row(&state, id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "视频不存在"))?;
    shops::owned_product(&state, &p, row.product_id).await?;
    if let Some(cancel) = lock(&commerce.videos.jobs).get(&id) {
        cancel.store(true, Ordering::Relaxed);
    }
    sqlx::query("DELETE FROM product_videos WHERE id = $1")
        .bind(id)
        .execute(state.db.pool())
        .await?;
    remove_folder(&commerce.videos.folder(id)).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_folder(folder: &Path) {
    match tokio::fs::remove_dir_all(folder).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %folder.display(), error = %e, "could not remove a video's files")
        }
    }
}

async fn remove_file(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove a file"),
    }
}

/// Queues the transcoding of video `id` (once: a job already queued on this node is left alone).
fn start_job(commerce: &Commerce, id: i64) {
    let cancel = Arc::new(AtomicBool::new(false));
    match lock(&commerce.videos.jobs).entry(id) {
        std::collections::hash_map::Entry::Occupied(_) => return,
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(cancel.clone());
        }
    }
    let commerce = commerce.clone();
    tokio::spawn(async move {
        if let Err(e) = run_job(&commerce, id, &cancel).await {
            tracing::error!(video = id, error = %e, "video job failed");
        }
        lock(&commerce.videos.jobs).remove(&id);
    });
}

async fn run_job(commerce: &Commerce, id: i64, cancel: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let videos = &commerce.videos;
    let db = commerce.app.db.pool();
    // Never closed; an error would only mean the node is going away.
    let Ok(_permit) = videos.permits.clone().acquire_owned().await else {
        return Ok(());
    };
    let folder = videos.folder(id);
    let started = sqlx::query(
        "UPDATE product_videos SET attempts = attempts + 1 WHERE id = $1 AND status = 'processing'",
    )
    .bind(id)
    .execute(db)
    .await?
    .rows_affected();
    if started == 0 || cancel.load(Ordering::Relaxed) {
        // Deleted while it waited (or no longer processing: then its files are not ours to touch).
        if row_gone(commerce, id).await? {
            remove_folder(&folder).await;
        }
        return Ok(());
    }
    let source = folder.join("source");
    let (mp4_part, cover_part) = (folder.join("video.mp4.part"), folder.join("cover.jpg.part"));
    let max_ms = i64::from(commerce.app.config.video_max_seconds) * 1000;
    let transcoder = videos.transcoder.clone();
    let job_cancel = cancel.clone();
    let (job_mp4, job_cover) = (mp4_part.clone(), cover_part.clone());
    let took = std::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        transcoder.transcode(&source, &job_mp4, &job_cover, max_ms, &job_cancel)
    })
    .await
    .unwrap_or_else(|e| {
        Err(VideoFailure::Internal(format!(
            "the transcoder crashed: {e}"
        )))
    });
    let outcome = match outcome {
        // Both files complete: give them their final names (rename is atomic) before the row
        // says ready.
        Ok(facts) => async {
            tokio::fs::rename(&mp4_part, folder.join("video.mp4")).await?;
            tokio::fs::rename(&cover_part, folder.join("cover.jpg")).await?;
            let bytes = tokio::fs::metadata(folder.join("video.mp4")).await?.len();
            Ok::<_, std::io::Error>((facts, bytes))
        }
        .await
        .map_err(|e| VideoFailure::Internal(format!("keeping the output: {e}"))),
        Err(failure) => Err(failure),
    };
    let now = commerce.app.clock.now_millis();
    let updated = match &outcome {
        Ok((facts, bytes)) => {
            tracing::info!(
                video = id,
                duration_ms = facts.duration_ms,
                width = facts.width,
                height = facts.height,
                took_ms = took.elapsed().as_millis() as u64,
                "video ready"
            );
            sqlx::query(
                "UPDATE product_videos SET status = 'ready', bytes = $1, duration_ms = $2, width = $3, \
                 height = $4, has_audio = $5, error = NULL, ready_at = $6 \
                 WHERE id = $7 AND status = 'processing'",
            )
            .bind(*bytes as i64)
            .bind(facts.duration_ms)
            .bind(i64::from(facts.width))
            .bind(i64::from(facts.height))
            .bind(i64::from(facts.has_audio))
            .bind(now)
            .bind(id)
            .execute(db)
            .await?
            .rows_affected()
        }
        Err(failure) => {
            if !matches!(failure, VideoFailure::Cancelled) {
                tracing::warn!(video = id, error = %failure, "video not transcoded");
            }
            remove_file(&mp4_part).await;
            remove_file(&cover_part).await;
            sqlx::query(
                "UPDATE product_videos SET status = 'failed', error = $1 WHERE id = $2 AND status = 'processing'",
            )
            .bind(failure.code())
            .bind(id)
            .execute(db)
            .await?
            .rows_affected()
        }
    };
    if updated == 0 {
        // Deleted meanwhile: whatever was written goes too.
        if row_gone(commerce, id).await? {
            remove_folder(&folder).await;
        }
    } else if outcome.is_err() {
        // A failed video keeps no files (an output renamed before a later step failed included).
        remove_folder(&folder).await;
    } else {
        // Ready: the upload is not needed any more.
        remove_file(&folder.join("source")).await;
    }
    Ok(())
}

async fn row_gone(commerce: &Commerce, id: i64) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM product_videos WHERE id = $1")
        .bind(id)
        .fetch_optional(commerce.app.db.pool())
        .await?;
    Ok(found.is_none())
}

/// At start: resumes the jobs a restart interrupted on this node (or fails those started
/// [`MAX_ATTEMPTS`] times already) and removes stale temporary uploads.
pub(crate) async fn recover(commerce: Commerce) {
    if let Err(e) = try_recover(&commerce).await {
        tracing::error!(error = %e, "could not recover video jobs");
    }
}

async fn try_recover(commerce: &Commerce) -> anyhow::Result<()> {
    let videos = &commerce.videos;
    let store = videos.store_id().await?.to_owned();
    // Only rows from before this start: an upload taken since is this process's own, and may
    // not have moved its file in yet.
    let started = commerce.app.clock.now_millis();
    let rows = sqlx::query(
        "SELECT id, attempts FROM product_videos WHERE status = 'processing' AND store_id = $1 \
         AND created_at < $2 ORDER BY id",
    )
    .bind(&store)
    .bind(started)
    .fetch_all(commerce.app.db.pool())
    .await?;
    for row in &rows {
        let (id, attempts): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let folder = videos.folder(id);
        remove_file(&folder.join("video.mp4.part")).await;
        remove_file(&folder.join("cover.jpg.part")).await;
        let source = tokio::fs::try_exists(folder.join("source"))
            .await
            .unwrap_or(false);
        if source && attempts < MAX_ATTEMPTS {
            tracing::info!(video = id, attempts, "resuming an interrupted video job");
            start_job(commerce, id);
        } else {
            tracing::warn!(video = id, attempts, "failing an interrupted video job");
            sqlx::query(
                "UPDATE product_videos SET status = 'failed', error = 'interrupted' WHERE id = $1 AND status = 'processing'",
            )
            .bind(id)
            .execute(commerce.app.db.pool())
            .await?;
            remove_file(&folder.join("source")).await;
        }
    }
    let mut incoming = tokio::fs::read_dir(videos.dir.join(INCOMING)).await?;
    while let Some(entry) = incoming.next_entry().await? {
        let stale = entry
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_UPLOAD);
        if stale {
            remove_file(&entry.path()).await;
        }
    }
    Ok(())
}
