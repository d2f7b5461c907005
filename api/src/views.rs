//! The JSON shapes of the `/v1` API (docs/API.md), built from engine query results.
//! Separate from the engine's types so the HTTP contract is explicit and documented in
//! the OpenAPI schema.

use engine::encoding::Encode;
use engine::query::{AddressInfo, BlockInfo, Status, TxInfo};
use engine::{Block, Hash256, Transaction};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    /// `main` or `dev`.
    pub network: String,
    pub height: u64,
    pub best_hash: String,
    /// Cumulative work of the best chain, 64 hex digits.
    pub chainwork: String,
    /// Bitcoin-style difficulty of the next block.
    pub difficulty: f64,
    pub mempool_size: u64,
    pub utxo_count: u64,
    pub utxo_set_hash: String,
    pub genesis_hash: String,
    /// Compact target of the next block, 8 hex digits.
    pub bits: String,
    /// Dev routes are enabled.
    pub dev: bool,
    pub log_length: u64,
    pub tip_time: u32,
    pub median_time_past: u32,
    pub hashrate_estimate: f64,
    /// Bytes of stored blocks off the best chain within reach of the tip (what
    /// `--max-side-chain-mb` bounds).
    pub side_chain_bytes: u64,
}

impl StatusView {
    pub fn new(s: Status, dev: bool) -> StatusView {
        StatusView {
            network: s.network.to_string(),
            height: s.height,
            best_hash: s.best_hash.to_string(),
            chainwork: s.chainwork,
            difficulty: s.difficulty,
            mempool_size: s.mempool_size,
            utxo_count: s.utxo_count,
            utxo_set_hash: s.utxo_set_hash,
            genesis_hash: s.genesis_hash.to_string(),
            bits: s.bits,
            dev,
            log_length: s.log_length,
            tip_time: s.tip_time,
            median_time_past: s.median_time_past,
            hashrate_estimate: s.hashrate_estimate,
            side_chain_bytes: s.side_chain_bytes,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BlockSummary {
    pub hash: String,
    pub height: u64,
    pub prev_hash: String,
    pub time: u32,
    pub bits: String,
    pub nonce: u32,
    pub tx_count: u32,
    pub size: u32,
}

impl From<&BlockInfo> for BlockSummary {
    fn from(b: &BlockInfo) -> Self {
        BlockSummary {
            hash: b.hash.to_string(),
            height: b.height,
            prev_hash: b.prev_hash.to_string(),
            time: b.time,
            bits: b.bits.clone(),
            nonce: b.nonce,
            tx_count: b.tx_count,
            size: b.size,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct HeaderView {
    pub version: u32,
    pub prev_hash: String,
    pub merkle_root: String,
    pub time: u32,
    pub bits: String,
    pub nonce: u32,
}

#[derive(Serialize, ToSchema)]
pub struct BlockView {
    pub hash: String,
    pub height: u64,
    pub header: HeaderView,
    /// 1 for the tip; 0 when the block is on a side branch.
    pub confirmations: u64,
    pub main_chain: bool,
    pub size: u32,
    pub tx_count: u32,
    pub chainwork: String,
    /// One page of the transactions: `tx_count` is the block's total, `tx_offset` the
    /// index of `txs[0]`.
    pub txs: Vec<TxView>,
    pub tx_offset: u64,
    /// Where the next page starts (`?offset=`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

impl BlockView {
    pub fn new(
        info: &BlockInfo,
        block: &Block,
        txs: Vec<TxView>,
        tx_offset: u64,
        next_offset: Option<u64>,
    ) -> BlockView {
        BlockView {
            hash: info.hash.to_string(),
            height: info.height,
            header: HeaderView {
                version: block.header.version,
                prev_hash: block.header.prev_hash.to_string(),
                merkle_root: block.header.merkle_root.to_string(),
                time: block.header.time,
                bits: format!("{:08x}", block.header.bits.0),
                nonce: block.header.nonce,
            },
            confirmations: info.confirmations,
            main_chain: info.main_chain,
            size: info.size,
            tx_count: info.tx_count,
            chainwork: info.chainwork.clone(),
            txs,
            tx_offset,
            next_offset,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct InputView {
    /// Txid of the output spent.
    pub txid: String,
    pub vout: u32,
    pub address: String,
    /// Amount of the output spent; null when unknown (side-branch blocks).
    pub amount: Option<u64>,
    /// ed25519 public key, 64 hex.
    pub public_key: String,
}

#[derive(Serialize, ToSchema)]
pub struct OutputView {
    pub address: String,
    pub amount: u64,
}

#[derive(Serialize, ToSchema)]
pub struct MerkleProofView {
    pub index: u32,
    /// Sibling hashes, leaf upward, hex in internal byte order.
    pub branch: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TxView {
    pub txid: String,
    pub coinbase: bool,
    pub inputs: Vec<InputView>,
    pub outputs: Vec<OutputView>,
    /// Inputs minus outputs; null for a coinbase or when unknown.
    pub fee: Option<u64>,
    pub size: usize,
    /// Full consensus encoding.
    pub hex: String,
    pub block_hash: Option<String>,
    pub height: Option<u64>,
    pub confirmations: u64,
    pub in_mempool: bool,
    pub merkle_proof: Option<MerkleProofView>,
}

fn inputs_of(tx: &Transaction, amounts: &[Option<u64>]) -> Vec<InputView> {
    tx.spends()
        .iter()
        .enumerate()
        .map(|(i, input)| InputView {
            txid: input.prevout.txid.to_string(),
            vout: input.prevout.vout,
            address: engine::Address::from_public_key(&input.public_key).to_string(),
            amount: amounts.get(i).copied().flatten(),
            public_key: hex::encode(input.public_key),
        })
        .collect()
}

fn outputs_of(tx: &Transaction) -> Vec<OutputView> {
    tx.outputs
        .iter()
        .map(|o| OutputView {
            address: o.address.to_string(),
            amount: o.amount,
        })
        .collect()
}

impl From<TxInfo> for TxView {
    fn from(t: TxInfo) -> Self {
        let amounts: Vec<Option<u64>> = t.inputs.iter().map(|i| i.amount).collect();
        TxView {
            txid: t.txid.to_string(),
            coinbase: t.coinbase,
            inputs: inputs_of(&t.tx, &amounts),
            outputs: outputs_of(&t.tx),
            fee: t.fee,
            size: t.size,
            hex: hex::encode(t.tx.encode()),
            block_hash: t.block_hash.map(|h| h.to_string()),
            height: t.height,
            confirmations: t.confirmations,
            in_mempool: t.in_mempool,
            merkle_proof: t.merkle_proof.map(|p| MerkleProofView {
                index: p.index,
                branch: p.branch.iter().map(|h| hex::encode(h.0)).collect(),
            }),
        }
    }
}

impl TxView {
    /// A transaction of a block off the best chain: what the block alone tells.
    pub fn bare(tx: &Transaction, block: Option<(Hash256, u64)>) -> TxView {
        TxView {
            txid: tx.txid().to_string(),
            coinbase: tx.is_coinbase(),
            inputs: inputs_of(tx, &[]),
            outputs: outputs_of(tx),
            fee: None,
            size: tx.size(),
            hex: hex::encode(tx.encode()),
            block_hash: block.map(|b| b.0.to_string()),
            height: block.map(|b| b.1),
            confirmations: 0,
            in_mempool: false,
            merkle_proof: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UtxoView {
    pub txid: String,
    pub vout: u32,
    pub amount: u64,
    /// null for an output of a mempool transaction.
    pub height: Option<u64>,
    pub coinbase: bool,
    pub mature: bool,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryView {
    pub txid: String,
    pub height: Option<u64>,
    pub delta: i64,
}

#[derive(Serialize, ToSchema)]
pub struct AddressView {
    pub address: String,
    /// Spendable confirmed units (mature).
    pub confirmed: u64,
    /// Net change from mempool transactions (may be negative).
    pub unconfirmed: i64,
    /// Coinbase outputs not yet mature.
    pub immature: u64,
    pub utxos: Vec<UtxoView>,
    pub history: Vec<HistoryView>,
}

impl From<AddressInfo> for AddressView {
    fn from(a: AddressInfo) -> Self {
        AddressView {
            address: a.address.to_string(),
            confirmed: a.confirmed,
            unconfirmed: a.unconfirmed,
            immature: a.immature,
            utxos: a
                .utxos
                .iter()
                .map(|u| UtxoView {
                    txid: u.txid.to_string(),
                    vout: u.vout,
                    amount: u.amount,
                    height: u.height,
                    coinbase: u.coinbase,
                    mature: u.mature,
                })
                .collect(),
            history: a
                .history
                .iter()
                .map(|h| HistoryView {
                    txid: h.txid.to_string(),
                    height: h.height,
                    delta: h.delta,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MempoolView {
    pub txid: String,
    pub fee: u64,
    pub size: usize,
    /// Units per 1000 bytes.
    pub fee_rate: u64,
    /// Unix seconds when it entered this node's mempool (0 if before the log kept times).
    pub time: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TxAcceptedView {
    pub txid: String,
    /// It was already in the mempool or the chain: nothing new was written.
    pub duplicate: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateView {
    pub job_id: String,
    pub height: u64,
    pub version: u32,
    pub prev_hash: String,
    pub bits: String,
    pub time: u32,
    /// Earliest allowed block time.
    pub min_time: u32,
    /// 64 hex, display order (big-endian).
    pub target: String,
    /// The 80 header bytes (nonce 0, extra_nonce2 zeros), 160 hex.
    pub header: String,
    /// Coinbase body up to and including extranonce1.
    pub coinb1: String,
    pub coinb2: String,
    /// The node-chosen extranonce1 (already inside coinb1).
    pub extra_nonce1: String,
    /// Bytes of extra_nonce2 the miner supplies.
    pub extra_nonce_size: usize,
    /// Hex, internal byte order.
    pub merkle_branch: Vec<String>,
    pub tx_count: usize,
    pub reward: u64,
    pub fees: u64,
}

#[derive(Serialize, ToSchema)]
pub struct SubmitView {
    pub accepted: bool,
    pub hash: String,
    pub height: u64,
    /// `connected`, `reorganized`, `side_chain` or `duplicate`.
    pub outcome: String,
}
