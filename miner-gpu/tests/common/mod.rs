//! Helpers shared by the integration tests.
#![allow(dead_code)]

use consensus::hash::Hash256;
use consensus::header::BlockHeader;
use consensus::pow::CompactTarget;

/// Small deterministic PRNG (splitmix64) so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    pub fn header(&mut self) -> [u8; 80] {
        let mut h = [0u8; 80];
        for b in h.iter_mut() {
            *b = self.next_u64() as u8;
        }
        h
    }
}

/// Bitcoin's genesis block header.
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

pub const GENESIS_HASH: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
pub const GENESIS_NONCE: u32 = 2083236893;

/// A target (internal order) whose top 32 bits are `top`, lower bits all ones.
pub fn target_with_top(top: u32) -> [u8; 32] {
    let mut t = [0xffu8; 32];
    t[28..32].copy_from_slice(&top.to_le_bytes());
    t
}

/// Every nonce in `start..start+count` (wrapping) that meets `target`, by brute force
/// through the engine's (sha2-crate) SHA-256d.
pub fn brute_force(header: &[u8; 80], target: &[u8; 32], start: u32, count: u32) -> Vec<u32> {
    let t = consensus::pow::Target(primitive_types_from(target));
    (0..count)
        .map(|i| start.wrapping_add(i))
        .filter(|&n| {
            let mut h = *header;
            h[76..].copy_from_slice(&n.to_le_bytes());
            t.is_met_by(&Hash256::sha256d(&h))
        })
        .collect()
}

fn primitive_types_from(target: &[u8; 32]) -> primitive_types::U256 {
    primitive_types::U256::from_little_endian(target)
}
