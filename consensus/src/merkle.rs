//! Merkle root over txids, computed exactly as Bitcoin does (pairs hashed with SHA-256d,
//! an odd last node paired with itself), so Stratum merkle branches work unchanged.
//!
//! Bitcoin's scheme lets a block with a duplicated run of transactions share a root with
//! the honest block (CVE-2012-2459). [`merkle_root`] reports that mutation and block
//! validation rejects it, together with any duplicate txid.

use crate::hash::Hash256;
use serde::{Deserialize, Serialize};

fn hash_pair(a: &Hash256, b: &Hash256) -> Hash256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&a.0);
    buf[32..].copy_from_slice(&b.0);
    Hash256::sha256d(&buf)
}

/// The root and whether any level paired two identical nodes (the CVE-2012-2459 mutation).
pub fn merkle_root(txids: &[Hash256]) -> (Hash256, bool) {
    if txids.is_empty() {
        return (Hash256::ZERO, false);
    }
    let mut level = txids.to_vec();
    let mut mutated = false;
    while level.len() > 1 {
        mutated |= level.chunks_exact(2).any(|pair| pair[0] == pair[1]);
        level = level
            .chunks(2)
            .map(|pair| hash_pair(&pair[0], pair.get(1).unwrap_or(&pair[0])))
            .collect();
    }
    (level[0], mutated)
}

/// An inclusion proof: the sibling at each level, from the leaf up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    pub index: u32,
    pub branch: Vec<Hash256>,
}

impl MerkleProof {
    /// Builds the proof for leaf `index`; None if it is out of range.
    pub fn build(txids: &[Hash256], index: usize) -> Option<MerkleProof> {
        if index >= txids.len() {
            return None;
        }
        let mut level = txids.to_vec();
        let mut pos = index;
        let mut branch = Vec::new();
        while level.len() > 1 {
            let sibling = (pos ^ 1).min(level.len() - 1);
            branch.push(level[sibling]);
            level = level
                .chunks(2)
                .map(|pair| hash_pair(&pair[0], pair.get(1).unwrap_or(&pair[0])))
                .collect();
            pos /= 2;
        }
        Some(MerkleProof {
            index: index as u32,
            branch,
        })
    }

    /// The root this proof yields for `txid`.
    pub fn root_for(&self, txid: &Hash256) -> Hash256 {
        let mut acc = *txid;
        let mut pos = self.index;
        for sibling in &self.branch {
            acc = if pos & 1 == 0 {
                hash_pair(&acc, sibling)
            } else {
                hash_pair(sibling, &acc)
            };
            pos >>= 1;
        }
        acc
    }
}

/// The Stratum merkle branch for the coinbase (leaf 0): the proof of index 0 without
/// the coinbase itself, which miners rebuild from coinb1 + extranonces + coinb2.
pub fn coinbase_branch(txids_after_coinbase: &[Hash256]) -> Vec<Hash256> {
    let mut leaves = Vec::with_capacity(txids_after_coinbase.len() + 1);
    leaves.push(Hash256::ZERO);
    leaves.extend_from_slice(txids_after_coinbase);
    MerkleProof::build(&leaves, 0)
        .expect("leaf 0 exists")
        .branch
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash256> {
        (0..n)
            .map(|i| Hash256::sha256d(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn bitcoin_block_100000_root() {
        // Block 100000's four txids (display order) and its merkle root.
        let ids: Vec<Hash256> = [
            "8c14f0db3df150123e6f3dbbf30f8b955a8249b62ac1d1ff16284aefa3d06d87",
            "fff2525b8931402dd09222c50775608f75787bd2b87e56995a7bdd30f79702c4",
            "6359f0868171b1d194cbee1af2f16ea598ae8fad666d9b012c8ed2b79a236ec4",
            "e9a66845e05d5abc0ad04ec80f774a7e585c6e8db975962d069a522137b80c1d",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let (root, mutated) = merkle_root(&ids);
        assert_eq!(
            root.to_string(),
            "f3e94742aca4b5ef85488dc37c06c3282295ffec960994b2c0d5ac2a25a95766"
        );
        assert!(!mutated);
    }

    #[test]
    fn duplicated_tail_is_flagged_as_mutation() {
        let honest = leaves(3);
        let mut forged = honest.clone();
        forged.push(honest[2]);
        let (a, ma) = merkle_root(&honest);
        let (b, mb) = merkle_root(&forged);
        assert_eq!(a, b, "the CVE-2012-2459 collision exists");
        assert!(!ma && mb, "and only the forged list is flagged");
    }

    #[test]
    fn coinbase_branch_matches_proof() {
        let ids = leaves(6);
        let branch = coinbase_branch(&ids[1..]);
        let proof = MerkleProof { index: 0, branch };
        assert_eq!(proof.root_for(&ids[0]), merkle_root(&ids).0);
    }

    proptest! {
        #[test]
        fn every_proof_verifies(n in 1usize..40, pick in any::<prop::sample::Index>()) {
            let ids = leaves(n);
            let i = pick.index(n);
            let proof = MerkleProof::build(&ids, i).unwrap();
            prop_assert_eq!(proof.root_for(&ids[i]), merkle_root(&ids).0);
        }
    }
}
