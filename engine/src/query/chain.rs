//! Reads of the chain itself: status, blocks by height or hash, locators for peers.

use super::*;
use crate::header::BlockHeader;

/// Blocks the hashrate estimate looks back over (at most; fewer on a young chain).
pub const HASHRATE_WINDOW: u64 = 20;

/// Hashes per second implied by the work of the last [`HASHRATE_WINDOW`] blocks over
/// their time span.
///
/// Genesis never counts: its time is fixed in the parameters (days before a new chain's
/// first block), so a window reaching it measured the calendar, not the miners (a 60 MH/s
/// miner read as ~1 H/s). Block times are whole seconds and only loosely ordered, so the
/// span has a floor of one second per block: many blocks sharing a second cannot divide
/// the work by zero or one.
pub(super) fn hashrate(
    index: &impl ReadableTable<&'static [u8], &'static [u8]>,
    tip: &BlockMeta,
) -> Result<f64, EngineError> {
    // The window's base is a block whose time is already past: the work counted is
    // that of the blocks after it.
    let blocks = tip.height.saturating_sub(1).min(HASHRATE_WINDOW);
    if blocks == 0 {
        return Ok(0.0);
    }
    let base = crate::store::chainstate::ancestor(index, tip, blocks)?;
    Ok(work_per_second(
        tip.chainwork - base.chainwork,
        tip.time.saturating_sub(base.time),
        blocks,
    ))
}

/// What the side-chain budget counts now. A ledger that never had a write since the
/// side-block table was added has no such table: nothing counted yet.
fn side_chain_bytes(s: &Snapshot, tip: &BlockMeta) -> Result<u64, EngineError> {
    match s.txn.open_table(SIDE_BLOCKS) {
        Ok(side) => crate::engine::side_bytes_within_reach(&side, tip),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

impl Engine {
    /// [`side_chain_bytes`] for a snapshot whose log ends at `head`, summed once per log
    /// head (only a new record can change it; the last record's hash tells a record
    /// written again at the same position after a storage failure).
    fn cached_side_chain_bytes(
        &self,
        s: &Snapshot,
        tip: &BlockMeta,
        head: Head,
    ) -> Result<u64, EngineError> {
        let key = (head.next_seq, head.last_hash);
        let cache = &self.shared.side_bytes_cache;
        let lock = || cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, bytes)) = *lock() {
            if at == key {
                return Ok(bytes);
            }
        }
        let bytes = side_chain_bytes(s, tip)?;
        *lock() = Some((key, bytes));
        Ok(bytes)
    }
}

/// `work` hashes over `secs` seconds, the span floored at one second per block.
fn work_per_second(work: U256, secs: u32, blocks: u64) -> f64 {
    let span = u64::from(secs).max(blocks) as f64;
    u256_to_f64(work) / span
}

impl Engine {
    pub fn status(&self) -> Result<Status, EngineError> {
        let s = self.snapshot()?;
        let meta = s.meta()?;
        let tip = s.tip()?;
        let index = s.table(BLOCK_INDEX)?;
        let next_bits = ancestor_bits(&index, &tip, self.params())?;
        let head = read_head(&s.table(LOG_HEAD)?)?;
        Ok(Status {
            network: self.params().network,
            height: tip.height,
            best_hash: tip.hash,
            chainwork: u256_hex(&tip.chainwork),
            difficulty: difficulty(next_bits),
            bits: format!("{:08x}", next_bits.0),
            mempool_size: meta.mempool_count,
            utxo_count: meta.utxo_count,
            utxo_set_hash: hex::encode(meta.utxo_hash.to_big_endian()),
            genesis_hash: self.params().genesis_hash(),
            log_length: head.next_seq,
            tip_time: tip.time,
            median_time_past: median_after(&index, &tip)?,
            hashrate_estimate: hashrate(&index, &tip)?,
            side_chain_bytes: self.cached_side_chain_bytes(&s, &tip, head)?,
        })
    }

    /// The hash of the best-chain block at `height`.
    pub fn block_hash_at(&self, height: u64) -> Result<Option<Hash256>, EngineError> {
        Ok(read::main_hash_at(
            &self.snapshot()?.table(MAIN_CHAIN)?,
            height,
        )?)
    }

    /// A stored block (best chain or side branch) and what the index knows of it.
    pub fn block(&self, hash: &Hash256) -> Result<Option<(BlockInfo, Block)>, EngineError> {
        let s = self.snapshot()?;
        let Some(m) = s.block_meta(hash)? else {
            return Ok(None);
        };
        let tip = s.tip()?;
        // `block` checks the row against the decoded block: the summary needs no second read.
        let block = s.block(&m)?;
        Ok(Some((s.summary(&m, tip.height)?, block)))
    }

    /// A block's consensus encoding (what a peer fetches), read without decoding it.
    pub fn block_bytes(&self, hash: &Hash256) -> Result<Option<Vec<u8>>, EngineError> {
        let s = self.snapshot()?;
        match s.block_meta(hash)? {
            None => Ok(None),
            Some(m) => s.block_bytes(&m).map(Some),
        }
    }

