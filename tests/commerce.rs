//! The commerce engine over HTTP, on both storage backends: shop → product → order → payment →
//! shipping → receipt and refunds with exact money; flash sales and red packets under
//! concurrent load (in-process gates and Redis gates); coupons; an auditable lucky-bag draw;
//! the room hearing its selling tools; bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::shop::{balance, post, sku_stock, wait_for};
use common::{Backend, TestApp, assert_error, spawn_app, spawn_app_with};
use foundation::clock::{Clock, ManualClock, SystemClock};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

/// Opens trainee01's shop with one listed product of two SKUs; returns (host token, shop id,
/// product id, [sku ids]).
async fn open_shop(app: &TestApp, stock: i64) -> (String, i64, i64, Vec<i64>) {
    let shop = common::shop::open_shop(app, stock).await;
    (shop.host, shop.shop_id, shop.product_id, shop.skus)
}

async fn post_keyed(
    app: &TestApp,
    token: &str,
    path: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = common::api()
        .post(app.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Tokens of trainee02 … trainee{n+1}.
async fn viewers(app: &TestApp, n: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        tokens.push(app.token(&format!("trainee{:02}", i + 2)).await);
    }
    tokens
}

async fn order_lifecycle_with_exact_money(backend: Backend) {
    let app = spawn_app(backend).await;
    let (host, _shop, product, skus) = open_shop(&app, 10).await;
    let buyer = app.token("trainee02").await;
    let host_before = balance(&app, &host).await;
    let buyer_before = balance(&app, &buyer).await;
    assert_eq!(buyer_before, 1_000_000, "a new wallet opens with ¥10,000");

    // Place, pay, ship, confirm.
    let (status, order) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": skus[0], "quantity": 2, "address": "长春市"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["total_cents"], 7980);
    assert_eq!(sku_stock(&app, &buyer, product, skus[0]).await, 8);
    let id = order["id"].as_i64().unwrap();
    let (status, paid) = post(&app, &buyer, &format!("/api/v1/orders/{id}/pay"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(balance(&app, &buyer).await, buyer_before - 7980);
    // Paying twice is refused and takes nothing.
    let (status, again) = post(&app, &buyer, &format!("/api/v1/orders/{id}/pay"), json!({})).await;
    assert_error(status, &again, 409, "invalid_transition");
    assert_eq!(balance(&app, &buyer).await, buyer_before - 7980);
    // Only the merchant ships; only the buyer confirms.
    let (status, body) = post(
        &app,
        &buyer,
        &format!("/api/v1/orders/{id}/ship"),
        json!({}),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, shipped) =
        post(&app, &host, &format!("/api/v1/orders/{id}/ship"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{shipped}");
    assert!(shipped["tracking_no"].as_str().unwrap().starts_with("SIM"));
    let (status, done) = post(
        &app,
        &buyer,
        &format!("/api/v1/orders/{id}/confirm"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(balance(&app, &host).await, host_before + 7980);
    let actions: Vec<&str> = done["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["place", "pay", "ship", "confirm_receipt"]);

    // Refund before shipping: money back, stock back.
    let (_, order2) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": skus[1], "quantity": 1}),
    )
    .await;
    let id2 = order2["id"].as_i64().unwrap();
    post(
        &app,
        &buyer,
        &format!("/api/v1/orders/{id2}/pay"),
        json!({}),
    )
    .await;
    let (status, body) = post(
        &app,
        &buyer,
        &format!("/api/v1/orders/{id2}/refund"),
        json!({}),
    )
    .await;
    assert_error(status, &body, 400, "validation_failed");
    let (status, asked) = post(
        &app,
        &buyer,
        &format!("/api/v1/orders/{id2}/refund"),
        json!({"reason": "拍错了"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    assert_eq!(asked["status"], "refund_requested");
    let (status, refunded) = post(
        &app,
        &host,
        &format!("/api/v1/orders/{id2}/approve-refund"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refunded}");
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(sku_stock(&app, &buyer, product, skus[1]).await, 10);
    assert_eq!(balance(&app, &buyer).await, buyer_before - 7980);

    // Cancel an unpaid order: stock returns; the history says why.
    let (_, order3) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": skus[1], "quantity": 3}),
    )
    .await;
    let id3 = order3["id"].as_i64().unwrap();
    assert_eq!(sku_stock(&app, &buyer, product, skus[1]).await, 7);
    let (status, _) = post(
        &app,
        &buyer,
        &format!("/api/v1/orders/{id3}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sku_stock(&app, &buyer, product, skus[1]).await, 10);
    let (_, history) = app
        .get(&host, &format!("/api/v1/skus/{}/stock-changes", skus[1]))
        .await;
    let reasons: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["cancel", "order", "refund", "order", "adjust"]);

    // Lists: the buyer sees three purchases, the merchant three orders; a stranger sees none.
    let (_, mine) = app.get(&buyer, "/api/v1/orders").await;
    assert_eq!(mine.as_array().unwrap().len(), 3);
    let (_, shop_orders) = app.get(&host, "/api/v1/orders?as=merchant").await;
    assert_eq!(shop_orders.as_array().unwrap().len(), 3);
    let other = app.token("trainee03").await;
    let (status, body) = app.get(&other, &format!("/api/v1/orders/{id}")).await;
    assert_error(status, &body, 404, "not_found");

    // The ledger explains every balance: the sum of entries is the balance.
    for token in [&host, &buyer] {
        let (_, wallet) = app.get(token, "/api/v1/wallet").await;
        let sum: i64 = wallet["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["delta_cents"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, wallet["balance_cents"].as_i64().unwrap());
    }
}

async fn unpaid_orders_expire_and_stock_returns(backend: Backend) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
    let (_host, _shop, product, skus) = open_shop(&app, 5).await;
    let buyer = app.token("trainee02").await;
    let (_, order) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": skus[0], "quantity": 5}),
    )
    .await;
    let (status, body) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": skus[0], "quantity": 1}),
    )
    .await;
    assert_error(status, &body, 409, "sold_out");
    clock.advance_millis(16 * 60_000);
    let id = order["id"].as_i64().unwrap();
    let mut status = String::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = app.get(&buyer, &format!("/api/v1/orders/{id}")).await.1["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status == "cancelled" {
            break;
        }
    }
    assert_eq!(status, "cancelled");
    assert_eq!(sku_stock(&app, &buyer, product, skus[0]).await, 5);
    let (status, body) = post(&app, &buyer, &format!("/api/v1/orders/{id}/pay"), json!({})).await;
    assert_error(status, &body, 409, "invalid_transition");
    // A shipped order nobody confirms is confirmed after seven days, and the merchant is paid.
    let (_, order) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": skus[0], "quantity": 1}),
    )
    .await;
    let id = order["id"].as_i64().unwrap();
    post(&app, &buyer, &format!("/api/v1/orders/{id}/pay"), json!({})).await;
    let host = app.token("trainee01").await;
    let before = balance(&app, &host).await;
    let (status, _) = post(&app, &host, &format!("/api/v1/orders/{id}/ship"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    clock.advance_millis(7 * 86_400_000 + 1000);
    let buyer = app.token("trainee02").await;
    wait_for(
        &app,
        &buyer,
        &format!("/api/v1/orders/{id}"),
        "status",
        "completed",
    )
    .await;
    // Sessions expired over the week: log in again.
    let host = app.token("trainee01").await;
    assert_eq!(balance(&app, &host).await, before + 3990);
}

/// 29 viewers, each trying twice at once with different keys and once more with a repeated
/// key, on 20 units with a limit of one each: exactly 20 orders.
async fn flash_sale_never_oversells(app: &TestApp) {
    let (host, _shop, product, skus) = open_shop(app, 100).await;
    let room = app.create_room(&host, "秒杀专场").await;
    // The shelf and the pinned product, as a joining page reads them.
    common::shop::shelve_and_pin(app, &host, room, product).await;
    let (_, state) = app
        .get(&host, &format!("/api/v1/rooms/{room}/commerce"))
        .await;
    assert_eq!(state["pinned"], product, "{state}");
    assert_eq!(state["shelf"][0]["stock"], 200);
    let (status, body) = post(app, &host, &format!("/api/v1/rooms/{room}/flash-sales"),
        json!({"sku_id": skus[0], "price_cents": 990, "stock": 20, "per_user_limit": 1, "starts_in_seconds": 0, "duration_seconds": 600})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sale = body["id"].as_i64().unwrap();
    let path = format!("/api/v1/flash-sales/{sale}/orders");
    let tokens = viewers(app, 29).await;
    let attempts = tokens.iter().enumerate().flat_map(|(i, token)| {
        let path = path.clone();
        (0..2).map(move |k| {
            let path = path.clone();
            async move {
                (
                    i,
                    post_keyed(app, token, &path, &format!("buyer{i}-try{k}"), json!({})).await,
                )
            }
        })
    });
    let results: Vec<(usize, (StatusCode, Value))> = futures::stream::iter(attempts)
        .buffer_unordered(64)
        .collect()
        .await;
    let mut winners = std::collections::HashMap::new();
    for (i, (status, body)) in &results {
        match status.as_u16() {
            201 => {
                assert!(
                    winners.insert(*i, body["id"].as_i64().unwrap()).is_none(),
                    "two orders for one buyer"
                );
                assert_eq!(body["total_cents"], 990);
            }
            409 => assert!(
                body["code"] == "sold_out" || body["code"] == "limit_reached",
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 20, "exactly the stock is sold");
    // A repeated key answers with the same order, and takes nothing.
    let (&i, &order) = winners.iter().next().unwrap();
    let mut winning_key = None;
    for k in 0..2 {
        let key = format!("buyer{i}-try{k}");
        let (status, again) = post_keyed(app, &tokens[i], &path, &key, json!({})).await;
        if status == StatusCode::CREATED {
            assert_eq!(again["id"], order);
            winning_key = Some(key);
        }
    }
    let winning_key = winning_key.expect("one of the keys made the order");
    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE flash_sale_id = $1")
        .bind(sale)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(orders, 20);
    let (_, view) = app.get(&host, &format!("/api/v1/flash-sales/{sale}")).await;
    assert_eq!(view["sold"], 20);
    assert_eq!(view["remaining"], 0);
    let (_, state) = app
        .get(&tokens[0], &format!("/api/v1/rooms/{room}/commerce"))
        .await;
    assert_eq!(state["pinned"], product, "{state}");
    assert_eq!(state["flash_sales"][0]["remaining"], 0, "{state}");
    // No key, or a key used for another request: clear errors.
    let late = app.token("trainee30").await;
    let (status, body) = post(app, &late, &path, json!({})).await;
    assert_error(status, &body, 400, "idempotency_key_required");
    let (status, body) = post_keyed(
        app,
        &tokens[i],
        "/api/v1/orders",
        &winning_key,
        json!({"sku_id": skus[1], "quantity": 1}),
    )
    .await;
    assert_error(status, &body, 422, "idempotency_key_reused");
}

async fn flash_sale_embedded(backend: Backend) {
    let app = spawn_app(backend).await;
    flash_sale_never_oversells(&app).await;
}

async fn flash_sale_with_redis_gates(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.redis_url = Some(common::redis_url());
            c.redis_namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
        },
        Arc::new(SystemClock),
    )
    .await;
    flash_sale_never_oversells(&app).await;
}

/// A shop of 100 + 100 units and a running flash sale of `stock` of the first SKU at ¥9.90 in
/// a new room: (host token, SKU ids, sale id, the sale's order path).
async fn open_flash_sale(
    app: &TestApp,
    stock: i64,
    per_user_limit: i64,
) -> (String, Vec<i64>, i64, String) {
    let (host, _shop, _product, skus) = open_shop(app, 100).await;
    let room = app.create_room(&host, "秒杀专场").await;
    let (status, body) = post(app, &host, &format!("/api/v1/rooms/{room}/flash-sales"),
        json!({"sku_id": skus[0], "price_cents": 990, "stock": stock, "per_user_limit": per_user_limit,
               "starts_in_seconds": 0, "duration_seconds": 600})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sale = body["id"].as_i64().unwrap();
    (
        host,
        skus,
        sale,
        format!("/api/v1/flash-sales/{sale}/orders"),
    )
}

/// A flash sale's unpaid orders expire back into the sale (and the buyers' limits), and when
/// the sale is over and nothing is pending any more, its unsold units go back to the SKU.
async fn flash_sale_unpaid_units_return_and_the_end_returns_the_rest(backend: Backend) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
    let (host, _shop, product, skus) = open_shop(&app, 100).await;
    let room = app.create_room(&host, "秒杀回补").await;
    let (status, body) = post(
        &app,
        &host,
        &format!("/api/v1/rooms/{room}/flash-sales"),
        json!({"sku_id": skus[0], "price_cents": 990, "stock": 5, "per_user_limit": 1,
               "starts_in_seconds": 0, "duration_seconds": 600, "pay_seconds": 60}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sale = body["id"].as_i64().unwrap();
    let path = format!("/api/v1/flash-sales/{sale}/orders");
    assert_eq!(
        sku_stock(&app, &host, product, skus[0]).await,
        95,
        "carved out of the SKU"
    );
    let tokens = viewers(&app, 8).await;
    let mut first = Vec::new();
    for (i, token) in tokens[..3].iter().enumerate() {
        let (status, order) = post_keyed(&app, token, &path, &format!("a{i}"), json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        first.push(order["id"].as_i64().unwrap());
    }
    let (status, _) = post(
        &app,
        &tokens[0],
        &format!("/api/v1/orders/{}/pay", first[0]),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The two unpaid orders expire: their units are back in the sale.
    clock.advance_millis(61_000);
    let sale_path = format!("/api/v1/flash-sales/{sale}");
    for _ in 0..50 {
        if app.get(&host, &sale_path).await.1["remaining"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, view) = app.get(&host, &sale_path).await;
    assert_eq!(
        (view["remaining"].as_i64(), view["sold"].as_i64()),
        (Some(4), Some(1)),
        "{view}"
    );
    for (token, id) in tokens[1..3].iter().zip(&first[1..]) {
        let (_, order) = app.get(token, &format!("/api/v1/orders/{id}")).await;
        assert_eq!(order["status"], "cancelled", "{order}");
    }
    // The gate has them back too: one whose order expired may buy again, and four units sell.
    let mut second = 0;
    for (i, token) in tokens[1..6].iter().enumerate() {
        let (status, body) = post_keyed(&app, token, &path, &format!("b{i}"), json!({})).await;
        if status == StatusCode::CREATED {
            second += 1;
        } else {
            assert_error(status, &body, 409, "sold_out");
        }
    }
    assert_eq!(second, 4, "the expired units sold again");
    // Over, and its last orders unpaid: once they expire the sale closes and returns 4 units.
    clock.advance_millis(600_000);
    for _ in 0..50 {
        if app.get(&host, &sale_path).await.1["status"] == "closed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, view) = app.get(&host, &sale_path).await;
    assert_eq!(view["status"], "closed", "{view}");
    assert_eq!(view["sold"], 1, "{view}");
    assert_eq!(
        sku_stock(&app, &host, product, skus[0]).await,
        99,
        "the unsold units are back"
    );
}

/// The database's own guard holds even when the gate is wrong: the sale's stock is cut behind
/// the gate's back, a crowd buys at once, and only what the database holds is sold (the group
/// write is refused as a whole and redone order by order).
async fn flash_sale_database_guard_holds_when_the_gate_is_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_host, skus, sale, path) = open_flash_sale(&app, 20, 1).await;
    let tokens = viewers(&app, 26).await;
    // The first order loads the gate with 20 units.
    let (status, first) = post_keyed(&app, &tokens[0], &path, "first", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    sqlx::query("UPDATE flash_sales SET stock = 6 WHERE id = $1")
        .bind(sale)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let results: Vec<(StatusCode, Value)> = futures::stream::iter(tokens[1..].iter().enumerate())
        .map(|(i, token)| {
            let path = path.clone();
            let app = &app;
            async move { post_keyed(app, token, &path, &format!("k{i}"), json!({})).await }
        })
        .buffer_unordered(25)
        .collect()
        .await;
    let mut won = 0;
    for (status, body) in &results {
        match status.as_u16() {
            201 => won += 1,
            409 => assert_eq!(body["code"], "sold_out", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(won, 5, "only the database's stock is sold");
    let (orders, sold): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM orders WHERE flash_sale_id = $1), (SELECT sold FROM flash_sales WHERE id = $1)",
    )
    .bind(sale)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!((orders, sold), (6, 6));
    let sku_sold: i64 = sqlx::query_scalar("SELECT sold FROM skus WHERE id = $1")
        .bind(skus[0])
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(sku_sold, 6, "the SKU counts exactly the orders written");
    let events: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM order_events e JOIN orders o ON o.id = e.order_id WHERE o.flash_sale_id = $1 AND e.action = 'place'",
    )
    .bind(sale)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(events, 6, "every order has its place event");
}

/// A group commit of many orders: the database is held locked while a crowd of winners
/// queues, so that on release the writer takes them in one group of more than one multi-row
/// statement's worth (32), with one buyer's same key sent twice inside it. Every key gets its
/// own order, the repeated key the same one, and the counters match the rows.
async fn flash_sale_group_commit_of_many_orders(backend: Backend) {
    let app = spawn_app(backend).await;
    let (host, skus, sale, path) = open_flash_sale(&app, 90, 3).await;
    let tokens = viewers(&app, 29).await;
    // Loads the gate, the sale and every buyer's session before the lock.
    let (status, first) = post_keyed(&app, &tokens[0], &path, "warm", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    for token in &tokens[1..] {
        let (status, _) = app.get(token, &format!("/api/v1/flash-sales/{sale}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    // Hold the writer: SQLite's write lock, PostgreSQL's lock on the sale's row.
    let mut lock = app.state.db.begin_write().await.unwrap();
    if matches!(backend, Backend::Postgres) {
        sqlx::query("SELECT id FROM flash_sales WHERE id = $1 FOR UPDATE")
            .bind(sale)
            .fetch_one(&mut *lock)
            .await
            .unwrap();
    }
    // 28 buyers with two keys each, and tokens[1] sends its first key twice (its limit is 3,
    // so the gate lets all three through).
    let requests: Vec<(usize, String)> = (1..tokens.len())
        .flat_map(|i| [(i, format!("many-{i}-a")), (i, format!("many-{i}-b"))])
        .chain(std::iter::once((1, "many-1-a".to_owned())))
        .collect();
    let crowd = futures::stream::iter(requests)
        .map(|(i, key)| {
            let (app, path, token) = (&app, path.clone(), tokens[i].clone());
            async move { (i, post_keyed(app, &token, &path, &key, json!({})).await) }
        })
        .buffer_unordered(100)
        .collect::<Vec<_>>();
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        lock.rollback().await.unwrap();
    };
    let (results, ()) = tokio::join!(crowd, release);
    let mut ids = std::collections::HashMap::<usize, Vec<i64>>::new();
    for (i, (status, body)) in &results {
        assert_eq!(*status, StatusCode::CREATED, "buyer {i}: {body}");
        ids.entry(*i)
            .or_default()
            .push(body["id"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 28);
    let mut repeated = ids[&1].clone();
    repeated.sort_unstable();
    repeated.dedup();
    assert_eq!(repeated.len(), 2, "the same key answers the same order");
    let distinct: std::collections::HashSet<i64> = ids.values().flatten().copied().collect();
    assert_eq!(distinct.len(), 56, "one order per key");
    let (orders, sold, events): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM orders WHERE flash_sale_id = $1), (SELECT sold FROM flash_sales WHERE id = $1), \
         (SELECT COUNT(*) FROM order_events e JOIN orders o ON o.id = e.order_id WHERE o.flash_sale_id = $1)",
    )
    .bind(sale)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!((orders, sold, events), (57, 57, 57));
    let sku_sold: i64 = sqlx::query_scalar("SELECT sold FROM skus WHERE id = $1")
        .bind(skus[0])
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(sku_sold, 57);
    let (_, view) = app.get(&host, &format!("/api/v1/flash-sales/{sale}")).await;
    assert_eq!(view["remaining"], 33, "{view}");
}

async fn red_packet_shares_are_exact(app: &TestApp) {
    let host = app.token("trainee01").await;
    let room = app.create_room(&host, "红包雨").await;
    // A viewer in the room hears the packet through the hub.
    let watcher = app.token("trainee30").await;
    let mut socket = app.ws(&watcher).await;
    common::ws_send(&mut socket, json!({"v": 1, "type": "join", "room": room})).await;
    let host_before = balance(app, &host).await;
    let (status, packet) = post(
        app,
        &host,
        &format!("/api/v1/rooms/{room}/red-packets"),
        json!({"total_cents": 1000, "count": 10, "greeting": "谢谢捧场"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{packet}");
    assert_eq!(balance(app, &host).await, host_before - 1000);
    let id = packet["id"].as_i64().unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = socket.next().await {
            let Ok(frame) = serde_json::from_str::<Value>(message.to_text().unwrap_or_default())
            else {
                continue;
            };
            if frame["type"] == "event" && frame["event"]["kind"] == "commerce" {
                return frame["event"]["event"].clone();
            }
        }
        Value::Null
    })
    .await
    .expect("the room hears the red packet");
    assert_eq!(heard["kind"], "red_packet_sent");
    assert_eq!(heard["packet"]["id"], id);

    let tokens = viewers(app, 28).await;
    let path = format!("/api/v1/red-packets/{id}/grab");
    let results: Vec<(StatusCode, Value)> =
        futures::stream::iter(tokens.iter().map(|t| post(app, t, &path, json!({}))))
            .buffer_unordered(64)
            .collect()
            .await;
    let mut amounts = Vec::new();
    for (status, body) in &results {
        match status.as_u16() {
            200 => amounts.push(body["amount_cents"].as_i64().unwrap()),
            410 => assert_eq!(body["code"], "red_packet_empty", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(amounts.len(), 10);
    assert!(amounts.iter().all(|&a| a >= 1));
    assert_eq!(
        amounts.iter().sum::<i64>(),
        1000,
        "the shares add up to the cent"
    );
    let (status, body) = post(app, &tokens[0], &path, json!({})).await;
    assert!(
        status == StatusCode::CONFLICT || status == StatusCode::GONE,
        "{body}"
    );
    let (status, body) = post(app, &host, &path, json!({})).await;
    assert_error(status, &body, 403, "forbidden");
    let (_, view) = app.get(&host, &format!("/api/v1/red-packets/{id}")).await;
    assert_eq!(view["status"], "finished");
    assert_eq!(view["grabs"].as_array().unwrap().len(), 10);

    // Grabbing twice is refused while shares are left.
    let (_, second) = post(
        app,
        &host,
        &format!("/api/v1/rooms/{room}/red-packets"),
        json!({"total_cents": 500, "count": 5}),
    )
    .await;
    let path = format!("/api/v1/red-packets/{}/grab", second["id"]);
    let (status, _) = post(app, &tokens[0], &path, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = post(app, &tokens[0], &path, json!({})).await;
    assert_error(status, &body, 409, "already_grabbed");
    // Amounts that cannot be split into cents are refused.
    let (status, body) = post(
        app,
        &host,
        &format!("/api/v1/rooms/{room}/red-packets"),
        json!({"total_cents": 5, "count": 10}),
    )
    .await;
    assert_error(status, &body, 400, "validation_failed");
    // A viewer cannot send one.
    let (status, body) = post(
        app,
        &tokens[1],
        &format!("/api/v1/rooms/{room}/red-packets"),
        json!({"total_cents": 500, "count": 5}),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
}

async fn red_packets_embedded(backend: Backend) {
    let app = spawn_app(backend).await;
    red_packet_shares_are_exact(&app).await;
}

async fn red_packets_with_redis_gates(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.redis_url = Some(common::redis_url());
            c.redis_namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
        },
        Arc::new(SystemClock),
    )
    .await;
    red_packet_shares_are_exact(&app).await;
}

async fn expired_red_packet_returns_the_rest(backend: Backend) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
    let host = app.token("trainee01").await;
    let room = app.create_room(&host, "红包").await;
    let before = balance(&app, &host).await;
    let (_, packet) = post(
        &app,
        &host,
        &format!("/api/v1/rooms/{room}/red-packets"),
        json!({"total_cents": 888, "count": 3, "expires_in_seconds": 30}),
    )
    .await;
    let id = packet["id"].as_i64().unwrap();
    let viewer = app.token("trainee02").await;
    let (_, got) = post(
        &app,
        &viewer,
        &format!("/api/v1/red-packets/{id}/grab"),
        json!({}),
    )
    .await;
    let grabbed = got["amount_cents"].as_i64().unwrap();
    clock.advance_millis(31_000);
    let view = wait_for(
        &app,
        &host,
        &format!("/api/v1/red-packets/{id}"),
        "status",
        "expired",
    )
    .await;
    assert_eq!(view["returned_cents"], 888 - grabbed);
    assert_eq!(balance(&app, &host).await, before - grabbed);
    let late = app.token("trainee03").await;
    let (status, body) = post(
        &app,
        &late,
        &format!("/api/v1/red-packets/{id}/grab"),
        json!({}),
    )
    .await;
    assert_error(status, &body, 410, "red_packet_expired");
}

async fn coupons_apply_within_their_rules(backend: Backend) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
    let (host, _shop, _product, skus) = open_shop(&app, 10).await;
    let room = app.create_room(&host, "领券直播").await;
    let (status, coupon) = post(&app, &host, &format!("/api/v1/rooms/{room}/coupons"),
        json!({"title": "满50减10", "threshold_cents": 5000, "discount_cents": 1000, "valid_minutes": 10, "total_quota": 2, "per_user_limit": 1})).await;
    assert_eq!(status, StatusCode::CREATED, "{coupon}");
    let claim_path = format!("/api/v1/coupons/{}/claim", coupon["id"]);
    let buyer = app.token("trainee02").await;
    let (status, claim) = post(&app, &buyer, &claim_path, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{claim}");
    let (status, body) = post(&app, &buyer, &claim_path, json!({})).await;
    assert_error(status, &body, 409, "limit_reached");
    let claim_id = claim["id"].as_i64().unwrap();
    // Below the threshold: refused; above: 10 yuan off.
    let (status, body) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": skus[0], "quantity": 1, "coupon_claim_id": claim_id}),
    )
    .await;
    assert_error(status, &body, 400, "coupon_not_applicable");
    let (status, order) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": skus[0], "quantity": 2, "coupon_claim_id": claim_id}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["discount_cents"], 1000);
    assert_eq!(order["total_cents"], 7980 - 1000);
    let (status, body) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": skus[0], "quantity": 2, "coupon_claim_id": claim_id}),
    )
    .await;
    assert_error(status, &body, 400, "coupon_not_applicable");
    // The quota runs out; an expired coupon is refused.
    let second = app.token("trainee03").await;
    let (_, claim2) = post(&app, &second, &claim_path, json!({})).await;
    let third = app.token("trainee04").await;
    let (status, body) = post(&app, &third, &claim_path, json!({})).await;
    assert_error(status, &body, 409, "coupon_exhausted");
    clock.advance_millis(11 * 60_000);
    let (status, body) = post(
        &app,
        &second,
        "/api/v1/orders",
        json!({"sku_id": skus[1], "quantity": 1, "coupon_claim_id": claim2["id"]}),
    )
    .await;
    assert_error(status, &body, 400, "coupon_expired");
    // Bad rules are refused.
    let (status, body) = post(&app, &host, &format!("/api/v1/rooms/{room}/coupons"),
        json!({"title": "坏券", "threshold_cents": 1000, "discount_cents": 1000, "valid_minutes": 10, "total_quota": 2, "per_user_limit": 1})).await;
    assert_error(status, &body, 400, "validation_failed");
}

async fn lucky_bag_draw_can_be_recomputed(backend: Backend) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
    let host = app.token("trainee01").await;
    let room = app.create_room(&host, "福袋").await;
    let (status, bag) = post(&app, &host, &format!("/api/v1/rooms/{room}/lucky-bags"),
        json!({"prize": "蓝莓干礼盒", "winners": 3, "task": "comment", "keyword": "想要", "duration_seconds": 60})).await;
    assert_eq!(status, StatusCode::CREATED, "{bag}");
    assert!(
        bag["seed"].is_null(),
        "the seed stays secret until the draw"
    );
    let id = bag["id"].as_i64().unwrap();
    // The stored chat log decides who qualifies: eight viewers comment the keyword, two do not.
    let now = clock.now_millis();
    let accounts: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, username FROM accounts WHERE username LIKE 'trainee%' ORDER BY id",
    )
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    for (n, (account, username)) in accounts.iter().skip(1).take(10).enumerate() {
        let text = if n < 8 {
            "主播我想要！"
        } else {
            "路过"
        };
        sqlx::query("INSERT INTO room_messages (room_id, seq, user_id, user_name, text, at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(room).bind(n as i64 + 1).bind(account).bind(username).bind(text).bind(now + 1000)
            .execute(app.state.db.pool()).await.unwrap();
    }
    clock.advance_millis(63_000);
    let drawn = wait_for(
        &app,
        &host,
        &format!("/api/v1/lucky-bags/{id}"),
        "status",
        "drawn",
    )
    .await;
    let seed_hex = drawn["seed"].as_str().unwrap();
    let seed_bytes = hex::decode(seed_hex).unwrap();
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&seed_bytes)),
        bag["commitment"].as_str().unwrap()
    );
    let entrants: Vec<i64> = serde_json::from_value(drawn["entrants"].clone()).unwrap();
    assert_eq!(entrants.len(), 8);
    let seed: [u8; 32] = seed_bytes.try_into().unwrap();
    let expected = commerce::core::lucky_bag::draw(&seed, &entrants, 3);
    let winners: Vec<i64> = drawn["winner_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(winners, expected, "anyone can recompute the winners");
}

/// Trainee accounts (id, username) by id: the first is trainee01, the host of these tests.
async fn trainee_accounts(app: &TestApp) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT id, username FROM accounts WHERE username LIKE 'trainee%' ORDER BY id")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}

/// Adds `ms` to an account's stored watch time in the room, as the hub's batch writer does.
async fn add_watch(app: &TestApp, room: i64, account: i64, ms: i64, at: i64) {
    sqlx::query(
        "INSERT INTO room_viewers (room_id, account_id, watch_ms, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (room_id, account_id) DO UPDATE SET watch_ms = room_viewers.watch_ms + excluded.watch_ms",
    )
    .bind(room)
    .bind(account)
    .bind(ms)
    .bind(at)
    .execute(app.state.db.pool())
    .await
    .unwrap();
}

/// A watch bag: only what is watched after the launch counts (the stored watch time then is
/// its base), the host never enters, the draw waits for the last watch save, and anyone can
/// recompute it. While it is open each viewer reads their progress.
async fn lucky_bag_watch_task_counts_watching_during_the_countdown(backend: Backend) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
    let host = app.token("trainee01").await;
    let room = app.create_room(&host, "看满福袋").await;
    let accounts = trainee_accounts(&app).await;
    let host_id = accounts[0].0;
    let v: Vec<i64> = accounts[1..=7].iter().map(|(id, _)| *id).collect();
    // Before the launch everyone (the host too) has watched 10 minutes: it must not count.
    let before = clock.now_millis();
    for account in std::iter::once(host_id).chain(v[..5].iter().copied()) {
        add_watch(&app, room, account, 600_000, before).await;
    }
    let (status, bag) = post(&app, &host, &format!("/api/v1/rooms/{room}/lucky-bags"),
        json!({"prize": "蓝莓干礼盒", "winners": 2, "task": "watch", "watch_minutes": 2, "duration_seconds": 180})).await;
    assert_eq!(status, StatusCode::CREATED, "{bag}");
    assert_eq!(bag["task"], "watch");
    assert_eq!(bag["watch_minutes"], 2);
    assert!(bag["keyword"].is_null(), "{bag}");
    let id = bag["id"].as_i64().unwrap();
    let draws_at = bag["draws_at"].as_i64().unwrap();
    // During the countdown: v0 exactly the 2 minutes, v1 a millisecond short, v2 more,
    // v3 and v4 nothing more, v5 came only now (no base) and watched enough, v6 a minute; the
    // host watched a lot.
    let at = clock.now_millis() + 1_000;
    for (account, ms) in [
        (v[0], 120_000),
        (v[1], 119_999),
        (v[2], 170_000),
        (v[5], 150_000),
        (v[6], 60_000),
        (host_id, 999_999),
    ] {
        add_watch(&app, room, account, ms, at).await;
    }
    let qualified = {
        let mut q = vec![v[0], v[2], v[5]];
        q.sort_unstable();
        q
    };
    // Each viewer's progress while it is open; the host has none, a comment bag neither.
    let tokens: Vec<String> = {
        let mut t = Vec::new();
        for (_, username) in &accounts[1..=7] {
            t.push(app.token(username).await);
        }
        t
    };
    let path = format!("/api/v1/lucky-bags/{id}");
    for (token, watched) in [
        (&tokens[0], 120_000),
        (&tokens[1], 119_999),
        (&tokens[3], 0),
        (&tokens[5], 150_000),
    ] {
        let (status, view) = app.get(token, &path).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(
            view["my_watch"],
            json!({"watched_ms": watched, "required_ms": 120_000})
        );
        assert!(view["seed"].is_null());
    }
    let (_, nobody) = app.get(&app.token("trainee09").await, &path).await;
    assert_eq!(
        nobody["my_watch"],
        json!({"watched_ms": 0, "required_ms": 120_000})
    );
    let (_, own) = app.get(&host, &path).await;
    assert!(own["my_watch"].is_null(), "{own}");
    let (_, comment_bag) = post(&app, &host, &format!("/api/v1/rooms/{room}/lucky-bags"),
        json!({"prize": "口令福袋", "winners": 1, "task": "comment", "keyword": "想要", "duration_seconds": 600})).await;
    assert!(comment_bag["watch_minutes"].is_null(), "{comment_bag}");
    let (_, comment_view) = app
        .get(
            &tokens[0],
            &format!("/api/v1/lucky-bags/{}", comment_bag["id"]),
        )
        .await;
    assert!(comment_view["my_watch"].is_null(), "{comment_view}");
    // Past the deadline and a comment bag's grace, a watch bag still waits for the last save.
    clock.advance_millis(draws_at + 9_000 - clock.now_millis());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, waiting) = app.get(&host, &path).await;
    assert_eq!(waiting["status"], "open", "{waiting}");
    clock.advance_millis(draws_at + 10_000 - clock.now_millis());
    let drawn = wait_for(&app, &host, &path, "status", "drawn").await;
    let entrants: Vec<i64> = serde_json::from_value(drawn["entrants"].clone()).unwrap();
    assert_eq!(
        entrants, qualified,
        "exactly those who watched 2 minutes since the launch"
    );
    assert!(!entrants.contains(&host_id));
    assert!(drawn["my_watch"].is_null(), "no progress once drawn");
    let seed_bytes = hex::decode(drawn["seed"].as_str().unwrap()).unwrap();
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&seed_bytes)),
        bag["commitment"].as_str().unwrap()
    );
    let seed: [u8; 32] = seed_bytes.try_into().unwrap();
    let winners: Vec<i64> = drawn["winner_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        winners,
        commerce::core::lucky_bag::draw(&seed, &entrants, 2),
        "anyone can recompute the winners"
    );
}

/// A real viewer in a live room accrues watch time in the hub; the room task's save brings it
/// to the database, and the viewer qualifies. The clock is virtual, the saves are real (every
/// 5 s), so this takes a few seconds.
async fn lucky_bag_watch_time_comes_from_the_hub(backend: Backend) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
    let host = app.token("trainee01").await;
    let room = app.create_room(&host, "看直播抽福袋").await;
    // Kept open: the host stays in the room, live.
    let _host_ws = app.go_live(&host, room).await;
    let viewer = app.token("trainee02").await;
    let viewer_id = trainee_accounts(&app).await[1].0;
    let mut viewer_ws = app.ws(&viewer).await;
    common::ws_send(
        &mut viewer_ws,
        json!({"v": 1, "type": "join", "room": room}),
    )
    .await;
    next_frame(&mut viewer_ws, |f| f["type"] == "joined").await;
    let (status, bag) = post(&app, &host, &format!("/api/v1/rooms/{room}/lucky-bags"),
        json!({"prize": "蓝莓干", "winners": 1, "task": "watch", "watch_minutes": 1, "duration_seconds": 60})).await;
    assert_eq!(status, StatusCode::CREATED, "{bag}");
    let id = bag["id"].as_i64().unwrap();
    let launched = next_frame(&mut viewer_ws, |f| {
        f["type"] == "event" && f["event"]["event"]["kind"] == "lucky_bag_launched"
    })
    .await;
    assert_eq!(launched["event"]["event"]["bag"]["watch_minutes"], 1);
    assert_eq!(launched["event"]["event"]["bag"]["task"], "watch");
    // A minute passes; the room task's next watch save (within 5 s) stores it.
    clock.advance_millis(61_000);
    let path = format!("/api/v1/lucky-bags/{id}");
    let mut progress = Value::Null;
    for _ in 0..80 {
        progress = app.get(&viewer, &path).await.1["my_watch"].clone();
        if progress["watched_ms"].as_i64().unwrap_or_default() >= 60_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        progress["watched_ms"].as_i64().unwrap_or_default() >= 60_000,
        "the hub's watch save reached the database: {progress}"
    );
    clock.advance_millis(10_000);
    let drawn = wait_for(&app, &host, &path, "status", "drawn").await;
    assert_eq!(drawn["entrants"], json!([viewer_id]), "{drawn}");
    assert_eq!(drawn["winner_list"][0]["id"], viewer_id);
}

/// The 讲解中 card's price and stock are live: an order, a cancel, a stock adjustment and a price
/// edit each reach the room as `product_updated` with the product's exact card, and an unchanged
/// card is not sent again.
async fn pinned_card_follows_price_and_stock(backend: Backend) {
    let app = spawn_app(backend).await;
    let (host, _shop, product, skus) = open_shop(&app, 10).await;
    let room = app.create_room(&host, "讲解中").await;
    // Only live rooms hear product updates: wait until the live is on.
    let mut host_ws = app.go_live(&host, room).await;
    next_frame(&mut host_ws, |f| {
        f["type"] == "event" && f["event"]["kind"] == "live_started"
    })
    .await;
    common::shop::shelve_and_pin(&app, &host, room, product).await;
    let viewer = app.token("trainee02").await;
    let mut ws = app.ws(&viewer).await;
    common::ws_send(&mut ws, json!({"v": 1, "type": "join", "room": room})).await;
    next_frame(&mut ws, |f| f["type"] == "joined").await;
    let card = |f: &Value| f["type"] == "event" && f["event"]["event"]["kind"] == "product_updated";

    // Two SKUs of 10: an order of 3 leaves 17 in all.
    let (status, order) = post(
        &app,
        &viewer,
        "/api/v1/orders",
        json!({"sku_id": skus[0], "quantity": 3, "room_id": room}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let update = next_frame(&mut ws, card).await;
    let shown = &update["event"]["event"]["product"];
    assert_eq!(shown["id"], product);
    assert_eq!(shown["stock"], 17, "{update}");
    assert_eq!(shown["price_cents"], 3990);
    // Cancelled: the units come back.
    let id = order["id"].as_i64().unwrap();
    let (status, body) = post(
        &app,
        &viewer,
        &format!("/api/v1/orders/{id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let update = next_frame(&mut ws, card).await;
    assert_eq!(update["event"]["event"]["product"]["stock"], 20, "{update}");
    // A stock adjustment and a cheaper spec: the lowest price drops.
    let (status, body) = post(
        &app,
        &host,
        &format!("/api/v1/skus/{}/stock", skus[1]),
        json!({"delta": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let update = next_frame(&mut ws, card).await;
    assert_eq!(update["event"]["event"]["product"]["stock"], 25, "{update}");
    let (status, body) = app
        .send(
            Method::PATCH,
            &host,
            &format!("/api/v1/skus/{}", skus[1]),
            json!({"price_cents": 2990}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let update = next_frame(&mut ws, card).await;
    assert_eq!(
        update["event"]["event"]["product"]["price_cents"], 2990,
        "{update}"
    );
    assert_eq!(update["event"]["event"]["product"]["stock"], 25);
    // Setting the same price again changes nothing on the card: no event.
    app.send(
        Method::PATCH,
        &host,
        &format!("/api/v1/skus/{}", skus[1]),
        json!({"price_cents": 2990}),
    )
    .await;
    let quiet = tokio::time::timeout(Duration::from_millis(1_500), next_frame(&mut ws, card)).await;
    assert!(
        quiet.is_err(),
        "an unchanged card was sent again: {quiet:?}"
    );
    // The room's commerce state agrees with the last card.
    let (_, state) = app
        .get(&viewer, &format!("/api/v1/rooms/{room}/commerce"))
        .await;
    assert_eq!(state["shelf"][0]["stock"], 25, "{state}");
    assert_eq!(state["shelf"][0]["price_cents"], 2990);
    assert_eq!(sku_stock(&app, &viewer, product, skus[1]).await, 15);
    // A flash sale takes its 5 units out of the SKU: the card shows 20.
    let (status, body) = post(
        &app,
        &host,
        &format!("/api/v1/rooms/{room}/flash-sales"),
        json!({"sku_id": skus[0], "price_cents": 990, "stock": 5, "per_user_limit": 1,
               "starts_in_seconds": 0, "duration_seconds": 600}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let update = next_frame(&mut ws, card).await;
    assert_eq!(update["event"]["event"]["product"]["stock"], 20, "{update}");
}

/// The next frame on a hub socket that matches (within 5 s).
async fn next_frame(socket: &mut common::WsSocket, pred: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = socket.next().await {
            let Ok(frame) = serde_json::from_str::<Value>(message.to_text().unwrap_or_default())
            else {
                continue;
            };
            if pred(&frame) {
                return frame;
            }
        }
        Value::Null
    })
    .await
    .expect("the frame arrives")
}

/// A lucky bag's task is checked: what a watch bag needs, and that its countdown is long enough.
async fn lucky_bag_tasks_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let host = app.token("trainee01").await;
    let room = app.create_room(&host, "福袋规则").await;
    let path = format!("/api/v1/rooms/{room}/lucky-bags");
    for body in [
        json!({"prize": "礼盒", "winners": 1, "task": "watch", "duration_seconds": 600}),
        json!({"prize": "礼盒", "winners": 1, "task": "watch", "watch_minutes": 0, "duration_seconds": 600}),
        json!({"prize": "礼盒", "winners": 1, "task": "watch", "watch_minutes": 61, "duration_seconds": 3600}),
        json!({"prize": "礼盒", "winners": 1, "task": "watch", "watch_minutes": 10, "duration_seconds": 599}),
        json!({"prize": "礼盒", "winners": 1, "task": "watch", "watch_minutes": 1, "keyword": "想要", "duration_seconds": 60}),
        json!({"prize": "礼盒", "winners": 1, "task": "comment", "keyword": "想要", "watch_minutes": 1, "duration_seconds": 60}),
        json!({"prize": "礼盒", "winners": 1, "task": "comment", "duration_seconds": 60}),
        json!({"prize": "礼盒", "winners": 1, "task": "share", "duration_seconds": 60}),
    ] {
        let (status, answer) = post(&app, &host, &path, body.clone()).await;
        assert_error(status, &answer, 400, "validation_failed");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body} → {answer}"
        );
    }
    let (status, answer) = post(&app, &host, &path,
        json!({"prize": "礼盒", "winners": 1, "task": "watch", "watch_minutes": 10, "duration_seconds": 599})).await;
    assert_error(status, &answer, 400, "validation_failed");
    assert!(
        answer["message"].as_str().unwrap().contains("600 秒"),
        "the message says how long the countdown must be: {answer}"
    );
    // The edges are accepted: a minute in a minute, an empty keyword.
    let (status, answer) = post(&app, &host, &path,
        json!({"prize": "礼盒", "winners": 1, "task": "watch", "watch_minutes": 1, "keyword": "", "duration_seconds": 60})).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = post(&app, &host, &path,
        json!({"prize": "礼盒", "winners": 1, "task": "watch", "watch_minutes": 60, "duration_seconds": 3600})).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (_, state) = app
        .get(&host, &format!("/api/v1/rooms/{room}/commerce"))
        .await;
    assert_eq!(state["lucky_bags"][0]["watch_minutes"], 60, "{state}");
}

async fn bad_input_is_refused_clearly(backend: Backend) {
    let app = spawn_app(backend).await;
    let (host, shop, product, skus) = open_shop(&app, 5).await;
    let path = format!("/api/v1/shops/{shop}/products");
    for sku in [
        json!({"spec": "a", "price_cents": -1, "stock": 5}),
        json!({"spec": "a", "price_cents": 100, "stock": 0}),
    ] {
        let (status, body) = post(
            &app,
            &host,
            &path,
            json!({"title": "坏商品", "skus": [sku]}),
        )
        .await;
        assert_error(status, &body, 400, "validation_failed");
    }
    let (status, body) = post(
        &app,
        &host,
        "/api/v1/shops",
        json!({"name": "第二家店", "category": "食品"}),
    )
    .await;
    assert_error(status, &body, 409, "shop_exists");
    // Stock below zero (what is sold is not in it).
    let (status, body) = post(
        &app,
        &host,
        &format!("/api/v1/skus/{}/stock", skus[0]),
        json!({"delta": -6}),
    )
    .await;
    assert_error(status, &body, 400, "validation_failed");
    let (status, sku) = post(
        &app,
        &host,
        &format!("/api/v1/skus/{}/stock", skus[0]),
        json!({"delta": -2, "note": "破损"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sku}");
    assert_eq!(sku["stock"], 3);
    // Another trainee cannot manage this shop nor sell its product in their room.
    let other = app.token("trainee02").await;
    let (status, body) = app
        .send(
            Method::PATCH,
            &other,
            &format!("/api/v1/products/{product}"),
            json!({"status": "delisted"}),
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let other_room = app.create_room(&other, "别人的直播间").await;
    let (status, body) = post(&app, &other, &format!("/api/v1/rooms/{other_room}/flash-sales"),
        json!({"sku_id": skus[0], "price_cents": 100, "stock": 1, "per_user_limit": 1, "starts_in_seconds": 0, "duration_seconds": 60})).await;
    assert_error(status, &body, 403, "forbidden");
    // Flash-sale rules: stock beyond the SKU's, a price not below the original.
    let room = app.create_room(&host, "秒杀").await;
    let sales = format!("/api/v1/rooms/{room}/flash-sales");
    let (status, body) = post(&app, &host, &sales, json!({"sku_id": skus[0], "price_cents": 100, "stock": 4, "per_user_limit": 1, "starts_in_seconds": 0, "duration_seconds": 60})).await;
    assert_error(status, &body, 400, "validation_failed");
    let (status, body) = post(&app, &host, &sales, json!({"sku_id": skus[0], "price_cents": 3990, "stock": 1, "per_user_limit": 1, "starts_in_seconds": 0, "duration_seconds": 60})).await;
    assert_error(status, &body, 400, "validation_failed");
    // A sale that has not started yet.
    let (status, sale) = post(&app, &host, &sales, json!({"sku_id": skus[0], "price_cents": 100, "stock": 1, "per_user_limit": 1, "starts_in_seconds": 600, "duration_seconds": 60})).await;
    assert_eq!(status, StatusCode::CREATED, "{sale}");
    let (status, body) = post_keyed(
        &app,
        &other,
        &format!("/api/v1/flash-sales/{}/orders", sale["id"]),
        "k1",
        json!({}),
    )
    .await;
    assert_error(status, &body, 409, "sale_not_open");
    // Buying from your own shop, unknown actions, wrong types, truncated JSON.
    let (status, body) = post(
        &app,
        &host,
        "/api/v1/orders",
        json!({"sku_id": skus[1], "quantity": 1}),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = post(
        &app,
        &other,
        "/api/v1/orders",
        json!({"sku_id": skus[1], "quantity": 0}),
    )
    .await;
    assert_error(status, &body, 400, "validation_failed");
    let (status, body) = post(
        &app,
        &other,
        "/api/v1/orders",
        json!({"sku_id": "x", "quantity": 1}),
    )
    .await;
    assert_error(status, &body, 422, "unprocessable_entity");
    let (status, body) = post(
        &app,
        &other,
        "/api/v1/orders",
        json!({"sku_id": 999_999, "quantity": 1}),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (_, order) = post(
        &app,
        &other,
        "/api/v1/orders",
        json!({"sku_id": skus[1], "quantity": 1}),
    )
    .await;
    let (status, body) = post(
        &app,
        &other,
        &format!("/api/v1/orders/{}/explode", order["id"]),
        json!({}),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let response = common::api()
        .post(app.url(&format!("/api/v1/orders/{}/pay", order["id"])))
        .bearer_auth(&other)
        .header("content-type", "application/json")
        .body("{\"reason\":")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // A delisted product can no longer be bought.
    app.send(
        Method::PATCH,
        &host,
        &format!("/api/v1/products/{product}"),
        json!({"status": "delisted"}),
    )
    .await;
    let (status, body) = post(
        &app,
        &other,
        "/api/v1/orders",
        json!({"sku_id": skus[1], "quantity": 1}),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
}

async fn dashboard_and_report_of_a_live(backend: Backend) {
    let app = spawn_app(backend).await;
    let (host, _shop, _product, skus) = open_shop(&app, 10).await;
    let room = app.create_room(&host, "看板测试").await;
    let mut host_ws = app.go_live(&host, room).await;
    let viewer = app.token("trainee02").await;
    let mut viewer_ws = app.ws(&viewer).await;
    common::ws_send(
        &mut viewer_ws,
        json!({"v": 1, "type": "join", "room": room}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    common::ws_send(
        &mut viewer_ws,
        json!({"v": 1, "type": "chat", "room": room, "text": "主播好，蓝莓干甜吗"}),
    )
    .await;
    let (_, order) = post(
        &app,
        &viewer,
        "/api/v1/orders",
        json!({"sku_id": skus[0], "quantity": 2, "room_id": room}),
    )
    .await;
    post(
        &app,
        &viewer,
        &format!("/api/v1/orders/{}/pay", order["id"]),
        json!({}),
    )
    .await;
    // The live dashboard: the host sees it, a viewer may not.
    let (status, body) = app
        .get(&viewer, &format!("/api/v1/rooms/{room}/dashboard"))
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, live) = app
        .get(&host, &format!("/api/v1/rooms/{room}/dashboard"))
        .await;
    assert_eq!(status, StatusCode::OK, "{live}");
    assert_eq!(live["live"], true);
    assert_eq!(live["viewers_now"], 1);
    assert_eq!(live["paid_orders"], 1);
    assert_eq!(live["gmv_cents"], 7980);
    assert_eq!(live["products"][0]["units"], 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    common::ws_send(
        &mut host_ws,
        json!({"v": 1, "type": "end_live", "room": room}),
    )
    .await;
    // The report is written a few seconds after the end, with watch time and a diagnosis.
    let mut reports = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        reports = app
            .get(&host, &format!("/api/v1/rooms/{room}/reports"))
            .await
            .1;
        if reports.as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
    }
    let report = &reports[0];
    assert_eq!(report["dashboard"]["live"], false, "{reports}");
    assert_eq!(report["dashboard"]["comments"], 1);
    assert_eq!(report["dashboard"]["unique_viewers"], 1);
    assert!(
        report["dashboard"]["watch_ms_total"].as_i64().unwrap() >= 1000,
        "{report}"
    );
    assert_eq!(report["dashboard"]["buyers"], 1);
    assert_eq!(report["dashboard"]["conversion"], 1.0);
    let advice = report["diagnosis"]["worked"].as_array().unwrap().len()
        + report["diagnosis"]["improve"].as_array().unwrap().len();
    assert!(advice > 0, "{report}");
    // The class's instructor sees every session; another trainee only their own (none).
    let class = app.get(&host, "/api/v1/classes").await.1[0]["id"]
        .as_i64()
        .unwrap();
    let instructor = app.token("instructor01").await;
    let (status, all) = app
        .get(
            &instructor,
            &format!("/api/v1/classes/{class}/live-reports"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all.as_array().unwrap().len(), 1);
    let (_, none) = app
        .get(&viewer, &format!("/api/v1/classes/{class}/live-reports"))
        .await;
    assert_eq!(none.as_array().unwrap().len(), 0);
}

backend_tests!(
    dashboard_and_report_of_a_live,
    order_lifecycle_with_exact_money,
    unpaid_orders_expire_and_stock_returns,
    flash_sale_embedded,
    flash_sale_with_redis_gates,
    flash_sale_database_guard_holds_when_the_gate_is_wrong,
    flash_sale_group_commit_of_many_orders,
    flash_sale_unpaid_units_return_and_the_end_returns_the_rest,
    red_packets_embedded,
    red_packets_with_redis_gates,
    expired_red_packet_returns_the_rest,
    coupons_apply_within_their_rules,
    lucky_bag_draw_can_be_recomputed,
    lucky_bag_watch_task_counts_watching_during_the_countdown,
    lucky_bag_watch_time_comes_from_the_hub,
    lucky_bag_tasks_are_checked,
    pinned_card_follows_price_and_stock,
    bad_input_is_refused_clearly,
);

// ---- session_stats_: each live session of a room reports only itself ----

mod session_stats {
    use super::*;
    use common::{WsSocket, spawn_cluster, ws_send};

    /// The next frame on a hub socket that matches (within 10 s).
    async fn session_stats_frame(socket: &mut WsSocket, pred: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(message)) = socket.next().await {
                let Ok(frame) =
                    serde_json::from_str::<Value>(message.to_text().unwrap_or_default())
                else {
                    continue;
                };
                if pred(&frame) {
                    return frame;
                }
            }
            panic!("the socket closed while waiting for a frame");
        })
        .await
        .expect("the frame arrives within 10 s")
    }

    fn session_stats_event(kind: &'static str) -> impl Fn(&Value) -> bool {
        move |f| f["type"] == "event" && f["event"]["kind"] == kind
    }

    /// `socket` joins `room` and waits until its node has the room live.
    async fn session_stats_join(socket: &mut WsSocket, room: i64) {
        ws_send(socket, json!({"v": 1, "type": "join", "room": room})).await;
        let joined = session_stats_frame(socket, |f| f["type"] == "joined").await;
        if joined["state"]["live"] != true {
            session_stats_frame(socket, session_stats_event("live_started")).await;
        }
    }

    /// `count` likes in one frame, acknowledged (so the room has counted them).
    async fn session_stats_like(socket: &mut WsSocket, room: i64, count: u32, id: u32) {
        ws_send(
            socket,
            json!({"v": 1, "id": id, "type": "like", "room": room, "count": count}),
        )
        .await;
        session_stats_frame(socket, |f| f["type"] == "ack" && f["id"] == id).await;
    }

    async fn session_stats_leave(socket: &mut WsSocket, room: i64) {
        ws_send(socket, json!({"v": 1, "type": "leave", "room": room})).await;
        session_stats_frame(socket, |f| f["type"] == "left").await;
    }

    /// Lets the batch writer store the last watch time (within 100 ms, real time), then moves
    /// the virtual clock past the reports' 3 s delay.
    async fn session_stats_settle(clock: &ManualClock) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        clock.advance_millis(4_000);
    }

    /// The room's reports once there are `n` of them (newest first; within 15 s).
    async fn session_stats_reports(app: &TestApp, token: &str, room: i64, n: usize) -> Vec<Value> {
        for _ in 0..150 {
            let (status, reports) = app
                .get(token, &format!("/api/v1/rooms/{room}/reports"))
                .await;
            assert_eq!(status, StatusCode::OK, "{reports}");
            let reports = reports.as_array().cloned().unwrap_or_default();
            if reports.len() >= n {
                assert_eq!(reports.len(), n, "{reports:?}");
                return reports;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} reports of room {room} were not written");
    }

    async fn session_stats_account(app: &TestApp, token: &str) -> i64 {
        app.get(token, "/api/v1/me").await.1["id"]
            .as_i64()
            .expect("account id")
    }

    /// A room goes live twice (virtual time): two viewers, 30 likes and a minute each in the
    /// first live; one of them back for 10 s and 5 likes in the second. The second live's
    /// dashboard and report count only the second; the first's report stays as it was; the
    /// room's totals (and the lucky bags' `room_viewers`) still add both.
    async fn session_stats_each_live_reports_only_itself(backend: Backend) {
        let clock = ManualClock::new(SystemClock.now_millis());
        let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
        let host = app.token("trainee01").await;
        let room = app.create_room(&host, "练习两场").await;
        let a = app.token("trainee02").await;
        let b = app.token("trainee03").await;
        let a_id = session_stats_account(&app, &a).await;

        // The first live.
        let mut host_ws = app.go_live(&host, room).await;
        session_stats_frame(&mut host_ws, session_stats_event("live_started")).await;
        let mut a_ws = app.ws(&a).await;
        let mut b_ws = app.ws(&b).await;
        session_stats_join(&mut a_ws, room).await;
        session_stats_join(&mut b_ws, room).await;
        for id in 1..=3 {
            session_stats_like(&mut a_ws, room, 10, id).await;
        }
        clock.advance_millis(60_000);
        ws_send(
            &mut host_ws,
            json!({"v": 1, "type": "end_live", "room": room}),
        )
        .await;
        session_stats_frame(&mut host_ws, session_stats_event("live_ended")).await;
        session_stats_leave(&mut a_ws, room).await;
        session_stats_leave(&mut b_ws, room).await;
        session_stats_settle(&clock).await;
        let first = session_stats_reports(&app, &host, room, 1).await;
        let one = &first[0]["dashboard"];
        assert_eq!(one["live"], false, "{one}");
        assert_eq!(one["unique_viewers"], 2, "{one}");
        assert_eq!(one["watch_ms_total"], 120_000, "{one}");
        assert_eq!(one["likes"], 30, "{one}");
        assert_eq!(one["peak_viewers"], 2, "{one}");

        // The second live: only trainee02 comes back.
        ws_send(
            &mut host_ws,
            json!({"v": 1, "type": "start_live", "room": room}),
        )
        .await;
        session_stats_frame(&mut host_ws, session_stats_event("live_started")).await;
        session_stats_join(&mut a_ws, room).await;
        session_stats_like(&mut a_ws, room, 5, 4).await;
        clock.advance_millis(10_000);
        // The live dashboard, once the hub's watch save (every 5 s) has stored the 10 s.
        let path = format!("/api/v1/rooms/{room}/dashboard");
        let mut live = Value::Null;
        for _ in 0..100 {
            let (status, body) = app.get(&host, &path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            live = body;
            if live["watch_ms_total"].as_i64().unwrap_or_default() >= 10_000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(live["live"], true, "{live}");
        assert_eq!(live["viewers_now"], 1, "{live}");
        assert_eq!(live["unique_viewers"], 1, "{live}");
        assert_eq!(live["watch_ms_total"], 10_000, "{live}");
        assert_eq!(live["likes"], 5, "{live}");
        assert_eq!(live["peak_viewers"], 1, "{live}");

        ws_send(
            &mut host_ws,
            json!({"v": 1, "type": "end_live", "room": room}),
        )
        .await;
        session_stats_frame(&mut host_ws, session_stats_event("live_ended")).await;
        session_stats_leave(&mut a_ws, room).await;
        session_stats_settle(&clock).await;
        let both = session_stats_reports(&app, &host, room, 2).await;
        let two = &both[0]["dashboard"];
        assert!(
            both[0]["started_at"].as_i64() > first[0]["started_at"].as_i64(),
            "newest first: {both:?}"
        );
        assert_eq!(two["unique_viewers"], 1, "{two}");
        assert_eq!(two["watch_ms_total"], 10_000, "{two}");
        assert_eq!(two["avg_watch_ms"], 10_000, "{two}");
        assert_eq!(two["likes"], 5, "{two}");
        assert_eq!(two["peak_viewers"], 1, "{two}");
        assert_eq!(both[1], first[0], "the first report is unchanged");
        // The dashboard after the end shows the second live too.
        let (_, after) = app.get(&host, &path).await;
        assert_eq!(after["live"], false, "{after}");
        assert_eq!(
            (
                &after["likes"],
                &after["peak_viewers"],
                &after["watch_ms_total"]
            ),
            (&json!(5), &json!(1), &json!(10_000)),
            "{after}"
        );

        // The room's own totals still cover both lives.
        let (_, record) = app.get(&host, &format!("/api/v1/rooms/{room}")).await;
        assert_eq!(record["likes"], 35, "{record}");
        assert_eq!(record["peak_viewers"], 2, "{record}");
        let watched: i64 = sqlx::query_scalar(
            "SELECT watch_ms FROM room_viewers WHERE room_id = $1 AND account_id = $2",
        )
        .bind(room)
        .bind(a_id)
        .fetch_one(app.state.db.pool())
        .await
        .expect("room_viewers row");
        assert_eq!(watched, 70_000, "room_viewers keeps the room's total");
    }

    /// The same across two nodes sharing the room through Redis (real time): likes taken on
    /// both nodes land exactly in the live they were taken in, the peak is the live's own.
    async fn session_stats_per_live_across_nodes(backend: Backend) {
        let nodes = spawn_cluster(backend, 2, &common::redis_url()).await;
        let (n1, n2) = (&nodes[0], &nodes[1]);
        let host = n1.token("trainee01").await;
        let room = n1.create_room(&host, "跨节点两场").await;
        let a = n2.token("trainee02").await;
        let b = n1.token("trainee03").await;

        let mut host_ws = n1.go_live(&host, room).await;
        session_stats_frame(&mut host_ws, session_stats_event("live_started")).await;
        // trainee02 watches through node 2, trainee03 through node 1.
        let mut a_ws = n2.ws(&a).await;
        let mut b_ws = n1.ws(&b).await;
        session_stats_join(&mut a_ws, room).await;
        session_stats_join(&mut b_ws, room).await;
        for id in 1..=4 {
            session_stats_like(&mut a_ws, room, 7, id).await;
            session_stats_like(&mut b_ws, room, 3, id).await;
        }
        session_stats_frame(&mut host_ws, |f| {
            f["type"] == "stats" && f["likes"] == 40 && f["viewers"] == 2
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        ws_send(
            &mut host_ws,
            json!({"v": 1, "type": "end_live", "room": room}),
        )
        .await;
        session_stats_frame(&mut host_ws, session_stats_event("live_ended")).await;
        session_stats_leave(&mut a_ws, room).await;
        session_stats_leave(&mut b_ws, room).await;
        session_stats_frame(&mut host_ws, |f| f["type"] == "stats" && f["viewers"] == 0).await;
        let first = session_stats_reports(n1, &host, room, 1).await;
        let one = &first[0]["dashboard"];
        assert_eq!(one["likes"], 40, "{one}");
        assert_eq!(one["peak_viewers"], 2, "{one}");
        assert_eq!(one["unique_viewers"], 2, "{one}");
        assert!(
            one["watch_ms_total"].as_i64().unwrap_or_default() > 0,
            "{one}"
        );

        // Both nodes count the viewers that left before the second live starts (their viewer
        // gauges are summed every second).
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        ws_send(
            &mut host_ws,
            json!({"v": 1, "type": "start_live", "room": room}),
        )
        .await;
        session_stats_frame(&mut host_ws, session_stats_event("live_started")).await;
        session_stats_join(&mut a_ws, room).await;
        session_stats_like(&mut a_ws, room, 5, 9).await;
        session_stats_frame(&mut host_ws, |f| {
            f["type"] == "stats" && f["likes"] == 45 && f["viewers"] == 1
        })
        .await;
        // Node 1's dashboard, while node 2 holds the viewer and took the likes.
        let path = format!("/api/v1/rooms/{room}/dashboard");
        let (status, live) = n1.get(&host, &path).await;
        assert_eq!(status, StatusCode::OK, "{live}");
        assert_eq!(live["live"], true, "{live}");
        assert_eq!(live["likes"], 5, "{live}");
        assert_eq!(live["peak_viewers"], 1, "{live}");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        ws_send(
            &mut host_ws,
            json!({"v": 1, "type": "end_live", "room": room}),
        )
        .await;
        session_stats_frame(&mut host_ws, session_stats_event("live_ended")).await;
        session_stats_leave(&mut a_ws, room).await;
        let both = session_stats_reports(n1, &host, room, 2).await;
        let two = &both[0]["dashboard"];
        assert_eq!(two["likes"], 5, "{two}");
        assert_eq!(two["peak_viewers"], 1, "{two}");
        assert_eq!(two["unique_viewers"], 1, "{two}");
        // One viewer cannot have watched this live longer than it lasted (with their first
        // live's watch time counted too, they would have).
        let watch = two["watch_ms_total"].as_i64().unwrap_or_default();
        assert!(
            watch > 0 && watch <= two["duration_ms"].as_i64().unwrap_or_default(),
            "{two}"
        );
        assert_eq!(both[1], first[0], "the first report is unchanged");
    }

    crate::backend_tests!(
        session_stats_each_live_reports_only_itself,
        session_stats_per_live_across_nodes,
    );
}
