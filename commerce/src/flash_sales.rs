//! Flash sales (秒杀): the host carves some of a SKU's stock out at a special price, with a
//! per-user limit, a countdown to the start and a duration; viewers order through the gate
//! (`crate::gate`), which turns the crowd away without touching the database; the winners' orders
//! must be paid in time or their units go back into the sale. When the sale is over and no
//! order is pending any more, the unsold units go back to the SKU.
//!
//! Contract: `POST /api/v1/flash-sales/{id}/orders` with `Idempotency-Key` → 201 with the order;
//! 409 `sold_out` / `limit_reached`; the same key again → the same order.
//!
//! With Redis gates a reservation outlives its node, so it is recorded as a hold (`crate::gate`)
//! and settled exactly once: committed by the writer after its group commit, given back when
//! the write fails, taken over by a retry of the same key (`in_flight`), or — when its node
//! died — given back by the sweeper (`reclaim_abandoned`) once it is older than
//! `HOLD_RECLAIM_AFTER_MS` and its key has no order. The writer's transaction locks its sales'
//! rows and checks its holds before writing (`fence`); whoever settles another attempt's hold
//! does so under the same lock after asking the database (`resolve_holds`), so a hold is never
//! given back while its order can still commit, and an order is never written for a hold that
//! was given back.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, CurrentUser};

