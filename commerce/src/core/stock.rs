//! The stock gate core for flash sales (秒杀): decides, in memory, whether a reservation may
//! go ahead, so the database only sees requests that can succeed.
//!
//! Sans-IO and single-threaded: the caller wraps a [`StockGate`] in a mutex and persists what
//! it decides. The invariant it keeps is `remaining + sum(taken_by) == stock` (as long as the
//! reservations loaded with [`StockGate::with_taken`] did not already exceed the stock).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Why a reservation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    #[error("sold out")]
    SoldOut,
    #[error("purchase limit per user reached")]
    LimitReached,
    #[error("sale has not started")]
    NotOpen,
    #[error("sale has ended")]
    Ended,
    #[error("quantity must be positive")]
    BadQuantity,
}

impl Refusal {
    /// The stable machine-readable code (same as the serde name).
    pub fn as_code(self) -> &'static str {
        match self {
            Self::SoldOut => "sold_out",
            Self::LimitReached => "limit_reached",
            Self::NotOpen => "not_open",
            Self::Ended => "ended",
            Self::BadQuantity => "bad_quantity",
        }
    }
}

/// Where a sale is relative to its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Upcoming,
    Open,
    Ended,
}

/// When a sale runs, in Unix milliseconds: open during `[starts_at, ends_at)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleWindow {
    pub starts_at: i64,
    pub ends_at: i64,
}

impl SaleWindow {
    pub fn phase(&self, now: i64) -> Phase {
        if now < self.starts_at {
            Phase::Upcoming
        } else if now < self.ends_at {
            Phase::Open
        } else {
            Phase::Ended
        }
    }
}

/// The stock and per-user counts of one flash-sale item.
#[derive(Debug, Clone)]
pub struct StockGate {
    stock: u32,
    remaining: u32,
    per_user_limit: u32,
    window: SaleWindow,
    /// Units held by each user (reserved or ordered); users at zero are dropped.
    taken: HashMap<i64, u32>,
}

impl StockGate {
    /// A gate with all `stock` units free. A `per_user_limit` of 0 lets nobody buy.
    pub fn new(stock: u32, per_user_limit: u32, window: SaleWindow) -> Self {
        Self {
            stock,
            remaining: stock,
            per_user_limit,
            window,
            taken: HashMap::new(),
        }
    }

    /// Loads an existing reservation or order at start-up: `user` already holds `qty` more.
    ///
    /// No limit or window check: what is in storage already happened. Remaining saturates at
    /// zero if storage holds more than the stock (then nothing more can be reserved).
    pub fn with_taken(mut self, user: i64, qty: u32) -> Self {
        if qty > 0 {
            let held = self.taken.entry(user).or_insert(0);
            *held = held.saturating_add(qty);
            self.remaining = self.remaining.saturating_sub(qty);
        }
        self
    }

    /// Reserves `qty` units for `user` at `now`, returning the units remaining afterwards.
    ///
    /// Checks, in order: quantity (0 is `BadQuantity`), the sale phase, the user's limit, the
    /// stock. A refusal changes nothing.
    pub fn try_reserve(&mut self, now: i64, user: i64, qty: u32) -> Result<u32, Refusal> {
        if qty == 0 {
            return Err(Refusal::BadQuantity);
        }
        match self.window.phase(now) {
            Phase::Upcoming => return Err(Refusal::NotOpen),
            Phase::Ended => return Err(Refusal::Ended),
            Phase::Open => {}
        }
        let held = self.taken_by(user);
        // Widen so a huge `qty` cannot overflow the sum.
        if u64::from(held) + u64::from(qty) > u64::from(self.per_user_limit) {
            return Err(Refusal::LimitReached);
        }
        if qty > self.remaining {
            return Err(Refusal::SoldOut);
        }
        self.remaining -= qty;
        // Cannot overflow: held + qty <= per_user_limit, a u32.
        self.taken.insert(user, held + qty);
        Ok(self.remaining)
    }

    /// Gives back `qty` units of `user` (an unpaid reservation expired or the order was
    /// cancelled). Releases at most what the user holds and never lifts remaining above the
    /// stock, so a duplicate or stale release cannot create units.
    pub fn release(&mut self, user: i64, qty: u32) {
        let held = self.taken_by(user);
        let back = qty.min(held);
        if back == 0 {
            return;
        }
        if held == back {
            self.taken.remove(&user);
        } else {
            self.taken.insert(user, held - back);
        }
        self.remaining = self.remaining.saturating_add(back).min(self.stock);
    }

    /// Units still free.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Units `user` holds.
    pub fn taken_by(&self, user: i64) -> u32 {
        self.taken.get(&user).copied().unwrap_or(0)
    }

    /// The initial stock.
    pub fn stock(&self) -> u32 {
        self.stock
    }

    pub fn per_user_limit(&self) -> u32 {
        self.per_user_limit
    }

