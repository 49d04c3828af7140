//! Fan-out across processes: one room spanning several livecamp nodes that share Redis, with more
//! viewers than one process may hold sockets for (20,000 open files each on the benchmark box).
//!
//! The coordinator (`hub-cluster`) logs in once, creates the room, joins the host on the first
//! node and starts one child process (`hub-viewers`) per slice of viewers. Children connect their
//! viewers to their node, say `ready N`, measure between the `start` and `stop` lines the
//! coordinator writes to their stdin, and answer with one JSON line: deliveries and their
//! latency histogram, which the coordinator merges.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::hub::{Conn, Flavor, Latencies, Readers, Target, now_micros, open_viewers, prepare};
use crate::proc_stats;

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Base URLs of the nodes, comma-separated; the host joins on the first.
    #[arg(long, value_delimiter = ',', required = true)]
    bases: Vec<String>,
    /// The nodes' process ids, comma-separated (their CPU time is summed).
    #[arg(long, value_delimiter = ',', required = true)]
    server_pids: Vec<u32>,
    /// The Redis server's process id, to report its CPU time too.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// The demo password (accounts trainee01 … trainee30).
    #[arg(long)]
    password: String,
    /// Viewer connections in all.
    #[arg(long, default_value_t = 100_000)]
    connections: usize,
    /// Viewer connections per generator process (each may hold 20,000 open files).
    #[arg(long, default_value_t = 19_000)]
    per_process: usize,
    /// Broadcasts per second from the host.
    #[arg(long, default_value_t = 1)]
    rate: u32,
    #[arg(long, default_value_t = 20)]
    duration: u64,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    #[arg(long, default_value_t = 150)]
    payload: usize,
    /// Connections each generator opens at the same time.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ViewersArgs {
    #[arg(long)]
    base: String,
    #[arg(long)]
    room: i64,
    /// A file with one session token per line.
    #[arg(long)]
    tokens_file: std::path::PathBuf,
    #[arg(long)]
    connections: usize,
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
}

/// A child process holding one slice of the viewers.
struct Slice {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Slice {
    async fn next_line(&mut self) -> anyhow::Result<String> {
        self.lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("a generator process ended early"))
    }

    async fn say(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }
}

fn cpu_sum(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|&pid| proc_stats::cpu_seconds(pid)).sum()
}