use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::{Deserialize, Serialize};
use signaling::protocol::{CommerceEvent, FlashSaleCard};
use sqlx::Row;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use crate::Commerce;
use crate::core::stock::{Refusal, SaleWindow};
use crate::gate::{
    HOLD_RECLAIM_AFTER_MS, IN_FLIGHT_WAIT_MS, Reserve, SaleGates, SaleHold, SaleSettle, SaleSpec,
};
use crate::group_commit::{FenceError, Fencing, RowTable, lock_row};
use crate::orders::{self, NewOrder, OrderView};
use crate::shops::{self, record_stock};
use crate::util::{self, MAX_PRICE_CENTS};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFlashSale {
    pub sku_id: i64,
    pub price_cents: i64,
    pub stock: i64,
    pub per_user_limit: i64,
    /// Countdown before it opens (0–3600 s).
    pub starts_in_seconds: i64,
    /// How long it stays open (10 s – 24 h).
    pub duration_seconds: i64,
    /// How long a winner has to pay (60–1800 s, default 300).
    pub pay_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlashSaleView {
    pub id: i64,
    pub room_id: i64,
    pub shop_id: i64,
    pub product_id: i64,
    pub sku_id: i64,
    pub title: String,
    pub spec: String,
    pub price_cents: i64,
    pub original_price_cents: i64,
    pub stock: i64,
    /// Units in orders not cancelled.
    pub sold: i64,
    pub remaining: i64,
    pub per_user_limit: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub pay_seconds: i64,
    /// running | closed
    pub status: String,
}

impl FlashSaleView {
    pub(crate) fn card(&self) -> FlashSaleCard {
        FlashSaleCard {
            id: self.id,
            product_id: self.product_id,
            sku_id: self.sku_id,
            title: self.title.clone(),
            spec: self.spec.clone(),
            price_cents: self.price_cents,
            original_price_cents: self.original_price_cents,
            stock: u32::try_from(self.stock).unwrap_or_default(),
            remaining: u32::try_from(self.remaining).unwrap_or_default(),
            per_user_limit: u32::try_from(self.per_user_limit).unwrap_or_default(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        }
    }

    fn spec(&self) -> SaleSpec {
        SaleSpec {
            id: self.id,
            stock: u32::try_from(self.stock).unwrap_or_default(),
            per_user_limit: u32::try_from(self.per_user_limit).unwrap_or_default(),
            window: SaleWindow {
                starts_at: self.starts_at,
                ends_at: self.ends_at,
            },
        }
    }
}

const SALE_COLUMNS: &str = "SELECT f.id, f.room_id, f.shop_id, k.product_id, f.sku_id, p.title, k.spec, f.price_cents, \
     k.price_cents, f.stock, f.sold, f.per_user_limit, f.starts_at, f.ends_at, f.pay_seconds, f.status \
     FROM flash_sales f JOIN skus k ON k.id = f.sku_id JOIN products p ON p.id = k.product_id";

fn sale_from_row(row: &sqlx::any::AnyRow) -> Result<FlashSaleView, sqlx::Error> {
    let stock: i64 = row.try_get(9)?;
    let sold: i64 = row.try_get(10)?;
    Ok(FlashSaleView {
        id: row.try_get(0)?,
        room_id: row.try_get(1)?,
        shop_id: row.try_get(2)?,
        product_id: row.try_get(3)?,
        sku_id: row.try_get(4)?,
        title: row.try_get(5)?,
        spec: row.try_get(6)?,
        price_cents: row.try_get(7)?,
        original_price_cents: row.try_get(8)?,
        stock,
        sold,
        remaining: stock - sold,
        per_user_limit: row.try_get(11)?,
        starts_at: row.try_get(12)?,
        ends_at: row.try_get(13)?,
        pay_seconds: row.try_get(14)?,
        status: row.try_get(15)?,
    })
}

pub(crate) async fn sale_by_id(state: &AppState, id: i64) -> ApiResult<Option<FlashSaleView>> {
    let sql = format!("{SALE_COLUMNS} WHERE f.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?;
    Ok(row.as_ref().map(sale_from_row).transpose()?)
}

pub(crate) async fn sales_of_room(state: &AppState, room: i64) -> ApiResult<Vec<FlashSaleView>> {
    let sql = format!("{SALE_COLUMNS} WHERE f.room_id = $1 ORDER BY f.id DESC LIMIT 50");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(room)
        .fetch_all(state.db.pool())
        .await?;
    Ok(rows
        .iter()
        .map(sale_from_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?)
}

/// Start a flash sale in a room (its host, with a SKU of their own shop). The sale's stock
/// leaves the SKU at once and returns when the sale is over.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/flash-sales", tag = "commerce", request_body = CreateFlashSale,
    params(("id" = i64, Path, description = "room id")),
    responses((status = 201, body = FlashSaleView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_flash_sale(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiJson(body): ApiJson<CreateFlashSale>,
) -> ApiResult<(StatusCode, Json<FlashSaleView>)> {
    commerce.require_tools(&p, room).await?;
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "规格不存在");
    let sku = orders::sku_for_sale(&state, body.sku_id)
        .await?
        .ok_or_else(not_found)?;
    let product = shops::product_by_id(&state, sku.product_id)
        .await?
        .ok_or_else(not_found)?;
    let shop = shops::owned_shop(&state, &p, product.shop_id).await?;
    if product.status != "listed" {
        return Err(ApiError::validation("商品须先上架才能秒杀"));
    }
    let price = util::cents(body.price_cents, "秒杀价", MAX_PRICE_CENTS)?;
    if price >= sku.price_cents {
        return Err(ApiError::validation("秒杀价须低于商品原价"));
    }
    let stock = util::count(body.stock, "秒杀库存", 1, 1_000_000)?;
    let limit = util::count(body.per_user_limit, "每人限购", 1, 99)?;
    let starts_in = util::count(body.starts_in_seconds, "开始倒计时（秒）", 0, 3600)?;
    let duration = util::count(body.duration_seconds, "持续时间（秒）", 10, 86_400)?;
    let pay_seconds = util::count(body.pay_seconds.unwrap_or(300), "支付时限（秒）", 60, 1800)?;
    let now = state.clock.now_millis();
    let starts_at = now + starts_in * 1000;
    let mut tx = state.db.begin_write().await?;
    let carved = sqlx::query(
        "UPDATE skus SET stock = stock - $1 WHERE id = $2 AND stock >= $1 RETURNING stock",
    )
    .bind(stock)
    .bind(body.sku_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(carved) = carved else {
        return Err(ApiError::validation("秒杀库存不能超过该规格的现有库存"));
    };
    let stock_after: i64 = carved.try_get(0)?;
    let row = sqlx::query(
        "INSERT INTO flash_sales (room_id, shop_id, sku_id, price_cents, stock, per_user_limit, starts_at, ends_at, \
         pay_seconds, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(room)
    .bind(shop.id)
    .bind(body.sku_id)
    .bind(price)
    .bind(stock)
    .bind(limit)
    .bind(starts_at)
    .bind(starts_at + duration * 1000)
    .bind(pay_seconds)
    .bind(p.account_id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get(0)?;
    record_stock(
        &mut tx,
        body.sku_id,
        -stock,
        stock_after,
        "flash_sale",
        Some(id),
        Some(p.account_id),
        "秒杀占用",
        now,
    )
    .await?;
    tx.commit().await?;
    let sale = sale_by_id(&state, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    commerce.sales.load(&sale.spec(), &[]).await?;
    commerce
        .rooms
        .announce(room, CommerceEvent::FlashSaleStarted { sale: sale.card() })
        .await;
    // The sale's units left the SKU: the product's card shows less.
    commerce.sku_changed(sale.sku_id);
    Ok((StatusCode::CREATED, Json(sale)))
}

#[utoipa::path(get, path = "/api/v1/flash-sales/{id}", tag = "commerce",
    params(("id" = i64, Path, description = "flash sale id")),
    responses((status = 200, body = FlashSaleView), (status = 404, body = ErrorBody)))]
pub async fn get_flash_sale(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<FlashSaleView>> {
    let sale = visible_sale(&state, &commerce, &p, id).await?;
    Ok(Json(sale))
}

async fn visible_sale(
    state: &AppState,
    commerce: &Commerce,
    p: &foundation::identity::Principal,
    id: i64,
) -> ApiResult<FlashSaleView> {
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "秒杀活动不存在");
    let sale = sale_by_id(state, id).await?.ok_or_else(not_found)?;
    commerce
        .access(p, sale.room_id)
        .await
        .map_err(|_| not_found())?;
    Ok(sale)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlashOrder {
    /// Units (default 1, at most the per-user limit).
    pub quantity: Option<i64>,
    pub address: Option<String>,
}

/// What is already taken in a sale, per user: the gate's state after a restart.
async fn taken_by_user(
    conn: &mut sqlx::AnyConnection,
    sale: i64,
) -> Result<Vec<(i64, u32)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT buyer_id, CAST(SUM(quantity) AS BIGINT) FROM orders WHERE flash_sale_id = $1 AND status <> 'cancelled' GROUP BY buyer_id",
    )
    .bind(sale)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let user: i64 = r.try_get(0)?;
            let qty: i64 = r.try_get(1)?;
            Ok((user, u32::try_from(qty).unwrap_or(u32::MAX)))
        })
        .collect()
}

/// Loads a sale's gate from the database. With holds (Redis) under the sale's row lock, so no
/// order commits between reading what is taken and loading it (a write still holding a hold of
/// the state a reload drops finds it gone and fails instead of committing uncounted).
async fn load_gate(commerce: &Commerce, spec: &SaleSpec) -> ApiResult<()> {
    let db = &commerce.app.db;
    if !commerce.sales.tracks_holds() {
        let mut conn = db.pool().acquire().await?;
        let taken = taken_by_user(&mut conn, spec.id).await?;
        commerce.sales.load(spec, &taken).await?;
        return Ok(());
    }
    // A crowd that found the gate gone queues on the lock: the first loads it, the others see
    // it loaded and read nothing.
    if commerce.sales.remaining(spec.id).await?.is_some() {
        return Ok(());
    }
    let mut tx = db.begin_write().await?;
    lock_row(&mut tx, db.backend(), RowTable::FlashSales, spec.id).await?;
    if commerce.sales.remaining(spec.id).await?.is_none() {
        let taken = taken_by_user(&mut tx, spec.id).await?;
        commerce.sales.load(spec, &taken).await?;
    }
    tx.rollback().await?;
    Ok(())
}

fn refusal_error(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::SoldOut => ErrorCode::SoldOut.into(),
        Refusal::LimitReached => ErrorCode::LimitReached.into(),
        Refusal::NotOpen => ErrorCode::SaleNotOpen.into(),
        Refusal::Ended => ErrorCode::SaleEnded.into(),
        Refusal::BadQuantity => ApiError::validation("购买数量须至少为 1"),
    }
}

/// Buy in a flash sale. `Idempotency-Key` is required: repeating the request (a retry after a
/// timeout, a double tap) answers with the same order and never takes stock twice.
#[utoipa::path(post, path = "/api/v1/flash-sales/{id}/orders", tag = "commerce",
    request_body = Option<FlashOrder>,
    params(("id" = i64, Path, description = "flash sale id"),
           ("Idempotency-Key" = String, Header, description = "1–64 of [A-Za-z0-9_-]")),
    responses((status = 201, body = OrderView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 410, body = ErrorBody)))]
pub async fn order_flash_sale(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<OrderView>)> {
    let key = util::idempotency_key(&headers)?
        .ok_or_else(|| ApiError::new(ErrorCode::IdempotencyKeyRequired))?;
    let body: FlashOrder = util::optional_json(&body)?;
    let quantity = util::count(
        body.quantity.unwrap_or(1),
        "购买数量",
        1,
        orders::MAX_QUANTITY,
    )?;
    let address = util::text(&body.address.unwrap_or_default(), "收货地址", 0, 200)?;
    let sale = commerce.sale(id).await?;
    commerce.access(&p, sale.view.room_id).await?;
    if sale.shop_owner == p.account_id {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "不能购买自己店铺的商品",
        ));
    }
    let qty = u32::try_from(quantity).unwrap_or(u32::MAX);
    let now = state.clock.now_millis();
    let spec = sale.view.spec();
    let replay = async |existing: &orders::OrderRow| {
        orders::replay_order(&state, existing, sale.view.sku_id, Some(id), quantity).await
    };
    // The crowd is answered by the gate alone; the database is asked only by winners, and by
    // those who already hold units (a retry of theirs gets their order back).
    let mut hold = SaleHold::new(p.account_id, &key, qty, now);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut reserve = commerce.sales.reserve(&spec, now, &hold).await?;
        if reserve == Reserve::NotLoaded {
            load_gate(&commerce, &spec).await?;
            reserve = commerce.sales.reserve(&spec, now, &hold).await?;
        }
        match reserve {
            Reserve::Reserved { .. } => break,
            Reserve::Refused { refusal, holds } => {
                if holds
                    && let Some(existing) = orders::order_by_key(&state, p.account_id, &key).await?
                {
                    return replay(&existing).await;
                }
                return Err(refusal_error(refusal));
            }
            Reserve::NotLoaded => return Err(ErrorCode::Unavailable.into()),
            // Only Redis gates answer this: an attempt with this key holds units already.
            Reserve::InFlight => match in_flight(&commerce, &sale, &hold).await? {
                InFlight::Order(existing) => return replay(&existing).await,
                InFlight::TakenOver(taken) => {
                    hold = taken;
                    break;
                }
                // It ended without an order meanwhile: a fresh attempt (twice at most).
                InFlight::Gone if rounds < 3 => {}
                InFlight::Gone => return Err(ErrorCode::Unavailable.into()),
            },
        }
    }
    // From here the reservation must end in an order or be released: a task of its own, so a
    // client that hangs up (dropping this handler) cannot stop it half-way.
    let settle = {
        let (commerce, sale, p, address, hold) = (
            commerce.clone(),
            sale.clone(),
            p.clone(),
            address.clone(),
            hold.clone(),
        );
        tokio::spawn(async move {
            let placed = write_order(&commerce, &sale, &hold, quantity, &address).await;
            match &placed {
                Ok(_) => {
                    commerce
                        .notices
                        .order(sale.view.room_id, &p.name, &sale.view.title);
                    commerce
                        .flash_stock_changed(id, Some(sale.view.room_id))
                        .await;
                }
                Err(e) => give_back(&commerce, id, &hold, e).await,
            }
            placed
        })
    };
    let placed = settle.await.map_err(ApiError::internal)?;
    match placed {
        Ok(order) => {
            let written = new_order(&sale.view, p.account_id, quantity, &address, &key, now);
            Ok((
                StatusCode::CREATED,
                Json(orders::placed_view(
                    &written,
                    order,
                    now,
                    &p.name,
                    &sale.shop_name,
                )),
            ))
        }
        Err(e) => match e {
            WriteError::Duplicate => {
                let existing = orders::order_by_key(&state, p.account_id, &key)
                    .await?
                    .ok_or_else(ApiError::not_found)?;
                replay(&existing).await
            }
            WriteError::SoldOut => Err(ErrorCode::SoldOut.into()),
            // A retry of the same key took the reservation over (and writes the order), or
            // the gate was reloaded: this attempt wrote nothing; retrying gets the answer.
            WriteError::Superseded => Err(ErrorCode::Unavailable.into()),
            WriteError::Api(e) => Err(e),
        },
    }
}

