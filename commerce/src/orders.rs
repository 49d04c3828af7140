//! Orders: placing one (from the shop or the room, optionally with a coupon), simulated payment,
//! shipping with a simulated tracking number, receipt, refund and return requests and their
//! handling, and the automatic cancel of orders left unpaid (their stock goes back).
//!
//! Every change is one transaction: the order row moves only from the status it was read in
//! (`WHERE status = $from`), the money moves through the wallet ledger, the stock through the
//! stock history, and an `order_events` row records who did what.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, ApiQuery, CurrentUser};
use foundation::identity::Principal;
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};
use utoipa::{IntoParams, ToSchema};

use crate::Commerce;
use crate::core::coupon::UseError;
use crate::core::order::{self, Action, Actor, OrderStatus, TransitionError};
use crate::shops::{self, record_stock};
use crate::util;
use crate::wallet::{self, Reason};

/// How long a regular order may stay unpaid.
pub const PAY_WINDOW_MS: i64 = 15 * 60_000;
/// Most units of one SKU in one order.
pub const MAX_QUANTITY: i64 = 99;

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderEventView {
    pub from_status: Option<String>,
    pub to_status: String,
    pub action: String,
    pub actor_id: Option<i64>,
    pub note: String,
    pub at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub id: i64,
    /// pending_payment | paid | shipped | completed | cancelled | refund_requested |
    /// return_requested | return_approved | return_shipped | refunded
    pub status: String,
    pub buyer_id: i64,
    pub buyer_name: String,
    pub shop_id: i64,
    pub shop_name: String,
    pub sku_id: i64,
    pub product_title: String,
    pub sku_spec: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
    pub subtotal_cents: i64,
    pub discount_cents: i64,
    pub total_cents: i64,
    pub room_id: Option<i64>,
    pub flash_sale_id: Option<i64>,
    pub coupon_claim_id: Option<i64>,
    pub tracking_no: Option<String>,
    /// Why the buyer asked for the (latest) refund or return.
    pub refund_reason: Option<String>,
    /// The tracking number of the goods the buyer sent back (退货运单号).
    pub return_tracking_no: Option<String>,
    pub address: String,
    /// Unpaid orders are cancelled at this time (Unix milliseconds).
    pub pay_deadline: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Every state change, oldest first (in the detail view only).
    pub events: Vec<OrderEventView>,
}

