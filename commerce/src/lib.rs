//! Live commerce: the simulated shop and the live room's selling tools — shops, products and
//! SKUs, orders, flash sales, coupons, red packets, lucky bags, the room's shelf and pinned
//! product — with simulated money that is exact to the cent.
//!
//! `core/` holds the rules as pure functions and sans-IO state (no clock reads, no I/O); around
//! it: the wallet ledger, the gates in front of the database for contended stock and shares
//! (in-process or Redis, chosen at start-up), the storage and the HTTP routes, one module per
//! tool. The live room is reached through the [`LiveRooms`] trait; events go out as the hub's
//! `commerce` room events; `script/` drafts live scripts through an OpenAI-compatible endpoint or
//! a built-in template; `dashboard` computes the live numbers and writes each session's report.
//! `videos` takes product short videos and has them transcoded through the [`VideoTranscoder`]
//! trait. `bots` runs simulated buyers (模拟买家) in live rooms: bot accounts that enter as viewers
//! and like, comment and buy through the same paths as people (`core::bots` decides what they do).

pub mod core;

mod bots;
mod coupons;
mod dashboard;
mod flash_sales;
mod gate;
mod group_commit;
mod lucky_bags;
mod notices;
mod orders;
mod red_packets;
mod room_tools;
mod rooms;
mod script;
mod shops;
mod util;
mod videos;
mod wallet;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use foundation::http::extract::CurrentUser;
use foundation::identity::Principal;
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::Serialize;
use sqlx::Row;
use utoipa::{OpenApi, ToSchema};

pub use gate::{
    GateError, Grab, GrabHold, GrabSettle, HOLD_RECLAIM_AFTER_MS, LocalPackets, LocalSales,
    PacketGates, RedisGates, Reserve, SaleGates, SaleHold, SaleSettle, SaleSpec,
};
pub use rooms::{LiveCounts, LiveRooms, RoomAccess, RoomPresence};
pub use videos::{VideoFacts, VideoFailure, VideoTranscoder};

/// A flash sale's facts that do not change while it runs, kept in memory for the order path.
#[derive(Debug)]
pub(crate) struct CachedSale {
    pub view: flash_sales::FlashSaleView,
    pub shop_owner: i64,
    /// For a winner's answer, built without reading the order back (a rename during the sale
    /// shows in later reads).
    pub shop_name: String,
}

/// What a [`Commerce`] holds (reached through `Deref` inside this crate).
pub struct Inner {
    pub(crate) app: AppState,
    pub(crate) rooms: Arc<dyn LiveRooms>,
    pub(crate) sales: Arc<dyn SaleGates>,
    pub(crate) packets: Arc<dyn PacketGates>,
    pub(crate) notices: notices::Notices,
    /// Group commits of flash-sale winners' orders.
    pub(crate) flash_writer: tokio::sync::mpsc::Sender<flash_sales::FlashWrite>,
    /// Group commits of red-packet grabs.
    pub(crate) grab_writer: tokio::sync::mpsc::Sender<red_packets::GrabWrite>,
    sale_cache: Mutex<HashMap<i64, Arc<CachedSale>>>,
    /// Who someone is in a room, for [`ACCESS_TTL`]: a flash sale asks it on every tap.
    access_cache: moka::sync::Cache<(i64, i64), RoomAccess>,
    packet_cache: Mutex<HashMap<i64, Arc<red_packets::PacketMeta>>>,
    /// The buyer-bot crowds this node runs.
    pub(crate) bots: bots::Crowds,
    /// Short videos: the store and the transcoding jobs.
    pub(crate) videos: videos::Videos,
}

/// The commerce service of a node: cheap to clone, shared by its routes and its sweeper.
#[derive(Clone)]
pub struct Commerce(Arc<Inner>);

impl std::fmt::Debug for Commerce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commerce").finish_non_exhaustive()
    }
}

