//! The 80-byte block header, laid out exactly like Bitcoin's so the proof of work is the
//! well-known SHA-256d nonce search that every miner (and our WGSL kernel) understands.
//!
//! | offset | size | field                        |
//! |--------|------|------------------------------|
//! | 0      | 4    | version (u32 LE)             |
//! | 4      | 32   | previous block hash (internal order) |
//! | 36     | 32   | merkle root (internal order) |
//! | 68     | 4    | time, unix seconds (u32 LE)  |
//! | 72     | 4    | compact target "bits" (u32 LE) |
//! | 76     | 4    | nonce (u32 LE)               |

use crate::encoding::{Decode, DecodeError, Encode, Reader};
use crate::hash::Hash256;
use crate::pow::CompactTarget;
use serde::{Deserialize, Serialize};

/// Size of an encoded header.
pub const HEADER_SIZE: usize = 80;
/// Offset of the nonce inside the encoded header.
pub const NONCE_OFFSET: usize = 76;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub version: u32,
    pub prev_hash: Hash256,
    pub merkle_root: Hash256,
    pub time: u32,
    pub bits: CompactTarget,
    pub nonce: u32,
}

impl BlockHeader {
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(&self.version.to_le_bytes());
        b[4..36].copy_from_slice(&self.prev_hash.0);
        b[36..68].copy_from_slice(&self.merkle_root.0);
        b[68..72].copy_from_slice(&self.time.to_le_bytes());
        b[72..76].copy_from_slice(&self.bits.0.to_le_bytes());
        b[76..80].copy_from_slice(&self.nonce.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> BlockHeader {
        let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        BlockHeader {
            version: word(0),
            prev_hash: Hash256(b[4..36].try_into().expect("32 bytes")),
            merkle_root: Hash256(b[36..68].try_into().expect("32 bytes")),
            time: word(68),
            bits: CompactTarget(word(72)),
            nonce: word(76),
        }
    }

    /// The block id: SHA-256d of the 80 bytes.
    pub fn hash(&self) -> Hash256 {
        Hash256::sha256d(&self.to_bytes())
    }

    /// Whether the header's hash meets the target its `bits` encode.
    pub fn meets_target(&self) -> bool {
        match self.bits.to_target() {
            Ok(t) => t.is_met_by(&self.hash()),
            Err(_) => false,
        }
    }
}

impl Encode for BlockHeader {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

impl Decode for BlockHeader {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BlockHeader::from_bytes(&r.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bitcoin's genesis header: the layout and hash must match byte for byte.
    pub fn bitcoin_genesis() -> BlockHeader {
        BlockHeader {
            version: 1,
            prev_hash: Hash256::ZERO,
            merkle_root: "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
                .parse()
                .unwrap(),
            time: 1231006505,
            bits: CompactTarget(0x1d00ffff),
            nonce: 2083236893,
        }
    }

    #[test]
    fn bitcoin_genesis_hash_matches() {
        let h = bitcoin_genesis();
        assert_eq!(
            h.hash().to_string(),
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        );
        assert!(h.meets_target());
    }

    #[test]
    fn bytes_round_trip() {
        let h = bitcoin_genesis();
        assert_eq!(BlockHeader::decode(&h.encode()).unwrap(), h);
        assert_eq!(h.encode().len(), HEADER_SIZE);
    }
}
