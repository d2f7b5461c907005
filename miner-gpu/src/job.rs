//! A unit of work as both work sources describe it — the node's HTTP template and a
//! Stratum `mining.notify` — and the search space it opens.
//!
//! The header is Bitcoin's (engine/src/header.rs): version, previous hash, merkle root,
//! time, bits, nonce. The coinbase is split around the extranonce:
//! `coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2`; its txid (SHA-256d) folded up the
//! merkle branch (`root = SHA-256d(root ‖ branch[i])`, the coinbase is leaf 0) is the
//! header's merkle root. Beyond the 2^32 nonces of one header the space is rolled in
//! this order: the BIP 310 version bits the server allows (cheap: only the midstate
//! changes), then extranonce2 (a new merkle root), and for the HTTP path the time.
//!
//! Roll number `r` names one header; devices take disjoint sets of roll numbers
//! (device `d` of `n` takes `d, d + n, d + 2n, ...`), so no two search the same space.

use crate::{sha256, Solution, Work};
use consensus::hash::Hash256;
use consensus::header::HEADER_SIZE;
use consensus::merkle::MerkleProof;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most version bits rolled (2^16 headers per extranonce2 is plenty; more would only
/// make the roll number arithmetic harder to follow).
pub const MAX_VERSION_BITS: u32 = 16;

/// One job: what a header needs, and what a hash must meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The server's job id, sent back with every submission.
    pub id: String,
    /// Block height, when the source says it (the node's template); `None` from a pool.
    pub height: Option<u64>,
    pub version: u32,
    /// Previous block hash in header (internal) order.
    pub prev_hash: [u8; 32],
    pub bits: u32,
    pub time: u32,
    /// Latest `time` rolling may reach; `None`: the time is never rolled (Stratum, where
    /// extranonce2 and version bits give space enough).
    pub max_time: Option<u32>,
    pub coinb1: Vec<u8>,
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
    pub coinb2: Vec<u8>,
    pub branch: Vec<Hash256>,
    /// BIP 310 version-rolling mask agreed with the server (0: none).
    pub version_mask: u32,
    /// What a hash must meet to be submitted (the share target), internal order.
    pub share_target: [u8; 32],
    /// What a hash must meet to be a block (from `bits`), internal order.
    pub block_target: [u8; 32],
}

/// Which header of a job: the extranonce2, version and time that went into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roll {
    pub extranonce2: u64,
    pub version: u32,
    pub time: u32,
}

/// A verified solution with the job and header it belongs to.
#[derive(Clone, Debug)]
pub struct Found {
    pub job: std::sync::Arc<Job>,
    pub roll: Roll,
    pub solution: Solution,
    /// Which device found it (index in the device list).
    pub device: usize,
}

impl Found {
    /// Whether the hash also meets the block target: the share is a block.
    pub fn is_block(&self) -> bool {
        sha256::meets(&self.solution.hash.0, &self.job.block_target)
    }
}

impl Job {
    /// Version bits rolled: the lowest [`MAX_VERSION_BITS`] set bits of the mask.
    pub fn rolled_version_mask(&self) -> u32 {
        let mut mask = 0u32;
        let mut rest = self.version_mask;
        for _ in 0..MAX_VERSION_BITS {
            if rest == 0 {
                break;
            }
            let low = rest & rest.wrapping_neg();
            mask |= low;
            rest &= !low;
        }
        mask
    }

    /// The header for roll number `r`, or `None` past the end of the job's space
    /// (every extranonce2 value under every version used up).
    pub fn roll(&self, r: u64, previous_time: Option<u32>) -> Option<Roll> {
        let mask = self.rolled_version_mask();
        let vbits = mask.count_ones();
        let v = r & ((1u64 << vbits) - 1);
        let en2 = r >> vbits;
        if self.extranonce2_size < 8 && en2 >> (8 * self.extranonce2_size) != 0 {
            return None;
        }
        Some(Roll {
            extranonce2: en2,
            version: (self.version & !mask) | deposit(v as u32, mask),
            time: self.rolled_time(previous_time),
        })
    }

    /// extranonce2 as the bytes that go into the coinbase (little-endian, truncated).
    pub fn extranonce2_bytes(&self, en2: u64) -> Vec<u8> {
        en2.to_le_bytes()[..self.extranonce2_size.min(8)].to_vec()
    }

    /// The merkle root with this extranonce2: the coinbase txid folded up the branch.
    pub fn merkle_root(&self, en2: u64) -> Hash256 {
        let en2 = self.extranonce2_bytes(en2);
        let mut coinbase = Vec::with_capacity(
            self.coinb1.len() + self.extranonce1.len() + en2.len() + self.coinb2.len(),
        );
        coinbase.extend_from_slice(&self.coinb1);
        coinbase.extend_from_slice(&self.extranonce1);
        coinbase.extend_from_slice(&en2);
        coinbase.extend_from_slice(&self.coinb2);
        MerkleProof {
            index: 0,
            branch: self.branch.clone(),
        }
        .root_for(&Hash256::sha256d(&coinbase))
    }

