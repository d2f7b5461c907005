//! The shapes reads return: what the HTTP API serialises (field names are part of the API).

use super::*;

/// The node's state at a glance. Field names are part of the HTTP API.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub network: Network,
    pub height: u64,
    pub best_hash: Hash256,
    /// Cumulative work of the best chain, 64 hex digits.
    pub chainwork: String,
    /// Bitcoin-style difficulty of the next block (1.0 = target 0x1d00ffff).
    pub difficulty: f64,
    pub bits: String,
    pub mempool_size: u64,
    pub utxo_count: u64,
    /// Order-independent hash of the whole UTXO set (equal sets, equal hashes).
    pub utxo_set_hash: String,
    pub genesis_hash: Hash256,
    /// Records in the event log.
    pub log_length: u64,
    pub tip_time: u32,
    pub median_time_past: u32,
    /// Hashes per second: the work of the last 20 blocks (genesis never) over their time
    /// span, floored at one second per block.
    pub hashrate_estimate: f64,
    /// Bytes of stored blocks off the best chain within reach of the tip: what the
    /// side-chain budget (`EngineConfig::max_side_chain_bytes`) counts.
    pub side_chain_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BlockInfo {
    pub hash: Hash256,
    pub height: u64,
    pub version: u32,
    pub prev_hash: Hash256,
    pub merkle_root: Hash256,
    pub time: u32,
    pub bits: String,
    pub nonce: u32,
    pub tx_count: u32,
    pub size: u32,
    pub chainwork: String,
    pub main_chain: bool,
    /// 1 for the tip, 0 off the best chain.
    pub confirmations: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct InputInfo {
    pub txid: Hash256,
    pub vout: u32,
    pub address: Address,
    pub amount: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TxInfo {
    pub txid: Hash256,
    pub tx: Transaction,
    pub coinbase: bool,
    pub inputs: Vec<InputInfo>,
    pub fee: Option<u64>,
    pub size: usize,
    pub block_hash: Option<Hash256>,
    pub height: Option<u64>,
    pub position: Option<u32>,
    pub confirmations: u64,
    pub in_mempool: bool,
    pub merkle_proof: Option<MerkleProof>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UtxoInfo {
    pub txid: Hash256,
    pub vout: u32,
    pub amount: u64,
    pub address: Address,
    /// None for an output of a mempool transaction.
    pub height: Option<u64>,
    pub coinbase: bool,
    pub mature: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct HistoryItem {
    pub txid: Hash256,
    pub height: Option<u64>,
    pub delta: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AddressInfo {
    pub address: Address,
    /// Mature confirmed units.
    pub confirmed: u64,
    /// Unconfirmed net change from the mempool.
    pub unconfirmed: i64,
    /// Confirmed coinbase outputs not yet mature.
    pub immature: u64,
    /// What the address can spend now: mature confirmed outputs and mempool outputs,
    /// minus those a mempool transaction already spends.
    pub utxos: Vec<UtxoInfo>,
    /// Newest first: mempool transactions, then confirmed ones.
    pub history: Vec<HistoryItem>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MempoolEntry {
    pub txid: Hash256,
    pub fee: u64,
    pub size: usize,
    /// Units per 1000 bytes.
    pub fee_rate: u64,
    pub seq: u64,
    /// Unix seconds when it entered the mempool (0 if admitted before log records kept
    /// their time).
    pub time: u64,
}

pub(super) fn input_info(i: &crate::tx::TxIn, amount: Option<u64>) -> InputInfo {
    InputInfo {
        txid: i.prevout.txid,
        vout: i.prevout.vout,
        address: Address::from_public_key(&i.public_key),
        amount,
    }
}

pub(super) fn utxo_info(
    op: OutPoint,
    e: &UtxoEntry,
    height: Option<u64>,
    mature: bool,
) -> UtxoInfo {
    UtxoInfo {
        txid: op.txid,
        vout: op.vout,
        amount: e.amount,
        address: e.address,
        height,
        coinbase: e.coinbase,
        mature,
    }
}
