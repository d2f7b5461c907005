//! Signatures already verified strictly, remembered (as Bitcoin Core's script cache).
//!
//! Why: a transaction admitted to the mempool had every signature checked with
//! `verify_strict`; when a block holding it arrives, checking them again is the largest
//! part of connecting it. The block check skips the transactions found here (see
//! [`crate::validation::verify_block_signatures`]), and that is the cache's only use.
//!
//! What an entry means: "these exact bytes verified strictly". Its key, a [`SigKey`],
//! is SHA-256 over the txid (the signed message) and every input's public key and
//! signature: everything `verify_strict` read. A block carrying the same txid with any
//! other signature byte (malleated, torsion-tampered) misses and is verified as if no
//! cache existed, so a hit can never change a verdict.
//!
//! Bounded: a fixed number of entries, split over shards (concurrent verifiers rarely
//! share a lock); a full shard forgets its oldest entry. Entries are inserted when a
//! transaction is admitted to the mempool (not merely verified, so a flood of validly
//! signed but unadmittable transactions costs its sender fees to evict anything) and
//! are left to age out: a block seen twice, or a reorganisation back, still hits.

use crate::hash::Hash256;
use crate::tx::Transaction;
use foldhash::fast::RandomState;
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Entries a node keeps by default: ~100 bytes each, so ~10 MB, and several full blocks'
/// worth of mempool transactions.
pub const DEFAULT_CAPACITY: usize = 100_000;

const SHARDS: usize = 16;

/// Separates these hashes from every other SHA-256 the node computes.
const DOMAIN: &[u8] = b"bitplace/sigcache/v1";

/// What a cache entry commits to: the txid and each input's public key and signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SigKey([u8; 32]);

impl SigKey {
    /// The key of `tx`'s signatures over `txid` (the caller has it already: it is the
    /// message every signature signs). Inputs are fixed-size records after a fixed-size
    /// txid, so no two different input lists hash the same bytes.
    pub fn new(txid: &Hash256, tx: &Transaction) -> SigKey {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(txid.0);
        for input in tx.spends() {
            h.update(input.public_key);
            h.update(input.signature);
        }
        SigKey(h.finalize().into())
    }

    /// The key of `tx`, computing its txid.
    pub fn of(tx: &Transaction) -> SigKey {
        SigKey::new(&tx.txid(), tx)
    }
}

/// Counters since the engine opened, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SigCacheStats {
    /// Block transactions whose signatures were not verified again.
    pub hits: u64,
    /// Block transactions not found (verified as without a cache).
    pub misses: u64,
    /// Entries held now.
    pub entries: u64,
    /// Entries it holds at most.
    pub capacity: u64,
}

/// A shard: the set for lookups and the insertion order for eviction.
#[derive(Default)]
struct Shard {
    keys: HashSet<SigKey, RandomState>,
    order: VecDeque<SigKey>,
}

/// The bounded, thread-safe cache. One per engine.
pub struct SigCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl SigCache {
    /// A cache of at most `capacity` entries (rounded up to a multiple of the shard
    /// count); 0 disables it: nothing is kept, everything misses.
    pub fn new(capacity: usize) -> SigCache {
        SigCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Remembers that `key`'s signatures verified strictly. Callers insert only after
    /// `verify_strict` accepted every one of them.
    pub fn insert(&self, key: SigKey) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self.shard(&key);
        if !shard.keys.insert(key) {
            return;
        }
        shard.order.push_back(key);
        if shard.order.len() > self.per_shard {
            if let Some(oldest) = shard.order.pop_front() {
                shard.keys.remove(&oldest);
            }
        }
    }

    /// Whether `key` verified strictly before (counted as a hit or a miss).
    pub fn contains(&self, key: &SigKey) -> bool {
        let found = self.shard(key).keys.contains(key);
        let counter = if found { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn stats(&self) -> SigCacheStats {
        let entries = self.shards.iter().map(|s| lock(s).keys.len() as u64).sum();
        SigCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
            capacity: (self.per_shard * SHARDS) as u64,
        }
    }

    fn shard(&self, key: &SigKey) -> MutexGuard<'_, Shard> {
        // The key is a SHA-256 output: its first byte spreads keys evenly.
        lock(&self.shards[key.0[0] as usize % SHARDS])
    }
}