/// What became of an attempt of the same key that holds a reservation.
enum InFlight {
    /// Its order is there.
    Order(orders::OrderRow),
    /// It is gone without an order: try afresh.
    Gone,
    /// It never wrote its order: this request holds its reservation now, as this hold.
    TakenOver(SaleHold),
}

/// Another attempt of `mine`'s key holds a reservation: a double tap, a retry after a timeout,
/// or an attempt whose node died before its order was written. Waits for it up to
/// [`IN_FLIGHT_WAIT_MS`] after it reserved; if it is still there, takes it over under the
/// sale's lock — unless its order is committed, which is then the answer.
async fn in_flight(
    commerce: &Commerce,
    sale: &crate::CachedSale,
    mine: &SaleHold,
) -> ApiResult<InFlight> {
    let id = sale.view.id;
    let started = tokio::time::Instant::now();
    let wait = std::time::Duration::from_millis(IN_FLIGHT_WAIT_MS.unsigned_abs());
    loop {
        let Some(held) = commerce.sales.hold_of(id, mine.user, &mine.key).await? else {
            return Ok(
                match orders::order_by_key(&commerce.app, mine.user, &mine.key).await? {
                    Some(order) => InFlight::Order(order),
                    None => InFlight::Gone,
                },
            );
        };
        let waited = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        // Its age on this node's clock; bounded by the real time waited, whatever the clocks.
        if mine.at - held.at + waited >= IN_FLIGHT_WAIT_MS || started.elapsed() >= wait {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let db = &commerce.app.db;
    let mut tx = db.begin_write().await?;
    lock_row(&mut tx, db.backend(), RowTable::FlashSales, id).await?;
    let taken = match commerce.sales.hold_of(id, mine.user, &mine.key).await? {
        None => None,
        Some(held) => match order_of_key(&mut tx, mine.user, &mine.key).await? {
            Some(order) => {
                commerce
                    .sales
                    .settle(id, &[(&held, verdict(Some(order), &held, id))])
                    .await?;
                None
            }
            None if held.qty != mine.qty => {
                return Err(ErrorCode::IdempotencyKeyReused.into());
            }
            None => {
                let take = SaleSettle::TakeOver {
                    at: mine.at,
                    token: mine.token.clone(),
                };
                let taken = commerce.sales.settle(id, &[(&held, take)]).await?;
                taken
                    .first()
                    .copied()
                    .unwrap_or(false)
                    .then(|| mine.clone())
            }
        },
    };
    tx.rollback().await?;
    Ok(match taken {
        Some(hold) => InFlight::TakenOver(hold),
        None => match orders::order_by_key(&commerce.app, mine.user, &mine.key).await? {
            Some(order) => InFlight::Order(order),
            None => InFlight::Gone,
        },
    })
}

/// The order a key made, as the lock holder sees it: its sale and `created_at`.
async fn order_of_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    buyer: i64,
    key: &str,
) -> Result<Option<(Option<i64>, i64)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT flash_sale_id, created_at FROM orders WHERE buyer_id = $1 AND idempotency_key = $2",
    )
    .bind(buyer)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// How a hold whose attempt is not coming back settles, given the order of its key (sale,