    /// Best-chain blocks from height `from` upward (at most `limit`).
    pub fn blocks(&self, from: u64, limit: usize) -> Result<Vec<BlockInfo>, EngineError> {
        let s = self.snapshot()?;
        let tip = s.tip()?;
        let main = s.table(MAIN_CHAIN)?;
        let mut out = Vec::new();
        for row in main.range(from..)?.take(limit) {
            let (_, v) = row?;
            let hash = Hash256(
                v.value()
                    .try_into()
                    .map_err(|_| StoreError::corrupt("main chain row"))?,
            );
            let m = s
                .block_meta(&hash)?
                .ok_or_else(|| StoreError::corrupt("main block missing"))?;
            out.push(s.info(&m, tip.height)?);
        }
        Ok(out)
    }

    /// A block locator: the best chain's recent hashes, then exponentially sparser, ending
    /// at genesis. A peer finds the last one it shares.
    pub fn locator(&self) -> Result<Vec<Hash256>, EngineError> {
        let s = self.snapshot()?;
        let main = s.table(MAIN_CHAIN)?;
        let mut height = s.tip()?.height;
        let mut step = 1u64;
        let mut out = Vec::new();
        loop {
            if let Some(h) = read::main_hash_at(&main, height)? {
                out.push(h);
            }
            if height == 0 {
                break;
            }
            if out.len() >= 10 {
                step *= 2;
            }
            height = height.saturating_sub(step);
        }
        Ok(out)
    }

    /// Best-chain hashes after the first locator entry we share (at most `limit`).
    pub fn hashes_after(
        &self,
        locator: &[Hash256],
        limit: usize,
    ) -> Result<Vec<Hash256>, EngineError> {
        let s = self.snapshot()?;
        main_hashes_after(&s, locator, limit)
    }

    /// The headers of the blocks [`Engine::hashes_after`] names, in chain order: what a
    /// peer judges our chain by (linkage, proof of work, total work) before it fetches any
    /// body. Each is read from its block's log record without decoding the transactions,
    /// and checked against the block index.
    pub fn headers_after(
        &self,
        locator: &[Hash256],
        limit: usize,
    ) -> Result<Vec<BlockHeader>, EngineError> {
        let s = self.snapshot()?;
        let mut out = Vec::new();
        for hash in main_hashes_after(&s, locator, limit)? {
            let m = s
                .block_meta(&hash)?
                .ok_or_else(|| StoreError::corrupt("main block missing"))?;
            // The row, not the block: a damaged one is refused, never served.
            let header = m.header();
            if header.hash() != hash {
                return Err(StoreError::damaged(format!(
                    "the block index row of {hash} holds another header"
                ))
                .into());
            }
            out.push(header);
        }
        Ok(out)
    }

    /// Those of `hashes` whose blocks we do not store, in their order (one snapshot for
    /// all: sync asks this of every round's 2,000 headers).
    pub fn unknown_blocks(&self, hashes: &[Hash256]) -> Result<Vec<Hash256>, EngineError> {
        let s = self.snapshot()?;
        let mut unknown = Vec::new();
        for h in hashes {
            if s.block_meta(h)?.is_none() {
                unknown.push(*h);
            }
        }
        Ok(unknown)
    }

    /// The total chain work up to and including block `hash`, if we store it.
    pub fn chain_work_of(&self, hash: &Hash256) -> Result<Option<U256>, EngineError> {
        Ok(self.snapshot()?.block_meta(hash)?.map(|m| m.chainwork))
    }

    /// The total chain work of our best chain.
    pub fn tip_work(&self) -> Result<U256, EngineError> {
        Ok(self.snapshot()?.tip()?.chainwork)
    }
}

/// Up to `limit` best-chain hashes after the first `locator` entry on our best chain
/// (from genesis's child when none is).
fn main_hashes_after(
    s: &Snapshot,
    locator: &[Hash256],
    limit: usize,
) -> Result<Vec<Hash256>, EngineError> {
    let main = s.table(MAIN_CHAIN)?;
    let mut start = 0;
    for h in locator {
        if let Some(m) = s.block_meta(h)? {
            if s.on_main(&m)? {
                start = m.height + 1;
                break;
            }
        }
    }
    let mut out = Vec::new();
    for row in main.range(start..)?.take(limit) {
        let (_, v) = row?;
        out.push(Hash256(
            v.value()
                .try_into()
                .map_err(|_| StoreError::corrupt("main chain row"))?,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_over_the_span_of_the_window() {
        // 20 blocks of 2^32 hashes in 100 s.
        let rate = work_per_second(U256::from(20u64 << 32), 100, 20);
        assert_eq!(rate, (20u64 << 32) as f64 / 100.0);
    }

    #[test]
    fn regression_equal_timestamps_do_not_explode_the_estimate() {
        // 20 blocks in the same second count as 20 seconds, not 0 (or 1).
        let rate = work_per_second(U256::from(20_000u64), 0, 20);
        assert_eq!(rate, 1000.0);
        let rate = work_per_second(U256::from(20_000u64), 3, 20);
        assert_eq!(rate, 1000.0);
    }

    #[test]
    fn work_beyond_u64_is_counted() {
        let rate = work_per_second(U256::from(1u64) << 100, 1 << 20, 1);
        assert_eq!(rate, 2f64.powi(80));
    }
}
