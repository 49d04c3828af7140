//! The order state machine: which action, by whom, moves an order from one status to another,
//! and whether the move gives reserved stock back.
//!
//! ```text
//! pending_payment --pay--> paid --ship--> shipped --confirm_receipt--> completed
//!        |                  |                |                            |
//!   cancel/expire           +----------------+---- request_refund --------+   (仅退款)
//!        v                                   v                            |
//!    cancelled                        refund_requested --approve_refund--> refunded
//!                                                                         ^
//!                            shipped, completed --request_return-->       |   (退货退款)
//!   return_requested --approve_return--> return_approved --ship_return--> return_shipped
//!                                                                         |
//!                                                  confirm_return --------+
//! ```
//!
//! From `refund_requested`, `return_requested` and `return_approved` the request can also end
//! without a refund: the merchant rejects it (`reject_refund`, `reject_return`; not once the
//! return was approved) or the buyer withdraws it (`withdraw`), and the order goes back to the
//! status the request came from (`refund_from`).
//!
//! `cancelled` and `refunded` are terminal; `completed` only allows a refund or return request.
//! The system (the sweeper) stands in for a party that does not act in time: it approves a
//! request the merchant left unanswered, closes a return the buyer never shipped back, and
//! refunds a return the merchant never confirmed.

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
    /// The buyer asked to send the goods back for a refund (退货退款).
    ReturnRequested,
    /// The merchant agreed; the buyer is to ship the goods back.
    ReturnApproved,
    /// The buyer shipped them back (with a tracking number); the merchant is to confirm receipt.
    ReturnShipped,
    Refunded,
}

