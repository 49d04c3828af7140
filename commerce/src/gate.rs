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
//!
//! **Holds (Redis only).** A Redis gate outlives the node that reserved in it: a node that dies
//! between a reservation and its database write would leave the units (or the share, and the
//! user's grab) taken for good. So every reservation is recorded, in the same script call that
//! takes it, as a *hold* — who, under which key, how much, when, and a random token naming the
//! attempt — until the attempt settles: its write committed ([`SaleSettle::Committed`]), it
//! was given back ([`SaleSettle::Release`]) or a retry of the same key took it over
//! ([`SaleSettle::TakeOver`]). Every settle names the token it expects, so only the attempt
//! that holds a reservation settles it. The writers check that they still hold their holds
//! (`owned`) inside their transaction, after locking the sale's or packet's row; whoever
//! releases or takes over a hold of another attempt (the sweeper, a retry) does so under the
//! same row lock after asking the database. That lock is the fence: a hold is never released
//! while its write can still commit. In-process gates die with their node and everything in
//! flight, so they keep no holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use foundation::{ApiError, ErrorCode};
use redis::aio::ConnectionManager;

use crate::core::stock::{Phase, Refusal, SaleWindow, StockGate};

/// A hold older than this is presumed abandoned: the sweeper asks the database whether its
/// write was committed and releases it if not (under the row lock, so a write that is only
/// slow is never released — it finds its hold gone and fails instead). A live attempt settles
/// its hold within its own request: the writer's queue and transaction take milliseconds to a
/// second under a burst, and the slowest failures are bounded by the database pool's 10 s
/// acquire timeout and Redis's 2 s answer timeout; HTTP clients give up well before 30 s. The
/// bound only decides how long an abandoned unit or share stays out of the sale (a retry of
/// the same key takes it over at once); safety comes from the lock, not from the clock.
pub const HOLD_RECLAIM_AFTER_MS: i64 = 30_000;

/// A repeated request that finds an attempt with its key still holding a reservation waits
/// for it up to this long after that attempt reserved (a double tap, a retry right after a
/// timeout: the first usually finishes in milliseconds), then takes its reservation over.
pub const IN_FLIGHT_WAIT_MS: i64 = 2_000;

/// A gate that could not answer.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unreadable gate entry {field:?} = {value:?}")]
    Malformed { field: String, value: String },
}

impl From<GateError> for ApiError {
    fn from(e: GateError) -> Self {
        tracing::warn!(error = %e, "gate unavailable");
        ApiError::new(ErrorCode::Unavailable)
    }
}

/// A fresh attempt token: 64 random bits, so two attempts never share one.
pub fn new_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// What a gate needs to know of a flash sale.
#[derive(Debug, Clone, Copy)]
pub struct SaleSpec {
    pub id: i64,
    pub stock: u32,
    pub per_user_limit: u32,
    pub window: SaleWindow,
}

/// One attempt's reservation in a flash sale: `qty` units for `user` under `key`, taken at
/// `at` (the attempt's time, which is also its order's `created_at`) by the attempt `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleHold {
    pub user: i64,
    pub key: String,
    pub qty: u32,
    pub at: i64,
    pub token: String,
}

impl SaleHold {
    pub fn new(user: i64, key: &str, qty: u32, at: i64) -> Self {
        Self {
            user,
            key: key.to_owned(),
            qty,
            at,
            token: new_token(),
        }
    }

    fn field(&self) -> String {
        format!("{}:{}", self.user, self.key)
    }

    /// `field` is `user:key`, `value` is `qty:at:token`.
    fn parse(field: &str, value: &str) -> Result<Self, GateError> {
        let malformed = || GateError::Malformed {
            field: field.to_owned(),
            value: value.to_owned(),
        };
        let (user, key) = field.split_once(':').ok_or_else(malformed)?;
        let mut parts = value.splitn(3, ':');
        let mut next = || parts.next().ok_or_else(malformed);
        let qty = next()?.parse().map_err(|_| malformed())?;
        let at = next()?.parse().map_err(|_| malformed())?;
        let token = next()?.to_owned();
        Ok(Self {
            user: user.parse().map_err(|_| malformed())?,
            key: key.to_owned(),
            qty,
            at,
            token,
        })
    }
}

/// How a sale's hold ends (or changes hands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleSettle {
    /// Its order is committed: the hold goes, the units stay taken.
    Committed,
    /// No order will come of it: the units go back to the sale and to the buyer's limit.
    Release,
    /// A retry of the same key takes the reservation over, as the attempt `token` at `at`.
    TakeOver { at: i64, token: String },
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
    /// An attempt with the same key holds a reservation already (Redis gates only): nothing
    /// was taken; its hold says who (`SaleGates::hold_of`).
    InFlight,
    /// The gate does not know the sale (yet): load it from the database and ask again.
    NotLoaded,
}

