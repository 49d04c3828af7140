//! Lucky bags (福袋): the host offers a prize to a number of winners among the viewers who do
//! the task before the countdown ends. The draw is auditable: a SHA-256 commitment to a random
//! seed is published at launch, the seed is revealed with the winners, and anyone can recompute
//! them from the seed and the entrant list (`core::lucky_bag::draw`, documented in
//! docs/commerce.md).
//!
//! Two tasks:
//! - `comment`: send the keyword in the chat during the countdown; the entrants come from the
//!   stored chat log.
//! - `watch`: watch the live for `watch_minutes` during the countdown. The hub accrues each
//!   viewer's watch time while the room is live (`RoomCore::drain_watch`), and every room task,
//!   on every node, adds its share to `room_viewers.watch_ms` every 5 s
//!   (`signaling::room::task::WATCH_SAVE_MS`) through the chat batch writer. At launch, in the
//!   bag's own transaction, the room's stored watch times are copied into
//!   `lucky_bag_watch_base`; at the draw a viewer's watch time during the countdown is the
//!   stored time minus that base.
//!
//! Precision of `watch`: the time is measured between the save before the launch and the first
//! save after the deadline, not between the launch and the deadline themselves, so a viewer can
//! qualify up to about two save intervals (~10 s) early, and not late as long as every node's
//! first save after the deadline is stored within [`WATCH_DRAW_GRACE_MS`], which the draw
//! waits (a database outage longer than that, or a node crash with unsaved time, can drop
//! someone).
//! (Presence is counted per node, so one person in two tabs on two nodes counts twice.)

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, CurrentUser};
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use signaling::protocol::{CommerceEvent, LuckyBagCard, UserRef};
use signaling::room::task::WATCH_SAVE_MS;
use signaling::store::BATCH_DEADLINE_MS;
use sqlx::Row;
use utoipa::ToSchema;

use crate::Commerce;
use crate::core::lucky_bag::{self, Seed};
use crate::util;

