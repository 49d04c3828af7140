//! Simulated buyer traffic (模拟买家) over HTTP and a real WebSocket viewer, on both storage
//! backends: bots raise the viewer count and chat in the room, buy the pinned product and pay
//! from their own wallets with exact stock, grab red packets, show in the dashboard, leave when
//! removed and stop when the live ends; only the host (or an instructor) may add them, bad
//! settings are refused, and bot accounts never log in nor appear in rosters or admin lists. With
//! two nodes, a change made on one reaches the bots run by the other, and when their node stops
//! the other node resumes them.

mod common;

use std::time::Duration;

use common::{Backend, TestApp, WsSocket, assert_error, spawn_app, spawn_cluster};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;
use tokio_tungstenite::tungstenite::Message;

/// trainee01's shop with one listed product of two SKUs of `stock` each, on the shelf of a new
/// live room and pinned; the host's socket has started the live. Returns (host token, host
/// socket, room, product, skus).
async fn live_room_with_pinned_product(
    app: &TestApp,
    stock: i64,
) -> (String, WsSocket, i64, i64, Vec<i64>) {
    let common::shop::Shop {
        host,
        product_id,
        skus,
        ..
    } = common::shop::open_shop(app, stock).await;
    let room = app.create_room(&host, "模拟买家练习").await;
    let mut host_ws = app.go_live(&host, room).await;
    wait_for(&mut host_ws, |f| {
        f["type"] == "event" && f["event"]["kind"] == "live_started"
    })
    .await;
    common::shop::shelve_and_pin(app, &host, room, product_id).await;
    (host, host_ws, room, product_id, skus)
}

/// Reads frames until one matches (panics after `secs` seconds).
async fn wait_for_within(socket: &mut WsSocket, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let message = socket.next().await.expect("socket open").expect("frame");
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if pred(&frame) {
                    return frame;
                }
            }
        }
    })
    .await
    .expect("the awaited frame arrives in time")
}

async fn wait_for(socket: &mut WsSocket, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for_within(socket, 10, pred).await
}

/// Polls `f` every 200 ms until it returns `Some` (panics after `secs` seconds).
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scalar(app: &TestApp, sql: &'static str, room: i64) -> i64 {
    sqlx::query(sql)
        .bind(room)
        .fetch_one(app.state.db.pool())
        .await
        .expect("query")
        .try_get::<Option<i64>, _>(0)
        .expect("value")
        .unwrap_or_default()
}

