//! Simulated money: every account has a wallet opened with a training balance; every change is a
//! ledger entry written in the same transaction as the change it pays for, so a balance always
//! equals the sum of its entries and nothing is paid twice.

use foundation::{ApiError, ErrorCode};
use sqlx::{Any, Row, Transaction};

/// What a new wallet starts with: ¥10,000 of practice money.
pub const OPENING_CENTS: i64 = 1_000_000;

/// Why a wallet changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Opening,
    OrderPayment,
    OrderIncome,
    Refund,
    RefundClawback,
    RedPacketSend,
    RedPacketGrab,
    RedPacketReturn,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Opening => "opening",
            Reason::OrderPayment => "order_payment",
            Reason::OrderIncome => "order_income",
            Reason::Refund => "refund",
            Reason::RefundClawback => "refund_clawback",
            Reason::RedPacketSend => "red_packet_send",
            Reason::RedPacketGrab => "red_packet_grab",
            Reason::RedPacketReturn => "red_packet_return",
        }
    }
}

/// Opens `account`'s wallet if it has none.
pub async fn ensure(
    tx: &mut Transaction<'_, Any>,
    account: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let opened = sqlx::query(
        "INSERT INTO wallets (account_id, balance_cents, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account)
    .bind(OPENING_CENTS)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if opened == 1 {
        entry(
            tx,
            account,
            OPENING_CENTS,
            OPENING_CENTS,
            Reason::Opening,
            None,
            now,
        )
        .await?;
    }
    Ok(())
}

/// Adds `delta` (negative: takes) to `account`'s balance; refuses to go below zero, except
/// for a refund clawback, which may leave the merchant owing (the buyer's refund never waits on
/// the merchant's balance; an account in debt can spend nothing until income covers it, and
/// always receives).
pub async fn apply(
    tx: &mut Transaction<'_, Any>,
    account: i64,
    delta: i64,
    reason: Reason,
    ref_id: Option<i64>,
    now: i64,
) -> Result<i64, ApiError> {
    ensure(tx, account, now).await?;
    let may_owe = reason == Reason::RefundClawback;
    let row = sqlx::query(
        "UPDATE wallets SET balance_cents = balance_cents + $1, updated_at = $2 \
         WHERE account_id = $3 AND ($4 = 1 OR $1 >= 0 OR balance_cents + $1 >= 0) RETURNING balance_cents",
    )
    .bind(delta)
    .bind(now)
    .bind(account)
    .bind(i64::from(may_owe))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Err(ErrorCode::InsufficientBalance.into());
    };
    let balance: i64 = row.try_get(0)?;
    entry(tx, account, delta, balance, reason, ref_id, now).await?;
    Ok(balance)
}

async fn entry(
    tx: &mut Transaction<'_, Any>,
    account: i64,
    delta: i64,
    balance_after: i64,
    reason: Reason,
    ref_id: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO wallet_entries (account_id, delta_cents, balance_after, reason, ref_id, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(account)
    .bind(delta)
    .bind(balance_after)
    .bind(reason.as_str())
    .bind(ref_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
