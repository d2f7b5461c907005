//! Decompressed ed25519 public keys, remembered.
//!
//! Why: turning a key's 32 bytes into a curve point costs a field square root, a sizeable
//! share of a signature check, and the same keys come back all the time (an address
//! spent from again, a payer with many coins, a block full of one exchange's
//! withdrawals). Keys are cached per shard, so concurrent verifiers rarely share a lock,
//! and a full shard is simply emptied: memory stays bounded (~8 MB) whatever keys an
//! attacker sends, and a cache miss only costs what every check cost before. Keys that
//! fail to decompress are never cached.

use ed25519_dalek::{SignatureError, VerifyingKey};
use foldhash::fast::FixedState;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;
const PER_SHARD: usize = 2048;

type Keys = HashMap<[u8; 32], VerifyingKey, FixedState>;
type Shard = Mutex<Keys>;

static CACHE: [Shard; SHARDS] = [const { Mutex::new(HashMap::with_hasher(FIXED)) }; SHARDS];

/// A fixed seed is enough: the keys are curve points chosen by their owners, and a
/// shard holds at most [`PER_SHARD`] of them, so collisions cannot grow a bucket without
/// bound.
const FIXED: FixedState = FixedState::with_seed(0x6269_7470_6c61_6365);

/// The verifying key for `bytes`, decompressed once per process while it stays cached.
pub fn verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, SignatureError> {
    let shard = &CACHE[bytes[0] as usize % SHARDS];
    if let Some(key) = lock(shard).get(bytes) {
        return Ok(*key);
    }
    let key = VerifyingKey::from_bytes(bytes)?;
    let mut map = lock(shard);
    if map.len() >= PER_SHARD {
        map.clear();
    }
    map.insert(*bytes, key);
    Ok(key)
}

fn lock(shard: &Shard) -> MutexGuard<'_, Keys> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_keys_equal_fresh_ones_and_bad_bytes_stay_errors() {
        for seed in 0..3000u64 {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&seed.to_le_bytes());
            let public = ed25519_dalek::SigningKey::from_bytes(&b).verifying_key();
            let bytes = public.to_bytes();
            for _ in 0..2 {
                assert_eq!(verifying_key(&bytes).unwrap(), public);
            }
        }
        // y = 2 is not on the curve: no point decompresses from it.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert!(VerifyingKey::from_bytes(&bad).is_err());
        assert!(verifying_key(&bad).is_err());
        assert!(
            verifying_key(&bad).is_err(),
            "failures are not cached as keys"
        );
    }
}
