//! Commerce benchmarks: a flash sale (many buyers at once on a small stock) and a red packet
//! (many grabbers on a packet of fewer shares), driven over HTTP like real clients — each buyer
//! logged in with its own account (`livecamp practice-accounts` makes them), every attempt with
//! its own `Idempotency-Key`. Prints one JSON line: attempts per wall second and per server
//! CPU-second, latency quantiles, and the exactness checks, from the answers (orders == stock,
//! shares sum to the packet) and, with `--database-url`, from the server's database after the
//! burst (every acknowledged order or grab is stored, nothing else is, one per buyer).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::hub::Latencies;
use crate::proc_stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tool {
    FlashSale,
    RedPacket,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CommerceArgs {
    /// Server base URL, e.g. http://127.0.0.1:18080.
    #[arg(long)]
    base: String,
    /// Server process id, for its CPU time.
    #[arg(long)]
    server_pid: u32,
    /// Password of trainee01 (the host) and of the practice accounts.
    #[arg(long)]
    password: String,
    #[arg(long, value_enum, default_value = "flash-sale")]
    tool: Tool,
    /// Buyers (practice accounts {prefix}00001 …).
    #[arg(long, default_value_t = 10_000)]
    buyers: usize,
    #[arg(long, default_value = "practice")]
    prefix: String,
    /// Flash-sale stock, or red-packet shares.
    #[arg(long, default_value_t = 1000)]
    stock: u32,
    /// Requests in flight at once (one connection each): by default every buyer at once.
    #[arg(long, default_value_t = 10_000)]
    concurrency: usize,
    /// The server's database (sqlite://… or postgres://…), read after the burst to check that
    /// what was acknowledged is what was stored.
    #[arg(long)]
    database_url: Option<String>,
    /// Logins in flight at once (before the measured part).
    #[arg(long, default_value_t = 32)]
    login_concurrency: usize,
    /// A shell command run (and awaited) just before the measured burst, e.g. to attach
    /// `perf record -p <server pid> … &` to the burst alone.
    #[arg(long)]
    before_burst: Option<String>,
}

type Res<T> = anyhow::Result<T>;

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Value,
) -> Res<(u16, Value)> {
    let response = http
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

async fn login(http: &reqwest::Client, base: &str, username: &str, password: &str) -> Res<String> {
    let response = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await?;
    let body: Value = response.json().await?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("login {username} failed: {body}"))
}

fn expect(status: u16, body: &Value, what: &str) -> Res<()> {
    anyhow::ensure!((200..300).contains(&status), "{what}: {status} {body}");
    Ok(())
}

/// The host's room and, for a flash sale, a SKU with enough stock.
async fn set_up(
    http: &reqwest::Client,
    args: &CommerceArgs,
    host: &str,
) -> Res<(i64, Option<i64>)> {
    let base = &args.base;
    let (status, classes) = call(
        http,
        reqwest::Method::GET,
        format!("{base}/api/v1/classes"),
        host,
        Value::Null,
    )
    .await?;
    expect(status, &classes, "classes")?;
    let class = classes[0]["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no class"))?;
    let (status, room) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/rooms"),
        host,
        json!({"class_id": class, "kind": "live_commerce", "title": "压测直播间"}),
    )
    .await?;
    expect(status, &room, "room")?;
    let room = room["id"].as_i64().unwrap_or_default();
    if args.tool == Tool::RedPacket {
        return Ok((room, None));
    }
    let (status, mut shop) = call(
        http,
        reqwest::Method::GET,
        format!("{base}/api/v1/shops/mine"),
        host,
        Value::Null,
    )
    .await?;
    if status == 404 {
        let (status, created) = call(
            http,
            reqwest::Method::POST,
            format!("{base}/api/v1/shops"),
            host,
            json!({"name": "压测店铺", "category": "食品"}),
        )
        .await?;
        expect(status, &created, "shop")?;
        shop = created;
    }
    let shop = shop["id"].as_i64().unwrap_or_default();
    let (status, product) = call(http, reqwest::Method::POST, format!("{base}/api/v1/shops/{shop}/products"), host,
        json!({"title": "压测商品", "listed": true, "skus": [{"spec": format!("规格{}", crate::hub::now_micros()), "price_cents": 9900, "stock": args.stock}]})).await?;
    expect(status, &product, "product")?;
    Ok((room, product["skus"][0]["id"].as_i64()))
}