/// `created_at`). The order made by a hold is of its sale with `created_at` = the hold's `at`
/// (an attempt writes its order with the time it reserved or took over at): then the hold
/// is spent. Any other order under the key (another sale's; one of this sale that was made
/// earlier, then cancelled, and retried) wrote nothing for this hold: its units go back. In
/// the one case this cannot tell apart (a retry in the same millisecond as the order it
/// repeats), the hold counts as spent: a unit may stay out of the sale, never be sold twice.
fn verdict(order: Option<(Option<i64>, i64)>, hold: &SaleHold, sale: i64) -> SaleSettle {
    match order {
        Some((Some(of_sale), created_at)) if of_sale == sale && created_at == hold.at => {
            SaleSettle::Committed
        }
        _ => SaleSettle::Release,
    }
}

/// The reservation of a write that failed goes back. Certainly unwritten (refused by the
/// sale's guard, or superseded): at once. In-process gates: at once too, as their node holds
/// everything in flight. Otherwise (a repeated key, a group commit whose outcome is unknown)
/// the database is asked under the sale's lock first; if that fails, the sweeper does it.
async fn give_back(commerce: &Commerce, sale: i64, hold: &SaleHold, error: &WriteError) {
    let known = matches!(error, WriteError::SoldOut | WriteError::Superseded);
    let outcome = if known || !commerce.sales.tracks_holds() {
        commerce
            .sales
            .settle(sale, &[(hold, SaleSettle::Release)])
            .await
            .map(|_| ())
            .map_err(FenceError::from)
    } else {
        resolve_holds(commerce, sale, std::slice::from_ref(hold))
            .await
            .map(|_| ())
    };
    if let Err(e) = outcome {
        tracing::warn!(sale, error = %e, "flash-sale reservation not given back yet; the sweeper will");
    }
}

