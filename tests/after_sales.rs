//! After-sales over HTTP, on both storage backends: refunds only (仅退款) and returns
//! (退货退款) — the buyer asks, the merchant approves or rejects, the buyer ships the goods back
//! with a tracking number, the merchant confirms and the money and stock come back exactly —
//! withdrawn and rejected requests, and the system acting for a party that lets a deadline pass.

mod common;

use std::time::Duration;

use common::shop::{balance, open_shop, post, sku_stock, wait_for};
use common::{Backend, TestApp, assert_error, spawn_app_with};
use foundation::clock::{Clock, ManualClock, SystemClock};
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;

/// Places, pays and ships an order of `quantity` × `sku` for `buyer`; returns its id.
async fn shipped_order(app: &TestApp, buyer: &str, host: &str, sku: i64, quantity: i64) -> i64 {
    let (status, order) = post(
        app,
        buyer,
        "/api/v1/orders",
        json!({"sku_id": sku, "quantity": quantity, "address": "长春市"}),
    )
    .await;
    assert_eq!(status.as_u16(), 201, "{order}");
    let id = order["id"].as_i64().expect("order id");
    let (status, body) = post(app, buyer, &format!("/api/v1/orders/{id}/pay"), json!({})).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let (status, body) = post(app, host, &format!("/api/v1/orders/{id}/ship"), json!({})).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    id
}

async fn act(app: &TestApp, token: &str, id: i64, action: &str, body: Value) -> Value {
    let (status, order) = post(app, token, &format!("/api/v1/orders/{id}/{action}"), body).await;
    assert_eq!(status.as_u16(), 200, "{action}: {order}");
    order
}

/// Sends `action` on order `id` and checks it is refused with `status` and `code`; returns the
/// error body.
async fn refused(
    app: &TestApp,
    token: &str,
    id: i64,
    action: &str,
    body: Value,
    status: u16,
    code: &str,
) -> Value {
    let (got, answer) = post(app, token, &format!("/api/v1/orders/{id}/{action}"), body).await;
    assert_error(got, &answer, status, code);
    answer
}

fn actions(order: &Value) -> Vec<&str> {
    order["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect()
}

async fn a_return_refunds_exactly_and_restocks(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}, std::sync::Arc::new(SystemClock)).await;
    let shop = open_shop(&app, 10).await;
    let (host, sku) = (shop.host.clone(), shop.skus[0]);
    let buyer = app.token("trainee02").await;
    let host_before = balance(&app, &host).await;
    let buyer_before = balance(&app, &buyer).await;

    // A completed order of two units: the merchant has been paid.
    let id = shipped_order(&app, &buyer, &host, sku, 2).await;
    act(&app, &buyer, id, "confirm", json!({})).await;
    assert_eq!(balance(&app, &host).await, host_before + 7980);
    assert_eq!(sku_stock(&app, &buyer, shop.product_id, sku).await, 8);

    // A return needs a reason, and only the buyer asks for one.
    refused(
        &app,
        &buyer,
        id,
        "return",
        json!({}),
        400,
        "validation_failed",
    )
    .await;
    refused(
        &app,
        &host,
        id,
        "return",
        json!({"reason": "尺码不合适"}),
        403,
        "forbidden",
    )
    .await;
    let asked = act(&app, &buyer, id, "return", json!({"reason": "包装破损"})).await;
    assert_eq!(asked["status"], "return_requested");
    assert_eq!(asked["refund_reason"], "包装破损");

    // Out of order: nothing is confirmed or shipped back before the merchant agrees.
    for (token, action) in [(&host, "confirm-return"), (&buyer, "ship-return")] {
        refused(
            &app,
            token,
            id,
            action,
            json!({}),
            409,
            "invalid_transition",
        )
        .await;
    }
    let approved = act(
        &app,
        &host,
        id,
        "approve-return",
        json!({"reason": "请寄回：长春市南关区人民大街 1 号"}),
    )
    .await;
    assert_eq!(approved["status"], "return_approved");

    // The buyer's tracking number is checked, and only `ship-return` takes one.
    refused(
        &app,
        &buyer,
        id,
        "ship-return",
        json!({"tracking_no": "ab"}),
        400,
        "validation_failed",
    )
    .await;
    refused(
        &app,
        &buyer,
        id,
        "withdraw",
        json!({"tracking_no": "SF1234567890"}),
        400,
        "validation_failed",
    )
    .await;
    let sent = act(
        &app,
        &buyer,
        id,
        "ship-return",
        json!({"tracking_no": "sf1234567890"}),
    )
    .await;
    assert_eq!(sent["status"], "return_shipped");
    assert_eq!(sent["return_tracking_no"], "SF1234567890");
    // Goods on their way back: the request can no longer be withdrawn or rejected.
    refused(
        &app,
        &buyer,
        id,
        "withdraw",
        json!({}),
        409,
        "invalid_transition",
    )
    .await;
    refused(
        &app,
        &host,
        id,
        "reject-return",
        json!({}),
        409,
        "invalid_transition",
    )
    .await;
    // Nothing moved yet.
    assert_eq!(balance(&app, &buyer).await, buyer_before - 7980);
    assert_eq!(sku_stock(&app, &buyer, shop.product_id, sku).await, 8);

    // The merchant gets them back: the buyer is refunded, the merchant's income clawed back,
    // the two units are on sale again.
    let refunded = act(&app, &host, id, "confirm-return", json!({})).await;
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(balance(&app, &buyer).await, buyer_before);
    assert_eq!(balance(&app, &host).await, host_before);
    assert_eq!(sku_stock(&app, &buyer, shop.product_id, sku).await, 10);
    assert_eq!(
        actions(&refunded),
        [
            "place",
            "pay",
            "ship",
            "confirm_receipt",
            "request_return",
            "approve_return",
            "ship_return",
            "confirm_return"
        ]
    );
    let (_, history) = app
        .get(&host, &format!("/api/v1/skus/{sku}/stock-changes"))
        .await;
    assert_eq!(history[0]["reason"], "return");
    assert_eq!(history[0]["delta"], 2);
    assert_eq!(history[0]["ref_id"], id);
    // Refunded is final.
    refused(
        &app,
        &buyer,
        id,
        "return",
        json!({"reason": "再退一次"}),
        409,
        "invalid_transition",
    )
    .await;
    // The ledgers still explain the balances.
    for token in [&host, &buyer] {
        let (_, wallet) = app.get(token, "/api/v1/wallet").await;
        let sum: i64 = wallet["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["delta_cents"].as_i64().expect("delta"))
            .sum();
        assert_eq!(sum, wallet["balance_cents"].as_i64().expect("balance"));
    }
}

