//! The append-only audit log. Each entry stores the SHA-256 of the previous entry's hash and its
//! own canonical content, so altering or removing any entry breaks every later link;
//! [`Audit::verify`] walks the chain and names the first broken one.
//!
//! Appends are serialised so the chain never forks: SQLite write transactions are exclusive
//! (`BEGIN IMMEDIATE`), and on PostgreSQL an appender holds a transaction-scoped advisory lock.
//! Entries are written inside the caller's transaction, so a change and its audit record commit
//! or roll back together.

use std::sync::Arc;

use serde::Serialize;
use sqlx::Row;

use crate::clock::{Clock, UnixMillis};
use crate::crypto::sha256_hex;
use crate::db::{Backend, Db};

/// Hash that the first entry links to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Advisory-lock key that serialises audit appenders on PostgreSQL ("audit" in ASCII).
const PG_AUDIT_LOCK: i64 = 0x0061_7564_6974;

/// What happened, as recorded. `detail` must already be masked: no raw ID or phone numbers.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub actor_id: Option<i64>,
    pub action: &'static str,
    pub target: String,
    pub detail: serde_json::Value,
    pub client_ip: String,
}

impl AuditEvent {
    pub fn new(actor_id: Option<i64>, action: &'static str, target: impl Into<String>) -> Self {
        Self {
            actor_id,
            action,
            target: target.into(),
            detail: serde_json::Value::Object(Default::default()),
            client_ip: String::new(),
        }
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    pub fn ip(mut self, client_ip: &str) -> Self {
        self.client_ip = client_ip.to_owned();
        self
    }
}

/// A stored entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: UnixMillis,
    pub actor_id: Option<i64>,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub client_ip: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub checked: i64,
    pub first_broken_seq: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Audit {
    db: Db,
    clock: Arc<dyn Clock>,
}

/// The hash of an entry's content and its link; `entry.hash` itself is not part of it.
fn entry_hash(e: &AuditEntry) -> String {
    // A JSON array is an unambiguous encoding of the fields (no separator confusion).
    let canonical = serde_json::json!([
        e.seq,
        e.at,
        e.actor_id,
        e.action,
        e.target,
        e.detail,
        e.client_ip,
        e.prev_hash
    ]);
    sha256_hex(canonical.to_string().as_bytes())
}

impl Audit {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// Appends in its own transaction.
    pub async fn append(&self, event: AuditEvent) -> Result<i64, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let seq = self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Appends inside the caller's write transaction (started with [`Db::begin_write`]).
    pub async fn append_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        event: AuditEvent,
    ) -> Result<i64, sqlx::Error> {
        if self.db.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_AUDIT_LOCK)
                .execute(&mut **tx)
                .await?;
        }
        let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
        let (prev_seq, prev_hash) = match last {
            Some(row) => (row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?),
            None => (0, GENESIS_HASH.to_owned()),
        };
        let mut entry = AuditEntry {
            seq: prev_seq + 1,
            at: self.clock.now_millis(),
            actor_id: event.actor_id,
            action: event.action.to_owned(),
            target: event.target,
            detail: event.detail.to_string(),
            client_ip: event.client_ip,
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor_id, action, target, detail, client_ip, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(entry.seq)
        .bind(entry.at)
        .bind(entry.actor_id)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.detail)
        .bind(&entry.client_ip)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(&mut **tx)
        .await?;
        Ok(entry.seq)
    }

    /// The newest entries, newest first.
    pub async fn recent(&self, limit: i64) -> Result<Vec<AuditEntry>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT seq, at, actor_id, action, target, detail, client_ip, prev_hash, hash \
             FROM audit_log ORDER BY seq DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 500))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(row_to_entry).collect()
    }

    /// Walks the whole chain in pages and reports the first entry that does not link or whose
    /// content does not match its hash.
    pub async fn verify(&self) -> Result<VerifyReport, sqlx::Error> {
        let mut expected_prev = GENESIS_HASH.to_owned();
        let mut expected_seq = 1i64;
        let mut checked = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, actor_id, action, target, detail, client_ip, prev_hash, hash \
                 FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT 1000",
            )
            .bind(expected_seq)
            .fetch_all(self.db.pool())
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let e = row_to_entry(row)?;
                let broken = |reason: String| VerifyReport {
                    ok: false,
                    checked,
                    first_broken_seq: Some(e.seq),
                    reason: Some(reason),
                };
                if e.seq != expected_seq {
                    return Ok(VerifyReport {
                        first_broken_seq: Some(expected_seq),
                        ..broken(format!("entry {expected_seq} is missing"))
                    });
                }
                if e.prev_hash != expected_prev {
                    return Ok(broken("prev_hash does not match the previous entry".into()));
                }
                if entry_hash(&e) != e.hash {
                    return Ok(broken("content does not match its hash".into()));
                }
                expected_prev = e.hash;
                expected_seq += 1;
                checked += 1;
            }
        }
        Ok(VerifyReport {
            ok: true,
            checked,
            first_broken_seq: None,
            reason: None,
        })
    }
}

fn row_to_entry(row: &sqlx::any::AnyRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        seq: row.try_get(0)?,
        at: row.try_get(1)?,
        actor_id: row.try_get(2)?,
        action: row.try_get(3)?,
        target: row.try_get(4)?,
        detail: row.try_get(5)?,
        client_ip: row.try_get(6)?,
        prev_hash: row.try_get(7)?,
        hash: row.try_get(8)?,
    })
}
