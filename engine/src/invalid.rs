//! Blocks known to be invalid, by hash, so that the same invalid block pushed again is
//! refused at once with the reason it had, instead of being validated again (for a block
//! claiming more work, that is a whole reorganisation replayed and rolled back each time).
//!
//! Bounded: the oldest entry is forgotten first. Forgetting is harmless (the block is just
//! validated again). Only verdicts reached after the body was matched to the header (the
//! writer's, past the merkle check) and that can never change for that hash are kept:
//! - not a time too far ahead or an unknown parent (may be fine later), nor a branch too
//!   far behind (not invalid, and refused cheaply anyway);
//! - not a bad signature: signatures are outside the txid, so the block hash does not
//!   commit to them, and anyone could push an honest block with one signature garbled —
//!   remembering that hash would make the node refuse the honest block for good.

use crate::hash::Hash256;
use crate::validation::{Reject, RejectClass};
use std::collections::{HashMap, VecDeque};

/// Hashes remembered.
pub const MAX_INVALID_BLOCKS: usize = 4096;

#[derive(Default)]
pub struct InvalidBlocks {
    reasons: HashMap<Hash256, Reject>,
    order: VecDeque<Hash256>,
}

/// Whether refusing a block for `r` is final for that block: a consensus rule broken by
/// data the hash commits to. Conflicts count too: a block names its parent, so the state
/// it spends from is fixed, and a spend that state lacks or already made stays wrong.
pub fn is_final(r: &Reject) -> bool {
    match r.class() {
        RejectClass::Malformed | RejectClass::Invalid | RejectClass::Conflict => !matches!(
            r,
            Reject::TimeTooNew { .. } | Reject::UnknownParent(_) | Reject::BadSignature(_)
        ),
        RejectClass::PolicyRule | RejectClass::PolicyCapacity => false,
    }
}

impl InvalidBlocks {
    /// Why `hash` was refused, if it is remembered.
    pub fn get(&self, hash: &Hash256) -> Option<&Reject> {
        self.reasons.get(hash)
    }

    /// Remembers a final refusal of `hash` (others are ignored).
    pub fn insert(&mut self, hash: Hash256, r: &Reject) {
        if !is_final(r) || self.reasons.contains_key(&hash) {
            return;
        }
        while self.order.len() >= MAX_INVALID_BLOCKS {
            if let Some(old) = self.order.pop_front() {
                self.reasons.remove(&old);
            }
        }
        self.reasons.insert(hash, r.clone());
        self.order.push_back(hash);
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_final_refusals_only_and_stays_bounded() {
        let mut m = InvalidBlocks::default();
        m.insert(Hash256([1; 32]), &Reject::HighHash);
        m.insert(Hash256([2; 32]), &Reject::UnknownParent(Hash256::ZERO));
        m.insert(Hash256([3; 32]), &Reject::TimeTooNew { time: 1, max: 0 });
        m.insert(Hash256([4; 32]), &Reject::BadSignature(0));
        m.insert(
            Hash256([5; 32]),
            &Reject::ForkTooFarBehind {
                behind: 200,
                reach: 144,
            },
        );
        assert_eq!(m.get(&Hash256([1; 32])), Some(&Reject::HighHash));
        assert_eq!(m.len(), 1);
        for i in 0..(MAX_INVALID_BLOCKS + 10) as u32 {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            h[31] = 9;
            m.insert(Hash256(h), &Reject::BadMerkleRoot);
        }
        assert_eq!(m.len(), MAX_INVALID_BLOCKS);
        assert!(
            m.get(&Hash256([1; 32])).is_none(),
            "the oldest is forgotten first"
        );
    }
}