impl std::ops::Deref for Commerce {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned cache only means a panic elsewhere; its entries are whole values.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a room access decision is reused (class membership changes show within it).
/// Longer than a flash sale's usual countdown, so the crowd that opened the card during it
/// taps on a warm cache.
const ACCESS_TTL: Duration = Duration::from_secs(30);

/// How often the sweeper expires unpaid orders and red packets, closes sales and draws bags.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

impl Commerce {
    /// Builds the service with in-process gates, or Redis gates when `redis_url` is set, and
    /// starts its sweeper and the video jobs a restart interrupted.
    pub async fn start(
        app: &AppState,
        rooms: Arc<dyn LiveRooms>,
        transcoder: Arc<dyn VideoTranscoder>,
    ) -> anyhow::Result<Self> {
        let (sales, packets): (Arc<dyn SaleGates>, Arc<dyn PacketGates>) =
            match &app.config.redis_url {
                Some(url) => {
                    let gates =
                        Arc::new(RedisGates::connect(url, &app.config.redis_namespace).await?);
                    (gates.clone(), gates)
                }
                None => (
                    Arc::new(LocalSales::default()),
                    Arc::new(LocalPackets::default()),
                ),
            };
        Ok(Self::with_gates(app, rooms, sales, packets, transcoder))
    }

    pub fn with_gates(
        app: &AppState,
        rooms: Arc<dyn LiveRooms>,
        sales: Arc<dyn SaleGates>,
        packets: Arc<dyn PacketGates>,
        transcoder: Arc<dyn VideoTranscoder>,
    ) -> Self {
        let commerce = Commerce(Arc::new(Inner {
            app: app.clone(),
            notices: notices::Notices::start(rooms.clone(), app.db.clone()),
            flash_writer: flash_sales::start_writer(app.db.clone(), sales.clone()),
            grab_writer: red_packets::start_grab_writer(app.db.clone(), packets.clone()),
            rooms,
            sales,
            packets,
            sale_cache: Mutex::default(),
            access_cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ACCESS_TTL)
                .build(),
            packet_cache: Mutex::default(),
            bots: bots::Crowds::new(),
            videos: videos::Videos::new(app, transcoder),
        }));
        tokio::spawn(sweep_forever(commerce.clone()));
        tokio::spawn(videos::recover(commerce.clone()));
        tokio::spawn(forget_access_on_role_changes(
            Arc::downgrade(&commerce.0),
            commerce.app.bus.clone(),
        ));
        commerce
    }

    /// Runs one sweep at `now` (the sweeper's step; tests call it with a manual clock). Each
    /// step runs whatever the others did: one that fails (a database hiccup, one bad row) is
    /// logged and retried at the next sweep, and does not hold the others up.
    pub async fn sweep(&self, now: i64) -> anyhow::Result<()> {
        let steps = [
            (
                "expire unpaid orders",
                orders::expire_unpaid(self, now).await.map(drop),
            ),
            (
                "order deadlines",
                orders::act_on_deadlines(self, now).await.map(drop),
            ),
            (
                "close flash sales",
                flash_sales::close_finished(self, now).await.map(drop),
            ),
            (
                "expire red packets",
                red_packets::expire(self, now).await.map(drop),
            ),
            (
                "draw lucky bags",
                lucky_bags::draw_due(self, now).await.map(drop),
            ),
            (
                "live reports",
                dashboard::write_reports(self, now).await.map(drop),
            ),
            ("resume buyer bots", bots::resume(self, now).await.map(drop)),
            // Redis gates: reservations and grabs whose node died before writing them.
            (
                "reclaim flash-sale holds",
                flash_sales::reclaim_abandoned(self, now).await.map(drop),
            ),
            (
                "reclaim red-packet holds",
                red_packets::reclaim_abandoned(self, now).await.map(drop),
            ),
        ];
        let mut failed = Vec::new();
        for (step, result) in steps {
            if let Err(e) = result {
                tracing::warn!(step, error = %e, "commerce sweep step failed; retrying next sweep");
                failed.push(step);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!("sweep steps failed: {}", failed.join(", ")))
        }
    }

