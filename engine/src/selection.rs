//! Choosing mempool transactions for a block template: highest ancestor-package fee
//! rate first, parents always before children, within the block's limits.

use crate::encoding::Decode;
use crate::error::EngineError;
use crate::hash::Hash256;
use crate::params::ChainParams;
use crate::store::codec::decode_mempool_value;
use crate::store::StoreError;
use crate::tx::Transaction;
use redb::ReadableTable;
use std::collections::{HashMap, HashSet};

struct Candidate {
    txid: Hash256,
    tx: Transaction,
    fee: u64,
    size: usize,
    seq: u64,
    parents: Vec<usize>,
}

/// Picks mempool transactions for a block: highest ancestor-package fee rate first
/// (so a high-fee child pulls in its low-fee parent), parents always before children,
/// within the block's transaction and byte limits. Returns them with their fees.
pub(crate) fn select_for_block(
    mempool: &impl ReadableTable<&'static [u8], &'static [u8]>,
    params: &ChainParams,
) -> Result<Vec<(Transaction, u64)>, EngineError> {
    let mut cands = Vec::new();
    for row in mempool.iter()? {
        let (k, v) = row?;
        let (seq, fee, bytes) =
            decode_mempool_value(v.value()).ok_or_else(|| StoreError::corrupt("mempool row"))?;
        let tx = Transaction::decode(bytes).map_err(|e| StoreError::corrupt(e.to_string()))?;
        cands.push(Candidate {
            txid: Hash256(
                k.value()
                    .try_into()
                    .map_err(|_| StoreError::corrupt("mempool key"))?,
            ),
            tx,
            fee,
            size: bytes.len(),
            seq,
            parents: Vec::new(),
        });
    }
    let pos: HashMap<Hash256, usize> = cands.iter().enumerate().map(|(i, c)| (c.txid, i)).collect();
    for c in cands.iter_mut() {
        c.parents =
            c.tx.spends()
                .iter()
                .filter_map(|inp| pos.get(&inp.prevout.txid).copied())
                .collect();
    }
    let ancestors: Vec<Vec<usize>> = (0..cands.len()).map(|i| ancestor_set(&cands, i)).collect();
    // Admission order is not topological after a reorg re-admits a parent, so packages are
    // ordered by depth in the mempool graph (parents are always shallower).
    let depth: Vec<usize> = ancestors.iter().map(Vec::len).collect();
    let mut order: Vec<usize> = (0..cands.len()).collect();
    let package_rate = |i: usize| {
        let (fee, size) = ancestors[i].iter().fold((0u128, 0u128), |(f, s), &a| {
            (f + cands[a].fee as u128, s + cands[a].size as u128)
        });
        fee * 1_000_000 / size.max(1)
    };
    let rates: Vec<u128> = order.iter().map(|&i| package_rate(i)).collect();
    order.sort_by(|&a, &b| {
        rates[b]
            .cmp(&rates[a])
            .then(cands[a].seq.cmp(&cands[b].seq))
    });
    let max_txs = params.max_block_txs.saturating_sub(1);
    let max_bytes = params.max_block_bytes.saturating_sub(1000);
    let (mut chosen, mut included) = (Vec::new(), HashSet::new());
    let mut bytes = 0usize;
    for i in order {
        if included.contains(&i) {
            continue;
        }
        let mut package: Vec<usize> = ancestors[i]
            .iter()
            .copied()
            .filter(|a| !included.contains(a))
            .collect();
        package.sort_by_key(|&a| (depth[a], cands[a].seq));
        let add_bytes: usize = package.iter().map(|&a| cands[a].size).sum();
        if chosen.len() + package.len() > max_txs || bytes + add_bytes > max_bytes {
            continue;
        }
        for a in package {
            included.insert(a);
            chosen.push(a);
        }
        bytes += add_bytes;
    }
    Ok(chosen
        .into_iter()
        .map(|i| (cands[i].tx.clone(), cands[i].fee))
        .collect())
}

/// `i` and all its in-mempool ancestors.
fn ancestor_set(cands: &[Candidate], i: usize) -> Vec<usize> {
    let mut out = vec![i];
    let mut seen: HashSet<usize> = out.iter().copied().collect();
    let mut k = 0;
    while k < out.len() {
        for &p in &cands[out[k]].parents {
            if seen.insert(p) {
                out.push(p);
            }
        }
        k += 1;
    }
    out
}
