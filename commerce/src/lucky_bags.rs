//! Lucky bags (福袋): the host offers a prize to a number of winners among the viewers who do
//! the task (send the keyword in the chat) before the countdown ends. The draw is auditable: a
//! SHA-256 commitment to a random seed is published at launch, the seed is revealed with the
//! winners, and anyone can recompute them from the seed and the entrant list
//! (`core::lucky_bag::draw`, documented in docs/commerce.md).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, CurrentUser};
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use signaling::protocol::{CommerceEvent, LuckyBagCard, UserRef};
use sqlx::Row;
use utoipa::ToSchema;

use crate::Commerce;
use crate::core::lucky_bag::{self, Seed};
use crate::util;

/// Chat is stored in batches a moment after it is sent; the draw waits this long past the
/// deadline so every qualifying comment is in.
const DRAW_GRACE_MS: i64 = 2_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchLuckyBag {
    pub prize: String,
    pub winners: i64,
    /// `comment`: send the keyword in the chat.
    pub task: String,
    pub keyword: Option<String>,
    /// Countdown to the draw (10 s – 1 h).
    pub duration_seconds: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Winner {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LuckyBagView {
    pub id: i64,
    pub room_id: i64,
    pub prize: String,
    pub winners: i64,
    pub task: String,
    pub keyword: Option<String>,
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
}

impl LuckyBagView {
    pub(crate) fn card(&self) -> LuckyBagCard {
        LuckyBagCard {
            id: self.id,
            prize: self.prize.clone(),
            winners: u32::try_from(self.winners).unwrap_or_default(),
            task: self.task.clone(),
            keyword: self.keyword.clone(),
            draws_at: self.draws_at,
            commitment: self.commitment.clone(),
        }
    }
}

const BAG_COLUMNS: &str = "SELECT id, room_id, prize, winners, task, keyword, starts_at, draws_at, commitment, \
     status, seed, entrants, result, drawn_at FROM lucky_bags";

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
        starts_at: row.try_get(6)?,
        draws_at: row.try_get(7)?,
        commitment: row.try_get(8)?,
        status,
        // The seed stays secret until the draw: that is what makes the commitment mean something.
        seed: drawn.then_some(seed),
        entrants: entrants.and_then(|e| serde_json::from_str(&e).ok()),
        winner_list: result.and_then(|r| serde_json::from_str(&r).ok()),
        drawn_at: row.try_get(13)?,
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
    if body.task != "comment" {
        return Err(ApiError::validation("参与任务须为 comment（发送口令评论）"));
    }
    let keyword = util::text(body.keyword.as_deref().unwrap_or_default(), "口令", 1, 20)?;
    let duration = util::count(body.duration_seconds, "倒计时（秒）", 10, 3600)?;
    let mut seed: Seed = [0; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let commitment = lucky_bag::commitment(&seed);
    let now = state.clock.now_millis();
    let row = sqlx::query(
        "INSERT INTO lucky_bags (room_id, host_id, prize, winners, task, keyword, starts_at, draws_at, commitment, seed, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $7) RETURNING id",
    )
    .bind(room)
    .bind(p.account_id)
    .bind(&prize)
    .bind(winners)
    .bind(&body.task)
    .bind(&keyword)
    .bind(now)
    .bind(now + duration * 1000)
    .bind(&commitment)
    .bind(hex::encode(seed))
    .fetch_one(state.db.pool())
    .await?;
    let id: i64 = row.try_get(0)?;
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
/// recompute the draw.
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
    let bag = bag_by_id(&state, id).await?.ok_or_else(not_found)?;
    commerce
        .access(&p, bag.room_id)
        .await
        .map_err(|_| not_found())?;
    Ok(Json(bag))
}

/// Draws the bags whose countdown is over. Safe on several nodes (`WHERE status = 'open'`).
pub(crate) async fn draw_due(commerce: &Commerce, now: i64) -> anyhow::Result<usize> {
    let state = &commerce.app;
    let rows = sqlx::query(
        "SELECT id, room_id, host_id, winners, keyword, starts_at, draws_at, seed FROM lucky_bags \
         WHERE status = 'open' AND draws_at <= $1 LIMIT 20",
    )
    .bind(now - DRAW_GRACE_MS)
    .fetch_all(state.db.pool())
    .await?;
    let mut drawn = 0;
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        let room: i64 = row.try_get(1)?;
        let host: i64 = row.try_get(2)?;
        let winners: i64 = row.try_get(3)?;
        let keyword: Option<String> = row.try_get(4)?;
        let starts_at: i64 = row.try_get(5)?;
        let draws_at: i64 = row.try_get(6)?;
        let seed_hex: String = row.try_get(7)?;
        let mut seed: Seed = [0; 32];
        hex::decode_to_slice(&seed_hex, &mut seed)?;
        // Who sent the keyword in the room's chat during the countdown (not removed, not the host).
        let pattern = format!(
            "%{}%",
            keyword
                .unwrap_or_default()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let entrants: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM room_messages WHERE room_id = $1 AND at >= $2 AND at < $3 \
             AND removed = 0 AND user_id <> $4 AND text LIKE $5 ESCAPE '\\' ORDER BY user_id",
        )
        .bind(room)
        .bind(starts_at)
        .bind(draws_at)
        .bind(host)
        .bind(&pattern)
        .fetch_all(state.db.pool())
        .await?;
        let picked = lucky_bag::draw(&seed, &entrants, u32::try_from(winners).unwrap_or_default());
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
        .bind(id)
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
                room,
                CommerceEvent::LuckyBagDrawn {
                    bag: id,
                    seed: seed_hex,
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
