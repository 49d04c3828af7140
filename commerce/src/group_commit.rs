//! Group commit with a savepoint per write: the writers of flash-sale orders and red-packet
//! grabs put whatever is waiting into one transaction (one fsync on SQLite for a whole burst),
//! and give each write a savepoint of its own, so one refused write does not fail the others.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use foundation::db::{Backend, Db};
use futures::FutureExt;
use sqlx::{Any, Transaction};

use crate::gate::GateError;

/// Runs one group commit of `n` writes so that a panic inside it (a bug) fails only that group:
/// its transaction is dropped (rolled back), each of its writes is answered `failed()`, and the
/// writer goes on with the next group instead of dying and leaving every later attempt
/// unanswered. What those writes reserved in a gate comes back as for any failed write.
pub(crate) async fn surviving_panics<T, E>(
    writer: &'static str,
    n: usize,
    group: impl Future<Output = Vec<Result<T, E>>>,
    failed: impl Fn() -> E,
) -> Vec<Result<T, E>> {
    match AssertUnwindSafe(group).catch_unwind().await {
        Ok(results) => results,
        Err(_) => {
            tracing::error!(
                writer,
                writes = n,
                "a group commit panicked; its writes failed"
            );
            (0..n).map(|_| Err(failed())).collect()
        }
    }
}

/// Why a transaction could not be fenced (its rows locked, its writes' holds checked): the
/// transaction is dropped and every write of the group answered unavailable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FenceError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Gate(#[from] GateError),
}

/// Takes the row lock that orders every write of a flash sale's or a red packet's gate state
/// with the database: on PostgreSQL `FOR NO KEY UPDATE` on its row (the lock the writers'
/// `UPDATE`s take, so they and the holder of this lock wait for each other, while inserts that
/// only reference the row do not); on SQLite the write transaction (`BEGIN IMMEDIATE`) already
/// excludes every other writer. Must be taken outside any savepoint: a rolled-back savepoint
/// would drop the lock with it.
pub(crate) async fn lock_row(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    table: RowTable,
    id: i64,
) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        let sql = match table {
            RowTable::FlashSales => "SELECT id FROM flash_sales WHERE id = $1 FOR NO KEY UPDATE",
            RowTable::RedPackets => "SELECT id FROM red_packets WHERE id = $1 FOR NO KEY UPDATE",
        };
        sqlx::query(sql).bind(id).fetch_optional(&mut **tx).await?;
    }
    Ok(())
}

/// The rows [`lock_row`] locks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowTable {
    FlashSales,
    RedPackets,
}

/// What a writer's fence needs besides the transaction: the engine (for [`lock_row`]) and the
/// gate whose holds it checks.
pub(crate) struct Fencing<'a, G: ?Sized> {
    pub backend: Backend,
    pub gate: &'a G,
}

/// Writes `batch` in one transaction, each item by `write` in a savepoint of its own; the
/// answers are in batch order. First, in the transaction, `fence` says which items may not be
/// written (their answer instead of `None`): it locks what it needs and checks the gate. When
/// the transaction cannot start or commit, the fence fails, or a savepoint cannot be opened,
/// released or rolled back (the transaction's state is then unknown: PostgreSQL would silently
/// roll back a commit of an aborted transaction), every item is answered `unavailable()` and
/// nothing of the batch is kept.
pub(crate) async fn in_savepoints<W, T, E, G: ?Sized>(
    db: &Db,
    what: &'static str,
    batch: &[W],
    unavailable: impl Fn() -> E,
    fencing: &Fencing<'_, G>,
    fence: impl AsyncFn(
        &mut Transaction<'_, Any>,
        &Fencing<'_, G>,
        &[W],
    ) -> Result<Vec<Option<E>>, FenceError>,
    write: impl AsyncFn(&mut Transaction<'_, Any>, &W) -> Result<T, E>,
) -> Vec<Result<T, E>>
where
    E: From<sqlx::Error>,
{
    let failed = |e: &dyn std::fmt::Display| -> Vec<Result<T, E>> {
        tracing::warn!(error = %e, writes = batch.len(), "{what} group commit failed");
        batch.iter().map(|_| Err(unavailable())).collect()
    };
    let mut tx = match db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => return failed(&e),
    };
    let verdicts = match fence(&mut tx, fencing, batch).await {
        Ok(verdicts) => verdicts,
        Err(e) => return failed(&e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for (item, verdict) in batch.iter().zip(verdicts) {
        if let Some(refused) = verdict {
            results.push(Err(refused));
            continue;
        }
        let mut savepoint = match sqlx::Acquire::begin(&mut tx).await {
            Ok(savepoint) => savepoint,
            Err(e) => return failed(&e),
        };
        let outcome = match write(&mut savepoint, item).await {
            Ok(value) => match savepoint.commit().await {
                Ok(()) => Ok(value),
                Err(e) => return failed(&e),
            },
            Err(e) => {
                if let Err(rollback) = savepoint.rollback().await {
                    return failed(&rollback);
                }
                Err(e)
            }
        };
        results.push(outcome);
    }
    if let Err(e) = tx.commit().await {
        return failed(&e);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_group_fails_only_its_writes() {
        let ok = surviving_panics(
            "test",
            2,
            async { vec![Ok::<u8, &str>(1), Err("refused")] },
            || "failed",
        )
        .await;
        assert_eq!(ok, vec![Ok(1), Err("refused")]);
        let group = async {
            if ok.len() == 2 {
                panic!("a bug in the group commit");
            }
            Vec::new()
        };
        let failed = surviving_panics("test", 3, group, || "failed").await;
        assert_eq!(failed, vec![Err::<u8, &str>("failed"); 3]);
    }
}
