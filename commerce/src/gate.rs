//! The gates in front of the database for the two contended things of a live room: flash-sale
//! stock and red-packet shares. A gate answers the crowd (sold out, limit reached, already
//! grabbed) without touching the database and lets only winners through to a transaction.
//!
//! Two implementations behind each trait, chosen at start-up: in-process (embedded mode; one
//! mutex-guarded [`StockGate`] per sale) and Redis (distributed mode; the same decisions in Lua
//! scripts, so every node shares one count). The database stays the authority — the order insert
//! itself checks `sold + qty <= stock`, a share is claimed with `grabbed_by IS NULL` under a
//! unique (packet, user) — so a gate that lost its state (a restart, a flushed Redis) is reloaded
//! from the database and can never make the database oversell.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use redis::aio::ConnectionManager;

use crate::core::stock::{Phase, Refusal, SaleWindow, StockGate};

/// What a gate needs to know of a flash sale.
#[derive(Debug, Clone, Copy)]
pub struct SaleSpec {
    pub id: i64,
    pub stock: u32,
    pub per_user_limit: u32,
    pub window: SaleWindow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    Reserved {
        remaining: u32,
    },
    /// Refused; `holds` when the user already holds units of this sale (a retry of theirs may
    /// be answered with their order).
    Refused {
        refusal: Refusal,
        holds: bool,
    },
    /// The gate does not know the sale (yet): load it from the database and ask again.
    NotLoaded,
}

#[async_trait::async_trait]
pub trait SaleGates: Send + Sync {
    /// Makes the sale known with what is already taken per user; a sale already known is left
    /// as it is (another request or node loaded it first).
    async fn load(&self, sale: &SaleSpec, taken: &[(i64, u32)]) -> anyhow::Result<()>;
    async fn reserve(
        &self,
        sale: &SaleSpec,
        now: i64,
        user: i64,
        qty: u32,
    ) -> anyhow::Result<Reserve>;
    /// Gives a reservation back (its order failed, was cancelled or expired).
    async fn release(&self, sale: i64, user: i64, qty: u32) -> anyhow::Result<()>;
    /// Stock left, when the gate knows the sale.
    async fn remaining(&self, sale: i64) -> anyhow::Result<Option<u32>>;
    async fn forget(&self, sale: i64) -> anyhow::Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grab {
    Share { idx: u32 },
    Already,
    Empty,
    NotLoaded,
}

#[async_trait::async_trait]
pub trait PacketGates: Send + Sync {
    /// Makes the packet known: the shares still free (in grab order) and who has grabbed.
    async fn load(
        &self,
        packet: i64,
        free: &[u32],
        grabbed: &[i64],
        expires_at: i64,
    ) -> anyhow::Result<()>;
    async fn grab(&self, packet: i64, user: i64) -> anyhow::Result<Grab>;
    /// Puts a share back at the front (its database write failed).
    async fn release(&self, packet: i64, user: i64, idx: u32) -> anyhow::Result<()>;
    async fn forget(&self, packet: i64) -> anyhow::Result<()>;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a panic while holding plain counters; they are still consistent
    // because every update is a single step.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Embedded mode: gates in this process.
#[derive(Debug, Default)]
pub struct LocalSales {
    sales: Mutex<HashMap<i64, StockGate>>,
}

#[async_trait::async_trait]
impl SaleGates for LocalSales {
    async fn load(&self, sale: &SaleSpec, taken: &[(i64, u32)]) -> anyhow::Result<()> {
        let mut sales = lock(&self.sales);
        sales.entry(sale.id).or_insert_with(|| {
            taken.iter().fold(
                StockGate::new(sale.stock, sale.per_user_limit, sale.window),
                |gate, &(user, qty)| gate.with_taken(user, qty),
            )
        });
        Ok(())
    }

    async fn reserve(
        &self,
        sale: &SaleSpec,
        now: i64,
        user: i64,
        qty: u32,
    ) -> anyhow::Result<Reserve> {
        let mut sales = lock(&self.sales);
        let Some(gate) = sales.get_mut(&sale.id) else {
            return Ok(Reserve::NotLoaded);
        };
        Ok(match gate.try_reserve(now, user, qty) {
            Ok(remaining) => Reserve::Reserved { remaining },
            Err(refusal) => Reserve::Refused {
                refusal,
                holds: gate.taken_by(user) > 0,
            },
        })
    }

    async fn release(&self, sale: i64, user: i64, qty: u32) -> anyhow::Result<()> {
        if let Some(gate) = lock(&self.sales).get_mut(&sale) {
            gate.release(user, qty);
        }
        Ok(())
    }

    async fn remaining(&self, sale: i64) -> anyhow::Result<Option<u32>> {
        Ok(lock(&self.sales).get(&sale).map(StockGate::remaining))
    }

