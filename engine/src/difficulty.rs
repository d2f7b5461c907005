//! Difficulty retargeting and median-time-past.

use crate::params::ChainParams;
use crate::pow::{CompactTarget, Target};
use primitive_types::U256;

/// Number of previous blocks whose median time a new block must exceed.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// Where the chain stands when the bits of the block at `height` are decided.
pub struct RetargetInput {
    /// Height of the block being built or checked.
    pub height: u64,
    /// Bits of its parent.
    pub parent_bits: CompactTarget,
    /// Time of its parent.
    pub parent_time: u32,
    /// Time of the block `retarget_interval` blocks before it (only read at a retarget).
    pub interval_start_time: u32,
}

/// The bits a block at `input.height` must carry.
///
/// Block 1 starts at `initial_bits` (genesis has the network's fixed bits). Every
/// `retarget_interval` blocks the target is scaled by actual / expected timespan, the
/// ratio clamped to [1/4, 4], and never easier than `pow_limit`.
pub fn required_bits(params: &ChainParams, input: &RetargetInput) -> CompactTarget {
    if input.height <= 1 {
        return params.initial_bits;
    }
    let interval = params.retarget_interval;
    if interval == 0 || !input.height.is_multiple_of(interval) {
        return input.parent_bits;
    }
    let expected = interval * params.target_block_time as u64;
    let actual = (input.parent_time as u64)
        .saturating_sub(input.interval_start_time as u64)
        .clamp(expected / 4, expected * 4);
    retarget(params, input.parent_bits, actual, expected)
}

fn retarget(
    params: &ChainParams,
    bits: CompactTarget,
    actual: u64,
    expected: u64,
) -> CompactTarget {
    let limit = params.pow_limit.to_target().expect("pow limit is valid").0;
    let old = match bits.to_target() {
        Ok(t) => t.0,
        Err(_) => return params.pow_limit,
    };
    // Divide first when the multiplication could overflow 256 bits.
    let scaled = match old.checked_mul(U256::from(actual)) {
        Some(v) => v / U256::from(expected.max(1)),
        None => (old / U256::from(expected.max(1))).saturating_mul(U256::from(actual)),
    };
    Target(scaled.min(limit).max(U256::one())).to_compact()
}

/// Median of up to the last [`MEDIAN_TIME_SPAN`] block times.
pub fn median_time_past(times: &mut [u32]) -> u32 {
    if times.is_empty() {
        return 0;
    }
    times.sort_unstable();
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChainParams {
        let mut p = ChainParams::main();
        p.retarget_interval = 10;
        p.target_block_time = 60;
        p
    }

    fn input(span: u32) -> RetargetInput {
        RetargetInput {
            height: 20,
            parent_bits: CompactTarget(0x1e0fffff),
            parent_time: 1_000_000 + span,
            interval_start_time: 1_000_000,
        }
    }

    fn target(bits: CompactTarget) -> U256 {
        bits.to_target().unwrap().0
    }

    #[test]
    fn on_time_blocks_keep_the_target() {
        let p = params();
        let b = required_bits(&p, &input(600));
        assert_eq!(b, CompactTarget(0x1e0fffff));
    }

    #[test]
    fn fast_blocks_raise_difficulty_clamped_to_four() {
        let p = params();
        let old = target(CompactTarget(0x1e0fffff));
        let new = target(required_bits(&p, &input(1)));
        let ratio = old / new;
        assert!(
            ratio >= U256::from(3u8) && ratio <= U256::from(4u8),
            "{ratio}"
        );
    }

    #[test]
    fn slow_blocks_lower_difficulty_but_not_past_the_limit() {
        let p = params();
        let new = required_bits(&p, &input(600 * 100));
        assert!(target(new) <= target(p.pow_limit));
        assert!(target(new) > target(CompactTarget(0x1e0fffff)));
    }

    #[test]
    fn between_retargets_the_parent_bits_carry_over() {
        let p = params();
        let mut i = input(1);
        i.height = 21;
        assert_eq!(required_bits(&p, &i), i.parent_bits);
        i.height = 1;
        assert_eq!(required_bits(&p, &i), p.initial_bits);
    }

    #[test]
    fn median_of_times() {
        assert_eq!(median_time_past(&mut [5, 1, 3]), 3);
        assert_eq!(median_time_past(&mut []), 0);
    }
}
