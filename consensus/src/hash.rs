//! SHA-256d and the 32-byte hash type used for block ids, txids and merkle nodes.
//!
//! Bytes are kept in *internal* order (the order SHA-256 emits them, as Bitcoin stores
//! them); `Display`/`FromStr` use the reversed *display* order block explorers show, so
//! a header hash with leading zero bits prints with leading zeros.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A 32-byte SHA-256d digest in internal byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash256(pub [u8; 32]);

impl Hash256 {
    pub const ZERO: Hash256 = Hash256([0; 32]);

    /// Double SHA-256 of `data`.
    pub fn sha256d(data: &[u8]) -> Hash256 {
        Hash256(sha256d(data))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hex in display order (reversed bytes), as explorers and miners print it.
    pub fn to_display_hex(&self) -> String {
        let mut b = self.0;
        b.reverse();
        hex::encode(b)
    }

    /// Parses display-order hex (64 hex digits).
    pub fn from_display_hex(s: &str) -> Result<Hash256, HashParseError> {
        let mut b = parse_hex32(s)?;
        b.reverse();
        Ok(Hash256(b))
    }
}

fn parse_hex32(s: &str) -> Result<[u8; 32], HashParseError> {
    if s.len() != 64 {
        return Err(HashParseError::Length(s.len()));
    }
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).map_err(|_| HashParseError::Hex)?;
    Ok(b)
}

/// Why a string is not a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    #[error("a hash is 64 hex digits, got {0} characters")]
    Length(usize),
    #[error("a hash must contain only hex digits")]
    Hex,
}

/// Double SHA-256 as raw bytes.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let first = Sha256::digest(data);
    Sha256::digest(first).into()
}

/// Single SHA-256 as raw bytes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_display_hex())
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({})", self.to_display_hex())
    }
}

impl FromStr for Hash256 {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash256::from_display_hex(s)
    }
}

impl Serialize for Hash256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_display_hex())
    }
}

impl<'de> Deserialize<'de> for Hash256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash256::from_display_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fips_180_4_abc_vector() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn display_round_trip_reverses_bytes() {
        let mut raw = [0u8; 32];
        raw[31] = 0xab;
        let h = Hash256(raw);
        assert!(h.to_string().starts_with("ab"));
        assert_eq!(h.to_string().parse::<Hash256>().unwrap(), h);
    }

    #[test]
    fn bad_hex_is_rejected() {
        assert_eq!("zz".parse::<Hash256>(), Err(HashParseError::Length(2)));
        assert_eq!("g".repeat(64).parse::<Hash256>(), Err(HashParseError::Hex));
    }
}