/// What [`resolve_holds`] did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Resolved {
    pub released: usize,
    pub committed: usize,
}

/// Settles holds whose attempts are not coming back, under the sale's lock: each by the
/// database's word on its key ([`verdict`]). A hold that changed hands meanwhile is left.
async fn resolve_holds(
    commerce: &Commerce,
    sale: i64,
    holds: &[SaleHold],
) -> Result<Resolved, FenceError> {
    let db = &commerce.app.db;
    let mut tx = db.begin_write().await?;
    lock_row(&mut tx, db.backend(), RowTable::FlashSales, sale).await?;
    let mut settles = Vec::with_capacity(holds.len());
    for hold in holds {
        let order = order_of_key(&mut tx, hold.user, &hold.key).await?;
        settles.push((hold, verdict(order, hold, sale)));
    }
    let done = commerce.sales.settle(sale, &settles).await?;
    // Nothing was written: the transaction was only the lock.
    tx.rollback().await?;
    let mut resolved = Resolved::default();
    for ((_, settle), done) in settles.iter().zip(done) {
        match (settle, done) {
            (SaleSettle::Release, true) => resolved.released += 1,
            (SaleSettle::Committed, true) => resolved.committed += 1,
            _ => {}
        }
    }
    Ok(resolved)
}

pub(crate) enum WriteError {
    /// The idempotency key raced in from another request.
    Duplicate,
    /// The database's own check: never more than the sale's stock.
    SoldOut,
    /// The attempt no longer holds its reservation (taken over by a retry of its key, or
    /// dropped by a reload of the gate): not written.
    Superseded,
    Api(ApiError),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        if util::is_unique_violation(&e) {
            WriteError::Duplicate
        } else {
            WriteError::Api(e.into())
        }
    }
}

/// One winner's order, waiting for the next group commit.
pub(crate) struct FlashWrite {
    sale: Arc<crate::CachedSale>,
    /// The reservation it writes: the buyer, the key, and the time (`created_at`).
    hold: SaleHold,
    quantity: i64,
    address: String,
    reply: oneshot::Sender<Result<i64, WriteError>>,
}

impl FlashWrite {
    fn order(&self) -> NewOrder<'_> {
        new_order(
            &self.sale.view,
            self.hold.user,
            self.quantity,
            &self.address,
            &self.hold.key,
            self.hold.at,
        )
    }
}

/// Most orders in one transaction.
const GROUP_COMMIT_MAX: usize = 256;

