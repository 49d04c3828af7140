//! Shop fixtures and small order helpers shared by the commerce test files: a listed product
//! of two SKUs in trainee01's shop, put on a room's shelf and pinned, wallet balances, SKU
//! stock, waiting for an order's status.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::TestApp;

/// What [`open_shop`] made.
pub struct Shop {
    /// trainee01, the merchant and host.
    pub host: String,
    pub shop_id: i64,
    pub product_id: i64,
    /// 250g at ¥39.90 and a 500g gift box at ¥69.90.
    pub skus: Vec<i64>,
}

/// Opens trainee01's shop with one listed product of two SKUs of `stock` units each.
pub async fn open_shop(app: &TestApp, stock: i64) -> Shop {
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
    let shop_id = shop["id"].as_i64().expect("shop id");
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
        .expect("skus")
        .iter()
        .map(|s| s["id"].as_i64().expect("sku id"))
        .collect();
    Shop {
        host,
        shop_id,
        product_id: product["id"].as_i64().expect("product id"),
        skus,
    }
}

/// Puts `product` on `room`'s shelf and pins it (讲解中), as its host.
pub async fn shelve_and_pin(app: &TestApp, host: &str, room: i64, product: i64) {
    let (status, body) = post(
        app,
        host,
        &format!("/api/v1/rooms/{room}/products"),
        json!({"product_id": product}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .send(
            Method::PUT,
            host,
            &format!("/api/v1/rooms/{room}/pin"),
            json!({"product_id": product}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The caller's wallet balance in cents.
pub async fn balance(app: &TestApp, token: &str) -> i64 {
    let (status, wallet) = app.get(token, "/api/v1/wallet").await;
    assert_eq!(status, StatusCode::OK, "{wallet}");
    wallet["balance_cents"].as_i64().expect("balance")
}

/// The stock of one SKU of `product`, as the product page shows it.
pub async fn sku_stock(app: &TestApp, token: &str, product: i64, sku: i64) -> i64 {
    let (_, product) = app.get(token, &format!("/api/v1/products/{product}")).await;
    product["skus"]
        .as_array()
        .expect("skus")
        .iter()
        .find(|s| s["id"] == sku)
        .expect("the sku")["stock"]
        .as_i64()
        .expect("stock")
}

pub async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.send(Method::POST, token, path, body).await
}

/// Polls `path` until its `field` is `value` (5 s at most).
pub async fn wait_for(app: &TestApp, token: &str, path: &str, field: &str, value: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..50 {
        let (_, body) = app.get(token, path).await;
        if body[field] == value {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never had {field} = {value}; last: {last}");
}
