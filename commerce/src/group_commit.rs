//! Group commit with a savepoint per write: the writers of flash-sale orders and red-packet
//! grabs put whatever is waiting into one transaction (one fsync on SQLite for a whole burst),
//! and give each write a savepoint of its own, so one refused write does not fail the others.

use foundation::db::Db;
use sqlx::{Any, Transaction};

/// Writes `batch` in one transaction, each item by `write` in a savepoint of its own; the
/// answers are in batch order. When the transaction cannot start or commit, or a savepoint
/// cannot be opened, released or rolled back (the transaction's state is then unknown:
/// PostgreSQL would silently roll back a commit of an aborted transaction), every item is
/// answered `unavailable()` and nothing of the batch is kept.
pub(crate) async fn in_savepoints<W, T, E>(
    db: &Db,
    what: &'static str,
    batch: &[W],
    unavailable: impl Fn() -> E,
    write: impl AsyncFn(&mut Transaction<'_, Any>, &W) -> Result<T, E>,
) -> Vec<Result<T, E>>
where
    E: From<sqlx::Error>,
{
    let failed = |e: &sqlx::Error| -> Vec<Result<T, E>> {
        tracing::warn!(error = %e, writes = batch.len(), "{what} group commit failed");
        batch.iter().map(|_| Err(unavailable())).collect()
    };
    let mut tx = match db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => return failed(&e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for item in batch {
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