/// Writes winners' orders in group commits: whatever is waiting when a transaction starts goes
/// into it (up to [`GROUP_COMMIT_MAX`]), so one fsync makes a whole burst durable. The group is
/// written in a few multi-row statements; if a sale's guard refuses it, it is written again
/// with each order in a savepoint of its own, so one failing order does not fail the others.
/// Every order is answered only after its transaction committed. With holds (Redis), each
/// transaction first locks its sales' rows and writes only the orders whose attempts still hold
/// their reservations ([`fence`]); after the commit, their holds are settled as committed.
pub(crate) fn start_writer(
    db: foundation::db::Db,
    gate: Arc<dyn SaleGates>,
) -> mpsc::Sender<FlashWrite> {
    let (tx, mut rx) = mpsc::channel::<FlashWrite>(4096);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(GROUP_COMMIT_MAX);
        while rx.recv_many(&mut batch, GROUP_COMMIT_MAX).await > 0 {
            let results = crate::group_commit::surviving_panics(
                "flash-sale orders",
                batch.len(),
                commit_group(&db, &*gate, &batch),
                || WriteError::Api(ApiError::new(ErrorCode::Unavailable)),
            )
            .await;
            let mut committed: Vec<(i64, SaleHold)> = Vec::new();
            for (write, result) in batch.drain(..).zip(results) {
                if result.is_ok() && gate.tracks_holds() {
                    committed.push((write.sale.view.id, write.hold.clone()));
                }
                let _ = write.reply.send(result);
            }
            if !committed.is_empty() {
                tokio::spawn(settle_committed(gate.clone(), committed));
            }
        }
    });
    tx
}

/// Drops the holds of committed orders (one script call per sale). If it fails, the sweeper
/// finds them later and, seeing their orders, does the same.
async fn settle_committed(gate: Arc<dyn SaleGates>, mut committed: Vec<(i64, SaleHold)>) {
    committed.sort_by_key(|(sale, _)| *sale);
    for group in committed.chunk_by(|a, b| a.0 == b.0) {
        let sale = group[0].0;
        let holds: Vec<(&SaleHold, SaleSettle)> = group
            .iter()
            .map(|(_, hold)| (hold, SaleSettle::Committed))
            .collect();
        if let Err(e) = gate.settle(sale, &holds).await {
            tracing::debug!(sale, error = %e, "holds of committed orders left for the sweeper");
        }
    }
}

/// The fence of a group's transaction (gates with holds only): locks the rows of the batch's
/// sales in id order (so two nodes' groups cannot deadlock) and refuses the writes whose
/// attempts no longer hold their reservations. Until the commit no one else can settle a hold
/// of these sales (the sweeper and a retry's take-over need the same lock), so what is checked
/// here stays true until the orders are durable.
async fn fence(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    fencing: &Fencing<'_, dyn SaleGates + '_>,
    batch: &[FlashWrite],
) -> Result<Vec<Option<WriteError>>, FenceError> {
    let gate = fencing.gate;
    let mut verdicts: Vec<Option<WriteError>> = batch.iter().map(|_| None).collect();
    if !gate.tracks_holds() {
        return Ok(verdicts);
    }
    let mut sales: Vec<i64> = batch.iter().map(|w| w.sale.view.id).collect();
    sales.sort_unstable();
    sales.dedup();
    for sale in sales {
        lock_row(tx, fencing.backend, RowTable::FlashSales, sale).await?;
        let (places, holds): (Vec<usize>, Vec<&SaleHold>) = batch
            .iter()
            .enumerate()
            .filter(|(_, w)| w.sale.view.id == sale)
            .map(|(i, w)| (i, &w.hold))
            .unzip();
        let owned = gate.owned(sale, &holds).await?;
        for (i, owned) in places.into_iter().zip(owned) {
            if !owned {
                verdicts[i] = Some(WriteError::Superseded);
            }
        }
    }
    Ok(verdicts)
}

async fn commit_group(
    db: &foundation::db::Db,
    gate: &dyn SaleGates,
    batch: &[FlashWrite],
) -> Vec<Result<i64, WriteError>> {
    match commit_group_at_once(db, gate, batch).await {
        Ok(Some(results)) => results,
        // A sale's own guard refused the group's total (the gate let more through than the
        // sale holds, or the sale closed): order by order, so the others still get theirs.
        Ok(None) => commit_one_by_one(db, gate, batch).await,
        Err(e) => {
            tracing::debug!(error = %e, orders = batch.len(), "flash-sale group write failed; order by order");
            commit_one_by_one(db, gate, batch).await
        }
    }
}

