//! The order state machine: which action, by whom, moves an order from one status to another,
//! and whether the move gives reserved stock back.
//!
//! ```text
//! pending_payment --pay--> paid --ship--> shipped --confirm_receipt--> completed
//!        |                  |                |                            |
//!   cancel/expire           +----------------+---- request_refund --------+
//!        v                                   v
//!    cancelled                        refund_requested --approve_refund--> refunded
//!                                            |
//!                                            +--reject_refund--> (the status it came from)
//! ```
//!
//! `cancelled` and `refunded` are terminal; `completed` only allows a refund request.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Shipped,
    Completed,
    Cancelled,
    RefundRequested,
    Refunded,
}

impl OrderStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [OrderStatus; 7] = [
        Self::PendingPayment,
        Self::Paid,
        Self::Shipped,
        Self::Completed,
        Self::Cancelled,
        Self::RefundRequested,
        Self::Refunded,
    ];

    /// The stored and wire name (same as the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::RefundRequested => "refund_requested",
            Self::Refunded => "refunded",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// No action leaves a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Cancelled | Self::Refunded)
    }

    /// The statuses a refund may be requested from (and a rejected refund returns to).
    pub fn is_refundable(self) -> bool {
        matches!(self, Self::Paid | Self::Shipped | Self::Completed)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who performs an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Buyer,
    Merchant,
    /// Timers and jobs: payment expiry, automatic receipt confirmation.
    System,
}

impl Actor {
    pub const ALL: [Actor; 3] = [Self::Buyer, Self::Merchant, Self::System];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buyer => "buyer",
            Self::Merchant => "merchant",
            Self::System => "system",
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can be done to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Pay,
    Cancel,
    /// The payment window ran out.
    Expire,
    Ship,
    ConfirmReceipt,
    RequestRefund,
    ApproveRefund,
    RejectRefund,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Self::Pay,
        Self::Cancel,
        Self::Expire,
        Self::Ship,
        Self::ConfirmReceipt,
        Self::RequestRefund,
        Self::ApproveRefund,
        Self::RejectRefund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pay => "pay",
            Self::Cancel => "cancel",
            Self::Expire => "expire",
            Self::Ship => "ship",
            Self::ConfirmReceipt => "confirm_receipt",
            Self::RequestRefund => "request_refund",
            Self::ApproveRefund => "approve_refund",
            Self::RejectRefund => "reject_refund",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of an allowed action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub to: OrderStatus,
    /// The reserved stock goes back: the goods never left the warehouse.
    pub restock: bool,
}

/// Why an action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot {action} an order that is {from}")]
    NotAllowed { from: OrderStatus, action: Action },
    #[error("this actor may not perform that action")]
    WrongActor,
}