impl OrderStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [OrderStatus; 10] = [
        Self::PendingPayment,
        Self::Paid,
        Self::Shipped,
        Self::Completed,
        Self::Cancelled,
        Self::RefundRequested,
        Self::ReturnRequested,
        Self::ReturnApproved,
        Self::ReturnShipped,
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
            Self::ReturnRequested => "return_requested",
            Self::ReturnApproved => "return_approved",
            Self::ReturnShipped => "return_shipped",
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

    /// The statuses a return may be requested from (and a closed return goes back to): the
    /// goods must have left the warehouse.
    pub fn is_returnable(self) -> bool {
        matches!(self, Self::Shipped | Self::Completed)
    }

    /// An open refund or return request: the order is waiting on one of its parties.
    pub fn is_after_sale(self) -> bool {
        matches!(
            self,
            Self::RefundRequested
                | Self::ReturnRequested
                | Self::ReturnApproved
                | Self::ReturnShipped
        )
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
    /// Ask to send the goods back for a refund.
    RequestReturn,
    ApproveReturn,
    RejectReturn,
    /// The buyer sends the goods back.
    ShipReturn,
    /// The merchant received the goods back: the buyer is refunded and the units restocked.
    ConfirmReturn,
    /// The buyer takes back an open refund or return request (or the system closes a return
    /// that was never shipped back).
    Withdraw,
}

impl Action {
    pub const ALL: [Action; 14] = [
        Self::Pay,
        Self::Cancel,
        Self::Expire,
        Self::Ship,
        Self::ConfirmReceipt,
        Self::RequestRefund,
        Self::ApproveRefund,
        Self::RejectRefund,
        Self::RequestReturn,
        Self::ApproveReturn,
        Self::RejectReturn,
        Self::ShipReturn,
        Self::ConfirmReturn,
        Self::Withdraw,
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
            Self::RequestReturn => "request_return",
            Self::ApproveReturn => "approve_return",
            Self::RejectReturn => "reject_return",
            Self::ShipReturn => "ship_return",
            Self::ConfirmReturn => "confirm_return",
            Self::Withdraw => "withdraw",
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
        (A::ApproveRefund, S::RefundRequested) => (
            S::Refunded,
            refund_from == Some(S::Paid),
            matches!(actor, Merchant | System),
        ),
        (A::RejectRefund, S::RefundRequested) => match refund_from {
            Some(back) if back.is_refundable() => (back, false, actor == Merchant),
            _ => return Err(not_allowed),
        },
        (A::RequestReturn, S::Shipped | S::Completed) => {
            (S::ReturnRequested, false, actor == Buyer)
        }
        (A::ApproveReturn, S::ReturnRequested) => {
            (S::ReturnApproved, false, matches!(actor, Merchant | System))
        }
        (A::RejectReturn, S::ReturnRequested) => match refund_from {
            Some(back) if back.is_returnable() => (back, false, actor == Merchant),
            _ => return Err(not_allowed),
        },
        (A::ShipReturn, S::ReturnApproved) => (S::ReturnShipped, false, actor == Buyer),
        // The merchant has the goods back: they go back in stock. When the system refunds a
        // return the merchant never confirmed, nobody saw them arrive: no restock.
        (A::ConfirmReturn, S::ReturnShipped) => (
            S::Refunded,
            actor == Merchant,
            matches!(actor, Merchant | System),
        ),
        (A::Withdraw, S::RefundRequested) => match refund_from {
            Some(back) if back.is_refundable() => (back, false, actor == Buyer),
            _ => return Err(not_allowed),
        },
        (A::Withdraw, S::ReturnRequested | S::ReturnApproved) => match refund_from {
            // The system closes an approved return the buyer never shipped back.
            Some(back) if back.is_returnable() => (
                back,
                false,
                actor == Buyer || (actor == System && from == S::ReturnApproved),
            ),
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
        (S::PendingPayment,  A::Pay,            Origin::Any,                         &[Buyer],            S::Paid,            false),
        (S::PendingPayment,  A::Cancel,         Origin::Any,                         &[Buyer, Merchant],  S::Cancelled,       true),
        (S::PendingPayment,  A::Expire,         Origin::Any,                         &[System],           S::Cancelled,       true),
        (S::Paid,            A::Ship,           Origin::Any,                         &[Merchant],         S::Shipped,         false),
        (S::Shipped,         A::ConfirmReceipt, Origin::Any,                         &[Buyer, System],    S::Completed,       false),
        (S::Paid,            A::RequestRefund,  Origin::Any,                         &[Buyer],            S::RefundRequested, false),
        (S::Shipped,         A::RequestRefund,  Origin::Any,                         &[Buyer],            S::RefundRequested, false),
        (S::Completed,       A::RequestRefund,  Origin::Any,                         &[Buyer],            S::RefundRequested, false),
        (S::RefundRequested, A::ApproveRefund,  Origin::Exactly(Some(S::Paid)),      &[Merchant, System], S::Refunded,        true),
        (S::RefundRequested, A::ApproveRefund,  Origin::Exactly(Some(S::Shipped)),   &[Merchant, System], S::Refunded,        false),
        (S::RefundRequested, A::ApproveRefund,  Origin::Exactly(Some(S::Completed)), &[Merchant, System], S::Refunded,        false),
        (S::RefundRequested, A::ApproveRefund,  Origin::Exactly(None),               &[Merchant, System], S::Refunded,        false),
        (S::RefundRequested, A::RejectRefund,   Origin::Exactly(Some(S::Paid)),      &[Merchant],         S::Paid,            false),
        (S::RefundRequested, A::RejectRefund,   Origin::Exactly(Some(S::Shipped)),   &[Merchant],         S::Shipped,         false),
        (S::RefundRequested, A::RejectRefund,   Origin::Exactly(Some(S::Completed)), &[Merchant],         S::Completed,       false),
        (S::RefundRequested, A::Withdraw,       Origin::Exactly(Some(S::Paid)),      &[Buyer],            S::Paid,            false),
        (S::RefundRequested, A::Withdraw,       Origin::Exactly(Some(S::Shipped)),   &[Buyer],            S::Shipped,         false),
        (S::RefundRequested, A::Withdraw,       Origin::Exactly(Some(S::Completed)), &[Buyer],            S::Completed,       false),
        (S::Shipped,         A::RequestReturn,  Origin::Any,                         &[Buyer],            S::ReturnRequested, false),
        (S::Completed,       A::RequestReturn,  Origin::Any,                         &[Buyer],            S::ReturnRequested, false),
        (S::ReturnRequested, A::ApproveReturn,  Origin::Any,                         &[Merchant, System], S::ReturnApproved,  false),
        (S::ReturnRequested, A::RejectReturn,   Origin::Exactly(Some(S::Shipped)),   &[Merchant],         S::Shipped,         false),
        (S::ReturnRequested, A::RejectReturn,   Origin::Exactly(Some(S::Completed)), &[Merchant],         S::Completed,       false),
        (S::ReturnRequested, A::Withdraw,       Origin::Exactly(Some(S::Shipped)),   &[Buyer],            S::Shipped,         false),
        (S::ReturnRequested, A::Withdraw,       Origin::Exactly(Some(S::Completed)), &[Buyer],            S::Completed,       false),
        (S::ReturnApproved,  A::ShipReturn,     Origin::Any,                         &[Buyer],            S::ReturnShipped,   false),
        (S::ReturnApproved,  A::Withdraw,       Origin::Exactly(Some(S::Shipped)),   &[Buyer, System],    S::Shipped,         false),
        (S::ReturnApproved,  A::Withdraw,       Origin::Exactly(Some(S::Completed)), &[Buyer, System],    S::Completed,       false),
        (S::ReturnShipped,   A::ConfirmReturn,  Origin::Any,                         &[Merchant],         S::Refunded,        true),
        (S::ReturnShipped,   A::ConfirmReturn,  Origin::Any,                         &[System],           S::Refunded,        false),
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
        let mut rows = TABLE
            .iter()
            .filter(|(f, a, rf, ..)| {
                *f == from
                    && *a == action
                    && match rf {
                        Origin::Any => true,
                        Origin::Exactly(x) => *x == refund_from,
                    }
            })
            .peekable();
        if rows.peek().is_none() {
            return Err(TransitionError::NotAllowed { from, action });
        }
        // A move may have one row per actor (the outcome can differ by who acts).
        match rows.find(|(.., actors, _, _)| actors.contains(&actor)) {
            None => Err(TransitionError::WrongActor),
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
        // 14 any-origin rows with 17 (row, actor) pairs, for each of the 4 origins; 16 exact
        // rows with 22 (row, actor) pairs.
        assert_eq!(allowed, 17 * 4 + 22);
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
    fn terminal_states_are_final_and_completed_only_refunds_or_returns() {
        for from in S::ALL {
            for action in A::ALL {
                for actor in Actor::ALL {
                    for refund_from in std::iter::once(None).chain(S::ALL.map(Some)) {
                        let got = transition(from, action, actor, refund_from);
                        if from.is_terminal() {
                            assert!(got.is_err(), "{from} {action}");
                        }
                        if from == S::Completed && got.is_ok() {
                            assert!(matches!(action, A::RequestRefund | A::RequestReturn));
                        }
                    }
                }
            }
        }
        assert!(S::Cancelled.is_terminal() && S::Refunded.is_terminal());
        assert!(S::ALL.iter().filter(|s| s.is_terminal()).count() == 2);
    }

    #[test]
    fn a_return_needs_goods_that_left_and_restocks_when_they_come_back() {
        // Never shipped: nothing to send back (a refund is the way).
        assert!(transition(S::Paid, A::RequestReturn, Buyer, None).is_err());
        // The full return path, from a completed order.
        let origin = Some(S::Completed);
        let asked = transition(S::Completed, A::RequestReturn, Buyer, None).unwrap();
        let approved = transition(asked.to, A::ApproveReturn, Merchant, origin).unwrap();
        let shipped = transition(approved.to, A::ShipReturn, Buyer, origin).unwrap();
        let refunded = transition(shipped.to, A::ConfirmReturn, Merchant, origin).unwrap();
        assert_eq!(
            [asked.to, approved.to, shipped.to, refunded.to],
            [
                S::ReturnRequested,
                S::ReturnApproved,
                S::ReturnShipped,
                S::Refunded
            ]
        );
        assert!(refunded.restock && !asked.restock && !approved.restock && !shipped.restock);
        // Refunded by the system after the merchant's deadline: nobody saw the goods arrive.
        let by_system = transition(shipped.to, A::ConfirmReturn, System, origin).unwrap();
        assert_eq!(by_system.to, S::Refunded);
        assert!(!by_system.restock);
        // Once the goods are on their way back, the request can no longer be dropped.
        for action in [A::Withdraw, A::RejectReturn] {
            for actor in Actor::ALL {
                assert!(transition(S::ReturnShipped, action, actor, origin).is_err());
            }
        }
        // The system closes an approved return never shipped back, but not a fresh request.
        assert_eq!(
            transition(S::ReturnApproved, A::Withdraw, System, origin).map(|t| t.to),
            Ok(S::Completed)
        );
        assert_eq!(
            transition(S::ReturnRequested, A::Withdraw, System, origin),
            Err(TransitionError::WrongActor)
        );
        assert!(
            S::ALL
                .iter()
                .filter(|s| s.is_after_sale())
                .all(|s| !s.is_terminal())
        );
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
