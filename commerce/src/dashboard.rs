//! The live data dashboard (数据看板) of a room, computed from what the hub and the shop
//! recorded — viewers now and peak, unique viewers and watch time, likes, comments, orders,
//! GMV, conversion, sales per product, red packets, coupons, flash sales — and the report kept
//! for each live session once it ends, with a short diagnosis (`core::diagnosis`). Instructors
//! see every session of their class side by side.
//!
//! Every number is of one live session (a room's live from its `started_at`): what the hub
//! counts (peak, likes, unique viewers, watch time) comes from its per-session rows
//! (`live_sessions`, `live_session_viewers`, migration 0011), not from the room's totals over
//! all its lives, so a room that goes live again starts from zero.

use axum::extract::State;
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiPath, CurrentUser};
use foundation::identity::{Principal, Role};
use foundation::org::Scope;
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::{Deserialize, Serialize};
use signaling::protocol::MemberRole;
use sqlx::Row;
use utoipa::ToSchema;

use crate::core::diagnosis::{self, Diagnosis, SessionNumbers};
use crate::{Commerce, LiveCounts};

/// Orders that count as sold: paid and not refunded (a pending refund or return still counts).
pub(crate) const SOLD: &str = "('paid', 'shipped', 'completed', 'refund_requested', 'return_requested', 'return_approved', 'return_shipped')";

