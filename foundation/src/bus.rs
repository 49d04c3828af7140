//! Publish/subscribe between the parts of livecamp and across nodes: one [`Bus`] trait, an
//! in-process implementation (embedded default) and a Redis one (distributed), chosen at start-up.
//!
//! Both deliver locally first through the same [`LocalFanout`], so a node keeps serving its own
//! subscribers when Redis is away. The Redis bus additionally relays every publish to the other
//! nodes with one `PUBLISH` per message, tagged with this node's id so a node ignores its own echo;
//! it reconnects and resubscribes by itself and reports its state through [`Bus::health`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How many undelivered messages a subscriber may fall behind before it starts losing the oldest.
const SUBSCRIBER_BUFFER: usize = 4096;
/// Redis names are `{namespace}:bus:{topic}` for channels and `{namespace}:{key}` for keys, so
/// several deployments (or test runs) can share one Redis.
fn channel_name(namespace: &str, topic: &str) -> String {
    format!("{namespace}:bus:{topic}")
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("delivered on this node only: the cross-node bus is unavailable ({0})")]
    RemoteUnavailable(String),
}

/// The state of the bus, for /readyz and /metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BusHealth {
    pub kind: &'static str,
    /// False while a distributed bus has lost its connection (local delivery goes on).
    pub connected: bool,
    pub published: u64,
    pub relay_failures: u64,
}

/// A subscription to one topic. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Bytes>,
}

impl Subscription {
    /// The next message; `Err(n)` says `n` older messages were skipped because this subscriber
    /// fell behind, `None` that the bus is gone.
    pub async fn recv(&mut self) -> Option<Result<Bytes, u64>> {
        match self.rx.recv().await {
            Ok(b) => Some(Ok(b)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[async_trait::async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Delivers `payload` to every subscriber of `topic`, on this node and (distributed) on all
    /// others. Local delivery always happens; an error says the other nodes were not reached.
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<(), BusError>;

    /// Subscribes to `topic`; with a distributed bus, returns once the subscription is active
    /// (or the relay is known to be down).
    async fn subscribe(&self, topic: &str) -> Subscription;

    fn health(&self) -> BusHealth;

    /// True when other nodes may share topics (the Redis bus).
    fn is_distributed(&self) -> bool;

    /// Numbers `payload` with the next value of the cluster-wide `counter` (raised to `floor`
    /// first if lower) and delivers `"{seq}|{payload}"` to every subscriber of `topic` on every
    /// node, this one included, in number order. Returns the number.
    async fn publish_numbered(
        &self,
        topic: &str,
        counter: &str,
        floor: u64,
        payload: &[u8],
    ) -> Result<u64, BusError>;

    /// Adds `delta` to the cluster-wide `counter` (raised to `floor` first if lower) and
    /// announces the new total as `"{total}"` on `topic` to every node, this one included.
    /// Returns the total.
    async fn add_and_announce(
        &self,
        topic: &str,
        counter: &str,
        floor: u64,
        delta: u64,
    ) -> Result<u64, BusError>;

    /// Records this node's `value` under `key` and returns the sum over every node that reported
    /// within the last 5 seconds.
    async fn gauge_sum(&self, key: &str, value: u64) -> Result<u64, BusError>;
}

/// Splits a numbered message into its number and payload.
pub fn split_numbered(message: &Bytes) -> Option<(u64, Bytes)> {
    let bar = message.iter().position(|b| *b == b'|')?;
    let seq = std::str::from_utf8(&message[..bar]).ok()?.parse().ok()?;
    Some((seq, message.slice(bar + 1..)))
}

/// How long a node's gauge report counts.
const GAUGE_FRESH_MS: i64 = 5_000;

/// Topic → broadcast channel, shared by both implementations.
#[derive(Debug, Default)]
pub struct LocalFanout {
    topics: std::sync::Mutex<HashMap<String, broadcast::Sender<Bytes>>>,
}

impl LocalFanout {
    fn subscribe(&self, topic: &str) -> (Subscription, bool) {
        // A poisoned lock means a panic while holding a HashMap guard; the map is still valid.
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let mut created = false;
        let sender = topics.entry(topic.to_owned()).or_insert_with(|| {
            created = true;
            broadcast::channel(SUBSCRIBER_BUFFER).0
        });
        (
            Subscription {
                rx: sender.subscribe(),
            },
            created,
        )
    }

    /// Delivers to local subscribers; the payload is shared, not copied, per receiver.
    fn deliver(&self, topic: &str, payload: Bytes) {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = topics.get(topic) {
            // No receivers is fine: nobody here listens to this topic right now.
            let _ = sender.send(payload);
        }
    }

    /// Forgets topics nobody listens to any more; returns their names.
    fn sweep(&self) -> Vec<String> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let idle: Vec<String> = topics
            .iter()
            .filter(|(_, s)| s.receiver_count() == 0)
            .map(|(t, _)| t.clone())
            .collect();
        for topic in &idle {
            topics.remove(topic);
        }
        idle
    }

    fn topic_names(&self) -> Vec<String> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.keys().cloned().collect()
    }
}

/// Single-process bus.
#[derive(Debug, Default)]
pub struct InProcessBus {
    local: LocalFanout,
    published: AtomicU64,
    counters: std::sync::Mutex<HashMap<String, u64>>,
}

impl InProcessBus {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

#[async_trait::async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<(), BusError> {
        self.published.fetch_add(1, Ordering::Relaxed);
        self.local.deliver(topic, payload);
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Subscription {
        let (sub, created) = self.local.subscribe(topic);
        if created {
            // Opportunistic clean-up of topics whose subscribers have all gone.
            self.local.sweep();
            return self.local.subscribe(topic).0;
        }
        sub
    }

    fn health(&self) -> BusHealth {
        BusHealth {
            kind: "in_process",
            connected: true,
            published: self.published.load(Ordering::Relaxed),
            relay_failures: 0,
        }
    }

    fn is_distributed(&self) -> bool {
        false
    }

    async fn publish_numbered(
        &self,
        topic: &str,
        counter: &str,
        floor: u64,
        payload: &[u8],
    ) -> Result<u64, BusError> {
        // Numbering and delivery under one lock keep delivery in number order.
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let value = counters.entry(counter.to_owned()).or_default();
        *value = (*value).max(floor) + 1;
        let seq = *value;
        let mut message = seq.to_string().into_bytes();
        message.push(b'|');
        message.extend_from_slice(payload);
        self.published.fetch_add(1, Ordering::Relaxed);
        self.local.deliver(topic, Bytes::from(message));
        Ok(seq)
    }

    async fn add_and_announce(
        &self,
        topic: &str,
        counter: &str,
        floor: u64,
        delta: u64,
    ) -> Result<u64, BusError> {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let value = counters.entry(counter.to_owned()).or_default();
        *value = (*value).max(floor) + delta;
        let total = *value;
        self.local.deliver(topic, Bytes::from(total.to_string()));
        Ok(total)
    }

    async fn gauge_sum(&self, _key: &str, value: u64) -> Result<u64, BusError> {
        Ok(value)
    }
}

enum RelayCommand {
    Subscribe(String, oneshot::Sender<()>),
}

/// Redis-relayed bus for several nodes.
#[derive(Debug)]
pub struct RedisBus {
    local: Arc<LocalFanout>,
    namespace: String,
    node_id: [u8; 16],
    publisher: redis::aio::ConnectionManager,
    commands: mpsc::UnboundedSender<RelayCommand>,
    connected: Arc<AtomicBool>,
    published: AtomicU64,
    relay_failures: AtomicU64,
}

impl std::fmt::Debug for RelayCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayCommand::Subscribe(t, _) => write!(f, "Subscribe({t})"),
        }
    }
}

