//! The reconnect storm: every viewer of one room loses its connection at the same moment and
//! reconnects at once, resuming from the last `seq` it saw while the host keeps broadcasting.
//! Measures the time until every viewer has resumed, and checks that no viewer missed an event:
//! the host's messages are numbered, must never be sampled away (docs/protocol.md), and each
//! viewer's must stay consecutive across the drop and end at the host's last one. (Other events,
//! such as presence while the room was small, are droppable, so gaps in `seq` alone prove
//! nothing.)
//! livecamp only (the comparison peers do not implement resume).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::hub::{Conn, Latencies, Target, open_viewers, prepare};

#[derive(Debug, Clone, clap::Args)]
pub struct ReconnectArgs {
    #[command(flatten)]
    target: Target,
    /// Viewer connections in the room.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Host broadcasts per second, before, during and after the storm.
    #[arg(long, default_value_t = 5)]
    rate: u32,
    /// Seconds of broadcasting before the drop.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Give up waiting for the stragglers after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// The number of one of the host's messages (`host#N#`).
fn host_number(text: &str) -> Option<u64> {
    let start = text.find("host#")? + 5;
    let rest = &text[start..];
    rest[..rest.find('#')?].parse().ok()
}

/// The `seq` of an `event` frame.
fn event_seq(text: &str) -> Option<u64> {
    if !text.starts_with("{\"type\":\"event\"") {
        return None;
    }
    let start = text.find("\"seq\":")? + 6;
    let digits = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[derive(Default)]
struct Counters {
    resumed: AtomicU64,
    resynced: AtomicU64,
    failed: AtomicU64,
    /// Host messages a viewer should have seen and did not.
    missed: AtomicU64,
    /// Viewers that saw no event before the drop, so had nothing to resume from.
    no_seq: AtomicU64,
}

/// What one viewer has seen: the highest `seq` (to resume from) and host message number.
#[derive(Default, Clone, Copy)]
struct Seen {
    seq: Option<u64>,
    host: Option<u64>,
}

/// Reads one viewer's frames until `until` changes, counting host messages it skipped.
async fn follow(
    conn: &mut Conn,
    seen: &mut Seen,
    counters: &Counters,
    until: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = until.changed() => return Ok(()),
            text = conn.next_text() => {
                let text = text?;
                let Some(seq) = event_seq(&text) else { continue };
                if seen.seq.is_some_and(|prev| seq <= prev) {
                    continue; // replayed twice would be a bug too, but it is not a miss
                }
                seen.seq = Some(seq);
                if let Some(n) = host_number(&text) {
                    if let Some(prev) = seen.host
                        && n > prev + 1
                    {
                        counters.missed.fetch_add(n - prev - 1, Ordering::Relaxed);
                    }
                    seen.host = Some(n);
                }
            }
        }
    }
}