/// Chat is stored in batches a moment after it is sent; the draw of a comment bag waits this
/// long past the deadline so every qualifying comment is in.
const DRAW_GRACE_MS: i64 = 2_000;
/// The draw of a watch bag waits this long past the deadline: the first watch save after it
/// comes within 5 s on every node, the batch writer holds it up to 100 ms, and its
/// transaction takes a moment (longer when the database is busy or the write is retried);
/// 10 s leaves about 5 s for that.
const WATCH_DRAW_GRACE_MS: i64 = 10_000;
const _: () = assert!(
    WATCH_DRAW_GRACE_MS >= WATCH_SAVE_MS + BATCH_DEADLINE_MS as i64 + 2_000,
    "a watch bag must wait for the last watch save after its deadline"
);
/// Longest watch task, minutes (the countdown is at most an hour).
const MAX_WATCH_MINUTES: i64 = 60;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchLuckyBag {
    pub prize: String,
    pub winners: i64,
    /// `comment`: send the keyword in the chat; `watch`: watch the live for `watch_minutes`.
    pub task: String,
    /// For `comment` (1–20 characters); absent or empty for `watch`.
    pub keyword: Option<String>,
    /// For `watch`: minutes to watch during the countdown (1–60); absent for `comment`.
    pub watch_minutes: Option<i64>,
    /// Countdown to the draw (10 s – 1 h); for `watch` at least `watch_minutes` × 60.
    pub duration_seconds: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Winner {
    pub id: i64,
    pub name: String,
}

/// The caller's progress in a watch bag, from the stored watch time (saved every 5 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct WatchProgress {
    /// Watched since the launch (ms), as stored now; may exceed `required_ms`.
    pub watched_ms: i64,
    /// `watch_minutes` × 60000.
    pub required_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LuckyBagView {
    pub id: i64,
    pub room_id: i64,
    pub prize: String,
    pub winners: i64,
    /// comment | watch
    pub task: String,
    pub keyword: Option<String>,
    /// Minutes to watch (task `watch`); null for comment bags.
    pub watch_minutes: Option<i64>,
    pub starts_at: i64,
    pub draws_at: i64,
    /// SHA-256 (hex) of the seed's 32 bytes, published at launch.
    pub commitment: String,
    /// open | drawn
    pub status: String,
    /// Revealed at the draw (hex).
    pub seed: Option<String>,
    /// Everyone who qualified, by account id ascending (after the draw).
    pub entrants: Option<Vec<i64>>,
    pub winner_list: Option<Vec<Winner>>,
    pub drawn_at: Option<i64>,
    /// The caller's progress: only in `GET /api/v1/lucky-bags/{id}`, for an open watch bag
    /// and a caller who can enter it (not the host); null otherwise.
    pub my_watch: Option<WatchProgress>,
}

impl LuckyBagView {
    pub(crate) fn card(&self) -> LuckyBagCard {
        LuckyBagCard {
            id: self.id,
            prize: self.prize.clone(),
            winners: u32::try_from(self.winners).unwrap_or_default(),
            task: self.task.clone(),
            keyword: self.keyword.clone(),
            watch_minutes: self.watch_minutes.and_then(|m| u32::try_from(m).ok()),
            draws_at: self.draws_at,
            commitment: self.commitment.clone(),
        }
    }
}

const BAG_COLUMNS: &str = "SELECT id, room_id, prize, winners, task, keyword, starts_at, draws_at, commitment, \
     status, seed, entrants, result, drawn_at, watch_minutes FROM lucky_bags";

fn bag_from_row(row: &sqlx::any::AnyRow) -> Result<LuckyBagView, sqlx::Error> {
    let status: String = row.try_get(9)?;
    let drawn = status == "drawn";
    let seed: String = row.try_get(10)?;
    let entrants: Option<String> = row.try_get(11)?;
    let result: Option<String> = row.try_get(12)?;
    Ok(LuckyBagView {
        id: row.try_get(0)?,
        room_id: row.try_get(1)?,
        prize: row.try_get(2)?,
        winners: row.try_get(3)?,
        task: row.try_get(4)?,
        keyword: row.try_get(5)?,
        watch_minutes: row.try_get(14)?,
        starts_at: row.try_get(6)?,
        draws_at: row.try_get(7)?,
        commitment: row.try_get(8)?,
        status,
        // The seed stays secret until the draw: that is what makes the commitment mean something.
        seed: drawn.then_some(seed),
        entrants: entrants.and_then(|e| serde_json::from_str(&e).ok()),
        winner_list: result.and_then(|r| serde_json::from_str(&r).ok()),
        drawn_at: row.try_get(13)?,
        my_watch: None,
    })
}

async fn bag_by_id(state: &AppState, id: i64) -> ApiResult<Option<LuckyBagView>> {
    let sql = format!("{BAG_COLUMNS} WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?;
    Ok(row.as_ref().map(bag_from_row).transpose()?)
}

pub(crate) async fn open_in_room(state: &AppState, room: i64) -> ApiResult<Vec<LuckyBagView>> {
    let sql =
        format!("{BAG_COLUMNS} WHERE room_id = $1 AND status = 'open' ORDER BY id DESC LIMIT 10");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(room)
        .fetch_all(state.db.pool())
        .await?;
    Ok(rows
        .iter()
        .map(bag_from_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?)
}

/// What a bag asks of its viewers, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Task {
    Comment { keyword: String },
    Watch { minutes: i64 },
}

fn check_task(body: &LaunchLuckyBag, duration_seconds: i64) -> ApiResult<Task> {
    match body.task.as_str() {
        "comment" => {
            if body.watch_minutes.is_some() {
                return Err(ApiError::validation(
                    "评论口令福袋不需要观看时长（watch_minutes 只用于 watch 任务）",
                ));
            }
            let keyword = util::text(body.keyword.as_deref().unwrap_or_default(), "口令", 1, 20)?;
            Ok(Task::Comment { keyword })
        }
        "watch" => {
            if body
                .keyword
                .as_deref()
                .is_some_and(|k| !k.trim().is_empty())
            {
                return Err(ApiError::validation(
                    "观看时长福袋不需要口令：观众看满时长即可参与",
                ));
            }
            let Some(minutes) = body.watch_minutes else {
                return Err(ApiError::validation(format!(
                    "观看时长福袋须填写观看时长（1 到 {MAX_WATCH_MINUTES} 分钟）"
                )));
            };
            let minutes = util::count(minutes, "观看时长（分钟）", 1, MAX_WATCH_MINUTES)?;
            if duration_seconds < minutes * 60 {
                return Err(ApiError::validation(format!(
                    "开奖倒计时（{duration_seconds} 秒）短于观看时长（{minutes} 分钟），没有人能满足条件：\
                     倒计时须至少 {} 秒",
                    minutes * 60
                )));
            }
            Ok(Task::Watch { minutes })
        }
        _ => Err(ApiError::validation(
            "参与任务须为 comment（发送口令评论）或 watch（观看时长）",
        )),
    }
}

/// Launch a lucky bag in the room (its host or instructors).
#[utoipa::path(post, path = "/api/v1/rooms/{id}/lucky-bags", tag = "commerce", request_body = LaunchLuckyBag,
    params(("id" = i64, Path, description = "room id")),
    responses((status = 201, body = LuckyBagView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn launch(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiJson(body): ApiJson<LaunchLuckyBag>,
) -> ApiResult<(StatusCode, Json<LuckyBagView>)> {
    commerce.require_tools(&p, room).await?;
    let prize = util::text(&body.prize, "奖品", 1, 40)?;
    let winners = util::count(body.winners, "中奖人数", 1, 1000)?;
    let duration = util::count(body.duration_seconds, "倒计时（秒）", 10, 3600)?;
    let task = check_task(&body, duration)?;
    let (task_name, keyword, watch_minutes) = match &task {
        Task::Comment { keyword } => ("comment", Some(keyword.as_str()), None),
        Task::Watch { minutes } => ("watch", None, Some(*minutes)),
    };
    let mut seed: Seed = [0; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let commitment = lucky_bag::commitment(&seed);
    let now = state.clock.now_millis();
    let mut tx = state.db.begin_write().await?;
    let row = sqlx::query(
        "INSERT INTO lucky_bags (room_id, host_id, prize, winners, task, keyword, watch_minutes, starts_at, draws_at, \
         commitment, seed, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $8) RETURNING id",
    )
    .bind(room)
    .bind(p.account_id)
    .bind(&prize)
    .bind(winners)
    .bind(task_name)
    .bind(keyword)
    .bind(watch_minutes)
    .bind(now)
    .bind(now + duration * 1000)
    .bind(&commitment)
    .bind(hex::encode(seed))
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get(0)?;
    if watch_minutes.is_some() {
        // What everyone had watched before: only watching from now on counts.
        sqlx::query(
            "INSERT INTO lucky_bag_watch_base (lucky_bag_id, account_id, watch_ms) \
             SELECT $1, account_id, watch_ms FROM room_viewers WHERE room_id = $2",
        )
        .bind(id)
        .bind(room)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let bag = bag_by_id(&state, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    commerce
        .rooms
        .announce(room, CommerceEvent::LuckyBagLaunched { bag: bag.card() })
        .await;
    Ok((StatusCode::CREATED, Json(bag)))
}

/// A lucky bag; after the draw with the seed, the entrants and the winners, so anyone can
/// recompute the draw. For an open watch bag also the caller's progress (`my_watch`).
#[utoipa::path(get, path = "/api/v1/lucky-bags/{id}", tag = "commerce",
    params(("id" = i64, Path, description = "lucky bag id")),
    responses((status = 200, body = LuckyBagView), (status = 404, body = ErrorBody)))]
pub async fn get_lucky_bag(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<LuckyBagView>> {
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "福袋不存在");
    let mut bag = bag_by_id(&state, id).await?.ok_or_else(not_found)?;
    commerce
        .access(&p, bag.room_id)
        .await
        .map_err(|_| not_found())?;
    if let Some(minutes) = bag.watch_minutes
        && bag.status == "open"
    {
        bag.my_watch = watch_progress(&state, id, p.account_id, minutes).await?;
    }
    Ok(Json(bag))
}

/// `account`'s stored watch time since the bag's launch; `None` for whoever launched it and
/// the room's host (neither can enter, and the host's watching is never counted).
async fn watch_progress(
    state: &AppState,
    bag: i64,
    account: i64,
    minutes: i64,
) -> ApiResult<Option<WatchProgress>> {
    let row = sqlx::query(
        "SELECT b.host_id, r.host_id, v.watch_ms, w.watch_ms FROM lucky_bags b \
         JOIN rooms r ON r.id = b.room_id \
         LEFT JOIN room_viewers v ON v.room_id = b.room_id AND v.account_id = $2 \
         LEFT JOIN lucky_bag_watch_base w ON w.lucky_bag_id = b.id AND w.account_id = $2 \
         WHERE b.id = $1",
    )
    .bind(bag)
    .bind(account)
    .fetch_optional(state.db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let launcher: i64 = row.try_get(0)?;
    let room_host: i64 = row.try_get(1)?;
    if account == launcher || account == room_host {
        return Ok(None);
    }
    let stored: Option<i64> = row.try_get(2)?;
    let base: Option<i64> = row.try_get(3)?;
    Ok(Some(WatchProgress {
        watched_ms: (stored.unwrap_or_default() - base.unwrap_or_default()).max(0),
        required_ms: minutes * 60_000,
    }))
}

/// Who qualified for a bag, by account id ascending (the draw's input), the launcher excluded.
async fn entrants(state: &AppState, bag: &DueBag) -> Result<Vec<i64>, sqlx::Error> {
    if let Some(minutes) = bag.watch_minutes {
        // Watched at least the minutes between the saves before the launch and after the deadline.
        return sqlx::query_scalar(
            "SELECT v.account_id FROM room_viewers v \
             LEFT JOIN lucky_bag_watch_base w ON w.lucky_bag_id = $2 AND w.account_id = v.account_id \
             WHERE v.room_id = $1 AND v.account_id <> $3 AND v.watch_ms - COALESCE(w.watch_ms, 0) >= $4 \
             ORDER BY v.account_id",
        )
        .bind(bag.room)
        .bind(bag.id)
        .bind(bag.host)
        .bind(minutes * 60_000)
        .fetch_all(state.db.pool())
        .await;
    }
    // Who sent the keyword in the room's chat during the countdown (not removed, not the host).
    let pattern = format!(
        "%{}%",
        bag.keyword
            .as_deref()
            .unwrap_or_default()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    sqlx::query_scalar(
        "SELECT DISTINCT user_id FROM room_messages WHERE room_id = $1 AND at >= $2 AND at < $3 \
         AND removed = 0 AND user_id <> $4 AND text LIKE $5 ESCAPE '\\' ORDER BY user_id",
    )
    .bind(bag.room)
    .bind(bag.starts_at)
    .bind(bag.draws_at)
    .bind(bag.host)
    .bind(&pattern)
    .fetch_all(state.db.pool())
    .await
}

/// A bag whose countdown (and grace) is over.
struct DueBag {
    id: i64,
    room: i64,
    host: i64,
    winners: i64,
    keyword: Option<String>,
    watch_minutes: Option<i64>,
    starts_at: i64,
    draws_at: i64,
    seed_hex: String,
}

/// Draws the bags whose countdown is over. Safe on several nodes (`WHERE status = 'open'`).
pub(crate) async fn draw_due(commerce: &Commerce, now: i64) -> anyhow::Result<usize> {
    let state = &commerce.app;
    // Each task waits for its own storage: comments are in within a moment, watch time only
    // with the first save after the deadline.
    let rows = sqlx::query(
        "SELECT id, room_id, host_id, winners, keyword, watch_minutes, starts_at, draws_at, seed FROM lucky_bags \
         WHERE status = 'open' AND ((task = 'watch' AND draws_at <= $1) OR (task <> 'watch' AND draws_at <= $2)) \
         LIMIT 20",
    )
    .bind(now - WATCH_DRAW_GRACE_MS)
    .bind(now - DRAW_GRACE_MS)
    .fetch_all(state.db.pool())
    .await?;
    let mut drawn = 0;
    for row in &rows {
        let bag = DueBag {
            id: row.try_get(0)?,
            room: row.try_get(1)?,
            host: row.try_get(2)?,
            winners: row.try_get(3)?,
            keyword: row.try_get(4)?,
            watch_minutes: row.try_get(5)?,
            starts_at: row.try_get(6)?,
            draws_at: row.try_get(7)?,
            seed_hex: row.try_get(8)?,
        };
        let mut seed: Seed = [0; 32];
        hex::decode_to_slice(&bag.seed_hex, &mut seed)?;
        let entrants = entrants(state, &bag).await?;
        let picked = lucky_bag::draw(
            &seed,
            &entrants,
            u32::try_from(bag.winners).unwrap_or_default(),
        );
        let mut winner_refs = Vec::with_capacity(picked.len());
        for user in &picked {
            let name: String = sqlx::query_scalar("SELECT name FROM accounts WHERE id = $1")
                .bind(user)
                .fetch_one(state.db.pool())
                .await?;
            winner_refs.push(Winner { id: *user, name });
        }
        let updated = sqlx::query(
            "UPDATE lucky_bags SET status = 'drawn', entrants = $1, result = $2, drawn_at = $3 \
             WHERE id = $4 AND status = 'open'",
        )
        .bind(serde_json::to_string(&entrants)?)
        .bind(serde_json::to_string(&winner_refs)?)
        .bind(now)
        .bind(bag.id)
        .execute(state.db.pool())
        .await?
        .rows_affected();
        if updated == 0 {
            continue;
        }
        drawn += 1;
        commerce
            .rooms
            .announce(
                bag.room,
                CommerceEvent::LuckyBagDrawn {
                    bag: bag.id,
                    seed: bag.seed_hex,
                    entrants: u32::try_from(entrants.len()).unwrap_or(u32::MAX),
                    winners: winner_refs
                        .into_iter()
                        .map(|w| UserRef {
                            id: w.id,
                            name: w.name,
                        })
                        .collect(),
                },
            )
            .await;
    }
    Ok(drawn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(task: &str, keyword: Option<&str>, watch_minutes: Option<i64>) -> LaunchLuckyBag {
        LaunchLuckyBag {
            prize: "礼盒".into(),
            winners: 1,
            task: task.into(),
            keyword: keyword.map(Into::into),
            watch_minutes,
            duration_seconds: 600,
        }
    }

    #[test]
    fn tasks_are_checked() {
        assert_eq!(
            check_task(&body("comment", Some(" 想要 "), None), 600).ok(),
            Some(Task::Comment {
                keyword: "想要".into()
            })
        );
        assert_eq!(
            check_task(&body("watch", None, Some(10)), 600).ok(),
            Some(Task::Watch { minutes: 10 })
        );
        assert_eq!(
            check_task(&body("watch", Some("  "), Some(1)), 60).ok(),
            Some(Task::Watch { minutes: 1 })
        );
        for (bad, duration) in [
            (body("comment", None, None), 600),
            (body("comment", Some("想要"), Some(5)), 600),
            (body("watch", None, None), 600),
            (body("watch", Some("想要"), Some(5)), 600),
            (body("watch", None, Some(0)), 600),
            (body("watch", None, Some(61)), 3600),
            (body("watch", None, Some(10)), 599),
            (body("join", None, None), 600),
        ] {
            let err = check_task(&bad, duration).expect_err("refused");
            assert_eq!(err.code, ErrorCode::ValidationFailed, "{bad:?}");
        }
    }
}
