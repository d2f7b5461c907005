//! Addresses: the first 20 bytes of SHA-256 of an ed25519 public key, printed as bech32m
//! with the human-readable part `bp`. The checksum catches any mistyped character (and
//! any swap of two), so a typo is an error, never a payment to a stranger.

use crate::hash::sha256;
use bech32::{primitives::decode::CheckedHrpstring, Bech32m, Hrp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Human-readable prefix of every Bitplace address.
pub const ADDRESS_HRP: &str = "bp";
/// Length of an address payload in bytes.
pub const ADDRESS_LEN: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; ADDRESS_LEN]);

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    #[error("not a valid bech32m address (mistyped or wrong checksum): {0}")]
    Checksum(String),
    #[error("address prefix must be `{ADDRESS_HRP}`, got `{0}`")]
    WrongPrefix(String),
    #[error("address payload must be {ADDRESS_LEN} bytes, got {0}")]
    WrongLength(usize),
}

impl Address {
    /// The address that pays to an ed25519 public key.
    pub fn from_public_key(public_key: &[u8; 32]) -> Address {
        let digest = sha256(public_key);
        let mut payload = [0u8; ADDRESS_LEN];
        payload.copy_from_slice(&digest[..ADDRESS_LEN]);
        Address(payload)
    }

    fn hrp() -> Hrp {
        Hrp::parse(ADDRESS_HRP).expect("static hrp is valid")
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = bech32::encode::<Bech32m>(Address::hrp(), &self.0).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let checked = CheckedHrpstring::new::<Bech32m>(s)
            .map_err(|e| AddressError::Checksum(e.to_string()))?;
        if checked.hrp() != Address::hrp() {
            return Err(AddressError::WrongPrefix(checked.hrp().to_string()));
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let payload: [u8; ADDRESS_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AddressError::WrongLength(bytes.len()))?;
        Ok(Address(payload))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_has_prefix() {
        let a = Address::from_public_key(&[7u8; 32]);
        let s = a.to_string();
        assert!(s.starts_with("bp1"));
        assert_eq!(s.parse::<Address>().unwrap(), a);
    }

    #[test]
    fn every_single_character_typo_is_rejected() {
        let s = Address::from_public_key(&[9u8; 32]).to_string();
        let alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        for i in 3..s.len() {
            for c in alphabet.chars() {
                let mut t: Vec<char> = s.chars().collect();
                if t[i] == c {
                    continue;
                }
                t[i] = c;
                let typo: String = t.into_iter().collect();
                assert!(typo.parse::<Address>().is_err(), "{typo} accepted");
            }
        }
    }

    #[test]
    fn wrong_prefix_and_garbage_are_rejected() {
        let a = Address([1; 20]);
        let other = bech32::encode::<Bech32m>(Hrp::parse("tb").unwrap(), &a.0).unwrap();
        assert!(matches!(
            other.parse::<Address>(),
            Err(AddressError::WrongPrefix(_))
        ));
        assert!("hello".parse::<Address>().is_err());
        assert!("".parse::<Address>().is_err());
    }
}
