//! Proof of work: compact targets ("bits"), work per block and cumulative chainwork.

use crate::hash::Hash256;
use primitive_types::U256;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bitcoin's compact encoding of a 256-bit target: 1 byte exponent, 3 bytes mantissa.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CompactTarget(pub u32);

impl fmt::Debug for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactTarget({:#010x})", self.0)
    }
}

/// Why `bits` do not encode a usable target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BitsError {
    #[error("compact target has the sign bit set")]
    Negative,
    #[error("compact target is zero")]
    Zero,
    #[error("compact target overflows 256 bits")]
    Overflow,
}

/// A full 256-bit target; a hash meets it when, read as a little-endian number, it is ≤ it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Target(pub U256);

impl CompactTarget {
    /// The easiest target any network allows (the dev network's `pow_limit`): about every
    /// second hash meets it, so tests and benchmarks mine a block in microseconds.
    pub const EASIEST: CompactTarget = CompactTarget(0x207fffff);

    /// Decodes with Bitcoin's rules; negative, zero and overflowing encodings are errors.
    pub fn to_target(self) -> Result<Target, BitsError> {
        let exponent = self.0 >> 24;
        let mantissa = self.0 & 0x007f_ffff;
        if self.0 & 0x0080_0000 != 0 && mantissa != 0 {
            return Err(BitsError::Negative);
        }
        if mantissa == 0 {
            return Err(BitsError::Zero);
        }
        let value = if exponent <= 3 {
            U256::from(mantissa >> (8 * (3 - exponent)))
        } else {
            let shift = 8 * (exponent - 3);
            let significant_bits = 32 - mantissa.leading_zeros();
            if shift + significant_bits > 256 {
                return Err(BitsError::Overflow);
            }
            U256::from(mantissa) << shift
        };
        if value.is_zero() {
            return Err(BitsError::Zero);
        }
        Ok(Target(value))
    }

    /// Work this target represents (see [`Target::work`]).
    pub fn work(self) -> Result<U256, BitsError> {
        Ok(self.to_target()?.work())
    }
}

impl Target {
    /// The compact form, rounding the mantissa down like Bitcoin's `GetCompact`.
    pub fn to_compact(self) -> CompactTarget {
        let bits = self.0.bits() as u32;
        let mut size = bits.div_ceil(8);
        let mut mantissa: u32 = if size <= 3 {
            (self.0.low_u64() << (8 * (3 - size))) as u32
        } else {
            (self.0 >> (8 * (size - 3))).low_u32()
        };
        // A set top bit would read as a sign: shift into the next byte instead.
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        CompactTarget((size << 24) | mantissa)
    }

    /// Whether a hash (internal byte order, i.e. little-endian number) meets the target.
    pub fn is_met_by(&self, hash: &Hash256) -> bool {
        U256::from_little_endian(&hash.0) <= self.0
    }

    /// Expected hashes to find a block: 2^256 / (target + 1), computed without overflow
    /// as (!target / (target + 1)) + 1.
    pub fn work(&self) -> U256 {
        (!self.0 / (self.0 + U256::one())) + U256::one()
    }

    /// The target as 32 big-endian bytes (display order), as miners take it.
    pub fn to_be_bytes(&self) -> [u8; 32] {
        self.0.to_big_endian()
    }
}

/// Serializes a U256 (chainwork) as a 64-digit big-endian hex string.
pub fn u256_hex(v: &U256) -> String {
    hex::encode(v.to_big_endian())
}

/// Bitcoin's difficulty-1 target, 0xffff · 2^208, as a float (the unit of pool and
/// network difficulty figures).
pub const DIFF1: f64 = 65535.0 * TWO_POW_208;
/// 2^208, exactly representable as an f64.
const TWO_POW_208: f64 = 411376139330301510538742295639337626245683966408394965837152256.0;

/// A hash's difficulty: [`DIFF1`] over the hash (internal order) read as a
/// little-endian 256-bit number; infinite for the zero hash.
pub fn hash_difficulty(hash: &[u8; 32]) -> f64 {
    let value = hash
        .iter()
        .rev()
        .fold(0.0f64, |acc, b| acc * 256.0 + *b as f64);
    if value == 0.0 {
        f64::INFINITY
    } else {
        DIFF1 / value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff1_is_0xffff_times_two_to_the_208() {
        assert_eq!(DIFF1, 65535.0 * 2f64.powi(208));
        assert_eq!(hash_difficulty(&[0; 32]), f64::INFINITY);
    }

    #[test]
    fn bitcoin_genesis_bits_round_trip() {
        let t = CompactTarget(0x1d00ffff).to_target().unwrap();
        assert_eq!(t.to_compact(), CompactTarget(0x1d00ffff));
        // Work of difficulty 1 is 0x100010001.
        assert_eq!(t.work(), U256::from(0x1_0001_0001u64));
    }

    #[test]
    fn bad_bits_are_errors() {
        assert_eq!(
            CompactTarget(0x04923456).to_target(),
            Err(BitsError::Negative)
        );
        assert_eq!(CompactTarget(0x00000000).to_target(), Err(BitsError::Zero));
        assert_eq!(
            CompactTarget(0xff123456).to_target(),
            Err(BitsError::Overflow)
        );
    }

    #[test]
    fn easier_targets_carry_less_work() {
        let hard = CompactTarget(0x1d00ffff).work().unwrap();
        let easy = CompactTarget(0x2000ffff).work().unwrap();
        assert!(easy < hard);
        assert!(easy >= U256::one());
    }

    #[test]
    fn compact_round_trips_for_normalised_values() {
        for bits in [
            0x1b0404cbu32,
            0x207fffff,
            0x1f00ffff,
            0x03123456,
            0x1c0ffff0,
        ] {
            let t = CompactTarget(bits).to_target().unwrap();
            assert_eq!(t.to_compact(), CompactTarget(bits), "{bits:#x}");
        }
    }
}