    async fn forget(&self, sale: i64) -> anyhow::Result<()> {
        lock(&self.sales).remove(&sale);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct PacketState {
    free: VecDeque<u32>,
    grabbed: HashSet<i64>,
}

/// Embedded mode: red-packet shares in this process.
#[derive(Debug, Default)]
pub struct LocalPackets {
    packets: Mutex<HashMap<i64, PacketState>>,
}

#[async_trait::async_trait]
impl PacketGates for LocalPackets {
    async fn load(
        &self,
        packet: i64,
        free: &[u32],
        grabbed: &[i64],
        _expires_at: i64,
    ) -> anyhow::Result<()> {
        lock(&self.packets)
            .entry(packet)
            .or_insert_with(|| PacketState {
                free: free.iter().copied().collect(),
                grabbed: grabbed.iter().copied().collect(),
            });
        Ok(())
    }

    async fn grab(&self, packet: i64, user: i64) -> anyhow::Result<Grab> {
        let mut packets = lock(&self.packets);
        let Some(state) = packets.get_mut(&packet) else {
            return Ok(Grab::NotLoaded);
        };
        if state.grabbed.contains(&user) {
            return Ok(Grab::Already);
        }
        Ok(match state.free.pop_front() {
            Some(idx) => {
                state.grabbed.insert(user);
                Grab::Share { idx }
            }
            None => Grab::Empty,
        })
    }

    async fn release(&self, packet: i64, user: i64, idx: u32) -> anyhow::Result<()> {
        if let Some(state) = lock(&self.packets).get_mut(&packet) {
            state.grabbed.remove(&user);
            state.free.push_front(idx);
        }
        Ok(())
    }

    async fn forget(&self, packet: i64) -> anyhow::Result<()> {
        lock(&self.packets).remove(&packet);
        Ok(())
    }
}

/// Keys live a day past their sale or packet; the database keeps the record.
const KEY_GRACE_MS: i64 = 86_400_000;

const SALE_LOAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[2], '_', 0)
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
return 1
";

/// -3: not loaded, -2: limit reached, -1: sold out (-4: sold out, the user holds some), else
/// the stock left.
const SALE_RESERVE: &str = r"
local stock = redis.call('GET', KEYS[1])
if not stock then return -3 end
local qty = tonumber(ARGV[2])
local taken = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if taken + qty > tonumber(ARGV[3]) then return -2 end
if tonumber(stock) < qty then
  if taken > 0 then return -4 end
  return -1
end
redis.call('HINCRBY', KEYS[2], ARGV[1], qty)
return redis.call('DECRBY', KEYS[1], qty)
";

const SALE_RELEASE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[2])
local left = redis.call('HINCRBY', KEYS[2], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
";

const PACKET_LOAD: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[2])
for i = 3, 2 + n do redis.call('RPUSH', KEYS[1], ARGV[i]) end
for i = 3 + n, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
redis.call('SET', KEYS[3], 1, 'PXAT', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], ARGV[1])
return 1
";

/// -3: not loaded, -2: already grabbed, -1: none left, else the share's index.
const PACKET_GRAB: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return -3 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return -2 end
local idx = redis.call('LPOP', KEYS[1])
if not idx then return -1 end
redis.call('SADD', KEYS[2], ARGV[1])
return tonumber(idx)
";

const PACKET_RELEASE: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[1], ARGV[2])
return 1
";

/// Distributed mode: the gates' state in Redis, changed only by the Lua scripts above.
pub struct RedisGates {
    conn: ConnectionManager,
    namespace: String,
    sale_load: redis::Script,
    sale_reserve: redis::Script,
    sale_release: redis::Script,
    packet_load: redis::Script,
    packet_grab: redis::Script,
    packet_release: redis::Script,
}

impl std::fmt::Debug for RedisGates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisGates")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisGates {
    pub async fn connect(url: &str, namespace: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        // The library's default 500 ms answer timeout is shorter than a loaded box can need
        // for a script, and a reserve that timed out has usually run: 2 s, like the bus.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            namespace: namespace.to_owned(),
            sale_load: redis::Script::new(SALE_LOAD),
            sale_reserve: redis::Script::new(SALE_RESERVE),
            sale_release: redis::Script::new(SALE_RELEASE),
            packet_load: redis::Script::new(PACKET_LOAD),
            packet_grab: redis::Script::new(PACKET_GRAB),
            packet_release: redis::Script::new(PACKET_RELEASE),
        })
    }

    fn sale_keys(&self, sale: i64) -> [String; 2] {
        let ns = &self.namespace;
        [
            format!("{ns}:sale:{sale}:stock"),
            format!("{ns}:sale:{sale}:taken"),
        ]
    }

    fn packet_keys(&self, packet: i64) -> [String; 3] {
        let ns = &self.namespace;
        [
            format!("{ns}:packet:{packet}:free"),
            format!("{ns}:packet:{packet}:grabbed"),
            format!("{ns}:packet:{packet}:loaded"),
        ]
    }
}

