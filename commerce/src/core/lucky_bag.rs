//! Lucky bag (福袋) draws that anyone can audit, by commit–reveal.
//!
//! Before the draw the host publishes `commitment(seed)`, the lowercase hex SHA-256 of a
//! secret 32-byte seed. After the draw the seed is revealed; anyone can check it against the
//! commitment (`verify_commitment`) and recompute the winners with `draw`, so the host cannot
//! have picked the seed after seeing the entrants.
//!
//! # The draw, exactly
//!
//! 1. Take the entrant ids (`i64`), sort ascending and remove duplicates: the pool, of
//!    length `n`. Let `k = min(winners, n)`.
//! 2. A stream of `u64` words comes from SHA-256: block `b` (for `b = 0, 1, 2, ...`) is
//!    `SHA-256(seed || b)`, with `b` as 8 bytes big-endian; each 32-byte block gives four
//!    words, read 8 bytes at a time as big-endian `u64`, in order. One stream serves the whole
//!    draw.
//! 3. A uniform integer in `[0, m)` is drawn by rejection: with
//!    `zone = u64::MAX - (u64::MAX % m)` (a multiple of `m`), take the next word `x` until
//!    `x < zone`, then return `x % m`. This removes the modulo bias.
//! 4. Partial Fisher–Yates: for `i` in `0..k`, `j = i + uniform(n - i)` (a word is consumed
//!    even when `n - i == 1`), swap `pool[i]` and `pool[j]`.
//! 5. The winners are `pool[0..k]`, in pick order.
//!
//! The same computation in Python (prints `[1002, 1015, 1014, 1018, 1013]`, the known-answer
//! vector in the tests):
//!
//! ```text
//! import hashlib
//! def draw(seed, entrants, k):
//!     pool = sorted(set(entrants)); n = len(pool); k = min(k, n)
//!     def words():
//!         b = 0
//!         while True:
//!             h = hashlib.sha256(seed + b.to_bytes(8, "big")).digest()
//!             for o in range(0, 32, 8):
//!                 yield int.from_bytes(h[o:o + 8], "big")
//!             b += 1
//!     w, top = words(), 2**64 - 1
//!     for i in range(k):
//!         m = n - i
//!         zone = top - top % m
//!         x = next(w)
//!         while x >= zone:
//!             x = next(w)
//!         j = i + x % m
//!         pool[i], pool[j] = pool[j], pool[i]
//!     return pool[:k]
//! print(draw(bytes(range(32)), range(1001, 1021), 5))
//! ```

use sha2::{Digest, Sha256};

/// The secret drawn before the bag opens; revealed after the draw.
pub type Seed = [u8; 32];

/// The public commitment to `seed`: lowercase hex SHA-256 of its 32 bytes.
pub fn commitment(seed: &Seed) -> String {
    hex::encode(Sha256::digest(seed))
}

/// Whether the revealed `seed_hex` (64 hex digits) hashes to `commitment`.
///
/// False when `seed_hex` is not valid hex of exactly 32 bytes. Hex case is ignored on both
/// sides since it carries no meaning; the comparison need not be constant-time because both
/// values are public once revealed.
pub fn verify_commitment(seed_hex: &str, commitment: &str) -> bool {
    let mut seed: Seed = [0; 32];
    if hex::decode_to_slice(seed_hex, &mut seed).is_err() {
        return false;
    }
    self::commitment(&seed).eq_ignore_ascii_case(commitment)
}

/// Draws up to `winners` distinct winners from `entrants`, as described in the module doc.
///
/// The input order and duplicates of `entrants` do not affect the result.
pub fn draw(seed: &Seed, entrants: &[i64], winners: u32) -> Vec<i64> {
    let mut pool = entrants.to_vec();
    pool.sort_unstable();
    pool.dedup();
    let n = pool.len();
    let k = usize::try_from(winners).unwrap_or(usize::MAX).min(n);

    let mut words = WordStream::new(seed);
    for i in 0..k {
        // `n - i` fits in u64 and the result is below it, so both casts are lossless.
        let offset = uniform_below(|| words.next_word(), (n - i) as u64) as usize;
        pool.swap(i, i + offset);
    }
    pool.truncate(k);
    pool
}