/// The sender id of messages that every node, this one included, must deliver.
const EVERY_NODE: [u8; 16] = [0; 16];

/// INCR (raised to a floor) and PUBLISH in one atomic step, so publish order is number order.
/// `%d` keeps 16-digit numbers out of Lua's scientific notation.
static NUMBERED_PUBLISH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
        local floor = tonumber(ARGV[1])
        local current = tonumber(redis.call('GET', KEYS[1]) or '0')
        if current < floor then redis.call('SET', KEYS[1], string.format('%d', floor)) end
        local seq = redis.call('INCR', KEYS[1])
        redis.call('PEXPIRE', KEYS[1], 86400000)
        redis.call('PUBLISH', KEYS[2], ARGV[2] .. string.format('%d', seq) .. '|' .. ARGV[3])
        return seq
        ",
    )
});

static ADD_AND_ANNOUNCE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
        local floor = tonumber(ARGV[1])
        local current = tonumber(redis.call('GET', KEYS[1]) or '0')
        if current < floor then redis.call('SET', KEYS[1], string.format('%d', floor)) end
        local total = redis.call('INCRBY', KEYS[1], ARGV[2])
        redis.call('PEXPIRE', KEYS[1], 86400000)
        redis.call('PUBLISH', KEYS[2], ARGV[3] .. string.format('%d', total))
        return total
        ",
    )
});

