//! Coupon (优惠券) rules of the "threshold and discount" kind (满减): spend at least
//! `threshold_cents`, get `discount_cents` off, within a validity window and claim quotas.

use serde::{Deserialize, Serialize};

/// One coupon campaign. Times are Unix milliseconds; the window is `[valid_from, valid_until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponRule {
    /// The smallest subtotal the coupon applies to; 0 means no threshold (无门槛).
    pub threshold_cents: i64,
    pub discount_cents: i64,
    pub valid_from: i64,
    pub valid_until: i64,
    /// How many coupons may be claimed in all.
    pub total_quota: u32,
    /// How many one user may claim.
    pub per_user_limit: u32,
}

/// Why a rule is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("discount must be positive")]
    NonPositiveDiscount,
    #[error("threshold must not be negative")]
    NegativeThreshold,
    #[error("discount must be below the threshold")]
    DiscountNotBelowThreshold,
    #[error("validity must end after it starts")]
    BadWindow,
    #[error("total quota must be positive")]
    ZeroQuota,
    #[error("per-user limit must be positive")]
    ZeroPerUserLimit,
    #[error("per-user limit must not exceed the total quota")]
    PerUserAboveQuota,
}

/// Why a coupon cannot be used on an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UseError {
    #[error("coupon is not valid yet")]
    NotYetValid,
    #[error("coupon has expired")]
    Expired,
    #[error("order subtotal is below the coupon threshold of {threshold_cents} cents")]
    BelowThreshold { threshold_cents: i64 },
}

/// Why a coupon cannot be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("coupon is not valid yet")]
    NotYetValid,
    #[error("coupon has expired")]
    Expired,
    #[error("all coupons have been claimed")]
    QuotaExhausted,
    #[error("claim limit per user reached")]
    LimitReached,
}

/// Where `now` falls relative to a `[from, until)` window.
enum WindowCheck {
    Before,
    Inside,
    After,
}

fn window(from: i64, until: i64, now: i64) -> WindowCheck {
    if now < from {
        WindowCheck::Before
    } else if now < until {
        WindowCheck::Inside
    } else {
        WindowCheck::After
    }
}

