//! Read-side API of the [`Engine`]: everything here reads one consistent redb snapshot
//! and never waits for the writer.

use crate::address::Address;
use crate::block::Block;
use crate::encoding::{Decode, Encode};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::{Event, Record};
use crate::hash::Hash256;
use crate::merkle::MerkleProof;
use crate::mining::BlockTemplate;
use crate::notify::{push_unique, Notification, NotificationKind};
use crate::params::Network;
use crate::pow::{u256_hex, CompactTarget};
use crate::store::chainstate::{ancestor_bits, median_after};
use crate::store::codec::*;
use crate::store::*;
use crate::tx::{OutPoint, Transaction};
use primitive_types::U256;
use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable};
use serde::Serialize;
use std::sync::Arc;

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
    /// Hashes per second implied by the last blocks' work and times.
    pub hashrate_estimate: f64,
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
}

pub(crate) struct TemplateCache {
    cursor: u64,
    txs: Arc<Vec<(Transaction, u64)>>,
}

struct Snapshot {
    txn: ReadTransaction,
}

impl Snapshot {
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: redb::TableDefinition<K, V>,
    ) -> Result<ReadOnlyTable<K, V>, EngineError> {
        Ok(self.txn.open_table(def)?)
    }

    fn meta(&self) -> Result<ProjMeta, EngineError> {
        Ok(read_proj_meta(&self.table(PROJ_META)?)?)
    }

    fn block_meta(&self, hash: &Hash256) -> Result<Option<BlockMeta>, EngineError> {
        Ok(read::block_meta(&self.table(BLOCK_INDEX)?, hash)?)
    }

    fn tip(&self) -> Result<BlockMeta, EngineError> {
        let meta = self.meta()?;
        Ok(self
            .block_meta(&meta.tip)?
            .ok_or_else(|| StoreError::corrupt("tip missing"))?)
    }

    fn on_main(&self, m: &BlockMeta) -> Result<bool, EngineError> {
        Ok(read::main_hash_at(&self.table(MAIN_CHAIN)?, m.height)? == Some(m.hash))
    }

    fn block(&self, m: &BlockMeta) -> Result<Block, EngineError> {
        match read_record(&self.table(LOG)?, m.seq)?.event {
            Event::BlockAccepted(b) => Ok(Arc::unwrap_or_clone(b)),
            _ => Err(StoreError::corrupt(format!("record {} is not a block", m.seq)).into()),
        }
    }

    fn info(&self, m: &BlockMeta, tip_height: u64) -> Result<BlockInfo, EngineError> {
        let block = self.block(m)?;
        let main = self.on_main(m)?;
        Ok(BlockInfo {
            hash: m.hash,
            height: m.height,
            version: block.header.version,
            prev_hash: m.prev,
            merkle_root: block.header.merkle_root,
            time: m.time,
            bits: format!("{:08x}", m.bits.0),
            nonce: block.header.nonce,
            tx_count: m.tx_count,
            size: m.size,
            chainwork: u256_hex(&m.chainwork),
            main_chain: main,
            confirmations: if main { tip_height - m.height + 1 } else { 0 },
        })
    }
}

/// Bitcoin's difficulty: the difficulty-1 target over this target.
pub fn difficulty(bits: CompactTarget) -> f64 {
    let to_f = |v: U256| {
        v.0.iter().rev().fold(0.0f64, |acc, limb| {
            acc * 18446744073709551616.0 + *limb as f64
        })
    };
    match (CompactTarget(0x1d00ffff).to_target(), bits.to_target()) {
        (Ok(one), Ok(t)) => to_f(one.0) / to_f(t.0),
        _ => 0.0,
    }
}

impl Engine {
    fn snapshot(&self) -> Result<Snapshot, EngineError> {
        Ok(Snapshot {
            txn: self.shared.db()?.begin_read()?,
        })
    }

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
        Ok(Some((s.info(&m, tip.height)?, s.block(&m)?)))
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

    /// A transaction from the best chain or the mempool, with its merkle proof.
    pub fn transaction(&self, txid: &Hash256) -> Result<Option<TxInfo>, EngineError> {
        let s = self.snapshot()?;
        if let Some(loc) = read::tx_location(&s.table(TX_INDEX)?, txid)? {
            return self.confirmed_tx(&s, txid, loc).map(Some);
        }
        let Some((tx, fee)) = read::mempool_tx(&s.table(MEMPOOL)?, txid)? else {
            return Ok(None);
        };
        let utxo = s.table(UTXO)?;
        let mempool = s.table(MEMPOOL)?;
        let inputs = tx
            .spends()
            .iter()
            .map(|i| {
                let amount = read::utxo(&utxo, &i.prevout)
                    .ok()
                    .flatten()
                    .map(|e| e.amount)
                    .or_else(|| {
                        read::mempool_tx(&mempool, &i.prevout.txid)
                            .ok()
                            .flatten()
                            .and_then(|(p, _)| {
                                p.outputs.get(i.prevout.vout as usize).map(|o| o.amount)
                            })
                    });
                input_info(i, amount)
            })
            .collect();
        Ok(Some(TxInfo {
            txid: *txid,
            coinbase: false,
            inputs,
            fee: Some(fee),
            size: tx.encode().len(),
            tx,
            block_hash: None,
            height: None,
            position: None,
            confirmations: 0,
            in_mempool: true,
            merkle_proof: None,
        }))
    }

