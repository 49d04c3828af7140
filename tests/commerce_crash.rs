//! A flash sale survives the server being killed in the middle of it (SIGKILL, no shutdown):
//! after a restart on the same SQLite file, every order a buyer was told about (201) is still
//! there, the sale never sold more than its stock, no buyer holds two orders, and the buyers who
//! retry with their `Idempotency-Key` get either their order or a clear refusal.
//!
//! Distributed mode (PostgreSQL and Redis gates, two nodes): a node killed between the Redis
//! reservations and their commits (the test holds the sale's and the packet's rows locked while
//! the node takes them) leaves holds in Redis. The other node keeps selling; the killed node
//! restarts; the buyers who retry with their key get their order through a take-over; the
//! holds nobody retries are given back by the sweeper after `HOLD_RECLAIM_AFTER_MS` (30 s), not
//! before, so the sale sells out exactly its stock and the red packet hands out every share,
//! with every acknowledged order kept, nobody over their limit and nobody refused for an order
//! or a share they do not have.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use commerce::HOLD_RECLAIM_AFTER_MS;
use futures::StreamExt;
use serde_json::{Value, json};

const PASSWORD: &str = "crash12345";
const BUYERS: usize = 150;
const STOCK: i64 = 40;

/// `LIVECAMP_*` settings on top of the test's own (the distributed test's database, Redis and
/// keys).
type Settings = [(&'static str, String)];

fn livecamp(dir: &std::path::Path, port: u16, settings: &Settings) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_livecamp"));
    for (key, _) in std::env::vars() {
        if key.starts_with("LIVECAMP_") {
            command.env_remove(key);
        }
    }
    for (key, value) in settings {
        command.env(key, value);
    }
    command
        .env("LIVECAMP_LOG_LEVEL", "warn")
        .env("LIVECAMP_LISTEN", format!("127.0.0.1:{port}"))
        .env("LIVECAMP_MEDIA_LISTEN", "127.0.0.1:0")
        .env("LIVECAMP_DATA_DIR", dir)
        .env("LIVECAMP_DEMO_PASSWORD", PASSWORD)
        .env("LIVECAMP_ARGON2_MEMORY_KIB", "256")
        .env("LIVECAMP_ARGON2_ITERATIONS", "1")
        .env("LIVECAMP_LOGIN_RATE_PER_MINUTE", "100000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A running `livecamp serve`, killed (SIGKILL) and reaped when dropped, so a failing test
/// leaves no server behind.
struct Server(Child);

impl Server {
    /// SIGKILL, no shutdown; waits until it is gone.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn start(dir: &std::path::Path, port: u16, settings: &Settings) -> Server {
    let child = livecamp(dir, port, settings)
        .arg("serve")
        .spawn()
        .expect("start livecamp");
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && r.status().is_success()
        {
            return server;
        }
        if Instant::now() >= deadline {
            server.kill();
            panic!("livecamp did not come up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let response = http
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn login(http: &reqwest::Client, base: &str, username: &str) -> String {
    let body: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login {username}: {body}"))
        .to_owned()
}

/// One attempt of buyer `i`: `Some((status, body))`, or `None` when the server was not there.
async fn attempt(http: &reqwest::Client, url: &str, token: &str, i: usize) -> Option<(u16, Value)> {
    attempt_keyed(http, url, token, &format!("crash-{i}")).await
}

async fn attempt_keyed(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
) -> Option<(u16, Value)> {
    let response = http
        .post(url)
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.ok()?;
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_sale_loses_no_acknowledged_order_and_never_oversells() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let status = livecamp(dir.path(), port, &[])
        .arg("demo-data")
        .status()
        .expect("demo data");
    assert!(status.success());
    let status = livecamp(dir.path(), port, &[])
        .args([
            "practice-accounts",
            "--count",
            &BUYERS.to_string(),
            "--password",
            PASSWORD,
        ])
        .status()
        .expect("practice accounts");
    assert!(status.success());
    let mut server = start(dir.path(), port, &[]).await;
    let http = reqwest::Client::new();

    let host = login(&http, &base, "trainee01").await;
    let (_, sale_id) = open_sale(&http, &base, &host, "断电演练", STOCK).await;
    let url = format!("{base}/api/v1/flash-sales/{sale_id}/orders");

    let mut tokens = Vec::with_capacity(BUYERS);
    for n in 1..=BUYERS {
        tokens.push(login(&http, &base, &format!("practice{n:05}")).await);
    }

    // Everyone at once; the server is killed while the answers come in.
    let acknowledged: std::sync::Mutex<HashMap<usize, i64>> = std::sync::Mutex::default();
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let kill_after = BUYERS / 3;
    {
        let attempts = tokens.iter().enumerate().map(|(i, token)| {
            let (http, url, acknowledged, answered) = (&http, &url, &acknowledged, &answered);
            async move {
                if let Some((status, body)) = attempt(http, url, token, i).await {
                    if status == 201 {
                        acknowledged
                            .lock()
                            .unwrap()
                            .insert(i, body["id"].as_i64().unwrap());
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let killer = async {
            while answered.load(std::sync::atomic::Ordering::SeqCst) < kill_after {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            server.kill();
        };
        let run = futures::stream::iter(attempts)
            .buffer_unordered(64)
            .collect::<Vec<()>>();
        futures::join!(run, killer);
    }
    let before_crash = acknowledged.lock().unwrap().clone();
    assert!(
        !before_crash.is_empty(),
        "some orders were acknowledged before the kill"
    );

    // Restart on the same file; every buyer tries again with the same key.
    // Killed when the test ends (dropped).
    let _server = start(dir.path(), port, &[]).await;
    let mut orders_of: HashMap<usize, i64> = HashMap::new();
    for (i, token) in tokens.iter().enumerate() {
        let (status, body) = attempt(&http, &url, token, i)
            .await
            .expect("server answers after restart");
        match status {
            201 => {
                orders_of.insert(i, body["id"].as_i64().unwrap());
            }
            409 => assert!(
                body["code"] == "sold_out" || body["code"] == "limit_reached",
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    for (i, id) in &before_crash {
        assert_eq!(
            orders_of.get(i),
            Some(id),
            "acknowledged order {id} of buyer {i} is back under its key"
        );
        let (status, order) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/api/v1/orders/{id}"),
            &tokens[*i],
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{order}");
    }
    let distinct: HashSet<i64> = orders_of.values().copied().collect();
    assert_eq!(distinct.len(), orders_of.len(), "no order is shared");
    assert_eq!(
        orders_of.len() as i64,
        STOCK,
        "the sale sells its whole stock, and no more"
    );
    let (_, view) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/api/v1/flash-sales/{sale_id}"),
        &host,
        Value::Null,
    )
    .await;
    assert_eq!(view["sold"], STOCK);
}

/// As trainee01 (`host`): a live-commerce room titled `title`, a shop with one product of 100
/// units, and a flash sale of `stock` of them, limit one per buyer, open now. Returns (room id,
/// sale id).
async fn open_sale(
    http: &reqwest::Client,
    base: &str,
    host: &str,
    title: &str,
    stock: i64,
) -> (i64, i64) {
    let (_, classes) = call(
        http,
        reqwest::Method::GET,
        format!("{base}/api/v1/classes"),
        host,
        Value::Null,
    )
    .await;
    let (s, room) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/rooms"),
        host,
        json!({"class_id": classes[0]["id"], "kind": "live_commerce", "title": title}),
    )
    .await;
    assert_eq!(s, 201, "{room}");
    let (s, shop) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/shops"),
        host,
        json!({"name": format!("{title}小店"), "category": "食品"}),
    )
    .await;
    assert_eq!(s, 201, "{shop}");
    let (s, product) = call(http, reqwest::Method::POST, format!("{base}/api/v1/shops/{}/products", shop["id"]), host,
        json!({"title": "演练商品", "listed": true, "skus": [{"spec": "默认", "price_cents": 5000, "stock": 100}]})).await;
    assert_eq!(s, 201, "{product}");
    let (s, sale) = call(http, reqwest::Method::POST, format!("{base}/api/v1/rooms/{}/flash-sales", room["id"]), host,
        json!({"sku_id": product["skus"][0]["id"], "price_cents": 990, "stock": stock, "per_user_limit": 1,
               "starts_in_seconds": 0, "duration_seconds": 600})).await;
    assert_eq!(s, 201, "{sale}");
    // The ids are numbers the server just answered with.
    (room["id"].as_i64().unwrap(), sale["id"].as_i64().unwrap())
}

/// A fresh PostgreSQL database, dropped with this value.
struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Self {
        let (url, name) = common::create_pg_database().await;
        Self { name, url }
    }

    async fn connect(&self) -> sqlx::AnyConnection {
        use sqlx::Connection;
        sqlx::AnyConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        common::drop_pg_database(self.name.clone());
    }
}

/// Logs in: (token, account id).
async fn login_user(http: &reqwest::Client, base: &str, username: &str) -> (String, i64) {
    let body: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let token = body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login {username}: {body}"))
        .to_owned();
    (token, body["user"]["id"].as_i64().expect("user id"))
}

/// A grab of buyer `token`: `Some((status, body))`, or `None` when the server was not there.
async fn grab(http: &reqwest::Client, url: &str, token: &str) -> Option<(u16, Value)> {
    let response = http.post(url).bearer_auth(token).send().await.ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.ok()?;
    Some((status, body))
}

async fn scalar(db: &PgDatabase, sql: &'static str, id: i64) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .expect("query")
}

const D_BUYERS: usize = 100;
const D_STOCK: i64 = 40;
const SHARES: i64 = 40;
const PACKET_CENTS: i64 = 4000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_node_killed_between_gate_and_commit_gives_its_holds_back() {
    let db = PgDatabase::create().await;
    let (field_keys, lookup_key) = foundation::crypto::Keys::generate();
    let settings: Vec<(&'static str, String)> = vec![
        ("LIVECAMP_DATABASE_URL", db.url.clone()),
        ("LIVECAMP_REDIS_URL", common::redis_url()),
        (
            "LIVECAMP_REDIS_NAMESPACE",
            format!("crash-{}", uuid::Uuid::new_v4().simple()),
        ),
        ("LIVECAMP_FIELD_KEYS", field_keys),
        ("LIVECAMP_LOOKUP_KEY", lookup_key),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let status = livecamp(dir_a.path(), port_a, &settings)
        .arg("demo-data")
        .status()
        .expect("demo data");
    assert!(status.success());
    let status = livecamp(dir_a.path(), port_a, &settings)
        .args([
            "practice-accounts",
            "--count",
            &D_BUYERS.to_string(),
            "--password",
            PASSWORD,
        ])
        .status()
        .expect("practice accounts");
    assert!(status.success());
    let mut node_a = start(dir_a.path(), port_a, &settings).await;
    let node_b = start(dir_b.path(), port_b, &settings).await;
    let (a, b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let http = reqwest::Client::new();

    let host = login(&http, &a, "trainee01").await;
    let (room, sale_id) = open_sale(&http, &a, &host, "集群断电演练", D_STOCK).await;
    let (s, packet) = call(
        &http,
        reqwest::Method::POST,
        format!("{a}/api/v1/rooms/{room}/red-packets"),
        &host,
        json!({"total_cents": PACKET_CENTS, "count": SHARES, "expires_in_seconds": 600}),
    )
    .await;
    assert_eq!(s, 201, "{packet}");
    let packet_id = packet["id"].as_i64().unwrap();
    let order_url = |base: &str| format!("{base}/api/v1/flash-sales/{sale_id}/orders");
    let grab_url = |base: &str| format!("{base}/api/v1/red-packets/{packet_id}/grab");
    // Buyer i uses node A or B by parity once A is back.
    let node = |i: usize| {
        if i.is_multiple_of(2) {
            a.as_str()
        } else {
            b.as_str()
        }
    };

    let mut buyers = Vec::with_capacity(D_BUYERS);
    for n in 1..=D_BUYERS {
        buyers.push(login_user(&http, &b, &format!("practice{n:05}")).await);
    }
    let key = |i: usize| format!("buy-{i}");
    // Buyer → the order they were told about (201), and the share they were paid (200).
    let mut acknowledged: HashMap<usize, i64> = HashMap::new();
    let mut shares: HashMap<usize, i64> = HashMap::new();

    // Ten buyers buy and grab on A, normally.
    for (i, (token, _)) in buyers.iter().enumerate().take(10) {
        let (status, order) = attempt_keyed(&http, &order_url(&a), token, &key(i))
            .await
            .expect("A answers");
        assert_eq!(status, 201, "{order}");
        acknowledged.insert(i, order["id"].as_i64().unwrap());
        let (status, got) = grab(&http, &grab_url(&a), token).await.expect("A answers");
        assert_eq!(status, 200, "{got}");
        shares.insert(i, got["amount_cents"].as_i64().unwrap());
    }

    // Twenty more buy and grab on A while the test holds the sale's and the packet's rows: A
    // takes their units and shares in Redis, and its writers wait on the rows. Then A dies.
    let mut lock = db.connect().await;
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("SELECT id FROM flash_sales WHERE id = $1 FOR UPDATE")
        .bind(sale_id)
        .fetch_one(&mut lock)
        .await
        .unwrap();
    sqlx::query("SELECT id FROM red_packets WHERE id = $1 FOR UPDATE")
        .bind(packet_id)
        .fetch_one(&mut lock)
        .await
        .unwrap();
    let held_from = Instant::now();
    let mut hung = Vec::new();
    for (i, (token, _)) in buyers.iter().enumerate().take(30).skip(10) {
        let (client, url, token, key) = (http.clone(), order_url(&a), token.clone(), key(i));
        hung.push(tokio::spawn(async move {
            attempt_keyed(&client, &url, &token, &key).await
        }));
        let (client, url, token) = (http.clone(), grab_url(&a), buyers[i].0.clone());
        hung.push(tokio::spawn(
            async move { grab(&client, &url, &token).await },
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    node_a.kill();
    for request in hung {
        let answer = request.await.expect("request task");
        assert!(
            answer.is_none(),
            "nothing was answered under the lock: {answer:?}"
        );
    }
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);

    // A comes back. Buyers 10..20 retry with their key (and grab again): their holds are
    // taken over at once, on either node. Buyers 20..30 do not come back for now.
    let node_a = start(dir_a.path(), port_a, &settings).await;
    for (i, (token, _)) in buyers.iter().enumerate().take(20).skip(10) {
        let (status, order) = attempt_keyed(&http, &order_url(node(i)), token, &key(i))
            .await
            .expect("the node answers");
        assert_eq!(status, 201, "buyer {i}'s held unit is theirs: {order}");
        acknowledged.insert(i, order["id"].as_i64().unwrap());
        let (status, got) = grab(&http, &grab_url(node(i)), token)
            .await
            .expect("the node answers");
        assert_eq!(status, 200, "buyer {i}'s held share is theirs: {got}");
        shares.insert(i, got["amount_cents"].as_i64().unwrap());
    }

    // A crowd buys and grabs on both nodes until the sale is sold out and the packet empty:
    // that needs the holds of buyers 20..30 back, which the sweeper gives only after the bound.
    let deadline = held_from
        + Duration::from_millis(HOLD_RECLAIM_AFTER_MS.unsigned_abs())
        + Duration::from_secs(20);
    let (sold, finished) = loop {
        let crowd: Vec<usize> = (30..D_BUYERS)
            .filter(|i| !acknowledged.contains_key(i) || !shares.contains_key(i))
            .collect();
        let answers = futures::stream::iter(crowd)
            .map(|i| {
                let (http, token) = (&http, &buyers[i].0);
                let (buy, take) = (!acknowledged.contains_key(&i), !shares.contains_key(&i));
                let (order_url, grab_url) = (order_url(node(i)), grab_url(node(i)));
                let key = key(i);
                async move {
                    let order = match buy {
                        true => attempt_keyed(http, &order_url, token, &key).await,
                        false => None,
                    };
                    let share = match take {
                        true => grab(http, &grab_url, token).await,
                        false => None,
                    };
                    (i, order, share)
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        for (i, order, share) in answers {
            match order {
                Some((201, order)) => {
                    acknowledged.insert(i, order["id"].as_i64().unwrap());
                }
                Some((409, body)) => assert_eq!(body["code"], "sold_out", "{body}"),
                Some(other) => panic!("buyer {i}: {other:?}"),
                None => {}
            }
            match share {
                Some((200, got)) => {
                    shares.insert(i, got["amount_cents"].as_i64().unwrap());
                }
                Some((410, body)) => assert_eq!(body["code"], "red_packet_empty", "{body}"),
                Some(other) => panic!("buyer {i}: {other:?}"),
                None => {}
            }
        }
        let sold = scalar(&db, "SELECT sold FROM flash_sales WHERE id = $1", sale_id).await;
        let finished = scalar(
            &db,
            "SELECT CASE WHEN status = 'finished' THEN 1 ELSE 0 END FROM red_packets WHERE id = $1",
            packet_id,
        )
        .await;
        if (sold, finished) == (D_STOCK, 1) || Instant::now() >= deadline {
            break (sold, finished);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let recovered = held_from.elapsed();
    assert_eq!(
        (sold, finished),
        (D_STOCK, 1),
        "within the bound the sale sells its whole stock and the packet every share"
    );
    assert!(
        recovered >= Duration::from_millis(HOLD_RECLAIM_AFTER_MS.unsigned_abs()),
        "holds younger than the bound were given back after {recovered:?}"
    );

    // Every order a buyer was told about is there, under its key; nothing else was sold.
    assert_eq!(acknowledged.len() as i64, D_STOCK);
    let mut conn = db.connect().await;
    let mut in_db: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM orders WHERE flash_sale_id = $1 AND status <> 'cancelled' ORDER BY id",
    )
    .bind(sale_id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut told: Vec<i64> = acknowledged.values().copied().collect();
    told.sort_unstable();
    in_db.sort_unstable();
    assert_eq!(told, in_db, "the orders are exactly the acknowledged ones");
    for (&i, &id) in &acknowledged {
        let (status, order) = attempt_keyed(&http, &order_url(node(i)), &buyers[i].0, &key(i))
            .await
            .expect("answer");
        assert_eq!((status, order["id"].as_i64()), (201, Some(id)), "{order}");
    }
    // Limits: buyers with an order are at their limit, the others — buyers 20..30 whose units
    // A held included — are refused for want of stock only, with a new key or their old one.
    for (i, (token, _)) in buyers.iter().enumerate() {
        let (status, body) =
            attempt_keyed(&http, &order_url(node(i)), token, &format!("probe-{i}"))
                .await
                .expect("answer");
        let expected = match acknowledged.contains_key(&i) {
            true => "limit_reached",
            false => "sold_out",
        };
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some(expected)),
            "buyer {i}: {body}"
        );
        if (20..30).contains(&i) {
            let (status, body) = attempt_keyed(&http, &order_url(node(i)), token, &key(i))
                .await
                .expect("answer");
            assert_eq!(
                (status, body["code"].as_str()),
                (409, Some("sold_out")),
                "{body}"
            );
        }
    }

    // The packet: exact to the cent, one share each, each paid into its grabber's wallet; the
    // buyers whose grab died with A are not told they have grabbed.
    assert_eq!(shares.len() as i64, SHARES);
    assert_eq!(shares.values().sum::<i64>(), PACKET_CENTS);
    let paid: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT account_id, delta_cents FROM wallet_entries WHERE reason = 'red_packet_grab' AND ref_id = $1",
    )
    .bind(packet_id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let paid: HashMap<i64, i64> = paid.into_iter().collect();
    let expected: HashMap<i64, i64> = shares.iter().map(|(&i, &c)| (buyers[i].1, c)).collect();
    assert_eq!(paid, expected, "each grabber paid their share, once");
    let grabbed = scalar(
        &db,
        "SELECT CAST(SUM(amount_cents) AS BIGINT) FROM red_packet_shares WHERE red_packet_id = $1 AND grabbed_by IS NOT NULL",
        packet_id,
    )
    .await;
    assert_eq!(grabbed, PACKET_CENTS);
    for (i, (token, _)) in buyers.iter().enumerate().take(30).skip(20) {
        if shares.contains_key(&i) {
            continue;
        }
        let (status, body) = grab(&http, &grab_url(node(i)), token)
            .await
            .expect("answer");
        assert_eq!(
            (status, body["code"].as_str()),
            (410, Some("red_packet_empty")),
            "{body}"
        );
    }
    drop((node_a, node_b));
}