/// Each node's value is stored as `value:reported_at`; only fresh reports are summed.
static GAUGE_SUM: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
        redis.call('PEXPIRE', KEYS[1], 60000)
        local now = tonumber(ARGV[3])
        local fresh = tonumber(ARGV[4])
        local sum = 0
        local all = redis.call('HGETALL', KEYS[1])
        for i = 1, #all, 2 do
            local value, at = string.match(all[i + 1], '^(%d+):(%d+)$')
            if value and now - tonumber(at) <= fresh then sum = sum + tonumber(value) end
        end
        return sum
        ",
    )
});

impl RedisBus {
    fn relay_error(&self, e: redis::RedisError, what: &str) -> BusError {
        self.relay_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, what, "bus relay call failed");
        BusError::RemoteUnavailable(e.to_string())
    }

    /// Connects to Redis (failing if it cannot be reached at start) and starts the relay task.
    /// `namespace` prefixes every channel and key.
    pub async fn connect(url: &str, namespace: &str) -> anyhow::Result<Arc<Self>> {
        let client =
            redis::Client::open(url).map_err(|e| anyhow::anyhow!("invalid redis_url: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let publisher = tokio::time::timeout(
            Duration::from_secs(5),
            redis::aio::ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("Redis did not answer within 5 s"))?
        .map_err(|e| anyhow::anyhow!("cannot connect to Redis: {e}"))?;
        let (commands, rx) = mpsc::unbounded_channel();
        let bus = Arc::new(Self {
            local: Arc::new(LocalFanout::default()),
            namespace: namespace.to_owned(),
            node_id: *uuid::Uuid::new_v4().as_bytes(),
            publisher,
            commands,
            connected: Arc::new(AtomicBool::new(false)),
            published: AtomicU64::new(0),
            relay_failures: AtomicU64::new(0),
        });
        tokio::spawn(relay_task(
            client,
            namespace.to_owned(),
            bus.local.clone(),
            bus.node_id,
            bus.connected.clone(),
            rx,
        ));
        Ok(bus)
    }
}

#[async_trait::async_trait]
impl Bus for RedisBus {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<(), BusError> {
        self.published.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(16 + payload.len());
        frame.extend_from_slice(&self.node_id);
        frame.extend_from_slice(&payload);
        self.local.deliver(topic, payload);
        let mut conn = self.publisher.clone();
        let channel = channel_name(&self.namespace, topic);
        let sent: Result<i64, redis::RedisError> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(frame)
            .query_async(&mut conn)
            .await;
        sent.map(|_| ()).map_err(|e| {
            self.relay_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, topic, "bus relay publish failed; delivered locally only");
            BusError::RemoteUnavailable(e.to_string())
        })
    }

    async fn subscribe(&self, topic: &str) -> Subscription {
        let (sub, created) = self.local.subscribe(topic);
        if created {
            let (ack, done) = oneshot::channel();
            if self
                .commands
                .send(RelayCommand::Subscribe(topic.to_owned(), ack))
                .is_ok()
            {
                // The relay confirms once Redis has acknowledged SUBSCRIBE, or at once while
                // Redis is away (it subscribes to every local topic when it reconnects). If Redis
                // is slow the subscription still works locally.
                let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
            }
        }
        sub
    }

    fn is_distributed(&self) -> bool {
        true
    }

    async fn publish_numbered(
        &self,
        topic: &str,
        counter: &str,
        floor: u64,
        payload: &[u8],
    ) -> Result<u64, BusError> {
        self.published.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.publisher.clone();
        let result: Result<u64, redis::RedisError> = NUMBERED_PUBLISH
            .key(format!("{}:{counter}", self.namespace))
            .key(channel_name(&self.namespace, topic))
            .arg(floor)
            .arg(&EVERY_NODE[..])
            .arg(payload)
            .invoke_async(&mut conn)
            .await;
        result.map_err(|e| self.relay_error(e, topic))
    }

    async fn add_and_announce(
        &self,
        topic: &str,
        counter: &str,
        floor: u64,
        delta: u64,
    ) -> Result<u64, BusError> {
        let mut conn = self.publisher.clone();
        let result: Result<u64, redis::RedisError> = ADD_AND_ANNOUNCE
            .key(format!("{}:{counter}", self.namespace))
            .key(channel_name(&self.namespace, topic))
            .arg(floor)
            .arg(delta)
            .arg(&EVERY_NODE[..])
            .invoke_async(&mut conn)
            .await;
        result.map_err(|e| self.relay_error(e, topic))
    }

    async fn gauge_sum(&self, key: &str, value: u64) -> Result<u64, BusError> {
        let mut conn = self.publisher.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let result: Result<u64, redis::RedisError> = GAUGE_SUM
            .key(format!("{}:{key}", self.namespace))
            .arg(uuid::Uuid::from_bytes(self.node_id).simple().to_string())
            .arg(value)
            .arg(now)
            .arg(GAUGE_FRESH_MS)
            .invoke_async(&mut conn)
            .await;
        result.map_err(|e| self.relay_error(e, key))
    }

    fn health(&self) -> BusHealth {
        BusHealth {
            kind: "redis",
            connected: self.connected.load(Ordering::SeqCst),
            published: self.published.load(Ordering::Relaxed),
            relay_failures: self.relay_failures.load(Ordering::Relaxed),
        }
    }
}