    /// The 80-byte header of a roll, nonce 0.
    pub fn header(&self, roll: &Roll) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[0..4].copy_from_slice(&roll.version.to_le_bytes());
        h[4..36].copy_from_slice(&self.prev_hash);
        h[36..68].copy_from_slice(&self.merkle_root(roll.extranonce2).0);
        h[68..72].copy_from_slice(&roll.time.to_le_bytes());
        h[72..76].copy_from_slice(&self.bits.to_le_bytes());
        h
    }

    /// What the search kernels get for a roll: its header and the share target.
    pub fn work(&self, roll: &Roll) -> Work {
        Work::new(self.header(roll), self.share_target)
    }

    /// Re-derives a reported solution from scratch (coinbase, merkle root, header, hash)
    /// and checks it against the share target: what is submitted never rests on a
    /// device's word alone.
    pub fn verify(&self, roll: &Roll, nonce: u32) -> Option<Hash256> {
        let mut header = self.header(roll);
        header[consensus::header::NONCE_OFFSET..].copy_from_slice(&nonce.to_le_bytes());
        let hash = Hash256::sha256d(&header);
        sha256::meets(&hash.0, &self.share_target).then_some(hash)
    }

    /// The time for a roll after `previous` (`None`: a device's first roll, which keeps
    /// the job's time): the job's own when it is never rolled; otherwise now, but never
    /// before the job's time or the previous roll's, nor past `max_time`.
    fn rolled_time(&self, previous: Option<u32>) -> u32 {
        let (Some(hi), Some(previous)) = (self.max_time, previous) else {
            return self.time;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as u32;
        now.max(previous).clamp(self.time, hi.max(self.time))
    }
}

/// Scatters the low bits of `v` into the set bits of `mask`, lowest first (PDEP).
fn deposit(mut v: u32, mask: u32) -> u32 {
    let mut out = 0u32;
    let mut m = mask;
    while m != 0 {
        let low = m & m.wrapping_neg();
        if v & 1 == 1 {
            out |= low;
        }
        v >>= 1;
        m &= !low;
    }
    out
}

/// Bitcoin's difficulty-1 target, 0xffff · 2^208 (the sha256d pools' convention, as in
/// cpuminer's `diff_to_target`).
pub fn diff1_target() -> [u8; 32] {
    let mut t = [0u8; 32];
    t[26] = 0xff;
    t[27] = 0xff;
    t
}

/// The share target for a Stratum difficulty: diff1 / `difficulty`, internal order
/// (little-endian). Fractional difficulties make targets above diff1; anything at or
/// beyond 2^256 is the maximum target. `None` for a difficulty that is not a positive
/// finite number.
pub fn target_for_difficulty(difficulty: f64) -> Option<[u8; 32]> {
    if !(difficulty.is_finite() && difficulty > 0.0) {
        return None;
    }
    // 65535 / d = m · 2^e with an integer m of at most 53 bits; the target is m · 2^(e+208).
    let q = 65535.0 / difficulty;
    if !q.is_finite() {
        return Some([0xff; 32]);
    }
    let bits = q.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let (mant, e) = if exp == 0 {
        (bits & ((1 << 52) - 1), -1074)
    } else {
        ((bits & ((1 << 52) - 1)) | (1 << 52), exp - 1075)
    };
    let shift = e + 208;
    let mut t = [0u8; 32];
    if shift >= 0 {
        let shift = shift as u32;
        if 64 - mant.leading_zeros() + shift > 256 {
            return Some([0xff; 32]);
        }
        // Place mant << shift byte by byte (little-endian).
        let (bytes, bits_in) = ((shift / 8) as usize, shift % 8);
        let wide = (mant as u128) << bits_in;
        for (i, b) in wide.to_le_bytes().iter().enumerate() {
            if bytes + i < 32 {
                t[bytes + i] = *b;
            }
        }
    } else {
        let s = (-shift) as u32;
        let v = if s >= 64 { 0 } else { mant >> s };
        t[..8].copy_from_slice(&v.to_le_bytes());
    }
    Some(t)
}

/// A hash's difficulty: diff1 over the hash read as a little-endian 256-bit number.
pub use consensus::pow::hash_difficulty;