    pub fn window(&self) -> SaleWindow {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WINDOW: SaleWindow = SaleWindow {
        starts_at: 1_000,
        ends_at: 2_000,
    };
    const NOW: i64 = 1_500;

    #[test]
    fn phases() {
        assert_eq!(WINDOW.phase(999), Phase::Upcoming);
        assert_eq!(WINDOW.phase(1_000), Phase::Open);
        assert_eq!(WINDOW.phase(1_999), Phase::Open);
        assert_eq!(WINDOW.phase(2_000), Phase::Ended);
    }

    #[test]
    fn reserve_checks_in_order() {
        let mut gate = StockGate::new(3, 2, WINDOW);
        assert_eq!(gate.try_reserve(0, 1, 0), Err(Refusal::BadQuantity));
        assert_eq!(gate.try_reserve(999, 1, 1), Err(Refusal::NotOpen));
        assert_eq!(gate.try_reserve(2_000, 1, 1), Err(Refusal::Ended));
        assert_eq!(gate.try_reserve(NOW, 1, 3), Err(Refusal::LimitReached));
        assert_eq!(gate.try_reserve(NOW, 1, 2), Ok(1));
        assert_eq!(gate.try_reserve(NOW, 1, 1), Err(Refusal::LimitReached));
        assert_eq!(gate.try_reserve(NOW, 2, 2), Err(Refusal::SoldOut));
        assert_eq!(gate.try_reserve(NOW, 2, 1), Ok(0));
        assert_eq!(gate.try_reserve(NOW, 3, 1), Err(Refusal::SoldOut));
        assert_eq!(gate.remaining(), 0);
        assert_eq!(gate.taken_by(1), 2);
        assert_eq!(gate.taken_by(2), 1);
        assert_eq!(gate.taken_by(3), 0);
        assert_eq!(gate.stock(), 3);
    }

    #[test]
    fn huge_quantity_does_not_overflow() {
        let mut gate = StockGate::new(10, 5, WINDOW).with_taken(1, 3);
        assert_eq!(
            gate.try_reserve(NOW, 1, u32::MAX),
            Err(Refusal::LimitReached)
        );
        let mut unlimited = StockGate::new(10, u32::MAX, WINDOW);
        assert_eq!(
            unlimited.try_reserve(NOW, 1, u32::MAX),
            Err(Refusal::SoldOut)
        );
    }

    #[test]
    fn release_gives_back_only_what_was_held() {
        let mut gate = StockGate::new(5, 3, WINDOW);
        gate.try_reserve(NOW, 1, 3).unwrap();
        gate.release(1, 1);
        assert_eq!((gate.remaining(), gate.taken_by(1)), (3, 2));
        gate.release(1, 10);
        assert_eq!((gate.remaining(), gate.taken_by(1)), (5, 0));
        gate.release(1, 1);
        gate.release(2, 1);
        assert_eq!(gate.remaining(), 5);
        // Released units can be bought again.
        assert_eq!(gate.try_reserve(NOW, 2, 3), Ok(2));
    }

    #[test]
    fn with_taken_loads_existing_holds() {
        let gate = StockGate::new(10, 4, WINDOW)
            .with_taken(1, 2)
            .with_taken(1, 1)
            .with_taken(2, 4)
            .with_taken(3, 0);
        assert_eq!(gate.remaining(), 3);
        assert_eq!(gate.taken_by(1), 3);
        assert_eq!(gate.taken_by(2), 4);
        assert_eq!(gate.taken_by(3), 0);
        let mut gate = gate;
        assert_eq!(gate.try_reserve(NOW, 1, 2), Err(Refusal::LimitReached));
        assert_eq!(gate.try_reserve(NOW, 1, 1), Ok(2));

        let over = StockGate::new(2, 5, WINDOW).with_taken(1, 3);
        assert_eq!(over.remaining(), 0);
    }

    #[test]
    fn refusal_codes_match_serde() {
        for refusal in [
            Refusal::SoldOut,
            Refusal::LimitReached,
            Refusal::NotOpen,
            Refusal::Ended,
            Refusal::BadQuantity,
        ] {
            let json = serde_json::to_string(&refusal).unwrap();
            assert_eq!(json, format!("\"{}\"", refusal.as_code()));
        }
        assert_eq!(
            serde_json::to_string(&Phase::Upcoming).unwrap(),
            "\"upcoming\""
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Reserve { user: i64, qty: u32 },
        Release { user: i64, qty: u32 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..6, 0u32..5).prop_map(|(user, qty)| Op::Reserve { user, qty }),
            (0i64..6, 0u32..5).prop_map(|(user, qty)| Op::Release { user, qty }),
        ]
    }

    proptest! {
        #[test]
        fn counts_stay_consistent(
            stock in 0u32..40,
            limit in 0u32..8,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut gate = StockGate::new(stock, limit, WINDOW);
            // An independent model of what each user holds.
            let mut model: HashMap<i64, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Reserve { user, qty } => {
                        let before = gate.remaining();
                        match gate.try_reserve(NOW, user, qty) {
                            Ok(after) => {
                                prop_assert_eq!(after, before - qty);
                                *model.entry(user).or_insert(0) += qty;
                            }
                            Err(_) => prop_assert_eq!(gate.remaining(), before),
                        }
                    }
                    Op::Release { user, qty } => {
                        gate.release(user, qty);
                        let held = model.entry(user).or_insert(0);
                        *held -= qty.min(*held);
                    }
                }
                let total: u32 = model.values().sum();
                prop_assert!(total <= stock);
                prop_assert_eq!(gate.remaining() + total, stock);
                for (&user, &held) in &model {
                    prop_assert!(held <= limit);
                    prop_assert_eq!(gate.taken_by(user), held);
                }
            }
        }
    }
}