/// A report that could not be written is retried for this long after its live ended (the scan
/// stays bounded by recent lives instead of growing with every live ever held).
const REPORT_RETRY_MS: i64 = 7 * 86_400_000;
/// A report is built this long after a live ends, so the last watch time and chat are stored.
const REPORT_DELAY_MS: i64 = 3_000;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductSales {
    pub title: String,
    pub units: i64,
    pub gmv_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MinuteBucket {
    /// Minutes since the live started.
    pub minute: i64,
    pub orders: i64,
    pub gmv_cents: i64,
    pub comments: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlashSaleResult {
    pub id: i64,
    pub title: String,
    pub stock: i64,
    pub sold: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Dashboard {
    pub room_id: i64,
    pub title: String,
    pub host_name: String,
    pub live: bool,
    /// Unix milliseconds; null before the first live.
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub duration_ms: i64,
    pub viewers_now: i64,
    pub peak_viewers: i64,
    /// People who watched while live (the host excluded).
    pub unique_viewers: i64,
    pub watch_ms_total: i64,
    pub avg_watch_ms: i64,
    pub likes: i64,
    pub comments: i64,
    pub commenters: i64,
    /// Orders placed (any status) and those paid.
    pub orders: i64,
    pub paid_orders: i64,
    pub buyers: i64,
    pub gmv_cents: i64,
    pub refunded_orders: i64,
    /// Paying buyers / unique viewers (0–1).
    pub conversion: f64,
    pub products: Vec<ProductSales>,
    pub timeline: Vec<MinuteBucket>,
    pub red_packets_sent: i64,
    pub red_packet_cents: i64,
    pub red_packet_grabs: i64,
    pub coupons_offered: i64,
    pub coupons_claimed: i64,
    pub coupons_used: i64,
    pub flash_sales: Vec<FlashSaleResult>,
    pub lucky_bags: i64,
    /// Of `lucky_bags`, those entered by watching (task `watch`). Reports written before watch
    /// bags existed read 0.
    #[serde(default)]
    pub watch_lucky_bags: i64,
    /// How much of it was simulated traffic (模拟买家): the buyer bots among the unique
    /// viewers, their comments, their orders (any status) and the GMV of those sold. Reports
    /// written before bots existed read 0.
    #[serde(default)]
    pub bot_viewers: i64,
    #[serde(default)]
    pub bot_comments: i64,
    #[serde(default)]
    pub bot_orders: i64,
    #[serde(default)]
    pub bot_gmv_cents: i64,
    /// When these numbers were computed.
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LiveReport {
    pub id: i64,
    pub room_id: i64,
    pub class_id: i64,
    pub host_id: i64,
    pub started_at: i64,
    pub ended_at: i64,
    pub dashboard: Dashboard,
    pub diagnosis: Diagnosis,
}

struct RoomRow {
    title: String,
    host_name: String,
    status: String,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    /// The room's totals over all its lives (only for a session without its own numbers).
    peak: i64,
    likes: i64,
}

async fn room_row(state: &AppState, room: i64) -> ApiResult<RoomRow> {
    let row = sqlx::query(
        "SELECT r.title, a.name, r.status, r.started_at, r.ended_at, r.peak_viewers, r.likes \
         FROM rooms r JOIN accounts a ON a.id = r.host_id WHERE r.id = $1",
    )
    .bind(room)
    .fetch_optional(state.db.pool())
    .await?
    .ok_or_else(ApiError::not_found)?;
    Ok(RoomRow {
        title: row.try_get(0)?,
        host_name: row.try_get(1)?,
        status: row.try_get(2)?,
        started_at: row.try_get(3)?,
        ended_at: row.try_get(4)?,
        peak: row.try_get(5)?,
        likes: row.try_get(6)?,
    })
}

/// The live session a dashboard is of: its start (none before a room's first live) and, once
/// over, end; whether it runs now; and the counters of the hub's running copy of the room on
/// this node, if any (its current or last session's).
struct Span {
    started_at: Option<i64>,
    ended_at: Option<i64>,
    live: bool,
    counts: Option<LiveCounts>,
}

/// A session's stored numbers (`live_sessions`): its peak, raised by every node, and the likes
/// taken while it ran, added by every node.
async fn session_row(
    state: &AppState,
    room: i64,
    started_at: i64,
) -> ApiResult<Option<(i64, i64)>> {
    let row = sqlx::query(
        "SELECT peak_viewers, likes FROM live_sessions WHERE room_id = $1 AND started_at = $2",
    )
    .bind(room)
    .bind(started_at)
    .fetch_optional(state.db.pool())
    .await?;
    Ok(match row {
        Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
        None => None,
    })
}

async fn scalar_pair(
    state: &AppState,
    sql: &'static str,
    room: i64,
    from: i64,
    to: i64,
) -> ApiResult<(i64, i64)> {
    let row = sqlx::query(sql)
        .bind(room)
        .bind(from)
        .bind(to)
        .fetch_one(state.db.pool())
        .await?;
    Ok((
        row.try_get::<Option<i64>, _>(0)?.unwrap_or_default(),
        row.try_get::<Option<i64>, _>(1)?.unwrap_or_default(),
    ))
}

/// The hub's numbers of a session: unique viewers, watch time, bot viewers, peak and likes.
struct Audience {
    unique_viewers: i64,
    watch_ms_total: i64,
    bot_viewers: i64,
    peak_viewers: i64,
    likes: i64,
}

async fn audience(state: &AppState, room: i64, r: &RoomRow, span: &Span) -> ApiResult<Audience> {
    // While the session runs, the hub's running room on this node is ahead of the stored
    // numbers (saved every 10 s); once it is over, every node has stored its part (the hub
    // saves at the end), and the stored numbers are the exact ones.
    let running = span.counts.filter(|c| span.live && c.live);
    let stored = match span.started_at {
        Some(started) => session_row(state, room, started).await?,
        None => None,
    };
    if let (Some(started), Some((peak, likes))) = (span.started_at, stored) {
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(SUM(v.watch_ms) AS BIGINT), \
             CAST(SUM(CASE WHEN a.is_bot = 1 THEN 1 ELSE 0 END) AS BIGINT) \
             FROM live_session_viewers v JOIN accounts a ON a.id = v.account_id \
             WHERE v.room_id = $1 AND v.started_at = $2",
        )
        .bind(room)
        .bind(started)
        .fetch_one(state.db.pool())
        .await?;
        return Ok(Audience {
            unique_viewers: row.try_get(0)?,
            watch_ms_total: row.try_get::<Option<i64>, _>(1)?.unwrap_or_default(),
            bot_viewers: row.try_get::<Option<i64>, _>(2)?.unwrap_or_default(),
            peak_viewers: running.map_or(peak, |c| i64::from(c.peak).max(peak)),
            likes: running.map_or(likes, |c| {
                i64::try_from(c.likes).unwrap_or(i64::MAX).max(likes)
            }),
        });
    }
    // Old data, a session without its own row (before a room's first live there is none
    // either, and every count below is then 0): fall back to the room's numbers as they were
    // reported before migration 0011 — viewers seen during the session with their watch time
    // in the room (over all its lives), and the room's peak and likes. (The migration copied
    // these into `live_sessions` for each room's last live, and the hub opens a row at every
    // start, so this is a safety net.)
    let from = span.started_at.unwrap_or(i64::MAX);
    let to = if span.live {
        i64::MAX
    } else {
        span.ended_at.unwrap_or(i64::MAX)
    };
    let row = sqlx::query(
        "SELECT COUNT(*), CAST(SUM(v.watch_ms) AS BIGINT), \
         CAST(SUM(CASE WHEN a.is_bot = 1 THEN 1 ELSE 0 END) AS BIGINT) \
         FROM room_viewers v JOIN accounts a ON a.id = v.account_id \
         WHERE v.room_id = $1 AND v.last_seen_at >= $2 AND v.first_seen_at <= $3",
    )
    .bind(room)
    .bind(from)
    .bind(to)
    .fetch_one(state.db.pool())
    .await?;
    Ok(Audience {
        unique_viewers: row.try_get(0)?,
        watch_ms_total: row.try_get::<Option<i64>, _>(1)?.unwrap_or_default(),
        bot_viewers: row.try_get::<Option<i64>, _>(2)?.unwrap_or_default(),
        peak_viewers: running.map_or(r.peak, |c| i64::from(c.peak).max(r.peak)),
        likes: running.map_or(r.likes, |c| {
            i64::try_from(c.likes).unwrap_or(i64::MAX).max(r.likes)
        }),
    })
}

/// The numbers of `room`'s live session `span` at `now`.
async fn compute(
    commerce: &Commerce,
    room: i64,
    r: RoomRow,
    span: Span,
    now: i64,
) -> ApiResult<Dashboard> {
    let state = &commerce.app;
    let live = span.live;
    let from = span.started_at.unwrap_or(i64::MAX);
    let to = if live {
        now
    } else {
        span.ended_at.unwrap_or(now)
    };
    let Audience {
        unique_viewers,
        watch_ms_total,
        bot_viewers,
        peak_viewers,
        likes,
    } = audience(state, room, &r, &span).await?;
    let (comments, commenters) = scalar_pair(
        state,
        "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM room_messages WHERE room_id = $1 AND at >= $2 AND at <= $3",
        room,
        from,
        to,
    )
    .await?;
    let (orders, _) = scalar_pair(
        state,
        "SELECT COUNT(*), CAST(0 AS BIGINT) FROM orders WHERE room_id = $1 AND created_at >= $2 AND created_at <= $3",
        room,
        from,
        to,
    )
    .await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*), COUNT(DISTINCT buyer_id), CAST(SUM(total_cents) AS BIGINT) FROM orders \
         WHERE room_id = $1 AND created_at >= $2 AND created_at <= $3 AND status IN {SOLD}"
    )))
    .bind(room)
    .bind(from)
    .bind(to)
    .fetch_one(state.db.pool())
    .await?;
    let paid_orders: i64 = row.try_get(0)?;
    let buyers: i64 = row.try_get(1)?;
    let gmv_cents: i64 = row.try_get::<Option<i64>, _>(2)?.unwrap_or_default();
    let (refunded_orders, _) = scalar_pair(
        state,
        "SELECT COUNT(*), CAST(0 AS BIGINT) FROM orders WHERE room_id = $1 AND created_at >= $2 AND created_at <= $3 AND status = 'refunded'",
        room,
        from,
        to,
    )
    .await?;
    let products = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT product_title, CAST(SUM(quantity) AS BIGINT), CAST(SUM(total_cents) AS BIGINT) FROM orders WHERE room_id = $1 AND created_at >= $2 \
         AND created_at <= $3 AND status IN {SOLD} GROUP BY product_title ORDER BY 3 DESC LIMIT 20"
    )))
    .bind(room)
    .bind(from)
    .bind(to)
    .fetch_all(state.db.pool())
    .await?
    .iter()
    .map(|p| {
        Ok(ProductSales {
            title: p.try_get(0)?,
            units: p.try_get::<Option<i64>, _>(1)?.unwrap_or_default(),
            gmv_cents: p.try_get::<Option<i64>, _>(2)?.unwrap_or_default(),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let timeline = timeline(state, room, from, to).await?;
    let (red_packets_sent, red_packet_cents) = scalar_pair(
        state,
        "SELECT COUNT(*), CAST(SUM(total_cents) AS BIGINT) FROM red_packets WHERE room_id = $1 AND created_at >= $2 AND created_at <= $3",
        room,
        from,
        to,
    )
    .await?;
    let (red_packet_grabs, _) = scalar_pair(
        state,
        "SELECT CAST(SUM(grabbed_count) AS BIGINT), CAST(0 AS BIGINT) FROM red_packets WHERE room_id = $1 AND created_at >= $2 AND created_at <= $3",
        room,
        from,
        to,
    )
    .await?;
    let (coupons_offered, coupons_claimed) = scalar_pair(
        state,
        "SELECT COUNT(*), CAST(SUM(claimed) AS BIGINT) FROM coupons WHERE room_id = $1 AND created_at >= $2 AND created_at <= $3",
        room,
        from,
        to,
    )
    .await?;
    let (coupons_used, _) = scalar_pair(
        state,
        "SELECT COUNT(*), CAST(0 AS BIGINT) FROM orders WHERE room_id = $1 AND created_at >= $2 AND created_at <= $3 AND coupon_claim_id IS NOT NULL",
        room,
        from,
        to,
    )
    .await?;
    let flash_sales = sqlx::query(
        "SELECT f.id, p.title, f.stock, f.sold FROM flash_sales f JOIN skus k ON k.id = f.sku_id \
         JOIN products p ON p.id = k.product_id WHERE f.room_id = $1 AND f.created_at >= $2 AND f.created_at <= $3 ORDER BY f.id",
    )
    .bind(room)
    .bind(from)
    .bind(to)
    .fetch_all(state.db.pool())
    .await?
    .iter()
    .map(|f| {
        Ok(FlashSaleResult {
            id: f.try_get(0)?,
            title: f.try_get(1)?,
            stock: f.try_get(2)?,
            sold: f.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let (lucky_bags, watch_lucky_bags) = scalar_pair(
        state,
        "SELECT COUNT(*), CAST(SUM(CASE WHEN task = 'watch' THEN 1 ELSE 0 END) AS BIGINT) FROM lucky_bags \
         WHERE room_id = $1 AND created_at >= $2 AND created_at <= $3",
        room,
        from,
        to,
    )
    .await?;
    let (bot_comments, _) = scalar_pair(
        state,
        "SELECT COUNT(*), CAST(0 AS BIGINT) FROM room_messages m JOIN accounts a ON a.id = m.user_id \
         WHERE m.room_id = $1 AND m.at >= $2 AND m.at <= $3 AND a.is_bot = 1",
        room,
        from,
        to,
    )
    .await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*), CAST(SUM(CASE WHEN o.status IN {SOLD} THEN o.total_cents ELSE 0 END) AS BIGINT) \
         FROM orders o JOIN accounts a ON a.id = o.buyer_id \
         WHERE o.room_id = $1 AND o.created_at >= $2 AND o.created_at <= $3 AND a.is_bot = 1"
    )))
    .bind(room)
    .bind(from)
    .bind(to)
    .fetch_one(state.db.pool())
    .await?;
    let bot_orders: i64 = row.try_get(0)?;
    let bot_gmv_cents: i64 = row.try_get::<Option<i64>, _>(1)?.unwrap_or_default();
    let numbers = SessionNumbers {
        unique_viewers,
        buyers,
        ..Default::default()
    };
    Ok(Dashboard {
        room_id: room,
        title: r.title,
        host_name: r.host_name,
        live,
        started_at: span.started_at,
        ended_at: if live { None } else { span.ended_at },
        duration_ms: span.started_at.map_or(0, |s| (to - s).max(0)),
        viewers_now: span.counts.map_or(0, |c| i64::from(c.viewers)),
        peak_viewers,
        unique_viewers,
        watch_ms_total,
        avg_watch_ms: if unique_viewers > 0 {
            watch_ms_total / unique_viewers
        } else {
            0
        },
        likes,
        comments,
        commenters,
        orders,
        paid_orders,
        buyers,
        gmv_cents,
        refunded_orders,
        conversion: diagnosis::conversion(&numbers),
        products,
        timeline,
        red_packets_sent,
        red_packet_cents,
        red_packet_grabs,
        coupons_offered,
        coupons_claimed,
        coupons_used,
        flash_sales,
        lucky_bags,
        watch_lucky_bags,
        bot_viewers,
        bot_comments,
        bot_orders,
        bot_gmv_cents,
        at: now,
    })
}

/// Orders, GMV and comments per minute of the live, for its charts.
async fn timeline(state: &AppState, room: i64, from: i64, to: i64) -> ApiResult<Vec<MinuteBucket>> {
    if from > to {
        return Ok(Vec::new());
    }
    let minutes = usize::try_from((to - from) / 60_000 + 1)
        .unwrap_or(0)
        .min(24 * 60);
    let mut buckets: Vec<MinuteBucket> = (0..minutes)
        .map(|m| MinuteBucket {
            minute: m as i64,
            orders: 0,
            gmv_cents: 0,
            comments: 0,
        })
        .collect();
    let orders = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT (created_at - $2) / 60000, COUNT(*), CAST(SUM(CASE WHEN status IN {SOLD} THEN total_cents ELSE 0 END) AS BIGINT) \
         FROM orders WHERE room_id = $1 AND created_at >= $2 AND created_at <= $3 GROUP BY 1"
    )))
    .bind(room)
    .bind(from)
    .bind(to)
    .fetch_all(state.db.pool())
    .await?;
    for row in &orders {
        let minute: i64 = row.try_get(0)?;
        if let Some(b) = usize::try_from(minute)
            .ok()
            .and_then(|m| buckets.get_mut(m))
        {
            b.orders = row.try_get(1)?;
            b.gmv_cents = row.try_get::<Option<i64>, _>(2)?.unwrap_or_default();
        }
    }
    let comments = sqlx::query(
        "SELECT (at - $2) / 60000, COUNT(*) FROM room_messages WHERE room_id = $1 AND at >= $2 AND at <= $3 GROUP BY 1",
    )
    .bind(room)
    .bind(from)
    .bind(to)
    .fetch_all(state.db.pool())
    .await?;
    for row in &comments {
        let minute: i64 = row.try_get(0)?;
        if let Some(b) = usize::try_from(minute)
            .ok()
            .and_then(|m| buckets.get_mut(m))
        {
            b.comments = row.try_get(1)?;
        }
    }
    Ok(buckets)
}

