//! Orphan transactions: ones a peer pushed before a transaction they spend.
//!
//! Relay pushes run concurrently, so a child can reach a peer before its parent; the
//! engine refuses it (`missing_input`) and, without transaction sync, the peer would not
//! see it again until it is mined. The pool keeps such transactions for a while and hands
//! them back when a transaction they spend becomes known, to be submitted again.
//!
//! Everything here is bounded, since anyone can push garbage that spends nothing real:
//! [`MAX_ORPHANS`] entries (the oldest evicted first), [`MAX_ORPHAN_BYTES`] each, and
//! each held for at most [`ORPHAN_TTL`]. Time is passed in, so tests need no clock.

use engine::encoding::Encode;
use engine::{Hash256, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Most orphans held; a new one past this evicts the oldest.
pub const MAX_ORPHANS: usize = 100;
/// How long an orphan waits for its parents before it is forgotten.
pub const ORPHAN_TTL: Duration = Duration::from_secs(20 * 60);
/// Largest orphan held (bytes of its encoding): 100 of them stay around 10 MB.
pub const MAX_ORPHAN_BYTES: usize = 100_000;

/// Why a transaction was not taken into the pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrphanRefused {
    #[error("orphan of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("a coinbase cannot be an orphan")]
    Coinbase,
}

/// What [`OrphanPool::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Added,
    /// Already held under this txid: nothing changed.
    AlreadyHeld,
}

/// One held transaction.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub tx: Transaction,
    /// When it first arrived; it expires [`ORPHAN_TTL`] after this.
    pub received: Instant,
    seq: u64,
}

/// Orphans by txid, in arrival order, and indexed by the txids they spend.
#[derive(Debug, Default)]
pub struct OrphanPool {
    by_txid: HashMap<Hash256, Orphan>,
    /// Arrival sequence → txid: the first entry is the oldest (evicted or expired first).
    order: BTreeMap<u64, Hash256>,
    /// Parent txid → orphans spending one of its outputs.
    by_parent: HashMap<Hash256, HashSet<Hash256>>,
    next_seq: u64,
}

impl OrphanPool {
    pub fn new() -> OrphanPool {
        OrphanPool::default()
    }

    pub fn len(&self) -> usize {
        self.by_txid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_txid.is_empty()
    }

    pub fn contains(&self, txid: &Hash256) -> bool {
        self.by_txid.contains_key(txid)
    }

    /// Holds `tx`, first received at `received`. Expired orphans go first, then the
    /// oldest ones while the pool is full.
    pub fn insert(
        &mut self,
        tx: Transaction,
        received: Instant,
    ) -> Result<Inserted, OrphanRefused> {
        if tx.is_coinbase() {
            return Err(OrphanRefused::Coinbase);
        }
        let size = tx.encode().len();
        if size > MAX_ORPHAN_BYTES {
            return Err(OrphanRefused::TooLarge {
                size,
                max: MAX_ORPHAN_BYTES,
            });
        }
        self.expire(received);
        let txid = tx.txid();
        if self.by_txid.contains_key(&txid) {
            return Ok(Inserted::AlreadyHeld);
        }
        while self.by_txid.len() >= MAX_ORPHANS {
            self.evict_oldest();
        }
        self.add(txid, tx, received);
        Ok(Inserted::Added)
    }

    fn add(&mut self, txid: Hash256, tx: Transaction, received: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        for parent in parents(&tx) {
            self.by_parent.entry(parent).or_default().insert(txid);
        }
        self.order.insert(seq, txid);
        self.by_txid.insert(txid, Orphan { tx, received, seq });
    }

    /// Forgets every orphan older than [`ORPHAN_TTL`] at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let expired: Vec<Hash256> = self
            .by_txid
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.received) >= ORPHAN_TTL)
            .map(|(txid, _)| *txid)
            .collect();
        for txid in &expired {
            self.remove(txid);
        }
        expired.len()
    }

    fn evict_oldest(&mut self) {
        if let Some((_, txid)) = self.order.pop_first() {
            self.remove(&txid);
        }
    }

    /// Takes out (and returns, oldest first) every unexpired orphan that spends an
    /// output of `parent`: the caller submits them again now that `parent` is known.
    pub fn take_children(&mut self, parent: &Hash256, now: Instant) -> Vec<Orphan> {
        self.expire(now);
        let Some(children) = self.by_parent.get(parent).cloned() else {
            return Vec::new();
        };
        let mut taken: Vec<Orphan> = children.iter().filter_map(|c| self.remove(c)).collect();
        taken.sort_by_key(|o| o.seq);
        taken
    }

    fn remove(&mut self, txid: &Hash256) -> Option<Orphan> {
        let orphan = self.by_txid.remove(txid)?;
        self.order.remove(&orphan.seq);
        for parent in parents(&orphan.tx) {
            if let Some(set) = self.by_parent.get_mut(&parent) {
                set.remove(txid);
                if set.is_empty() {
                    self.by_parent.remove(&parent);
                }
            }
        }
        Some(orphan)
    }
}