/// An order as stored (what transitions need).
#[derive(Debug, Clone)]
pub(crate) struct OrderRow {
    pub id: i64,
    pub buyer_id: i64,
    pub shop_owner: i64,
    pub sku_id: i64,
    pub flash_sale_id: Option<i64>,
    pub quantity: i64,
    pub total_cents: i64,
    pub status: OrderStatus,
    pub refund_from: Option<OrderStatus>,
    /// What the idempotent request asked for: the SKU, quantity and flash sale.
    pub room_id: Option<i64>,
    /// The last change: an action applies only if the order is still as it was read.
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

const ORDER_ROW: &str = "SELECT o.id, o.buyer_id, o.shop_id, s.owner_id, o.sku_id, o.flash_sale_id, o.quantity, \
     o.total_cents, o.status, o.refund_from, o.room_id, o.updated_at, o.completed_at \
     FROM orders o JOIN shops s ON s.id = o.shop_id";

fn order_row(row: &sqlx::any::AnyRow) -> Result<OrderRow, sqlx::Error> {
    let status: String = row.try_get(8)?;
    let refund_from: Option<String> = row.try_get(9)?;
    Ok(OrderRow {
        id: row.try_get(0)?,
        buyer_id: row.try_get(1)?,
        shop_owner: row.try_get(3)?,
        sku_id: row.try_get(4)?,
        flash_sale_id: row.try_get(5)?,
        quantity: row.try_get(6)?,
        total_cents: row.try_get(7)?,
        status: OrderStatus::parse(&status).unwrap_or(OrderStatus::Cancelled),
        refund_from: refund_from.as_deref().and_then(OrderStatus::parse),
        room_id: row.try_get(10)?,
        updated_at: row.try_get(11)?,
        completed_at: row.try_get(12)?,
    })
}

pub(crate) async fn order_by_id(state: &AppState, id: i64) -> ApiResult<Option<OrderRow>> {
    let sql = format!("{ORDER_ROW} WHERE o.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?;
    Ok(row.as_ref().map(order_row).transpose()?)
}

pub(crate) async fn order_by_key(
    state: &AppState,
    buyer: i64,
    key: &str,
) -> ApiResult<Option<OrderRow>> {
    let sql = format!("{ORDER_ROW} WHERE o.buyer_id = $1 AND o.idempotency_key = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(buyer)
        .bind(key)
        .fetch_optional(state.db.pool())
        .await?;
    Ok(row.as_ref().map(order_row).transpose()?)
}

const VIEW_COLUMNS: &str = "SELECT o.id, o.status, o.buyer_id, a.name, o.shop_id, s.name, o.sku_id, o.product_title, \
     o.sku_spec, o.quantity, o.unit_price_cents, o.subtotal_cents, o.discount_cents, o.total_cents, o.room_id, \
     o.flash_sale_id, o.coupon_claim_id, o.tracking_no, o.refund_reason, o.address, o.pay_deadline, o.created_at, \
     o.updated_at, o.return_tracking_no FROM orders o JOIN shops s ON s.id = o.shop_id JOIN accounts a ON a.id = o.buyer_id";

fn view_from_row(row: &sqlx::any::AnyRow) -> Result<OrderView, sqlx::Error> {
    Ok(OrderView {
        id: row.try_get(0)?,
        status: row.try_get(1)?,
        buyer_id: row.try_get(2)?,
        buyer_name: row.try_get(3)?,
        shop_id: row.try_get(4)?,
        shop_name: row.try_get(5)?,
        sku_id: row.try_get(6)?,
        product_title: row.try_get(7)?,
        sku_spec: row.try_get(8)?,
        quantity: row.try_get(9)?,
        unit_price_cents: row.try_get(10)?,
        subtotal_cents: row.try_get(11)?,
        discount_cents: row.try_get(12)?,
        total_cents: row.try_get(13)?,
        room_id: row.try_get(14)?,
        flash_sale_id: row.try_get(15)?,
        coupon_claim_id: row.try_get(16)?,
        tracking_no: row.try_get(17)?,
        refund_reason: row.try_get(18)?,
        address: row.try_get(19)?,
        pay_deadline: row.try_get(20)?,
        created_at: row.try_get(21)?,
        updated_at: row.try_get(22)?,
        return_tracking_no: row.try_get(23)?,
        events: Vec::new(),
    })
}

/// The full view of one order, with its history.
pub(crate) async fn order_view(state: &AppState, id: i64) -> ApiResult<OrderView> {
    let sql = format!("{VIEW_COLUMNS} WHERE o.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut view = view_from_row(&row)?;
    let events = sqlx::query(
        "SELECT from_status, to_status, action, actor_id, note, at FROM order_events \
         WHERE order_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(state.db.pool())
    .await?;
    view.events = events
        .iter()
        .map(|r| {
            Ok(OrderEventView {
                from_status: r.try_get(0)?,
                to_status: r.try_get(1)?,
                action: r.try_get(2)?,
                actor_id: r.try_get(3)?,
                note: r.try_get(4)?,
                at: r.try_get(5)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(view)
}

/// A new order, written by [`insert_order`].
#[derive(Debug)]
pub(crate) struct NewOrder<'a> {
    pub buyer: i64,
    pub shop_id: i64,
    pub sku_id: i64,
    pub room_id: Option<i64>,
    pub flash_sale_id: Option<i64>,
    pub coupon_claim_id: Option<i64>,
    pub product_title: &'a str,
    pub sku_spec: &'a str,
    pub quantity: i64,
    pub unit_price_cents: i64,
    pub discount_cents: i64,
    pub address: &'a str,
    pub pay_deadline: i64,
    pub idempotency_key: Option<&'a str>,
}

/// The view of an order [`insert_order`] just wrote, built from what was written, so a flash
/// sale's winner is answered without reading it back.
pub(crate) fn placed_view(
    order: &NewOrder<'_>,
    id: i64,
    now: i64,
    buyer_name: &str,
    shop_name: &str,
) -> OrderView {
    let subtotal = order.unit_price_cents * order.quantity;
    OrderView {
        id,
        status: OrderStatus::PendingPayment.as_str().to_owned(),
        buyer_id: order.buyer,
        buyer_name: buyer_name.to_owned(),
        shop_id: order.shop_id,
        shop_name: shop_name.to_owned(),
        sku_id: order.sku_id,
        product_title: order.product_title.to_owned(),
        sku_spec: order.sku_spec.to_owned(),
        quantity: order.quantity,
        unit_price_cents: order.unit_price_cents,
        subtotal_cents: subtotal,
        discount_cents: order.discount_cents,
        total_cents: subtotal - order.discount_cents,
        room_id: order.room_id,
        flash_sale_id: order.flash_sale_id,
        coupon_claim_id: order.coupon_claim_id,
        tracking_no: None,
        refund_reason: None,
        return_tracking_no: None,
        address: order.address.to_owned(),
        pay_deadline: order.pay_deadline,
        created_at: now,
        updated_at: now,
        events: vec![OrderEventView {
            from_status: None,
            to_status: OrderStatus::PendingPayment.as_str().to_owned(),
            action: "place".to_owned(),
            actor_id: Some(order.buyer),
            note: String::new(),
            at: now,
        }],
    }
}

/// Inserts the order and its first event; a repeated idempotency key is a unique violation.
pub(crate) async fn insert_order(
    tx: &mut Transaction<'_, Any>,
    order: &NewOrder<'_>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    // `$n` placeholders work on both engines; one row has too few to matter.
    static INSERT_ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut sql = ORDER_INSERT_COLUMNS.to_owned();
        push_order_values(
            &mut sql,
            &mut Placeholders::new(foundation::db::Backend::Postgres),
        );
        sql.push_str(" RETURNING id");
        sql
    });
    let query = sqlx::query(sqlx::AssertSqlSafe(INSERT_ONE.as_str()));
    let row = bind_order(query, order, now).fetch_one(&mut **tx).await?;
    let id: i64 = row.try_get(0)?;
    order_event(
        tx,
        id,
        None,
        OrderStatus::PendingPayment,
        "place",
        Some(order.buyer),
        "",
        now,
    )
    .await?;
    Ok(id)
}

/// Columns of an order as [`insert_order`] and [`insert_orders_once`] write them.
const ORDER_INSERT_COLUMNS: &str = "INSERT INTO orders (buyer_id, shop_id, sku_id, room_id, flash_sale_id, \
     coupon_claim_id, product_title, sku_spec, quantity, unit_price_cents, subtotal_cents, discount_cents, \
     total_cents, status, address, pay_deadline, idempotency_key, created_at, updated_at) VALUES ";
/// Values bound per order: every column but `status`.
const ORDER_BINDS: usize = 18;
/// Orders per multi-row statement. Bounded because sqlx-sqlite looks each numbered parameter
/// up by name (a linear scan in SQLite, so a statement's binding cost grows with the square of
/// its parameters), and so that the few distinct statement texts stay in the statement cache.
const ORDERS_PER_STATEMENT: usize = 32;

/// Placeholders for a multi-row statement: SQLite's anonymous `?` (bound in order, with no
/// name to look up), PostgreSQL's `$n`.
struct Placeholders {
    anonymous: bool,
    next: usize,
}

impl Placeholders {
    fn new(backend: foundation::db::Backend) -> Self {
        Self {
            anonymous: matches!(backend, foundation::db::Backend::Sqlite),
            next: 0,
        }
    }

    /// Appends the next `n` placeholders, comma-separated.
    fn push(&mut self, sql: &mut String, n: usize) {
        use std::fmt::Write as _;
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            self.next += 1;
            if self.anonymous {
                sql.push('?');
            } else {
                // Writing into a String cannot fail.
                let _ = write!(sql, "${}", self.next);
            }
        }
    }
}

/// The `(…)` of one order after [`ORDER_INSERT_COLUMNS`]: 13 values, the status, 5 values.
fn push_order_values(sql: &mut String, ph: &mut Placeholders) {
    sql.push('(');
    ph.push(sql, 13);
    sql.push_str(", '");
    sql.push_str(OrderStatus::PendingPayment.as_str());
    sql.push_str("', ");
    ph.push(sql, ORDER_BINDS - 13);
    sql.push(')');
}

fn bind_order<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    order: &NewOrder<'q>,
    now: i64,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let subtotal = order.unit_price_cents * order.quantity;
    query
        .bind(order.buyer)
        .bind(order.shop_id)
        .bind(order.sku_id)
        .bind(order.room_id)
        .bind(order.flash_sale_id)
        .bind(order.coupon_claim_id)
        .bind(order.product_title)
        .bind(order.sku_spec)
        .bind(order.quantity)
        .bind(order.unit_price_cents)
        .bind(subtotal)
        .bind(order.discount_cents)
        .bind(subtotal - order.discount_cents)
        .bind(order.address)
        .bind(order.pay_deadline)
        .bind(order.idempotency_key)
        .bind(now)
        .bind(now)
}

/// Inserts many orders with their `place` events in a few multi-row statements (a flash
/// sale's group commit). An order whose buyer already used its idempotency key is not written:
/// its entry in the answer is `None`, the others hold the new ids, in input order. Each entry
/// carries its own `now`.
pub(crate) async fn insert_orders_once(
    tx: &mut Transaction<'_, Any>,
    backend: foundation::db::Backend,
    orders: &[(NewOrder<'_>, i64)],
) -> Result<Vec<Option<i64>>, sqlx::Error> {
    let mut written = std::collections::HashMap::with_capacity(orders.len());
    for chunk in orders.chunks(ORDERS_PER_STATEMENT) {
        let mut ph = Placeholders::new(backend);
        let mut sql = String::with_capacity(ORDER_INSERT_COLUMNS.len() + chunk.len() * 110);
        sql.push_str(ORDER_INSERT_COLUMNS);
        for row in 0..chunk.len() {
            if row > 0 {
                sql.push_str(", ");
            }
            push_order_values(&mut sql, &mut ph);
        }
        sql.push_str(
            " ON CONFLICT (buyer_id, idempotency_key) DO NOTHING RETURNING id, buyer_id, idempotency_key",
        );
        let mut query =
            sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(chunk.len() == ORDERS_PER_STATEMENT);
        for (order, now) in chunk {
            query = bind_order(query, order, *now);
        }
        // RETURNING gives no order guarantee: match rows back by (buyer, key), which is unique.
        for row in query.fetch_all(&mut **tx).await? {
            let id: i64 = row.try_get(0)?;
            let buyer: i64 = row.try_get(1)?;
            let key: Option<String> = row.try_get(2)?;
            written.insert((buyer, key), id);
        }
    }
    // A key repeated inside this very group is written once: only its first entry gets the id.
    let mut seen = std::collections::HashSet::with_capacity(orders.len());
    let ids: Vec<Option<i64>> = orders
        .iter()
        .map(|(o, _)| {
            written
                .get(&(o.buyer, o.idempotency_key.map(str::to_owned)))
                .copied()
                .filter(|id| seen.insert(*id))
        })
        .collect();
    let events: Vec<(i64, i64, i64)> = orders
        .iter()
        .zip(&ids)
        .filter_map(|((o, now), id)| id.map(|id| (id, o.buyer, *now)))
        .collect();
    for chunk in events.chunks(ORDERS_PER_STATEMENT * 4) {
        let mut ph = Placeholders::new(backend);
        let mut sql = String::from(
            "INSERT INTO order_events (order_id, from_status, to_status, action, actor_id, note, at) VALUES ",
        );
        for row in 0..chunk.len() {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            ph.push(&mut sql, 1);
            sql.push_str(", NULL, '");
            sql.push_str(OrderStatus::PendingPayment.as_str());
            sql.push_str("', 'place', ");
            ph.push(&mut sql, 1);
            sql.push_str(", '', ");
            ph.push(&mut sql, 1);
            sql.push(')');
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(chunk.len() == ORDERS_PER_STATEMENT * 4);
        for (id, buyer, now) in chunk {
            query = query.bind(*id).bind(*buyer).bind(*now);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(ids)
}

#[allow(clippy::too_many_arguments)]
async fn order_event(
    tx: &mut Transaction<'_, Any>,
    order: i64,
    from: Option<OrderStatus>,
    to: OrderStatus,
    action: &str,
    actor: Option<i64>,
    note: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO order_events (order_id, from_status, to_status, action, actor_id, note, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(order)
    .bind(from.map(OrderStatus::as_str))
    .bind(to.as_str())
    .bind(action)
    .bind(actor)
    .bind(note)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    pub sku_id: i64,
    pub quantity: i64,
    /// The live room it is bought from, for the room's dashboard and order notices.
    pub room_id: Option<i64>,
    /// A claimed coupon of this shop.
    pub coupon_claim_id: Option<i64>,
    /// Simulated delivery address.
    pub address: Option<String>,
}

/// The SKU with its product's title and shop, as an order needs them.
pub(crate) struct SkuForSale {
    pub product_id: i64,
    pub spec: String,
    pub price_cents: i64,
}

pub(crate) async fn sku_for_sale(state: &AppState, sku: i64) -> ApiResult<Option<SkuForSale>> {
    let row = sqlx::query("SELECT product_id, spec, price_cents FROM skus WHERE id = $1")
        .bind(sku)
        .fetch_optional(state.db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(SkuForSale {
        product_id: row.try_get(0)?,
        spec: row.try_get(1)?,
        price_cents: row.try_get(2)?,
    }))
}

/// Whether `p` may buy in `room` (when given): they must be able to enter it.
async fn check_room(commerce: &Commerce, p: &Principal, room: Option<i64>) -> ApiResult<()> {
    if let Some(room) = room {
        commerce.access(p, room).await?;
    }
    Ok(())
}

/// An existing order for a repeated idempotency key: the same order if the request is the same.
pub(crate) async fn replay_order(
    state: &AppState,
    existing: &OrderRow,
    sku: i64,
    sale: Option<i64>,
    quantity: i64,
) -> ApiResult<(StatusCode, Json<OrderView>)> {
    if existing.sku_id != sku || existing.flash_sale_id != sale || existing.quantity != quantity {
        return Err(ErrorCode::IdempotencyKeyReused.into());
    }
    Ok((
        StatusCode::CREATED,
        Json(order_view(state, existing.id).await?),
    ))
}

/// Place an order for one SKU of a listed product (stock is held until it is paid or
/// cancelled). With `Idempotency-Key`, repeating the request returns the same order.
#[utoipa::path(post, path = "/api/v1/orders", tag = "commerce", request_body = PlaceOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "1–64 of [A-Za-z0-9_-]")),
    responses((status = 201, body = OrderView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn place_order(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PlaceOrder>,
) -> ApiResult<(StatusCode, Json<OrderView>)> {
    let key = util::idempotency_key(&headers)?;
    if let Some(key) = &key
        && let Some(existing) = order_by_key(&state, p.account_id, key).await?
    {
        return replay_order(&state, &existing, body.sku_id, None, body.quantity).await;
    }
    let quantity = util::count(body.quantity, "购买数量", 1, MAX_QUANTITY)?;
    let address = util::text(&body.address.unwrap_or_default(), "收货地址", 0, 200)?;
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "商品不存在或已下架");
    let sku = sku_for_sale(&state, body.sku_id)
        .await?
        .ok_or_else(not_found)?;
    let (product, shop) = shops::visible_product(&state, &p, sku.product_id).await?;
    if shop.owner_id == p.account_id {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "不能购买自己店铺的商品",
        ));
    }
    check_room(&commerce, &p, body.room_id).await?;
    let now = state.clock.now_millis();
    let subtotal = sku.price_cents * quantity;
    let discount = match body.coupon_claim_id {
        Some(claim) => {
            crate::coupons::discount_for_claim(&state, p.account_id, claim, shop.id, subtotal, now)
                .await?
        }
        None => 0,
    };
    let mut tx = state.db.begin_write().await?;
    let stock_row = sqlx::query(
        "UPDATE skus SET stock = stock - $1, sold = sold + $1 WHERE id = $2 AND stock >= $1 RETURNING stock",
    )
    .bind(quantity)
    .bind(body.sku_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(stock_row) = stock_row else {
        return Err(ErrorCode::SoldOut.into());
    };
    let stock_after: i64 = stock_row.try_get(0)?;
    let new = NewOrder {
        buyer: p.account_id,
        shop_id: shop.id,
        sku_id: body.sku_id,
        room_id: body.room_id,
        flash_sale_id: None,
        coupon_claim_id: body.coupon_claim_id,
        product_title: &product.title,
        sku_spec: &sku.spec,
        quantity,
        unit_price_cents: sku.price_cents,
        discount_cents: discount,
        address: &address,
        pay_deadline: now + PAY_WINDOW_MS,
        idempotency_key: key.as_deref(),
    };
    let id = match insert_order(&mut tx, &new, now).await {
        Ok(id) => id,
        Err(e) if util::is_unique_violation(&e) => {
            // The same key raced in from another request: answer with its order.
            drop(tx);
            let existing = order_by_key(&state, p.account_id, key.as_deref().unwrap_or_default())
                .await?
                .ok_or_else(ApiError::not_found)?;
            return replay_order(&state, &existing, body.sku_id, None, body.quantity).await;
        }
        Err(e) => return Err(e.into()),
    };
    record_stock(
        &mut tx,
        body.sku_id,
        -quantity,
        stock_after,
        "order",
        Some(id),
        Some(p.account_id),
        "",
        now,
    )
    .await?;
    if let Some(claim) = body.coupon_claim_id {
        crate::coupons::use_claim(&mut tx, claim, id, now).await?;
    }
    tx.commit().await?;
    commerce.sku_changed(body.sku_id);
    if let Some(room) = body.room_id {
        commerce.notices.order(room, &p.name, &product.title);
    }
    Ok((StatusCode::CREATED, Json(order_view(&state, id).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OrderQuery {
    /// `buyer` (default): my purchases; `merchant`: my shop's orders.
    #[serde(rename = "as")]
    pub as_: Option<String>,
    pub status: Option<String>,
    pub room_id: Option<i64>,
}

/// My orders as a buyer, or my shop's orders as the merchant; newest first (at most 200).
#[utoipa::path(get, path = "/api/v1/orders", tag = "commerce", params(OrderQuery),
    responses((status = 200, body = [OrderView]), (status = 400, body = ErrorBody)))]
pub async fn list_orders(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiQuery(query): ApiQuery<OrderQuery>,
) -> ApiResult<Json<Vec<OrderView>>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(
            OrderStatus::parse(s)
                .ok_or_else(|| ApiError::validation("未知的订单状态"))?
                .as_str(),
        ),
    };
    let filter = match query.as_.as_deref().unwrap_or("buyer") {
        "buyer" => "o.buyer_id = $1",
        "merchant" => "s.owner_id = $1",
        _ => return Err(ApiError::validation("as 须为 buyer 或 merchant")),
    };
    let sql = format!(
        "{VIEW_COLUMNS} WHERE {filter} AND ($2 IS NULL OR o.status = $2) AND ($3 IS NULL OR o.room_id = $3) \
         ORDER BY o.id DESC LIMIT 200"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(p.account_id)
        .bind(status)
        .bind(query.room_id)
        .fetch_all(state.db.pool())
        .await?;
    let orders = rows
        .iter()
        .map(view_from_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(orders))
}

/// Who `p` is to the order; not found when neither its buyer nor its merchant.
fn actor_of(p: &Principal, order: &OrderRow) -> ApiResult<Actor> {
    if order.buyer_id == p.account_id {
        Ok(Actor::Buyer)
    } else if order.shop_owner == p.account_id {
        Ok(Actor::Merchant)
    } else {
        Err(ApiError::with_message(ErrorCode::NotFound, "订单不存在"))
    }
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "commerce",
    params(("id" = i64, Path, description = "order id")),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<OrderView>> {
    let order = order_by_id(&state, id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "订单不存在"))?;
    actor_of(&p, &order)?;
    Ok(Json(order_view(&state, id).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderActionBody {
    /// Why (a refund or return request needs one; optional elsewhere; for `approve-return` the
    /// merchant's instructions, such as the return address).
    pub reason: Option<String>,
    /// `ship-return` only: the courier's tracking number of the goods sent back, 6–30 letters,
    /// digits or `-`. Without one a simulated number is made, as for `ship`.
    pub tracking_no: Option<String>,
}

/// The path names of the order actions, as `POST /api/v1/orders/{id}/{name}` takes them.
const ACTION_PATHS: [(&str, Action); 13] = [
    ("pay", Action::Pay),
    ("cancel", Action::Cancel),
    ("ship", Action::Ship),
    ("confirm", Action::ConfirmReceipt),
    ("refund", Action::RequestRefund),
    ("approve-refund", Action::ApproveRefund),
    ("reject-refund", Action::RejectRefund),
    ("return", Action::RequestReturn),
    ("approve-return", Action::ApproveReturn),
    ("reject-return", Action::RejectReturn),
    ("ship-return", Action::ShipReturn),
    ("confirm-return", Action::ConfirmReturn),
    ("withdraw", Action::Withdraw),
];

/// Move an order on: `pay`, `cancel`, `ship`, `confirm` (receipt), `refund` (ask for a refund
/// only, 仅退款), `approve-refund`, `reject-refund`, `return` (ask to send the goods back for a
/// refund, 退货退款), `approve-return`, `reject-return`, `ship-return` (the buyer sends them
/// back), `confirm-return` (the merchant got them back: refund and restock), `withdraw` (the
/// buyer takes back an open refund or return request). The buyer pays, confirms and asks; the
/// merchant ships and handles the requests; either may cancel an unpaid order.
#[utoipa::path(post, path = "/api/v1/orders/{id}/{action}", tag = "commerce",
    request_body = Option<OrderActionBody>,
    params(("id" = i64, Path, description = "order id"),
           ("action" = String, Path, description = "pay | cancel | ship | confirm | refund | approve-refund | reject-refund | return | approve-return | reject-return | ship-return | confirm-return | withdraw")),
    responses((status = 200, body = OrderView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn order_action(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath((id, action)): ApiPath<(i64, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<OrderView>> {
    let body: OrderActionBody = util::optional_json(&body)?;
    let action = ACTION_PATHS
        .iter()
        .find(|(name, _)| *name == action)
        .map(|&(_, action)| action)
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "未知的订单操作"))?;
    let order = order_by_id(&state, id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "订单不存在"))?;
    let actor = actor_of(&p, &order)?;
    let reason = util::text(&body.reason.unwrap_or_default(), "原因", 0, 200)?;
    if action == Action::RequestRefund && reason.is_empty() {
        return Err(ApiError::validation("申请退款须说明原因"));
    }
    if action == Action::RequestReturn && reason.is_empty() {
        return Err(ApiError::validation("申请退货须说明原因"));
    }
    if matches!(action, Action::RequestRefund | Action::RequestReturn) {
        check_after_sale_request(&state, &order).await?;
    }
    let return_tracking = match body.tracking_no {
        Some(_) if action != Action::ShipReturn => {
            return Err(ApiError::validation("只有寄回退货时需要填写运单号"));
        }
        Some(no) => Some(parse_tracking_no(&no)?),
        None if action == Action::ShipReturn => Some(tracking_number()),
        None => None,
    };
    apply_action_with(
        &commerce,
        &order,
        action,
        actor,
        Some(p.account_id),
        &reason,
        return_tracking.as_deref(),
    )
    .await?;
    Ok(Json(order_view(&state, id).await?))
}

/// A completed order takes refund and return requests for this long after completion (售后期).
pub const AFTER_SALE_WINDOW_MS: i64 = 15 * 86_400_000;
/// Refund and return requests one order may make in all (a rejected one can be asked again).
pub const MAX_AFTER_SALE_REQUESTS: i64 = 3;

/// Whether the buyer may still ask for a refund or return of `order` (the transition itself is
/// checked by the state machine).
async fn check_after_sale_request(state: &AppState, order: &OrderRow) -> ApiResult<()> {
    let now = state.clock.now_millis();
    if order.status == OrderStatus::Completed
        && order
            .completed_at
            .is_some_and(|at| now - at > AFTER_SALE_WINDOW_MS)
    {
        return Err(ApiError::with_message(
            ErrorCode::InvalidTransition,
            "已超过售后期（确认收货后 15 天），不能再申请退款或退货",
        ));
    }
    let asked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM order_events WHERE order_id = $1 AND action IN ('request_refund', 'request_return')",
    )
    .bind(order.id)
    .fetch_one(state.db.pool())
    .await?;
    if asked >= MAX_AFTER_SALE_REQUESTS {
        return Err(ApiError::with_message(
            ErrorCode::InvalidTransition,
            format!("这个订单已申请过 {asked} 次售后，不能再申请"),
        ));
    }
    Ok(())
}

/// Carries out one transition of `order`, with its money and stock, in one transaction.
pub(crate) async fn apply_action(
    commerce: &Commerce,
    order: &OrderRow,
    action: Action,
    actor: Actor,
    actor_id: Option<i64>,
    note: &str,
) -> ApiResult<()> {
    apply_action_with(commerce, order, action, actor, actor_id, note, None).await
}

/// [`apply_action`], with the tracking number of goods sent back (`ship_return` only).
async fn apply_action_with(
    commerce: &Commerce,
    order: &OrderRow,
    action: Action,
    actor: Actor,
    actor_id: Option<i64>,
    note: &str,
    return_tracking: Option<&str>,
) -> ApiResult<()> {
    let state = &commerce.app;
    let step =
        order::transition(order.status, action, actor, order.refund_from).map_err(|e| match e {
            TransitionError::WrongActor => {
                ApiError::with_message(ErrorCode::Forbidden, "你不能对这个订单执行此操作")
            }
            TransitionError::NotAllowed { .. } => ErrorCode::InvalidTransition.into(),
        })?;
    let now = state.clock.now_millis();
    let mut tx = state.db.begin_write().await?;
    // A new request records where it came from (a rejected or withdrawn one goes back there)
    // and why; a new return forgets the tracking number of an earlier one.
    let request = matches!(action, Action::RequestRefund | Action::RequestReturn);
    let refund_from = request.then(|| order.status.as_str());
    let tracking = (action == Action::Ship).then(tracking_number);
    // Only from the order as it was read (status and last change): a party or a sweeper on
    // another node that moved it in between wins, and this action is refused, rather than
    // applied with a stale `refund_from` or deadline.
    let moved = sqlx::query(
        "UPDATE orders SET status = $1, updated_at = $2, \
         refund_from = CASE WHEN $3 = 1 THEN $4 ELSE refund_from END, \
         refund_reason = CASE WHEN $3 = 1 THEN $5 ELSE refund_reason END, \
         return_tracking_no = CASE WHEN $3 = 1 THEN NULL ELSE COALESCE($9, return_tracking_no) END, \
         tracking_no = COALESCE($6, tracking_no), \
         shipped_at = CASE WHEN $11 = 'ship' THEN $2 ELSE shipped_at END, \
         completed_at = CASE WHEN $11 = 'confirm_receipt' THEN $2 ELSE completed_at END \
         WHERE id = $7 AND status = $8 AND updated_at = $10",
    )
    .bind(step.to.as_str())
    .bind(now)
    .bind(i64::from(request))
    .bind(refund_from)
    .bind(note)
    .bind(tracking.as_deref())
    .bind(order.id)
    .bind(order.status.as_str())
    .bind(return_tracking)
    .bind(order.updated_at)
    .bind(action.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        // Someone else moved it first (the sweeper, the other party).
        return Err(ErrorCode::InvalidTransition.into());
    }
    // Before any other row: the flash sale's row, then the SKU's, in the order the flash-sale
    // group commit locks them, so the two never deadlock on PostgreSQL.
    if step.restock {
        restock(&mut tx, order, actor_id, now).await?;
    }
    match action {
        Action::Pay => {
            wallet::apply(
                &mut tx,
                order.buyer_id,
                -order.total_cents,
                Reason::OrderPayment,
                Some(order.id),
                now,
            )
            .await?;
        }
        Action::ConfirmReceipt => {
            wallet::apply(
                &mut tx,
                order.shop_owner,
                order.total_cents,
                Reason::OrderIncome,
                Some(order.id),
                now,
            )
            .await?;
        }
        Action::ApproveRefund | Action::ConfirmReturn => {
            let paid_out = order.refund_from == Some(OrderStatus::Completed);
            if paid_out {
                wallet::apply(
                    &mut tx,
                    order.shop_owner,
                    -order.total_cents,
                    Reason::RefundClawback,
                    Some(order.id),
                    now,
                )
                .await?;
            }
            wallet::apply(
                &mut tx,
                order.buyer_id,
                order.total_cents,
                Reason::Refund,
                Some(order.id),
                now,
            )
            .await?;
            sqlx::query("UPDATE skus SET sold = sold - $1 WHERE id = $2")
                .bind(order.quantity)
                .bind(order.sku_id)
                .execute(&mut *tx)
                .await?;
        }
        _ => {}
    }
    let cancelled = matches!(action, Action::Cancel | Action::Expire);
    if cancelled {
        sqlx::query("UPDATE skus SET sold = sold - $1 WHERE id = $2")
            .bind(order.quantity)
            .bind(order.sku_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE coupon_claims SET used_order_id = NULL, used_at = NULL WHERE used_order_id = $1")
            .bind(order.id)
            .execute(&mut *tx)
            .await?;
    }
    order_event(
        &mut tx,
        order.id,
        Some(order.status),
        step.to,
        action.as_str(),
        actor_id,
        note,
        now,
    )
    .await?;
    tx.commit().await?;
    if step.restock {
        commerce.sku_changed(order.sku_id);
    }
    if step.restock
        && let Some(sale) = order.flash_sale_id
    {
        let qty = u32::try_from(order.quantity).unwrap_or_default();
        if let Err(e) = commerce.sales.release(sale, order.buyer_id, qty).await {
            // The database has the stock back; the gate reloads it when it next loses state.
            tracing::warn!(sale, error = %e, "flash-sale gate release failed");
        }
        commerce.flash_stock_changed(sale, order.room_id).await;
    }
    Ok(())
}

/// Puts an order's units back: into its flash sale while that runs, else into the SKU.
async fn restock(
    tx: &mut Transaction<'static, Any>,
    order: &OrderRow,
    actor: Option<i64>,
    now: i64,
) -> ApiResult<()> {
    if let Some(sale) = order.flash_sale_id {
        let back_in_sale = sqlx::query(
            "UPDATE flash_sales SET sold = sold - $1 WHERE id = $2 AND status = 'running'",
        )
        .bind(order.quantity)
        .bind(sale)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if back_in_sale == 1 {
            return Ok(());
        }
    }
    let row = sqlx::query("UPDATE skus SET stock = stock + $1 WHERE id = $2 RETURNING stock")
        .bind(order.quantity)
        .bind(order.sku_id)
        .fetch_one(&mut **tx)
        .await?;
    let stock: i64 = row.try_get(0)?;
    let reason = match order.status {
        OrderStatus::PendingPayment => "cancel",
        OrderStatus::ReturnShipped => "return",
        _ => "refund",
    };
    record_stock(
        tx,
        order.sku_id,
        order.quantity,
        stock,
        reason,
        Some(order.id),
        actor,
        "",
        now,
    )
    .await?;
    Ok(())
}

/// A courier tracking number as a buyer types it: 6–30 letters, digits or `-`, kept upper-case.
fn parse_tracking_no(raw: &str) -> ApiResult<String> {
    let no = raw.trim();
    let valid =
        (6..=30).contains(&no.len()) && no.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid {
        return Err(ApiError::validation("运单号须为 6–30 位字母、数字或连字符"));
    }
    Ok(no.to_ascii_uppercase())
}

/// A simulated courier tracking number.
fn tracking_number() -> String {
    let digits: u64 = rand::thread_rng().gen_range(100_000_000_000..1_000_000_000_000);
    format!("SIM{digits}")
}

/// Cancels orders whose payment time is over (their stock goes back). Safe on several nodes:
/// each order moves only from `pending_payment`, so exactly one sweeper wins it.
pub(crate) async fn expire_unpaid(commerce: &Commerce, now: i64) -> anyhow::Result<usize> {
    let sql = format!(
        "{ORDER_ROW} WHERE o.status = 'pending_payment' AND o.pay_deadline <= $1 ORDER BY o.pay_deadline LIMIT 200"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .fetch_all(commerce.app.db.pool())
        .await?;
    let mut expired = 0;
    for row in &rows {
        let order = order_row(row)?;
        match apply_action(
            commerce,
            &order,
            Action::Expire,
            Actor::System,
            None,
            "超时未支付，自动取消",
        )
        .await
        {
            Ok(()) => expired += 1,
            Err(e) if e.code == ErrorCode::InvalidTransition => {}
            Err(e) => {
                tracing::warn!(order = order.id, error = %e, "could not expire an unpaid order")
            }
        }
    }
    Ok(expired)
}

/// Shipped orders nobody confirmed are confirmed for the buyer this long after shipping, as
/// platforms do.
pub const AUTO_CONFIRM_MS: i64 = 7 * 86_400_000;
/// A buyer whose request was rejected or withdrawn has at least this long before the automatic
/// confirmation (which otherwise counts from shipping, not from the request).
pub const AFTER_REQUEST_GRACE_MS: i64 = 86_400_000;
/// A refund or return request the merchant leaves unanswered this long is approved for them.
pub const MERCHANT_REPLY_MS: i64 = 2 * 86_400_000;
/// An approved return the buyer does not ship back within this long is closed.
pub const RETURN_SHIP_MS: i64 = 7 * 86_400_000;
/// Goods shipped back that the merchant does not confirm within this long are refunded anyway.
pub const RETURN_RECEIVE_MS: i64 = 10 * 86_400_000;

/// What the system does for a party that did not act in time: orders in `status` unchanged
/// for `after_ms` — and, where set, shipped `after_shipping_ms` ago — get `action`, with `note`
/// in their history.
struct Deadline {
    status: OrderStatus,
    after_ms: i64,
    after_shipping_ms: Option<i64>,
    action: Action,
    note: &'static str,
}

const DEADLINES: [Deadline; 5] = [
    Deadline {
        status: OrderStatus::Shipped,
        // From shipping: a request that was rejected or withdrawn does not restart the week.
        after_ms: AFTER_REQUEST_GRACE_MS,
        after_shipping_ms: Some(AUTO_CONFIRM_MS),
        action: Action::ConfirmReceipt,
        note: "发货 7 天后自动确认收货",
    },
    Deadline {
        status: OrderStatus::RefundRequested,
        after_ms: MERCHANT_REPLY_MS,
        after_shipping_ms: None,
        action: Action::ApproveRefund,
        note: "商家 2 天内未处理，系统自动同意退款",
    },
    Deadline {
        status: OrderStatus::ReturnRequested,
        after_ms: MERCHANT_REPLY_MS,
        after_shipping_ms: None,
        action: Action::ApproveReturn,
        note: "商家 2 天内未处理，系统自动同意退货",
    },
    Deadline {
        status: OrderStatus::ReturnApproved,
        after_ms: RETURN_SHIP_MS,
        after_shipping_ms: None,
        action: Action::Withdraw,
        note: "买家 7 天内未寄回商品，退货申请关闭",
    },
    Deadline {
        status: OrderStatus::ReturnShipped,
        after_ms: RETURN_RECEIVE_MS,
        after_shipping_ms: None,
        action: Action::ConfirmReturn,
        note: "商家 10 天内未确认收到退货，系统自动退款",
    },
];

/// Acts for the parties that let a deadline pass ([`DEADLINES`]): confirms receipt, approves
/// unanswered requests, closes returns never shipped back, refunds returns never confirmed.
/// Safe on several nodes, and against a party acting at the same time: each order moves only
/// from the status and last change it was read with.
pub(crate) async fn act_on_deadlines(commerce: &Commerce, now: i64) -> anyhow::Result<usize> {
    // Orders shipped before shipping times were kept have none: their last change stands in.
    let sql = format!(
        "{ORDER_ROW} WHERE o.status = $1 AND o.updated_at <= $2 \
         AND COALESCE(o.shipped_at, o.updated_at) <= $3 ORDER BY o.updated_at LIMIT 200"
    );
    let mut moved = 0;
    for deadline in &DEADLINES {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(deadline.status.as_str())
            .bind(now - deadline.after_ms)
            .bind(now - deadline.after_shipping_ms.unwrap_or(0))
            .fetch_all(commerce.app.db.pool())
            .await?;
        for row in &rows {
            let order = order_row(row)?;
            match apply_action(
                commerce,
                &order,
                deadline.action,
                Actor::System,
                None,
                deadline.note,
            )
            .await
            {
                Ok(()) => moved += 1,
                Err(e) if e.code == ErrorCode::InvalidTransition => {}
                Err(e) => tracing::warn!(
                    order = order.id,
                    action = %deadline.action,
                    error = %e,
                    "could not act on an order's deadline"
                ),
            }
        }
    }
    Ok(moved)
}

/// What a coupon's refusal means to the buyer.
pub(crate) fn coupon_use_error(e: UseError) -> ApiError {
    match e {
        UseError::NotYetValid | UseError::Expired => ErrorCode::CouponExpired.into(),
        UseError::BelowThreshold { threshold_cents } => ApiError::with_message(
            ErrorCode::CouponNotApplicable,
            format!(
                "订单金额未满 {:.2} 元，不能使用这张优惠券",
                threshold_cents as f64 / 100.0
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_of_a_party_has_one_path() {
        for action in Action::ALL {
            let paths = ACTION_PATHS.iter().filter(|(_, a)| *a == action).count();
            // Only the sweeper expires an unpaid order.
            let expected = usize::from(action != Action::Expire);
            assert_eq!(paths, expected, "{action}");
        }
    }

    #[test]
    fn tracking_numbers_are_checked_and_kept_upper_case() {
        assert_eq!(parse_tracking_no(" sf1234567890 ").unwrap(), "SF1234567890");
        assert_eq!(parse_tracking_no("YT-2024-0001").unwrap(), "YT-2024-0001");
        for bad in ["", "12345", "SF 123456", "运单1234567", &"9".repeat(31)] {
            assert!(parse_tracking_no(bad).is_err(), "{bad:?}");
        }
        assert!(tracking_number().starts_with("SIM"));
        assert!(parse_tracking_no(&tracking_number()).is_ok());
    }

    #[test]
    fn deadlines_act_as_the_system_in_allowed_moves() {
        for d in &DEADLINES {
            let from = match d.status {
                OrderStatus::ReturnApproved | OrderStatus::ReturnRequested => {
                    Some(OrderStatus::Shipped)
                }
                _ => Some(OrderStatus::Paid),
            };
            assert!(
                order::transition(d.status, d.action, Actor::System, from).is_ok(),
                "{} {}",
                d.status,
                d.action
            );
            assert!(d.after_ms >= 86_400_000, "at least a day");
            assert!(d.after_shipping_ms.is_none_or(|ms| ms >= d.after_ms));
        }
    }
}
