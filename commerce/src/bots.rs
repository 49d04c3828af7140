//! Simulated buyer traffic (模拟买家) at the edge: the routes that start, change, show and
//! remove a room's crowd of bot buyers, each class's pool of bot accounts, and the driver — one
//! task per room with bots — that runs [`BotCrowd`] in real time.
//!
//! Bots behave like viewers because they take a viewer's paths: they enter the room through
//! [`LiveRooms::enter`] (the hub's in-process connections, counted in viewers, presence and
//! watch time), their likes and comments go through the room's rules, and their orders,
//! payments, grabs and claims call the very handlers a person's requests reach, with the bot as
//! the caller — the same checks, gates, stock, wallet and idempotency. A bot account is a real
//! account (`accounts.is_bot`) that cannot log in and is in no roster; it may enter the rooms of
//! its own class only (`Principal::bot_class`).
//!
//! Which node runs a crowd is a lease in `room_bots` (`runner`, `lease_until`), renewed every
//! few seconds. Settings changed or the crowd removed on another node show at the next renewal
//! (`version`, `active`); a crowd whose node stopped is taken over by the sweeper of any node
//! ([`resume`]) once its lease ran out, so a restart resumes a live room's bots from the stored
//! settings. A crowd stops when it is removed, when the live ends, and (leaving its lease for
//! the next start) when the node shuts down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::{Extension, Json};
use foundation::audit::AuditEvent;
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, CurrentUser};
use foundation::identity::Principal;
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::{Notify, mpsc, watch};
use utoipa::ToSchema;

use crate::core::bots::{
    self as rules, BotAction, BotCrowd, BotId, BuyFailure, CrowdSettings, Offer, OfferedBag,
    OfferedProduct, OfferedSale, Permille, RateKind, SettingsError,
};
use crate::dashboard::SOLD;
use crate::rooms::RoomPresence;
use crate::{Commerce, Inner, coupons, flash_sales, lock, orders, red_packets};

/// How long a node's claim on a crowd lasts without renewal.
const LEASE_MS: i64 = 15_000;
/// How often the runner renews its lease (and notices changes from other nodes).
const RENEW_EVERY_MS: i64 = 3_000;
/// How often the runner looks at what the room offers.
const OFFER_EVERY_MS: i64 = 2_000;
/// How often the runner checks the room is still live.
const LIVE_CHECK_MS: i64 = 1_000;
/// The driver wakes at most this often: what is due meanwhile is done together.
const MIN_STEP_MS: i64 = 50;

/// A bot account of a class's pool.
#[derive(Debug, Clone)]
struct BotAccount {
    id: i64,
    name: String,
}

/// What a runner shares with the routes of its node.
#[derive(Debug, Default)]
struct Stats {
    present: AtomicU32,
    likes: AtomicU64,
}

struct Running {
    nudge: Arc<Notify>,
    stats: Arc<Stats>,
}

/// The crowds this node runs.
pub(crate) struct Crowds {
    /// This node's name in `room_bots.runner`.
    node: String,
    running: Mutex<HashMap<i64, Running>>,
    shutdown: watch::Sender<bool>,
}

impl Crowds {
    pub(crate) fn new() -> Self {
        let mut id = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        Self {
            node: hex::encode(id),
            running: Mutex::default(),
            shutdown: watch::Sender::new(false),
        }
    }

    fn stats(&self, room: i64) -> Option<Arc<Stats>> {
        lock(&self.running).get(&room).map(|r| r.stats.clone())
    }

    /// Tells the runner of `room` on this node to look at its row now.
    fn nudge(&self, room: i64) {
        if let Some(running) = lock(&self.running).get(&room) {
            running.nudge.notify_one();
        }
    }

    /// Stops every crowd of this node (their bots leave; the crowds stay on for another node or
    /// the next start), waiting up to `grace` for them.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        while !lock(&self.running).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A `room_bots` row.
#[derive(Debug, Clone)]
struct CrowdRow {
    class_id: i64,
    settings: CrowdSettings,
    active: bool,
    version: i64,
    started_at: i64,
    stop_reason: Option<String>,
    stopped_at: Option<i64>,
    present: i64,
    likes: i64,
}

const ROW_COLUMNS: &str = "SELECT class_id, bot_count, arrivals_per_minute, like_permille, comment_permille, \
     buy_permille, stay_minutes, active, version, started_at, stop_reason, stopped_at, present, likes FROM room_bots";

fn settings_from(row: &sqlx::any::AnyRow, at: usize) -> Result<CrowdSettings, sqlx::Error> {
    let int = |i: usize| -> Result<u32, sqlx::Error> {
        Ok(u32::try_from(row.try_get::<i64, _>(at + i)?).unwrap_or(1))
    };
    Ok(CrowdSettings {
        count: int(0)?,
        arrivals_per_minute: int(1)?,
        like: Permille::from_stored(row.try_get(at + 2)?),
        comment: Permille::from_stored(row.try_get(at + 3)?),
        buy: Permille::from_stored(row.try_get(at + 4)?),
        stay_minutes: int(5)?,
    })
}

fn crowd_row(row: &sqlx::any::AnyRow) -> Result<CrowdRow, sqlx::Error> {
    Ok(CrowdRow {
        class_id: row.try_get(0)?,
        settings: settings_from(row, 1)?,
        active: row.try_get::<i64, _>(7)? == 1,
        version: row.try_get(8)?,
        started_at: row.try_get(9)?,
        stop_reason: row.try_get(10)?,
        stopped_at: row.try_get(11)?,
        present: row.try_get(12)?,
        likes: row.try_get(13)?,
    })
}

async fn load_row(state: &AppState, room: i64) -> ApiResult<Option<CrowdRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{ROW_COLUMNS} WHERE room_id = $1"
    )))
    .bind(room)
    .fetch_optional(state.db.pool())
    .await?;
    Ok(row.as_ref().map(crowd_row).transpose()?)
}