    fn confirmed_tx(
        &self,
        s: &Snapshot,
        txid: &Hash256,
        loc: TxLocation,
    ) -> Result<TxInfo, EngineError> {
        let m = s
            .block_meta(&loc.block)?
            .ok_or_else(|| StoreError::corrupt("tx block missing"))?;
        let block = s.block(&m)?;
        let pos = loc.position as usize;
        let tx = block
            .txs
            .get(pos)
            .cloned()
            .ok_or_else(|| StoreError::corrupt("tx position"))?;
        let undo = s
            .table(UNDO)?
            .get(loc.block.0.as_slice())?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        let skip: usize = block.txs[..pos].iter().map(|t| t.spends().len()).sum();
        let row = 36 + UtxoEntry::LEN;
        let amounts: Vec<Option<u64>> = (0..tx.spends().len())
            .map(|j| {
                let at = (skip + j) * row + 36;
                undo.get(at..at + UtxoEntry::LEN)
                    .and_then(UtxoEntry::decode)
                    .map(|e| e.amount)
            })
            .collect();
        let inputs: Vec<InputInfo> = tx
            .spends()
            .iter()
            .zip(&amounts)
            .map(|(i, a)| input_info(i, *a))
            .collect();
        let fee = if tx.is_coinbase() {
            None
        } else {
            amounts
                .iter()
                .try_fold(0u64, |acc, a| acc.checked_add((*a)?))
                .and_then(|total| total.checked_sub(tx.output_total()?))
        };
        let tip = s.tip()?;
        Ok(TxInfo {
            txid: *txid,
            coinbase: tx.is_coinbase(),
            inputs,
            fee,
            size: tx.encode().len(),
            block_hash: Some(loc.block),
            height: Some(loc.height),
            position: Some(loc.position),
            confirmations: tip.height - loc.height + 1,
            in_mempool: false,
            merkle_proof: MerkleProof::build(&block.txids(), pos),
            tx,
        })
    }

    /// Balances, spendable outputs and history of an address.
    pub fn address(
        &self,
        address: &Address,
        history_limit: usize,
    ) -> Result<AddressInfo, EngineError> {
        let s = self.snapshot()?;
        let tip = s.tip()?;
        let next_height = tip.height + 1;
        let maturity = self.params().coinbase_maturity;
        let utxo = s.table(UTXO)?;
        let spends = s.table(MEMPOOL_SPENDS)?;
        let mempool = s.table(MEMPOOL)?;
        let (mut confirmed, mut immature) = (0u64, 0u64);
        let mut utxos = Vec::new();
        let prefix = address.0;
        for row in s.table(ADDR_UTXO)?.range(prefix.as_slice()..)? {
            let (k, _) = row?;
            let k = k.value();
            if k[..20] != prefix {
                break;
            }
            let op =
                OutPoint::from_key(&k[20..]).ok_or_else(|| StoreError::corrupt("addr utxo key"))?;
            let e = read::utxo(&utxo, &op)?
                .ok_or_else(|| StoreError::corrupt("addr utxo without utxo"))?;
            let mature = !e.coinbase || next_height >= e.height + maturity;
            if mature {
                confirmed = confirmed.saturating_add(e.amount);
            } else {
                immature = immature.saturating_add(e.amount);
            }
            if mature && spends.get(op.key().as_slice())?.is_none() {
                utxos.push(utxo_info(op, &e, Some(e.height), true));
            }
        }
        if cfg!(debug_assertions) {
            // Invariant: the balance projection is the sum of the address's outputs
            // (it is folded per block, the outputs per transaction).
            let balance = s
                .table(BALANCE)?
                .get(prefix.as_slice())?
                .map_or(0, |v| v.value());
            assert_eq!(
                balance,
                confirmed + immature,
                "balance projection of {address} disagrees with its outputs"
            );
        }
        let mut unconfirmed: i128 = 0;
        let mut history = Vec::new();
        for row in s.table(MEMPOOL_ADDR)?.range(prefix.as_slice()..)? {
            let (k, _) = row?;
            let k = k.value();
            if k[..20] != prefix {
                break;
            }
            let txid = Hash256(
                k[20..52]
                    .try_into()
                    .map_err(|_| StoreError::corrupt("mempool addr key"))?,
            );
            let Some((tx, _)) = read::mempool_tx(&mempool, &txid)? else {
                continue;
            };
            let mut delta: i128 = 0;
            for input in tx.spends() {
                if Address::from_public_key(&input.public_key) == *address {
                    let amount =
                        read::utxo(&utxo, &input.prevout)?
                            .map(|e| e.amount)
                            .or(read::mempool_tx(&mempool, &input.prevout.txid)?.and_then(
                                |(p, _)| {
                                    p.outputs.get(input.prevout.vout as usize).map(|o| o.amount)
                                },
                            ));
                    delta -= amount.unwrap_or(0) as i128;
                }
            }
            for (vout, out) in tx.outputs.iter().enumerate() {
                if out.address != *address {
                    continue;
                }
                delta += out.amount as i128;
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                if spends.get(op.key().as_slice())?.is_none() {
                    let e = UtxoEntry {
                        amount: out.amount,
                        address: out.address,
                        height: 0,
                        coinbase: false,
                    };
                    utxos.push(utxo_info(op, &e, None, true));
                }
            }
            unconfirmed += delta;
            history.push(HistoryItem {
                txid,
                height: None,
                delta: clamp_i64(delta),
            });
        }
        let hist = s.table(ADDR_HISTORY)?;
        let mut end = prefix.to_vec();
        end.extend_from_slice(&[0xff; 12]);
        for row in hist.range(prefix.as_slice()..=end.as_slice())?.rev() {
            if history.len() >= history_limit {
                break;
            }
            let (k, v) = row?;
            let height = u64::from_be_bytes(
                k.value()[20..28]
                    .try_into()
                    .map_err(|_| StoreError::corrupt("history key"))?,
            );
            let (txid, delta) = decode_history_value(v.value())
                .ok_or_else(|| StoreError::corrupt("history row"))?;
            history.push(HistoryItem {
                txid,
                height: Some(height),
                delta,
            });
        }
        history.truncate(history_limit);
        Ok(AddressInfo {
            address: *address,
            confirmed,
            unconfirmed: clamp_i64(unconfirmed),
            immature,
            utxos,
            history,
        })
    }