/// The whole group in a handful of statements: the orders and their events in multi-row
/// inserts (`orders::insert_orders_once`), then one guarded `sold` update per sale and one per
/// SKU. `None` (everything rolled back) when a sale's guard refuses the group's total.
async fn commit_group_at_once(
    db: &foundation::db::Db,
    gate: &dyn SaleGates,
    batch: &[FlashWrite],
) -> Result<Option<Vec<Result<i64, WriteError>>>, FenceError> {
    let mut tx = db.begin_write().await?;
    let fencing = Fencing {
        backend: db.backend(),
        gate,
    };
    let verdicts = fence(&mut tx, &fencing, batch).await?;
    let admitted: Vec<&FlashWrite> = batch
        .iter()
        .zip(&verdicts)
        .filter(|(_, verdict)| verdict.is_none())
        .map(|(write, _)| write)
        .collect();
    let new: Vec<(NewOrder<'_>, i64)> = admitted.iter().map(|w| (w.order(), w.hold.at)).collect();
    let ids = orders::insert_orders_once(&mut tx, db.backend(), &new).await?;
    // Units per sale and per SKU of the orders written (a group rarely spans more than one).
    let mut sales: Vec<(i64, i64)> = Vec::new();
    let mut skus: Vec<(i64, i64)> = Vec::new();
    for (write, id) in admitted.iter().zip(&ids) {
        if id.is_none() {
            continue;
        }
        let add = |totals: &mut Vec<(i64, i64)>, key: i64| match totals
            .iter_mut()
            .find(|(k, _)| *k == key)
        {
            Some((_, units)) => *units += write.quantity,
            None => totals.push((key, write.quantity)),
        };
        add(&mut sales, write.sale.view.id);
        add(&mut skus, write.sale.view.sku_id);
    }
    // Rows are locked in id order, so two nodes' groups cannot deadlock on PostgreSQL.
    sales.sort_unstable();
    skus.sort_unstable();
    for (sale, units) in &sales {
        let taken = sqlx::query(
            "UPDATE flash_sales SET sold = sold + $1 WHERE id = $2 AND sold + $1 <= stock AND status = 'running'",
        )
        .bind(*units)
        .bind(*sale)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
    }
    for (sku, units) in &skus {
        sqlx::query("UPDATE skus SET sold = sold + $1 WHERE id = $2")
            .bind(*units)
            .bind(*sku)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // The admitted writes' ids, in order, for the places the fence let through.
    let mut ids = ids.into_iter();
    Ok(Some(
        verdicts
            .into_iter()
            .map(|verdict| match verdict {
                Some(refused) => Err(refused),
                // `insert_orders_once` answers one entry per order: `None` is a repeated key.
                None => ids.next().flatten().ok_or(WriteError::Duplicate),
            })
            .collect(),
    ))
}

/// The slow path: each order in a savepoint of its own, checked against its sale one by one.
async fn commit_one_by_one(
    db: &foundation::db::Db,
    gate: &dyn SaleGates,
    batch: &[FlashWrite],
) -> Vec<Result<i64, WriteError>> {
    crate::group_commit::in_savepoints(
        db,
        "flash-sale",
        batch,
        || WriteError::Api(ApiError::new(ErrorCode::Unavailable)),
        &Fencing {
            backend: db.backend(),
            gate,
        },
        fence,
        write_one,
    )
    .await
}

async fn write_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    write: &FlashWrite,
) -> Result<i64, WriteError> {
    let sale = &write.sale.view;
    let taken = sqlx::query("UPDATE flash_sales SET sold = sold + $1 WHERE id = $2 AND sold + $1 <= stock AND status = 'running'")
        .bind(write.quantity)
        .bind(sale.id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if taken == 0 {
        return Err(WriteError::SoldOut);
    }
    sqlx::query("UPDATE skus SET sold = sold + $1 WHERE id = $2")
        .bind(write.quantity)
        .bind(sale.sku_id)
        .execute(&mut **tx)
        .await?;
    Ok(orders::insert_order(tx, &write.order(), write.hold.at).await?)
}

/// A winner's order: what is written, and what the answer is built from.
fn new_order<'a>(
    sale: &'a FlashSaleView,
    buyer: i64,
    quantity: i64,
    address: &'a str,
    key: &'a str,
    now: i64,
) -> NewOrder<'a> {
    NewOrder {
        buyer,
        shop_id: sale.shop_id,
        sku_id: sale.sku_id,
        room_id: Some(sale.room_id),
        flash_sale_id: Some(sale.id),
        coupon_claim_id: None,
        product_title: &sale.title,
        sku_spec: &sale.spec,
        quantity,
        unit_price_cents: sale.price_cents,
        discount_cents: 0,
        address,
        pay_deadline: now + sale.pay_seconds * 1000,
        idempotency_key: Some(key),
    }
}

/// Queues a winner's order for the next group commit and waits for it.
async fn write_order(
    commerce: &Commerce,
    sale: &Arc<crate::CachedSale>,
    hold: &SaleHold,
    quantity: i64,
    address: &str,
) -> Result<i64, WriteError> {
    let (reply, answer) = oneshot::channel();
    let write = FlashWrite {
        sale: sale.clone(),
        hold: hold.clone(),
        quantity,
        address: address.to_owned(),
        reply,
    };
    let unavailable = || WriteError::Api(ApiError::new(ErrorCode::Unavailable));
    commerce
        .flash_writer
        .send(write)
        .await
        .map_err(|_| unavailable())?;
    answer.await.map_err(|_| unavailable())?
}