/// Applies `action` by `actor` to an order in status `from`.
///
/// `refund_from` is the status the order had when its refund was requested: a rejected refund
/// returns there, and an approved one restocks only if it was `Paid` (never shipped). An
/// approval with `refund_from == None` does not restock, since restocking goods that may
/// have shipped would oversell.
///
/// The action is checked first: if it is impossible from `from` (including a rejection whose
/// `refund_from` is missing or not a refundable status) the result is `NotAllowed` whoever
/// asks; only then is the actor checked (`WrongActor`). So an unauthorised caller learns no
/// more than "not allowed" about orders the action could never apply to.
pub fn transition(
    from: OrderStatus,
    action: Action,
    actor: Actor,
    refund_from: Option<OrderStatus>,
) -> Result<Transition, TransitionError> {
    use Action as A;
    use Actor::{Buyer, Merchant, System};
    use OrderStatus as S;

    let not_allowed = TransitionError::NotAllowed { from, action };
    let (to, restock, actor_ok) = match (action, from) {
        (A::Pay, S::PendingPayment) => (S::Paid, false, actor == Buyer),
        (A::Cancel, S::PendingPayment) => (S::Cancelled, true, matches!(actor, Buyer | Merchant)),
        (A::Expire, S::PendingPayment) => (S::Cancelled, true, actor == System),
        (A::Ship, S::Paid) => (S::Shipped, false, actor == Merchant),
        (A::ConfirmReceipt, S::Shipped) => (S::Completed, false, matches!(actor, Buyer | System)),
        (A::RequestRefund, S::Paid | S::Shipped | S::Completed) => {
            (S::RefundRequested, false, actor == Buyer)
        }
        (A::ApproveRefund, S::RefundRequested) => {
            (S::Refunded, refund_from == Some(S::Paid), actor == Merchant)
        }
        (A::RejectRefund, S::RefundRequested) => match refund_from {
            Some(back) if back.is_refundable() => (back, false, actor == Merchant),
            _ => return Err(not_allowed),
        },
        _ => return Err(not_allowed),
    };
    if !actor_ok {
        return Err(TransitionError::WrongActor);
    }
    Ok(Transition { to, restock })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use Actor::{Buyer, Merchant, System};
    use OrderStatus as S;

    /// Which `refund_from` a table row applies to.
    #[derive(Clone, Copy)]
    enum Origin {
        Any,
        Exactly(Option<OrderStatus>),
    }

    /// One allowed move: (from, action, refund_from, actors allowed, to, restock).
    type Row = (
        OrderStatus,
        Action,
        Origin,
        &'static [Actor],
        OrderStatus,
        bool,
    );

    /// Every allowed move; anything else is `NotAllowed`, or `WrongActor` when only the
    /// actor is off. Kept unformatted so it reads as a table.
    #[rustfmt::skip]
    const TABLE: &[Row] = &[
        (S::PendingPayment,  A::Pay,            Origin::Any,                         &[Buyer],           S::Paid,            false),
        (S::PendingPayment,  A::Cancel,         Origin::Any,                         &[Buyer, Merchant], S::Cancelled,       true),
        (S::PendingPayment,  A::Expire,         Origin::Any,                         &[System],          S::Cancelled,       true),
        (S::Paid,            A::Ship,           Origin::Any,                         &[Merchant],        S::Shipped,         false),
        (S::Shipped,         A::ConfirmReceipt, Origin::Any,                         &[Buyer, System],   S::Completed,       false),
        (S::Paid,            A::RequestRefund,  Origin::Any,                         &[Buyer],           S::RefundRequested, false),
        (S::Shipped,         A::RequestRefund,  Origin::Any,                         &[Buyer],           S::RefundRequested, false),
        (S::Completed,       A::RequestRefund,  Origin::Any,                         &[Buyer],           S::RefundRequested, false),
        (S::RefundRequested, A::ApproveRefund,  Origin::Exactly(Some(S::Paid)),      &[Merchant],        S::Refunded,        true),
        (S::RefundRequested, A::ApproveRefund,  Origin::Exactly(Some(S::Shipped)),   &[Merchant],        S::Refunded,        false),
        (S::RefundRequested, A::ApproveRefund,  Origin::Exactly(Some(S::Completed)), &[Merchant],        S::Refunded,        false),
        (S::RefundRequested, A::ApproveRefund,  Origin::Exactly(None),               &[Merchant],        S::Refunded,        false),
        (S::RefundRequested, A::RejectRefund,   Origin::Exactly(Some(S::Paid)),      &[Merchant],        S::Paid,            false),
        (S::RefundRequested, A::RejectRefund,   Origin::Exactly(Some(S::Shipped)),   &[Merchant],        S::Shipped,         false),
        (S::RefundRequested, A::RejectRefund,   Origin::Exactly(Some(S::Completed)), &[Merchant],        S::Completed,       false),
    ];

    /// The `refund_from` values a real order can carry.
    const REFUND_FROMS: [Option<OrderStatus>; 4] =
        [None, Some(S::Paid), Some(S::Shipped), Some(S::Completed)];

    fn expected(
        from: OrderStatus,
        action: Action,
        actor: Actor,
        refund_from: Option<OrderStatus>,
    ) -> Result<Transition, TransitionError> {
        let row = TABLE.iter().find(|(f, a, rf, ..)| {
            *f == from
                && *a == action
                && match rf {
                    Origin::Any => true,
                    Origin::Exactly(x) => *x == refund_from,
                }
        });
        match row {
            None => Err(TransitionError::NotAllowed { from, action }),
            Some((.., actors, _, _)) if !actors.contains(&actor) => {
                Err(TransitionError::WrongActor)
            }
            Some(&(.., to, restock)) => Ok(Transition { to, restock }),
        }
    }

    #[test]
    fn exhaustive_table() {
        let mut allowed = 0;
        for from in S::ALL {
            for action in A::ALL {
                for actor in Actor::ALL {
                    for refund_from in REFUND_FROMS {
                        let got = transition(from, action, actor, refund_from);
                        assert_eq!(
                            got,
                            expected(from, action, actor, refund_from),
                            "{from} {action} by {actor}, refund_from {refund_from:?}"
                        );
                        allowed += usize::from(got.is_ok());
                    }
                }
            }
        }
        // 8 any-origin rows with 10 (row, actor) pairs, for each of the 4 origins; 7 exact rows.
        assert_eq!(allowed, 10 * 4 + 7);
    }

    #[test]
    fn reject_refund_needs_a_refundable_origin() {
        for bad in [
            S::PendingPayment,
            S::Cancelled,
            S::RefundRequested,
            S::Refunded,
        ] {
            assert_eq!(
                transition(S::RefundRequested, A::RejectRefund, Merchant, Some(bad)),
                Err(TransitionError::NotAllowed {
                    from: S::RefundRequested,
                    action: A::RejectRefund
                })
            );
        }
        // NotAllowed wins over WrongActor.
        assert_eq!(
            transition(S::RefundRequested, A::RejectRefund, Buyer, None),
            Err(TransitionError::NotAllowed {
                from: S::RefundRequested,
                action: A::RejectRefund
            })
        );
    }

    #[test]
    fn terminal_states_are_final_and_completed_only_refunds() {
        for from in S::ALL {
            for action in A::ALL {
                for actor in Actor::ALL {
                    for refund_from in std::iter::once(None).chain(S::ALL.map(Some)) {
                        let got = transition(from, action, actor, refund_from);
                        if from.is_terminal() {
                            assert!(got.is_err(), "{from} {action}");
                        }
                        if from == S::Completed && got.is_ok() {
                            assert_eq!(action, A::RequestRefund);
                        }
                    }
                }
            }
        }
        assert!(S::Cancelled.is_terminal() && S::Refunded.is_terminal());
        assert!(S::ALL.iter().filter(|s| s.is_terminal()).count() == 2);
    }

    #[test]
    fn names_round_trip() {
        for status in S::ALL {
            assert_eq!(S::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        for action in A::ALL {
            assert_eq!(A::parse(action.as_str()), Some(action));
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
        }
        for actor in Actor::ALL {
            let json = serde_json::to_string(&actor).unwrap();
            assert_eq!(json, format!("\"{}\"", actor.as_str()));
        }
        assert_eq!(S::parse("Paid"), None);
        assert_eq!(A::parse("refund"), None);
        assert_eq!(S::PendingPayment.as_str(), "pending_payment");
        assert_eq!(S::RefundRequested.as_str(), "refund_requested");
        assert_eq!(A::ConfirmReceipt.as_str(), "confirm_receipt");
    }

    #[test]
    fn error_messages() {
        let err = transition(S::Shipped, A::Pay, Buyer, None).unwrap_err();
        assert_eq!(err.to_string(), "cannot pay an order that is shipped");
    }
}