async fn rejected_and_withdrawn_requests_go_back(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}, std::sync::Arc::new(SystemClock)).await;
    let shop = open_shop(&app, 10).await;
    let (host, sku) = (shop.host.clone(), shop.skus[1]);
    let buyer = app.token("trainee02").await;
    let buyer_before = balance(&app, &buyer).await;

    // A return the merchant rejects: back to shipped, and it can be asked for again.
    let id = shipped_order(&app, &buyer, &host, sku, 1).await;
    act(&app, &buyer, id, "return", json!({"reason": "不喜欢"})).await;
    refused(
        &app,
        &buyer,
        id,
        "reject-return",
        json!({}),
        403,
        "forbidden",
    )
    .await;
    let back = act(
        &app,
        &host,
        id,
        "reject-return",
        json!({"reason": "商品无质量问题"}),
    )
    .await;
    assert_eq!(back["status"], "shipped");
    // Asked again, approved, then withdrawn by the buyer: back to shipped, and confirmed.
    act(&app, &buyer, id, "return", json!({"reason": "还是想退"})).await;
    act(&app, &host, id, "approve-return", json!({})).await;
    refused(&app, &host, id, "withdraw", json!({}), 403, "forbidden").await;
    let withdrawn = act(&app, &buyer, id, "withdraw", json!({})).await;
    assert_eq!(withdrawn["status"], "shipped");
    let done = act(&app, &buyer, id, "confirm", json!({})).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        actions(&done),
        [
            "place",
            "pay",
            "ship",
            "request_return",
            "reject_return",
            "request_return",
            "approve_return",
            "withdraw",
            "confirm_receipt"
        ]
    );

    // A refund request withdrawn before shipping: back to paid; a refund of a paid order can
    // not be turned into a return (nothing was shipped).
    let (_, order) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": sku, "quantity": 1}),
    )
    .await;
    let paid = order["id"].as_i64().expect("order id");
    act(&app, &buyer, paid, "pay", json!({})).await;
    refused(
        &app,
        &buyer,
        paid,
        "return",
        json!({"reason": "不想要了"}),
        409,
        "invalid_transition",
    )
    .await;
    act(&app, &buyer, paid, "refund", json!({"reason": "拍错了"})).await;
    let back = act(&app, &buyer, paid, "withdraw", json!({})).await;
    assert_eq!(back["status"], "paid");
    assert_eq!(balance(&app, &buyer).await, buyer_before - 2 * 6990);
    assert_eq!(sku_stock(&app, &buyer, shop.product_id, sku).await, 8);
}