#[async_trait::async_trait]
pub trait SaleGates: Send + Sync {
    /// Makes the sale known with what is already taken per user; a sale already known is left
    /// as it is (another request or node loaded it first).
    async fn load(&self, sale: &SaleSpec, taken: &[(i64, u32)]) -> Result<(), GateError>;
    /// Reserves `hold.qty` units for `hold.user`, recording the hold (Redis).
    async fn reserve(
        &self,
        sale: &SaleSpec,
        now: i64,
        hold: &SaleHold,
    ) -> Result<Reserve, GateError>;
    /// Gives units of an order back (it was cancelled or expired).
    async fn release(&self, sale: i64, user: i64, qty: u32) -> Result<(), GateError>;
    /// Whether this gate keeps holds (then the writers fence and the sweeper reclaims).
    fn tracks_holds(&self) -> bool;
    /// Settles holds, each only if it is still held by its token: `true` for those settled.
    /// In-process gates keep no holds: `Release` gives the units back, the rest is a no-op.
    async fn settle(
        &self,
        sale: i64,
        holds: &[(&SaleHold, SaleSettle)],
    ) -> Result<Vec<bool>, GateError>;
    /// Whether each hold is still held by its token (always, in-process).
    async fn owned(&self, sale: i64, holds: &[&SaleHold]) -> Result<Vec<bool>, GateError>;
    /// The hold of `user`'s attempt under `key`, if one holds a reservation.
    async fn hold_of(&self, sale: i64, user: i64, key: &str)
    -> Result<Option<SaleHold>, GateError>;
    /// Holds taken at or before `before`.
    async fn stale(&self, sale: i64, before: i64) -> Result<Vec<SaleHold>, GateError>;
    /// Stock left, when the gate knows the sale.
    async fn remaining(&self, sale: i64) -> Result<Option<u32>, GateError>;
    async fn forget(&self, sale: i64) -> Result<(), GateError>;
}

/// One grab's share of a red packet: share `idx` for `user`, taken at `at` by the attempt
/// `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrabHold {
    pub user: i64,
    pub idx: u32,
    pub at: i64,
    pub token: String,
}

impl GrabHold {
    /// `field` is the user, `value` is `idx:at:token`.
    fn parse(field: &str, value: &str) -> Result<Self, GateError> {
        let malformed = || GateError::Malformed {
            field: field.to_owned(),
            value: value.to_owned(),
        };
        let mut parts = value.splitn(3, ':');
        let mut next = || parts.next().ok_or_else(malformed);
        let idx = next()?.parse().map_err(|_| malformed())?;
        let at = next()?.parse().map_err(|_| malformed())?;
        let token = next()?.to_owned();
        Ok(Self {
            user: field.parse().map_err(|_| malformed())?,
            idx,
            at,
            token,
        })
    }
}

