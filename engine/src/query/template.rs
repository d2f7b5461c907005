//! Block templates for miners, with the mempool selection cached until the log moves.

use super::*;

pub(crate) struct TemplateCache {
    cursor: u64,
    txs: Arc<Vec<(Transaction, u64)>>,
}

impl Engine {
    /// A block template paying `address`, with the given coinbase extra nonce.
    pub fn block_template(
        &self,
        address: Address,
        extra_nonce: Vec<u8>,
    ) -> Result<BlockTemplate, EngineError> {
        self.block_template_limited(address, extra_nonce, usize::MAX)
    }

    /// Like [`Engine::block_template`] with at most `max_txs` mempool transactions.
    pub fn block_template_limited(
        &self,
        address: Address,
        extra_nonce: Vec<u8>,
        max_txs: usize,
    ) -> Result<BlockTemplate, EngineError> {
        let s = self.snapshot()?;
        let meta = s.meta()?;
        let tip = s.tip()?;
        let index = s.table(BLOCK_INDEX)?;
        let bits = ancestor_bits(&index, &tip, self.params())?;
        let min_time = median_after(&index, &tip)? + 1;
        let time = (self.now().min(u32::MAX as u64) as u32).max(min_time);
        let selected = self.template_txs(&s, meta.cursor)?;
        // Selection order puts parents before children, so any prefix is valid.
        let kept = &selected[..selected.len().min(max_txs)];
        let height = tip.height + 1;
        let header = crate::header::BlockHeader {
            version: 1,
            prev_hash: tip.hash,
            merkle_root: Hash256::ZERO,
            time,
            bits,
            nonce: 0,
        };
        let coinbase = crate::mining::CoinbaseSpec {
            address,
            extra_nonce,
            reward: self.params().block_reward(height),
        };
        Ok(BlockTemplate::new(header, height, coinbase, kept, min_time))
    }

    /// The mempool transactions (with fees) a template carries, cached until the log moves.
    pub(super) fn template_txs(
        &self,
        s: &Snapshot,
        cursor: u64,
    ) -> Result<Arc<Vec<(Transaction, u64)>>, EngineError> {
        let mut cache = self
            .shared
            .template_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.as_ref().filter(|c| c.cursor == cursor) {
            return Ok(c.txs.clone());
        }
        let txs = Arc::new(crate::selection::select_for_block(
            &s.table(MEMPOOL)?,
            self.params(),
        )?);
        *cache = Some(TemplateCache {
            cursor,
            txs: txs.clone(),
        });
        Ok(txs)
    }
}