pub async fn run(args: CommerceArgs) -> Res<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = args.base.clone();
    let host = login(&http, &base, "trainee01", &args.password).await?;
    let (room, sku) = set_up(&http, &args, &host).await?;

    let started = Instant::now();
    let usernames: Vec<String> = (1..=args.buyers)
        .map(|n| format!("{}{n:05}", args.prefix))
        .collect();
    let tokens: Vec<String> = futures::stream::iter(
        usernames
            .iter()
            .map(|u| login(&http, &base, u, &args.password)),
    )
    .buffer_unordered(args.login_concurrency)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Res<_>>()?;
    let login_seconds = started.elapsed().as_secs_f64();

    let (path, tool_id) = match args.tool {
        Tool::FlashSale => {
            let (status, sale) = call(
                &http,
                reqwest::Method::POST,
                format!("{base}/api/v1/rooms/{room}/flash-sales"),
                &host,
                json!({"sku_id": sku, "price_cents": 990, "stock": args.stock, "per_user_limit": 1,
                       "starts_in_seconds": 0, "duration_seconds": 3600}),
            )
            .await?;
            expect(status, &sale, "flash sale")?;
            let id = sale["id"].as_i64().unwrap_or_default();
            (format!("{base}/api/v1/flash-sales/{id}/orders"), id)
        }
        Tool::RedPacket => {
            // One cent and up per share: ¥100 per 1,000 shares.
            let total = i64::from(args.stock) * 10;
            let (status, packet) = call(
                &http,
                reqwest::Method::POST,
                format!("{base}/api/v1/rooms/{room}/red-packets"),
                &host,
                json!({"total_cents": total, "count": args.stock, "expires_in_seconds": 3600}),
            )
            .await?;
            expect(status, &packet, "red packet")?;
            let id = packet["id"].as_i64().unwrap_or_default();
            (format!("{base}/api/v1/red-packets/{id}/grab"), id)
        }
    };

    // Buyers wait in the room for the countdown, as in a real sale: each has its page open on
    // a kept-alive connection and has loaded what the room sells (which also warms the
    // server's session and room-access caches). One connection per request in flight, opened
    // now, so the burst measures requests, not TCP handshakes.
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut conns = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency.min(args.buyers) {
        conns.push(Conn::open(&authority).await?);
    }
    let room_path = format!("/api/v1/rooms/{room}/commerce");
    let next = AtomicUsize::new(0);
    let warmed: Vec<Res<()>> = futures::future::join_all(conns.iter_mut().map(|conn| {
        let (next, tokens, room_path) = (&next, &tokens, &room_path);
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else {
                    return Ok(());
                };
                let (status, body) = conn.send("GET", room_path, token, None).await?;
                anyhow::ensure!(
                    status == 200,
                    "a buyer could not load the room: {status} {body:?}"
                );
            }
        }
    }))
    .await;
    warmed.into_iter().collect::<Res<Vec<()>>>()?;

    let sale_path = path
        .strip_prefix(base.trim_end_matches('/'))
        .unwrap_or(&path)
        .to_owned();
    let latencies = Arc::new(Latencies::with_bucket_us(100));
    // Keys are unique per run: a key from an earlier run names another request (422).
    let run = crate::hub::now_micros();
    let keys: Vec<String> = (0..tokens.len())
        .map(|i| format!("bench-{run}-{i}"))
        .collect();
    let next = AtomicUsize::new(0);
    if let Some(command) = &args.before_burst {
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status()
            .await?;
        anyhow::ensure!(status.success(), "--before-burst failed: {status}");
    }
    let cpu_before = proc_stats::cpu_seconds(args.server_pid)?;
    let measured = Instant::now();
    // Each connection takes the next buyer until none is left; responses are kept as bytes
    // and parsed after the window, so the generator spends its core on sending.
    let per_conn: Vec<Vec<(u16, bytes::Bytes)>> =
        futures::future::join_all(conns.iter_mut().map(|conn| {
            let (next, tokens, keys, sale_path, latencies) =
                (&next, &tokens, &keys, &sale_path, &latencies);
            async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(token), Some(key)) = (tokens.get(i), keys.get(i)) else {
                        return out;
                    };
                    let sent = Instant::now();
                    let outcome = match conn.send("POST", sale_path, token, Some(key)).await {
                        Ok(outcome) => outcome,
                        Err(e) => {
                            // A broken connection would fail every later buyer at once and
                            // count them as attempts: open a new one for the next.
                            if let Ok(fresh) = Conn::open(&conn.authority).await {
                                *conn = fresh;
                            }
                            (0, bytes::Bytes::from(e.to_string()))
                        }
                    };
                    latencies.record(sent.elapsed().as_micros() as u64);
                    out.push(outcome);
                }
            }
        }))
        .await;
    let seconds = measured.elapsed().as_secs_f64();
    let cpu = proc_stats::cpu_seconds(args.server_pid)? - cpu_before;
    let outcomes: Vec<(u16, Value)> = per_conn
        .into_iter()
        .flatten()
        .map(|(status, body)| {
            let value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&body)}));
            (status, value)
        })
        .collect();

    let won = outcomes
        .iter()
        .filter(|(s, _)| (200..300).contains(s))
        .count();
    let refused = outcomes
        .iter()
        .filter(|(s, _)| *s == 409 || *s == 410)
        .count();
    let failed = outcomes.len() - won - refused;
    let mut ids: Vec<i64> = outcomes
        .iter()
        .filter_map(|(s, b)| ((200..300).contains(s)).then(|| b["id"].as_i64()).flatten())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let sum: i64 = outcomes
        .iter()
        .filter(|(s, _)| *s == 200)
        .filter_map(|(_, b)| b["amount_cents"].as_i64())
        .sum();
    let answers_exact = match args.tool {
        Tool::FlashSale => won == args.stock as usize && ids.len() == won,
        Tool::RedPacket => won == args.stock as usize && sum == i64::from(args.stock) * 10,
    };
    let stored = match &args.database_url {
        Some(url) => Some(stored_check(url, args.tool, tool_id, &ids, won, sum).await?),
        None => None,
    };
    let exact = answers_exact && stored.as_ref().is_none_or(|s| s["exact"] == true);
    let report = json!({
        "benchmark": match args.tool { Tool::FlashSale => "flash-sale", Tool::RedPacket => "red-packet" },
        "buyers": args.buyers,
        "stock": args.stock,
        "concurrency": args.concurrency,
        "won": won,
        "refused": refused,
        "failed": failed,
        "exact": exact,
        "stored": stored,
        "shares_sum_cents": (args.tool == Tool::RedPacket).then_some(sum),
        "seconds": seconds,
        "attempts_per_second": outcomes.len() as f64 / seconds,
        "server_cpu_seconds": cpu,
        "attempts_per_cpu_second": outcomes.len() as f64 / cpu.max(1e-9),
        "p50_ms": latencies.quantile_ms(0.50),
        "p99_ms": latencies.quantile_ms(0.99),
        "login_seconds": login_seconds,
        "first_failure": outcomes.iter().find(|(s, _)| !(200..300).contains(s) && *s != 409 && *s != 410).map(|(s, b)| json!({"status": s, "body": b})),
    });
    println!("{report}");
    anyhow::ensure!(exact, "not exact: {won} won of {}", args.stock);
    Ok(())
}

