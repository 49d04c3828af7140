//! Red packet (红包) splitting by the double-mean rule (二倍均值法).
//!
//! A packet of `total_cents` is cut into `count` shares, handed out in grab order. For every
//! share but the last, with `remaining` cents and `left` shares still to hand out, the share is
//! drawn uniformly from `[1, max]` where
//! `max = min(2 * remaining / left, remaining - (left - 1))`. The first bound keeps the
//! expected share equal to the running mean (so early grabbers have no systematic edge); the
//! second leaves at least one cent for every later share. The last share takes what remains,
//! so the shares always sum to exactly `total_cents` and each is at least one cent.

use rand::Rng;

/// The most shares one packet may be split into.
pub const MAX_SHARES: u32 = 10_000;

/// The largest packet: ¥1,000,000, in cents. Keeps every intermediate value far from overflow.
pub const MAX_TOTAL_CENTS: i64 = 100_000_000;

/// Why a packet cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("total must be positive")]
    NonPositiveTotal,
    #[error("total too large")]
    TotalTooLarge,
    #[error("count must be between 1 and 10000")]
    BadCount,
    #[error("total in cents must be at least the count")]
    TotalBelowCount,
}

/// Splits `total_cents` into `count` shares (in grab order) by the double-mean rule.
///
/// Deterministic given the state of `rng`: the same seeded generator gives the same split.
pub fn split(total_cents: i64, count: u32, rng: &mut impl Rng) -> Result<Vec<i64>, SplitError> {
    if total_cents <= 0 {
        return Err(SplitError::NonPositiveTotal);
    }
    if total_cents > MAX_TOTAL_CENTS {
        return Err(SplitError::TotalTooLarge);
    }
    if count == 0 || count > MAX_SHARES {
        return Err(SplitError::BadCount);
    }
    if total_cents < i64::from(count) {
        return Err(SplitError::TotalBelowCount);
    }

    let mut shares = Vec::with_capacity(count as usize);
    let mut remaining = total_cents;
    // Invariant: remaining >= left, so every later share can still get a cent.
    for left in (2..=i64::from(count)).rev() {
        let double_mean = 2 * remaining / left;
        let room = remaining - (left - 1);
        // Both bounds are >= 1 under the invariant; `max(1)` only guards the range.
        let max = double_mean.min(room).max(1);
        let share = rng.gen_range(1..=max);
        shares.push(share);
        remaining -= share;
    }
    shares.push(remaining);
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    #[test]
    fn rejects_bad_input() {
        let r = &mut rng(1);
        assert_eq!(split(0, 1, r), Err(SplitError::NonPositiveTotal));
        assert_eq!(split(-5, 1, r), Err(SplitError::NonPositiveTotal));
        assert_eq!(
            split(MAX_TOTAL_CENTS + 1, 1, r),
            Err(SplitError::TotalTooLarge)
        );
        assert_eq!(split(100, 0, r), Err(SplitError::BadCount));
        assert_eq!(split(100_000, MAX_SHARES + 1, r), Err(SplitError::BadCount));
        assert_eq!(split(9, 10, r), Err(SplitError::TotalBelowCount));
    }

    #[test]
    fn single_share_takes_everything() {
        assert_eq!(split(1234, 1, &mut rng(7)), Ok(vec![1234]));
    }

    #[test]
    fn one_cent_each_when_total_equals_count() {
        assert_eq!(split(5, 5, &mut rng(7)), Ok(vec![1; 5]));
    }

    #[test]
    fn extremes_are_accepted() {
        let shares = split(MAX_TOTAL_CENTS, MAX_SHARES, &mut rng(3)).unwrap();
        assert_eq!(shares.len(), MAX_SHARES as usize);
        assert_eq!(shares.iter().sum::<i64>(), MAX_TOTAL_CENTS);
        let shares = split(MAX_TOTAL_CENTS, 2, &mut rng(3)).unwrap();
        assert_eq!(shares.iter().sum::<i64>(), MAX_TOTAL_CENTS);
    }

    #[test]
    fn same_seed_same_split() {
        let a = split(10_000, 10, &mut rng(42)).unwrap();
        let b = split(10_000, 10, &mut rng(42)).unwrap();
        assert_eq!(a, b);
        let c = split(10_000, 10, &mut rng(43)).unwrap();
        assert_ne!(a, c, "different seeds should (almost always) differ");
    }

    #[test]
    fn no_share_exceeds_double_mean_bound() {
        // The first share is drawn from [1, 2 * total / count].
        for seed in 0..200 {
            let shares = split(1_000, 10, &mut rng(seed)).unwrap();
            assert!(shares[0] <= 200);
        }
    }

    proptest! {
        #[test]
        fn shares_are_well_formed(
            total in 1..=MAX_TOTAL_CENTS,
            count in 1..=MAX_SHARES,
            seed in any::<u64>(),
        ) {
            prop_assume!(total >= i64::from(count));
            let shares = split(total, count, &mut rng(seed)).unwrap();
            prop_assert_eq!(shares.len(), count as usize);
            prop_assert!(shares.iter().all(|&s| s >= 1));
            prop_assert_eq!(shares.iter().sum::<i64>(), total);
        }

        #[test]
        fn small_totals_are_well_formed(
            count in 1..=200u32,
            extra in 0..500i64,
            seed in any::<u64>(),
        ) {
            // Totals close to the count exercise the "leave a cent for everyone" bound.
            let total = i64::from(count) + extra;
            let shares = split(total, count, &mut rng(seed)).unwrap();
            prop_assert_eq!(shares.len(), count as usize);
            prop_assert!(shares.iter().all(|&s| s >= 1));
            prop_assert_eq!(shares.iter().sum::<i64>(), total);
        }
    }
}
