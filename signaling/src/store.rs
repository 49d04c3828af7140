//! Storage of the hub: rooms, their chat (written in batches off the room tasks' path) and the
//! sensitive-word list.
//!
//! Each room's counters are stored twice, in the same transaction: for the room over all its
//! lives (`rooms.peak_viewers`, `rooms.likes`, `room_viewers`) and for the live session they
//! belong to (`live_sessions`, `live_session_viewers`, keyed by the room and the session's
//! `started_at`; schema `0011_live_sessions.sql`), which the dashboard and reports read.

use std::time::Duration;

use foundation::db::Db;
use foundation::{ApiError, ApiResult};
use serde::Serialize;
use sqlx::Row;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::protocol::{ChatMessage, RoomId, Seq, UserId};
use crate::room::core::Totals;
use crate::words::{WordAction, WordFilter};

/// What kind of room: decides who may create it and what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    /// 直播带货: a trainee host sells to classmates.
    LiveCommerce,
    /// 直播授课: an instructor teaches the class.
    LiveClass,
    /// 监考: trainees' webcams to supervisors during an exam.
    Proctoring,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::LiveCommerce => "live_commerce",
            RoomKind::LiveClass => "live_class",
            RoomKind::Proctoring => "proctoring",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            RoomKind::LiveCommerce,
            RoomKind::LiveClass,
            RoomKind::Proctoring,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A stored room.
#[derive(Debug, Clone)]
pub struct RoomRecord {
    pub id: RoomId,
    pub class_id: i64,
    pub class_name: String,
    pub kind: RoomKind,
    pub title: String,
    pub host_id: i64,
    pub host_name: String,
    /// idle | live | ended
    pub status: String,
    pub peak_viewers: i64,
    pub likes: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// The stored peak and likes of the live session that began at `started_at` (none before
    /// the first live).
    pub session_peak: Option<i64>,
    pub session_likes: Option<i64>,
}

const ROOM_COLUMNS: &str = "SELECT r.id, r.class_id, c.name, r.kind, r.title, r.host_id, a.name, r.status, \
     r.peak_viewers, r.likes, r.created_at, r.started_at, r.ended_at, s.peak_viewers, s.likes \
     FROM rooms r JOIN classes c ON c.id = r.class_id JOIN accounts a ON a.id = r.host_id \
     LEFT JOIN live_sessions s ON s.room_id = r.id AND s.started_at = r.started_at";

fn room_from_row(row: &sqlx::any::AnyRow) -> Result<RoomRecord, sqlx::Error> {
    let kind: String = row.try_get(3)?;
    Ok(RoomRecord {
        id: row.try_get(0)?,
        class_id: row.try_get(1)?,
        class_name: row.try_get(2)?,
        kind: RoomKind::parse(&kind).unwrap_or(RoomKind::LiveCommerce),
        title: row.try_get(4)?,
        host_id: row.try_get(5)?,
        host_name: row.try_get(6)?,
        status: row.try_get(7)?,
        peak_viewers: row.try_get(8)?,
        likes: row.try_get(9)?,
        created_at: row.try_get(10)?,
        started_at: row.try_get(11)?,
        ended_at: row.try_get(12)?,
        session_peak: row.try_get(13)?,
        session_likes: row.try_get(14)?,
    })
}

#[derive(Debug, Clone)]
pub struct RoomStore {
    db: Db,
}