#[async_trait::async_trait]
impl SaleGates for RedisGates {
    async fn load(&self, sale: &SaleSpec, taken: &[(i64, u32)]) -> anyhow::Result<()> {
        let [stock_key, taken_key] = self.sale_keys(sale.id);
        let used: u32 = taken.iter().map(|t| t.1).sum();
        let mut invocation = self.sale_load.key(stock_key);
        invocation
            .key(taken_key)
            .arg(sale.stock.saturating_sub(used))
            .arg(sale.window.ends_at + KEY_GRACE_MS);
        for (user, qty) in taken {
            invocation.arg(user).arg(qty);
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn reserve(
        &self,
        sale: &SaleSpec,
        now: i64,
        user: i64,
        qty: u32,
    ) -> anyhow::Result<Reserve> {
        // The window and the quantity are the sale's own facts: no need to ask Redis.
        let refused = |refusal, holds| Ok(Reserve::Refused { refusal, holds });
        match sale.window.phase(now) {
            // After the end the user may hold units; the caller looks their order up.
            Phase::Ended => return refused(Refusal::Ended, true),
            Phase::Upcoming => return refused(Refusal::NotOpen, false),
            Phase::Open if qty == 0 => return refused(Refusal::BadQuantity, false),
            Phase::Open => {}
        }
        let [stock_key, taken_key] = self.sale_keys(sale.id);
        let answer: i64 = self
            .sale_reserve
            .key(stock_key)
            .key(taken_key)
            .arg(user)
            .arg(qty)
            .arg(sale.per_user_limit)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match answer {
            -3 => Reserve::NotLoaded,
            -2 => Reserve::Refused {
                refusal: Refusal::LimitReached,
                holds: true,
            },
            -1 | -4 => Reserve::Refused {
                refusal: Refusal::SoldOut,
                holds: answer == -4,
            },
            left => Reserve::Reserved {
                remaining: u32::try_from(left).unwrap_or_default(),
            },
        })
    }

    async fn release(&self, sale: i64, user: i64, qty: u32) -> anyhow::Result<()> {
        let [stock_key, taken_key] = self.sale_keys(sale);
        let _: i64 = self
            .sale_release
            .key(stock_key)
            .key(taken_key)
            .arg(user)
            .arg(qty)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn remaining(&self, sale: i64) -> anyhow::Result<Option<u32>> {
        let [stock_key, _] = self.sale_keys(sale);
        let left: Option<i64> = redis::cmd("GET")
            .arg(stock_key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(left.map(|l| u32::try_from(l).unwrap_or_default()))
    }

    async fn forget(&self, sale: i64) -> anyhow::Result<()> {
        let keys = self.sale_keys(sale);
        let _: i64 = redis::cmd("DEL")
            .arg(&keys[..])
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl PacketGates for RedisGates {
    async fn load(
        &self,
        packet: i64,
        free: &[u32],
        grabbed: &[i64],
        expires_at: i64,
    ) -> anyhow::Result<()> {
        let [free_key, grabbed_key, loaded_key] = self.packet_keys(packet);
        let mut invocation = self.packet_load.key(free_key);
        invocation
            .key(grabbed_key)
            .key(loaded_key)
            .arg(expires_at + KEY_GRACE_MS)
            .arg(free.len());
        for idx in free {
            invocation.arg(idx);
        }
        for user in grabbed {
            invocation.arg(user);
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn grab(&self, packet: i64, user: i64) -> anyhow::Result<Grab> {
        let [free_key, grabbed_key, loaded_key] = self.packet_keys(packet);
        let answer: i64 = self
            .packet_grab
            .key(free_key)
            .key(grabbed_key)
            .key(loaded_key)
            .arg(user)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match answer {
            -3 => Grab::NotLoaded,
            -2 => Grab::Already,
            -1 => Grab::Empty,
            idx => Grab::Share {
                idx: u32::try_from(idx).unwrap_or_default(),
            },
        })
    }

    async fn release(&self, packet: i64, user: i64, idx: u32) -> anyhow::Result<()> {
        let [free_key, grabbed_key, loaded_key] = self.packet_keys(packet);
        let _: i64 = self
            .packet_release
            .key(free_key)
            .key(grabbed_key)
            .key(loaded_key)
            .arg(user)
            .arg(idx)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn forget(&self, packet: i64) -> anyhow::Result<()> {
        let keys = self.packet_keys(packet);
        let _: i64 = redis::cmd("DEL")
            .arg(&keys[..])
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
