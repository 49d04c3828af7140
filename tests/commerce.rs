//! The commerce engine over HTTP, on both storage backends: shop → product → order → payment →
//! shipping → receipt and refunds with exact money; flash sales and red packets under
//! concurrent load (in-process gates and Redis gates); coupons; an auditable lucky-bag draw;
//! the room hearing its selling tools; bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, TestApp, assert_error, spawn_app, spawn_app_with};
use foundation::clock::{Clock, ManualClock, SystemClock};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

/// Opens trainee01's shop with one listed product of two SKUs; returns (host token, shop id,
/// product id, [sku ids]).
async fn open_shop(app: &TestApp, stock: i64) -> (String, i64, i64, Vec<i64>) {
    let host = app.token("trainee01").await;
    let (status, shop) = app
        .send(
            Method::POST,
            &host,
            "/api/v1/shops",
            json!({"name": "长白山特产店", "category": "食品"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{shop}");
    let shop_id = shop["id"].as_i64().unwrap();
    let (status, product) = app
        .send(
            Method::POST,
            &host,
            &format!("/api/v1/shops/{shop_id}/products"),
            json!({"title": "长白山野生蓝莓干", "description": "无添加", "listed": true,
                   "images": ["https://img.example/1.jpg"],
                   "skus": [{"spec": "250g", "price_cents": 3990, "stock": stock},
                            {"spec": "500g 礼盒", "price_cents": 6990, "stock": stock}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let skus = product["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    (host, shop_id, product["id"].as_i64().unwrap(), skus)
}

async fn balance(app: &TestApp, token: &str) -> i64 {
    let (status, wallet) = app.get(token, "/api/v1/wallet").await;
    assert_eq!(status, StatusCode::OK, "{wallet}");
    wallet["balance_cents"].as_i64().unwrap()
}

async fn sku_stock(app: &TestApp, token: &str, product: i64, sku: i64) -> i64 {
    let (_, product) = app.get(token, &format!("/api/v1/products/{product}")).await;
    product["skus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == sku)
        .unwrap()["stock"]
        .as_i64()
        .unwrap()
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.send(Method::POST, token, path, body).await
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
    let (host, _shop, _product, skus) = open_shop(app, 100).await;
    let room = app.create_room(&host, "秒杀专场").await;
    // The shelf and the pinned product, as a joining page reads them.
    let product = _product;
    let (status, shelf) = post(
        app,
        &host,
        &format!("/api/v1/rooms/{room}/products"),
        json!({"product_id": product}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{shelf}");
    let (status, pinned) = app
        .send(
            Method::PUT,
            &host,
            &format!("/api/v1/rooms/{room}/pin"),
            json!({"product_id": product}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pinned}");
    assert_eq!(pinned["stock"], 200);
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

async fn wait_for(app: &TestApp, token: &str, path: &str, field: &str, value: &str) -> Value {
    for _ in 0..50 {
        let (_, body) = app.get(token, path).await;
        if body[field] == value {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never had {field} = {value}");
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
    bad_input_is_refused_clearly,
);