impl RoomStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn create(
        &self,
        class_id: i64,
        kind: RoomKind,
        title: &str,
        host_id: i64,
        now: i64,
    ) -> ApiResult<RoomId> {
        let id: i64 = sqlx::query(
            "INSERT INTO rooms (class_id, kind, title, host_id, status, created_at) VALUES ($1, $2, $3, $4, 'idle', $5) RETURNING id",
        )
        .bind(class_id)
        .bind(kind.as_str())
        .bind(title)
        .bind(host_id)
        .bind(now)
        .fetch_one(self.db.pool())
        .await?
        .try_get(0)?;
        Ok(id)
    }

    pub async fn get(&self, id: RoomId) -> ApiResult<Option<RoomRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ROOM_COLUMNS} WHERE r.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref()
            .map(room_from_row)
            .transpose()
            .map_err(ApiError::from)
    }

    /// Rooms of the given classes, live ones first, newest first.
    pub async fn list_for_classes(
        &self,
        class_ids: &[i64],
        live_only: bool,
    ) -> ApiResult<Vec<RoomRecord>> {
        if class_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Class ids are integers from our own scope query, not user input.
        let ids = class_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let live = if live_only {
            " AND r.status = 'live'"
        } else {
            ""
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ROOM_COLUMNS} WHERE r.class_id IN ({ids}){live} \
             ORDER BY CASE WHEN r.status = 'live' THEN 0 ELSE 1 END, r.created_at DESC LIMIT 200"
        )))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(room_from_row)
            .collect::<Result<_, _>>()
            .map_err(ApiError::from)
    }

    /// Marks the live started (its session, keyed by `at`, the time of the `live_started`
    /// event, is opened) or ended at `at` (the open session is closed) and raises the room's
    /// stored peak. Likes and the sessions' numbers are stored as increments by
    /// [`RoomStore::add_totals`].
    pub async fn set_live(
        &self,
        id: RoomId,
        live: bool,
        peak: u32,
        at: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        if live {
            sqlx::query(
                "UPDATE rooms SET status = 'live', started_at = $1, ended_at = NULL WHERE id = $2",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // A session a crash left open ended, at the latest, when this one starts: it gets
            // its report instead of swallowing this live's numbers when this one ends.
            sqlx::query(
                "UPDATE live_sessions SET ended_at = $1 WHERE room_id = $2 AND ended_at IS NULL AND started_at < $1",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO live_sessions (room_id, started_at) VALUES ($1, $2) \
                 ON CONFLICT (room_id, started_at) DO NOTHING",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE rooms SET status = 'ended', ended_at = $1, \
                 peak_viewers = CASE WHEN peak_viewers > $2 THEN peak_viewers ELSE $2 END WHERE id = $3",
            )
            .bind(at)
            .bind(i64::from(peak))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE live_sessions SET ended_at = $1 WHERE room_id = $2 AND ended_at IS NULL AND started_at <= $1",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Adds `totals.likes` to the room's stored total and raises its stored peak; for each
    /// session, adds its likes and raises its peak (creating its row if the node that started
    /// the live has not yet). One transaction: all or nothing, so a failed save can be retried
    /// whole without counting anything twice.
    pub async fn add_totals(&self, id: RoomId, totals: &Totals) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE rooms SET likes = likes + $1, \
             peak_viewers = CASE WHEN peak_viewers > $2 THEN peak_viewers ELSE $2 END WHERE id = $3",
        )
        .bind(i64::try_from(totals.likes).unwrap_or(i64::MAX))
        .bind(i64::from(totals.peak))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for session in &totals.sessions {
            sqlx::query(
                "INSERT INTO live_sessions (room_id, started_at, peak_viewers, likes) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (room_id, started_at) DO UPDATE SET likes = live_sessions.likes + excluded.likes, \
                 peak_viewers = CASE WHEN live_sessions.peak_viewers > excluded.peak_viewers \
                 THEN live_sessions.peak_viewers ELSE excluded.peak_viewers END",
            )
            .bind(id)
            .bind(session.started_at)
            .bind(i64::from(session.peak))
            .bind(i64::try_from(session.likes).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    pub async fn is_class_instructor(&self, class_id: i64, account_id: i64) -> ApiResult<bool> {
        let row =
            sqlx::query("SELECT 1 FROM class_instructors WHERE class_id = $1 AND account_id = $2")
                .bind(class_id)
                .bind(account_id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.is_some())
    }

    pub async fn is_class_trainee(&self, class_id: i64, account_id: i64) -> ApiResult<bool> {
        let row =
            sqlx::query("SELECT 1 FROM class_trainees WHERE class_id = $1 AND account_id = $2")
                .bind(class_id)
                .bind(account_id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.is_some())
    }

    /// Chat of a room, oldest first (for reports and tests).
    pub async fn messages(&self, room: RoomId) -> ApiResult<Vec<(Seq, String, bool)>> {
        let rows = sqlx::query(
            "SELECT seq, text, removed FROM room_messages WHERE room_id = $1 ORDER BY seq",
        )
        .bind(room)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get(0)?;
                let removed: i64 = r.try_get(2)?;
                Ok((
                    u64::try_from(seq).unwrap_or_default(),
                    r.try_get(1)?,
                    removed != 0,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::from)
    }

    pub async fn load_words(&self) -> Result<WordFilter, sqlx::Error> {
        let rows = sqlx::query("SELECT word, action FROM sensitive_words")
            .fetch_all(self.db.pool())
            .await?;
        let words = rows
            .iter()
            .filter_map(|r| {
                let word: String = r.try_get(0).ok()?;
                let action: String = r.try_get(1).ok()?;
                Some((
                    word,
                    if action == "block" {
                        WordAction::Block
                    } else {
                        WordAction::Mask
                    },
                ))
            })
            .collect::<Vec<_>>();
        Ok(WordFilter::new(words))
    }

    pub async fn list_words(&self) -> ApiResult<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT word, action FROM sensitive_words ORDER BY word")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ApiError::from)
    }

    /// Replaces the whole list in one transaction.
    pub async fn replace_words(&self, words: &[(String, WordAction)], now: i64) -> ApiResult<()> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM sensitive_words")
            .execute(&mut *tx)
            .await?;
        for (word, action) in words {
            sqlx::query(
                "INSERT INTO sensitive_words (word, action, created_at) VALUES ($1, $2, $3) ON CONFLICT (word) DO NOTHING",
            )
            .bind(word)
            .bind(if *action == WordAction::Block { "block" } else { "mask" })
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Writes to the chat log, queued by room tasks.
#[derive(Debug)]
pub enum ChatWrite {
    Message(RoomId, ChatMessage),
    Removed(RoomId, Seq),
    /// Watch time (ms) per viewer accrued since the last report, at `at`, during the live
    /// session that began at `session`: added to the room's (`room_viewers`) and the
    /// session's (`live_session_viewers`).
    Watched {
        room: RoomId,
        session: i64,
        at: i64,
        viewers: Vec<(UserId, i64)>,
    },
}

/// The longest the batch writer holds a write before starting its transaction (ms).
pub const BATCH_DEADLINE_MS: u64 = 100;

/// Starts the batch writer: up to 500 writes per transaction, at least every
/// [`BATCH_DEADLINE_MS`].
pub fn spawn_chat_writer(db: Db) -> mpsc::UnboundedSender<ChatWrite> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ChatWrite>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(500);
        loop {
            let Some(first) = rx.recv().await else { break };
            batch.push(first);
            let deadline = tokio::time::sleep(Duration::from_millis(BATCH_DEADLINE_MS));
            tokio::pin!(deadline);
            while batch.len() < 500 {
                tokio::select! {
                    more = rx.recv() => match more {
                        Some(w) => batch.push(w),
                        None => break,
                    },
                    _ = &mut deadline => break,
                }
            }
            // Retry a failing batch a few times; a database outage longer than that loses it,
            // loudly.
            let mut attempt = 0;
            loop {
                match write_batch(&db, &batch).await {
                    Ok(()) => break,
                    Err(e) if attempt < 5 => {
                        attempt += 1;
                        tracing::warn!(error = %e, attempt, "chat batch write failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, lost = batch.len(), "chat batch could not be stored");
                        break;
                    }
                }
            }
            batch.clear();
        }
    });
    tx
}

async fn write_batch(db: &Db, batch: &[ChatWrite]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    for write in batch {
        match write {
            ChatWrite::Message(room, m) => {
                sqlx::query(
                    "INSERT INTO room_messages (room_id, seq, user_id, user_name, text, at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (room_id, seq) DO NOTHING",
                )
                .bind(*room)
                .bind(i64::try_from(m.id).unwrap_or(i64::MAX))
                .bind(m.user.id)
                .bind(&m.user.name)
                .bind(&m.text)
                .bind(m.at)
                .execute(&mut *tx)
                .await?;
            }
            ChatWrite::Removed(room, seq) => {
                sqlx::query("UPDATE room_messages SET removed = 1 WHERE room_id = $1 AND seq = $2")
                    .bind(*room)
                    .bind(i64::try_from(*seq).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await?;
            }
            ChatWrite::Watched {
                room,
                session,
                at,
                viewers,
            } => {
                for (user, ms) in viewers {
                    sqlx::query(
                        "INSERT INTO room_viewers (room_id, account_id, watch_ms, first_seen_at, last_seen_at) \
                         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (room_id, account_id) DO UPDATE SET \
                         watch_ms = room_viewers.watch_ms + excluded.watch_ms, last_seen_at = excluded.last_seen_at",
                    )
                    .bind(*room)
                    .bind(*user)
                    .bind(*ms)
                    .bind(*at)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO live_session_viewers (room_id, started_at, account_id, watch_ms, first_seen_at, last_seen_at) \
                         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (room_id, started_at, account_id) DO UPDATE SET \
                         watch_ms = live_session_viewers.watch_ms + excluded.watch_ms, last_seen_at = excluded.last_seen_at",
                    )
                    .bind(*room)
                    .bind(*session)
                    .bind(*user)
                    .bind(*ms)
                    .bind(*at)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
    }
    tx.commit().await
}
