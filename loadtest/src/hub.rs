//! Hub benchmarks: fan-out throughput and latency, idle memory, like storms. They speak the hub
//! protocol to livecamp, or to the comparison peers (loadtest/peers) — plain WebSocket for the
//! Node `ws` peer, Engine.IO v4 framing for the socket.io peer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::proc_stats;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavor {
    Livecamp,
    Ws,
    Socketio,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Server base URL, e.g. http://127.0.0.1:18080.
    #[arg(long)]
    pub base: String,
    #[arg(long, value_enum, default_value = "livecamp")]
    pub flavor: Flavor,
    /// Server process id, for its CPU time and RSS.
    #[arg(long)]
    pub server_pid: u32,
    /// livecamp: the demo password (accounts trainee01 … trainee30 are used).
    #[arg(long, default_value = "")]
    pub password: String,
    /// Connections being opened at the same time.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    target: Target,
    /// Viewer connections in the room.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Broadcasts per second from the host.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Bytes of chat text per broadcast.
    #[arg(long, default_value_t = 150)]
    payload: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds to wait before reading the RSS.
    #[arg(long, default_value_t = 5)]
    settle: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LikesArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Likes per second in total.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// Latency histogram: fixed-width buckets (10 µs by default) up to 100,000 buckets, shared by
/// all connections without locks.
pub(crate) struct Latencies {
    bucket_us: u64,
    buckets: Vec<AtomicU64>,
}

const BUCKETS: usize = 100_000;

impl Latencies {
    /// 10 µs buckets, up to 1 s.
    pub(crate) fn new() -> Self {
        Self::with_bucket_us(10)
    }

    pub(crate) fn with_bucket_us(bucket_us: u64) -> Self {
        Self {
            bucket_us,
            buckets: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn record(&self, micros: u64) {
        let index = ((micros / self.bucket_us) as usize).min(BUCKETS);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The non-empty buckets, as (index, count) pairs (to merge histograms across processes).
    pub(crate) fn sparse(&self) -> Vec<(usize, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| (i, b.load(Ordering::Relaxed)))
            .filter(|(_, c)| *c > 0)
            .collect()
    }

    pub(crate) fn add_sparse(&self, pairs: &[(usize, u64)]) {
        for &(i, c) in pairs {
            self.buckets[i.min(BUCKETS)].fetch_add(c, Ordering::Relaxed);
        }
    }

    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let target = ((total as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return ((i as u64 + 1) * self.bucket_us) as f64 / 1000.0;
            }
        }
        (BUCKETS as u64 * self.bucket_us) as f64 / 1000.0
    }
}

/// Viewer connections reading their sockets, each counting the timestamped deliveries it gets
/// while `measuring`, with their latency.
pub(crate) struct Readers {
    pub(crate) measuring: Arc<AtomicBool>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) delivered: Arc<AtomicU64>,
    pub(crate) latencies: Arc<Latencies>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    pub(crate) fn spawn(conns: Vec<Conn>, latencies: Latencies) -> Self {
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let delivered = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(latencies);
        let mut tasks = Vec::with_capacity(conns.len());
        for mut conn in conns {
            let (measuring, stop, delivered, latencies) = (
                measuring.clone(),
                stop.clone(),
                delivered.clone(),
                latencies.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Ok(text)) =
                        tokio::time::timeout(Duration::from_millis(500), conn.next_text()).await
                    else {
                        continue;
                    };
                    if measuring.load(Ordering::Relaxed)
                        && let Some(sent) = text_timestamp(&text)
                    {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        latencies.record(now_micros().saturating_sub(sent));
                    }
                }
            }));
        }
        Self {
            measuring,
            stop,
            delivered,
            latencies,
            tasks,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Stops reading and waits for every reader.
    pub(crate) async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// One client connection in the chosen flavour.
pub(crate) struct Conn {
    pub(crate) ws: Socket,
    flavor: Flavor,
}

impl Conn {
    pub(crate) async fn open(target: &Target, token: &str) -> anyhow::Result<Self> {
        let host = target.base.replace("http://", "ws://");
        let url = match target.flavor {
            Flavor::Socketio => format!("{host}/socket.io/?EIO=4&transport=websocket"),
            _ => format!("{host}/ws?token={token}"),
        };
        // Small buffers: the generator holds tens of thousands of sockets.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        let mut conn = Self {
            ws,
            flavor: target.flavor,
        };
        if conn.flavor == Flavor::Socketio {
            conn.raw_next().await?; // "0{...}" open packet
            conn.ws.send(Message::Text("40".into())).await?;
            loop {
                let text = conn.raw_next().await?;
                if text.starts_with("40") {
                    break;
                }
            }
        }
        Ok(conn)
    }

    async fn raw_next(&mut self) -> anyhow::Result<String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(f))) => anyhow::bail!("closed: {f:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("closed"),
            }
        }
    }

    pub(crate) async fn send(&mut self, frame: &Value) -> anyhow::Result<()> {
        let text = frame.to_string();
        let wire = match self.flavor {
            Flavor::Socketio => format!("42{}", json!(["m", text])),
            _ => text,
        };
        self.ws.send(Message::Text(wire.into())).await?;
        Ok(())
    }

    /// The next protocol frame as text (socket.io: unwrapped, pings answered).
    pub(crate) async fn next_text(&mut self) -> anyhow::Result<String> {
        loop {
            let text = self.raw_next().await?;
            if self.flavor != Flavor::Socketio {
                return Ok(text);
            }
            if text == "2" {
                self.ws.send(Message::Text("3".into())).await?;
                continue;
            }
            if let Some(body) = text.strip_prefix("42") {
                let parsed: Value = serde_json::from_str(body)?;
                if let Some(inner) = parsed.get(1).and_then(Value::as_str) {
                    return Ok(inner.to_owned());
                }
            }
        }
    }

    pub(crate) async fn join(&mut self, room: i64) -> anyhow::Result<()> {
        self.join_from(room, None).await.map(drop)
    }

    /// Joins (resuming after `last_seq` when given); the answer frame: `joined`, `resumed` or
    /// `resync`.
    pub(crate) async fn join_from(
        &mut self,
        room: i64,
        last_seq: Option<u64>,
    ) -> anyhow::Result<String> {
        let frame = match last_seq {
            Some(seq) => json!({"v": 1, "type": "join", "room": room, "last_seq": seq}),
            None => json!({"v": 1, "type": "join", "room": room}),
        };
        self.send(&frame).await?;
        loop {
            let text = self.next_text().await?;
            if ["joined", "resumed", "resync"]
                .iter()
                .any(|t| text.contains(&format!("\"type\":\"{t}\"")))
            {
                return Ok(text);
            }
            if text.contains("\"type\":\"error\"") {
                anyhow::bail!("join refused: {text}");
            }
        }
    }
}