/// What the server's database holds after the burst, against what the buyers were told: for a
/// flash sale, the sale's orders are exactly the acknowledged ones, one per buyer; for a red
/// packet, the grabbed shares are as many as the 200s, one per buyer, and sum to what they
/// were told.
async fn stored_check(
    url: &str,
    tool: Tool,
    id: i64,
    acknowledged: &[i64],
    won: usize,
    told_cents: i64,
) -> Res<Value> {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let report = match tool {
        Tool::FlashSale => {
            let rows =
                sqlx::query("SELECT id, buyer_id FROM orders WHERE flash_sale_id = $1 ORDER BY id")
                    .bind(id)
                    .fetch_all(&pool)
                    .await?;
            let mut stored = Vec::with_capacity(rows.len());
            let mut buyers = std::collections::HashSet::new();
            for row in &rows {
                stored.push(row.try_get::<i64, _>(0)?);
                buyers.insert(row.try_get::<i64, _>(1)?);
            }
            let same = stored == acknowledged;
            json!({"orders": stored.len(), "buyers": buyers.len(), "same_as_acknowledged": same,
                   "exact": same && buyers.len() == stored.len()})
        }
        Tool::RedPacket => {
            let row = sqlx::query(
                "SELECT COUNT(*), COUNT(DISTINCT grabbed_by), CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) \
                 FROM red_packet_shares WHERE red_packet_id = $1 AND grabbed_by IS NOT NULL",
            )
            .bind(id)
            .fetch_one(&pool)
            .await?;
            let (grabs, grabbers, cents): (i64, i64, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            json!({"grabs": grabs, "grabbers": grabbers, "sum_cents": cents,
                   "exact": grabs as usize == won && grabbers == grabs && cents == told_cents})
        }
    };
    pool.close().await;
    Ok(report)
}

/// A kept-alive HTTP/1.1 connection to the server: one request at a time, no pool.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    authority: String,
}