/// Owns the Redis subscriber connection: (re)connects with backoff, subscribes to every local
/// topic, delivers messages from other nodes and drops topics nobody listens to any more.
async fn relay_task(
    client: redis::Client,
    namespace: String,
    local: Arc<LocalFanout>,
    node_id: [u8; 16],
    connected: Arc<AtomicBool>,
    mut commands: mpsc::UnboundedReceiver<RelayCommand>,
) {
    let prefix = channel_name(&namespace, "");
    let mut backoff = Duration::from_millis(100);
    loop {
        let pubsub =
            match tokio::time::timeout(Duration::from_secs(3), client.get_async_pubsub()).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "bus relay cannot reach Redis; retrying");
                    wait_or_drain(&mut commands, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(_) => {
                    tracing::warn!("bus relay: Redis connect timed out; retrying");
                    wait_or_drain(&mut commands, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
        let (mut sink, mut stream) = pubsub.split();
        let mut ok = true;
        for topic in local.topic_names() {
            if let Err(e) = sink.subscribe(channel_name(&namespace, &topic)).await {
                tracing::warn!(error = %e, "bus relay resubscribe failed");
                ok = false;
                break;
            }
        }
        if !ok {
            wait_or_drain(&mut commands, backoff).await;
            continue;
        }
        connected.store(true, Ordering::SeqCst);
        backoff = Duration::from_millis(100);
        tracing::info!("bus relay connected to Redis");
        let mut sweep = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(RelayCommand::Subscribe(topic, ack)) => {
                        if let Err(e) = sink.subscribe(channel_name(&namespace, &topic)).await {
                            tracing::warn!(error = %e, "bus relay subscribe failed");
                            break;
                        }
                        let _ = ack.send(());
                    }
                    None => return, // the bus was dropped
                },
                message = stream.next() => match message {
                    Some(msg) => {
                        let channel = msg.get_channel_name();
                        let Some(topic) = channel.strip_prefix(&prefix) else { continue };
                        let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                        if payload.len() < 16 || payload[..16] == node_id {
                            continue; // our own echo, or not ours to read
                        }
                        local.deliver(topic, Bytes::from(payload).slice(16..));
                    }
                    None => break, // connection lost
                },
                _ = sweep.tick() => {
                    for topic in local.sweep() {
                        if sink.unsubscribe(channel_name(&namespace, &topic)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        connected.store(false, Ordering::SeqCst);
        tracing::warn!("bus relay lost Redis; serving local subscribers only until it is back");
    }
}

/// Sleeps for `delay` while acknowledging subscribe requests (they are picked up from the
/// local topic list on reconnect).
async fn wait_or_drain(commands: &mut mpsc::UnboundedReceiver<RelayCommand>, delay: Duration) {
    let deadline = tokio::time::sleep(delay);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            command = commands.recv() => match command {
                Some(RelayCommand::Subscribe(_, ack)) => { let _ = ack.send(()); }
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_delivers_to_every_subscriber_of_the_topic_only() {
        let bus = InProcessBus::new();
        let mut a = bus.subscribe("room.1").await;
        let mut b = bus.subscribe("room.1").await;
        let mut other = bus.subscribe("room.2").await;
        bus.publish("room.1", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            a.recv().await.unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        assert_eq!(
            b.recv().await.unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), other.recv())
                .await
                .is_err(),
            "room.2 got room.1's message"
        );
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_much_it_missed() {
        let bus = InProcessBus::new();
        let mut slow = bus.subscribe("t").await;
        for i in 0..(SUBSCRIBER_BUFFER + 10) {
            bus.publish("t", Bytes::from(i.to_string())).await.unwrap();
        }
        assert_eq!(slow.recv().await.unwrap(), Err(10));
    }

    #[tokio::test]
    async fn idle_topics_are_swept() {
        let bus = InProcessBus::new();
        drop(bus.subscribe("gone").await);
        let _keep = bus.subscribe("kept").await;
        let mut names = bus.local.topic_names();
        names.sort();
        assert_eq!(names, vec!["kept".to_owned()]);
    }
}
