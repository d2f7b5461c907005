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
    /// Only read at a retarget: the time of the block `retarget_interval - 1` blocks before
    /// the parent (window rule), or of the parent's parent (per-block rule).
    pub interval_start_time: u32,
}

/// With the per-block rule (`retarget_interval == 1`), a block interval one target block
/// time off moves the target by 2^(1/PER_BLOCK_HALF_LIFE): a burst of instant blocks
/// doubles the difficulty every 4 blocks, and the noise of single intervals averages out
/// over about as many blocks (the difficulty then varies by about a third around its mean).
pub const PER_BLOCK_HALF_LIFE: u64 = 4;

/// The per-block rule eases by at most this many halvings per block, so a long pause (a
/// dev node left alone overnight) does not turn into a burst of trivial blocks after it.
const PER_BLOCK_MAX_EASING: i64 = 2;

/// Fixed-point scale of the per-block exponent (16 fractional bits).
const FIXED_ONE: i64 = 1 << 16;

/// The bits a block at `input.height` must carry.
///
/// Block 1 starts at `initial_bits` (genesis has the network's fixed bits).
/// - `retarget_interval == 0`: the difficulty never changes.
/// - `retarget_interval == 1` (dev): every block, from its parent's interval — see
///   [`per_block`].
/// - otherwise (main): every `retarget_interval` blocks the target is scaled by actual /
///   expected timespan, the ratio clamped to [1/4, 4].
///
/// Never easier than `pow_limit`.
pub fn required_bits(params: &ChainParams, input: &RetargetInput) -> CompactTarget {
    if input.height <= 1 {
        return params.initial_bits;
    }
    match params.retarget_interval {
        0 => input.parent_bits,
        1 => per_block(params, input),
        interval => window(params, input, interval),
    }
}

fn window(params: &ChainParams, input: &RetargetInput, interval: u64) -> CompactTarget {
    if !input.height.is_multiple_of(interval) {
        return input.parent_bits;
    }
    let expected = interval * params.target_block_time as u64;
    let actual = (input.parent_time as u64)
        .saturating_sub(input.interval_start_time as u64)
        .clamp(expected / 4, expected * 4);
    retarget(params, input.parent_bits, actual, expected)
}

/// The parent's bits scaled by 2^((interval − T) / (PER_BLOCK_HALF_LIFE · T)), where
/// `interval` is the time between the parent and its own parent (never below 0) and T the
/// target block time: faster blocks make it harder, slower ones easier, and the product
/// over a run of blocks depends only on how far the run is from schedule (the relative
/// form of an exponential moving target, as in BCH's ASERT). Block 2's parent interval
/// starts at genesis, whose time is fixed and long past, so block 2 keeps block 1's bits.
fn per_block(params: &ChainParams, input: &RetargetInput) -> CompactTarget {
    if input.height == 2 {
        return input.parent_bits;
    }
    let t = params.target_block_time.max(1) as i64;
    let interval = (input.parent_time as i64 - input.interval_start_time as i64).max(0);
    let exponent = ((interval - t) * FIXED_ONE / (PER_BLOCK_HALF_LIFE as i64 * t))
        .min(PER_BLOCK_MAX_EASING * FIXED_ONE);
    scale_pow2(params, input.parent_bits, exponent)
}

/// `bits`' target times 2^(exponent / 2^16), clamped to [1, pow_limit]. The fractional
/// power uses the integer cubic approximation of 2^x on [0, 1) from BCH's aserti3-2d
/// specification (error under 0.013 %), so every node computes the same bits.
fn scale_pow2(params: &ChainParams, bits: CompactTarget, exponent: i64) -> CompactTarget {
    let limit = params
        .pow_limit
        .to_target()
        .map(|t| t.0)
        .unwrap_or(U256::MAX);
    let Ok(old) = bits.to_target() else {
        return params.pow_limit;
    };
    let shifts = exponent.div_euclid(FIXED_ONE);
    let frac = exponent.rem_euclid(FIXED_ONE) as u128;
    let poly = (195_766_423_245_049u128 * frac
        + 971_821_376u128 * frac * frac
        + 5_127u128 * frac * frac * frac
        + (1u128 << 47))
        >> 48;
    let factor = U256::from(FIXED_ONE as u128 + poly);
    // 512-bit product: an easy target (dev's start is near 2^240) times 2^17 overflows 256.
    let scaled = old.0.full_mul(factor) >> 16;
    let shifted = if shifts >= 0 {
        scaled << (shifts as usize)
    } else {
        scaled >> ((-shifts).min(511) as usize)
    };
    let shifted = U256::try_from(shifted).unwrap_or(U256::MAX);
    Target(shifted.min(limit).max(U256::one())).to_compact()
}