/// Tokens and the room: livecamp logs in its demo trainees and creates a room; the peers
/// accept any token and use room 1.
pub(crate) async fn prepare(target: &Target) -> anyhow::Result<(String, Vec<String>, i64)> {
    if target.flavor != Flavor::Livecamp {
        return Ok((
            "host".into(),
            (0..29).map(|i| format!("viewer{i}")).collect(),
            1,
        ));
    }
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for i in 1..=30 {
        let response: Value = http
            .post(format!("{}/api/v1/auth/login", target.base))
            .json(&json!({"username": format!("trainee{i:02}"), "password": target.password}))
            .send()
            .await?
            .json()
            .await?;
        let token = response["token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("login of trainee{i:02} failed: {response}"))?;
        tokens.push(token.to_owned());
    }
    let host = tokens.remove(0);
    let classes: Value = http
        .get(format!("{}/api/v1/classes", target.base))
        .bearer_auth(&host)
        .send()
        .await?
        .json()
        .await?;
    let class = classes[0]["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no class"))?;
    let room: Value = http
        .post(format!("{}/api/v1/rooms", target.base))
        .bearer_auth(&host)
        .json(&json!({"class_id": class, "kind": "live_commerce", "title": "压测直播间"}))
        .send()
        .await?
        .json()
        .await?;
    let room = room["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("room not created: {room}"))?;
    Ok((host, tokens, room))
}

/// Opens `n` joined viewer connections, `concurrency` at a time.
pub(crate) async fn open_viewers(
    target: &Target,
    tokens: &[String],
    room: i64,
    n: usize,
) -> anyhow::Result<Vec<Conn>> {
    let gate = Arc::new(Semaphore::new(target.connect_concurrency));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let target = target.clone();
        let token = tokens[i % tokens.len()].clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let mut conn = Conn::open(&target, &token).await?;
            conn.join(room).await?;
            anyhow::Ok(conn)
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for task in tasks {
        conns.push(task.await??);
    }
    Ok(conns)
}

pub(crate) fn text_timestamp(text: &str) -> Option<u64> {
    let start = text.find("t=")? + 2;
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

pub async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let (host_token, tokens, room) = prepare(target).await?;
    let mut host = Conn::open(target, &host_token).await?;
    host.join(room).await?;
    let started = Instant::now();
    let viewers = open_viewers(target, &tokens, room, args.connections).await?;
    let connect_seconds = started.elapsed().as_secs_f64();

    let readers = Readers::spawn(viewers, Latencies::new());
    let (measuring, stop, delivered, latencies) = (
        readers.measuring.clone(),
        readers.stop.clone(),
        readers.delivered.clone(),
        readers.latencies.clone(),
    );
    // The host drains its own socket so it never backs up.
    let host_stop = stop.clone();
    let (mut host_tx, mut host_rx) = host.ws.split();
    let host_drain = tokio::spawn(async move {
        while !host_stop.load(Ordering::Relaxed) {
            if tokio::time::timeout(Duration::from_millis(500), host_rx.next())
                .await
                .is_ok_and(|m| m.is_none())
            {
                break;
            }
        }
    });

    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut ticker = tokio::time::interval(interval);
    let padding = "x".repeat(args.payload.saturating_sub(20));
    let total = Duration::from_secs(args.warmup + args.duration);
    let begin = Instant::now();
    let mut sent = 0u64;
    let mut cpu_start = 0.0;
    let mut window_start = Instant::now();
    while begin.elapsed() < total {
        ticker.tick().await;
        if !measuring.load(Ordering::Relaxed) && begin.elapsed() >= Duration::from_secs(args.warmup)
        {
            cpu_start = proc_stats::cpu_seconds(target.server_pid)?;
            window_start = Instant::now();
            measuring.store(true, Ordering::Relaxed);
        }
        let text = format!("t={:016} {padding}", now_micros());
        let frame = json!({"v": 1, "type": "chat", "room": room, "text": &text[..args.payload.min(text.len())]});
        let wire = match target.flavor {
            Flavor::Socketio => format!("42{}", json!(["m", frame.to_string()])),
            _ => frame.to_string(),
        };
        host_tx.send(Message::Text(wire.into())).await?;
        if measuring.load(Ordering::Relaxed) {
            sent += 1;
        }
    }
    // Let the last broadcasts arrive, then close the window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    measuring.store(false, Ordering::Relaxed);
    let cpu = proc_stats::cpu_seconds(target.server_pid)? - cpu_start;
    let wall = window_start.elapsed().as_secs_f64();
    let rss = proc_stats::rss_bytes(target.server_pid)?;
    readers.stop().await;
    let _ = host_drain.await;
    let delivered = delivered.load(Ordering::Relaxed);
    let expected = sent * args.connections as u64;
    let result = json!({
        "benchmark": "hub-fanout",
        "flavor": format!("{:?}", target.flavor).to_lowercase(),
        "connections": args.connections,
        "rate_per_second": args.rate,
        "payload_bytes": args.payload,
        "connect_seconds": connect_seconds,
        "window_seconds": wall,
        "broadcasts": sent,
        "deliveries": delivered,
        "expected_deliveries": expected,
        "delivered_ratio": if expected > 0 { delivered as f64 / expected as f64 } else { 0.0 },
        "server_cpu_seconds": cpu,
        "deliveries_per_cpu_second": if cpu > 0.0 { delivered as f64 / cpu } else { 0.0 },
        "deliveries_per_second": delivered as f64 / wall,
        "p50_ms": latencies.quantile_ms(0.50),
        "p99_ms": latencies.quantile_ms(0.99),
        "max_ms": latencies.quantile_ms(1.0),
        "server_rss_mb": rss as f64 / 1_048_576.0,
    });
    println!("{result}");
    Ok(())
}

pub async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let (host_token, tokens, room) = prepare(target).await?;
    let mut host = Conn::open(target, &host_token).await?;
    host.join(room).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = proc_stats::rss_bytes(target.server_pid)?;
    let viewers = open_viewers(target, &tokens, room, args.connections).await?;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let after = proc_stats::rss_bytes(target.server_pid)?;
    let result = json!({
        "benchmark": "hub-idle",
        "flavor": format!("{:?}", target.flavor).to_lowercase(),
        "connections": viewers.len(),
        "rss_before_mb": before as f64 / 1_048_576.0,
        "rss_after_mb": after as f64 / 1_048_576.0,
        "bytes_per_connection": (after.saturating_sub(before)) as f64 / viewers.len().max(1) as f64,
    });
    println!("{result}");
    drop(viewers);
    Ok(())
}