fn numbers_of(d: &Dashboard) -> SessionNumbers {
    let top_product = d
        .products
        .first()
        .filter(|_| d.gmv_cents > 0)
        .map(|p| (p.title.clone(), p.gmv_cents as f64 / d.gmv_cents as f64));
    SessionNumbers {
        duration_ms: d.duration_ms,
        unique_viewers: d.unique_viewers,
        peak_viewers: d.peak_viewers,
        avg_watch_ms: d.avg_watch_ms,
        likes: d.likes,
        comments: d.comments,
        orders: d.orders,
        paid_orders: d.paid_orders,
        buyers: d.buyers,
        gmv_cents: d.gmv_cents,
        red_packets: d.red_packets_sent,
        coupons_claimed: d.coupons_claimed,
        flash_sales: d.flash_sales.len() as i64,
        lucky_bags: d.lucky_bags,
        watch_lucky_bags: d.watch_lucky_bags,
        bot_viewers: d.bot_viewers,
        top_product,
    }
}

/// Hosts, the class's instructors and supervisors see a room's numbers; viewers do not.
async fn require_insight(commerce: &Commerce, p: &Principal, room: i64) -> ApiResult<()> {
    let access = commerce.access(p, room).await?;
    if matches!(
        access.role,
        MemberRole::Host | MemberRole::Instructor | MemberRole::Supervisor
    ) {
        Ok(())
    } else {
        Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "只有主播、本班讲师和主管部门可以查看直播数据与复盘",
        ))
    }
}