/// How a grab's hold ends (or changes hands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrabSettle {
    /// The share is written to the user: the hold goes.
    Written,
    /// Nothing was written: the share goes back to the front, the user may grab again.
    Release,
    /// The database says the user has another share: this one goes back, the user stays.
    ReturnShare,
    /// The database says the share is someone else's: the user may grab again, the share
    /// stays out.
    FreeUser,
    /// A retry of the same user takes the share over, as the attempt `token` at `at`.
    TakeOver { at: i64, token: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grab {
    Share {
        idx: u32,
    },
    Already,
    /// Already grabbed, and that grab is still held, not written (Redis gates only).
    Pending,
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
    ) -> Result<(), GateError>;
    /// Takes the next share for `user`, recording the hold of the attempt `token` at `at`
    /// (Redis).
    async fn grab(&self, packet: i64, user: i64, at: i64, token: &str) -> Result<Grab, GateError>;
    /// Whether this gate keeps holds (then the writer fences and the sweeper reclaims).
    fn tracks_holds(&self) -> bool;
    /// Settles holds, each only if still held by its token: `true` for those settled.
    /// In-process gates keep no holds: `Release` puts the share back at the front and lets the
    /// user grab again, the rest is a no-op.
    async fn settle(
        &self,
        packet: i64,
        holds: &[(&GrabHold, GrabSettle)],
    ) -> Result<Vec<bool>, GateError>;
    /// Whether each hold is still held by its token (always, in-process).
    async fn owned(&self, packet: i64, holds: &[&GrabHold]) -> Result<Vec<bool>, GateError>;
    async fn hold_of(&self, packet: i64, user: i64) -> Result<Option<GrabHold>, GateError>;
    /// Holds taken at or before `before`.
    async fn stale(&self, packet: i64, before: i64) -> Result<Vec<GrabHold>, GateError>;
    /// Whether the gate knows the packet.
    async fn is_loaded(&self, packet: i64) -> Result<bool, GateError>;
    async fn forget(&self, packet: i64) -> Result<(), GateError>;
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
    async fn load(&self, sale: &SaleSpec, taken: &[(i64, u32)]) -> Result<(), GateError> {
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
        hold: &SaleHold,
    ) -> Result<Reserve, GateError> {
        let mut sales = lock(&self.sales);
        let Some(gate) = sales.get_mut(&sale.id) else {
            return Ok(Reserve::NotLoaded);
        };
        Ok(match gate.try_reserve(now, hold.user, hold.qty) {
            Ok(remaining) => Reserve::Reserved { remaining },
            Err(refusal) => Reserve::Refused {
                refusal,
                holds: gate.taken_by(hold.user) > 0,
            },
        })
    }

    async fn release(&self, sale: i64, user: i64, qty: u32) -> Result<(), GateError> {
        if let Some(gate) = lock(&self.sales).get_mut(&sale) {
            gate.release(user, qty);
        }
        Ok(())
    }

    fn tracks_holds(&self) -> bool {
        false
    }

    async fn settle(
        &self,
        sale: i64,
        holds: &[(&SaleHold, SaleSettle)],
    ) -> Result<Vec<bool>, GateError> {
        for (hold, settle) in holds {
            if *settle == SaleSettle::Release {
                self.release(sale, hold.user, hold.qty).await?;
            }
        }
        Ok(vec![true; holds.len()])
    }

    async fn owned(&self, _sale: i64, holds: &[&SaleHold]) -> Result<Vec<bool>, GateError> {
        Ok(vec![true; holds.len()])
    }

    async fn hold_of(
        &self,
        _sale: i64,
        _user: i64,
        _key: &str,
    ) -> Result<Option<SaleHold>, GateError> {
        Ok(None)
    }

    async fn stale(&self, _sale: i64, _before: i64) -> Result<Vec<SaleHold>, GateError> {
        Ok(Vec::new())
    }

    async fn remaining(&self, sale: i64) -> Result<Option<u32>, GateError> {
        Ok(lock(&self.sales).get(&sale).map(StockGate::remaining))
    }

    async fn forget(&self, sale: i64) -> Result<(), GateError> {
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
    ) -> Result<(), GateError> {
        lock(&self.packets)
            .entry(packet)
            .or_insert_with(|| PacketState {
                free: free.iter().copied().collect(),
                grabbed: grabbed.iter().copied().collect(),
            });
        Ok(())
    }

    async fn grab(
        &self,
        packet: i64,
        user: i64,
        _at: i64,
        _token: &str,
    ) -> Result<Grab, GateError> {
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

    fn tracks_holds(&self) -> bool {
        false
    }

    async fn settle(
        &self,
        packet: i64,
        holds: &[(&GrabHold, GrabSettle)],
    ) -> Result<Vec<bool>, GateError> {
        if let Some(state) = lock(&self.packets).get_mut(&packet) {
            for (hold, settle) in holds {
                if *settle == GrabSettle::Release {
                    state.grabbed.remove(&hold.user);
                    state.free.push_front(hold.idx);
                }
            }
        }
        Ok(vec![true; holds.len()])
    }

    async fn owned(&self, _packet: i64, holds: &[&GrabHold]) -> Result<Vec<bool>, GateError> {
        Ok(vec![true; holds.len()])
    }

    async fn hold_of(&self, _packet: i64, _user: i64) -> Result<Option<GrabHold>, GateError> {
        Ok(None)
    }

    async fn stale(&self, _packet: i64, _before: i64) -> Result<Vec<GrabHold>, GateError> {
        Ok(Vec::new())
    }

    async fn is_loaded(&self, packet: i64) -> Result<bool, GateError> {
        Ok(lock(&self.packets).contains_key(&packet))
    }

    async fn forget(&self, packet: i64) -> Result<(), GateError> {
        lock(&self.packets).remove(&packet);
        Ok(())
    }
}

/// Keys live a day past their sale or packet; the database keeps the record.
const KEY_GRACE_MS: i64 = 86_400_000;

/// KEYS: stock, taken, holds. A reload starts from the database alone: what an older taken
/// hash or older holds said is dropped (writes still holding those find them gone and fail).
const SALE_LOAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[2], '_', 0)
redis.call('HSET', KEYS[3], '_', 0)
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
redis.call('PEXPIREAT', KEYS[3], ARGV[2])
return 1
";

/// KEYS: stock, taken, holds; ARGV: user, qty, limit, key, `at:token`.
/// -5: an attempt with this key holds units already, -3: not loaded, -2: limit reached,
/// -1: sold out (-4: sold out, the user holds some), else the stock left (and the hold
/// `user:key` → `qty:at:token` is recorded with the units).
const SALE_RESERVE: &str = r"
local stock = redis.call('GET', KEYS[1])
if not stock then return -3 end
local field = ARGV[1] .. ':' .. ARGV[4]
if redis.call('HEXISTS', KEYS[3], field) == 1 then return -5 end
local qty = tonumber(ARGV[2])
local taken = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if taken + qty > tonumber(ARGV[3]) then return -2 end
if tonumber(stock) < qty then
  if taken > 0 then return -4 end
  return -1
end
redis.call('HINCRBY', KEYS[2], ARGV[1], qty)
redis.call('HSET', KEYS[3], field, ARGV[2] .. ':' .. ARGV[5])
return redis.call('DECRBY', KEYS[1], qty)
";