    /// Graceful shutdown: this node's buyer bots leave their rooms (their crowds stay on, to be
    /// resumed by another node or the next start), waiting up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.bots.shutdown(grace).await;
    }

    /// `p`'s role in `room` (not found when they may not enter), remembered for [`ACCESS_TTL`].
    pub(crate) async fn access(&self, p: &Principal, room: i64) -> ApiResult<RoomAccess> {
        let key = (p.account_id, room);
        if let Some(access) = self.access_cache.get(&key) {
            return Ok(access);
        }
        let access = self.rooms.access(p, room).await?;
        self.access_cache.insert(key, access);
        Ok(access)
    }

    /// Hosts (and a class's instructors) run the selling tools of their room.
    pub(crate) async fn require_tools(&self, p: &Principal, room: i64) -> ApiResult<RoomAccess> {
        let access = self.access(p, room).await?;
        if !access.runs_tools() {
            return Err(ApiError::with_message(
                ErrorCode::Forbidden,
                "只有主播（或本班讲师）可以使用直播间的带货工具",
            ));
        }
        Ok(access)
    }

    pub(crate) async fn sale(&self, id: i64) -> ApiResult<Arc<CachedSale>> {
        if let Some(sale) = lock(&self.sale_cache).get(&id) {
            return Ok(sale.clone());
        }
        let view = flash_sales::sale_by_id(&self.app, id)
            .await?
            .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "秒杀活动不存在"))?;
        let shop = sqlx::query("SELECT owner_id, name FROM shops WHERE id = $1")
            .bind(view.shop_id)
            .fetch_one(self.app.db.pool())
            .await?;
        let sale = Arc::new(CachedSale {
            view,
            shop_owner: shop.try_get(0)?,
            shop_name: shop.try_get(1)?,
        });
        lock(&self.sale_cache).insert(id, sale.clone());
        Ok(sale)
    }

    pub(crate) async fn forget_sale(&self, id: i64) {
        lock(&self.sale_cache).remove(&id);
        if let Err(e) = self.sales.forget(id).await {
            tracing::warn!(sale = id, error = %e, "could not drop a closed sale's gate");
        }
    }

    pub(crate) async fn packet(&self, id: i64) -> ApiResult<Arc<red_packets::PacketMeta>> {
        if let Some(meta) = lock(&self.packet_cache).get(&id) {
            return Ok(meta.clone());
        }
        let meta = red_packets::packet_meta(&self.app, id)
            .await?
            .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "红包不存在"))?;
        let meta = Arc::new(meta);
        lock(&self.packet_cache).insert(id, meta.clone());
        Ok(meta)
    }

    pub(crate) fn forget_packet(&self, id: i64) {
        lock(&self.packet_cache).remove(&id);
    }

    /// Tells the room how much of a sale is left (batched by [`notices`]).
    pub(crate) async fn flash_stock_changed(&self, sale: i64, room: Option<i64>) {
        let Some(room) = room else { return };
        match self.sales.remaining(sale).await {
            Ok(Some(remaining)) => self.notices.stock(room, sale, remaining),
            Ok(None) => {}
            Err(e) => tracing::warn!(sale, error = %e, "could not read a sale's stock"),
        }
    }

    /// A SKU's stock or price changed (after the commit): the live rooms showing its product
    /// get the new card.
    pub(crate) fn sku_changed(&self, sku: i64) {
        self.notices.sku_changed(sku);
    }

    /// A product's title or images changed (after the commit).
    pub(crate) fn product_changed(&self, product: i64) {
        self.notices.product_changed(product);
    }

    pub(crate) async fn unpin_everywhere(&self, product: i64) -> ApiResult<()> {
        room_tools::unpin_everywhere(self, product).await
    }
}