pub async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.bases.len() == args.server_pids.len(),
        "one pid per base URL"
    );
    let first = Target {
        base: args.bases[0].clone(),
        flavor: Flavor::Livecamp,
        server_pid: args.server_pids[0],
        password: args.password.clone(),
        connect_concurrency: args.connect_concurrency,
    };
    let (host_token, tokens, room) = prepare(&first).await?;
    let tokens_file = std::env::temp_dir().join(format!("loadtest-tokens-{}", std::process::id()));
    std::fs::write(&tokens_file, tokens.join("\n"))?;

    // Viewers spread evenly over the nodes, each node's share over as many processes as needed.
    let started = Instant::now();
    let mut slices = Vec::new();
    let nodes = args.bases.len();
    for (n, base) in args.bases.iter().enumerate() {
        let mut share = args.connections / nodes + usize::from(n < args.connections % nodes);
        while share > 0 {
            let count = share.min(args.per_process.max(1));
            share -= count;
            let mut child = Command::new(std::env::current_exe()?)
                .args(["hub-viewers", "--base", base, "--room", &room.to_string()])
                .arg("--tokens-file")
                .arg(&tokens_file)
                .args(["--connections", &count.to_string()])
                .args([
                    "--connect-concurrency",
                    &args.connect_concurrency.to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let stdin = child
                .stdin
                .take()
                .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
            slices.push(Slice {
                child,
                stdin,
                lines: BufReader::new(stdout).lines(),
            });
        }
    }
    let mut connected = 0usize;
    for slice in &mut slices {
        let line = slice.next_line().await?;
        let n: usize = line
            .strip_prefix("ready ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("a generator process said {line:?}"))?;
        connected += n;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&tokens_file);

    let mut host = Conn::open(&first, &host_token).await?;
    host.join(room).await?;
    let (mut host_tx, host_rx) = futures::StreamExt::split(host.ws);
    // The host never reads; keep its receiving half alive and let the kernel buffer absorb its
    // own echoes (a few per second).
    let _host_rx = host_rx;

    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut ticker = tokio::time::interval(interval);
    let padding = "x".repeat(args.payload.saturating_sub(20));
    let begin = Instant::now();
    let total = Duration::from_secs(args.warmup + args.duration);
    let mut measuring = false;
    let (mut cpu_start, mut redis_start, mut window_start, mut sent) =
        (0.0, 0.0, Instant::now(), 0u64);
    while begin.elapsed() < total {
        ticker.tick().await;
        if !measuring && begin.elapsed() >= Duration::from_secs(args.warmup) {
            for slice in &mut slices {
                slice.say("start").await?;
            }
            cpu_start = cpu_sum(&args.server_pids)?;
            redis_start = args
                .redis_pid
                .map(proc_stats::cpu_seconds)
                .transpose()?
                .unwrap_or(0.0);
            window_start = Instant::now();
            measuring = true;
        }
        let text = format!("t={:016} {padding}", now_micros());
        let frame = json!({"v": 1, "type": "chat", "room": room, "text": &text[..args.payload.min(text.len())]});
        host_tx
            .send(Message::Text(frame.to_string().into()))
            .await?;
        if measuring {
            sent += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for slice in &mut slices {
        slice.say("stop").await?;
    }
    let cpu = cpu_sum(&args.server_pids)? - cpu_start;
    let redis_cpu = args
        .redis_pid
        .map(proc_stats::cpu_seconds)
        .transpose()?
        .unwrap_or(0.0)
        - redis_start;
    let wall = window_start.elapsed().as_secs_f64();
    let rss: u64 = args
        .server_pids
        .iter()
        .map(|&pid| proc_stats::rss_bytes(pid))
        .sum::<anyhow::Result<u64>>()?;

    // 100 µs buckets (up to 10 s): a saturated cluster on a small box is slow.
    let latencies = Latencies::with_bucket_us(100);
    let mut delivered = 0u64;
    for slice in &mut slices {
        let report: Value = serde_json::from_str(&slice.next_line().await?)?;
        delivered += report["delivered"].as_u64().unwrap_or_default();
        let pairs: Vec<(usize, u64)> = serde_json::from_value(report["latencies"].clone())?;
        latencies.add_sparse(&pairs);
    }
    for slice in &mut slices {
        let _ = slice.child.wait().await;
    }
    let expected = sent * connected as u64;
    let result = json!({
        "benchmark": "hub-cluster",
        "flavor": "livecamp",
        "nodes": nodes,
        "generator_processes": slices.len(),
        "connections": connected,
        "rate_per_second": args.rate,
        "payload_bytes": args.payload,
        "connect_seconds": connect_seconds,
        "window_seconds": wall,
        "broadcasts": sent,
        "deliveries": delivered,
        "expected_deliveries": expected,
        "delivered_ratio": if expected > 0 { delivered as f64 / expected as f64 } else { 0.0 },
        "servers_cpu_seconds": cpu,
        "redis_cpu_seconds": redis_cpu,
        "deliveries_per_cpu_second": if cpu > 0.0 { delivered as f64 / cpu } else { 0.0 },
        "deliveries_per_second": delivered as f64 / wall,
        "p50_ms": latencies.quantile_ms(0.50),
        "p99_ms": latencies.quantile_ms(0.99),
        "max_ms": latencies.quantile_ms(1.0),
        "servers_rss_mb": rss as f64 / 1_048_576.0,
    });
    println!("{result}");
    Ok(())
}

/// The child: holds one slice of viewers and measures on command.
pub async fn viewers(args: ViewersArgs) -> anyhow::Result<()> {
    let tokens: Vec<String> = std::fs::read_to_string(&args.tokens_file)?
        .lines()
        .map(str::to_owned)
        .collect();
    let target = Target {
        base: args.base.clone(),
        flavor: Flavor::Livecamp,
        server_pid: 0,
        password: String::new(),
        connect_concurrency: args.connect_concurrency,
    };
    let conns = open_viewers(&target, &tokens, args.room, args.connections).await?;
    let readers = Readers::spawn(conns, Latencies::with_bucket_us(100));
    let count = readers.len();
    println!("ready {count}");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = stdin.next_line().await? {
        match line.trim() {
            "start" => readers.measuring.store(true, Ordering::Relaxed),
            "stop" => break,
            _ => {}
        }
    }
    readers.measuring.store(false, Ordering::Relaxed);
    let report = json!({
        "delivered": readers.delivered.load(Ordering::Relaxed),
        "latencies": readers.latencies.sparse(),
    });
    println!("{report}");
    readers.stop().await;
    Ok(())
}
