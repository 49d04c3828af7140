//! Red packets (红包): the host sends an amount split into shares by the double-mean rule
//! (`core::red_packet`, split when sent and stored share by share); each viewer grabs once,
//! through the gate (`crate::gate`); what is left when the packet expires goes back to the
//! sender's wallet. Everyone in the room can see who got how much.
//!
//! Contract: `POST /api/v1/red-packets/{id}/grab` → 200 `{"amount_cents": n}`; the same user
//! again → 409 `already_grabbed`; none left → 410 `red_packet_empty`.
//!
//! With Redis gates a grab's share is held (`crate::gate`) until it is written, like a flash
//! sale's reservation: the writer fences its transaction on the packets' rows, a retry of the
//! same user takes a grab whose node died over, and the sweeper gives back the shares of grabs
//! older than `HOLD_RECLAIM_AFTER_MS` that the database does not have. The money is exact
//! either way (the database pays the grabs and returns `total − grabbed` at expiry); the holds
//! keep a dead node's share from being withheld from the room, and its user from being told
//! `already_grabbed` without one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use foundation::error::ErrorBody;
use foundation::http::extract::{ApiJson, ApiPath, CurrentUser};
use foundation::{ApiError, ApiResult, AppState, ErrorCode};
use serde::{Deserialize, Serialize};
use signaling::protocol::{CommerceEvent, RedPacketCard, UserRef};
use sqlx::Row;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use crate::Commerce;
use crate::core::red_packet::{self, MAX_SHARES, SplitError};
use crate::gate::{
    Grab, GrabHold, GrabSettle, HOLD_RECLAIM_AFTER_MS, IN_FLIGHT_WAIT_MS, PacketGates, new_token,
};
use crate::group_commit::{FenceError, Fencing, RowTable, lock_row};
use crate::util;
use crate::wallet::{self, Reason};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRedPacket {
    pub total_cents: i64,
    pub count: i64,
    pub greeting: Option<String>,
    /// How long it can be grabbed (10 s – 24 h, default 120 s).
    pub expires_in_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrabView {
    pub user_id: i64,
    pub user_name: String,
    pub amount_cents: i64,
    pub at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedPacketView {
    pub id: i64,
    pub room_id: i64,
    pub sender_id: i64,
    pub sender_name: String,
    pub total_cents: i64,
    pub count: i64,
    pub greeting: String,
    pub expires_at: i64,
    /// active | finished | expired
    pub status: String,
    pub grabbed_count: i64,
    pub grabbed_cents: i64,
    /// What went back to the sender when it expired.
    pub returned_cents: i64,
    pub created_at: i64,
    /// Who got how much, in grab order.
    pub grabs: Vec<GrabView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Grabbed {
    pub red_packet_id: i64,
    pub amount_cents: i64,
    /// The wallet balance after it.
    pub balance_cents: i64,
}

/// The immutable facts of a packet the grab path needs.
#[derive(Debug, Clone)]
pub(crate) struct PacketMeta {
    pub id: i64,
    pub room_id: i64,
    pub sender_id: i64,
    pub count: i64,
    pub expires_at: i64,
}

pub(crate) async fn packet_meta(state: &AppState, id: i64) -> ApiResult<Option<PacketMeta>> {
    let row = sqlx::query(
        "SELECT id, room_id, sender_id, count, expires_at FROM red_packets WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(state.db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(PacketMeta {
        id: row.try_get(0)?,
        room_id: row.try_get(1)?,
        sender_id: row.try_get(2)?,
        count: row.try_get(3)?,
        expires_at: row.try_get(4)?,
    }))
}

async fn packet_view(state: &AppState, id: i64) -> ApiResult<RedPacketView> {
    let row = sqlx::query(
        "SELECT r.id, r.room_id, r.sender_id, a.name, r.total_cents, r.count, r.greeting, r.expires_at, r.status, \
         r.grabbed_count, r.grabbed_cents, r.returned_cents, r.created_at FROM red_packets r \
         JOIN accounts a ON a.id = r.sender_id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(state.db.pool())
    .await?
    .ok_or_else(ApiError::not_found)?;
    let grabs = sqlx::query(
        "SELECT s.grabbed_by, a.name, s.amount_cents, s.grabbed_at FROM red_packet_shares s \
         JOIN accounts a ON a.id = s.grabbed_by WHERE s.red_packet_id = $1 ORDER BY s.grabbed_at, s.idx",
    )
    .bind(id)
    .fetch_all(state.db.pool())
    .await?;
    Ok(RedPacketView {
        id: row.try_get(0)?,
        room_id: row.try_get(1)?,
        sender_id: row.try_get(2)?,
        sender_name: row.try_get(3)?,
        total_cents: row.try_get(4)?,
        count: row.try_get(5)?,
        greeting: row.try_get(6)?,
        expires_at: row.try_get(7)?,
        status: row.try_get(8)?,
        grabbed_count: row.try_get(9)?,
        grabbed_cents: row.try_get(10)?,
        returned_cents: row.try_get(11)?,
        created_at: row.try_get(12)?,
        grabs: grabs
            .iter()
            .map(|g| {
                Ok(GrabView {
                    user_id: g.try_get(0)?,
                    user_name: g.try_get(1)?,
                    amount_cents: g.try_get(2)?,
                    at: g.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?,
    })
}

impl RedPacketView {
    pub(crate) fn card(&self) -> RedPacketCard {
        RedPacketCard {
            id: self.id,
            sender: UserRef {
                id: self.sender_id,
                name: self.sender_name.clone(),
            },
            count: u32::try_from(self.count).unwrap_or_default(),
            total_cents: self.total_cents,
            greeting: self.greeting.clone(),
            expires_at: self.expires_at,
        }
    }
}

pub(crate) async fn active_in_room(state: &AppState, room: i64) -> ApiResult<Vec<RedPacketView>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM red_packets WHERE room_id = $1 AND status = 'active' ORDER BY id DESC LIMIT 20",
    )
    .bind(room)
    .fetch_all(state.db.pool())
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(packet_view(state, id).await?);
    }
    Ok(out)
}

fn split_error(e: SplitError) -> ApiError {
    ApiError::validation(match e {
        SplitError::NonPositiveTotal => "红包金额须大于 0".to_owned(),
        SplitError::BadCount => format!("红包个数须在 1 到 {MAX_SHARES} 之间"),
        SplitError::TotalBelowCount => {
            "红包金额（分）不能少于红包个数：每个红包至少 0.01 元".to_owned()
        }
        SplitError::TotalTooLarge => "红包金额过大".to_owned(),
    })
}

/// Send a red packet in the room (its host or instructors), paid from the sender's wallet.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/red-packets", tag = "commerce", request_body = SendRedPacket,
    params(("id" = i64, Path, description = "room id")),
    responses((status = 201, body = RedPacketView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn send_red_packet(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(room): ApiPath<i64>,
    ApiJson(body): ApiJson<SendRedPacket>,
) -> ApiResult<(StatusCode, Json<RedPacketView>)> {
    commerce.require_tools(&p, room).await?;
    let count = u32::try_from(body.count).map_err(|_| split_error(SplitError::BadCount))?;
    let shares =
        red_packet::split(body.total_cents, count, &mut rand::thread_rng()).map_err(split_error)?;
    let greeting = util::text(
        body.greeting.as_deref().unwrap_or("恭喜发财，大吉大利"),
        "祝福语",
        1,
        30,
    )?;
    let lifetime = util::count(
        body.expires_in_seconds.unwrap_or(120),
        "有效时长（秒）",
        10,
        86_400,
    )?;
    let now = state.clock.now_millis();
    let expires_at = now + lifetime * 1000;
    let mut tx = state.db.begin_write().await?;
    let row = sqlx::query(
        "INSERT INTO red_packets (room_id, sender_id, total_cents, count, greeting, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(room)
    .bind(p.account_id)
    .bind(body.total_cents)
    .bind(body.count)
    .bind(&greeting)
    .bind(expires_at)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get(0)?;
    wallet::apply(
        &mut tx,
        p.account_id,
        -body.total_cents,
        Reason::RedPacketSend,
        Some(id),
        now,
    )
    .await?;
    // Multi-row inserts keep a 10,000-share packet to a few statements.
    for (chunk_no, chunk) in shares.chunks(400).enumerate() {
        let mut sql = String::from(
            "INSERT INTO red_packet_shares (red_packet_id, idx, amount_cents) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("($1, ${}, ${})", 2 + 2 * i, 3 + 2 * i));
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id);
        for (i, amount) in chunk.iter().enumerate() {
            let idx = i64::try_from(chunk_no * 400 + i).unwrap_or_default();
            query = query.bind(idx).bind(*amount);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let free: Vec<u32> = (0..count).collect();
    commerce.packets.load(id, &free, &[], expires_at).await?;
    let view = packet_view(&state, id).await?;
    commerce
        .rooms
        .announce(
            room,
            CommerceEvent::RedPacketSent {
                packet: view.card(),
            },
        )
        .await;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The shares still free (in grab order) and who has grabbed: a packet's gate state.
async fn shares_left(
    conn: &mut sqlx::AnyConnection,
    packet: i64,
) -> Result<(Vec<u32>, Vec<i64>), sqlx::Error> {
    let free: Vec<i64> = sqlx::query_scalar(
        "SELECT idx FROM red_packet_shares WHERE red_packet_id = $1 AND grabbed_by IS NULL ORDER BY idx",
    )
    .bind(packet)
    .fetch_all(&mut *conn)
    .await?;
    let grabbed: Vec<i64> = sqlx::query_scalar(
        "SELECT grabbed_by FROM red_packet_shares WHERE red_packet_id = $1 AND grabbed_by IS NOT NULL",
    )
    .bind(packet)
    .fetch_all(&mut *conn)
    .await?;
    let free = free
        .into_iter()
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    Ok((free, grabbed))
}

/// Loads a packet's gate from the database (after a restart, or on another node's first grab).
/// With holds (Redis) under the packet's row lock, so no grab commits between reading the
/// shares and loading them (a grab still holding a hold that the reload drops fails instead).
async fn load_gate(commerce: &Commerce, meta: &PacketMeta) -> ApiResult<()> {
    let db = &commerce.app.db;
    if !commerce.packets.tracks_holds() {
        let mut conn = db.pool().acquire().await?;
        let (free, grabbed) = shares_left(&mut conn, meta.id).await?;
        commerce
            .packets
            .load(meta.id, &free, &grabbed, meta.expires_at)
            .await?;
        return Ok(());
    }
    // A crowd that found the gate gone queues on the lock: the first loads it, the others see
    // it loaded and read nothing.
    if commerce.packets.is_loaded(meta.id).await? {
        return Ok(());
    }
    let mut tx = db.begin_write().await?;
    lock_row(&mut tx, db.backend(), RowTable::RedPackets, meta.id).await?;
    if !commerce.packets.is_loaded(meta.id).await? {
        let (free, grabbed) = shares_left(&mut tx, meta.id).await?;
        commerce
            .packets
            .load(meta.id, &free, &grabbed, meta.expires_at)
            .await?;
    }
    tx.rollback().await?;
    Ok(())
}

/// Grab a share of a red packet in a room you are in (once per person).
#[utoipa::path(post, path = "/api/v1/red-packets/{id}/grab", tag = "commerce",
    params(("id" = i64, Path, description = "red packet id")),
    responses((status = 200, body = Grabbed), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn grab(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Grabbed>> {
    let meta = commerce.packet(id).await?;
    commerce.access(&p, meta.room_id).await?;
    if meta.sender_id == p.account_id {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "不能抢自己发的红包",
        ));
    }
    let now = state.clock.now_millis();
    if now >= meta.expires_at {
        return Err(ErrorCode::RedPacketExpired.into());
    }
    let user = p.account_id;
    let token = new_token();
    let mut rounds = 0;
    let hold = loop {
        rounds += 1;
        let mut answer = commerce.packets.grab(id, user, now, &token).await?;
        if answer == Grab::NotLoaded {
            load_gate(&commerce, &meta).await?;
            answer = commerce.packets.grab(id, user, now, &token).await?;
        }
        match answer {
            Grab::Share { idx } => {
                break GrabHold {
                    user,
                    idx,
                    at: now,
                    token,
                };
            }
            Grab::Already => return Err(ErrorCode::AlreadyGrabbed.into()),
            Grab::Empty => return Err(ErrorCode::RedPacketEmpty.into()),
            Grab::NotLoaded => return Err(ErrorCode::Unavailable.into()),
            // Only Redis gates answer this: a grab of this user holds a share already.
            Grab::Pending => match grab_in_flight(&commerce, &meta, user, now, &token).await? {
                GrabInFlight::Written => return Err(ErrorCode::AlreadyGrabbed.into()),
                GrabInFlight::TakenOver(hold) => break hold,
                GrabInFlight::Gone if rounds < 3 => {}
                GrabInFlight::Gone => return Err(ErrorCode::Unavailable.into()),
            },
        }
    };
    // From here the share must end written or released, and the last grab must finish the
    // packet: a task of its own, so a client that hangs up (dropping this handler) cannot
    // stop it half-way.
    let settle = tokio::spawn(async move {
        match write_grab(&commerce, &meta, &hold).await {
            Ok(grabbed) => {
                if grabbed.last {
                    finish(&commerce, &meta).await;
                }
                Ok(Grabbed {
                    red_packet_id: meta.id,
                    amount_cents: grabbed.amount,
                    balance_cents: grabbed.balance,
                })
            }
            Err(e) => {
                give_back(&commerce, meta.id, &hold, &e).await;
                Err(match e {
                    GrabError::Already => ErrorCode::AlreadyGrabbed.into(),
                    GrabError::Closed => ErrorCode::RedPacketExpired.into(),
                    GrabError::ShareTaken => ErrorCode::RedPacketEmpty.into(),
                    // A retry took the share over (and writes it), or the gate was reloaded.
                    GrabError::Superseded => ErrorCode::Unavailable.into(),
                    GrabError::Api(e) => e,
                })
            }
        }
    });
    settle.await.map_err(ApiError::internal)?.map(Json)
}

/// What became of a grab of the same user that holds a share.
enum GrabInFlight {
    /// The user has a share in the database.
    Written,
    /// It is gone without a share: try afresh.
    Gone,
    /// It never wrote its share: this request holds it now, as this hold.
    TakenOver(GrabHold),
}

/// A grab of `user` holds a share already: a double tap, or a grab whose node died before
/// writing it. Waits for it up to [`IN_FLIGHT_WAIT_MS`] after it grabbed; if it is still there,
/// takes it over under the packet's lock — unless the database has the user's share.
async fn grab_in_flight(
    commerce: &Commerce,
    meta: &PacketMeta,
    user: i64,
    now: i64,
    token: &str,
) -> ApiResult<GrabInFlight> {
    let started = tokio::time::Instant::now();
    let wait = std::time::Duration::from_millis(IN_FLIGHT_WAIT_MS.unsigned_abs());
    let db = &commerce.app.db;
    loop {
        let Some(held) = commerce.packets.hold_of(meta.id, user).await? else {
            return Ok(match share_of(db.pool(), meta.id, user).await? {
                Some(_) => GrabInFlight::Written,
                None => GrabInFlight::Gone,
            });
        };
        let waited = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        if now - held.at + waited >= IN_FLIGHT_WAIT_MS || started.elapsed() >= wait {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut tx = db.begin_write().await?;
    lock_row(&mut tx, db.backend(), RowTable::RedPackets, meta.id).await?;
    let outcome = match commerce.packets.hold_of(meta.id, user).await? {
        None => None,
        Some(held) => match share_of(&mut *tx, meta.id, user).await? {
            Some(idx) => {
                commerce
                    .packets
                    .settle(meta.id, &[(&held, grab_verdict(Some(idx), &held))])
                    .await?;
                Some(GrabInFlight::Written)
            }
            None => {
                let take = GrabSettle::TakeOver {
                    at: now,
                    token: token.to_owned(),
                };
                let taken = commerce.packets.settle(meta.id, &[(&held, take)]).await?;
                taken.first().copied().unwrap_or(false).then(|| {
                    GrabInFlight::TakenOver(GrabHold {
                        user,
                        idx: held.idx,
                        at: now,
                        token: token.to_owned(),
                    })
                })
            }
        },
    };
    tx.rollback().await?;
    Ok(match outcome {
        Some(outcome) => outcome,
        None => match share_of(db.pool(), meta.id, user).await? {
            Some(_) => GrabInFlight::Written,
            None => GrabInFlight::Gone,
        },
    })
}

/// The index of `user`'s share of the packet, if the database has one.
async fn share_of<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Any>,
    packet: i64,
    user: i64,
) -> Result<Option<u32>, sqlx::Error> {
    let idx: Option<i64> = sqlx::query_scalar(
        "SELECT idx FROM red_packet_shares WHERE red_packet_id = $1 AND grabbed_by = $2",
    )
    .bind(packet)
    .bind(user)
    .fetch_optional(conn)
    .await?;
    Ok(idx.and_then(|i| u32::try_from(i).ok()))
}

/// How a grab's hold whose attempt is not coming back settles, given the user's share in the
/// database (one per user): that very share — written; another one — this share goes back,
/// the user stays; none — the share goes back and the user may grab again.
fn grab_verdict(share: Option<u32>, hold: &GrabHold) -> GrabSettle {
    match share {
        Some(idx) if idx == hold.idx => GrabSettle::Written,
        Some(_) => GrabSettle::ReturnShare,
        None => GrabSettle::Release,
    }
}

/// The share of a grab that failed goes back. In-process gates: as before the holds, the
/// share is released unless the packet is closed. Redis: by what is known of the failure —
/// the database has the user's share already (the share goes back, the user stays), the share
/// is someone else's (the user may grab again), the packet is closed (nothing: its gate goes
/// with it), superseded (nothing is ours); an unknown outcome asks the database under the
/// packet's lock, or leaves it to the sweeper if that fails.
async fn give_back(commerce: &Commerce, packet: i64, hold: &GrabHold, error: &GrabError) {
    let gate = &commerce.packets;
    let settle = match (gate.tracks_holds(), error) {
        (_, GrabError::Closed) | (true, GrabError::Superseded) => return,
        (false, _) => GrabSettle::Release,
        (true, GrabError::Already) => GrabSettle::ReturnShare,
        (true, GrabError::ShareTaken) => GrabSettle::FreeUser,
        (true, GrabError::Api(_)) => {
            if let Err(e) = resolve_grabs(commerce, packet, std::slice::from_ref(hold)).await {
                tracing::warn!(packet, error = %e, "red-packet share not given back yet; the sweeper will");
            }
            return;
        }
    };
    if let Err(e) = gate.settle(packet, &[(hold, settle)]).await {
        tracing::warn!(packet, error = %e, "red-packet share not given back yet; the sweeper will");
    }
}

/// Settles grabs' holds whose attempts are not coming back, under the packet's lock, by the
/// database's word ([`grab_verdict`]); answers how many shares went back to the crowd.
async fn resolve_grabs(
    commerce: &Commerce,
    packet: i64,
    holds: &[GrabHold],
) -> Result<usize, FenceError> {
    let db = &commerce.app.db;
    let mut tx = db.begin_write().await?;
    lock_row(&mut tx, db.backend(), RowTable::RedPackets, packet).await?;
    let mut settles = Vec::with_capacity(holds.len());
    for hold in holds {
        let share = share_of(&mut *tx, packet, hold.user).await?;
        settles.push((hold, grab_verdict(share, hold)));
    }
    let done = commerce.packets.settle(packet, &settles).await?;
    // Nothing was written: the transaction was only the lock.
    tx.rollback().await?;
    Ok(settles
        .iter()
        .zip(done)
        .filter(|((_, settle), done)| *done && *settle == GrabSettle::Release)
        .count())
}

/// Gives back the shares of grabs that were never written (Redis gates only): holds of
/// active packets older than [`HOLD_RECLAIM_AFTER_MS`] — their node died between the gate and
/// the commit — settled by the database's word under each packet's lock. The share goes back
/// to the crowd and the user may grab again. (The money was exact all along: at expiry the
/// sender gets back `total − grabbed`, counted in the database; this keeps a share from being
/// withheld from the room and a user from being told `already_grabbed` with nothing.)
pub(crate) async fn reclaim_abandoned(commerce: &Commerce, now: i64) -> anyhow::Result<usize> {
    if !commerce.packets.tracks_holds() {
        return Ok(0);
    }
    let active: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM red_packets WHERE status = 'active' AND expires_at > $1",
    )
    .bind(now)
    .fetch_all(commerce.app.db.pool())
    .await?;
    let mut released = 0;
    for packet in active {
        match reclaim_packet(commerce, packet, now).await {
            Ok((0, _)) => {}
            Ok((holds, back)) => {
                tracing::info!(
                    packet,
                    holds,
                    released = back,
                    "settled abandoned red-packet grabs"
                );
                released += back;
            }
            // One packet's trouble does not hold the others up; the next sweep tries again.
            Err(e) => {
                tracing::warn!(packet, error = %e, "could not settle abandoned red-packet grabs")
            }
        }
    }
    Ok(released)
}

/// One packet's part of [`reclaim_abandoned`]: (stale holds, shares given back).
async fn reclaim_packet(
    commerce: &Commerce,
    packet: i64,
    now: i64,
) -> Result<(usize, usize), FenceError> {
    let stale = commerce
        .packets
        .stale(packet, now - HOLD_RECLAIM_AFTER_MS)
        .await?;
    if stale.is_empty() {
        return Ok((0, 0));
    }
    Ok((stale.len(), resolve_grabs(commerce, packet, &stale).await?))
}

pub(crate) struct WrittenGrab {
    amount: i64,
    balance: i64,
    last: bool,
}

pub(crate) enum GrabError {
    Already,
    /// The packet expired between the check and the write.
    Closed,
    /// The share is someone else's in the database (the gate knew less than it).
    ShareTaken,
    /// The grab no longer holds its share (a retry took it over, or the gate was reloaded):
    /// not written.
    Superseded,
    Api(ApiError),
}

impl From<sqlx::Error> for GrabError {
    fn from(e: sqlx::Error) -> Self {
        if util::is_unique_violation(&e) {
            GrabError::Already
        } else {
            GrabError::Api(e.into())
        }
    }
}

impl From<ApiError> for GrabError {
    fn from(e: ApiError) -> Self {
        GrabError::Api(e)
    }
}

/// One grab waiting for the next group commit.
pub(crate) struct GrabWrite {
    meta: Arc<PacketMeta>,
    hold: GrabHold,
    reply: oneshot::Sender<Result<WrittenGrab, GrabError>>,
}

/// Most grabs in one transaction: on PostgreSQL no more than its per-transaction cache of
/// subtransaction ids (64; a grab's savepoint is one), beyond which every other session's
/// visibility checks slow down.
fn group_commit_max(backend: foundation::db::Backend) -> usize {
    match backend {
        foundation::db::Backend::Sqlite => 256,
        foundation::db::Backend::Postgres => 64,
    }
}

/// Writes grabs in group commits, like flash-sale orders (`flash_sales::start_writer`):
/// whatever grabs are waiting when a transaction starts go into it, each in a savepoint of its
/// own (so one refused grab does not fail the others), and one commit — one fsync on SQLite —
/// makes them all durable. A grab is answered only after its transaction committed. With holds
/// (Redis), each transaction first locks its packets' rows and writes only the grabs that still
/// hold their shares ([`fence`]); after the commit their holds are settled as written.
pub(crate) fn start_grab_writer(
    db: foundation::db::Db,
    gate: Arc<dyn PacketGates>,
) -> mpsc::Sender<GrabWrite> {
    let (tx, mut rx) = mpsc::channel::<GrabWrite>(4096);
    let max = group_commit_max(db.backend());
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(max);
        while rx.recv_many(&mut batch, max).await > 0 {
            // Packet rows are locked in id order, so two nodes' groups do not deadlock on them
            // (each grab answers through its own channel, so the order is free).
            batch.sort_by_key(|w| (w.meta.id, w.hold.user));
            let results = crate::group_commit::surviving_panics(
                "red-packet grabs",
                batch.len(),
                commit_grabs(&db, &*gate, &batch),
                || GrabError::Api(ApiError::new(ErrorCode::Unavailable)),
            )
            .await;
            let mut written: Vec<(i64, GrabHold)> = Vec::new();
            for (write, result) in batch.drain(..).zip(results) {
                if result.is_ok() && gate.tracks_holds() {
                    written.push((write.meta.id, write.hold.clone()));
                }
                let _ = write.reply.send(result);
            }
            if !written.is_empty() {
                tokio::spawn(settle_written(gate.clone(), written));
            }
        }
    });
    tx
}

/// Drops the holds of written grabs (one script call per packet; they come sorted by packet).
/// If it fails, the sweeper finds them later and, seeing their shares, does the same.
async fn settle_written(gate: Arc<dyn PacketGates>, written: Vec<(i64, GrabHold)>) {
    for group in written.chunk_by(|a, b| a.0 == b.0) {
        let packet = group[0].0;
        let holds: Vec<(&GrabHold, GrabSettle)> = group
            .iter()
            .map(|(_, hold)| (hold, GrabSettle::Written))
            .collect();
        if let Err(e) = gate.settle(packet, &holds).await {
            tracing::debug!(packet, error = %e, "holds of written grabs left for the sweeper");
        }
    }
}

/// The fence of a group's transaction (gates with holds only): locks the batch's packets' rows
/// in id order and refuses the grabs that no longer hold their shares; until the commit no one
/// else can settle a hold of these packets (the sweeper and a retry's take-over need the lock).
async fn fence(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    fencing: &Fencing<'_, dyn PacketGates + '_>,
    batch: &[GrabWrite],
) -> Result<Vec<Option<GrabError>>, FenceError> {
    let gate = fencing.gate;
    let mut verdicts: Vec<Option<GrabError>> = batch.iter().map(|_| None).collect();
    if !gate.tracks_holds() {
        return Ok(verdicts);
    }
    let mut packets: Vec<i64> = batch.iter().map(|w| w.meta.id).collect();
    packets.sort_unstable();
    packets.dedup();
    for packet in packets {
        lock_row(tx, fencing.backend, RowTable::RedPackets, packet).await?;
        let (places, holds): (Vec<usize>, Vec<&GrabHold>) = batch
            .iter()
            .enumerate()
            .filter(|(_, w)| w.meta.id == packet)
            .map(|(i, w)| (i, &w.hold))
            .unzip();
        let owned = gate.owned(packet, &holds).await?;
        for (i, owned) in places.into_iter().zip(owned) {
            if !owned {
                verdicts[i] = Some(GrabError::Superseded);
            }
        }
    }
    Ok(verdicts)
}

async fn commit_grabs(
    db: &foundation::db::Db,
    gate: &dyn PacketGates,
    batch: &[GrabWrite],
) -> Vec<Result<WrittenGrab, GrabError>> {
    crate::group_commit::in_savepoints(
        db,
        "red-packet",
        batch,
        || GrabError::Api(ApiError::new(ErrorCode::Unavailable)),
        &Fencing {
            backend: db.backend(),
            gate,
        },
        fence,
        write_grab_in,
    )
    .await
}

/// Queues a grab for the next group commit and waits for it.
async fn write_grab(
    commerce: &Commerce,
    meta: &Arc<PacketMeta>,
    hold: &GrabHold,
) -> Result<WrittenGrab, GrabError> {
    let (reply, answer) = oneshot::channel();
    let write = GrabWrite {
        meta: meta.clone(),
        hold: hold.clone(),
        reply,
    };
    let unavailable = || GrabError::Api(ApiError::new(ErrorCode::Unavailable));
    commerce
        .grab_writer
        .send(write)
        .await
        .map_err(|_| unavailable())?;
    answer.await.map_err(|_| unavailable())?
}

/// One grab, inside its savepoint of a group commit.
async fn write_grab_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    write: &GrabWrite,
) -> Result<WrittenGrab, GrabError> {
    let (meta, user, idx, now) = (&write.meta, write.hold.user, write.hold.idx, write.hold.at);
    // Counting the grab on the packet's row first serialises grabs with the expiry (PostgreSQL
    // row lock; SQLite's single writer), so a share is never both paid out and returned.
    let counted = sqlx::query(
        "UPDATE red_packets SET grabbed_count = grabbed_count + 1 WHERE id = $1 AND status = 'active' \
         RETURNING grabbed_count",
    )
    .bind(meta.id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(counted) = counted else {
        return Err(GrabError::Closed);
    };
    let grabbed_count: i64 = counted.try_get(0)?;
    let row = sqlx::query(
        "UPDATE red_packet_shares SET grabbed_by = $1, grabbed_at = $2 \
         WHERE red_packet_id = $3 AND idx = $4 AND grabbed_by IS NULL RETURNING amount_cents",
    )
    .bind(user)
    .bind(now)
    .bind(meta.id)
    .bind(i64::from(idx))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Err(GrabError::ShareTaken);
    };
    let amount: i64 = row.try_get(0)?;
    sqlx::query("UPDATE red_packets SET grabbed_cents = grabbed_cents + $1 WHERE id = $2")
        .bind(amount)
        .bind(meta.id)
        .execute(&mut **tx)
        .await?;
    let balance =
        wallet::apply(tx, user, amount, Reason::RedPacketGrab, Some(meta.id), now).await?;
    let last = grabbed_count == meta.count;
    if last {
        sqlx::query("UPDATE red_packets SET status = 'finished' WHERE id = $1")
            .bind(meta.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(WrittenGrab {
        amount,
        balance,
        last,
    })
}

async fn finish(commerce: &Commerce, meta: &PacketMeta) {
    let grabbed = u32::try_from(meta.count).unwrap_or_default();
    let _ = commerce.packets.forget(meta.id).await;
    commerce
        .rooms
        .announce(
            meta.room_id,
            CommerceEvent::RedPacketFinished {
                packet: meta.id,
                grabbed,
                returned_cents: 0,
            },
        )
        .await;
}

#[utoipa::path(get, path = "/api/v1/red-packets/{id}", tag = "commerce",
    params(("id" = i64, Path, description = "red packet id")),
    responses((status = 200, body = RedPacketView), (status = 404, body = ErrorBody)))]
pub async fn get_red_packet(
    State(state): State<AppState>,
    Extension(commerce): Extension<Commerce>,
    CurrentUser(p): CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<RedPacketView>> {
    let meta = commerce.packet(id).await?;
    commerce.access(&p, meta.room_id).await?;
    Ok(Json(packet_view(&state, id).await?))
}

/// Expires packets whose time is over: what nobody grabbed goes back to the sender. Safe on
/// several nodes (`WHERE status = 'active'`).
pub(crate) async fn expire(commerce: &Commerce, now: i64) -> anyhow::Result<usize> {
    let state = &commerce.app;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM red_packets WHERE status = 'active' AND expires_at <= $1 LIMIT 100",
    )
    .bind(now)
    .fetch_all(state.db.pool())
    .await?;
    let mut expired = 0;
    for id in ids {
        let mut tx = state.db.begin_write().await?;
        let row = sqlx::query(
            "UPDATE red_packets SET status = 'expired', returned_cents = total_cents - grabbed_cents \
             WHERE id = $1 AND status = 'active' RETURNING sender_id, returned_cents, grabbed_count, room_id",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { continue };
        let sender: i64 = row.try_get(0)?;
        let returned: i64 = row.try_get(1)?;
        let grabbed: i64 = row.try_get(2)?;
        let room: i64 = row.try_get(3)?;
        if returned > 0 {
            wallet::apply(
                &mut tx,
                sender,
                returned,
                Reason::RedPacketReturn,
                Some(id),
                now,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        tx.commit().await?;
        expired += 1;
        let _ = commerce.packets.forget(id).await;
        commerce.forget_packet(id);
        commerce
            .rooms
            .announce(
                room,
                CommerceEvent::RedPacketFinished {
                    packet: id,
                    grabbed: u32::try_from(grabbed).unwrap_or_default(),
                    returned_cents: returned,
                },
            )
            .await;
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grab_hold_is_spent_only_by_its_own_share() {
        let hold = GrabHold {
            user: 4,
            idx: 2,
            at: 100,
            token: "t".into(),
        };
        assert_eq!(grab_verdict(Some(2), &hold), GrabSettle::Written);
        assert_eq!(
            grab_verdict(Some(5), &hold),
            GrabSettle::ReturnShare,
            "the user has another share: this one goes back, the user stays"
        );
        assert_eq!(grab_verdict(None, &hold), GrabSettle::Release);
    }
}
