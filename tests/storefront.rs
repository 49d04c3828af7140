//! The simulated mall over HTTP, on both storage backends: classmates see a shop in the list
//! with its listed products (never drafts or delisted ones, none while it is closed) and its
//! customer-service quick replies (客服); editing the replies is validated; buying from the
//! storefront without a room works, buying from one's own shop is refused; a shop of another
//! class is invisible.

mod common;

use common::shop::{balance, open_shop, post, sku_stock};
use common::{Backend, TestApp, assert_error, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;

async fn patch(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.send(Method::PATCH, token, path, body).await
}

/// The shop `id` in `GET /api/v1/shops` as `token` sees it, if listed.
async fn listed_shop(app: &TestApp, token: &str, id: i64) -> Option<Value> {
    let (status, shops) = app.get(token, "/api/v1/shops").await;
    assert_eq!(status, StatusCode::OK, "{shops}");
    shops
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|p| p["id"].as_i64().expect("id"))
        .collect()
}

async fn classmates_see_the_shop_its_listed_products_and_its_quick_replies(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = open_shop(&app, 10).await;
    let host = &shop.host;
    let id = shop.shop_id;
    let replies = json!([
        "发货时间：下单后 48 小时内发货",
        "支持七天无理由退换，运费险已开通"
    ]);
    let (status, body) = patch(
        &app,
        host,
        &format!("/api/v1/shops/{id}"),
        json!({"quick_replies": replies, "description": "长白山脚下的家庭农场"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quick_replies"], replies);

    // A draft and a delisted product besides the listed one.
    let (status, draft) = post(
        &app,
        host,
        &format!("/api/v1/shops/{id}/products"),
        json!({"title": "松子草稿", "skus": [{"spec": "1kg", "price_cents": 9900, "stock": 3}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{draft}");
    assert_eq!(draft["status"], "draft");
    let (status, gone) = post(
        &app,
        host,
        &format!("/api/v1/shops/{id}/products"),
        json!({"title": "人参（已下架）", "listed": true,
               "skus": [{"spec": "一支", "price_cents": 19900, "stock": 3}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{gone}");
    let gone_id = gone["id"].as_i64().expect("id");
    let (status, body) = patch(
        &app,
        host,
        &format!("/api/v1/products/{gone_id}"),
        json!({"status": "delisted"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A classmate: the shop in the mall, with its quick replies and its one listed product.
    let buyer = app.token("trainee02").await;
    let card = listed_shop(&app, &buyer, id)
        .await
        .expect("classmates see the shop in the mall");
    assert_eq!(card["mine"], false);
    assert_eq!(card["status"], "open");
    assert_eq!(card["quick_replies"], replies);
    assert_eq!(card["description"], "长白山脚下的家庭农场");
    assert_eq!(
        card["owner"]["name"].as_str().map(str::is_empty),
        Some(false)
    );
    assert_eq!(card["listed_products"], 1, "{card}");
    assert_eq!(
        card["preview"],
        json!([{"product_id": shop.product_id, "title": "长白山野生蓝莓干",
                "image": "https://img.example/1.jpg", "price_cents": 3990}])
    );
    let (status, one) = app.get(&buyer, &format!("/api/v1/shops/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["quick_replies"], replies);
    assert_eq!(one["listed_products"], 1);
    let (status, products) = app
        .get(&buyer, &format!("/api/v1/shops/{id}/products"))
        .await;
    assert_eq!(status, StatusCode::OK, "{products}");
    assert_eq!(
        ids(&products),
        vec![shop.product_id],
        "listed products only"
    );
    assert_eq!(products[0]["skus"].as_array().map(Vec::len), Some(2));
    for hidden in [draft["id"].as_i64().expect("id"), gone_id] {
        let (status, body) = app.get(&buyer, &format!("/api/v1/products/{hidden}")).await;
        assert_error(status, &body, 404, "not_found");
    }

    // The owner sees every product, but the card counts only what buyers can see.
    let mine = listed_shop(&app, host, id).await.expect("own shop listed");
    assert_eq!(mine["mine"], true);
    assert_eq!(mine["listed_products"], 1);
    let (_, all) = app.get(host, &format!("/api/v1/shops/{id}/products")).await;
    assert_eq!(all.as_array().map(Vec::len), Some(3));
    // The class's instructor sees it too.
    let instructor = app.token("instructor01").await;
    assert!(listed_shop(&app, &instructor, id).await.is_some());

    // Closed: still in the mall (with its replies), but no products for buyers.
    let (status, body) = patch(
        &app,
        host,
        &format!("/api/v1/shops/{id}"),
        json!({"status": "closed"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let card = listed_shop(&app, &buyer, id)
        .await
        .expect("a closed shop is listed");
    assert_eq!(card["status"], "closed");
    assert_eq!(card["listed_products"], 0);
    assert_eq!(card["preview"], json!([]));
    assert_eq!(card["quick_replies"], replies);
    let (_, products) = app
        .get(&buyer, &format!("/api/v1/shops/{id}/products"))
        .await;
    assert_eq!(products, json!([]));
    let (status, body) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": shop.skus[0], "quantity": 1}),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let mine = listed_shop(&app, host, id).await.expect("own shop listed");
    assert_eq!(mine["listed_products"], 1, "the owner still sees theirs");
}

async fn quick_replies_are_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = open_shop(&app, 5).await;
    let path = format!("/api/v1/shops/{}", shop.shop_id);
    let kept = json!(["亲，下单后 48 小时内发货哦"]);
    let (status, body) = patch(&app, &shop.host, &path, json!({"quick_replies": kept})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let too_many: Vec<String> = (1..=21).map(|i| format!("回复 {i}")).collect();
    let (status, body) = patch(&app, &shop.host, &path, json!({"quick_replies": too_many})).await;
    assert_error(status, &body, 400, "validation_failed");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("最多 20 条"),
        "{body}"
    );

    let too_long = json!(["好的", "长".repeat(201)]);
    let (status, body) = patch(&app, &shop.host, &path, json!({"quick_replies": too_long})).await;
    assert_error(status, &body, 400, "validation_failed");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("第 2 条快捷回复") && message.contains("200"),
        "{body}"
    );

    for bad in [json!(["  "]), json!(["<b>包邮</b>"])] {
        let (status, body) = patch(&app, &shop.host, &path, json!({"quick_replies": bad})).await;
        assert_error(status, &body, 400, "validation_failed");
    }
    let (status, body) = patch(&app, &shop.host, &path, json!({"quick_replies": "包邮"})).await;
    assert_error(status, &body, 422, "unprocessable_entity");

    // Nothing of the refused edits was kept.
    let (_, now) = app.get(&shop.host, &path).await;
    assert_eq!(now["quick_replies"], kept);

    // The limits themselves are fine: 20 replies of 200 characters, trimmed.
    let full: Vec<String> = (0..20)
        .map(|i| format!(" {}{} ", i % 10, "满".repeat(199)))
        .collect();
    let (status, body) = patch(&app, &shop.host, &path, json!({"quick_replies": full})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = body["quick_replies"].as_array().expect("replies");
    assert_eq!(stored.len(), 20);
    assert!(
        stored
            .iter()
            .all(|r| r.as_str().map(|s| s.chars().count()) == Some(200))
    );

    // Only the owner edits them: a classmate may see the shop, so it is forbidden.
    let classmate = app.token("trainee02").await;
    let (status, body) = patch(&app, &classmate, &path, json!({"quick_replies": []})).await;
    assert_error(status, &body, 403, "forbidden");
}

async fn buying_from_the_storefront_without_a_room(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = open_shop(&app, 10).await;
    let sku = shop.skus[1];
    let buyer = app.token("trainee02").await;
    let before = balance(&app, &buyer).await;

    let (status, order) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": sku, "quantity": 2, "address": "吉林省长春市"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["room_id"], Value::Null);
    assert_eq!(order["shop_id"], shop.shop_id);
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["total_cents"], 2 * 6990);
    assert_eq!(sku_stock(&app, &buyer, shop.product_id, sku).await, 8);
    let id = order["id"].as_i64().expect("order id");
    let (status, paid) = post(&app, &buyer, &format!("/api/v1/orders/{id}/pay"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "paid");
    assert_eq!(balance(&app, &buyer).await, before - 2 * 6990);

    // In 订单 on both sides.
    let (_, mine) = app.get(&buyer, "/api/v1/orders?as=buyer").await;
    assert!(ids(&mine).contains(&id), "{mine}");
    let (_, sold) = app.get(&shop.host, "/api/v1/orders?as=merchant").await;
    assert!(ids(&sold).contains(&id), "{sold}");

    // Not from one's own shop: forbidden, and no stock moves.
    let (status, body) = post(
        &app,
        &shop.host,
        "/api/v1/orders",
        json!({"sku_id": sku, "quantity": 1}),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("自己店铺"),
        "{body}"
    );
    assert_eq!(sku_stock(&app, &buyer, shop.product_id, sku).await, 8);
}

async fn another_class_shop_is_invisible(backend: Backend) {
    let app = spawn_app(backend).await;
    let ours = open_shop(&app, 5).await;

    // The demo data has one class; trainee30 moves to a second one and opens a shop there.
    let pool = app.state.db.pool();
    let (institution, demo_class): (i64, i64) = {
        let row = sqlx::query("SELECT institution_id, id FROM classes ORDER BY id LIMIT 1")
            .fetch_one(pool)
            .await
            .expect("the demo class");
        (
            row.try_get(0).expect("institution"),
            row.try_get(1).expect("id"),
        )
    };
    let other_class: i64 = sqlx::query(
        "INSERT INTO classes (institution_id, code, name, edition, status, start_date, end_date, created_at) \
         VALUES ($1, 'MALL-2', '别的班', 'live', 'running', '2026-11-01', '2026-12-01', 0) RETURNING id",
    )
    .bind(institution)
    .fetch_one(pool)
    .await
    .expect("a second class")
    .try_get(0)
    .expect("id");
    let trainee30: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE username = 'trainee30'")
        .fetch_one(pool)
        .await
        .expect("trainee30");
    sqlx::query("UPDATE class_trainees SET class_id = $1 WHERE account_id = $2")
        .bind(other_class)
        .bind(trainee30)
        .execute(pool)
        .await
        .expect("moved");
    let stranger = app.token("trainee30").await;
    let (status, theirs) = post(
        &app,
        &stranger,
        "/api/v1/shops",
        json!({"name": "别班的小店", "category": "服饰"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    assert_eq!(theirs["class_id"], other_class);
    let their_shop = theirs["id"].as_i64().expect("id");
    let (status, product) = post(
        &app,
        &stranger,
        &format!("/api/v1/shops/{their_shop}/products"),
        json!({"title": "围巾", "listed": true, "skus": [{"spec": "灰色", "price_cents": 5900, "stock": 4}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let their_product = product["id"].as_i64().expect("id");
    let their_sku = product["skus"][0]["id"].as_i64().expect("sku");

    // The demo class sees only its own shop; everything of the other one is not found.
    for who in ["trainee02", "instructor01"] {
        let token = app.token(who).await;
        assert!(
            listed_shop(&app, &token, ours.shop_id).await.is_some(),
            "{who}"
        );
        assert!(
            listed_shop(&app, &token, their_shop).await.is_none(),
            "{who}"
        );
        for path in [
            format!("/api/v1/shops/{their_shop}"),
            format!("/api/v1/shops/{their_shop}/products"),
            format!("/api/v1/products/{their_product}"),
        ] {
            let (status, body) = app.get(&token, &path).await;
            assert_error(status, &body, 404, "not_found");
        }
        let (status, body) = post(
            &app,
            &token,
            "/api/v1/orders",
            json!({"sku_id": their_sku, "quantity": 1}),
        )
        .await;
        assert_error(status, &body, 404, "not_found");
    }
    // And the other way round: the other class's trainee sees their own mall only, even when
    // asking for the demo class.
    let (_, shops) = app.get(&stranger, "/api/v1/shops").await;
    assert_eq!(ids(&shops), vec![their_shop]);
    let (status, shops) = app
        .get(&stranger, &format!("/api/v1/shops?class_id={demo_class}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{shops}");
    assert_eq!(shops, json!([]));
    let (status, body) = app
        .get(&stranger, &format!("/api/v1/shops/{}", ours.shop_id))
        .await;
    assert_error(status, &body, 404, "not_found");
}

backend_tests!(
    classmates_see_the_shop_its_listed_products_and_its_quick_replies,
    quick_replies_are_validated,
    buying_from_the_storefront_without_a_room,
    another_class_shop_is_invisible,
);