// ---------------------------------------------------------------------------------------------
// The routes.

/// A room's crowd settings. Rates are per visit, 0–1 (kept to three decimals).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotSettingsBody {
    /// Most bots in the room at once, 1–500.
    pub count: i64,
    /// How many arrive per minute (1–600), one at a time, while fewer than `count` are in.
    pub arrivals_per_minute: i64,
    /// Share of visits that like (tapping now and then).
    pub like_rate: f64,
    /// Share of visits that comment.
    pub comment_rate: f64,
    /// Share of visits that buy one unit (a flash sale draws twice as many).
    pub buy_rate: f64,
    /// Average stay of a visit, 1–240 minutes (default 10).
    pub stay_minutes: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BotSettingsView {
    pub count: i64,
    pub arrivals_per_minute: i64,
    pub like_rate: f64,
    pub comment_rate: f64,
    pub buy_rate: f64,
    pub stay_minutes: i64,
}

impl From<CrowdSettings> for BotSettingsView {
    fn from(s: CrowdSettings) -> Self {
        Self {
            count: i64::from(s.count),
            arrivals_per_minute: i64::from(s.arrivals_per_minute),
            like_rate: s.like.as_rate(),
            comment_rate: s.comment.as_rate(),
            buy_rate: s.buy.as_rate(),
            stay_minutes: i64::from(s.stay_minutes),
        }
    }
}

/// A room's bots: the settings and what they did since they were started.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomBotsView {
    pub room_id: i64,
    /// Whether the crowd is on (bots in the room or arriving).
    pub running: bool,
    /// The latest settings; null when the room never had bots.
    pub settings: Option<BotSettingsView>,
    /// When the crowd was started, and stopped (Unix ms).
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    /// `removed` (by the host or an instructor) or `live_ended`.
    pub stop_reason: Option<String>,
    /// Bots in the room now.
    pub present: i64,
    /// Since `started_at`: likes sent, comments stored, orders placed (any status) and sold
    /// (paid and not refunded).
    pub likes: i64,
    pub comments: i64,
    pub orders: i64,
    pub paid_orders: i64,
}

fn settings_error(e: SettingsError) -> ApiError {
    ApiError::validation(match e {
        SettingsError::Count => format!("模拟买家人数须在 1 到 {} 之间", rules::MAX_BOTS),
        SettingsError::ArrivalRate => format!(
            "每分钟进场人数须在 1 到 {} 之间",
            rules::MAX_ARRIVALS_PER_MINUTE
        ),
        SettingsError::Rate(kind) => format!(
            "{}须为 0 到 1 之间的数",
            match kind {
                RateKind::Like => "点赞比例",
                RateKind::Comment => "评论比例",
                RateKind::Buy => "下单比例",
            }
        ),
        SettingsError::Stay => {
            format!("平均停留时长须在 1 到 {} 分钟之间", rules::MAX_STAY_MINUTES)
        }
    })
}

/// Hosts and the class's instructors add bots to a room.
async fn require_host(commerce: &Commerce, p: &Principal, room: i64) -> ApiResult<i64> {
    let access = commerce.access(p, room).await?;
    if !access.runs_tools() {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "只有主播（或本班讲师）可以设置模拟买家",
        ));
    }
    Ok(access.class_id)
}

/// Whether `room` is live: its running copy on this node says, else the stored status.
async fn is_live(commerce: &Commerce, room: i64) -> ApiResult<bool> {
    if let Some(counts) = commerce.rooms.counts(room).await {
        return Ok(counts.live);
    }
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM rooms WHERE id = $1")
        .bind(room)
        .fetch_optional(commerce.app.db.pool())
        .await?;
    Ok(status.as_deref() == Some("live"))
}