impl Conn {
    async fn open(authority: &str) -> Res<Self> {
        let stream = tokio::net::TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            authority: authority.to_owned(),
        })
    }

    /// Sends one request with the buyer's token (and an `Idempotency-Key`), returning the
    /// status and the body's bytes.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        key: Option<&str>,
    ) -> Res<(u16, bytes::Bytes)> {
        use http_body_util::BodyExt;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        self.sender.ready().await?;
        let response = self
            .sender
            .send_request(request.body(http_body_util::Full::new(bytes::Bytes::new()))?)
            .await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct NaiveArgs {
    /// A PostgreSQL database the baseline may create its two tables in.
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value_t = 10_000)]
    buyers: usize,
    #[arg(long, default_value_t = 1000)]
    stock: i64,
    /// Database connections (PostgreSQL's default limit is 100).
    #[arg(long, default_value_t = 90)]
    connections: u32,
}

/// The baseline a flash sale is usually first written as: every attempt is a PostgreSQL
/// transaction that locks the sale's row (`SELECT … FOR UPDATE`), checks the stock, and writes
/// the order. No HTTP, no gate: only the database's cost per attempt.
pub async fn naive(args: NaiveArgs) -> Res<()> {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(args.connections)
        .connect(&args.database_url)
        .await?;
    for statement in [
        "DROP TABLE IF EXISTS naive_orders",
        "DROP TABLE IF EXISTS naive_sales",
        "CREATE TABLE naive_sales (id BIGINT PRIMARY KEY, stock BIGINT NOT NULL)",
        "CREATE TABLE naive_orders (id BIGSERIAL PRIMARY KEY, sale_id BIGINT NOT NULL, buyer BIGINT NOT NULL, \
         idempotency_key TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL)",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    sqlx::query("INSERT INTO naive_sales (id, stock) VALUES (1, $1)")
        .bind(args.stock)
        .execute(&pool)
        .await?;
    let latencies = Arc::new(Latencies::with_bucket_us(100));
    let started = Instant::now();
    let attempts = (0..args.buyers).map(|buyer| {
        let (pool, latencies) = (&pool, latencies.clone());
        async move {
            let sent = Instant::now();
            let outcome: Res<bool> = async {
                let mut tx = pool.begin().await?;
                let stock: i64 = sqlx::query("SELECT stock FROM naive_sales WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                if stock <= 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query("UPDATE naive_sales SET stock = stock - 1 WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO naive_orders (sale_id, buyer, idempotency_key, created_at) VALUES (1, $1, $2, $3)")
                    .bind(buyer as i64)
                    .bind(format!("naive-{buyer}"))
                    .bind(crate::hub::now_micros() as i64)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }
            .await;
            latencies.record(sent.elapsed().as_micros() as u64);
            outcome
        }
    });
    let outcomes: Vec<Res<bool>> = futures::stream::iter(attempts)
        .buffer_unordered(args.buyers.min(10_000))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let won = outcomes.iter().filter(|o| matches!(o, Ok(true))).count();
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    let orders: i64 = sqlx::query("SELECT COUNT(*) FROM naive_orders")
        .fetch_one(&pool)
        .await?
        .try_get(0)?;
    println!(
        "{}",
        json!({
            "benchmark": "flash-sale-naive-postgres",
            "buyers": args.buyers,
            "stock": args.stock,
            "won": won,
            "failed": failed,
            "orders": orders,
            "exact": orders == args.stock,
            "seconds": seconds,
            "attempts_per_second": args.buyers as f64 / seconds,
            "p50_ms": latencies.quantile_ms(0.50),
            "p99_ms": latencies.quantile_ms(0.99),
        })
    );
    Ok(())
}