/// The system acts for whoever lets a deadline pass: the merchant's two days to answer, the
/// buyer's seven to ship back, the merchant's ten to confirm the goods came back.
async fn deadlines_move_stuck_requests(backend: Backend) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
    let shop = open_shop(&app, 10).await;
    let (host, sku) = (shop.host.clone(), shop.skus[0]);
    let buyer = app.token("trainee02").await;
    let buyer_before = balance(&app, &buyer).await;

    // A: a return the merchant never answers. B: a return shipped back the merchant never
    // confirms. C: a refund of a paid order the merchant never answers.
    let a = shipped_order(&app, &buyer, &host, sku, 1).await;
    act(&app, &buyer, a, "return", json!({"reason": "破损"})).await;
    let b = shipped_order(&app, &buyer, &host, sku, 1).await;
    act(&app, &buyer, b, "return", json!({"reason": "发错货"})).await;
    act(&app, &host, b, "approve-return", json!({})).await;
    let sent = act(&app, &buyer, b, "ship-return", json!({})).await;
    assert!(
        sent["return_tracking_no"]
            .as_str()
            .is_some_and(|no| no.starts_with("SIM")),
        "a simulated number without one: {sent}"
    );
    let (_, order) = post(
        &app,
        &buyer,
        "/api/v1/orders",
        json!({"sku_id": sku, "quantity": 1}),
    )
    .await;
    let c = order["id"].as_i64().expect("order id");
    act(&app, &buyer, c, "pay", json!({})).await;
    act(&app, &buyer, c, "refund", json!({"reason": "不想要了"})).await;
    assert_eq!(sku_stock(&app, &buyer, shop.product_id, sku).await, 7);

    // Just under two days: nothing moves.
    clock.advance_millis(2 * DAY_MS - 60_000);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let buyer = app.token("trainee02").await;
    let (_, order_a) = app.get(&buyer, &format!("/api/v1/orders/{a}")).await;
    assert_eq!(order_a["status"], "return_requested");

    // Two days: A's return and C's refund are approved for the merchant.
    clock.advance_millis(120_000);
    let order_a = wait_for(
        &app,
        &buyer,
        &format!("/api/v1/orders/{a}"),
        "status",
        "return_approved",
    )
    .await;
    let auto = order_a["events"]
        .as_array()
        .expect("events")
        .last()
        .cloned()
        .expect("an event");
    assert_eq!(auto["action"], "approve_return");
    assert_eq!(auto["actor_id"], Value::Null);
    assert_eq!(auto["note"], "商家 2 天内未处理，系统自动同意退货");
    wait_for(
        &app,
        &buyer,
        &format!("/api/v1/orders/{c}"),
        "status",
        "refunded",
    )
    .await;
    // C was never shipped: its unit is back on sale, its money back with the buyer.
    assert_eq!(sku_stock(&app, &buyer, shop.product_id, sku).await, 8);

    // Seven more days: A was never shipped back, so its return is closed (back to shipped).
    clock.advance_millis(7 * DAY_MS + 60_000);
    let buyer = app.token("trainee02").await;
    let order_a = wait_for(
        &app,
        &buyer,
        &format!("/api/v1/orders/{a}"),
        "status",
        "shipped",
    )
    .await;
    assert_eq!(
        order_a["events"]
            .as_array()
            .expect("events")
            .last()
            .expect("an event")["action"],
        "withdraw"
    );
    let (_, order_b) = app.get(&buyer, &format!("/api/v1/orders/{b}")).await;
    assert_eq!(order_b["status"], "return_shipped", "B has ten days");

    // Ten days after B was shipped back: refunded for the merchant, but not restocked (nobody
    // saw the parcel arrive).
    clock.advance_millis(DAY_MS + 60_000);
    let buyer = app.token("trainee02").await;
    wait_for(
        &app,
        &buyer,
        &format!("/api/v1/orders/{b}"),
        "status",
        "refunded",
    )
    .await;
    assert_eq!(sku_stock(&app, &buyer, shop.product_id, sku).await, 8);
    // A (1 unit, ¥39.90) is the only one still paid for.
    assert_eq!(balance(&app, &buyer).await, buyer_before - 3990);
}