/// Start bots in a live room, or change the settings of those running (from the next visit;
/// a smaller count sends the extra bots away at once).
#[utoipa::path(put, path = "/api/v1/rooms/{id}/bots", tag = "commerce", request_body = BotSettingsBody,
    params(("id" = i64, Path, description = "room id")),
    responses((status = 200, body = RoomBotsView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn put_bots(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiJson(body): ApiJson<BotSettingsBody>,
) -> ApiResult<Json<RoomBotsView>> {
    let class = require_host(&commerce, &p, room).await?;
    let settings = CrowdSettings::parse(
        body.count,
        body.arrivals_per_minute,
        body.like_rate,
        body.comment_rate,
        body.buy_rate,
        body.stay_minutes.unwrap_or(10),
    )
    .map_err(settings_error)?;
    if !is_live(&commerce, room).await? {
        return Err(ErrorCode::BotsNotLive.into());
    }
    // The accounts first: a crowd never runs without its bots.
    ensure_pool(&state, class, settings.count, Some(p.account_id)).await?;
    let now = state.clock.now_millis();
    let row = sqlx::query(
        "INSERT INTO room_bots (room_id, class_id, bot_count, arrivals_per_minute, like_permille, comment_permille, \
         buy_permille, stay_minutes, active, version, started_by, started_at, runner, lease_until, present, likes, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 1, $9, $10, $11, $12, 0, 0, $10) \
         ON CONFLICT (room_id) DO UPDATE SET bot_count = excluded.bot_count, \
         arrivals_per_minute = excluded.arrivals_per_minute, like_permille = excluded.like_permille, \
         comment_permille = excluded.comment_permille, buy_permille = excluded.buy_permille, \
         stay_minutes = excluded.stay_minutes, version = room_bots.version + 1, \
         started_by = CASE WHEN room_bots.active = 1 THEN room_bots.started_by ELSE excluded.started_by END, \
         started_at = CASE WHEN room_bots.active = 1 THEN room_bots.started_at ELSE excluded.started_at END, \
         likes = CASE WHEN room_bots.active = 1 THEN room_bots.likes ELSE 0 END, \
         present = CASE WHEN room_bots.active = 1 THEN room_bots.present ELSE 0 END, \
         runner = CASE WHEN room_bots.active = 1 AND room_bots.lease_until >= excluded.updated_at \
           THEN room_bots.runner ELSE excluded.runner END, \
         lease_until = CASE WHEN room_bots.active = 1 AND room_bots.lease_until >= excluded.updated_at \
           THEN room_bots.lease_until ELSE excluded.lease_until END, \
         stop_reason = NULL, stopped_at = NULL, active = 1, updated_at = excluded.updated_at \
         RETURNING runner",
    )
    .bind(room)
    .bind(class)
    .bind(i64::from(settings.count))
    .bind(i64::from(settings.arrivals_per_minute))
    .bind(i64::from(settings.like.get()))
    .bind(i64::from(settings.comment.get()))
    .bind(i64::from(settings.buy.get()))
    .bind(i64::from(settings.stay_minutes))
    .bind(p.account_id)
    .bind(now)
    .bind(&commerce.bots.node)
    .bind(now + LEASE_MS)
    .fetch_one(state.db.pool())
    .await?;
    let runner: Option<String> = row.try_get(0)?;
    // Run here when this node holds the lease; another node's runner sees the new version at
    // its next renewal.
    if runner.as_deref() == Some(commerce.bots.node.as_str()) {
        start_here(&commerce, room).await?;
    }
    Ok(Json(view(&commerce, room, now).await?))
}

/// A room's bots: settings, how many are in the room, what they did.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/bots", tag = "commerce",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 200, body = RoomBotsView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn get_bots(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
) -> ApiResult<Json<RoomBotsView>> {
    require_host(&commerce, &p, room).await?;
    Ok(Json(view(&commerce, room, state.clock.now_millis()).await?))
}

/// Remove the bots: they leave the room now (within a few seconds when another node runs them).
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/bots", tag = "commerce",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_bots(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    require_host(&commerce, &p, room).await?;
    let now = state.clock.now_millis();
    stop_row(&state, room, "removed", now, None).await?;
    commerce.bots.nudge(room);
    Ok(StatusCode::NO_CONTENT)
}

/// Marks a running crowd stopped (one winner across nodes: `WHERE active = 1`).
async fn stop_row(
    state: &AppState,
    room: i64,
    reason: &str,
    now: i64,
    likes: Option<i64>,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE room_bots SET active = 0, stop_reason = $1, stopped_at = $2, runner = NULL, lease_until = NULL, \
         present = 0, likes = COALESCE($3, likes), version = version + 1, updated_at = $2 \
         WHERE room_id = $4 AND active = 1",
    )
    .bind(reason)
    .bind(now)
    .bind(likes)
    .bind(room)
    .execute(state.db.pool())
    .await?;
    Ok(())
}

