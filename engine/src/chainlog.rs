//! What the node says about its chain in the log, written only after the change is
//! durable (a block that fails its signature gate after validation was never connected).
//!
//! The lines follow Bitcoin Core's `UpdateTip` so an operator reading a Core log feels at
//! home: one info line per connected tip (height, hash, transactions, log2 of the chain's
//! work, difficulty, block date), one per reorganisation (fork point, depth, transactions
//! returned to the mempool) before the new tip's line, and debug lines for every admitted
//! or refused transaction. Field names are the same in text and `--log-format json`.

use crate::hash::Hash256;
use crate::store::codec::BlockMeta;
use crate::{EngineError, Reject};
use primitive_types::U256;
use std::time::{Duration, UNIX_EPOCH};

/// What one committed block did to the best chain (built inside the write transaction,
/// logged after the commit).
#[derive(Debug)]
pub(crate) struct TipChange {
    pub tip: BlockMeta,
    pub mempool_size: u64,
    pub reorg: Option<Reorg>,
}

/// A reorganisation: the best chain went back to `fork_height` and then forward.
#[derive(Debug, Default)]
pub(crate) struct Reorg {
    pub fork_height: u64,
    pub fork_hash: Hash256,
    pub disconnected: usize,
    pub connected: usize,
    /// Transactions of the disconnected blocks put back into the mempool.
    pub returned_to_mempool: usize,
    /// Mempool transactions the new chain made invalid (dropped).
    pub invalidated: usize,
}

/// `log2(work)`, as Core prints it: the chain's cumulative work on a readable scale.
fn log2_work(work: U256) -> f64 {
    if work.is_zero() {
        return 0.0;
    }
    let bits = work.bits();
    // The top 64 bits carry all the precision an f64 can hold.
    let shift = bits.saturating_sub(64);
    let top = (work >> shift).low_u64() as f64;
    top.log2() + shift as f64
}

fn block_date(time: u32) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(time.into())).to_string()
}

/// Logs the reorganisation (if any), then the new tip.
pub(crate) fn tip_changed(change: &TipChange) {
    if let Some(r) = &change.reorg {
        tracing::info!(
            fork_height = r.fork_height,
            fork_hash = %r.fork_hash,
            depth = r.disconnected,
            connected = r.connected,
            returned_to_mempool = r.returned_to_mempool,
            invalidated = r.invalidated,
            "chain reorganisation: {} block(s) disconnected back to height {}, {} connected",
            r.disconnected,
            r.fork_height,
            r.connected
        );
    }
    let t = &change.tip;
    tracing::info!(
        height = t.height,
        hash = %t.hash,
        txs = t.tx_count,
        size = t.size,
        log2_work = format!("{:.6}", log2_work(t.chainwork)),
        difficulty = crate::query::difficulty(t.bits),
        date = %block_date(t.time),
        mempool = change.mempool_size,
        "UpdateTip: new best block at height {}",
        t.height
    );
}

/// A block stored on a side branch (it may become the best chain later).
pub(crate) fn side_chain_block(hash: &Hash256, height: u64) {
    tracing::info!(%hash, height, "block stored on a side chain (less work than the tip)");
}

/// A block refused after its header and body looked well-formed.
pub(crate) fn block_refused(hash: &Hash256, reject: &Reject) {
    tracing::info!(%hash, reason = %reject, class = ?reject.class(), "block refused");
}

/// Every transaction submission's outcome, at debug (a busy node admits thousands a
/// second; an operator turns it on with `RUST_LOG=debug`).
pub(crate) fn tx_outcome(txid: &Hash256, outcome: &Result<crate::TxAccepted, EngineError>) {
    match outcome {
        Ok(a) if a.duplicate => tracing::debug!(%txid, "transaction already known"),
        Ok(_) => tracing::debug!(%txid, "transaction admitted to the mempool"),
        Err(EngineError::Rejected(r)) => tx_refused(txid, r),
        Err(e) => tracing::debug!(%txid, error = %e, "transaction not admitted"),
    }
}

pub(crate) fn tx_refused(txid: &Hash256, reject: &Reject) {
    tracing::debug!(%txid, reason = %reject, class = ?reject.class(), "transaction refused");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_work_matches_the_exact_value_for_powers_and_sums() {
        assert_eq!(log2_work(U256::zero()), 0.0);
        assert_eq!(log2_work(U256::one()), 0.0);
        assert_eq!(log2_work(U256::from(1u64) << 200), 200.0);
        let three_halves = log2_work((U256::from(3u64) << 100) >> 1);
        assert!((three_halves - (100.0 + 1.5f64.log2())).abs() < 1e-12);
    }

    #[test]
    fn block_date_is_rfc3339_utc() {
        assert_eq!(block_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(block_date(1_796_212_454), "2026-12-02T11:54:14Z");
    }
}