/// Closes sales that are over and have no unpaid order left: the unsold units go back to the
/// SKU, and the room hears the sale ended. Safe on several nodes (`WHERE status = 'running'`).
pub(crate) async fn close_finished(commerce: &Commerce, now: i64) -> anyhow::Result<usize> {
    let state = &commerce.app;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT f.id FROM flash_sales f WHERE f.status = 'running' AND f.ends_at <= $1 AND NOT EXISTS \
         (SELECT 1 FROM orders o WHERE o.flash_sale_id = f.id AND o.status = 'pending_payment') LIMIT 100",
    )
    .bind(now)
    .fetch_all(state.db.pool())
    .await?;
    let mut closed = 0;
    for id in ids {
        let mut tx = state.db.begin_write().await?;
        let row = sqlx::query(
            "UPDATE flash_sales SET status = 'closed', returned = stock - sold WHERE id = $1 AND status = 'running' \
             RETURNING sku_id, stock - sold, sold, room_id",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { continue };
        let sku: i64 = row.try_get(0)?;
        let unsold: i64 = row.try_get(1)?;
        let sold: i64 = row.try_get(2)?;
        let room: i64 = row.try_get(3)?;
        if unsold > 0 {
            let stock: i64 = sqlx::query_scalar(
                "UPDATE skus SET stock = stock + $1 WHERE id = $2 RETURNING stock",
            )
            .bind(unsold)
            .bind(sku)
            .fetch_one(&mut *tx)
            .await?;
            record_stock(
                &mut tx,
                sku,
                unsold,
                stock,
                "flash_sale_return",
                Some(id),
                None,
                "秒杀结束，未售出库存退回",
                now,
            )
            .await?;
        }
        tx.commit().await?;
        closed += 1;
        commerce.forget_sale(id).await;
        if unsold > 0 {
            commerce.sku_changed(sku);
        }
        commerce
            .rooms
            .announce(
                room,
                CommerceEvent::FlashSaleEnded {
                    sale: id,
                    sold: u32::try_from(sold).unwrap_or_default(),
                },
            )
            .await;
    }
    Ok(closed)
}

/// Gives back the reservations of attempts that never got their order (Redis gates only): the
/// holds of open sales older than [`HOLD_RECLAIM_AFTER_MS`] — their node died between the
/// reservation and the commit, or lost Redis's answer — are settled by the database's word
/// under each sale's lock (`resolve_holds`): units of a hold whose order is there stay taken,
/// the others go back to the sale and to the buyer's limit. Safe on several nodes: settles
/// are by token, and the lock keeps them from crossing a commit.
pub(crate) async fn reclaim_abandoned(commerce: &Commerce, now: i64) -> anyhow::Result<usize> {
    if !commerce.sales.tracks_holds() {
        return Ok(0);
    }
    let open = sqlx::query(
        "SELECT id, room_id FROM flash_sales WHERE status = 'running' AND starts_at <= $1 AND ends_at > $1",
    )
    .bind(now)
    .fetch_all(commerce.app.db.pool())
    .await?;
    let mut released = 0;
    for row in &open {
        let sale: i64 = row.try_get(0)?;
        let room: i64 = row.try_get(1)?;
        let resolved = match reclaim_sale(commerce, sale, now).await {
            Ok(Some(resolved)) => resolved,
            Ok(None) => continue,
            // One sale's trouble (Redis or the database away, an unreadable hold) does not
            // hold the others up; the next sweep tries again.
            Err(e) => {
                tracing::warn!(sale, error = %e, "could not settle abandoned flash-sale reservations");
                continue;
            }
        };
        tracing::info!(
            sale,
            released = resolved.released,
            committed = resolved.committed,
            "settled abandoned flash-sale reservations"
        );
        if resolved.released > 0 {
            released += resolved.released;
            commerce.flash_stock_changed(sale, Some(room)).await;
        }
    }
    Ok(released)
}

/// One sale's part of [`reclaim_abandoned`]: `None` when it has no stale hold.
async fn reclaim_sale(
    commerce: &Commerce,
    sale: i64,
    now: i64,
) -> Result<Option<Resolved>, FenceError> {
    let stale = commerce
        .sales
        .stale(sale, now - HOLD_RECLAIM_AFTER_MS)
        .await?;
    if stale.is_empty() {
        return Ok(None);
    }
    Ok(Some(resolve_holds(commerce, sale, &stale).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(at: i64) -> SaleHold {
        SaleHold {
            user: 3,
            key: "k".into(),
            qty: 1,
            at,
            token: "t".into(),
        }
    }

    #[test]
    fn a_hold_is_spent_only_by_the_order_it_wrote() {
        let sale = 12;
        assert_eq!(verdict(None, &hold(100), sale), SaleSettle::Release);
        assert_eq!(
            verdict(Some((Some(sale), 100)), &hold(100), sale),
            SaleSettle::Committed,
            "its own order"
        );
        assert_eq!(
            verdict(Some((Some(sale), 90)), &hold(100), sale),
            SaleSettle::Release,
            "an earlier order of the key, repeated: the retry's units go back"
        );
        assert_eq!(
            verdict(Some((Some(99), 100)), &hold(100), sale),
            SaleSettle::Release,
            "the key made an order of another sale"
        );
        assert_eq!(
            verdict(Some((None, 100)), &hold(100), sale),
            SaleSettle::Release,
            "the key made a regular order"
        );
    }
}
