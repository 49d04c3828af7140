//! Shops, products and SKUs: a trainee opens one shop for their class, lists products with their
//! specs, prices and stock, and adjusts stock with a recorded reason. Classmates, the class's
//! instructors and the supervisors in scope see the class's shops (the simulated mall); buyers
//! only ever see listed products of open shops.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, ApiQuery, CurrentUser};
use foundation::identity::{Principal, Role};
use foundation::org::{Ref, Scope};
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::Commerce;
use crate::util::{self, MAX_PRICE_CENTS, MAX_STOCK};

#[derive(Debug, Serialize, ToSchema)]
pub struct ShopView {
    pub id: i64,
    pub owner: Ref,
    pub class_id: i64,
    pub name: String,
    pub category: String,
    pub logo_url: Option<String>,
    pub description: String,
    /// open | closed
    pub status: String,
    /// Customer-service quick replies (客服快捷回复), shown to buyers as the shop's answers.
    pub quick_replies: Vec<String>,
    /// Whether the caller owns it.
    pub mine: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    /// How many listed products the caller can see in it (for others: 0 while it is closed).
    pub listed_products: i64,
    /// Up to 3 of those, newest first: the shop's card in the mall.
    pub preview: Vec<ShopPreview>,
}

/// A listed product on a shop's card in the mall.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShopPreview {
    pub product_id: i64,
    pub title: String,
    /// Its first image.
    pub image: Option<String>,
    /// The lowest price of its SKUs.
    pub price_cents: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShop {
    pub name: String,
    pub category: String,
    pub logo_url: Option<String>,
    pub description: Option<String>,
    /// Needed only when the trainee attends several classes.
    pub class_id: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateShop {
    pub name: Option<String>,
    pub category: Option<String>,
    pub logo_url: Option<String>,
    pub description: Option<String>,
    /// open | closed
    pub status: Option<String>,
    pub quick_replies: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ShopQuery {
    pub class_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkuView {
    pub id: i64,
    pub spec: String,
    pub price_cents: i64,
    /// Stock that can be ordered now.
    pub stock: i64,
    pub sold: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductView {
    pub id: i64,
    pub shop_id: i64,
    pub shop_name: String,
    pub title: String,
    pub description: String,
    pub images: Vec<String>,
    /// draft | listed | delisted
    pub status: String,
    pub skus: Vec<SkuView>,
    /// Its ready short videos (短视频), oldest first.
    pub videos: Vec<crate::videos::VideoSummary>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSku {
    /// e.g. "500g 礼盒装"
    pub spec: String,
    pub price_cents: i64,
    pub stock: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    pub title: String,
    pub description: Option<String>,
    pub images: Option<Vec<String>>,
    pub skus: Vec<NewSku>,
    /// List it at once (default: draft).
    pub listed: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    pub title: Option<String>,
    pub description: Option<String>,
    pub images: Option<Vec<String>>,
    /// listed | delisted
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSku {
    pub price_cents: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStock {
    /// Units to add (negative: remove).
    pub delta: i64,
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockChange {
    pub id: i64,
    pub delta: i64,
    pub stock_after: i64,
    /// adjust | order | cancel | refund | flash_sale | flash_sale_return
    pub reason: String,
    pub ref_id: Option<i64>,
    pub note: String,
    pub at: i64,
}

/// A shop as stored, with what access checks need.
#[derive(Debug, Clone)]
pub(crate) struct ShopRow {
    pub id: i64,
    pub owner_id: i64,
    pub owner_name: String,
    pub class_id: i64,
    pub name: String,
    pub category: String,
    pub logo_url: Option<String>,
    pub description: String,
    pub status: String,
    pub quick_replies: String,
    pub created_at: i64,
}

const SHOP_COLUMNS: &str = "SELECT s.id, s.owner_id, a.name, s.class_id, s.name, s.category, s.logo_url, \
     s.description, s.status, s.quick_replies, s.created_at FROM shops s JOIN accounts a ON a.id = s.owner_id";

fn shop_from_row(row: &sqlx::any::AnyRow) -> Result<ShopRow, sqlx::Error> {
    Ok(ShopRow {
        id: row.try_get(0)?,
        owner_id: row.try_get(1)?,
        owner_name: row.try_get(2)?,
        class_id: row.try_get(3)?,
        name: row.try_get(4)?,
        category: row.try_get(5)?,
        logo_url: row.try_get(6)?,
        description: row.try_get(7)?,
        status: row.try_get(8)?,
        quick_replies: row.try_get(9)?,
        created_at: row.try_get(10)?,
    })
}

/// Most quick replies a shop keeps, and the longest one (characters).
const MAX_QUICK_REPLIES: usize = 20;
const MAX_QUICK_REPLY_CHARS: usize = 200;
/// Products on a shop's card in the mall.
const PREVIEW_PRODUCTS: usize = 3;

/// A shop's listed products, as its card in the mall shows them.
#[derive(Debug, Default)]
struct Listings {
    count: i64,
    preview: Vec<ShopPreview>,
}

/// Which shops' listings to read.
enum ListingsOf {
    Class(i64),
    Shop(i64),
}

/// The listed products of a class's shops (or of one shop), newest first, in one query.
async fn listings(state: &AppState, of: ListingsOf) -> ApiResult<HashMap<i64, Listings>> {
    let (filter, id) = match of {
        ListingsOf::Class(id) => ("s.class_id = $1", id),
        ListingsOf::Shop(id) => ("p.shop_id = $1", id),
    };
    let sql = format!(
        "SELECT p.shop_id, p.id, p.title, p.images, \
         COALESCE((SELECT MIN(k.price_cents) FROM skus k WHERE k.product_id = p.id), 0) \
         FROM products p JOIN shops s ON s.id = p.shop_id \
         WHERE {filter} AND p.status = 'listed' ORDER BY p.shop_id, p.id DESC"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(state.db.pool())
        .await?;
    let mut out: HashMap<i64, Listings> = HashMap::new();
    for row in &rows {
        let entry = out.entry(row.try_get(0)?).or_default();
        entry.count += 1;
        if entry.preview.len() < PREVIEW_PRODUCTS {
            let images: String = row.try_get(3)?;
            entry.preview.push(ShopPreview {
                product_id: row.try_get(1)?,
                title: row.try_get(2)?,
                image: util::string_list(&images).into_iter().next(),
                price_cents: row.try_get(4)?,
            });
        }
    }
    Ok(out)
}

impl ShopRow {
    /// The shop as `caller` sees it, with its listings (`None`: it has no listed products).
    fn view(&self, caller: &Principal, listings: Option<&Listings>) -> ShopView {
        // Buyers see no products of a closed shop; its owner sees them all.
        let shown =
            listings.filter(|_| self.owner_id == caller.account_id || self.status == "open");
        ShopView {
            id: self.id,
            owner: Ref {
                id: self.owner_id,
                name: self.owner_name.clone(),
            },
            class_id: self.class_id,
            name: self.name.clone(),
            category: self.category.clone(),
            logo_url: self.logo_url.clone(),
            description: self.description.clone(),
            status: self.status.clone(),
            quick_replies: util::string_list(&self.quick_replies),
            mine: self.owner_id == caller.account_id,
            created_at: self.created_at,
            listed_products: shown.map_or(0, |l| l.count),
            preview: shown.map(|l| l.preview.clone()).unwrap_or_default(),
        }
    }

    /// The view with this shop's listings read from the database.
    async fn view_read(&self, state: &AppState, caller: &Principal) -> ApiResult<ShopView> {
        let listings = listings(state, ListingsOf::Shop(self.id)).await?;
        Ok(self.view(caller, listings.get(&self.id)))
    }
}

pub(crate) async fn shop_by_id(state: &AppState, id: i64) -> ApiResult<Option<ShopRow>> {
    let sql = format!("{SHOP_COLUMNS} WHERE s.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?;
    Ok(row.as_ref().map(shop_from_row).transpose()?)
}

/// The shop if `p` may see it (its class is in their scope), else not found.
pub(crate) async fn visible_shop(state: &AppState, p: &Principal, id: i64) -> ApiResult<ShopRow> {
    let shop = shop_by_id(state, id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "店铺不存在"))?;
    if shop.owner_id != p.account_id
        && !state
            .org
            .class_visible(&Scope::of(p), shop.class_id)
            .await?
    {
        return Err(ApiError::with_message(ErrorCode::NotFound, "店铺不存在"));
    }
    Ok(shop)
}

/// The shop if `p` owns it; others get not found (they may see it) or forbidden.
pub(crate) async fn owned_shop(state: &AppState, p: &Principal, id: i64) -> ApiResult<ShopRow> {
    let shop = visible_shop(state, p, id).await?;
    if shop.owner_id != p.account_id {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "只有店主可以管理店铺",
        ));
    }
    Ok(shop)
}

pub(crate) async fn shop_of_owner(state: &AppState, owner: i64) -> ApiResult<Option<ShopRow>> {
    let sql = format!("{SHOP_COLUMNS} WHERE s.owner_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(owner)
        .fetch_optional(state.db.pool())
        .await?;
    Ok(row.as_ref().map(shop_from_row).transpose()?)
}

fn optional_url(input: Option<String>) -> ApiResult<Option<String>> {
    match input.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(url) => {
            let ok = url.len() <= 512
                && (url.starts_with("https://")
                    || url.starts_with("http://")
                    || url.starts_with('/'))
                && !url
                    .chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '<' || c == '>');
            if ok {
                Ok(Some(url))
            } else {
                Err(ApiError::validation(
                    "图片地址须为 http(s):// 或 / 开头、不超过 512 个字符的网址",
                ))
            }
        }
    }
}

fn images(input: Option<Vec<String>>) -> ApiResult<String> {
    let list = input.unwrap_or_default();
    if list.len() > 9 {
        return Err(ApiError::validation("商品图片最多 9 张"));
    }
    let mut urls = Vec::with_capacity(list.len());
    for url in list {
        if let Some(url) = optional_url(Some(url))? {
            urls.push(url);
        }
    }
    Ok(serde_json::to_string(&urls).unwrap_or_else(|_| "[]".into()))
}

fn quick_replies(input: Vec<String>) -> ApiResult<String> {
    if input.len() > MAX_QUICK_REPLIES {
        return Err(ApiError::validation(format!(
            "快捷回复最多 {MAX_QUICK_REPLIES} 条，提交了 {} 条",
            input.len()
        )));
    }
    let replies = input
        .iter()
        .enumerate()
        .map(|(i, r)| {
            util::text(
                r,
                &format!("第 {} 条快捷回复", i + 1),
                1,
                MAX_QUICK_REPLY_CHARS,
            )
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(serde_json::to_string(&replies).unwrap_or_else(|_| "[]".into()))
}

/// Open a shop: a trainee, once, for one of their classes.
#[utoipa::path(post, path = "/api/v1/shops", tag = "commerce", request_body = CreateShop,
    responses((status = 201, body = ShopView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_shop(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiJson(body): ApiJson<CreateShop>,
) -> ApiResult<(StatusCode, Json<ShopView>)> {
    if !p.has(Role::Trainee) {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "只有学员可以开设模拟店铺",
        ));
    }
    let name = util::text(&body.name, "店铺名称", 2, 30)?;
    let category = util::text(&body.category, "经营类目", 1, 30)?;
    let description = util::text(
        body.description.as_deref().unwrap_or_default(),
        "店铺简介",
        0,
        500,
    )?;
    let logo_url = optional_url(body.logo_url)?;
    let classes: Vec<i64> = sqlx::query_scalar(
        "SELECT class_id FROM class_trainees WHERE account_id = $1 ORDER BY class_id",
    )
    .bind(p.account_id)
    .fetch_all(state.db.pool())
    .await?;
    let class_id = match (body.class_id, classes.as_slice()) {
        (Some(id), list) if list.contains(&id) => id,
        (Some(_), _) => return Err(ApiError::with_message(ErrorCode::NotFound, "班期不存在")),
        (None, [only]) => *only,
        (None, []) => {
            return Err(ApiError::with_message(
                ErrorCode::Forbidden,
                "你还没有加入任何班期，不能开店",
            ));
        }
        (None, _) => return Err(ApiError::validation("你参加了多个班期，请选择店铺所属班期")),
    };
    let now = state.clock.now_millis();
    let inserted = sqlx::query(
        "INSERT INTO shops (owner_id, class_id, name, category, logo_url, description, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(p.account_id)
    .bind(class_id)
    .bind(&name)
    .bind(&category)
    .bind(&logo_url)
    .bind(&description)
    .bind(now)
    .fetch_one(state.db.pool())
    .await;
    let id: i64 = match inserted {
        Ok(row) => row.try_get(0)?,
        Err(e) if util::is_unique_violation(&e) => return Err(ErrorCode::ShopExists.into()),
        Err(e) => return Err(e.into()),
    };
    let shop = shop_by_id(&state, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::CREATED, Json(shop.view(&p, None))))
}

/// The caller's own shop; 404 when they have none yet.
#[utoipa::path(get, path = "/api/v1/shops/mine", tag = "commerce",
    responses((status = 200, body = ShopView), (status = 404, body = ErrorBody)))]
pub async fn my_shop(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<ShopView>> {
    let shop = shop_of_owner(&state, p.account_id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "你还没有开店"))?;
    Ok(Json(shop.view_read(&state, &p).await?))
}

/// The shops of the classes the caller may see (optionally one class), closed ones included, each
/// with its listed products' count and preview: the simulated mall.
#[utoipa::path(get, path = "/api/v1/shops", tag = "commerce", params(ShopQuery),
    responses((status = 200, body = [ShopView])))]
pub async fn list_shops(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiQuery(query): ApiQuery<ShopQuery>,
) -> ApiResult<Json<Vec<ShopView>>> {
    let classes: Vec<i64> = state
        .org
        .classes(&Scope::of(&p))
        .await?
        .into_iter()
        .map(|c| c.id)
        .filter(|id| query.class_id.is_none_or(|wanted| wanted == *id))
        .collect();
    let mut shops = Vec::new();
    for class in classes {
        let sql = format!("{SHOP_COLUMNS} WHERE s.class_id = $1 ORDER BY s.id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(class)
            .fetch_all(state.db.pool())
            .await?;
        if rows.is_empty() {
            continue;
        }
        let listed = listings(&state, ListingsOf::Class(class)).await?;
        for row in &rows {
            let shop = shop_from_row(row)?;
            shops.push(shop.view(&p, listed.get(&shop.id)));
        }
    }
    Ok(Json(shops))
}

#[utoipa::path(get, path = "/api/v1/shops/{id}", tag = "commerce",
    params(("id" = i64, Path, description = "shop id")),
    responses((status = 200, body = ShopView), (status = 404, body = ErrorBody)))]
pub async fn get_shop(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ShopView>> {
    let shop = visible_shop(&state, &p, id).await?;
    Ok(Json(shop.view_read(&state, &p).await?))
}

/// Change the shop's details, status or customer-service quick replies (owner only).
#[utoipa::path(patch, path = "/api/v1/shops/{id}", tag = "commerce", request_body = UpdateShop,
    params(("id" = i64, Path, description = "shop id")),
    responses((status = 200, body = ShopView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_shop(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateShop>,
) -> ApiResult<Json<ShopView>> {
    let shop = owned_shop(&state, &p, id).await?;
    let name = match body.name {
        Some(n) => util::text(&n, "店铺名称", 2, 30)?,
        None => shop.name.clone(),
    };
    let category = match body.category {
        Some(c) => util::text(&c, "经营类目", 1, 30)?,
        None => shop.category.clone(),
    };
    let description = match body.description {
        Some(d) => util::text(&d, "店铺简介", 0, 500)?,
        None => shop.description.clone(),
    };
    let logo_url = match body.logo_url {
        Some(url) => optional_url(Some(url))?,
        None => shop.logo_url.clone(),
    };
    let status = match body.status.as_deref() {
        None => shop.status.clone(),
        Some(s @ ("open" | "closed")) => s.to_owned(),
        Some(_) => return Err(ApiError::validation("店铺状态须为 open 或 closed")),
    };
    let replies = match body.quick_replies {
        Some(list) => quick_replies(list)?,
        None => shop.quick_replies.clone(),
    };
    sqlx::query(
        "UPDATE shops SET name = $1, category = $2, description = $3, logo_url = $4, status = $5, \
         quick_replies = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(&name)
    .bind(&category)
    .bind(&description)
    .bind(&logo_url)
    .bind(&status)
    .bind(&replies)
    .bind(state.clock.now_millis())
    .bind(id)
    .execute(state.db.pool())
    .await?;
    let shop = shop_by_id(&state, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(shop.view_read(&state, &p).await?))
}

/// A product as stored.
#[derive(Debug, Clone)]
pub(crate) struct ProductRow {
    pub id: i64,
    pub shop_id: i64,
    pub title: String,
    pub description: String,
    pub images: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) async fn product_by_id(state: &AppState, id: i64) -> ApiResult<Option<ProductRow>> {
    let row = sqlx::query(
        "SELECT id, shop_id, title, description, images, status, created_at, updated_at \
         FROM products WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(state.db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(ProductRow {
        id: row.try_get(0)?,
        shop_id: row.try_get(1)?,
        title: row.try_get(2)?,
        description: row.try_get(3)?,
        images: row.try_get(4)?,
        status: row.try_get(5)?,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
    }))
}

pub(crate) async fn skus_of(state: &AppState, product: i64) -> ApiResult<Vec<SkuView>> {
    let rows = sqlx::query(
        "SELECT id, spec, price_cents, stock, sold FROM skus WHERE product_id = $1 ORDER BY id",
    )
    .bind(product)
    .fetch_all(state.db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SkuView {
                id: row.try_get(0)?,
                spec: row.try_get(1)?,
                price_cents: row.try_get(2)?,
                stock: row.try_get(3)?,
                sold: row.try_get(4)?,
            })
        })
        .collect()
}

pub(crate) async fn product_view(
    state: &AppState,
    product: &ProductRow,
    shop: &ShopRow,
) -> ApiResult<ProductView> {
    Ok(ProductView {
        id: product.id,
        shop_id: product.shop_id,
        shop_name: shop.name.clone(),
        title: product.title.clone(),
        description: product.description.clone(),
        images: util::string_list(&product.images),
        status: product.status.clone(),
        skus: skus_of(state, product.id).await?,
        videos: crate::videos::ready_of(state, product.id).await?,
        created_at: product.created_at,
        updated_at: product.updated_at,
    })
}

/// The product if `p` may see it: owners see every product, others only listed ones of open
/// shops in their scope.
pub(crate) async fn visible_product(
    state: &AppState,
    p: &Principal,
    id: i64,
) -> ApiResult<(ProductRow, ShopRow)> {
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "商品不存在或已下架");
    let product = product_by_id(state, id).await?.ok_or_else(not_found)?;
    let shop = visible_shop(state, p, product.shop_id)
        .await
        .map_err(|_| not_found())?;
    if shop.owner_id != p.account_id && (product.status != "listed" || shop.status != "open") {
        return Err(not_found());
    }
    Ok((product, shop))
}

fn check_sku(sku: &NewSku) -> ApiResult<(String, i64, i64)> {
    let spec = util::text(&sku.spec, "规格", 1, 40)?;
    let price = util::cents(sku.price_cents, "价格", MAX_PRICE_CENTS)?;
    if sku.stock < 1 || sku.stock > MAX_STOCK {
        return Err(ApiError::validation(format!(
            "库存须在 1 到 {MAX_STOCK} 之间"
        )));
    }
    Ok((spec, price, sku.stock))
}

async fn insert_sku(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    product: i64,
    (spec, price, stock): (String, i64, i64),
    actor: i64,
    now: i64,
) -> ApiResult<i64> {
    let row = sqlx::query(
        "INSERT INTO skus (product_id, spec, price_cents, stock, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(product)
    .bind(&spec)
    .bind(price)
    .bind(stock)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        if util::is_unique_violation(&e) {
            ApiError::validation(format!("规格“{spec}”重复"))
        } else {
            e.into()
        }
    })?;
    let sku: i64 = row.try_get(0)?;
    record_stock(
        tx,
        sku,
        stock,
        stock,
        "adjust",
        None,
        Some(actor),
        "初始库存",
        now,
    )
    .await?;
    Ok(sku)
}

/// Records one stock movement (inside the transaction that made it).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_stock(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    sku: i64,
    delta: i64,
    stock_after: i64,
    reason: &str,
    ref_id: Option<i64>,
    actor: Option<i64>,
    note: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stock_changes (sku_id, delta, stock_after, reason, ref_id, actor_id, note, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(sku)
    .bind(delta)
    .bind(stock_after)
    .bind(reason)
    .bind(ref_id)
    .bind(actor)
    .bind(note)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Add a product with its SKUs to the caller's shop.
#[utoipa::path(post, path = "/api/v1/shops/{id}/products", tag = "commerce", request_body = CreateProduct,
    params(("id" = i64, Path, description = "shop id")),
    responses((status = 201, body = ProductView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_product(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(shop_id): ApiPath<i64>,
    ApiJson(body): ApiJson<CreateProduct>,
) -> ApiResult<(StatusCode, Json<ProductView>)> {
    let shop = owned_shop(&state, &p, shop_id).await?;
    let title = util::text(&body.title, "商品标题", 2, 60)?;
    let description = util::text(&body.description.unwrap_or_default(), "商品描述", 0, 2000)?;
    let images = images(body.images)?;
    if body.skus.is_empty() || body.skus.len() > 50 {
        return Err(ApiError::validation("每个商品须有 1–50 个规格"));
    }
    let skus = body
        .skus
        .iter()
        .map(check_sku)
        .collect::<ApiResult<Vec<_>>>()?;
    let status = if body.listed.unwrap_or(false) {
        "listed"
    } else {
        "draft"
    };
    let now = state.clock.now_millis();
    let mut tx = state.db.begin_write().await?;
    let row = sqlx::query(
        "INSERT INTO products (shop_id, title, description, images, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(shop.id)
    .bind(&title)
    .bind(&description)
    .bind(&images)
    .bind(status)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get(0)?;
    for sku in skus {
        insert_sku(&mut tx, id, sku, p.account_id, now).await?;
    }
    tx.commit().await?;
    let product = product_by_id(&state, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok((
        StatusCode::CREATED,
        Json(product_view(&state, &product, &shop).await?),
    ))
}

/// A shop's products: all of them for its owner, the listed ones for everyone else.
#[utoipa::path(get, path = "/api/v1/shops/{id}/products", tag = "commerce",
    params(("id" = i64, Path, description = "shop id")),
    responses((status = 200, body = [ProductView]), (status = 404, body = ErrorBody)))]
pub async fn list_products(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(shop_id): ApiPath<i64>,
) -> ApiResult<Json<Vec<ProductView>>> {
    let shop = visible_shop(&state, &p, shop_id).await?;
    let owner = shop.owner_id == p.account_id;
    if !owner && shop.status != "open" {
        return Ok(Json(Vec::new()));
    }
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM products WHERE shop_id = $1 AND ($2 = 1 OR status = 'listed') ORDER BY id",
    )
    .bind(shop.id)
    .bind(i64::from(owner))
    .fetch_all(state.db.pool())
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(product) = product_by_id(&state, id).await? {
            out.push(product_view(&state, &product, &shop).await?);
        }
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "commerce",
    params(("id" = i64, Path, description = "product id")),
    responses((status = 200, body = ProductView), (status = 404, body = ErrorBody)))]
pub async fn get_product(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ProductView>> {
    let (product, shop) = visible_product(&state, &p, id).await?;
    Ok(Json(product_view(&state, &product, &shop).await?))
}

pub(crate) async fn owned_product(
    state: &AppState,
    p: &Principal,
    id: i64,
) -> ApiResult<(ProductRow, ShopRow)> {
    let product = product_by_id(state, id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "商品不存在"))?;
    let shop = owned_shop(state, p, product.shop_id).await?;
    Ok((product, shop))
}

/// Edit a product, or list / delist it (owner only).
#[utoipa::path(patch, path = "/api/v1/products/{id}", tag = "commerce", request_body = UpdateProduct,
    params(("id" = i64, Path, description = "product id")),
    responses((status = 200, body = ProductView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_product(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateProduct>,
) -> ApiResult<Json<ProductView>> {
    let (product, shop) = owned_product(&state, &p, id).await?;
    let title = match body.title {
        Some(t) => util::text(&t, "商品标题", 2, 60)?,
        None => product.title.clone(),
    };
    let description = match body.description {
        Some(d) => util::text(&d, "商品描述", 0, 2000)?,
        None => product.description.clone(),
    };
    let images = match body.images {
        Some(list) => images(Some(list))?,
        None => product.images.clone(),
    };
    let status = match body.status.as_deref() {
        None => product.status.clone(),
        Some(s @ ("listed" | "delisted")) => s.to_owned(),
        Some(_) => {
            return Err(ApiError::validation(
                "商品状态须为 listed（上架）或 delisted（下架）",
            ));
        }
    };
    sqlx::query(
        "UPDATE products SET title = $1, description = $2, images = $3, status = $4, updated_at = $5 WHERE id = $6",
    )
    .bind(&title)
    .bind(&description)
    .bind(&images)
    .bind(&status)
    .bind(state.clock.now_millis())
    .bind(id)
    .execute(state.db.pool())
    .await?;
    if status == "delisted" && product.status != "delisted" {
        commerce.unpin_everywhere(id).await?;
    } else if title != product.title || images != product.images {
        commerce.product_changed(id);
    }
    let product = product_by_id(&state, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(product_view(&state, &product, &shop).await?))
}

/// Add a spec to a product (owner only).
#[utoipa::path(post, path = "/api/v1/products/{id}/skus", tag = "commerce", request_body = NewSku,
    params(("id" = i64, Path, description = "product id")),
    responses((status = 201, body = ProductView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_sku(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewSku>,
) -> ApiResult<(StatusCode, Json<ProductView>)> {
    let (product, shop) = owned_product(&state, &p, id).await?;
    let sku = check_sku(&body)?;
    let now = state.clock.now_millis();
    let mut tx = state.db.begin_write().await?;
    let sku = insert_sku(&mut tx, id, sku, p.account_id, now).await?;
    tx.commit().await?;
    commerce.sku_changed(sku);
    Ok((
        StatusCode::CREATED,
        Json(product_view(&state, &product, &shop).await?),
    ))
}

/// The SKU with its product and shop, if the caller owns the shop.
async fn owned_sku(state: &AppState, p: &Principal, sku: i64) -> ApiResult<(i64, ShopRow)> {
    let product: Option<i64> = sqlx::query_scalar("SELECT product_id FROM skus WHERE id = $1")
        .bind(sku)
        .fetch_optional(state.db.pool())
        .await?;
    let product =
        product.ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "规格不存在"))?;
    let (product, shop) = owned_product(state, p, product).await?;
    Ok((product.id, shop))
}

/// Change a spec's price (owner only).
#[utoipa::path(patch, path = "/api/v1/skus/{id}", tag = "commerce", request_body = UpdateSku,
    params(("id" = i64, Path, description = "SKU id")),
    responses((status = 200, body = ProductView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_sku(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateSku>,
) -> ApiResult<Json<ProductView>> {
    let (product_id, shop) = owned_sku(&state, &p, id).await?;
    let price = util::cents(body.price_cents, "价格", MAX_PRICE_CENTS)?;
    let changed =
        sqlx::query("UPDATE skus SET price_cents = $1 WHERE id = $2 AND price_cents <> $1")
            .bind(price)
            .bind(id)
            .execute(state.db.pool())
            .await?
            .rows_affected();
    if changed > 0 {
        commerce.sku_changed(id);
    }
    let product = product_by_id(&state, product_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(product_view(&state, &product, &shop).await?))
}

/// Add or remove stock, with a note; the stock can never go below zero (what is sold or held
/// by orders is not in it).
#[utoipa::path(post, path = "/api/v1/skus/{id}/stock", tag = "commerce", request_body = AdjustStock,
    params(("id" = i64, Path, description = "SKU id")),
    responses((status = 200, body = SkuView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn adjust_stock(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AdjustStock>,
) -> ApiResult<Json<SkuView>> {
    owned_sku(&state, &p, id).await?;
    if body.delta == 0 || body.delta.abs() > MAX_STOCK {
        return Err(ApiError::validation(format!(
            "调整数量须为非零整数，绝对值不超过 {MAX_STOCK}"
        )));
    }
    let note = util::text(&body.note.unwrap_or_default(), "备注", 0, 200)?;
    let now = state.clock.now_millis();
    let mut tx = state.db.begin_write().await?;
    let row = sqlx::query(
        "UPDATE skus SET stock = stock + $1 WHERE id = $2 AND stock + $1 >= 0 AND stock + $1 <= $3 \
         RETURNING id, spec, price_cents, stock, sold",
    )
    .bind(body.delta)
    .bind(id)
    .bind(MAX_STOCK)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(ApiError::validation(
            "调整后库存不能小于 0（已售出和已被订单占用的数量不在库存中），也不能超过上限",
        ));
    };
    let sku = SkuView {
        id: row.try_get(0)?,
        spec: row.try_get(1)?,
        price_cents: row.try_get(2)?,
        stock: row.try_get(3)?,
        sold: row.try_get(4)?,
    };
    record_stock(
        &mut tx,
        id,
        body.delta,
        sku.stock,
        "adjust",
        None,
        Some(p.account_id),
        &note,
        now,
    )
    .await?;
    tx.commit().await?;
    commerce.sku_changed(id);
    Ok(Json(sku))
}

/// A spec's stock history, newest first (owner only).
#[utoipa::path(get, path = "/api/v1/skus/{id}/stock-changes", tag = "commerce",
    params(("id" = i64, Path, description = "SKU id")),
    responses((status = 200, body = [StockChange]), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn stock_changes(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Vec<StockChange>>> {
    owned_sku(&state, &p, id).await?;
    let rows = sqlx::query(
        "SELECT id, delta, stock_after, reason, ref_id, note, at FROM stock_changes \
         WHERE sku_id = $1 ORDER BY id DESC LIMIT 500",
    )
    .bind(id)
    .fetch_all(state.db.pool())
    .await?;
    let changes = rows
        .iter()
        .map(|row| {
            Ok(StockChange {
                id: row.try_get(0)?,
                delta: row.try_get(1)?,
                stock_after: row.try_get(2)?,
                reason: row.try_get(3)?,
                ref_id: row.try_get(4)?,
                note: row.try_get(5)?,
                at: row.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(changes))
}