/// Room access carries roles (an instructor runs the tools of their classes' rooms): when
/// someone's roles change on any node, drop every cached decision, as the session cache does.
async fn forget_access_on_role_changes(
    inner: std::sync::Weak<Inner>,
    bus: Arc<dyn foundation::bus::Bus>,
) {
    let mut changes = bus
        .subscribe(foundation::identity::PRINCIPAL_CHANGED_TOPIC)
        .await;
    while changes.recv().await.is_some() {
        let Some(inner) = inner.upgrade() else {
            break;
        };
        inner.access_cache.invalidate_all();
    }
}

async fn sweep_forever(commerce: Commerce) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // The service is gone when only the sweeper holds it.
        if Arc::strong_count(&commerce.0) == 1 {
            break;
        }
        let now = commerce.app.clock.now_millis();
        // Each failed step was logged with its error.
        let _ = commerce.sweep(now).await;
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WalletEntry {
    pub delta_cents: i64,
    pub balance_after: i64,
    pub reason: String,
    pub ref_id: Option<i64>,
    pub at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WalletView {
    pub balance_cents: i64,
    /// The latest 100 entries, newest first.
    pub entries: Vec<WalletEntry>,
}

/// My simulated wallet (opened with ¥10,000 of practice money) and its latest entries.
#[utoipa::path(get, path = "/api/v1/wallet", tag = "commerce",
    responses((status = 200, body = WalletView)))]