/// The live numbers of a room's current (or last) session; refresh every couple of seconds.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/dashboard", tag = "commerce",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 200, body = Dashboard), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn dashboard(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
) -> ApiResult<Json<Dashboard>> {
    require_insight(&commerce, &p, room).await?;
    let r = room_row(&state, room).await?;
    let counts = commerce.rooms.counts(room).await;
    let span = Span {
        started_at: r.started_at,
        ended_at: r.ended_at,
        live: counts.map_or(r.status == "live", |c| c.live),
        counts,
    };
    Ok(Json(
        compute(&commerce, room, r, span, state.clock.now_millis()).await?,
    ))
}

fn report_from_row(row: &sqlx::any::AnyRow) -> ApiResult<LiveReport> {
    let body: String = row.try_get(6)?;
    let (dashboard, diagnosis): (Dashboard, Diagnosis) =
        serde_json::from_str(&body).map_err(ApiError::internal)?;
    Ok(LiveReport {
        id: row.try_get(0)?,
        room_id: row.try_get(1)?,
        class_id: row.try_get(2)?,
        host_id: row.try_get(3)?,
        started_at: row.try_get(4)?,
        ended_at: row.try_get(5)?,
        dashboard,
        diagnosis,
    })
}

const REPORT_COLUMNS: &str =
    "SELECT id, room_id, class_id, host_id, started_at, ended_at, report FROM live_reports";