pub async fn reconnect(args: ReconnectArgs) -> anyhow::Result<()> {
    let target = Arc::new(args.target.clone());
    let (host_token, tokens, room) = prepare(&target).await?;
    let mut host = Conn::open(&target, &host_token).await?;
    host.join(room).await?;
    let viewers = open_viewers(&target, &tokens, room, args.connections).await?;

    let counters = Arc::new(Counters::default());
    // 1 ms buckets: resumes take up to seconds.
    let resume_latencies = Arc::new(Latencies::with_bucket_us(1000));
    let (drop_tx, drop_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(target.connect_concurrency));
    let dropped_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let last_resumed_us = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(viewers.len());
    for (i, mut conn) in viewers.into_iter().enumerate() {
        let (target, counters, gate, dropped_at, last_resumed_us, latencies) = (
            target.clone(),
            counters.clone(),
            gate.clone(),
            dropped_at.clone(),
            last_resumed_us.clone(),
            resume_latencies.clone(),
        );
        let (mut drop_rx, mut stop_rx) = (drop_rx.clone(), stop_rx.clone());
        let token = tokens[i % tokens.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            follow(&mut conn, &mut seen, &counters, &mut drop_rx).await?;
            // The drop: the socket goes away without a close handshake, like a network cut.
            drop(conn);
            if seen.seq.is_none() {
                counters.no_seq.fetch_add(1, Ordering::Relaxed);
            }
            let mut conn = {
                let _permit = gate.acquire().await?;
                let mut attempt = 0;
                loop {
                    match Conn::open(&target, &token).await {
                        Ok(conn) => break conn,
                        Err(_) if attempt < 20 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                        }
                        Err(e) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
            };
            let answer = conn.join_from(room, seen.seq).await?;
            if answer.contains("\"type\":\"resumed\"") {
                counters.resumed.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.resynced.fetch_add(1, Ordering::Relaxed);
                // A resync starts over: what was missed is not replayed, and is not counted.
                seen = Seen::default();
            }
            if let Some(at) = dropped_at.get() {
                let micros = at.elapsed().as_micros() as u64;
                latencies.record(micros);
                last_resumed_us.fetch_max(micros, Ordering::Relaxed);
            }
            follow(&mut conn, &mut seen, &counters, &mut stop_rx).await?;
            anyhow::Ok(seen.host)
        }));
    }

    // The host broadcasts throughout and remembers the number of its last message seen back.
    let (mut host_tx, mut host_rx) = host.ws.split();
    let host_last = Arc::new(AtomicU64::new(0));
    let host_reader = {
        let host_last = host_last.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    frame = host_rx.next() => match frame {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(n) = host_number(text.as_str()) {
                                host_last.fetch_max(n, Ordering::Relaxed);
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
        })
    };
    let (broadcast_stop_tx, mut broadcast_stop) = watch::channel(false);
    let broadcaster = tokio::spawn(async move {
        let mut ticker =
            tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = broadcast_stop.changed() => break,
                _ = ticker.tick() => {
                    n += 1;
                    let frame = json!({"v": 1, "type": "chat", "room": room, "text": format!("主播消息 host#{n}#")});
                    if host_tx.send(Message::Text(frame.to_string().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
        n
    });

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let _ = dropped_at.set(Instant::now());
    drop_tx.send(true)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let total = args.connections as u64;
    while Instant::now() < deadline {
        let done = counters.resumed.load(Ordering::Relaxed)
            + counters.resynced.load(Ordering::Relaxed)
            + counters.failed.load(Ordering::Relaxed);
        if done >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Keep broadcasting a little after the storm, then let the last events arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    broadcast_stop_tx.send(true)?;
    let broadcasts = broadcaster.await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_tx.send(true)?;
    let _ = host_reader.await;
    let host_last = host_last.load(Ordering::Relaxed);
    let mut caught_up = 0u64;
    let mut errors = 0u64;
    for task in tasks {
        match task.await {
            Ok(Ok(Some(last))) if last == host_last => caught_up += 1,
            Ok(Ok(_)) => {}
            _ => errors += 1,
        }
    }
    let c = &counters;
    let result = json!({
        "benchmark": "hub-reconnect",
        "flavor": "livecamp",
        "connections": args.connections,
        "rate_per_second": args.rate,
        "broadcasts": broadcasts,
        "resumed": c.resumed.load(Ordering::Relaxed),
        "resynced": c.resynced.load(Ordering::Relaxed),
        "failed": c.failed.load(Ordering::Relaxed),
        "errors": errors,
        "no_seq_before_drop": c.no_seq.load(Ordering::Relaxed),
        "missed_host_events": c.missed.load(Ordering::Relaxed),
        "caught_up_to_host": caught_up,
        "all_resumed_seconds": last_resumed_us.load(Ordering::Relaxed) as f64 / 1e6,
        "resume_p50_ms": resume_latencies.quantile_ms(0.50),
        "resume_p99_ms": resume_latencies.quantile_ms(0.99),
    });
    println!("{result}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_seq_reads_only_event_frames() {
        assert_eq!(
            super::event_seq(r#"{"type":"event","room":42,"seq":1750000000000122,"at":1}"#),
            Some(1_750_000_000_000_122)
        );
        assert_eq!(super::event_seq(r#"{"type":"stats","seq":3}"#), None);
        assert_eq!(super::host_number("主播消息 host#17#"), Some(17));
        assert_eq!(super::host_number("host#x#"), None);
    }
}