fn retarget(
    params: &ChainParams,
    bits: CompactTarget,
    actual: u64,
    expected: u64,
) -> CompactTarget {
    let limit = params
        .pow_limit
        .to_target()
        .map(|t| t.0)
        .unwrap_or(U256::MAX);
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

    fn dev_input(height: u64, bits: CompactTarget, interval: u32) -> RetargetInput {
        RetargetInput {
            height,
            parent_bits: bits,
            parent_time: 1_000_000 + interval,
            interval_start_time: 1_000_000,
        }
    }

    fn as_f64(v: U256) -> f64 {
        v.0.iter()
            .rev()
            .fold(0.0, |acc, l| acc * 2f64.powi(64) + *l as f64)
    }

    /// How many times harder `bits` is than `than` (ratio of expected hashes).
    fn harder(bits: CompactTarget, than: CompactTarget) -> f64 {
        as_f64(target(than)) / as_f64(target(bits))
    }

    #[test]
    fn dev_on_time_blocks_keep_the_target() {
        let p = ChainParams::dev();
        let bits = p.initial_bits;
        let b = required_bits(&p, &dev_input(10, bits, p.target_block_time));
        assert_eq!(b, bits);
    }

    #[test]
    fn dev_instant_blocks_double_the_difficulty_every_four_blocks() {
        let p = ChainParams::dev();
        let mut bits = p.initial_bits;
        for h in 3..3 + PER_BLOCK_HALF_LIFE {
            bits = required_bits(&p, &dev_input(h, bits, 0));
        }
        let ratio = harder(bits, p.initial_bits);
        assert!((1.99..2.01).contains(&ratio), "{ratio}");
    }

    #[test]
    fn dev_slow_blocks_ease_at_most_fourfold_and_never_past_the_limit() {
        let p = ChainParams::dev();
        let start = CompactTarget(0x1d00ffff);
        let eased = required_bits(&p, &dev_input(50, start, 86_400));
        let ratio = harder(start, eased);
        assert!((3.99..4.01).contains(&ratio), "{ratio}");
        let at_limit = required_bits(&p, &dev_input(50, p.pow_limit, 86_400));
        assert_eq!(at_limit, p.pow_limit);
    }

    #[test]
    fn dev_block_two_ignores_the_genesis_time() {
        let p = ChainParams::dev();
        let mut i = dev_input(2, p.initial_bits, 0);
        i.interval_start_time = 1_795_478_400; // genesis, days before block 1
        assert_eq!(required_bits(&p, &i), p.initial_bits);
    }

    #[test]
    fn main_keeps_the_window_rule() {
        let p = ChainParams::main();
        assert_eq!(p.retarget_interval, 144);
        let mut i = dev_input(145, p.initial_bits, 0);
        assert_eq!(required_bits(&p, &i), p.initial_bits, "between retargets");
        i.height = 144;
        i.parent_time = i.interval_start_time + 144 * 60;
        assert_eq!(required_bits(&p, &i), p.initial_bits, "on schedule");
    }

    /// Blocks found by a steady miner: each interval is the expected time at the current
    /// difficulty, drawn from an exponential distribution (fixed seed). Returns the time
    /// of every block and the final bits.
    fn simulate(p: &ChainParams, hashrate: f64, until: f64, seed: u64) -> Vec<f64> {
        let mut rng = seed;
        let mut uniform = move || {
            // xorshift64*: deterministic, good enough for a simulation.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        };
        let base = 1_000_000f64;
        let mut now = base;
        let (mut parent_bits, mut parent_time, mut grand_time) = (p.initial_bits, 0u32, 0u32);
        let mut times = Vec::new();
        let mut height = 1;
        // Bounded by count too: without a retarget a fast miner never reaches `until`.
        while now - base < until && times.len() < 100_000 {
            let bits = required_bits(
                p,
                &RetargetInput {
                    height,
                    parent_bits,
                    parent_time,
                    interval_start_time: grand_time,
                },
            );
            let hashes = 2f64.powi(256) / as_f64(target(bits));
            now += -(1.0 - uniform()).ln() * hashes / hashrate;
            // A block's time must pass its parent's median; a steady clock does.
            let time = (now as u32).max(parent_time + 1);
            grand_time = parent_time;
            parent_time = time;
            parent_bits = bits;
            times.push(now - base);
            height += 1;
        }
        times
    }

    #[test]
    fn dev_miner_settles_within_a_minute_instead_of_flooding() {
        let p = ChainParams::dev();
        let t = p.target_block_time as f64;
        for (hashrate, seed) in [(6e7, 1), (2e6, 2), (1e10, 3)] {
            let times = simulate(&p, hashrate, 600.0, seed);
            let first_minute = times.iter().filter(|&&x| x < 60.0).count();
            // Unretargeted, a 60 MH/s miner makes ~55,000 blocks in a minute.
            assert!(first_minute < 150, "{hashrate} H/s: {first_minute} blocks");
            let settled: Vec<f64> = times.iter().copied().filter(|&x| x >= 60.0).collect();
            let mean = (settled[settled.len() - 1] - settled[0]) / (settled.len() - 1) as f64;
            assert!(
                (0.7 * t..1.4 * t).contains(&mean),
                "{hashrate} H/s: mean interval {mean:.2} s after the first minute"
            );
        }
    }

    #[test]
    fn median_of_times() {
        assert_eq!(median_time_past(&mut [5, 1, 3]), 3);
        assert_eq!(median_time_past(&mut []), 0);
    }
}
