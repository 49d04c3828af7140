//! Coupons (优惠券): the host offers a threshold-and-discount coupon of their shop in the room,
//! viewers claim it there (total quota and per-user limit), and it is applied at checkout of an
//! order from that shop within its validity.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, CurrentUser};
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::{Deserialize, Serialize};
use signaling::protocol::{CommerceEvent, CouponCard};
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use crate::Commerce;
use crate::core::coupon::{ClaimError, CouponRule, RuleError};
use crate::util::{self, MAX_PRICE_CENTS};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCoupon {
    pub title: String,
    /// 0: no threshold (无门槛).
    pub threshold_cents: i64,
    pub discount_cents: i64,
    /// How long it can be claimed and used (1 minute – 30 days).
    pub valid_minutes: i64,
    pub total_quota: i64,
    pub per_user_limit: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CouponView {
    pub id: i64,
    pub shop_id: i64,
    pub room_id: Option<i64>,
    pub title: String,
    pub threshold_cents: i64,
    pub discount_cents: i64,
    pub valid_from: i64,
    pub valid_until: i64,
    pub total_quota: i64,
    pub per_user_limit: i64,
    pub claimed: i64,
}

impl CouponView {
    pub(crate) fn card(&self) -> CouponCard {
        CouponCard {
            id: self.id,
            shop_id: self.shop_id,
            title: self.title.clone(),
            threshold_cents: self.threshold_cents,
            discount_cents: self.discount_cents,
            valid_until: self.valid_until,
            remaining: u32::try_from(self.total_quota - self.claimed).unwrap_or_default(),
            per_user_limit: u32::try_from(self.per_user_limit).unwrap_or_default(),
        }
    }

    fn rule(&self) -> CouponRule {
        CouponRule {
            threshold_cents: self.threshold_cents,
            discount_cents: self.discount_cents,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            total_quota: u32::try_from(self.total_quota).unwrap_or_default(),
            per_user_limit: u32::try_from(self.per_user_limit).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimView {
    pub id: i64,
    pub coupon: CouponView,
    pub claimed_at: i64,
    pub used_order_id: Option<i64>,
    /// Unused and within its validity now.
    pub usable: bool,
}

const COUPON_COLUMNS: &str = "SELECT id, shop_id, room_id, title, threshold_cents, discount_cents, valid_from, \
     valid_until, total_quota, per_user_limit, claimed FROM coupons";

fn coupon_from_row(row: &sqlx::any::AnyRow, at: usize) -> Result<CouponView, sqlx::Error> {
    Ok(CouponView {
        id: row.try_get(at)?,
        shop_id: row.try_get(at + 1)?,
        room_id: row.try_get(at + 2)?,
        title: row.try_get(at + 3)?,
        threshold_cents: row.try_get(at + 4)?,
        discount_cents: row.try_get(at + 5)?,
        valid_from: row.try_get(at + 6)?,
        valid_until: row.try_get(at + 7)?,
        total_quota: row.try_get(at + 8)?,
        per_user_limit: row.try_get(at + 9)?,
        claimed: row.try_get(at + 10)?,
    })
}

async fn coupon_by_id(state: &AppState, id: i64) -> ApiResult<Option<CouponView>> {
    let sql = format!("{COUPON_COLUMNS} WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?;
    Ok(row.map(|r| coupon_from_row(&r, 0)).transpose()?)
}

/// The room's coupons still claimable at `now`.
pub(crate) async fn active_in_room(
    state: &AppState,
    room: i64,
    now: i64,
) -> ApiResult<Vec<CouponView>> {
    let sql = format!(
        "{COUPON_COLUMNS} WHERE room_id = $1 AND valid_until > $2 AND claimed < total_quota ORDER BY id DESC LIMIT 20"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(room)
        .bind(now)
        .fetch_all(state.db.pool())
        .await?;
    Ok(rows
        .iter()
        .map(|r| coupon_from_row(r, 0))
        .collect::<Result<Vec<_>, sqlx::Error>>()?)
}

fn rule_error(e: RuleError) -> ApiError {
    ApiError::validation(match e {
        RuleError::NonPositiveDiscount => "优惠金额须大于 0",
        RuleError::NegativeThreshold => "使用门槛不能为负",
        RuleError::DiscountNotBelowThreshold => "优惠金额须低于使用门槛",
        RuleError::BadWindow => "有效期无效",
        RuleError::ZeroQuota => "发放总量须至少为 1",
        RuleError::ZeroPerUserLimit => "每人限领须至少为 1",
        RuleError::PerUserAboveQuota => "每人限领不能超过发放总量",
    })
}

/// Offer a coupon of the host's shop in the room.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/coupons", tag = "commerce", request_body = CreateCoupon,
    params(("id" = i64, Path, description = "room id")),
    responses((status = 201, body = CouponView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_coupon(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiJson(body): ApiJson<CreateCoupon>,
) -> ApiResult<(StatusCode, Json<CouponView>)> {
    commerce.require_tools(&p, room).await?;
    let shop = crate::shops::shop_of_owner(&state, p.account_id)
        .await?
        .ok_or_else(|| ApiError::validation("请先开设店铺，再发优惠券"))?;
    let title = util::text(&body.title, "优惠券名称", 2, 30)?;
    if body.threshold_cents > MAX_PRICE_CENTS || body.discount_cents > MAX_PRICE_CENTS {
        return Err(ApiError::validation("金额过大"));
    }
    let minutes = util::count(body.valid_minutes, "有效期（分钟）", 1, 43_200)?;
    let quota = util::count(body.total_quota, "发放总量", 1, 1_000_000)?;
    let limit = util::count(body.per_user_limit, "每人限领", 1, 100)?;
    let now = state.clock.now_millis();
    let rule = CouponRule {
        threshold_cents: body.threshold_cents,
        discount_cents: body.discount_cents,
        valid_from: now,
        valid_until: now + minutes * 60_000,
        total_quota: u32::try_from(quota).unwrap_or_default(),
        per_user_limit: u32::try_from(limit).unwrap_or_default(),
    };
    rule.validate().map_err(rule_error)?;
    let row = sqlx::query(
        "INSERT INTO coupons (shop_id, room_id, title, threshold_cents, discount_cents, valid_from, valid_until, \
         total_quota, per_user_limit, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $6) RETURNING id",
    )
    .bind(shop.id)
    .bind(room)
    .bind(&title)
    .bind(rule.threshold_cents)
    .bind(rule.discount_cents)
    .bind(rule.valid_from)
    .bind(rule.valid_until)
    .bind(quota)
    .bind(limit)
    .fetch_one(state.db.pool())
    .await?;
    let id: i64 = row.try_get(0)?;
    let coupon = coupon_by_id(&state, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    commerce
        .rooms
        .announce(
            room,
            CommerceEvent::CouponOffered {
                coupon: coupon.card(),
            },
        )
        .await;
    Ok((StatusCode::CREATED, Json(coupon)))
}

/// Claim a coupon offered in a room you are in.
#[utoipa::path(post, path = "/api/v1/coupons/{id}/claim", tag = "commerce",
    params(("id" = i64, Path, description = "coupon id")),
    responses((status = 201, body = ClaimView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn claim_coupon(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<(StatusCode, Json<ClaimView>)> {
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "优惠券不存在");
    let coupon = coupon_by_id(&state, id).await?.ok_or_else(not_found)?;
    match coupon.room_id {
        Some(room) => {
            commerce.access(&p, room).await.map_err(|_| not_found())?;
        }
        None => return Err(not_found()),
    }
    let now = state.clock.now_millis();
    let rule = coupon.rule();
    let mut tx = state.db.begin_write().await?;
    // Taking a quota unit first also locks the coupon's row (PostgreSQL), so the per-user count
    // below cannot race with the same user's other claim.
    let took = sqlx::query(
        "UPDATE coupons SET claimed = claimed + 1 WHERE id = $1 AND claimed < total_quota",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let mine: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM coupon_claims WHERE coupon_id = $1 AND account_id = $2",
    )
    .bind(id)
    .bind(p.account_id)
    .fetch_one(&mut *tx)
    .await?;
    let claimed_total = if took == 1 {
        coupon.claimed
    } else {
        coupon.total_quota
    };
    rule.check_claim(
        now,
        u32::try_from(claimed_total).unwrap_or(u32::MAX),
        u32::try_from(mine).unwrap_or(u32::MAX),
    )
    .map_err(|e| match e {
        ClaimError::NotYetValid | ClaimError::Expired => ApiError::new(ErrorCode::CouponExpired),
        ClaimError::QuotaExhausted => ErrorCode::CouponExhausted.into(),
        ClaimError::LimitReached => {
            ApiError::with_message(ErrorCode::LimitReached, "已达到每人限领数量")
        }
    })?;
    if took == 0 {
        return Err(ErrorCode::CouponExhausted.into());
    }
    let row = sqlx::query("INSERT INTO coupon_claims (coupon_id, account_id, claimed_at) VALUES ($1, $2, $3) RETURNING id")
        .bind(id)
        .bind(p.account_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    let claim: i64 = row.try_get(0)?;
    tx.commit().await?;
    let coupon = coupon_by_id(&state, id).await?.ok_or_else(not_found)?;
    let usable = now < coupon.valid_until;
    Ok((
        StatusCode::CREATED,
        Json(ClaimView {
            id: claim,
            coupon,
            claimed_at: now,
            used_order_id: None,
            usable,
        }),
    ))
}

/// My claimed coupons, newest first.
#[utoipa::path(get, path = "/api/v1/coupons/mine", tag = "commerce",
    responses((status = 200, body = [ClaimView])))]
pub async fn my_coupons(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<Vec<ClaimView>>> {
    let rows = sqlx::query(
        "SELECT c.id, c.shop_id, c.room_id, c.title, c.threshold_cents, c.discount_cents, c.valid_from, \
         c.valid_until, c.total_quota, c.per_user_limit, c.claimed, k.id, k.claimed_at, k.used_order_id \
         FROM coupon_claims k JOIN coupons c ON c.id = k.coupon_id WHERE k.account_id = $1 ORDER BY k.id DESC LIMIT 200",
    )
    .bind(p.account_id)
    .fetch_all(state.db.pool())
    .await?;
    let now = state.clock.now_millis();
    let claims = rows
        .iter()
        .map(|r| {
            let coupon = coupon_from_row(r, 0)?;
            let used: Option<i64> = r.try_get(13)?;
            Ok(ClaimView {
                id: r.try_get(11)?,
                usable: used.is_none() && coupon.valid_from <= now && now < coupon.valid_until,
                coupon,
                claimed_at: r.try_get(12)?,
                used_order_id: used,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(claims))
}

/// The discount a claimed coupon gives an order of `shop` worth `subtotal`.
pub(crate) async fn discount_for_claim(
    state: &AppState,
    buyer: i64,
    claim: i64,
    shop: i64,
    subtotal: i64,
    now: i64,
) -> ApiResult<i64> {
    let row = sqlx::query(
        "SELECT coupon_id, used_order_id FROM coupon_claims WHERE id = $1 AND account_id = $2",
    )
    .bind(claim)
    .bind(buyer)
    .fetch_optional(state.db.pool())
    .await?
    .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "优惠券不存在"))?;
    let coupon_id: i64 = row.try_get(0)?;
    let used: Option<i64> = row.try_get(1)?;
    if used.is_some() {
        return Err(ApiError::with_message(
            ErrorCode::CouponNotApplicable,
            "这张优惠券已经用过了",
        ));
    }
    let coupon = coupon_by_id(state, coupon_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if coupon.shop_id != shop {
        return Err(ApiError::with_message(
            ErrorCode::CouponNotApplicable,
            "这张优惠券只能在发券的店铺使用",
        ));
    }
    coupon
        .rule()
        .discount_for(subtotal, now)
        .map_err(crate::orders::coupon_use_error)
}

/// Marks a claim used by `order` (inside the order's transaction); a claim used meanwhile by
/// another order fails the transaction.
pub(crate) async fn use_claim(
    tx: &mut Transaction<'static, Any>,
    claim: i64,
    order: i64,
    now: i64,
) -> ApiResult<()> {
    let used = sqlx::query("UPDATE coupon_claims SET used_order_id = $1, used_at = $2 WHERE id = $3 AND used_order_id IS NULL")
        .bind(order)
        .bind(now)
        .bind(claim)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if used == 0 {
        return Err(ApiError::with_message(
            ErrorCode::CouponNotApplicable,
            "这张优惠券已经用过了",
        ));
    }
    Ok(())
}