    /// Mempool transactions, highest fee rate first.
    pub fn mempool(&self, limit: usize) -> Result<Vec<MempoolEntry>, EngineError> {
        let s = self.snapshot()?;
        let mut out = Vec::new();
        for row in s.table(MEMPOOL)?.iter()? {
            let (k, v) = row?;
            let (seq, fee, bytes) = decode_mempool_value(v.value())
                .ok_or_else(|| StoreError::corrupt("mempool row"))?;
            out.push(MempoolEntry {
                txid: Hash256(
                    k.value()
                        .try_into()
                        .map_err(|_| StoreError::corrupt("mempool key"))?,
                ),
                fee,
                size: bytes.len(),
                fee_rate: (fee as u128 * 1000 / bytes.len().max(1) as u128) as u64,
                seq,
            });
        }
        out.sort_by(|a, b| b.fee_rate.cmp(&a.fee_rate).then(a.seq.cmp(&b.seq)));
        out.truncate(limit);
        Ok(out)
    }

    /// A page of the UTXO set in key order, starting after `after`.
    pub fn utxos(
        &self,
        after: Option<OutPoint>,
        limit: usize,
    ) -> Result<Vec<UtxoInfo>, EngineError> {
        let s = self.snapshot()?;
        let tip = s.tip()?;
        let t = s.table(UTXO)?;
        let start = after.map(|o| o.key().to_vec()).unwrap_or_default();
        let mut out = Vec::new();
        for row in t.range(start.as_slice()..)? {
            let (k, v) = row?;
            let op =
                OutPoint::from_key(k.value()).ok_or_else(|| StoreError::corrupt("utxo key"))?;
            if Some(op) == after {
                continue;
            }
            let e = UtxoEntry::decode(v.value()).ok_or_else(|| StoreError::corrupt("utxo row"))?;
            let mature =
                !e.coinbase || tip.height + 1 >= e.height + self.params().coinbase_maturity;
            out.push(utxo_info(op, &e, Some(e.height), mature));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

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
    fn template_txs(
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

    /// Notifications for every record after `after_seq` (for clients reconnecting with
    /// Last-Event-ID), at most `limit`.
    pub fn notifications_since(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Notification>, EngineError> {
        let s = self.snapshot()?;
        let log = s.table(LOG)?;
        let index = s.table(BLOCK_INDEX)?;
        let mut out = Vec::new();
        for row in log.range(after_seq.saturating_add(1)..)?.take(limit) {
            let (_, v) = row?;
            let record =
                Record::decode(v.value()).map_err(|e| StoreError::corrupt(e.to_string()))?;
            out.push(note_for(&s, &index, record)?);
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

    /// Checks the log's hash chain and compares every projection with a fresh rebuild.
    pub fn verify(&self) -> Result<crate::recovery::VerifyReport, EngineError> {
        crate::recovery::verify(&*self.shared.db()?, None)
    }

    /// Like [`Engine::verify`], rebuilding in two commits split at log record `checkpoint`
    /// (what a rebuild resumed after a crash does).
    pub fn verify_with_checkpoint(
        &self,
        checkpoint: u64,
    ) -> Result<crate::recovery::VerifyReport, EngineError> {
        crate::recovery::verify(&*self.shared.db()?, Some(checkpoint))
    }

    /// Dev mode: builds a template with up to `max_txs` mempool transactions, mines it on
    /// this CPU and submits it.
    pub fn mine_block(
        &self,
        address: Address,
        max_txs: Option<usize>,
    ) -> Result<crate::engine::BlockAccepted, EngineError> {
        let template =
            self.block_template_limited(address, Vec::new(), max_txs.unwrap_or(usize::MAX))?;
        self.submit_block(template.mine_cpu())
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn input_info(i: &crate::tx::TxIn, amount: Option<u64>) -> InputInfo {
    InputInfo {
        txid: i.prevout.txid,
        vout: i.prevout.vout,
        address: Address::from_public_key(&i.public_key),
        amount,
    }
}

fn utxo_info(op: OutPoint, e: &UtxoEntry, height: Option<u64>, mature: bool) -> UtxoInfo {
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

fn hashrate(
    index: &impl ReadableTable<&'static [u8], &'static [u8]>,
    tip: &BlockMeta,
) -> Result<f64, EngineError> {
    let span = tip.height.min(20);
    if span == 0 {
        return Ok(0.0);
    }
    let base = crate::store::chainstate::ancestor(index, tip, span)?;
    let secs = tip.time.saturating_sub(base.time).max(1) as f64;
    let work = tip.chainwork - base.chainwork;
    let work_f = work
        .0
        .iter()
        .rev()
        .fold(0.0f64, |acc, l| acc * 18446744073709551616.0 + *l as f64);
    Ok(work_f / secs)
}

/// Re-derives the notification of one log record (for Last-Event-ID replays). Removals
/// carry no addresses here (the removed transaction is not in the record).
fn note_for(
    s: &Snapshot,
    index: &impl ReadableTable<&'static [u8], &'static [u8]>,
    record: Record,
) -> Result<Notification, EngineError> {
    let seq = record.seq;
    let height_of = |h: &Hash256| -> Result<u64, EngineError> {
        Ok(read::block_meta(index, h)?.map(|m| m.height).unwrap_or(0))
    };
    let block_addresses = |h: &Hash256| -> Result<(Vec<Address>, Vec<Hash256>), EngineError> {
        let Some(m) = read::block_meta(index, h)? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let b = s.block(&m)?;
        let mut a = Vec::new();
        for tx in &b.txs {
            tx.spends()
                .iter()
                .for_each(|i| push_unique(&mut a, Address::from_public_key(&i.public_key)));
            tx.outputs
                .iter()
                .for_each(|o| push_unique(&mut a, o.address));
        }
        Ok((a, b.txids()))
    };
    let (kind, addresses) = match record.event {
        Event::BlockAccepted(b) => {
            let hash = b.hash();
            (
                NotificationKind::BlockStored {
                    hash,
                    height: height_of(&hash)?,
                },
                Vec::new(),
            )
        }
        Event::TipConnected(hash) => {
            let (a, txids) = block_addresses(&hash)?;
            (
                NotificationKind::BlockConnected {
                    hash,
                    height: height_of(&hash)?,
                    txids,
                },
                a,
            )
        }
        Event::TipDisconnected(hash) => {
            let (a, _) = block_addresses(&hash)?;
            (
                NotificationKind::BlockDisconnected {
                    hash,
                    height: height_of(&hash)?,
                },
                a,
            )
        }
        Event::TxAdmitted(tx) => {
            let mut a = Vec::new();
            tx.spends()
                .iter()
                .for_each(|i| push_unique(&mut a, Address::from_public_key(&i.public_key)));
            tx.outputs
                .iter()
                .for_each(|o| push_unique(&mut a, o.address));
            let fee = read::mempool_tx(&s.table(MEMPOOL)?, &tx.txid())?
                .map(|(_, f)| f)
                .unwrap_or(0);
            (
                NotificationKind::TxAdded {
                    txid: tx.txid(),
                    fee,
                },
                a,
            )
        }
        Event::TxRemoved { txid, reason } => {
            (NotificationKind::TxRemoved { txid, reason }, Vec::new())
        }
        Event::Reset => (NotificationKind::Reset, Vec::new()),
    };
    Ok(Notification {
        seq,
        kind,
        addresses,
    })
}