/// A merchant who spent the income of a completed order still refunds a confirmed return: the
/// clawback leaves them owing, and while they owe they can spend nothing.
async fn a_clawback_the_merchant_cannot_cover_leaves_a_debt(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}, std::sync::Arc::new(SystemClock)).await;
    let shop = open_shop(&app, 10).await;
    let (host, sku) = (shop.host.clone(), shop.skus[1]);
    let buyer = app.token("trainee02").await;
    let buyer_before = balance(&app, &buyer).await;
    let id = shipped_order(&app, &buyer, &host, sku, 1).await;
    act(&app, &buyer, id, "confirm", json!({})).await;
    // The merchant sends everything they have as a red packet.
    let room = app.create_room(&host, "清空余额").await;
    let _live = app.go_live(&host, room).await;
    let all = balance(&app, &host).await;
    let (status, body) = post(
        &app,
        &host,
        &format!("/api/v1/rooms/{room}/red-packets"),
        json!({"total_cents": all, "count": 1}),
    )
    .await;
    assert_eq!(status.as_u16(), 201, "{body}");
    assert_eq!(balance(&app, &host).await, 0);

    act(&app, &buyer, id, "return", json!({"reason": "不新鲜"})).await;
    act(&app, &host, id, "approve-return", json!({})).await;
    act(&app, &buyer, id, "ship-return", json!({})).await;
    let refunded = act(&app, &host, id, "confirm-return", json!({})).await;
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(
        balance(&app, &buyer).await,
        buyer_before,
        "the buyer is paid back in full"
    );
    assert_eq!(
        balance(&app, &host).await,
        -6990,
        "the merchant owes the clawback"
    );
    // Owing, the merchant can pay for nothing.
    let (status, body) = post(
        &app,
        &host,
        &format!("/api/v1/rooms/{room}/red-packets"),
        json!({"total_cents": 1, "count": 1}),
    )
    .await;
    assert_error(status, &body, 409, "insufficient_balance");
    let (_, wallet) = app.get(&host, "/api/v1/wallet").await;
    let sum: i64 = wallet["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["delta_cents"].as_i64().expect("delta"))
        .sum();
    assert_eq!(sum, -6990, "the ledger explains the debt");
    // Income still reaches an account in debt: the next completed order pays part of it off.
    let next = shipped_order(&app, &buyer, &host, shop.skus[0], 1).await;
    act(&app, &buyer, next, "confirm", json!({})).await;
    assert_eq!(balance(&app, &host).await, -6990 + 3990);
}

/// A completed order takes requests for 15 days; an order takes three requests in all; a
/// request that was withdrawn does not restart the week before receipt is confirmed.
async fn after_sale_windows_and_limits(backend: Backend) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let app = spawn_app_with(backend, |_| {}, clock.clone()).await;
    let shop = open_shop(&app, 10).await;
    let (host, sku) = (shop.host.clone(), shop.skus[0]);
    let buyer = app.token("trainee02").await;

    // Three requests, each rejected; the fourth is refused.
    let id = shipped_order(&app, &buyer, &host, sku, 1).await;
    for n in 0..3 {
        let (kind, reject) = if n % 2 == 0 {
            ("return", "reject-return")
        } else {
            ("refund", "reject-refund")
        };
        act(&app, &buyer, id, kind, json!({"reason": "再看看"})).await;
        act(&app, &host, id, reject, json!({})).await;
    }
    let body = refused(
        &app,
        &buyer,
        id,
        "return",
        json!({"reason": "第四次"}),
        409,
        "invalid_transition",
    )
    .await;
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("3 次")),
        "{body}"
    );

    // Completed, then 15 days: too late for a refund.
    let late = shipped_order(&app, &buyer, &host, sku, 1).await;
    act(&app, &buyer, late, "confirm", json!({})).await;
    clock.advance_millis(15 * DAY_MS - 60_000);
    let buyer = app.token("trainee02").await;
    let (_, order) = app.get(&buyer, &format!("/api/v1/orders/{late}")).await;
    assert_eq!(order["status"], "completed");
    clock.advance_millis(120_000);
    let body = refused(
        &app,
        &buyer,
        late,
        "refund",
        json!({"reason": "过期了"}),
        409,
        "invalid_transition",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("售后期")),
        "{body}"
    );

    // Shipped; a return asked on day 6 and withdrawn on day 6.5: receipt is confirmed a day
    // after the withdrawal (day 7.5), not a week after it.
    let host = app.token("trainee01").await;
    let kept = shipped_order(&app, &buyer, &host, sku, 1).await;
    clock.advance_millis(6 * DAY_MS);
    let (buyer, host) = (app.token("trainee02").await, app.token("trainee01").await);
    act(&app, &buyer, kept, "return", json!({"reason": "犹豫"})).await;
    clock.advance_millis(DAY_MS / 2);
    let buyer = app.token("trainee02").await;
    act(&app, &buyer, kept, "withdraw", json!({})).await;
    clock.advance_millis(DAY_MS * 3 / 4);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let buyer = app.token("trainee02").await;
    let (_, order) = app.get(&buyer, &format!("/api/v1/orders/{kept}")).await;
    assert_eq!(
        order["status"], "shipped",
        "a day's grace after the withdrawal"
    );
    clock.advance_millis(DAY_MS / 4 + 60_000);
    let buyer = app.token("trainee02").await;
    wait_for(
        &app,
        &buyer,
        &format!("/api/v1/orders/{kept}"),
        "status",
        "completed",
    )
    .await;
    drop(host);
}

backend_tests!(
    a_clawback_the_merchant_cannot_cover_leaves_a_debt,
    after_sale_windows_and_limits,
    a_return_refunds_exactly_and_restocks,
    rejected_and_withdrawn_requests_go_back,
    deadlines_move_stuck_requests,
);