pub async fn likes(args: LikesArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let (host_token, tokens, room) = prepare(target).await?;
    let mut watcher = Conn::open(target, &host_token).await?;
    watcher.join(room).await?;
    let senders = open_viewers(target, &tokens, room, args.connections).await?;
    // Each sender batches like a client: one frame every 20 ms with that connection's share.
    let frames_per_second_per_conn = 50u64;
    let per_frame = (args.rate / (args.connections as u64 * frames_per_second_per_conn)).max(1);
    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for mut conn in senders {
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval(Duration::from_millis(1000 / frames_per_second_per_conn));
            while Instant::now() < deadline {
                ticker.tick().await;
                let count = per_frame.min(500);
                if conn
                    .send(&json!({"v": 1, "type": "like", "room": room, "count": count}))
                    .await
                    .is_ok()
                {
                    sent.fetch_add(count, Ordering::Relaxed);
                }
            }
            // Keep the socket open until the totals are read.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }));
    }
    let started = Instant::now();
    for task in tasks {
        let _ = task.await;
    }
    let sent = sent.load(Ordering::Relaxed);
    let mut last_total = 0u64;
    let read_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < read_until && last_total < sent {
        let Ok(Ok(text)) =
            tokio::time::timeout(Duration::from_millis(500), watcher.next_text()).await
        else {
            continue;
        };
        if text.contains("\"type\":\"stats\"") {
            let stats: Value = serde_json::from_str(&text)?;
            last_total = stats["likes"].as_u64().unwrap_or_default();
        }
    }
    let result = json!({
        "benchmark": "hub-likes",
        "flavor": format!("{:?}", target.flavor).to_lowercase(),
        "connections": args.connections,
        "likes_sent": sent,
        "likes_total_reported": last_total,
        "exact": last_total == sent,
        "likes_per_second": sent as f64 / (started.elapsed().as_secs_f64() - 3.0).max(1.0),
    });
    println!("{result}");
    Ok(())
}
