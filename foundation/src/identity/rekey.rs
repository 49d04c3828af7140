//! Key rotation, second half: after a new key is put first in `field_keys` (the old ones stay
//! behind it so old rows remain readable), this rewrites every encrypted field under the new
//! primary key. Afterwards the old keys can be removed from the configuration.

use sqlx::Row;

use crate::audit::{Audit, AuditEvent};
use crate::crypto::Keys;
use crate::db::Db;

/// One encrypted column: how to read its rows and how to replace one value.
struct EncryptedColumn {
    name: &'static str,
    select: &'static str,
    update: &'static str,
}

const COLUMNS: &[EncryptedColumn] = &[
    EncryptedColumn {
        name: "accounts.phone_enc",
        select: "SELECT id, phone_enc FROM accounts WHERE phone_enc IS NOT NULL AND id > $1 ORDER BY id LIMIT 500",
        update: "UPDATE accounts SET phone_enc = $1 WHERE id = $2 AND phone_enc = $3",
    },
    EncryptedColumn {
        name: "accounts.id_number_enc",
        select: "SELECT id, id_number_enc FROM accounts WHERE id_number_enc IS NOT NULL AND id > $1 ORDER BY id LIMIT 500",
        update: "UPDATE accounts SET id_number_enc = $1 WHERE id = $2 AND id_number_enc = $3",
    },
    EncryptedColumn {
        name: "institutions.contact_phone_enc",
        select: "SELECT id, contact_phone_enc FROM institutions WHERE contact_phone_enc IS NOT NULL AND id > $1 ORDER BY id LIMIT 500",
        update: "UPDATE institutions SET contact_phone_enc = $1 WHERE id = $2 AND contact_phone_enc = $3",
    },
];

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RekeyReport {
    pub primary_kid: String,
    pub checked: u64,
    pub rewritten: u64,
}

/// Rewrites every value not yet under the primary key. Safe to run while livecamp serves: each
/// row is replaced only if it still holds the value that was read.
pub async fn reencrypt_all(db: &Db, keys: &Keys, audit: &Audit) -> anyhow::Result<RekeyReport> {
    let mut report = RekeyReport {
        primary_kid: keys.fields.primary_kid().to_owned(),
        ..RekeyReport::default()
    };
    for column in COLUMNS {
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(column.select)
                .bind(after)
                .fetch_all(db.pool())
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let id: i64 = row.try_get(0)?;
                let stored: String = row.try_get(1)?;
                after = id;
                report.checked += 1;
                if !keys.fields.needs_reencryption(&stored) {
                    continue;
                }
                let plain = keys.fields.decrypt(&stored).map_err(|e| {
                    anyhow::anyhow!("{} of row {id} cannot be decrypted: {e}", column.name)
                })?;
                sqlx::query(column.update)
                    .bind(keys.fields.encrypt(&plain))
                    .bind(id)
                    .bind(&stored)
                    .execute(db.pool())
                    .await?;
                report.rewritten += 1;
            }
        }
    }
    audit
        .append(
            AuditEvent::new(
                None,
                "keys_reencrypted",
                format!("kid:{}", report.primary_kid),
            )
            .detail(serde_json::json!({"checked": report.checked, "rewritten": report.rewritten}))
            .ip("cli"),
        )
        .await?;
    Ok(report)
}