/// The target of compact `bits`, internal order (all zero for bits that encode none:
/// nothing meets it, so no share is taken for a block by mistake).
pub fn block_target(bits: u32) -> [u8; 32] {
    consensus::pow::CompactTarget(bits)
        .to_target()
        .map(|t| {
            let mut b = t.to_be_bytes();
            b.reverse();
            b
        })
        .unwrap_or([0; 32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: "1".into(),
            height: None,
            version: 0x2000_0000,
            prev_hash: [7; 32],
            bits: 0x1d00ffff,
            time: 1_700_000_000,
            max_time: None,
            coinb1: b"coinb1".to_vec(),
            extranonce1: vec![0xaa, 0xbb],
            extranonce2_size: 2,
            coinb2: b"coinb2".to_vec(),
            branch: vec![Hash256([1; 32])],
            version_mask: 0,
            share_target: diff1_target(),
            block_target: block_target(0x1d00ffff),
        }
    }

    #[test]
    fn difficulty_one_is_bitcoins_diff1_and_fractions_scale_it() {
        assert_eq!(target_for_difficulty(1.0).unwrap(), diff1_target());
        assert_eq!(
            target_for_difficulty(1.0).unwrap(),
            block_target(0x1d00ffff)
        );
        // d = 1/2^k shifts diff1 left by k bits; d = 2^k right.
        let half = target_for_difficulty(0.5).unwrap();
        assert_eq!(&half[26..29], &[0xfe, 0xff, 0x01]);
        let t = target_for_difficulty(65536.0).unwrap();
        assert_eq!(&t[24..28], &[0xff, 0xff, 0, 0]);
        // 0.001: 65535000 (0x3e7fc18) · 2^208, to float precision.
        let t = target_for_difficulty(0.001).unwrap();
        let top = u64::from_le_bytes(t[24..32].try_into().unwrap());
        let want = 65_535_000u64 << 16;
        assert!(top.abs_diff(want) < 4, "{top:x} vs {want:x}");
        assert!((hash_difficulty(&t) - 0.001).abs() < 1e-12);
        // Tiny difficulties saturate at the maximum target; nonsense is refused.
        assert_eq!(target_for_difficulty(1e-80).unwrap(), [0xff; 32]);
        assert_eq!(target_for_difficulty(0.0), None);
        assert_eq!(target_for_difficulty(-1.0), None);
        assert_eq!(target_for_difficulty(f64::NAN), None);
        // Huge difficulties give tiny targets: 2^200 leaves 0xffff · 2^8.
        let t = target_for_difficulty(2f64.powi(200)).unwrap();
        assert_eq!(&t[..4], &[0x00, 0xff, 0xff, 0x00]);
        assert!(t[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn hash_difficulty_inverts_the_target() {
        for d in [0.01, 0.5, 1.0, 3.7, 1024.0, 1.5e9] {
            let t = target_for_difficulty(d).unwrap();
            let got = hash_difficulty(&t);
            assert!((got / d - 1.0).abs() < 1e-9, "{d}: {got}");
        }
    }

    #[test]
    fn rolls_walk_version_bits_then_extranonce2_and_end() {
        let mut j = job();
        assert_eq!(j.roll(0, None).unwrap().extranonce2, 0);
        assert_eq!(j.roll(65535, None).unwrap().extranonce2, 65535);
        assert_eq!(j.roll(65536, None), None, "2-byte extranonce2 is used up");
        j.version_mask = 0x1fffe000;
        assert_eq!(j.rolled_version_mask(), 0x1fffe000, "16 bits");
        let r1 = j.roll(1, None).unwrap();
        assert_eq!((r1.extranonce2, r1.version), (0, 0x2000_2000));
        let r = j.roll(0x1_0003, None).unwrap();
        assert_eq!((r.extranonce2, r.version), (1, 0x2000_6000));
        assert_eq!(r.version & !j.version_mask, j.version & !j.version_mask);
        assert_eq!(j.roll(65536 * 65536, None), None);
        // A wider mask rolls its lowest 16 bits only.
        j.version_mask = 0xffff_fff0;
        assert_eq!(j.rolled_version_mask(), 0x000f_fff0);
        assert_eq!(deposit(0b101, 0b1011_0000), 0b1001_0000);
    }

    #[test]
    fn header_carries_the_coinbase_root_and_verify_recomputes_it() {
        let j = job();
        let roll = j.roll(0x0102, None).unwrap();
        let h = j.header(&roll);
        let coinbase = [&b"coinb1"[..], &[0xaa, 0xbb, 0x02, 0x01], b"coinb2"].concat();
        let txid = Hash256::sha256d(&coinbase);
        let root = Hash256::sha256d(&[txid.0, [1; 32]].concat());
        assert_eq!(&h[36..68], &root.0);
        assert_eq!(&h[4..36], &[7; 32]);
        assert_eq!(u32::from_le_bytes(h[0..4].try_into().unwrap()), 0x2000_0000);
        assert_eq!(
            u32::from_le_bytes(h[72..76].try_into().unwrap()),
            0x1d00ffff
        );
        // The easiest share target is met by any nonce; the hash is the header's.
        let mut easy = j.clone();
        easy.share_target = [0xff; 32];
        let hash = easy.verify(&roll, 42).unwrap();
        let mut full = h;
        full[76..].copy_from_slice(&42u32.to_le_bytes());
        assert_eq!(hash, Hash256::sha256d(&full));
        assert_eq!(j.verify(&roll, 42), None, "diff 1 is not met by chance");
    }

    #[test]
    fn time_rolls_forward_within_the_limit() {
        let mut j = job();
        assert_eq!(
            j.roll(5, Some(1)).unwrap().time,
            j.time,
            "pool jobs keep time"
        );
        j.max_time = Some(j.time + 7200);
        assert_eq!(
            j.roll(5, None).unwrap().time,
            j.time,
            "a first roll keeps it"
        );
        let t = j.roll(5, Some(j.time)).unwrap().time;
        assert!(t >= j.time && t <= j.time + 7200);
        assert_eq!(j.roll(5, Some(j.time + 9000)).unwrap().time, j.time + 7200);
    }
}