async fn my_wallet(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> ApiResult<Json<WalletView>> {
    let now = state.clock.now_millis();
    let mut tx = state.db.begin_write().await?;
    wallet::ensure(&mut tx, p.account_id, now).await?;
    tx.commit().await?;
    let balance: i64 =
        sqlx::query_scalar("SELECT balance_cents FROM wallets WHERE account_id = $1")
            .bind(p.account_id)
            .fetch_one(state.db.pool())
            .await?;
    let rows = sqlx::query(
        "SELECT delta_cents, balance_after, reason, ref_id, at FROM wallet_entries WHERE account_id = $1 \
         ORDER BY id DESC LIMIT 100",
    )
    .bind(p.account_id)
    .fetch_all(state.db.pool())
    .await?;
    let entries = rows
        .iter()
        .map(|r| {
            Ok(WalletEntry {
                delta_cents: r.try_get(0)?,
                balance_after: r.try_get(1)?,
                reason: r.try_get(2)?,
                ref_id: r.try_get(3)?,
                at: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(WalletView {
        balance_cents: balance,
        entries,
    }))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        my_wallet,
        shops::create_shop, shops::my_shop, shops::list_shops, shops::get_shop, shops::update_shop,
        shops::create_product, shops::list_products, shops::get_product, shops::update_product,
        shops::add_sku, shops::update_sku, shops::adjust_stock, shops::stock_changes,
        orders::place_order, orders::list_orders, orders::get_order, orders::order_action,
        flash_sales::create_flash_sale, flash_sales::get_flash_sale, flash_sales::order_flash_sale,
        coupons::create_coupon, coupons::claim_coupon, coupons::my_coupons,
        red_packets::send_red_packet, red_packets::grab, red_packets::get_red_packet,
        lucky_bags::launch, lucky_bags::get_lucky_bag,
        room_tools::room_commerce, room_tools::add_to_shelf, room_tools::pin, room_tools::unpin,
        dashboard::dashboard, dashboard::room_reports, dashboard::class_reports,
        bots::put_bots, bots::get_bots, bots::delete_bots,
        script::generate, script::save_script, script::list_scripts, script::get_script,
        script::edit_script, script::get_version,
        videos::upload, videos::list, videos::get_video, videos::video_file, videos::video_cover,
        videos::delete_video,
    ),
    tags((name = "commerce", description = "Simulated shop and the live room's selling tools; money in cents, times in Unix milliseconds"))
)]
pub struct CommerceApi;

/// The commerce routes.
pub fn router(commerce: Commerce) -> Router<AppState> {
    Router::new()
        .route("/api/v1/wallet", get(my_wallet))
        .route(
            "/api/v1/shops",
            get(shops::list_shops).post(shops::create_shop),
        )
        .route("/api/v1/shops/mine", get(shops::my_shop))
        .route(
            "/api/v1/shops/{id}",
            get(shops::get_shop).patch(shops::update_shop),
        )
        .route(
            "/api/v1/shops/{id}/products",
            get(shops::list_products).post(shops::create_product),
        )
        .route(
            "/api/v1/products/{id}",
            get(shops::get_product).patch(shops::update_product),
        )
        .route(
            "/api/v1/products/{id}/videos",
            get(videos::list).post(videos::upload),
        )
        .route(
            "/api/v1/videos/{id}",
            get(videos::get_video).delete(videos::delete_video),
        )
        .route("/api/v1/videos/{id}/file", get(videos::video_file))
        .route("/api/v1/videos/{id}/cover", get(videos::video_cover))
        .route("/api/v1/products/{id}/skus", post(shops::add_sku))
        .route("/api/v1/skus/{id}", axum::routing::patch(shops::update_sku))
        .route("/api/v1/skus/{id}/stock", post(shops::adjust_stock))
        .route("/api/v1/skus/{id}/stock-changes", get(shops::stock_changes))
        .route(
            "/api/v1/orders",
            get(orders::list_orders).post(orders::place_order),
        )
        .route("/api/v1/orders/{id}", get(orders::get_order))
        .route("/api/v1/orders/{id}/{action}", post(orders::order_action))
        .route(
            "/api/v1/rooms/{id}/flash-sales",
            post(flash_sales::create_flash_sale),
        )
        .route("/api/v1/flash-sales/{id}", get(flash_sales::get_flash_sale))
        .route(
            "/api/v1/flash-sales/{id}/orders",
            post(flash_sales::order_flash_sale),
        )
        .route("/api/v1/rooms/{id}/coupons", post(coupons::create_coupon))
        .route("/api/v1/coupons/mine", get(coupons::my_coupons))
        .route("/api/v1/coupons/{id}/claim", post(coupons::claim_coupon))
        .route(
            "/api/v1/rooms/{id}/red-packets",
            post(red_packets::send_red_packet),
        )
        .route("/api/v1/red-packets/{id}", get(red_packets::get_red_packet))
        .route("/api/v1/red-packets/{id}/grab", post(red_packets::grab))
        .route("/api/v1/rooms/{id}/lucky-bags", post(lucky_bags::launch))
        .route("/api/v1/lucky-bags/{id}", get(lucky_bags::get_lucky_bag))
        .route(
            "/api/v1/rooms/{id}/commerce",
            get(room_tools::room_commerce),
        )
        .route(
            "/api/v1/rooms/{id}/products",
            post(room_tools::add_to_shelf),
        )
        .route(
            "/api/v1/rooms/{id}/pin",
            put(room_tools::pin).delete(room_tools::unpin),
        )
        .route("/api/v1/rooms/{id}/dashboard", get(dashboard::dashboard))
        .route(
            "/api/v1/rooms/{id}/bots",
            put(bots::put_bots)
                .get(bots::get_bots)
                .delete(bots::delete_bots),
        )
        .route("/api/v1/rooms/{id}/reports", get(dashboard::room_reports))
        .route(
            "/api/v1/classes/{id}/live-reports",
            get(dashboard::class_reports),
        )
        .route("/api/v1/live-scripts/generate", post(script::generate))
        .route(
            "/api/v1/live-scripts",
            get(script::list_scripts).post(script::save_script),
        )
        .route(
            "/api/v1/live-scripts/{id}",
            get(script::get_script).put(script::edit_script),
        )
        .route(
            "/api/v1/live-scripts/{id}/versions/{version}",
            get(script::get_version),
        )
        .layer(Extension(commerce))
}
