//! Blocks made by hand at the easiest target, for tests that push what no honest node
//! would mine: invalid, orphaned or competing blocks.

use engine::{Block, BlockHeader, CompactTarget, Hash256, Transaction, TxOut};

/// `header` with a nonce that meets its target (a couple of hashes at the easiest one).
pub fn solve(mut header: BlockHeader) -> BlockHeader {
    while !header.meets_target() {
        header.nonce += 1;
    }
    header
}

/// A solved block on `prev` at `height`: a coinbase tagged `tag` paying `payout`, then
/// `txs`, merkle root computed.
pub fn block(
    prev: Hash256,
    height: u64,
    time: u32,
    tag: &[u8],
    payout: Vec<TxOut>,
    txs: Vec<Transaction>,
) -> Block {
    let mut all = vec![Transaction::coinbase(height, tag.to_vec(), payout)];
    all.extend(txs);
    let ids: Vec<Hash256> = all.iter().map(Transaction::txid).collect();
    let header = solve(BlockHeader {
        version: 1,
        prev_hash: prev,
        merkle_root: engine::merkle::merkle_root(&ids).0,
        time,
        bits: CompactTarget::EASIEST,
        nonce: 0,
    });
    Block { header, txs: all }
}