async fn bots_act_like_viewers(backend: Backend) {
    let app = spawn_app(backend).await;
    let stock = 50;
    let (host, mut host_ws, room, product, skus) = live_room_with_pinned_product(&app, stock).await;
    let viewer = app.token("trainee02").await;
    let mut viewer_ws = app.ws(&viewer).await;
    common::ws_send(
        &mut viewer_ws,
        json!({"v": 1, "type": "join", "room": room}),
    )
    .await;
    wait_for(&mut viewer_ws, |f| f["type"] == "joined").await;

    // A coupon in the room before the bots come: those who claim it use it at checkout.
    let (status, coupon) = app
        .send(
            Method::POST,
            &host,
            &format!("/api/v1/rooms/{room}/coupons"),
            json!({"title": "满 30 减 5", "threshold_cents": 3000, "discount_cents": 500, "valid_minutes": 30,
                   "total_quota": 100, "per_user_limit": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{coupon}");
    let coupon_id = coupon["id"].as_i64().unwrap();

    let bots = 8;
    let (status, started) = app
        .send(
            Method::PUT,
            &host,
            &format!("/api/v1/rooms/{room}/bots"),
            json!({"count": bots, "arrivals_per_minute": 600, "like_rate": 1,
                   "comment_rate": 1, "buy_rate": 1, "stay_minutes": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["running"], true);
    assert_eq!(started["settings"]["count"], bots);
    assert_eq!(started["settings"]["buy_rate"], 1.0);

    // They arrive one by one (10 a second) and count as viewers, beside the real one.
    let stats = wait_for(&mut viewer_ws, |f| {
        f["type"] == "stats" && f["viewers"].as_i64() == Some(bots + 1)
    })
    .await;
    assert!(stats["peak"].as_i64().unwrap() > bots, "{stats}");
    // Their comments reach the real viewer's socket, under their buyer names; their likes
    // raise the total.
    let chat = wait_for_within(&mut viewer_ws, 45, |f| {
        f["type"] == "event" && f["event"]["kind"] == "chat"
    })
    .await;
    let name = chat["event"]["message"]["user"]["name"].as_str().unwrap();
    assert!(name.starts_with("买家·"), "{chat}");
    wait_for(&mut viewer_ws, |f| {
        f["type"] == "stats" && f["likes"].as_i64().unwrap_or(0) > 0
    })
    .await;

    // A red packet: most bots in the room grab a share, paid into their wallets.
    let (status, packet) = app
        .send(
            Method::POST,
            &host,
            &format!("/api/v1/rooms/{room}/red-packets"),
            json!({"total_cents": 800, "count": 20}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{packet}");
    let packet_id = packet["id"].as_i64().unwrap();
    eventually(20, "bots grab the red packet", || async {
        let (_, p) = app
            .get(&viewer, &format!("/api/v1/red-packets/{packet_id}"))
            .await;
        (p["grabbed_count"].as_i64().unwrap_or(0) > 0).then_some(())
    })
    .await;

    // Every bot means to buy: each places one order of the pinned product and pays it from its
    // own wallet; the stock goes down by exactly what was ordered.
    eventually(75, "every bot's order is paid", || async {
        let paid = scalar(
            &app,
            "SELECT COUNT(*) FROM orders WHERE room_id = $1 AND status = 'paid'",
            room,
        )
        .await;
        (paid == bots).then_some(())
    })
    .await;
    let rows = sqlx::query(
        "SELECT o.buyer_id, o.quantity, o.total_cents, o.sku_id, w.balance_cents, a.is_bot FROM orders o \
         JOIN accounts a ON a.id = o.buyer_id JOIN wallets w ON w.account_id = o.buyer_id WHERE o.room_id = $1",
    )
    .bind(room)
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(rows.len() as i64, bots, "one order per bot");
    let mut ordered = 0;
    let mut buyers = std::collections::HashSet::new();
    for row in &rows {
        assert_eq!(row.try_get::<i64, _>(5).unwrap(), 1, "bought by a bot");
        assert!(buyers.insert(row.try_get::<i64, _>(0).unwrap()));
        let quantity: i64 = row.try_get(1).unwrap();
        let total: i64 = row.try_get(2).unwrap();
        assert!(skus.contains(&row.try_get::<i64, _>(3).unwrap()));
        // Opened with the usual ¥10,000, plus at most one red-packet share, minus the order.
        let balance: i64 = row.try_get(4).unwrap();
        assert!(
            (1_000_000 - total..=1_000_000 - total + 800).contains(&balance),
            "{balance} after paying {total}"
        );
        ordered += quantity;
    }
    // Claims come 1–15 s after a bot arrives and its buy 5–40 s: the claimants who bought after
    // claiming used the coupon.
    let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM coupon_claims WHERE coupon_id = $1")
        .bind(coupon_id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let discounted: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders o JOIN coupon_claims cc ON cc.id = o.coupon_claim_id \
         WHERE o.room_id = $1 AND cc.coupon_id = $2 AND o.discount_cents = 500",
    )
    .bind(room)
    .bind(coupon_id)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert!(claims > 0, "some bots claim the coupon");
    assert!(
        (1..=claims).contains(&discounted),
        "claimed coupons are used at checkout: {discounted} of {claims}"
    );
    let (_, p) = app.get(&host, &format!("/api/v1/products/{product}")).await;
    let left: i64 = p["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stock"].as_i64().unwrap())
        .sum();
    assert_eq!(left, 2 * stock - ordered, "stock went down exactly: {p}");

    // What the host sees: the bots' own numbers, and the dashboard telling bots apart.
    let (status, view) = app.get(&host, &format!("/api/v1/rooms/{room}/bots")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["present"], bots, "{view}");
    assert_eq!(view["orders"], bots, "{view}");
    assert_eq!(view["paid_orders"], bots, "{view}");
    assert!(view["likes"].as_i64().unwrap() > 0, "{view}");
    eventually(10, "the bots' comments are stored", || async {
        let (_, view) = app.get(&host, &format!("/api/v1/rooms/{room}/bots")).await;
        (view["comments"].as_i64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    let (_, dash) = app
        .get(&host, &format!("/api/v1/rooms/{room}/dashboard"))
        .await;
    assert_eq!(dash["viewers_now"], bots + 1, "{dash}");
    assert_eq!(dash["bot_orders"], bots, "{dash}");
    assert_eq!(dash["paid_orders"], bots, "{dash}");
    assert!(dash["bot_gmv_cents"].as_i64().unwrap() > 0, "{dash}");
    assert!(dash["bot_comments"].as_i64().unwrap() > 0, "{dash}");
    // Watch time is handed to storage every 5 s: the bots show among the unique viewers.
    eventually(15, "the bots are among the unique viewers", || async {
        let (_, dash) = app
            .get(&host, &format!("/api/v1/rooms/{room}/dashboard"))
            .await;
        (dash["bot_viewers"] == bots).then_some(())
    })
    .await;

    // Removed: they leave at once, the real viewer stays.
    let (status, _) = app
        .send(
            Method::DELETE,
            &host,
            &format!("/api/v1/rooms/{room}/bots"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_for(&mut viewer_ws, |f| {
        f["type"] == "stats" && f["viewers"] == 1
    })
    .await;
    let (_, view) = app.get(&host, &format!("/api/v1/rooms/{room}/bots")).await;
    assert_eq!(view["running"], false, "{view}");
    assert_eq!(view["stop_reason"], "removed", "{view}");
    assert_eq!(view["present"], 0, "{view}");
    assert_eq!(view["orders"], bots, "what they did stays: {view}");

    // Started again, the same accounts come back (one pool per class); ending the live stops
    // them.
    let (status, again) = app
        .send(
            Method::PUT,
            &host,
            &format!("/api/v1/rooms/{room}/bots"),
            json!({"count": 3, "arrivals_per_minute": 600, "like_rate": 0,
                   "comment_rate": 0, "buy_rate": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["orders"], 0, "counted from the new start: {again}");
    assert_eq!(again["settings"]["stay_minutes"], 10, "the default stay");
    wait_for(&mut viewer_ws, |f| {
        f["type"] == "stats" && f["viewers"] == 4
    })
    .await;
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM accounts WHERE is_bot = $1", 1).await,
        bots,
        "no new accounts for a smaller crowd"
    );
    common::ws_send(
        &mut host_ws,
        json!({"v": 1, "type": "end_live", "room": room}),
    )
    .await;
    wait_for(&mut viewer_ws, |f| {
        f["type"] == "stats" && f["viewers"] == 1
    })
    .await;
    let view = eventually(5, "the crowd records why it stopped", || async {
        let (_, view) = app.get(&host, &format!("/api/v1/rooms/{room}/bots")).await;
        (view["running"] == false).then_some(view)
    })
    .await;
    assert_eq!(view["stop_reason"], "live_ended", "{view}");
    // A report written after the live says how much of it was simulated.
    let reports = eventually(15, "the live's report", || async {
        let (_, reports) = app
            .get(&host, &format!("/api/v1/rooms/{room}/reports"))
            .await;
        reports
            .as_array()
            .is_some_and(|r| !r.is_empty())
            .then_some(reports)
    })
    .await;
    let report = &reports[0];
    assert_eq!(report["dashboard"]["bot_viewers"], bots, "{report}");
    assert!(
        report["diagnosis"]["improve"][0]
            .as_str()
            .unwrap()
            .contains("模拟买家"),
        "{report}"
    );
}

async fn only_hosts_add_bots_and_bots_are_no_people(backend: Backend) {
    let app = spawn_app(backend).await;
    let host = app.token("trainee01").await;
    let room = app.create_room(&host, "规则").await;
    let path = format!("/api/v1/rooms/{room}/bots");
    let good = json!({"count": 3, "arrivals_per_minute": 600, "like_rate": 0.5,
                      "comment_rate": 0.5, "buy_rate": 0});

    // Not live yet.
    let (status, body) = app.send(Method::PUT, &host, &path, good.clone()).await;
    assert_error(status, &body, 409, "bots_not_live");
    let mut host_ws = app.go_live(&host, room).await;
    wait_for(&mut host_ws, |f| {
        f["type"] == "event" && f["event"]["kind"] == "live_started"
    })
    .await;

    // A classmate may watch but not add bots; someone outside the class does not see the room.
    let classmate = app.token("trainee02").await;
    let (status, body) = app.send(Method::PUT, &classmate, &path, good.clone()).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = app.get(&classmate, &path).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = app.send(Method::DELETE, &classmate, &path, json!({})).await;
    assert_error(status, &body, 403, "forbidden");

    // Bad settings: a clear 4xx, nothing started.
    for (body, status, code) in [
        (
            json!({"count": 0, "arrivals_per_minute": 10, "like_rate": 0.5, "comment_rate": 0.5, "buy_rate": 0.1}),
            400,
            "validation_failed",
        ),
        (
            json!({"count": 501, "arrivals_per_minute": 10, "like_rate": 0.5, "comment_rate": 0.5, "buy_rate": 0.1}),
            400,
            "validation_failed",
        ),
        (
            json!({"count": 5, "arrivals_per_minute": 0, "like_rate": 0.5, "comment_rate": 0.5, "buy_rate": 0.1}),
            400,
            "validation_failed",
        ),
        (
            json!({"count": 5, "arrivals_per_minute": 10, "like_rate": 1.5, "comment_rate": 0.5, "buy_rate": 0.1}),
            400,
            "validation_failed",
        ),
        (
            json!({"count": 5, "arrivals_per_minute": 10, "like_rate": 0.5, "comment_rate": 0.5, "buy_rate": -0.1}),
            400,
            "validation_failed",
        ),
        (
            json!({"count": 5, "arrivals_per_minute": 10, "like_rate": 0.5, "comment_rate": 0.5, "buy_rate": 0.1, "stay_minutes": 0}),
            400,
            "validation_failed",
        ),
        (
            json!({"count": "many", "arrivals_per_minute": 10, "like_rate": 0.5, "comment_rate": 0.5, "buy_rate": 0.1}),
            422,
            "unprocessable_entity",
        ),
        (
            json!({"count": 5, "like_rate": 0.5, "comment_rate": 0.5, "buy_rate": 0.1}),
            422,
            "unprocessable_entity",
        ),
        (
            json!({"count": 5, "arrivals_per_minute": 10, "like_rate": 0.5, "comment_rate": 0.5, "buy_rate": 0.1, "speed": 2}),
            422,
            "unprocessable_entity",
        ),
    ] {
        let (got, answer) = app.send(Method::PUT, &host, &path, body.clone()).await;
        assert_error(got, &answer, status, code);
    }
    let (status, view) = app.get(&host, &path).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["running"], false);
    assert_eq!(view["settings"], Value::Null);

    // The class's instructor may add them.
    let instructor = app.token("instructor01").await;
    let (status, view) = app
        .send(Method::PUT, &instructor, &path, good.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["settings"]["like_rate"], 0.5);
    let bots: Vec<(i64, String)> =
        sqlx::query("SELECT id, username FROM accounts WHERE is_bot = 1")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
            .collect();
    assert_eq!(bots.len(), 3);

    // Bot accounts never log in: not with their own names, and not even with a usable name
    // and a real password hash (the login path refuses bots).
    for (_, username) in &bots {
        let (status, body) = app
            .login(&common::api(), username, common::DEMO_PASSWORD)
            .await;
        assert_error(status, &body, 401, "invalid_credentials");
    }
    sqlx::query(
        "UPDATE accounts SET username = 'robot01', password_hash = \
         (SELECT password_hash FROM accounts WHERE username = 'trainee03') WHERE id = $1",
    )
    .bind(bots[0].0)
    .execute(app.state.db.pool())
    .await
    .unwrap();
    let (status, body) = app
        .login(&common::api(), "robot01", common::DEMO_PASSWORD)
        .await;
    assert_error(status, &body, 401, "invalid_credentials");

    // Not in the class roster, not in its count, not in the administrators' lists.
    let class = app.get(&instructor, "/api/v1/classes").await.1[0]["id"]
        .as_i64()
        .unwrap();
    let (status, detail) = app
        .get(&instructor, &format!("/api/v1/classes/{class}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let trainees = detail["trainees"].as_array().unwrap();
    assert_eq!(
        detail["trainee_count"].as_i64(),
        Some(trainees.len() as i64)
    );
    assert!(
        trainees
            .iter()
            .all(|t| !t["name"].as_str().unwrap().starts_with("买家·")),
        "{detail}"
    );
    let ids: Vec<i64> = trainees.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert!(bots.iter().all(|(id, _)| !ids.contains(id)));
    let admin = app.token("admin").await;
    let (status, page) = app.get(&admin, "/api/v1/admin/accounts?q=买家").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 0, "{page}");
    let (_, page) = app.get(&admin, "/api/v1/admin/accounts?q=robot").await;
    assert_eq!(page["total"], 0, "{page}");
    let (_, all) = app.get(&admin, "/api/v1/admin/accounts?per_page=100").await;
    let people = all["total"].as_i64().unwrap();
    assert_eq!(
        people,
        scalar(&app, "SELECT COUNT(*) FROM accounts WHERE is_bot = $1", 0).await
    );
    let (status, body) = app
        .send(
            Method::PUT,
            &admin,
            &format!("/api/v1/admin/accounts/{}/roles", bots[1].0),
            json!({"roles": ["trainee"]}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");

    // Ending the live stops them.
    eventually(10, "the bots are in", || async {
        let (_, view) = app.get(&host, &path).await;
        (view["present"] == 3).then_some(())
    })
    .await;
    common::ws_send(
        &mut host_ws,
        json!({"v": 1, "type": "end_live", "room": room}),
    )
    .await;
    let view = eventually(5, "the crowd stops with the live", || async {
        let (_, view) = app.get(&host, &path).await;
        (view["running"] == false).then_some(view)
    })
    .await;
    assert_eq!(view["stop_reason"], "live_ended", "{view}");
    assert_eq!(view["present"], 0, "{view}");
    let (status, body) = app.send(Method::PUT, &host, &path, good).await;
    assert_error(status, &body, 409, "bots_not_live");
}

async fn bots_move_to_another_node_when_theirs_stops(backend: Backend) {
    let mut nodes = spawn_cluster(backend, 2, &common::redis_url()).await;
    let host = nodes[0].token("trainee01").await;
    let room = nodes[0].create_room(&host, "跨节点模拟买家").await;
    let mut host_ws = nodes[0].ws(&host).await;
    common::ws_send(&mut host_ws, json!({"v": 1, "type": "join", "room": room})).await;
    wait_for(&mut host_ws, |f| f["type"] == "joined").await;
    common::ws_send(
        &mut host_ws,
        json!({"v": 1, "type": "start_live", "room": room}),
    )
    .await;
    wait_for(&mut host_ws, |f| {
        f["type"] == "event" && f["event"]["kind"] == "live_started"
    })
    .await;
    let viewer = nodes[1].token("trainee02").await;
    let mut viewer_ws = nodes[1].ws(&viewer).await;
    common::ws_send(
        &mut viewer_ws,
        json!({"v": 1, "type": "join", "room": room}),
    )
    .await;
    wait_for(&mut viewer_ws, |f| f["type"] == "joined").await;
    let path = format!("/api/v1/rooms/{room}/bots");

    // Started on node A, the bots run there; the viewer on node B counts them.
    let (status, body) = nodes[0]
        .send(
            Method::PUT,
            &host,
            &path,
            json!({"count": 4, "arrivals_per_minute": 600, "like_rate": 0,
                   "comment_rate": 0, "buy_rate": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_within(&mut viewer_ws, 20, |f| {
        f["type"] == "stats" && f["viewers"] == 5
    })
    .await;
    eventually(10, "node B reports the bots of node A", || async {
        let (_, view) = nodes[1].get(&host, &path).await;
        (view["present"] == 4).then_some(())
    })
    .await;
    // A change made on node B reaches the runner on node A.
    let (status, body) = nodes[1]
        .send(
            Method::PUT,
            &host,
            &path,
            json!({"count": 2, "arrivals_per_minute": 600, "like_rate": 0,
                   "comment_rate": 0, "buy_rate": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_within(&mut viewer_ws, 20, |f| {
        f["type"] == "stats" && f["viewers"] == 3
    })
    .await;

    // Node A stops: its bots leave, and node B resumes them from the stored settings.
    nodes[0].stop().await;
    let view = eventually(20, "node B runs the bots", || async {
        let (_, view) = nodes[1].get(&host, &path).await;
        (view["running"] == true && view["present"] == 2).then_some(view)
    })
    .await;
    assert_eq!(view["settings"]["count"], 2, "{view}");
    let runner: Option<String> =
        sqlx::query_scalar("SELECT runner FROM room_bots WHERE room_id = $1")
            .bind(room)
            .fetch_one(nodes[1].state.db.pool())
            .await
            .unwrap();
    assert!(runner.is_some());
    wait_for_within(&mut viewer_ws, 20, |f| {
        f["type"] == "stats" && f["viewers"] == 3
    })
    .await;
}

backend_tests!(
    bots_act_like_viewers,
    only_hosts_add_bots_and_bots_are_no_people,
    bots_move_to_another_node_when_theirs_stops
);