/// The distinct txids whose outputs `tx` spends.
pub fn parents(tx: &Transaction) -> HashSet<Hash256> {
    tx.spends().iter().map(|i| i.prevout.txid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::testkit::{outpoint, TestKey};

    /// A distinct transaction spending output 0 of each of `parents`.
    fn spending(parents: &[Hash256], amount: u64) -> Transaction {
        let k = TestKey::new(7);
        let ins: Vec<_> = parents.iter().map(|p| outpoint(*p, 0)).collect();
        k.spend(&ins, &[(k.address(), amount)])
    }

    fn h(n: u8) -> Hash256 {
        Hash256([n; 32])
    }

    #[test]
    fn holds_up_to_the_bound_and_evicts_the_oldest_first() {
        let t0 = Instant::now();
        let mut pool = OrphanPool::new();
        let txs: Vec<Transaction> = (1..=MAX_ORPHANS as u64 + 2)
            .map(|n| spending(&[h(1)], n))
            .collect();
        for (i, tx) in txs.iter().enumerate() {
            let at = t0 + Duration::from_secs(i as u64);
            assert_eq!(pool.insert(tx.clone(), at), Ok(Inserted::Added));
            assert!(pool.len() <= MAX_ORPHANS);
        }
        assert_eq!(pool.len(), MAX_ORPHANS);
        assert!(!pool.contains(&txs[0].txid()), "oldest evicted");
        assert!(!pool.contains(&txs[1].txid()), "second oldest evicted");
        assert!(pool.contains(&txs[2].txid()));
        assert!(pool.contains(&txs[MAX_ORPHANS + 1].txid()));
        // Evicted ones left the parent index too.
        let later = t0 + Duration::from_secs(200);
        let children = pool.take_children(&h(1), later);
        assert_eq!(children.len(), MAX_ORPHANS);
        assert_eq!(children[0].tx.txid(), txs[2].txid(), "oldest first");
        assert!(pool.is_empty());
    }

    #[test]
    fn duplicates_are_ignored() {
        let t0 = Instant::now();
        let mut pool = OrphanPool::new();
        let tx = spending(&[h(1)], 5);
        assert_eq!(pool.insert(tx.clone(), t0), Ok(Inserted::Added));
        assert_eq!(pool.insert(tx.clone(), t0), Ok(Inserted::AlreadyHeld));
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take_children(&h(1), t0).len(), 1);
    }

    #[test]
    fn orphans_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut pool = OrphanPool::new();
        let old = spending(&[h(1)], 5);
        let young = spending(&[h(1)], 6);
        pool.insert(old.clone(), t0).unwrap();
        pool.insert(young.clone(), t0 + Duration::from_secs(60))
            .unwrap();
        assert_eq!(pool.expire(t0 + ORPHAN_TTL - Duration::from_secs(1)), 0);
        assert_eq!(pool.len(), 2);
        let children = pool.take_children(&h(1), t0 + ORPHAN_TTL);
        assert_eq!(children.len(), 1, "the old one expired");
        assert_eq!(children[0].tx.txid(), young.txid());
        assert!(!pool.contains(&old.txid()));
    }

    #[test]
    fn children_are_found_by_any_parent_and_only_theirs() {
        let t0 = Instant::now();
        let mut pool = OrphanPool::new();
        let both = spending(&[h(1), h(2)], 5);
        let other = spending(&[h(3)], 5);
        pool.insert(both.clone(), t0).unwrap();
        pool.insert(other.clone(), t0).unwrap();
        assert!(pool.take_children(&h(9), t0).is_empty());
        let got = pool.take_children(&h(2), t0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].tx.txid(), both.txid());
        // Taken out entirely: no longer found by its other parent.
        assert!(pool.take_children(&h(1), t0).is_empty());
        assert!(pool.contains(&other.txid()));
    }

    #[test]
    fn oversized_and_coinbase_transactions_are_refused() {
        let t0 = Instant::now();
        let mut pool = OrphanPool::new();
        let many: Vec<Hash256> = (0..2000u32)
            .map(|i| Hash256::sha256d(&i.to_le_bytes()))
            .collect();
        let big = spending(&many, 5);
        assert!(big.encode().len() > MAX_ORPHAN_BYTES);
        assert!(matches!(
            pool.insert(big, t0),
            Err(OrphanRefused::TooLarge { .. })
        ));
        let coinbase = Transaction::coinbase(1, vec![], vec![]);
        assert_eq!(pool.insert(coinbase, t0), Err(OrphanRefused::Coinbase));
        assert!(pool.is_empty());
    }
}
