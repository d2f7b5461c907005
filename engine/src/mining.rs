//! Block templates for miners, and the Stratum-style split of the coinbase around its
//! extra nonce so external miners can roll it and rebuild the merkle root themselves.

use crate::address::Address;
use crate::block::Block;
use crate::encoding::Encode;
use crate::hash::Hash256;
use crate::header::BlockHeader;
use crate::merkle::{coinbase_branch, merkle_root, MerkleProof};
use crate::tx::{Transaction, TxInputs, TxOut};
use serde::Serialize;

/// A block ready to mine except for nonce (and optionally extra nonce and time).
#[derive(Clone, Debug, Serialize)]
pub struct BlockTemplate {
    pub height: u64,
    pub header: BlockHeader,
    /// Coinbase first.
    pub txs: Vec<Transaction>,
    pub fees: u64,
    pub reward: u64,
    /// Earliest time a block on this parent may carry (median time past + 1).
    pub min_time: u32,
}

/// Who the coinbase pays and what it carries.
#[derive(Clone, Debug)]
pub struct CoinbaseSpec {
    pub address: Address,
    pub extra_nonce: Vec<u8>,
    /// The block reward at this height (fees are added to it).
    pub reward: u64,
}

impl BlockTemplate {
    /// Builds the template: a coinbase paying reward + fees, then `selected`
    /// (transactions with their fees, parents before children).
    pub fn new(
        header: BlockHeader,
        height: u64,
        coinbase: CoinbaseSpec,
        selected: &[(Transaction, u64)],
        min_time: u32,
    ) -> BlockTemplate {
        let fees = selected
            .iter()
            .fold(0u64, |acc, (_, f)| acc.saturating_add(*f));
        let reward = coinbase.reward;
        let coinbase = Transaction::coinbase(
            height,
            coinbase.extra_nonce,
            vec![TxOut {
                amount: reward.saturating_add(fees),
                address: coinbase.address,
            }],
        );
        let txs = selected.iter().map(|(tx, _)| tx.clone());
        let mut all = Vec::with_capacity(txs.len() + 1);
        all.push(coinbase);
        all.extend(txs);
        let mut t = BlockTemplate {
            height,
            header,
            txs: all,
            fees,
            reward,
            min_time,
        };
        t.header.merkle_root = merkle_root(&t.txids()).0;
        t
    }

    fn txids(&self) -> Vec<Hash256> {
        self.txs.iter().map(Transaction::txid).collect()
    }

    /// The coinbase body split around its extra nonce: `coinb1 ‖ extra nonce ‖ coinb2`.
    /// The extra nonce length is fixed by the template's coinbase.
    pub fn coinbase_parts(&self) -> (Vec<u8>, Vec<u8>) {
        let body = self.txs[0].body_bytes();
        let len = self.extra_nonce_len();
        // version(4) ‖ kind(1) ‖ height(8) ‖ CompactSize(len) — 1 byte while len < 0xfd.
        let start = 4 + 1 + 8 + 1;
        (body[..start].to_vec(), body[start + len..].to_vec())
    }

    pub fn extra_nonce_len(&self) -> usize {
        match &self.txs[0].inputs {
            TxInputs::Coinbase { extra_nonce, .. } => extra_nonce.len(),
            TxInputs::Transfer(_) => 0,
        }
    }

    /// Merkle branch of the coinbase (Stratum's `merkle_branch`).
    pub fn merkle_branch(&self) -> Vec<Hash256> {
        coinbase_branch(&self.txids()[1..])
    }

    /// The same template paying `address` instead: only the coinbase output and the
    /// merkle root change (the coinbase is the branch's leaf, so the rest of the tree is
    /// shared). Cheaper than a new template when many miners work on one tip.
    pub fn paying(&self, address: Address) -> BlockTemplate {
        let mut t = self.clone();
        if let Some(out) = t.txs[0].outputs.first_mut() {
            out.address = address;
        }
        t.header.merkle_root = MerkleProof {
            index: 0,
            branch: self.merkle_branch(),
        }
        .root_for(&t.txs[0].txid());
        t
    }

    /// The block with the given extra nonce (same length as the template's), time and nonce.
    pub fn solve_with(&self, extra_nonce: &[u8], time: u32, nonce: u32) -> Option<Block> {
        if extra_nonce.len() != self.extra_nonce_len() {
            return None;
        }
        let mut txs = self.txs.clone();
        if let TxInputs::Coinbase { extra_nonce: e, .. } = &mut txs[0].inputs {
            e.copy_from_slice(extra_nonce);
        }
        let root = MerkleProof {
            index: 0,
            branch: self.merkle_branch(),
        }
        .root_for(&txs[0].txid());
        let header = BlockHeader {
            merkle_root: root,
            time,
            nonce,
            ..self.header
        };
        Some(Block { header, txs })
    }

    /// Searches nonces on this CPU with the plain hash (dev mode and tests only; the
    /// miner crate has the fast search). Rolls time when the nonce space runs out.
    pub fn mine_cpu(&self) -> Block {
        let mut header = self.header;
        let target = header.bits.to_target().expect("template bits are valid");
        loop {
            let base = header.to_bytes();
            for nonce in 0..=u32::MAX {
                let mut bytes = base;
                bytes[76..80].copy_from_slice(&nonce.to_le_bytes());
                if target.is_met_by(&Hash256::sha256d(&bytes)) {
                    header.nonce = nonce;
                    return Block {
                        header,
                        txs: self.txs.clone(),
                    };
                }
            }
            header.time += 1;
        }
    }

    /// Size of the block this template makes, in bytes.
    pub fn size(&self) -> usize {
        80 + 9 + self.txs.iter().map(|t| t.encode().len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ChainParams;

    #[test]
    fn coinbase_parts_rebuild_the_coinbase_and_root() {
        let genesis = ChainParams::dev().genesis();
        let spec = CoinbaseSpec {
            address: Address([1; 20]),
            extra_nonce: vec![0; 8],
            reward: 10,
        };
        let other = Transaction::coinbase(9, vec![], vec![]);
        let t = BlockTemplate::new(genesis.header, 1, spec, &[(other, 0)], 0);
        let (c1, c2) = t.coinbase_parts();
        let en = [1, 2, 3, 4, 5, 6, 7, 8];
        let body = [c1, en.to_vec(), c2].concat();
        let block = t.solve_with(&en, 5, 6).unwrap();
        assert_eq!(Hash256::sha256d(&body), block.txs[0].txid());
        assert_eq!(block.compute_merkle_root().0, block.header.merkle_root);
    }

    #[test]
    fn paying_another_address_equals_a_template_built_for_it() {
        let genesis = ChainParams::dev().genesis();
        let spec = |a: u8| CoinbaseSpec {
            address: Address([a; 20]),
            extra_nonce: vec![0; 8],
            reward: 10,
        };
        let others: Vec<(Transaction, u64)> = (0..5)
            .map(|i| (Transaction::coinbase(100 + i, vec![], vec![]), 1))
            .collect();
        let a = BlockTemplate::new(genesis.header, 1, spec(1), &others, 0);
        let b = BlockTemplate::new(genesis.header, 1, spec(2), &others, 0);
        let moved = a.paying(Address([2; 20]));
        assert_eq!(moved.header, b.header);
        assert_eq!(moved.txs, b.txs);
    }
}
