//! Read-side API of the [`Engine`]: everything here reads one consistent redb snapshot
//! and never waits for the writer. Writes (blocks, transactions, dev mining, rebuilds)
//! go through the writer thread in [`crate::engine`].
//!
//! - [`views`]: the shapes returned (serialised as-is by the HTTP API);
//! - [`chain`]: status, blocks, locators; [`txs`]: transactions and the mempool;
//!   [`address`]: balances, history, UTXOs; [`template`]: block templates;
//!   [`replay`]: the log replayed as notifications for reconnecting subscribers;
//!   [`storage`]: where the ledger file's bytes go, per table and per event kind.

mod address;
mod chain;
mod replay;
mod storage;
mod template;
mod txs;
mod views;

pub use storage::{LogKindUsage, StorageUsage, TableUsage};
pub(crate) use template::TemplateCache;
pub use views::*;
use views::{input_info, utxo_info};

use crate::address::Address;
use crate::block::Block;
use crate::encoding::{Decode, Encode};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::{Event, Record};
use crate::hash::Hash256;
use crate::merkle::MerkleProof;
use crate::mining::BlockTemplate;
use crate::notify::{unique_addresses, Notification, NotificationKind};
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

struct Snapshot {
    txn: ReadTransaction,
    /// The coin cache's layers this snapshot needs: changes to the cached tables it holds
    /// committed but not yet in redb's tables ([`coin_cache::visible`]), oldest first.
    coins: coin_cache::Stack,
}

impl Snapshot {
    /// An unspent output, from the coin cache's layers or the `utxo` table.
    fn utxo(&self, op: &OutPoint) -> Result<Option<UtxoEntry>, EngineError> {
        self.utxo_in(&self.table(UTXO)?, op)
    }

    /// [`Snapshot::utxo`] with the `utxo` table already open (a loop's lookups).
    fn utxo_in(
        &self,
        table: &ReadOnlyTable<Fixed<OUTPOINT_LEN>, Fixed<UTXO_LEN>>,
        op: &OutPoint,
    ) -> Result<Option<UtxoEntry>, EngineError> {
        Ok(coin_cache::utxo(&self.coins.utxo, table, &op.key())?)
    }

    /// Where a best-chain transaction sits (its `tx_index` row, through the coin cache).
    fn tx_location(&self, txid: &Hash256) -> Result<Option<TxLocation>, EngineError> {
        let index = self.table(TX_INDEX)?;
        let Some(at) = coin_cache::get(&self.coins.tx_index, &index, &txid.0)? else {
            return Ok(None);
        };
        Ok(Some(read::tx_location_at(
            &self.table(MAIN_CHAIN)?,
            txid,
            &at,
        )?))
    }

    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: redb::TableDefinition<K, V>,
    ) -> Result<ReadOnlyTable<K, V>, EngineError> {
        Ok(self.txn.open_table(def)?)
    }

    /// The pieces of the log's long records, for reading records with [`LOG`].
    fn log_chunks(&self) -> Result<Option<logtable::Chunks>, EngineError> {
        Ok(logtable::open_chunks(&self.txn)?)
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
        match read_record(&self.table(LOG)?, self.log_chunks()?.as_ref(), m.seq)?.event {
            Event::BlockAccepted(b) => {
                crate::store::integrity::check_block_meta(m, &b)?;
                Ok(Arc::unwrap_or_clone(b))
            }
            _ => Err(StoreError::corrupt(format!("record {} is not a block", m.seq)).into()),
        }
    }

    /// The block's log record, once the block in it is checked against its index row
    /// without decoding it (as [`Snapshot::block`] checks the decoded block), and where
    /// in the record the block's encoding starts.
    fn checked_block_record(&self, m: &BlockMeta) -> Result<(Vec<u8>, usize), EngineError> {
        let chunks = self.log_chunks()?;
        let bytes = logtable::get(&self.table(LOG)?, chunks.as_ref(), m.seq)?
            .ok_or_else(|| StoreError::corrupt(format!("log record {} is missing", m.seq)))?;
        let block = Record::block_bytes_of(&bytes)
            .ok_or_else(|| StoreError::corrupt(format!("record {} is not a block", m.seq)))?;
        crate::store::integrity::check_block_bytes(m, block)?;
        let start = bytes.len() - block.len();
        Ok((bytes, start))
    }

    /// The block's consensus encoding, cut from its checked log record.
    fn block_bytes(&self, m: &BlockMeta) -> Result<Vec<u8>, EngineError> {
        let (mut bytes, start) = self.checked_block_record(m)?;
        bytes.drain(..start);
        Ok(bytes)
    }

    /// A block's summary, from its index row once that row is checked against the log
    /// (no transaction is decoded: a page listing blocks of 10,000 used to decode each).
    fn info(&self, m: &BlockMeta, tip_height: u64) -> Result<BlockInfo, EngineError> {
        self.checked_block_record(m)?;
        self.summary(m, tip_height)
    }

    /// A block's summary from its index row alone, for a caller that checked the row
    /// against the log already.
    fn summary(&self, m: &BlockMeta, tip_height: u64) -> Result<BlockInfo, EngineError> {
        let main = self.on_main(m)?;
        Ok(BlockInfo {
            hash: m.hash,
            height: m.height,
            version: m.version,
            prev_hash: m.prev,
            merkle_root: m.merkle_root,
            time: m.time,
            bits: format!("{:08x}", m.bits.0),
            nonce: m.nonce,
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
    match (CompactTarget(0x1d00ffff).to_target(), bits.to_target()) {
        (Ok(one), Ok(t)) => u256_to_f64(one.0) / u256_to_f64(t.0),
        _ => 0.0,
    }
}

/// The nearest f64 (for figures shown to people: difficulty, hashrate).
pub(crate) fn u256_to_f64(v: U256) -> f64 {
    v.0.iter().rev().fold(0.0f64, |acc, limb| {
        acc * 18446744073709551616.0 + *limb as f64
    })
}

impl Engine {
    /// A consistent view: a redb read transaction and the coin cache's layers it needs,
    /// taken under the cache's read lock (a write-back holds it across its commit).
    fn snapshot(&self) -> Result<Snapshot, EngineError> {
        let db = self.shared.db()?;
        let (txn, layers) = {
            let cache = self.shared.coins.read().unwrap_or_else(|e| e.into_inner());
            (db.begin_read()?, cache.layers().to_vec())
        };
        let coins = if layers.is_empty() {
            coin_cache::Stack::default()
        } else {
            let meta = txn.open_table(PROJ_META)?;
            let cursor = read_proj_meta(&meta)?.cursor;
            let written = coin_cache::read_coins_cursor(&meta, cursor)?;
            coin_cache::visible(&layers, written, cursor)
        };
        Ok(Snapshot { txn, coins })
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}