/// A uniform integer in `[0, m)` from a source of uniform words, by rejection sampling.
/// `m` must be at least 1 (callers only pass `n - i` with `i < n`).
fn uniform_below(mut next_word: impl FnMut() -> u64, m: u64) -> u64 {
    debug_assert!(m >= 1);
    let m = m.max(1);
    // The largest multiple of `m` not above u64::MAX; words at or above it would bias `% m`.
    let zone = u64::MAX - (u64::MAX % m);
    loop {
        let x = next_word();
        if x < zone {
            return x % m;
        }
    }
}

/// The SHA-256 counter-mode word stream: block `b` is `SHA-256(seed || b as u64 BE)`.
struct WordStream<'a> {
    seed: &'a Seed,
    block: [u8; 32],
    next_block: u64,
    /// The next unread word of `block`, 0..=4 (4 means exhausted).
    word: usize,
}

impl<'a> WordStream<'a> {
    fn new(seed: &'a Seed) -> Self {
        Self {
            seed,
            block: [0; 32],
            next_block: 0,
            word: 4,
        }
    }

    fn next_word(&mut self) -> u64 {
        if self.word == 4 {
            let mut hasher = Sha256::new();
            hasher.update(self.seed);
            hasher.update(self.next_block.to_be_bytes());
            self.block = hasher.finalize().into();
            // 2^64 blocks would take far longer than any draw; wrapping keeps this total.
            self.next_block = self.next_block.wrapping_add(1);
            self.word = 0;
        }
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.block[self.word * 8..self.word * 8 + 8]);
        self.word += 1;
        u64::from_be_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn seed_from(n: u64) -> Seed {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&n.to_be_bytes());
        seed
    }

    fn counting_seed() -> Seed {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn known_answer_matches_python() {
        // Computed by the Python snippet in the module doc.
        let seed = counting_seed();
        assert_eq!(
            commitment(&seed),
            "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
        );
        let entrants: Vec<i64> = (1001..=1020).collect();
        assert_eq!(draw(&seed, &entrants, 5), [1002, 1015, 1014, 1018, 1013]);
        assert_eq!(
            draw(&seed, &entrants, 20),
            [
                1002, 1015, 1014, 1018, 1013, 1019, 1003, 1007, 1001, 1005, 1017, 1009, 1012, 1010,
                1004, 1016, 1008, 1006, 1020, 1011
            ]
        );
        assert_eq!(draw(&[0xff; 32], &[7, 3, 3, 9, -2, 7], 10), [3, -2, 9, 7]);
    }

    #[test]
    fn stream_follows_the_documented_blocks() {
        let seed = counting_seed();
        let mut stream = WordStream::new(&seed);
        let words: Vec<u64> = (0..8).map(|_| stream.next_word()).collect();
        for b in 0..2u64 {
            let mut input = seed.to_vec();
            input.extend_from_slice(&b.to_be_bytes());
            let block = Sha256::digest(&input);
            for w in 0..4 {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&block[w * 8..w * 8 + 8]);
                assert_eq!(words[b as usize * 4 + w], u64::from_be_bytes(bytes));
            }
        }
    }

    #[test]
    fn rejection_skips_biased_words() {
        // m = 3: zone = u64::MAX - 0 = u64::MAX since u64::MAX % 3 == 0; u64::MAX is rejected.
        let mut words = [u64::MAX, 7].into_iter();
        assert_eq!(uniform_below(|| words.next().unwrap(), 3), 1);
        // m = 2^63 + 1: zone = 2^63 + 1, so anything from there up is rejected.
        let m = (1u64 << 63) + 1;
        let mut words = [m, u64::MAX - 1, m - 1].into_iter();
        assert_eq!(uniform_below(|| words.next().unwrap(), m), m - 1);
        let mut words = [5u64].into_iter();
        assert_eq!(uniform_below(|| words.next().unwrap(), 1), 0);
    }

    #[test]
    fn draw_is_deterministic() {
        let entrants: Vec<i64> = (1..=50).collect();
        let seed = seed_from(9);
        assert_eq!(draw(&seed, &entrants, 7), draw(&seed, &entrants, 7));
        assert_ne!(
            draw(&seed, &entrants, 7),
            draw(&seed_from(10), &entrants, 7)
        );
    }

    #[test]
    fn input_order_and_duplicates_do_not_matter() {
        let seed = seed_from(3);
        let a = [5, 1, 9, 3, 7, 2];
        let b = [9, 9, 2, 7, 1, 5, 3, 3, 1];
        assert_eq!(draw(&seed, &a, 3), draw(&seed, &b, 3));
    }

    #[test]
    fn empty_cases() {
        let seed = seed_from(1);
        assert!(draw(&seed, &[], 3).is_empty());
        assert!(draw(&seed, &[1, 2, 3], 0).is_empty());
    }

    #[test]
    fn more_winners_than_entrants_takes_everyone() {
        let mut winners = draw(&seed_from(2), &[4, 4, 8, 15], 10);
        winners.sort_unstable();
        assert_eq!(winners, [4, 8, 15]);
    }

    #[test]
    fn commitment_round_trip() {
        let seed = seed_from(77);
        let c = commitment(&seed);
        assert_eq!(c.len(), 64);
        assert!(c.chars().all(|ch| matches!(ch, '0'..='9' | 'a'..='f')));
        assert!(verify_commitment(&hex::encode(seed), &c));
        assert!(verify_commitment(
            &hex::encode_upper(seed),
            &c.to_uppercase()
        ));
        assert!(!verify_commitment(&hex::encode(seed_from(78)), &c));
        assert!(!verify_commitment("zz", &c));
        assert!(!verify_commitment(&hex::encode([0u8; 31]), &c));
        assert!(!verify_commitment(&hex::encode([0u8; 33]), &c));
        assert!(!verify_commitment(&hex::encode(seed), "not a hash"));
    }

    #[test]
    fn every_entrant_can_win() {
        let entrants: Vec<i64> = (0..10).collect();
        let mut wins = [0u32; 10];
        for s in 0..2000 {
            let winners = draw(&seed_from(s), &entrants, 1);
            assert_eq!(winners.len(), 1);
            wins[winners[0] as usize] += 1;
        }
        // Expected 200 each, standard deviation about 13; these bounds are ~6 sigma wide.
        for (entrant, &count) in wins.iter().enumerate() {
            assert!(
                (120..=280).contains(&count),
                "entrant {entrant} won {count} times"
            );
        }
    }

    proptest! {
        #[test]
        fn winners_are_distinct_entrants(
            seed in any::<[u8; 32]>(),
            entrants in proptest::collection::vec(-50i64..50, 0..80),
            k in 0u32..100,
        ) {
            let winners = draw(&seed, &entrants, k);
            let distinct: HashSet<i64> = entrants.iter().copied().collect();
            prop_assert_eq!(winners.len(), (k as usize).min(distinct.len()));
            let unique: HashSet<i64> = winners.iter().copied().collect();
            prop_assert_eq!(unique.len(), winners.len());
            prop_assert!(unique.is_subset(&distinct));
            prop_assert_eq!(&winners, &draw(&seed, &entrants, k));
            let mut reversed = entrants.clone();
            reversed.reverse();
            prop_assert_eq!(&winners, &draw(&seed, &reversed, k));
        }

        #[test]
        fn fewer_winners_are_a_prefix(
            seed in any::<[u8; 32]>(),
            entrants in proptest::collection::vec(any::<i64>(), 0..40),
            k in 0u32..40,
        ) {
            // Pick order is stable: drawing k winners then k+1 extends the same list.
            let short = draw(&seed, &entrants, k);
            let long = draw(&seed, &entrants, k + 1);
            prop_assert_eq!(&long[..short.len()], &short[..]);
        }
    }
}
