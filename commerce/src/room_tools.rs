//! The room's shelf (小黄车) and the product being explained (讲解中), and the room's whole
//! commerce state in one read: what a page needs when it joins or resyncs, after which the
//! hub's `commerce` events keep it current.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, CurrentUser};
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::{Deserialize, Serialize};
use signaling::protocol::{CommerceEvent, ProductCard};
use sqlx::Row;
use utoipa::ToSchema;

use crate::coupons::{self, CouponView};
use crate::flash_sales::{self, FlashSaleView};
use crate::lucky_bags::{self, LuckyBagView};
use crate::red_packets::{self, RedPacketView};
use crate::{Commerce, shops, util};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductRef {
    pub product_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShelfItem {
    pub product_id: i64,
    pub shop_id: i64,
    pub title: String,
    pub image: Option<String>,
    pub price_cents: i64,
    pub stock: i64,
    pub pinned: bool,
    /// The product's ready short videos (短视频).
    pub videos: Vec<crate::videos::VideoSummary>,
}

impl ShelfItem {
    fn card(&self) -> ProductCard {
        ProductCard {
            id: self.product_id,
            shop_id: self.shop_id,
            title: self.title.clone(),
            image: self.image.clone(),
            price_cents: self.price_cents,
            stock: self.stock,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomCommerce {
    pub shelf: Vec<ShelfItem>,
    pub pinned: Option<i64>,
    /// Running sales, newest first.
    pub flash_sales: Vec<FlashSaleView>,
    pub coupons: Vec<CouponView>,
    pub red_packets: Vec<RedPacketView>,
    pub lucky_bags: Vec<LuckyBagView>,
}

async fn shelf(state: &AppState, room: i64) -> ApiResult<Vec<ShelfItem>> {
    let rows = sqlx::query(
        "SELECT p.id, p.shop_id, p.title, p.images, rp.pinned_at, \
         (SELECT MIN(price_cents) FROM skus WHERE product_id = p.id), \
         (SELECT CAST(SUM(stock) AS BIGINT) FROM skus WHERE product_id = p.id) \
         FROM room_products rp JOIN products p ON p.id = rp.product_id \
         WHERE rp.room_id = $1 AND p.status = 'listed' ORDER BY rp.position",
    )
    .bind(room)
    .fetch_all(state.db.pool())
    .await?;
    let mut videos = crate::videos::ready_on_shelf(state, room).await?;
    rows.iter()
        .map(|r| {
            let product_id: i64 = r.try_get(0)?;
            let images: String = r.try_get(3)?;
            let pinned: Option<i64> = r.try_get(4)?;
            Ok(ShelfItem {
                product_id,
                videos: videos.remove(&product_id).unwrap_or_default(),
                shop_id: r.try_get(1)?,
                title: r.try_get(2)?,
                image: util::string_list(&images).into_iter().next(),
                pinned: pinned.is_some(),
                price_cents: r.try_get::<Option<i64>, _>(5)?.unwrap_or_default(),
                stock: r.try_get::<Option<i64>, _>(6)?.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(Into::into)
}

/// Everything commerce shows in a room now.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/commerce", tag = "commerce",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 200, body = RoomCommerce), (status = 404, body = ErrorBody)))]
pub async fn room_commerce(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
) -> ApiResult<Json<RoomCommerce>> {
    commerce.access(&p, room).await?;
    let now = state.clock.now_millis();
    let shelf = shelf(&state, room).await?;
    let pinned = shelf.iter().find(|s| s.pinned).map(|s| s.product_id);
    let flash_sales = flash_sales::sales_of_room(&state, room)
        .await?
        .into_iter()
        .filter(|s| s.status == "running" && s.ends_at > now)
        .collect();
    Ok(Json(RoomCommerce {
        shelf,
        pinned,
        flash_sales,
        coupons: coupons::active_in_room(&state, room, now).await?,
        red_packets: red_packets::active_in_room(&state, room).await?,
        lucky_bags: lucky_bags::open_in_room(&state, room).await?,
    }))
}

/// Checks the product is the caller's own and listed.
async fn own_listed_product(
    state: &AppState,
    p: &foundation::identity::Principal,
    id: i64,
) -> ApiResult<()> {
    let product = shops::product_by_id(state, id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "商品不存在"))?;
    shops::owned_shop(state, p, product.shop_id).await?;
    if product.status != "listed" {
        return Err(ApiError::validation("商品须先上架"));
    }
    Ok(())
}

/// Put one of the host's listed products on the room's shelf.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/products", tag = "commerce", request_body = ProductRef,
    params(("id" = i64, Path, description = "room id")),
    responses((status = 201, body = RoomCommerce), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_to_shelf(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiJson(body): ApiJson<ProductRef>,
) -> ApiResult<(StatusCode, Json<RoomCommerce>)> {
    commerce.require_tools(&p, room).await?;
    own_listed_product(&state, &p, body.product_id).await?;
    sqlx::query(
        "INSERT INTO room_products (room_id, product_id, position) \
         VALUES ($1, $2, (SELECT COALESCE(MAX(position), 0) + 1 FROM room_products WHERE room_id = $1)) \
         ON CONFLICT (room_id, product_id) DO NOTHING",
    )
    .bind(room)
    .bind(body.product_id)
    .execute(state.db.pool())
    .await?;
    let view = room_commerce(
        State(state),
        Extension(commerce),
        CurrentUser(p),
        foundation::http::extract::ApiPath(room),
    )
    .await?;
    Ok((StatusCode::CREATED, view))
}

/// Explain a product now (讲解中): it must be on the shelf; the previous one is unpinned.
#[utoipa::path(put, path = "/api/v1/rooms/{id}/pin", tag = "commerce", request_body = ProductRef,
    params(("id" = i64, Path, description = "room id")),
    responses((status = 200, body = ShelfItem), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn pin(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiJson(body): ApiJson<ProductRef>,
) -> ApiResult<Json<ShelfItem>> {
    commerce.require_tools(&p, room).await?;
    let now = state.clock.now_millis();
    let mut tx = state.db.begin_write().await?;
    sqlx::query("UPDATE room_products SET pinned_at = NULL WHERE room_id = $1")
        .bind(room)
        .execute(&mut *tx)
        .await?;
    let pinned = sqlx::query(
        "UPDATE room_products SET pinned_at = $1 WHERE room_id = $2 AND product_id = $3",
    )
    .bind(now)
    .bind(room)
    .bind(body.product_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if pinned == 0 {
        return Err(ApiError::validation("请先把商品加入直播间购物车"));
    }
    tx.commit().await?;
    let item = shelf(&state, room)
        .await?
        .into_iter()
        .find(|s| s.product_id == body.product_id)
        .ok_or_else(|| ApiError::validation("商品已下架"))?;
    commerce
        .rooms
        .announce(
            room,
            CommerceEvent::ProductPinned {
                product: item.card(),
            },
        )
        .await;
    Ok(Json(item))
}

/// Stop explaining the pinned product.
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/pin", tag = "commerce",
    params(("id" = i64, Path, description = "room id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unpin(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    commerce.require_tools(&p, room).await?;
    let was: Option<i64> = sqlx::query_scalar(
        "UPDATE room_products SET pinned_at = NULL WHERE room_id = $1 AND pinned_at IS NOT NULL RETURNING product_id",
    )
    .bind(room)
    .fetch_optional(state.db.pool())
    .await?;
    if let Some(product) = was {
        commerce
            .rooms
            .announce(room, CommerceEvent::ProductUnpinned { product })
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Unpins a product in every room (it was delisted).
pub(crate) async fn unpin_everywhere(commerce: &Commerce, product: i64) -> ApiResult<()> {
    let rooms: Vec<i64> = sqlx::query_scalar(
        "UPDATE room_products SET pinned_at = NULL WHERE product_id = $1 AND pinned_at IS NOT NULL RETURNING room_id",
    )
    .bind(product)
    .fetch_all(commerce.app.db.pool())
    .await?;
    for room in rooms {
        commerce
            .rooms
            .announce(room, CommerceEvent::ProductUnpinned { product })
            .await;
    }
    Ok(())
}