/// The reports of a room's past live sessions, newest first.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/reports", tag = "commerce",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 200, body = [LiveReport]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn room_reports(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
) -> ApiResult<Json<Vec<LiveReport>>> {
    require_insight(&commerce, &p, room).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{REPORT_COLUMNS} WHERE room_id = $1 ORDER BY started_at DESC"
    )))
    .bind(room)
    .fetch_all(state.db.pool())
    .await?;
    Ok(Json(
        rows.iter()
            .map(report_from_row)
            .collect::<ApiResult<Vec<_>>>()?,
    ))
}

/// Every live session of a class side by side (its instructors and supervisors); a trainee of
/// the class sees their own.
#[utoipa::path(get, path = "/api/v1/classes/{id}/live-reports", tag = "commerce",
    params(("id" = i64, Path, description = "class id")),
    responses((status = 200, body = [LiveReport]), (status = 404, body = ErrorBody)))]
pub async fn class_reports(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(class): ApiPath<i64>,
) -> ApiResult<Json<Vec<LiveReport>>> {
    if !state.org.class_visible(&Scope::of(&p), class).await? {
        return Err(ApiError::with_message(ErrorCode::NotFound, "班期不存在"));
    }
    let sees_all = p.has(Role::Instructor)
        || p.has(Role::Supervisor)
        || p.has(Role::InstitutionAdmin)
        || p.has(Role::PlatformAdmin);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{REPORT_COLUMNS} WHERE class_id = $1 AND ($2 = 1 OR host_id = $3) ORDER BY started_at DESC LIMIT 500"
    )))
    .bind(class)
    .bind(i64::from(sees_all))
    .bind(p.account_id)
    .fetch_all(state.db.pool())
    .await?;
    Ok(Json(
        rows.iter()
            .map(report_from_row)
            .collect::<ApiResult<Vec<_>>>()?,
    ))
}