async fn view(commerce: &Commerce, room: i64, now: i64) -> ApiResult<RoomBotsView> {
    let state = &commerce.app;
    let Some(row) = load_row(state, room).await? else {
        return Ok(RoomBotsView {
            room_id: room,
            running: false,
            settings: None,
            started_at: None,
            stopped_at: None,
            stop_reason: None,
            present: 0,
            likes: 0,
            comments: 0,
            orders: 0,
            paid_orders: 0,
        });
    };
    let (present, likes) = match commerce.bots.stats(room).filter(|_| row.active) {
        Some(stats) => (
            i64::from(stats.present.load(Ordering::Relaxed)),
            i64::try_from(stats.likes.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        ),
        None => (if row.active { row.present } else { 0 }, row.likes),
    };
    let to = row.stopped_at.unwrap_or(now);
    let comments: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM room_messages m JOIN accounts a ON a.id = m.user_id \
         WHERE m.room_id = $1 AND m.at >= $2 AND m.at <= $3 AND a.is_bot = 1",
    )
    .bind(room)
    .bind(row.started_at)
    .bind(to)
    .fetch_one(state.db.pool())
    .await?;
    let counts = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*), CAST(SUM(CASE WHEN o.status IN {SOLD} THEN 1 ELSE 0 END) AS BIGINT) FROM orders o \
         JOIN accounts a ON a.id = o.buyer_id WHERE o.room_id = $1 AND o.created_at >= $2 AND o.created_at <= $3 \
         AND a.is_bot = 1"
    )))
    .bind(room)
    .bind(row.started_at)
    .bind(to)
    .fetch_one(state.db.pool())
    .await?;
    Ok(RoomBotsView {
        room_id: room,
        running: row.active,
        settings: Some(row.settings.into()),
        started_at: Some(row.started_at),
        stopped_at: row.stopped_at,
        stop_reason: row.stop_reason,
        present,
        likes,
        comments,
        orders: counts.try_get(0)?,
        paid_orders: counts.try_get::<Option<i64>, _>(1)?.unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Bot accounts.

/// The first `count` bots of `class`'s pool, created when missing (reused by every room and
/// live of the class). A bot's password hash is no hash: nothing verifies against it.
async fn ensure_pool(
    state: &AppState,
    class: i64,
    count: u32,
    actor: Option<i64>,
) -> ApiResult<Vec<BotAccount>> {
    let load = || async {
        let rows = sqlx::query(
            "SELECT b.slot, a.id, a.name FROM bot_accounts b JOIN accounts a ON a.id = b.account_id \
             WHERE b.class_id = $1 AND b.slot < $2 ORDER BY b.slot",
        )
        .bind(class)
        .bind(i64::from(count))
        .fetch_all(state.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>(0)?,
                    BotAccount {
                        id: r.try_get(1)?,
                        name: r.try_get(2)?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
    };
    let existing = load().await?;
    if existing.len() == count as usize {
        return Ok(existing.into_iter().map(|(_, a)| a).collect());
    }
    let have: std::collections::HashSet<i64> = existing.iter().map(|(slot, _)| *slot).collect();
    let now = state.clock.now_millis();
    let mut tx = state.db.begin_write().await?;
    let mut created = 0u32;
    for slot in (0..count).filter(|s| !have.contains(&i64::from(*s))) {
        // Not a valid username (`~`), so no person's account can ever clash with it.
        let username = format!("~bot.{class}.{slot}");
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO accounts (username, name, password_hash, password_changed_at, created_at, updated_at, is_bot) \
             VALUES ($1, $2, '!bot', $3, $3, $3, 1) ON CONFLICT (username) DO NOTHING RETURNING id",
        )
        .bind(&username)
        .bind(rules::nickname(slot))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match inserted {
            Some(id) => id,
            None => {
                sqlx::query_scalar("SELECT id FROM accounts WHERE username = $1")
                    .bind(&username)
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        created += u32::from(inserted.is_some());
        sqlx::query(
            "INSERT INTO bot_accounts (account_id, class_id, slot) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(id)
        .bind(class)
        .bind(i64::from(slot))
        .execute(&mut *tx)
        .await?;
    }
    if created > 0 {
        state
            .audit
            .append_in(
                &mut tx,
                AuditEvent::new(actor, "bot_accounts_created", format!("class:{class}"))
                    .detail(serde_json::json!({"created": created, "pool": count})),
            )
            .await?;
    }
    tx.commit().await?;
    let all = load().await?;
    Ok(all.into_iter().map(|(_, a)| a).collect())
}

/// The caller a bot is to the handlers: no roles, no session, its class only.
fn principal(account: &BotAccount, class: i64) -> Principal {
    Principal {
        account_id: account.id,
        username: String::new(),
        name: account.name.clone(),
        roles: Vec::new(),
        institution_id: None,
        region_id: None,
        session_hash: String::new(),
        csrf_token: String::new(),
        bot_class: Some(class),
    }
}

// ---------------------------------------------------------------------------------------------
// The driver.

/// Takes over crowds whose lease ran out (their node stopped or restarted): one of the
/// sweeper's steps. A crowd of a room that is no longer live is stopped instead.
pub(crate) async fn resume(commerce: &Commerce, now: i64) -> anyhow::Result<()> {
    if *commerce.bots.shutdown.borrow() {
        return Ok(());
    }
    let rooms: Vec<i64> = sqlx::query_scalar(
        "SELECT room_id FROM room_bots WHERE active = 1 AND (lease_until IS NULL OR lease_until < $1) LIMIT 20",
    )
    .bind(now)
    .fetch_all(commerce.app.db.pool())
    .await?;
    for room in rooms {
        let claimed = sqlx::query(
            "UPDATE room_bots SET runner = $1, lease_until = $2 WHERE room_id = $3 AND active = 1 \
             AND (lease_until IS NULL OR lease_until < $4)",
        )
        .bind(&commerce.bots.node)
        .bind(now + LEASE_MS)
        .bind(room)
        .bind(now)
        .execute(commerce.app.db.pool())
        .await?
        .rows_affected();
        if claimed == 0 {
            continue;
        }
        if !is_live(commerce, room)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            stop_row(&commerce.app, room, "live_ended", now, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            continue;
        }
        tracing::info!(room, "resuming the buyer bots of a live room");
        start_here(commerce, room)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Starts the runner of `room` on this node (it holds the lease), or nudges the one running.
async fn start_here(commerce: &Commerce, room: i64) -> ApiResult<()> {
    if lock(&commerce.bots.running).contains_key(&room) {
        commerce.bots.nudge(room);
        return Ok(());
    }
    let row = load_row(&commerce.app, room)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let pool = ensure_pool(&commerce.app, row.class_id, row.settings.count, None).await?;
    let nudge = Arc::new(Notify::new());
    let stats = Arc::new(Stats::default());
    stats.likes.store(
        u64::try_from(row.likes).unwrap_or_default(),
        Ordering::Relaxed,
    );
    {
        let mut running = lock(&commerce.bots.running);
        if running.contains_key(&room) {
            return Ok(());
        }
        running.insert(
            room,
            Running {
                nudge: nudge.clone(),
                stats: stats.clone(),
            },
        );
    }
    let now = commerce.app.clock.now_millis();
    let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
    let driver = Driver {
        weak: Arc::downgrade(&commerce.0),
        room,
        class: row.class_id,
        crowd: BotCrowd::new(row.settings, rand::rngs::OsRng.next_u64(), now),
        pool,
        inside: Vec::new(),
        version: row.version,
        stats,
        outcomes_tx,
    };
    tokio::spawn(driver.run(nudge, outcomes, commerce.bots.shutdown.subscribe()));
    Ok(())
}

/// What came of a bot's order, for the crowd.
enum Outcome {
    Ordered { bot: BotId, order: i64 },
    Failed { bot: BotId, failure: BuyFailure },
}

/// Why a runner stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Removed here or on another node, or another node took over.
    Lost,
    LiveEnded,
    Shutdown,
}

struct Driver {
    /// The service, without keeping it alive.
    weak: Weak<Inner>,
    room: i64,
    class: i64,
    crowd: BotCrowd,
    /// The pool by slot; never shrinks, so a bot beyond a lowered count can still pay.
    pool: Vec<BotAccount>,
    /// The bots in the room, by slot.
    inside: Vec<Option<Box<dyn RoomPresence>>>,
    version: i64,
    stats: Arc<Stats>,
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
}

impl Driver {
    async fn run(
        mut self,
        nudge: Arc<Notify>,
        mut outcomes: mpsc::UnboundedReceiver<Outcome>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut next_live_check = 0;
        let mut next_renew = 0;
        let mut next_offer = 0;
        let stop = loop {
            let Some(inner) = self.weak.upgrade() else {
                break Stop::Shutdown;
            };
            let commerce = Commerce(inner);
            if *shutdown.borrow() {
                break Stop::Shutdown;
            }
            let now = commerce.app.clock.now_millis();
            if now >= next_live_check {
                next_live_check = now + LIVE_CHECK_MS;
                match is_live(&commerce, self.room).await {
                    Ok(false) => break Stop::LiveEnded,
                    Ok(true) => {}
                    Err(e) => {
                        tracing::warn!(room = self.room, error = %e, "bots: live check failed")
                    }
                }
            }
            if now >= next_renew {
                next_renew = now + RENEW_EVERY_MS;
                match self.renew(&commerce, now).await {
                    Ok(true) => {}
                    Ok(false) => break Stop::Lost,
                    Err(e) => {
                        tracing::warn!(room = self.room, error = %e, "bots: lease renewal failed")
                    }
                }
            }
            if now >= next_offer {
                next_offer = now + OFFER_EVERY_MS;
                match load_offer(&commerce.app, self.room, now).await {
                    Ok(offer) => self.crowd.set_offer(offer, now),
                    Err(e) => tracing::warn!(room = self.room, error = %e, "bots: offer not read"),
                }
            }
            let actions = self.crowd.poll(now);
            self.execute(&commerce, actions).await;
            self.stats
                .present
                .store(self.crowd.present(), Ordering::Relaxed);
            let wake = self
                .crowd
                .next_wake(now)
                .unwrap_or(i64::MAX)
                .min(next_live_check)
                .min(next_renew)
                .min(next_offer);
            let sleep = Duration::from_millis(
                u64::try_from((wake - now).clamp(MIN_STEP_MS, LIVE_CHECK_MS)).unwrap_or(50),
            );
            // Do not hold the service while asleep.
            drop(commerce);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = nudge.notified() => {
                    next_renew = 0;
                    next_offer = 0;
                }
                _ = shutdown.changed() => {}
                Some(outcome) = outcomes.recv() => {
                    let now = self.weak.upgrade().map_or(now, |c| c.app.clock.now_millis());
                    match outcome {
                        Outcome::Ordered { bot, order } => self.crowd.ordered(bot, order, now),
                        Outcome::Failed { bot, failure } => self.crowd.buy_failed(bot, failure, now),
                    }
                }
            }
        };
        self.finish(stop).await;
    }

    /// Renews the lease and reports the counters; false when the crowd is no longer this
    /// node's (removed, or taken over). New settings apply at once.
    async fn renew(&mut self, commerce: &Commerce, now: i64) -> ApiResult<bool> {
        let row = sqlx::query(
            "UPDATE room_bots SET lease_until = $1, present = $2, likes = $3, updated_at = $4 \
             WHERE room_id = $5 AND runner = $6 AND active = 1 \
             RETURNING version, bot_count, arrivals_per_minute, like_permille, comment_permille, buy_permille, stay_minutes",
        )
        .bind(now + LEASE_MS)
        .bind(i64::from(self.crowd.present()))
        .bind(i64::try_from(self.stats.likes.load(Ordering::Relaxed)).unwrap_or(i64::MAX))
        .bind(now)
        .bind(self.room)
        .bind(&commerce.bots.node)
        .fetch_optional(commerce.app.db.pool())
        .await?;
        let Some(row) = row else { return Ok(false) };
        let version: i64 = row.try_get(0)?;
        if version != self.version {
            self.version = version;
            let settings = settings_from(&row, 1)?;
            if settings.count as usize > self.pool.len() {
                self.pool = ensure_pool(&commerce.app, self.class, settings.count, None).await?;
            }
            self.crowd.update(settings, now);
        }
        Ok(true)
    }

    async fn execute(&mut self, commerce: &Commerce, actions: Vec<BotAction>) {
        for action in actions {
            match action {
                BotAction::Arrive(bot) => {
                    let Some(p) = self.principal(bot) else {
                        continue;
                    };
                    match commerce.rooms.enter(&p, self.room).await {
                        Ok(presence) => {
                            let slot = bot as usize;
                            if self.inside.len() <= slot {
                                self.inside.resize_with(slot + 1, || None);
                            }
                            self.inside[slot] = Some(presence);
                        }
                        Err(e) => {
                            tracing::warn!(room = self.room, bot, error = %e, "a bot could not enter")
                        }
                    }
                }
                BotAction::Leave(bot) => {
                    if let Some(presence) = self.inside.get_mut(bot as usize).and_then(Option::take)
                    {
                        presence.leave().await;
                    }
                }
                BotAction::Like { bot, taps } => {
                    let slot = bot as usize;
                    let Some(presence) = self.inside.get(slot).and_then(|p| p.as_deref()) else {
                        continue;
                    };
                    if presence.like(taps).await {
                        self.stats
                            .likes
                            .fetch_add(u64::from(taps), Ordering::Relaxed);
                    } else if presence.is_closed() {
                        self.inside[slot] = None;
                    }
                }
                BotAction::Comment { bot, text } | BotAction::CommentKeyword { bot, text, .. } => {
                    let slot = bot as usize;
                    let Some(presence) = self.inside.get(slot).and_then(|p| p.as_deref()) else {
                        continue;
                    };
                    if !presence.chat(text).await && presence.is_closed() {
                        self.inside[slot] = None;
                    }
                }
                BotAction::Buy {
                    bot,
                    sku,
                    flash_sale,
                } => {
                    let Some(p) = self.principal(bot) else {
                        continue;
                    };
                    let commerce = commerce.clone();
                    let room = self.room;
                    let outcomes = self.outcomes_tx.clone();
                    tokio::spawn(async move {
                        let outcome = match buy(&commerce, p, room, bot, sku, flash_sale).await {
                            Ok(order) => Outcome::Ordered { bot, order },
                            Err(e) => Outcome::Failed {
                                bot,
                                failure: failure_of(room, &e),
                            },
                        };
                        let _ = outcomes.send(outcome);
                    });
                }
                BotAction::Pay { bot, order } => {
                    let Some(p) = self.principal(bot) else {
                        continue;
                    };
                    let commerce = commerce.clone();
                    spawn_logged(self.room, "pay", async move {
                        orders::order_action(
                            State(commerce.app.clone()),
                            Extension(commerce.clone()),
                            CurrentUser(p),
                            ApiPath((order, "pay".to_owned())),
                            Bytes::new(),
                        )
                        .await
                        .map(drop)
                    });
                }
                BotAction::GrabRedPacket { bot, packet } => {
                    let Some(p) = self.principal(bot) else {
                        continue;
                    };
                    let commerce = commerce.clone();
                    spawn_logged(self.room, "grab", async move {
                        red_packets::grab(
                            State(commerce.app.clone()),
                            Extension(commerce.clone()),
                            CurrentUser(p),
                            ApiPath(packet),
                        )
                        .await
                        .map(drop)
                    });
                }
                BotAction::ClaimCoupon { bot, coupon } => {
                    let Some(p) = self.principal(bot) else {
                        continue;
                    };
                    let commerce = commerce.clone();
                    spawn_logged(self.room, "claim", async move {
                        coupons::claim_coupon(
                            State(commerce.app.clone()),
                            Extension(commerce.clone()),
                            CurrentUser(p),
                            ApiPath(coupon),
                        )
                        .await
                        .map(drop)
                    });
                }
            }
        }
    }

    fn principal(&self, bot: BotId) -> Option<Principal> {
        self.pool
            .get(bot as usize)
            .map(|a| principal(a, self.class))
    }

    /// The bots leave; the row says why the crowd stopped (unless it is no longer ours).
    async fn finish(mut self, stop: Stop) {
        let leaving = self.crowd.stop();
        for action in leaving {
            if let BotAction::Leave(bot) = action
                && let Some(presence) = self.inside.get_mut(bot as usize).and_then(Option::take)
            {
                presence.leave().await;
            }
        }
        // Anyone still recorded as inside (a failed leave) goes too.
        for presence in self.inside.drain(..).flatten() {
            presence.leave().await;
        }
        if let Some(inner) = self.weak.upgrade() {
            let commerce = Commerce(inner);
            let now = commerce.app.clock.now_millis();
            let likes = i64::try_from(self.stats.likes.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
            lock(&commerce.bots.running).remove(&self.room);
            let written = match stop {
                // Removed and started again while this runner was on its way out: let the
                // sweeper start a fresh one now rather than when the lease runs out.
                Stop::Lost => sqlx::query(
                    "UPDATE room_bots SET lease_until = NULL WHERE room_id = $1 AND runner = $2 AND active = 1",
                )
                .bind(self.room)
                .bind(&commerce.bots.node)
                .execute(commerce.app.db.pool())
                .await
                .map(|_| ())
                .map_err(ApiError::from),
                Stop::LiveEnded => {
                    stop_row(&commerce.app, self.room, "live_ended", now, Some(likes)).await
                }
                // Left for the next start (or another node) to resume.
                Stop::Shutdown => sqlx::query(
                    "UPDATE room_bots SET runner = NULL, lease_until = NULL, present = 0, likes = $1, updated_at = $2 \
                     WHERE room_id = $3 AND runner = $4 AND active = 1",
                )
                .bind(likes)
                .bind(now)
                .bind(self.room)
                .bind(&commerce.bots.node)
                .execute(commerce.app.db.pool())
                .await
                .map(|_| ())
                .map_err(ApiError::from),
            };
            if let Err(e) = written {
                tracing::warn!(room = self.room, error = %e, "bots: could not record the stop");
            }
        }
        tracing::info!(room = self.room, ?stop, "buyer bots stopped");
    }
}

/// The unused, valid claim of `account` with the largest discount on one unit of `sku` (its
/// shop's coupons whose threshold the price reaches; a discount counts up to the price less a
/// cent, as checkout caps it).
async fn best_coupon(commerce: &Commerce, account: i64, sku: i64) -> ApiResult<Option<i64>> {
    let now = commerce.app.clock.now_millis();
    Ok(sqlx::query_scalar(
        "SELECT cc.id FROM coupon_claims cc JOIN coupons c ON c.id = cc.coupon_id \
         JOIN skus s ON s.id = $2 JOIN products p ON p.id = s.product_id \
         WHERE cc.account_id = $1 AND cc.used_order_id IS NULL AND c.shop_id = p.shop_id \
         AND c.threshold_cents <= s.price_cents AND c.valid_from <= $3 AND $3 < c.valid_until \
         ORDER BY CASE WHEN c.discount_cents < s.price_cents THEN c.discount_cents ELSE s.price_cents - 1 END DESC, \
         cc.id LIMIT 1",
    )
    .bind(account)
    .bind(sku)
    .bind(now)
    .fetch_optional(commerce.app.db.pool())
    .await?)
}

/// A bot's order: one unit, through the flash sale's or the shop's order handler, with a fresh
/// idempotency key (a bot does not retry).
async fn buy(
    commerce: &Commerce,
    p: Principal,
    room: i64,
    bot: BotId,
    sku: i64,
    flash_sale: Option<i64>,
) -> ApiResult<i64> {
    let mut key = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let mut headers = HeaderMap::new();
    headers.insert(
        "idempotency-key",
        HeaderValue::from_str(&format!("bot-{}", hex::encode(key))).map_err(ApiError::internal)?,
    );
    let address = rules::address(bot).to_owned();
    let (_, Json(order)) = match flash_sale {
        Some(sale) => {
            let body = serde_json::to_vec(&serde_json::json!({"address": address}))
                .map_err(ApiError::internal)?;
            flash_sales::order_flash_sale(
                State(commerce.app.clone()),
                Extension(commerce.clone()),
                CurrentUser(p),
                ApiPath(sale),
                headers,
                Bytes::from(body),
            )
            .await?
        }
        None => {
            // Like a thrifty viewer: the best coupon it holds that applies; if checkout refuses
            // it (it expired a moment ago), the bot buys without.
            let place = |coupon_claim_id: Option<i64>| {
                orders::place_order(
                    State(commerce.app.clone()),
                    Extension(commerce.clone()),
                    CurrentUser(p.clone()),
                    headers.clone(),
                    ApiJson(orders::PlaceOrder {
                        sku_id: sku,
                        quantity: 1,
                        room_id: Some(room),
                        coupon_claim_id,
                        address: Some(address.clone()),
                    }),
                )
            };
            let coupon = best_coupon(commerce, p.account_id, sku).await?;
            match place(coupon).await {
                Err(e)
                    if coupon.is_some()
                        && matches!(
                            e.code,
                            ErrorCode::CouponNotApplicable | ErrorCode::CouponExpired
                        ) =>
                {
                    place(None).await?
                }
                placed => placed?,
            }
        }
    };
    Ok(order.id)
}

fn failure_of(room: i64, e: &ApiError) -> BuyFailure {
    match e.code {
        ErrorCode::SoldOut | ErrorCode::LimitReached | ErrorCode::SaleEnded => BuyFailure::SoldOut,
        _ => {
            log_refusal(room, "buy", e);
            BuyFailure::Other
        }
    }
}

/// Refusals are part of the game (sold out, already grabbed, no money left); failures are not.
/// Runs a bot's request in a task of its own (the crowd does not wait for it); a refusal is
/// logged, as a person would just see it.
fn spawn_logged(
    room: i64,
    what: &'static str,
    request: impl std::future::Future<Output = ApiResult<()>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(e) = request.await {
            log_refusal(room, what, &e);
        }
    });
}

fn log_refusal(room: i64, what: &str, e: &ApiError) {
    if e.code.status().is_server_error() {
        tracing::warn!(room, what, error = %e, "a bot's request failed");
    } else {
        tracing::debug!(room, what, error = %e, "a bot's request was refused");
    }
}

/// What the room offers now, as the bots see it.
async fn load_offer(state: &AppState, room: i64, now: i64) -> ApiResult<Offer> {
    let rows = sqlx::query(
        "SELECT p.id, p.title, rp.pinned_at, k.id FROM room_products rp JOIN products p ON p.id = rp.product_id \
         JOIN shops s ON s.id = p.shop_id JOIN skus k ON k.product_id = p.id \
         WHERE rp.room_id = $1 AND p.status = 'listed' AND s.status = 'open' AND k.stock > 0 \
         ORDER BY rp.position, k.id",
    )
    .bind(room)
    .fetch_all(state.db.pool())
    .await?;
    let mut offer = Offer::default();
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        let sku: i64 = row.try_get(3)?;
        let pinned = row.try_get::<Option<i64>, _>(2)?.is_some();
        match offer.shelf.last_mut().filter(|p| p.id == id) {
            Some(product) => product.skus.push(sku),
            None => offer.shelf.push(OfferedProduct {
                id,
                title: row.try_get(1)?,
                skus: vec![sku],
            }),
        }
        if pinned {
            match offer.pinned.as_mut() {
                Some(product) => product.skus.push(sku),
                None => {
                    offer.pinned = Some(OfferedProduct {
                        id,
                        title: row.try_get(1)?,
                        skus: vec![sku],
                    })
                }
            }
        }
    }
    offer.flash_sales = sqlx::query(
        "SELECT id, sku_id, starts_at, ends_at FROM flash_sales WHERE room_id = $1 AND status = 'running' \
         AND ends_at > $2 AND sold < stock ORDER BY id",
    )
    .bind(room)
    .bind(now)
    .fetch_all(state.db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(OfferedSale {
            id: r.try_get(0)?,
            sku: r.try_get(1)?,
            starts_at: r.try_get(2)?,
            ends_at: r.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    offer.red_packets = sqlx::query_scalar(
        "SELECT id FROM red_packets WHERE room_id = $1 AND status = 'active' AND expires_at > $2 \
         AND grabbed_count < count ORDER BY id",
    )
    .bind(room)
    .bind(now)
    .fetch_all(state.db.pool())
    .await?;
    offer.coupons = sqlx::query_scalar(
        "SELECT id FROM coupons WHERE room_id = $1 AND valid_from <= $2 AND valid_until > $2 \
         AND claimed < total_quota ORDER BY id",
    )
    .bind(room)
    .bind(now)
    .fetch_all(state.db.pool())
    .await?;
    // Only comment bags: a watch bag is entered by staying in the room, and the hub counts a
    // bot's watch time like anyone's, so there is nothing to send for it.
    offer.lucky_bags = sqlx::query(
        "SELECT id, keyword, draws_at FROM lucky_bags WHERE room_id = $1 AND status = 'open' AND draws_at > $2 \
         AND task = 'comment' ORDER BY id",
    )
    .bind(room)
    .bind(now)
    .fetch_all(state.db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(OfferedBag {
            id: r.try_get(0)?,
            keyword: r.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
            draws_at: r.try_get(2)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // A bag without a keyword has no comment to send.
    offer.lucky_bags.retain(|b| !b.keyword.is_empty());
    Ok(offer)
}