impl CouponRule {
    /// Checks the rule is coherent; errors are reported in the order of the variants.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.discount_cents <= 0 {
            return Err(RuleError::NonPositiveDiscount);
        }
        if self.threshold_cents < 0 {
            return Err(RuleError::NegativeThreshold);
        }
        // A threshold coupon must leave something to pay at the threshold itself.
        if self.threshold_cents > 0 && self.discount_cents >= self.threshold_cents {
            return Err(RuleError::DiscountNotBelowThreshold);
        }
        if self.valid_until <= self.valid_from {
            return Err(RuleError::BadWindow);
        }
        if self.total_quota == 0 {
            return Err(RuleError::ZeroQuota);
        }
        if self.per_user_limit == 0 {
            return Err(RuleError::ZeroPerUserLimit);
        }
        if self.per_user_limit > self.total_quota {
            return Err(RuleError::PerUserAboveQuota);
        }
        Ok(())
    }

    /// The discount actually applied to an order of `subtotal_cents` at `now`.
    ///
    /// The result is `min(discount_cents, subtotal_cents - 1)` (never negative): the buyer
    /// always pays at least one cent, because platforms never let an order be free (a zero
    /// payment has no payment record, which breaks refunds, reconciliation and anti-abuse).
    pub fn discount_for(&self, subtotal_cents: i64, now: i64) -> Result<i64, UseError> {
        match window(self.valid_from, self.valid_until, now) {
            WindowCheck::Before => return Err(UseError::NotYetValid),
            WindowCheck::After => return Err(UseError::Expired),
            WindowCheck::Inside => {}
        }
        if subtotal_cents < self.threshold_cents {
            return Err(UseError::BelowThreshold {
                threshold_cents: self.threshold_cents,
            });
        }
        // saturating_sub: a subtotal of i64::MIN would otherwise overflow.
        Ok(self
            .discount_cents
            .min(subtotal_cents.saturating_sub(1))
            .max(0))
    }

    /// Whether one more coupon may be claimed at `now`, given how many have been claimed in
    /// all and by this user. Checks the window, then the total quota, then the user's limit.
    pub fn check_claim(
        &self,
        now: i64,
        claimed_total: u32,
        claimed_by_user: u32,
    ) -> Result<(), ClaimError> {
        match window(self.valid_from, self.valid_until, now) {
            WindowCheck::Before => return Err(ClaimError::NotYetValid),
            WindowCheck::After => return Err(ClaimError::Expired),
            WindowCheck::Inside => {}
        }
        if claimed_total >= self.total_quota {
            return Err(ClaimError::QuotaExhausted);
        }
        if claimed_by_user >= self.per_user_limit {
            return Err(ClaimError::LimitReached);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ¥10 off ¥100, valid during [1000, 2000), 100 coupons, 2 per user.
    fn rule() -> CouponRule {
        CouponRule {
            threshold_cents: 10_000,
            discount_cents: 1_000,
            valid_from: 1_000,
            valid_until: 2_000,
            total_quota: 100,
            per_user_limit: 2,
        }
    }

    #[test]
    fn validate_accepts_good_rules() {
        assert_eq!(rule().validate(), Ok(()));
        let no_threshold = CouponRule {
            threshold_cents: 0,
            discount_cents: 500,
            ..rule()
        };
        assert_eq!(no_threshold.validate(), Ok(()));
        let one_each = CouponRule {
            total_quota: 2,
            ..rule()
        };
        assert_eq!(one_each.validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_each_flaw() {
        let cases = [
            (
                CouponRule {
                    discount_cents: 0,
                    ..rule()
                },
                RuleError::NonPositiveDiscount,
            ),
            (
                CouponRule {
                    discount_cents: -1,
                    ..rule()
                },
                RuleError::NonPositiveDiscount,
            ),
            (
                CouponRule {
                    threshold_cents: -1,
                    ..rule()
                },
                RuleError::NegativeThreshold,
            ),
            (
                CouponRule {
                    discount_cents: 10_000,
                    ..rule()
                },
                RuleError::DiscountNotBelowThreshold,
            ),
            (
                CouponRule {
                    valid_until: 1_000,
                    ..rule()
                },
                RuleError::BadWindow,
            ),
            (
                CouponRule {
                    valid_until: 999,
                    ..rule()
                },
                RuleError::BadWindow,
            ),
            (
                CouponRule {
                    total_quota: 0,
                    ..rule()
                },
                RuleError::ZeroQuota,
            ),
            (
                CouponRule {
                    per_user_limit: 0,
                    ..rule()
                },
                RuleError::ZeroPerUserLimit,
            ),
            (
                CouponRule {
                    per_user_limit: 101,
                    ..rule()
                },
                RuleError::PerUserAboveQuota,
            ),
        ];
        for (bad, expected) in cases {
            assert_eq!(bad.validate(), Err(expected), "{bad:?}");
        }
    }

    #[test]
    fn discount_respects_the_window() {
        let r = rule();
        assert_eq!(r.discount_for(20_000, 999), Err(UseError::NotYetValid));
        assert_eq!(r.discount_for(20_000, 1_000), Ok(1_000));
        assert_eq!(r.discount_for(20_000, 1_999), Ok(1_000));
        assert_eq!(r.discount_for(20_000, 2_000), Err(UseError::Expired));
    }

    #[test]
    fn discount_needs_the_threshold() {
        let r = rule();
        assert_eq!(
            r.discount_for(9_999, 1_500),
            Err(UseError::BelowThreshold {
                threshold_cents: 10_000
            })
        );
        assert_eq!(r.discount_for(10_000, 1_500), Ok(1_000));
    }

    #[test]
    fn discount_always_leaves_a_cent_to_pay() {
        let r = CouponRule {
            threshold_cents: 0,
            discount_cents: 500,
            ..rule()
        };
        assert_eq!(r.discount_for(10_000, 1_500), Ok(500));
        assert_eq!(r.discount_for(500, 1_500), Ok(499));
        assert_eq!(r.discount_for(1, 1_500), Ok(0));
        assert_eq!(r.discount_for(0, 1_500), Ok(0));
    }

    #[test]
    fn claims() {
        let r = rule();
        assert_eq!(r.check_claim(999, 0, 0), Err(ClaimError::NotYetValid));
        assert_eq!(r.check_claim(2_000, 0, 0), Err(ClaimError::Expired));
        assert_eq!(r.check_claim(1_000, 0, 0), Ok(()));
        assert_eq!(r.check_claim(1_999, 99, 1), Ok(()));
        assert_eq!(
            r.check_claim(1_500, 100, 0),
            Err(ClaimError::QuotaExhausted)
        );
        assert_eq!(r.check_claim(1_500, 50, 2), Err(ClaimError::LimitReached));
        // Quota is checked before the user's limit.
        assert_eq!(
            r.check_claim(1_500, 100, 2),
            Err(ClaimError::QuotaExhausted)
        );
    }

    #[test]
    fn rule_serde_round_trip() {
        let json = serde_json::to_string(&rule()).unwrap();
        assert!(json.contains("\"threshold_cents\":10000"));
        let back: CouponRule = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rule());
    }

    proptest! {
        #[test]
        fn payable_is_at_least_a_cent(
            threshold in 0i64..1_000_000,
            discount in 1i64..1_000_000,
            extra in 0i64..10_000_000,
            now in 0i64..1_000,
        ) {
            let r = CouponRule {
                threshold_cents: threshold,
                discount_cents: discount,
                valid_from: 0,
                valid_until: 1_000,
                total_quota: 10,
                per_user_limit: 1,
            };
            prop_assume!(r.validate().is_ok());
            let subtotal = threshold.max(1) + extra;
            let applied = r.discount_for(subtotal, now).unwrap();
            prop_assert!(applied >= 0);
            prop_assert!(applied <= discount);
            prop_assert!(subtotal - applied >= 1);
        }
    }
}