/// Writes the report of every live session that ended (a few seconds ago) and has none yet,
/// even when its room has gone live again since. Safe on several nodes:
/// `UNIQUE (room_id, started_at)` keeps one. (Every live has its `live_sessions` row: the hub
/// opens it with the start, and migration 0011 made one for each room's last live before it.)
pub(crate) async fn write_reports(commerce: &Commerce, now: i64) -> anyhow::Result<usize> {
    let state = &commerce.app;
    let rows = sqlx::query(
        "SELECT s.room_id, r.class_id, r.host_id, s.started_at, s.ended_at FROM live_sessions s \
         JOIN rooms r ON r.id = s.room_id WHERE s.ended_at > $2 AND s.ended_at <= $1 AND NOT EXISTS \
         (SELECT 1 FROM live_reports l WHERE l.room_id = s.room_id AND l.started_at = s.started_at) \
         ORDER BY s.ended_at LIMIT 20",
    )
    .bind(now - REPORT_DELAY_MS)
    .bind(now - REPORT_RETRY_MS)
    .fetch_all(state.db.pool())
    .await?;
    let mut written = 0;
    for row in &rows {
        let room: i64 = row.try_get(0)?;
        let class: i64 = row.try_get(1)?;
        let host: i64 = row.try_get(2)?;
        let started: i64 = row.try_get(3)?;
        let ended: i64 = row.try_get(4)?;
        let r = room_row(state, room)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // The hub's running room only tells who is still there, and only if this is the
        // room's last session; the numbers of an ended session are the stored ones.
        let counts = if r.started_at == Some(started) {
            commerce.rooms.counts(room).await
        } else {
            None
        };
        let span = Span {
            started_at: Some(started),
            ended_at: Some(ended),
            live: false,
            counts,
        };
        let dashboard = compute(commerce, room, r, span, now)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let diagnosis = diagnosis::diagnose(&numbers_of(&dashboard));
        let body = serde_json::to_string(&(&dashboard, &diagnosis))?;
        let inserted = sqlx::query(
            "INSERT INTO live_reports (room_id, class_id, host_id, started_at, ended_at, report, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (room_id, started_at) DO NOTHING",
        )
        .bind(room)
        .bind(class)
        .bind(host)
        .bind(started)
        .bind(ended)
        .bind(&body)
        .bind(now)
        .execute(state.db.pool())
        .await?
        .rows_affected();
        written += usize::try_from(inserted).unwrap_or_default();
    }
    Ok(written)
}