impl Default for SigCache {
    fn default() -> SigCache {
        SigCache::new(DEFAULT_CAPACITY)
    }
}

/// A poisoned shard still holds only keys that verified: keep using it.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{outpoint, TestKey};

    fn tx(n: u64) -> Transaction {
        let k = TestKey::new(n);
        k.spend(
            &[
                outpoint(Hash256([n as u8; 32]), 0),
                outpoint(Hash256([7; 32]), 1),
            ],
            &[(k.address(), 5)],
        )
    }

    fn key_n(n: u32) -> SigKey {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_le_bytes());
        SigKey(b)
    }

    #[test]
    fn hit_after_insert_miss_before_and_counted() {
        let cache = SigCache::new(64);
        let k = SigKey::of(&tx(1));
        assert!(!cache.contains(&k));
        cache.insert(k);
        assert!(cache.contains(&k));
        assert!(!cache.contains(&SigKey::of(&tx(2))));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries), (1, 2, 1));
    }

    #[test]
    fn key_changes_with_every_signature_and_public_key_byte() {
        let base = tx(3);
        let k = SigKey::of(&base);
        assert_eq!(k, SigKey::of(&base.clone()), "deterministic");
        for input in 0..2 {
            for byte in 0..96 {
                let mut t = base.clone();
                if let crate::tx::TxInputs::Transfer(ins) = &mut t.inputs {
                    match byte {
                        b if b < 32 => ins[input].public_key[b] ^= 1,
                        b => ins[input].signature[b - 32] ^= 0x80,
                    }
                }
                // Same txid when only a signature changed: the key still differs.
                assert_ne!(SigKey::of(&t), k, "input {input} byte {byte}");
            }
        }
        assert_ne!(
            SigKey::new(&Hash256([9; 32]), &base),
            k,
            "the txid is part of it"
        );
    }

    #[test]
    fn signature_bytes_do_not_change_the_txid_but_change_the_key() {
        let base = tx(4);
        let mut t = base.clone();
        if let crate::tx::TxInputs::Transfer(ins) = &mut t.inputs {
            ins[1].signature[63] ^= 1;
        }
        assert_eq!(t.txid(), base.txid());
        let cache = SigCache::new(64);
        cache.insert(SigKey::of(&base));
        assert!(!cache.contains(&SigKey::of(&t)));
    }

    #[test]
    fn bounded_and_evicts_the_oldest_first() {
        let cache = SigCache::new(SHARDS * 4);
        // All in shard 0 (first byte 0): the shard holds 4.
        let keys: Vec<SigKey> = (0..10u32).map(|n| key_n(n << 8)).collect();
        for k in &keys {
            cache.insert(*k);
        }
        assert_eq!(cache.stats().entries, 4);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(cache.contains(k), i >= 6, "key {i}");
        }
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let cache = SigCache::new(1000);
        for n in 0..50_000u32 {
            cache.insert(key_n(n));
        }
        let s = cache.stats();
        assert!(s.entries <= s.capacity, "{s:?}");
        assert!(s.capacity >= 1000 && s.capacity < 1000 + SHARDS as u64);
        assert!(s.entries > 900, "every shard fills: {s:?}");
    }

    #[test]
    fn inserting_twice_keeps_one_entry() {
        let cache = SigCache::new(SHARDS * 2);
        let (a, b) = (key_n(0), key_n(1 << 8));
        cache.insert(a);
        cache.insert(a);
        cache.insert(b);
        assert!(cache.contains(&a) && cache.contains(&b));
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let cache = SigCache::new(0);
        cache.insert(key_n(1));
        assert!(!cache.contains(&key_n(1)));
        assert_eq!(cache.stats().capacity, 0);
    }

    #[test]
    fn shared_across_threads() {
        let cache = std::sync::Arc::new(SigCache::new(100_000));
        let handles: Vec<_> = (0..4u32)
            .map(|t| {
                let c = cache.clone();
                std::thread::spawn(move || {
                    for n in 0..1000 {
                        c.insert(key_n(t * 1000 + n));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("inserter");
        }
        assert_eq!(cache.stats().entries, 4000);
        assert!((0..4000).all(|n| cache.contains(&key_n(n))));
    }
}