/// KEYS: stock, taken. An order's units back (cancelled or expired): no hold involved.
const SALE_RELEASE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[2])
local left = redis.call('HINCRBY', KEYS[2], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
";

/// KEYS: stock, taken, holds; ARGV: per hold user, key, token, action (`c` committed,
/// `r` release, `t` take over), the new `at:token` (take over; else empty). Each hold is
/// settled only while `token` holds it; the answer says which were (1) or not (0).
const SALE_SETTLE: &str = r"
local out = {}
for i = 1, #ARGV, 5 do
  local field = ARGV[i] .. ':' .. ARGV[i + 1]
  local held = redis.call('HGET', KEYS[3], field)
  local done = 0
  if held then
    local qty, token = string.match(held, '^(%d+):%-?%d+:(%w+)$')
    if token and token == ARGV[i + 2] then
      done = 1
      local action = ARGV[i + 3]
      if action == 't' then
        redis.call('HSET', KEYS[3], field, qty .. ':' .. ARGV[i + 4])
      else
        redis.call('HDEL', KEYS[3], field)
        if action == 'r' and redis.call('EXISTS', KEYS[1]) == 1 then
          redis.call('INCRBY', KEYS[1], qty)
          local left = redis.call('HINCRBY', KEYS[2], ARGV[i], -tonumber(qty))
          if left <= 0 then redis.call('HDEL', KEYS[2], ARGV[i]) end
        end
      end
    end
  end
  out[#out + 1] = done
end
return out
";

/// KEYS: a holds hash; ARGV: the cut-off time. The holds taken at or before it, as
/// field, value pairs (the `_` placeholder left out).
const HOLDS_STALE: &str = r"
local out = {}
local all = redis.call('HGETALL', KEYS[1])
local before = tonumber(ARGV[1])
for i = 1, #all, 2 do
  if all[i] ~= '_' then
    local at = tonumber(string.match(all[i + 1], '^%d+:(%-?%d+):'))
    if at and at <= before then
      out[#out + 1] = all[i]
      out[#out + 1] = all[i + 1]
    end
  end
end
return out
";

/// KEYS: free, grabbed, loaded, holds.
const PACKET_LOAD: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
local n = tonumber(ARGV[2])
for i = 3, 2 + n do redis.call('RPUSH', KEYS[1], ARGV[i]) end
for i = 3 + n, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[4], '_', 0)
redis.call('SET', KEYS[3], 1, 'PXAT', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[4], ARGV[1])
return 1
";

/// KEYS: free, grabbed, loaded, holds; ARGV: user, `at:token`.
/// -4: already grabbed and that grab is still held, -3: not loaded, -2: already grabbed,
/// -1: none left, else the share's index (and the hold `user` → `idx:at:token` is recorded).
const PACKET_GRAB: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return -3 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return -4 end
  return -2
end
local idx = redis.call('LPOP', KEYS[1])
if not idx then return -1 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], idx .. ':' .. ARGV[2])
return tonumber(idx)
";

/// KEYS: free, grabbed, loaded, holds; ARGV: per hold user, token, action (`w` written,
/// `r` release, `s` return the share, `u` free the user, `t` take over), the new `at:token`
/// (take over; else empty). Settled only while `token` holds it: 1, else 0.
const PACKET_SETTLE: &str = r"
local out = {}
for i = 1, #ARGV, 4 do
  local held = redis.call('HGET', KEYS[4], ARGV[i])
  local done = 0
  if held then
    local idx, token = string.match(held, '^(%d+):%-?%d+:(%w+)$')
    if token and token == ARGV[i + 1] then
      done = 1
      local action = ARGV[i + 2]
      if action == 't' then
        redis.call('HSET', KEYS[4], ARGV[i], idx .. ':' .. ARGV[i + 3])
      else
        redis.call('HDEL', KEYS[4], ARGV[i])
        if redis.call('EXISTS', KEYS[3]) == 1 then
          if action == 'r' or action == 'u' then redis.call('SREM', KEYS[2], ARGV[i]) end
          if action == 'r' or action == 's' then redis.call('LPUSH', KEYS[1], idx) end
        end
      end
    end
  end
  out[#out + 1] = done
end
return out
";

/// Distributed mode: the gates' state in Redis, changed only by the Lua scripts above.
pub struct RedisGates {
    conn: ConnectionManager,
    namespace: String,
    sale_load: redis::Script,
    sale_reserve: redis::Script,
    sale_release: redis::Script,
    sale_settle: redis::Script,
    holds_stale: redis::Script,
    packet_load: redis::Script,
    packet_grab: redis::Script,
    packet_settle: redis::Script,
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
            sale_settle: redis::Script::new(SALE_SETTLE),
            holds_stale: redis::Script::new(HOLDS_STALE),
            packet_load: redis::Script::new(PACKET_LOAD),
            packet_grab: redis::Script::new(PACKET_GRAB),
            packet_settle: redis::Script::new(PACKET_SETTLE),
        })
    }

    fn sale_keys(&self, sale: i64) -> [String; 3] {
        let ns = &self.namespace;
        [
            format!("{ns}:sale:{sale}:stock"),
            format!("{ns}:sale:{sale}:taken"),
            format!("{ns}:sale:{sale}:holds"),
        ]
    }

    fn packet_keys(&self, packet: i64) -> [String; 4] {
        let ns = &self.namespace;
        [
            format!("{ns}:packet:{packet}:free"),
            format!("{ns}:packet:{packet}:grabbed"),
            format!("{ns}:packet:{packet}:loaded"),
            format!("{ns}:packet:{packet}:holds"),
        ]
    }

    /// The values of `fields` in the hash `key` (one round trip).
    async fn hash_values(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<String>>, GateError> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        Ok(redis::cmd("HMGET")
            .arg(key)
            .arg(fields)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// `field, value` pairs of the holds in `key` taken at or before `before`.
    async fn stale_pairs(&self, key: String, before: i64) -> Result<Vec<String>, GateError> {
        Ok(self
            .holds_stale
            .key(key)
            .arg(before)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }
}

/// The token of a hold's value `…:…:token`.
fn token_of(value: &str) -> Option<&str> {
    value.splitn(3, ':').nth(2)
}

#[async_trait::async_trait]
impl SaleGates for RedisGates {
    async fn load(&self, sale: &SaleSpec, taken: &[(i64, u32)]) -> Result<(), GateError> {
        let [stock_key, taken_key, holds_key] = self.sale_keys(sale.id);
        let used: u32 = taken.iter().map(|t| t.1).sum();
        let mut invocation = self.sale_load.key(stock_key);
        invocation
            .key(taken_key)
            .key(holds_key)
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
        hold: &SaleHold,
    ) -> Result<Reserve, GateError> {
        // The window and the quantity are the sale's own facts: no need to ask Redis.
        let refused = |refusal, holds| Ok(Reserve::Refused { refusal, holds });
        match sale.window.phase(now) {
            // After the end the user may hold units; the caller looks their order up.
            Phase::Ended => return refused(Refusal::Ended, true),
            Phase::Upcoming => return refused(Refusal::NotOpen, false),
            Phase::Open if hold.qty == 0 => return refused(Refusal::BadQuantity, false),
            Phase::Open => {}
        }
        let [stock_key, taken_key, holds_key] = self.sale_keys(sale.id);
        let answer: i64 = self
            .sale_reserve
            .key(stock_key)
            .key(taken_key)
            .key(holds_key)
            .arg(hold.user)
            .arg(hold.qty)
            .arg(sale.per_user_limit)
            .arg(&hold.key)
            .arg(format!("{}:{}", hold.at, hold.token))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match answer {
            -5 => Reserve::InFlight,
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

    async fn release(&self, sale: i64, user: i64, qty: u32) -> Result<(), GateError> {
        let [stock_key, taken_key, _] = self.sale_keys(sale);
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

    fn tracks_holds(&self) -> bool {
        true
    }

    async fn settle(
        &self,
        sale: i64,
        holds: &[(&SaleHold, SaleSettle)],
    ) -> Result<Vec<bool>, GateError> {
        if holds.is_empty() {
            return Ok(Vec::new());
        }
        let [stock_key, taken_key, holds_key] = self.sale_keys(sale);
        let mut invocation = self.sale_settle.key(stock_key);
        invocation.key(taken_key).key(holds_key);
        for (hold, settle) in holds {
            invocation.arg(hold.user).arg(&hold.key).arg(&hold.token);
            match settle {
                SaleSettle::Committed => invocation.arg("c").arg(""),
                SaleSettle::Release => invocation.arg("r").arg(""),
                SaleSettle::TakeOver { at, token } => {
                    invocation.arg("t").arg(format!("{at}:{token}"))
                }
            };
        }
        let done: Vec<i64> = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(done.into_iter().map(|d| d == 1).collect())
    }

    async fn owned(&self, sale: i64, holds: &[&SaleHold]) -> Result<Vec<bool>, GateError> {
        let [_, _, holds_key] = self.sale_keys(sale);
        let fields: Vec<String> = holds.iter().map(|h| h.field()).collect();
        let values = self.hash_values(&holds_key, &fields).await?;
        Ok(holds
            .iter()
            .zip(values)
            .map(|(hold, value)| value.as_deref().and_then(token_of) == Some(hold.token.as_str()))
            .collect())
    }

    async fn hold_of(
        &self,
        sale: i64,
        user: i64,
        key: &str,
    ) -> Result<Option<SaleHold>, GateError> {
        let [_, _, holds_key] = self.sale_keys(sale);
        let field = format!("{user}:{key}");
        let value: Option<String> = redis::cmd("HGET")
            .arg(holds_key)
            .arg(&field)
            .query_async(&mut self.conn.clone())
            .await?;
        value.map(|v| SaleHold::parse(&field, &v)).transpose()
    }

    async fn stale(&self, sale: i64, before: i64) -> Result<Vec<SaleHold>, GateError> {
        let [_, _, holds_key] = self.sale_keys(sale);
        let pairs = self.stale_pairs(holds_key, before).await?;
        pairs
            .chunks_exact(2)
            .map(|pair| SaleHold::parse(&pair[0], &pair[1]))
            .collect()
    }

    async fn remaining(&self, sale: i64) -> Result<Option<u32>, GateError> {
        let [stock_key, _, _] = self.sale_keys(sale);
        let left: Option<i64> = redis::cmd("GET")
            .arg(stock_key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(left.map(|l| u32::try_from(l).unwrap_or_default()))
    }

    async fn forget(&self, sale: i64) -> Result<(), GateError> {
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
    ) -> Result<(), GateError> {
        let [free_key, grabbed_key, loaded_key, holds_key] = self.packet_keys(packet);
        let mut invocation = self.packet_load.key(free_key);
        invocation
            .key(grabbed_key)
            .key(loaded_key)
            .key(holds_key)
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

    async fn grab(&self, packet: i64, user: i64, at: i64, token: &str) -> Result<Grab, GateError> {
        let [free_key, grabbed_key, loaded_key, holds_key] = self.packet_keys(packet);
        let answer: i64 = self
            .packet_grab
            .key(free_key)
            .key(grabbed_key)
            .key(loaded_key)
            .key(holds_key)
            .arg(user)
            .arg(format!("{at}:{token}"))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match answer {
            -4 => Grab::Pending,
            -3 => Grab::NotLoaded,
            -2 => Grab::Already,
            -1 => Grab::Empty,
            idx => Grab::Share {
                idx: u32::try_from(idx).unwrap_or_default(),
            },
        })
    }

    fn tracks_holds(&self) -> bool {
        true
    }

    async fn settle(
        &self,
        packet: i64,
        holds: &[(&GrabHold, GrabSettle)],
    ) -> Result<Vec<bool>, GateError> {
        if holds.is_empty() {
            return Ok(Vec::new());
        }
        let [free_key, grabbed_key, loaded_key, holds_key] = self.packet_keys(packet);
        let mut invocation = self.packet_settle.key(free_key);
        invocation.key(grabbed_key).key(loaded_key).key(holds_key);
        for (hold, settle) in holds {
            invocation.arg(hold.user).arg(&hold.token);
            match settle {
                GrabSettle::Written => invocation.arg("w").arg(""),
                GrabSettle::Release => invocation.arg("r").arg(""),
                GrabSettle::ReturnShare => invocation.arg("s").arg(""),
                GrabSettle::FreeUser => invocation.arg("u").arg(""),
                GrabSettle::TakeOver { at, token } => {
                    invocation.arg("t").arg(format!("{at}:{token}"))
                }
            };
        }
        let done: Vec<i64> = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(done.into_iter().map(|d| d == 1).collect())
    }

    async fn owned(&self, packet: i64, holds: &[&GrabHold]) -> Result<Vec<bool>, GateError> {
        let [_, _, _, holds_key] = self.packet_keys(packet);
        let fields: Vec<String> = holds.iter().map(|h| h.user.to_string()).collect();
        let values = self.hash_values(&holds_key, &fields).await?;
        Ok(holds
            .iter()
            .zip(values)
            .map(|(hold, value)| value.as_deref().and_then(token_of) == Some(hold.token.as_str()))
            .collect())
    }

    async fn hold_of(&self, packet: i64, user: i64) -> Result<Option<GrabHold>, GateError> {
        let [_, _, _, holds_key] = self.packet_keys(packet);
        let field = user.to_string();
        let value: Option<String> = redis::cmd("HGET")
            .arg(holds_key)
            .arg(&field)
            .query_async(&mut self.conn.clone())
            .await?;
        value.map(|v| GrabHold::parse(&field, &v)).transpose()
    }

    async fn stale(&self, packet: i64, before: i64) -> Result<Vec<GrabHold>, GateError> {
        let [_, _, _, holds_key] = self.packet_keys(packet);
        let pairs = self.stale_pairs(holds_key, before).await?;
        pairs
            .chunks_exact(2)
            .map(|pair| GrabHold::parse(&pair[0], &pair[1]))
            .collect()
    }

    async fn is_loaded(&self, packet: i64) -> Result<bool, GateError> {
        let [_, _, loaded_key, _] = self.packet_keys(packet);
        let exists: i64 = redis::cmd("EXISTS")
            .arg(loaded_key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(exists == 1)
    }

    async fn forget(&self, packet: i64) -> Result<(), GateError> {
        let keys = self.packet_keys(packet);
        let _: i64 = redis::cmd("DEL")
            .arg(&keys[..])
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The Lua scripts against a real Redis (`TEST_REDIS_URL`, default redis://127.0.0.1:6379,
    //! which `make test` starts; a missing Redis fails these tests, as everywhere else), each
    //! test in a namespace of its own.

    use super::*;

    async fn gates() -> RedisGates {
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let namespace = format!("gate-test-{}", new_token());
        RedisGates::connect(&url, &namespace)
            .await
            .expect("Redis must run at TEST_REDIS_URL (make test starts it)")
    }

    fn spec(stock: u32, limit: u32) -> SaleSpec {
        SaleSpec {
            id: 7,
            stock,
            per_user_limit: limit,
            window: SaleWindow {
                starts_at: 0,
                ends_at: 4_000_000_000_000,
            },
        }
    }

    #[test]
    fn holds_parse_back() {
        let hold = SaleHold::new(12, "key-1_x", 2, 1_750_000_000_123);
        let value = format!("{}:{}:{}", hold.qty, hold.at, hold.token);
        assert_eq!(SaleHold::parse(&hold.field(), &value).ok(), Some(hold));
        assert!(SaleHold::parse("12", "1:2:t").is_err(), "no key");
        assert!(SaleHold::parse("12:k", "x:2:t").is_err(), "bad qty");
        assert!(SaleHold::parse("12:k", "1:2").is_err(), "no token");
        let grab = GrabHold::parse("12", "3:-5:abc").ok();
        assert_eq!(
            grab,
            Some(GrabHold {
                user: 12,
                idx: 3,
                at: -5,
                token: "abc".into()
            })
        );
        assert_ne!(new_token(), new_token());
    }

    #[tokio::test]
    async fn a_reservation_is_held_until_it_settles() {
        let redis = gates().await;
        let gates: &dyn SaleGates = &redis;
        let sale = spec(3, 2);
        gates.load(&sale, &[]).await.unwrap();
        let first = SaleHold::new(1, "a", 1, 100);
        assert_eq!(
            gates.reserve(&sale, 100, &first).await.unwrap(),
            Reserve::Reserved { remaining: 2 }
        );
        // The same key again: nothing more is taken, the hold says who has it.
        let again = SaleHold::new(1, "a", 1, 150);
        assert_eq!(
            gates.reserve(&sale, 150, &again).await.unwrap(),
            Reserve::InFlight
        );
        assert_eq!(gates.remaining(sale.id).await.unwrap(), Some(2));
        assert_eq!(
            gates.hold_of(sale.id, 1, "a").await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(
            gates.owned(sale.id, &[&first, &again]).await.unwrap(),
            vec![true, false]
        );
        // Only the holder settles: another token changes nothing.
        assert_eq!(
            gates
                .settle(sale.id, &[(&again, SaleSettle::Release)])
                .await
                .unwrap(),
            vec![false]
        );
        assert_eq!(gates.remaining(sale.id).await.unwrap(), Some(2));
        // Committed: the hold goes, the units stay with the buyer.
        assert_eq!(
            gates
                .settle(sale.id, &[(&first, SaleSettle::Committed)])
                .await
                .unwrap(),
            vec![true]
        );
        assert_eq!(gates.hold_of(sale.id, 1, "a").await.unwrap(), None);
        assert_eq!(gates.remaining(sale.id).await.unwrap(), Some(2));
        let second = SaleHold::new(1, "b", 1, 200);
        assert!(matches!(
            gates.reserve(&sale, 200, &second).await.unwrap(),
            Reserve::Reserved { remaining: 1 }
        ));
        let third = SaleHold::new(1, "c", 1, 210);
        assert_eq!(
            gates.reserve(&sale, 210, &third).await.unwrap(),
            Reserve::Refused {
                refusal: Refusal::LimitReached,
                holds: true
            }
        );
        // Released: the units are back in the sale and in the buyer's limit.
        assert_eq!(
            gates
                .settle(sale.id, &[(&second, SaleSettle::Release)])
                .await
                .unwrap(),
            vec![true]
        );
        assert_eq!(gates.remaining(sale.id).await.unwrap(), Some(2));
        assert!(matches!(
            gates.reserve(&sale, 220, &third).await.unwrap(),
            Reserve::Reserved { remaining: 1 }
        ));
        // Settling twice does nothing the second time.
        assert_eq!(
            gates
                .settle(sale.id, &[(&second, SaleSettle::Release)])
                .await
                .unwrap(),
            vec![false]
        );
        assert_eq!(gates.remaining(sale.id).await.unwrap(), Some(1));
        gates.forget(sale.id).await.unwrap();
    }

    #[tokio::test]
    async fn a_retry_takes_a_hold_over_and_stale_holds_are_found() {
        let redis = gates().await;
        let gates: &dyn SaleGates = &redis;
        let sale = spec(2, 1);
        gates.load(&sale, &[]).await.unwrap();
        let lost = SaleHold::new(5, "k", 1, 1_000);
        let fresh = SaleHold::new(6, "k", 1, 40_000);
        for hold in [&lost, &fresh] {
            assert!(matches!(
                gates.reserve(&sale, hold.at, hold).await.unwrap(),
                Reserve::Reserved { .. }
            ));
        }
        assert_eq!(
            gates.stale(sale.id, 10_000).await.unwrap(),
            vec![lost.clone()]
        );
        // Sold out: a retry of the lost attempt still finds its hold, and takes it over.
        let retry = SaleHold::new(5, "k", 1, 50_000);
        assert_eq!(
            gates.reserve(&sale, 50_000, &retry).await.unwrap(),
            Reserve::InFlight
        );
        let take = SaleSettle::TakeOver {
            at: retry.at,
            token: retry.token.clone(),
        };
        assert_eq!(
            gates.settle(sale.id, &[(&lost, take)]).await.unwrap(),
            vec![true]
        );
        assert_eq!(
            gates.owned(sale.id, &[&lost, &retry]).await.unwrap(),
            vec![false, true],
            "the old attempt no longer holds it: its write fails"
        );
        assert_eq!(
            gates.hold_of(sale.id, 5, "k").await.unwrap(),
            Some(retry.clone())
        );
        assert!(gates.stale(sale.id, 10_000).await.unwrap().is_empty());
        assert_eq!(gates.remaining(sale.id).await.unwrap(), Some(0));
        // A reload from the database drops the holds with the rest of the old state.
        gates.forget(sale.id).await.unwrap();
        gates.load(&sale, &[(6, 1)]).await.unwrap();
        assert_eq!(gates.hold_of(sale.id, 5, "k").await.unwrap(), None);
        assert_eq!(gates.remaining(sale.id).await.unwrap(), Some(1));
        gates.forget(sale.id).await.unwrap();
    }

    #[tokio::test]
    async fn a_grab_is_held_until_it_settles() {
        let redis = gates().await;
        let gates: &dyn PacketGates = &redis;
        let packet = 9;
        gates
            .load(packet, &[0, 1, 2], &[], 4_000_000_000_000)
            .await
            .unwrap();
        let grab = |user, at, token: &'static str| async move {
            gates.grab(packet, user, at, token).await.unwrap()
        };
        assert_eq!(grab(1, 100, "aa").await, Grab::Share { idx: 0 });
        assert_eq!(grab(1, 200, "bb").await, Grab::Pending);
        assert_eq!(grab(2, 300, "cc").await, Grab::Share { idx: 1 });
        let first = gates.hold_of(packet, 1).await.unwrap().unwrap();
        assert_eq!((first.idx, first.at, first.token.as_str()), (0, 100, "aa"));
        let second = gates.hold_of(packet, 2).await.unwrap().unwrap();
        assert_eq!(gates.stale(packet, 150).await.unwrap(), vec![first.clone()]);
        // Written: the user stays grabbed, without a hold.
        assert_eq!(
            gates
                .settle(packet, &[(&second, GrabSettle::Written)])
                .await
                .unwrap(),
            vec![true]
        );
        assert_eq!(grab(2, 400, "dd").await, Grab::Already);
        // Released: the share is next again, and the user may grab again.
        assert_eq!(
            gates
                .settle(packet, &[(&first, GrabSettle::Release)])
                .await
                .unwrap(),
            vec![true]
        );
        assert_eq!(grab(3, 500, "ee").await, Grab::Share { idx: 0 });
        assert_eq!(grab(1, 600, "ff").await, Grab::Share { idx: 2 });
        assert_eq!(grab(4, 700, "gg").await, Grab::Empty);
        // A take-over keeps the share and changes who holds it.
        let held = gates.hold_of(packet, 1).await.unwrap().unwrap();
        let take = GrabSettle::TakeOver {
            at: 800,
            token: "hh".into(),
        };
        assert_eq!(
            gates.settle(packet, &[(&held, take)]).await.unwrap(),
            vec![true]
        );
        let now_held = gates.hold_of(packet, 1).await.unwrap().unwrap();
        assert_eq!(
            (now_held.idx, now_held.at, now_held.token.as_str()),
            (2, 800, "hh")
        );
        assert_eq!(
            gates.owned(packet, &[&held, &now_held]).await.unwrap(),
            vec![false, true]
        );
        gates.forget(packet).await.unwrap();
    }

    #[tokio::test]
    async fn in_process_gates_keep_no_holds() {
        let gates = LocalSales::default();
        let sale = spec(1, 1);
        gates.load(&sale, &[]).await.unwrap();
        let hold = SaleHold::new(1, "a", 1, 100);
        assert!(!gates.tracks_holds());
        assert!(matches!(
            gates.reserve(&sale, 100, &hold).await.unwrap(),
            Reserve::Reserved { remaining: 0 }
        ));
        assert_eq!(gates.hold_of(sale.id, 1, "a").await.unwrap(), None);
        assert!(gates.stale(sale.id, i64::MAX).await.unwrap().is_empty());
        gates
            .settle(sale.id, &[(&hold, SaleSettle::Release)])
            .await
            .unwrap();
        assert_eq!(gates.remaining(sale.id).await.unwrap(), Some(1));
    }
}
