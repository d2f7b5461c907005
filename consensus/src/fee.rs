//! The fee policy: one rule for every Bitplace client that builds transactions — the
//! `bitplace-wallet` CLI, the node's dev custody and the browser wallet (`api/web/js/fee.js`,
//! a port of this module, and its coin selection in `api/web/js/coinselect.js`), all checked
//! against the vectors in `tests/vectors/fee_policy.json`.
//!
//! Fee rates are units per 1,000 bytes of a transaction's full consensus encoding
//! (signatures included). A transaction of `size` bytes at rate `r` pays
//! `ceil(size × r / 1000)`, never less than the node's minimum relay fee at the same size.
//!
//! This is policy, not consensus: a block may hold a transaction paying any fee. It lives in
//! this crate because it is the one crate the wallet and the node (through the engine) both
//! build on, and the node's mempool must apply exactly the rule the wallets pay by: the
//! engine admits a transaction when `fee_rate(fee, size) >= min` with [`fee_rate`] below
//! (floor division), and `fee_for_size(size, min)` is the smallest fee that passes that
//! check (asserted for all sizes and rates by this module's tests).

/// The mempool's minimum fee rate (units per 1000 bytes); the node's `EngineConfig`
/// default. 0: the dev and main networks relay zero-fee transactions.
pub const MIN_RELAY_FEE_RATE: u64 = 0;

/// The fee rate wallets pay unless told otherwise (units per 1000 bytes).
pub const DEFAULT_FEE_RATE: u64 = 1;

/// The fee rate a transaction pays, as the mempool computes it: `floor(fee × 1000 / size)`
/// units per 1000 bytes (saturating).
pub fn fee_rate(fee: u64, size: usize) -> u64 {
    let rate = fee as u128 * 1000 / size.max(1) as u128;
    u64::try_from(rate).unwrap_or(u64::MAX)
}

/// `ceil(size × rate / 1000)`: the smallest fee whose [`fee_rate`] is at least `rate`; None
/// if it does not fit in u64.
pub fn fee_for_size(size: usize, rate: u64) -> Option<u64> {
    let fee = (size as u128 * rate as u128).div_ceil(1000);
    u64::try_from(fee).ok()
}

/// The fee policy: what a transaction of `size` bytes pays at the chosen `rate` — the rate
/// is raised to [`MIN_RELAY_FEE_RATE`] if below it, so the node always relays the result.
// The floor is 0 today, so clippy sees a no-op; it is the rule if the floor is raised.
#[allow(clippy::unnecessary_min_or_max)]
pub fn policy_fee(size: usize, rate: u64) -> Option<u64> {
    fee_for_size(size, rate.max(MIN_RELAY_FEE_RATE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fee_rounds_up_and_rate_rounds_down() {
        assert_eq!(fee_for_size(250, 1000), Some(250));
        assert_eq!(fee_for_size(250, 1), Some(1));
        assert_eq!(fee_for_size(250, 0), Some(0));
        assert_eq!(fee_for_size(1001, 1000), Some(1001));
        assert_eq!(fee_for_size(999, 2), Some(2));
        assert_eq!(fee_for_size(usize::MAX, u64::MAX), None);
        assert_eq!(fee_rate(1, 195), 5);
        assert_eq!(fee_rate(0, 195), 0);
        assert_eq!(fee_rate(u64::MAX, 1), u64::MAX);
        assert_eq!(policy_fee(195, 0), fee_for_size(195, MIN_RELAY_FEE_RATE));
    }

    proptest! {
        /// The policy fee is exactly the mempool's threshold: it passes the mempool's check
        /// and one unit less does not.
        #[test]
        #[allow(clippy::absurd_extreme_comparisons)] // true while the floor is 0, as it should be
        fn policy_fee_is_the_smallest_fee_the_mempool_admits(
            size in 1usize..2_000_000,
            rate in 0u64..10_000_000,
        ) {
            let fee = fee_for_size(size, rate).unwrap();
            prop_assert!(fee_rate(fee, size) >= rate);
            if fee > 0 {
                prop_assert!(fee_rate(fee - 1, size) < rate);
            }
            let p = policy_fee(size, rate).unwrap();
            prop_assert!(fee_rate(p, size) >= MIN_RELAY_FEE_RATE);
            prop_assert!(p >= fee);
        }
    }
}
