//! A flash sale survives the server being killed in the middle of it (SIGKILL, no shutdown):
//! after a restart on the same SQLite file, every order a buyer was told about (201) is still
//! there, the sale never sold more than its stock, no buyer holds two orders, and the buyers who
//! retry with their `Idempotency-Key` get either their order or a clear refusal.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

const PASSWORD: &str = "crash12345";
const BUYERS: usize = 150;
const STOCK: i64 = 40;

fn livecamp(dir: &std::path::Path, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_livecamp"));
    for (key, _) in std::env::vars() {
        if key.starts_with("LIVECAMP_") {
            command.env_remove(key);
        }
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

// The child is handed to the caller, which kills and waits for it.
#[allow(clippy::zombie_processes)]
async fn start(dir: &std::path::Path, port: u16) -> Child {
    let mut child = livecamp(dir, port)
        .arg("serve")
        .spawn()
        .expect("start livecamp");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && r.status().is_success()
        {
            return child;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
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
    let response = http
        .post(url)
        .bearer_auth(token)
        .header("Idempotency-Key", format!("crash-{i}"))
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
    let status = livecamp(dir.path(), port)
        .arg("demo-data")
        .status()
        .expect("demo data");
    assert!(status.success());
    let status = livecamp(dir.path(), port)
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
    let mut server = start(dir.path(), port).await;
    let http = reqwest::Client::new();

    let host = login(&http, &base, "trainee01").await;
    let (_, classes) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/api/v1/classes"),
        &host,
        Value::Null,
    )
    .await;
    let (s, room) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/v1/rooms"),
        &host,
        json!({"class_id": classes[0]["id"], "kind": "live_commerce", "title": "断电演练"}),
    )
    .await;
    assert_eq!(s, 201, "{room}");
    let (s, shop) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/v1/shops"),
        &host,
        json!({"name": "演练小店", "category": "食品"}),
    )
    .await;
    assert_eq!(s, 201, "{shop}");
    let (s, product) = call(&http, reqwest::Method::POST, format!("{base}/api/v1/shops/{}/products", shop["id"]), &host,
        json!({"title": "演练商品", "listed": true, "skus": [{"spec": "默认", "price_cents": 5000, "stock": 100}]})).await;
    assert_eq!(s, 201, "{product}");
    let (s, sale) = call(&http, reqwest::Method::POST, format!("{base}/api/v1/rooms/{}/flash-sales", room["id"]), &host,
        json!({"sku_id": product["skus"][0]["id"], "price_cents": 990, "stock": STOCK, "per_user_limit": 1,
               "starts_in_seconds": 0, "duration_seconds": 600})).await;
    assert_eq!(s, 201, "{sale}");
    let sale_id = sale["id"].as_i64().unwrap();
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
            server.kill().expect("SIGKILL");
        };
        let run = futures::stream::iter(attempts)
            .buffer_unordered(64)
            .collect::<Vec<()>>();
        futures::join!(run, killer);
    }
    let _ = server.wait();
    let before_crash = acknowledged.lock().unwrap().clone();
    assert!(
        !before_crash.is_empty(),
        "some orders were acknowledged before the kill"
    );

    // Restart on the same file; every buyer tries again with the same key.
    let mut server = start(dir.path(), port).await;
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
    let _ = server.kill();
    let _ = server.wait();
}
