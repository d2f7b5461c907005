//! Storage: the append-only event log and the projections folded from it, in one redb
//! file.
//!
//! Layers, bottom up: [`codec`] (byte layouts of projection rows), this module (table
//! definitions, opening, the write-side [`Tables`] that appends and folds in one
//! transaction), [`fold`] (how each event changes the projections), [`chainstate`]
//! (validation against the projections), [`read`] (queries for the API).
//!
//! Only `LOG` and `LOG_HEAD` are ground truth. Every other table is a projection: it is
//! written only by [`fold`], in the same write transaction as the record it folds, and
//! `PROJ_META.cursor` names the last record folded, so projections can never be ahead
//! of or behind the log. One exception, bounded: the changes to the UTXO set and the
//! four indexes may stay in the writer's memory for a few blocks after their commit
//! ([`coin_cache`]); `PROJ_META.coins_cursor` then says how far redb's copies of those
//! tables are folded, readers look through the cache, and a ledger found behind at open
//! is rebuilt from the log.

pub mod chainstate;
pub mod codec;
pub mod coin_cache;
pub mod fold;
pub mod indexes;
pub mod integrity;
pub mod logtable;
pub mod read;
pub mod repack;
pub mod staged;

use crate::encoding::{Decode, Encode};
use crate::events::{Event, Record};
use crate::hash::Hash256;
use crate::notify::{AddressSet, Notification};
use indexes::{IndexJob, Indexes};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use staged::{Staged, Staging};
use std::collections::HashMap;
use std::sync::{mpsc, Arc};

pub(crate) type Bytes = &'static [u8];

/// A fixed-width key or value: redb stores no length for it, 4 bytes a row saved per
/// fixed side (the high-churn tables hold a few rows per transaction).
pub(crate) type Fixed<const N: usize> = &'static [u8; N];

/// Byte lengths of the fixed-width rows (the codec's layouts).
pub(crate) const OUTPOINT_LEN: usize = 36;
pub(crate) const UTXO_LEN: usize = codec::UtxoEntry::LEN;
pub(crate) const TXID_LEN: usize = 32;
pub(crate) const TX_POSITION_LEN: usize = codec::TxPosition::LEN;
pub(crate) use codec::{ADDR_OUTPOINT_LEN, HISTORY_KEY_LEN, HISTORY_VALUE_LEN};

/// The log: sequence → a record's bytes, or the marker of one cut into `LOG_CHUNKS`
/// pieces ([`logtable`]).
pub(crate) const LOG: TableDefinition<u64, Bytes> = TableDefinition::new("log");
pub(crate) use logtable::LOG_CHUNKS;
pub(crate) const LOG_HEAD: TableDefinition<&str, Bytes> = TableDefinition::new("log_head");
pub(crate) const PROJ_META: TableDefinition<&str, Bytes> = TableDefinition::new("proj_meta");
pub(crate) const BLOCK_INDEX: TableDefinition<Bytes, Bytes> = TableDefinition::new("block_index");
pub(crate) const MAIN_CHAIN: TableDefinition<u64, Bytes> = TableDefinition::new("main_chain");
pub(crate) const UTXO: TableDefinition<Fixed<OUTPOINT_LEN>, Fixed<UTXO_LEN>> =
    TableDefinition::new("utxo");
pub(crate) const ADDR_UTXO: TableDefinition<Fixed<ADDR_OUTPOINT_LEN>, ()> =
    TableDefinition::new("addr_utxo");
pub(crate) const BALANCE: TableDefinition<Bytes, u64> = TableDefinition::new("balance");
pub(crate) const TX_INDEX: TableDefinition<Fixed<TXID_LEN>, Fixed<TX_POSITION_LEN>> =
    TableDefinition::new("tx_index");
pub(crate) const ADDR_HISTORY: TableDefinition<Fixed<HISTORY_KEY_LEN>, Fixed<HISTORY_VALUE_LEN>> =
    TableDefinition::new("addr_history");
pub(crate) const UNDO: TableDefinition<Bytes, Bytes> = TableDefinition::new("undo");
pub(crate) const MEMPOOL: TableDefinition<Bytes, Bytes> = TableDefinition::new("mempool");
pub(crate) const MEMPOOL_SPENDS: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("mempool_spends");
pub(crate) const MEMPOOL_RATE: TableDefinition<Bytes, ()> = TableDefinition::new("mempool_rate");
pub(crate) const MEMPOOL_ADDR: TableDefinition<Bytes, ()> = TableDefinition::new("mempool_addr");
/// Stored blocks off the main chain, keyed by chainwork (big-endian) ‖ hash, valued by
/// their size: the side-chain storage budget sums the rows within reach of the tip.
pub(crate) const SIDE_BLOCKS: TableDefinition<Bytes, u64> = TableDefinition::new("side_blocks");

/// The layout of the projection rows. Projections are derived data, so a node that finds
/// another format (an older node's, say) rebuilds them from the log at open
/// (`recovery::check_and_init`) instead of misreading them. History: 1 (unmarked), 2 =
/// `tx_index` values are height and position only (the block is the main chain's at that
/// height) and `undo` rows hold the spent outputs without the outpoints; 3 = `block_index`
/// rows hold the whole header (version, merkle root and nonce added), so headers are
/// served without reading blocks; 4 = a block's `undo` data is cut into rows of
/// `codec::UNDO_ROW_ENTRIES` spent outputs, keyed by block hash ‖ row; 5 = heights in
/// 4 bytes in `utxo`, `undo`, `tx_index` and `addr_history` rows; 6 = `utxo`,
/// `addr_utxo`, `tx_index` and `addr_history` have fixed-width keys and values (redb
/// stores no lengths for them); 7 = `utxo`, `addr_utxo`, `balance`, `tx_index` and
/// `addr_history` may be behind the other projections, up to `proj_meta`'s
/// `coins_cursor` (the coin cache, [`coin_cache`]): a node that ignored it would trust
/// tables missing changes, so older nodes rebuild instead.
pub(crate) const PROJECTION_FORMAT: u64 = 7;

/// The `PROJ_META` key of [`PROJECTION_FORMAT`].
pub(crate) const FORMAT_KEY: &str = "format";

/// Why the store failed. Validation failures are [`crate::validation::Reject`], not this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage error: {0}")]
    Redb(#[from] redb::Error),
    #[error("the data is corrupt: {0}")]
    Corrupt(String),
    /// A write failed (a full disk, an I/O error): nothing of it was acknowledged.
    #[error("write failed, not acknowledged: {0}")]
    WriteFailed(String),
    /// A projection disagrees with the log (or with the rest of the projections): it is
    /// not served; `bitplace-node rebuild` rebuilds every projection from the log.
    #[error("projection damaged: {0}: run `bitplace-node rebuild`")]
    Damaged(String),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
        StoreError::Corrupt(what.into())
    }

    pub(crate) fn damaged(what: impl Into<String>) -> StoreError {
        StoreError::Damaged(what.into())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Redb(e.into()) }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);

pub type StoreResult<T> = Result<T, StoreError>;

/// The log head: sequence number and hash of the last record (None while empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Head {
    pub next_seq: u64,
    pub last_hash: Hash256,
}

/// Projection bookkeeping kept in `PROJ_META`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjMeta {
    /// Number of log records folded (the next record to fold).
    pub cursor: u64,
    pub tip: Hash256,
    /// Sum modulo 2^256 of SHA-256(outpoint ‖ entry) over the UTXO set: changes with any
    /// entry, independent of insertion order, updated incrementally.
    pub utxo_hash: primitive_types::U256,
    pub utxo_count: u64,
    /// Transactions in the mempool, kept with the projection metadata (checked by
    /// `verify` like every projection row).
    pub mempool_count: u64,
}

impl Default for ProjMeta {
    fn default() -> Self {
        ProjMeta {
            cursor: 0,
            tip: Hash256::ZERO,
            utxo_hash: primitive_types::U256::zero(),
            utxo_count: 0,
            mempool_count: 0,
        }
    }
}

pub(crate) fn read_head(t: &impl ReadableTable<&'static str, Bytes>) -> StoreResult<Head> {
    let next_seq = match t.get("next_seq")? {
        Some(v) => u64::from_le_bytes(
            v.value()
                .try_into()
                .map_err(|_| StoreError::corrupt("log head"))?,
        ),
        None => return Ok(Head::default()),
    };
    let last_hash = match t.get("last_hash")? {
        Some(v) => Hash256(
            v.value()
                .try_into()
                .map_err(|_| StoreError::corrupt("log head hash"))?,
        ),
        None => return Err(StoreError::corrupt("log head without hash")),
    };
    Ok(Head {
        next_seq,
        last_hash,
    })
}

pub(crate) fn read_proj_meta(t: &impl ReadableTable<&'static str, Bytes>) -> StoreResult<ProjMeta> {
    let mut m = ProjMeta::default();
    let bad = || StoreError::corrupt("projection metadata");
    if let Some(v) = t.get("cursor")? {
        m.cursor = u64::from_le_bytes(v.value().try_into().map_err(|_| bad())?);
    }
    if let Some(v) = t.get("tip")? {
        m.tip = Hash256(v.value().try_into().map_err(|_| bad())?);
    }
    if let Some(v) = t.get("utxo_hash")? {
        m.utxo_hash = primitive_types::U256::from_big_endian(v.value());
    }
    if let Some(v) = t.get("utxo_count")? {
        m.utxo_count = u64::from_le_bytes(v.value().try_into().map_err(|_| bad())?);
    }
    if let Some(v) = t.get("mempool_count")? {
        m.mempool_count = u64::from_le_bytes(v.value().try_into().map_err(|_| bad())?);
    }
    Ok(m)
}

/// Every table opened for one write transaction, plus what that transaction changed in
/// memory (log head, projection metadata, blocks seen) and the notifications to publish
/// once it commits.
///
/// The fields are private to `store`: outside it, the writer gets read-only views (a
/// `&Table` cannot be written) and changes the ledger only through [`Tables::append`],
/// whose event `fold.rs` folds. So "the log is appended, then folded" holds by
/// visibility, not by convention.
pub struct Tables<'t> {
    log: redb::Table<'t, u64, Bytes>,
    log_chunks: redb::Table<'t, (u64, u32), Bytes>,
    log_head: redb::Table<'t, &'static str, Bytes>,
    proj_meta: redb::Table<'t, &'static str, Bytes>,
    block_index: redb::Table<'t, Bytes, Bytes>,
    main_chain: redb::Table<'t, u64, Bytes>,
    utxo: Staged<'t, Fixed<OUTPOINT_LEN>, Fixed<UTXO_LEN>>,
    /// The address and transaction indexes; `None` while a replay folds them on its
    /// own thread ([`Tables::send_indexes`]), which `index_jobs` then feeds.
    indexes: Option<Indexes<'t>>,
    index_jobs: Option<mpsc::SyncSender<IndexJob>>,
    undo: redb::Table<'t, Bytes, Bytes>,
    mempool: Staged<'t, Bytes, Bytes>,
    mempool_spends: Staged<'t, Bytes, Bytes>,
    mempool_rate: Staged<'t, Bytes, ()>,
    mempool_addr: Staged<'t, Bytes, ()>,
    side_blocks: redb::Table<'t, Bytes, u64>,
    head: Head,
    meta: ProjMeta,
    /// Blocks decoded in this transaction, so connecting one just accepted needs no re-read.
    blocks: HashMap<Hash256, Arc<crate::block::Block>>,
    /// Txids of blocks in `blocks`, where a replay's decode thread worked them out.
    txids: HashMap<Hash256, Vec<Hash256>>,
    /// The outputs a block about to connect spends, as the writer's input checks found
    /// them (see [`Tables::hand_spent`]).
    spent: HashMap<Hash256, Vec<codec::UtxoEntry>>,
    /// Filled while folding when `collect_notes` is set.
    notes: Vec<Notification>,
    collect_notes: bool,
    /// Unix seconds stamped on the records appended (the writer sets its clock's time).
    now: u64,
    /// `PROJ_META`'s coins cursor as this transaction found it ([`coin_cache`]): the
    /// record up to which redb's cached tables are folded.
    coins_cursor: u64,
    /// Whether redb's cached tables were behind the other projections when this
    /// transaction began.
    coins_behind: bool,
    /// Whether `PROJ_META` held a coins cursor (ledgers written before the coin cache
    /// hold none).
    coins_cursor_stored: bool,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> StoreResult<Tables<'t>> {
        let log_head = txn.open_table(LOG_HEAD)?;
        let proj_meta = txn.open_table(PROJ_META)?;
        let head = read_head(&log_head)?;
        let meta = read_proj_meta(&proj_meta)?;
        let coins_cursor = coin_cache::read_coins_cursor(&proj_meta, meta.cursor)?;
        let coins_cursor_stored = proj_meta.get(coin_cache::COINS_CURSOR_KEY)?.is_some();
        Ok(Tables {
            log: txn.open_table(LOG)?,
            log_chunks: txn.open_table(LOG_CHUNKS)?,
            log_head,
            proj_meta,
            block_index: txn.open_table(BLOCK_INDEX)?,
            main_chain: txn.open_table(MAIN_CHAIN)?,
            utxo: Staged::new(txn.open_table(UTXO)?).digesting(fold::utxo_row_digest),
            indexes: Some(Indexes {
                addr_utxo: Staged::new(txn.open_table(ADDR_UTXO)?),
                balance: Staged::new(txn.open_table(BALANCE)?),
                tx_index: Staged::new(txn.open_table(TX_INDEX)?),
                addr_history: Staged::new(txn.open_table(ADDR_HISTORY)?),
                coins_deferred: false,
            }),
            index_jobs: None,
            undo: txn.open_table(UNDO)?,
            mempool: Staged::new(txn.open_table(MEMPOOL)?),
            mempool_spends: Staged::new(txn.open_table(MEMPOOL_SPENDS)?),
            mempool_rate: Staged::new(txn.open_table(MEMPOOL_RATE)?),
            mempool_addr: Staged::new(txn.open_table(MEMPOOL_ADDR)?),
            side_blocks: txn.open_table(SIDE_BLOCKS)?,
            head,
            meta,
            blocks: HashMap::new(),
            txids: HashMap::new(),
            spent: HashMap::new(),
            notes: Vec::new(),
            collect_notes: true,
            // The wall clock unless the writer sets its own (tests inject one).
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            coins_cursor,
            coins_behind: coins_cursor < meta.cursor,
            coins_cursor_stored,
        })
    }

    /// Folds this transaction's changes to the cached tables (the UTXO set and the
    /// indexes) over `behind` (the coin cache's layers, oldest first) and keeps them for
    /// [`Tables::freeze_coins`] instead of writing them to redb ([`coin_cache`]). For the
    /// live writer, before it folds anything.
    pub(crate) fn cache_coins(&mut self, behind: coin_cache::Stack) -> StoreResult<()> {
        self.utxo.cache_over(behind.utxo)?;
        let indexes = indexes_in(&mut self.indexes)?;
        indexes.addr_utxo.cache_over(behind.addr_utxo)?;
        indexes.balance.cache_over(behind.balance)?;
        indexes.tx_index.cache_over(behind.tx_index)?;
        indexes.addr_history.cache_over(behind.addr_history)
    }

    /// This transaction's changes to the cached tables as layers for the coin cache
    /// (None when it made none, or they are not cached). After [`Tables::flush_meta`].
    pub(crate) fn freeze_coins(&mut self) -> StoreResult<Option<coin_cache::Layers>> {
        if !self.utxo.is_cached() {
            return Ok(None);
        }
        fn frozen<K: Staging, V: Staging>(
            layer: Option<staged::layer::Layer<K, V>>,
        ) -> Arc<staged::layer::Layer<K, V>> {
            Arc::new(layer.unwrap_or_default())
        }
        let utxo = frozen(self.utxo.freeze());
        let indexes = indexes_in(&mut self.indexes)?;
        let layers = coin_cache::Layers {
            utxo,
            addr_utxo: frozen(indexes.addr_utxo.freeze()),
            balance: frozen(indexes.balance.freeze()),
            tx_index: frozen(indexes.tx_index.freeze()),
            addr_history: frozen(indexes.addr_history.freeze()),
        };
        Ok((layers.rows() > 0).then_some(layers))
    }

    /// Whether a cached table has changes not in redb (pending, or in the layers
    /// behind it).
    fn has_cached_changes(&self) -> bool {
        let indexes = self.indexes.as_ref();
        self.utxo.has_cached_changes()
            || indexes.is_some_and(|i| {
                i.addr_utxo.has_cached_changes()
                    || i.balance.has_cached_changes()
                    || i.tx_index.has_cached_changes()
                    || i.addr_history.has_cached_changes()
            })
    }

    /// The coins cursor this transaction leaves: unchanged while redb's cached tables
    /// are behind (changes cached, or found behind and not rebuilt), else the cursor.
    fn coins_cursor_after(&self) -> u64 {
        if self.has_cached_changes() || self.coins_behind {
            self.coins_cursor
        } else {
            self.meta.cursor
        }
    }

    /// Whether `PROJ_META` lacks the coins cursor (a ledger from before the coin cache):
    /// the open writes it, so that a rebuild's projections and these compare equal.
    pub(crate) fn lacks_coins_cursor(&self) -> bool {
        !self.coins_cursor_stored
    }

    /// Appends `event` to the log and folds it into the projections, atomically with
    /// the enclosing transaction. Returns the record's sequence number.
    pub fn append(&mut self, event: Event) -> StoreResult<u64> {
        let seq = self.head.next_seq;
        if self.meta.cursor != seq {
            return Err(StoreError::corrupt(format!(
                "projection cursor {} is not at the log head {seq}",
                self.meta.cursor
            )));
        }
        let record = Record {
            seq,
            prev_hash: self.head.last_hash,
            time: self.now,
            event,
        };
        let bytes = record.encode();
        logtable::put(&mut self.log, &mut self.log_chunks, seq, &bytes)?;
        self.head = Head {
            next_seq: seq + 1,
            last_hash: Record::hash_of_bytes(&bytes),
        };
        self.fold(seq, &record.event)?;
        Ok(seq)
    }

    /// Stages every high-churn projection in memory until [`Tables::flush_meta`] (see
    /// [`staged`]): for replays, which fold many events in one transaction.
    pub fn stage_projections(&mut self) -> StoreResult<()> {
        self.utxo.stage()?;
        self.indexes_here()?.stage()?;
        self.mempool.stage()?;
        self.mempool_spends.stage()?;
        self.mempool_rate.stage()?;
        self.mempool_addr.stage()
    }

    /// Sizes the staging of a replay that will fold about as much as `rows` (the
    /// projections it replaces), so its maps and lists are allocated once.
    pub fn reserve_staged(&mut self, rows: &ProjectionRows) -> StoreResult<()> {
        self.utxo.reserve(rows.utxo);
        let indexes = self.indexes_here()?;
        // A coin index row is put when its output is made and deleted when it is spent:
        // the rows that remain plus about two changes per spending transaction (unless
        // it is derived at the end, which reserves its own).
        if !indexes.coins_deferred {
            let coin_changes = rows
                .addr_utxo
                .saturating_add(rows.tx_index.saturating_mul(2));
            indexes.addr_utxo.reserve(coin_changes);
        }
        indexes.tx_index.reserve(rows.tx_index);
        indexes.addr_history.reserve(rows.addr_history);
        Ok(())
    }

    /// Leaves the coin index (`addr_utxo`) out of the fold until
    /// [`Tables::derive_coin_index`] writes it from the final UTXO set (see
    /// [`Indexes::defer_coin_index`]). For a rebuild: both tables emptied and staged.
    pub(crate) fn defer_coin_index(&mut self) -> StoreResult<()> {
        let Tables { utxo, indexes, .. } = self;
        indexes_in(indexes)?.defer_coin_index(utxo)
    }

    /// Writes the coin index deferred by [`Tables::defer_coin_index`], once the fold is
    /// done and the indexes are back on this thread.
    pub(crate) fn derive_coin_index(&mut self) -> StoreResult<()> {
        let rows = usize::try_from(self.meta.utxo_count).unwrap_or(usize::MAX);
        let Tables { utxo, indexes, .. } = self;
        indexes_in(indexes)?.derive_coin_index(utxo, rows)
    }

    fn flush_staged(&mut self) -> StoreResult<()> {
        let [a, b, c, d] = indexes_in(&mut self.indexes)?.staged_tables();
        let mut tables: Vec<&mut dyn staged::WriteBack> = vec![
            &mut self.utxo,
            a,
            b,
            c,
            d,
            &mut self.mempool,
            &mut self.mempool_spends,
            &mut self.mempool_rate,
            &mut self.mempool_addr,
        ];
        // Cached tables go to the coin cache as layers instead.
        tables.retain(|t| !t.is_cached());
        staged::write_back_all(&mut tables)?;
        // Staged, the UTXO-set hash is summed over the rows written back, not per change.
        let delta = self.utxo.take_digest_delta();
        self.meta.utxo_hash = self.meta.utxo_hash.overflowing_add(delta).0;
        Ok(())
    }

    /// The index tables, which must be on this thread (not handed to a replay's).
    fn indexes_here(&mut self) -> StoreResult<&mut Indexes<'t>> {
        indexes_in(&mut self.indexes)
    }

    /// Folds a block's change into the indexes: here, or on the replay's index thread
    /// (whose answer is then no touched address: replays publish nothing).
    fn fold_indexes(&mut self, job: IndexJob) -> StoreResult<AddressSet> {
        if let Some(indexes) = self.indexes.as_mut() {
            return indexes.apply(job);
        }
        let jobs = self.index_jobs.as_ref().expect("indexes are here or fed");
        jobs.send(job)
            .map_err(|_| StoreError::corrupt("the index fold stopped"))?;
        Ok(AddressSet::default())
    }

    /// Hands the index tables over to another thread, which folds the jobs sent to
    /// `jobs` into them; [`Tables::take_back_indexes`] ends it. Only for replays, which
    /// publish nothing.
    pub(crate) fn send_indexes(
        &mut self,
        jobs: mpsc::SyncSender<IndexJob>,
    ) -> StoreResult<Indexes<'t>> {
        assert!(!self.collect_notes, "a replay publishes nothing");
        let indexes = self.indexes.take();
        let indexes = indexes.ok_or_else(|| StoreError::corrupt("the indexes are away"))?;
        self.index_jobs = Some(jobs);
        Ok(indexes)
    }

    /// Stops feeding the index thread (its job queue closes, so it ends).
    pub(crate) fn stop_index_jobs(&mut self) {
        self.index_jobs = None;
    }

    /// The index tables back from the replay's thread.
    pub(crate) fn take_back_indexes(&mut self, indexes: Indexes<'t>) {
        self.index_jobs = None;
        self.indexes = Some(indexes);
    }

    /// Writes staged projection rows, the in-memory head and the projection metadata
    /// back to their tables. Every path calls this before it commits.
    pub fn flush_meta(&mut self) -> StoreResult<()> {
        self.flush_staged()?;
        self.log_head
            .insert("next_seq", self.head.next_seq.to_le_bytes().as_slice())?;
        self.log_head
            .insert("last_hash", self.head.last_hash.0.as_slice())?;
        self.proj_meta
            .insert(FORMAT_KEY, PROJECTION_FORMAT.to_le_bytes().as_slice())?;
        self.proj_meta
            .insert("cursor", self.meta.cursor.to_le_bytes().as_slice())?;
        let coins_cursor = self.coins_cursor_after();
        self.proj_meta.insert(
            coin_cache::COINS_CURSOR_KEY,
            coins_cursor.to_le_bytes().as_slice(),
        )?;
        self.proj_meta.insert("tip", self.meta.tip.0.as_slice())?;
        self.proj_meta
            .insert("utxo_hash", self.meta.utxo_hash.to_big_endian().as_slice())?;
        self.proj_meta
            .insert("utxo_count", self.meta.utxo_count.to_le_bytes().as_slice())?;
        self.proj_meta.insert(
            "mempool_count",
            self.meta.mempool_count.to_le_bytes().as_slice(),
        )?;
        Ok(())
    }

    /// The log head as this transaction left it.
    pub(crate) fn head(&self) -> &Head {
        &self.head
    }

    /// The projection metadata (cursor, tip, UTXO-set digest) as this transaction left it.
    pub(crate) fn meta(&self) -> &ProjMeta {
        &self.meta
    }

    pub(crate) fn log(&self) -> &redb::Table<'t, u64, Bytes> {
        &self.log
    }

    /// The pieces of the log's long records ([`logtable`]).
    pub(crate) fn log_chunks(&self) -> &redb::Table<'t, (u64, u32), Bytes> {
        &self.log_chunks
    }

    pub(crate) fn block_index(&self) -> &redb::Table<'t, Bytes, Bytes> {
        &self.block_index
    }

    pub(crate) fn main_chain(&self) -> &redb::Table<'t, u64, Bytes> {
        &self.main_chain
    }

    pub(crate) fn side_blocks(&self) -> &redb::Table<'t, Bytes, u64> {
        &self.side_blocks
    }

    pub(crate) fn mempool(&self) -> &Staged<'t, Bytes, Bytes> {
        &self.mempool
    }

    /// The mempool rows (staged rows written back first), to walk them all.
    pub(crate) fn mempool_flushed(&mut self) -> StoreResult<&redb::Table<'t, Bytes, Bytes>> {
        self.mempool.flushed()
    }

    /// The mempool's fee-rate index, lowest first (staged rows written back first).
    pub(crate) fn mempool_by_rate(&mut self) -> StoreResult<&redb::Table<'t, Bytes, ()>> {
        self.mempool_rate.flushed()
    }

    /// Stamps the records appended from now on with `now` (the writer's clock).
    pub(crate) fn set_clock(&mut self, now: u64) {
        self.now = now;
    }

    /// Replays and checks publish nothing: stop collecting notifications.
    pub(crate) fn without_notifications(&mut self) {
        self.collect_notes = false;
    }

    /// The notifications folded so far, to publish once the transaction commits.
    pub(crate) fn take_notes(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.notes)
    }

    /// Forgets the decoded blocks once more than `max` are cached (long replays).
    pub(crate) fn bound_block_cache(&mut self, max: usize) {
        if self.blocks.len() > max {
            self.blocks.clear();
            self.txids.clear();
            self.spent.clear();
        }
    }

    /// The txids of block `block`, worked out ahead of its connect (a replay's decode
    /// thread, the merkle check of a block submitted); they must be its transactions'
    /// in order.
    pub(crate) fn hand_txids(&mut self, block: Hash256, txids: Vec<Hash256>) {
        self.txids.insert(block, txids);
    }

    /// The outputs block `block` spends, in input order, found by the checks of its
    /// inputs just before its connect: with them its index rows are folded while its
    /// coins are (and its fold checks that it spent exactly these).
    pub(crate) fn hand_spent(&mut self, block: Hash256, spent: Vec<codec::UtxoEntry>) {
        self.spent.insert(block, spent);
    }

    /// The txids of `block` (whose hash is `hash`): handed over ahead (and taken back, so
    /// hand them again to keep them), or worked out now.
    pub(crate) fn txids_of(&mut self, hash: &Hash256, block: &crate::block::Block) -> Vec<Hash256> {
        self.txids.remove(hash).unwrap_or_else(|| block.txids())
    }

    /// Reads the record at `seq` from the log.
    pub fn record(&self, seq: u64) -> StoreResult<Record> {
        read_record(&self.log, Some(&self.log_chunks), seq)
    }

    /// The block with `hash`, from this transaction's cache or the log.
    pub fn block(&mut self, hash: &Hash256) -> StoreResult<Arc<crate::block::Block>> {
        if let Some(b) = self.blocks.get(hash) {
            return Ok(b.clone());
        }
        let meta = read::block_meta(&self.block_index, hash)?
            .ok_or_else(|| StoreError::corrupt(format!("block {hash} is not in the index")))?;
        let block = match self.record(meta.seq)?.event {
            Event::BlockAccepted(b) => {
                integrity::check_block_meta(&meta, &b)?;
                b
            }
            _ => {
                return Err(StoreError::corrupt(format!(
                    "record {} is not a block",
                    meta.seq
                )))
            }
        };
        self.blocks.insert(*hash, block.clone());
        Ok(block)
    }
}

/// The index tables, which must be on this thread (not handed to a replay's). A free
/// function so that a caller can borrow the other tables of [`Tables`] beside them.
fn indexes_in<'a, 't>(indexes: &'a mut Option<Indexes<'t>>) -> StoreResult<&'a mut Indexes<'t>> {
    indexes
        .as_mut()
        .ok_or_else(|| StoreError::corrupt("the indexes are away on a replay's thread"))
}

pub(crate) fn read_record(
    log: &impl ReadableTable<u64, Bytes>,
    chunks: Option<&impl ReadableTable<(u64, u32), Bytes>>,
    seq: u64,
) -> StoreResult<Record> {
    let bytes = logtable::get(log, chunks, seq)?
        .ok_or_else(|| StoreError::corrupt(format!("log record {seq} is missing")))?;
    Record::decode(&bytes)
        .map_err(|e| StoreError::corrupt(format!("log record {seq} does not decode: {e}")))
}

/// The name a rebuild gives a projection table it set aside, until its pages are freed.
const SET_ASIDE: &str = "set aside by a rebuild: ";

/// Rows in the projections a rebuild replaces: about what it will stage again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProjectionRows {
    pub utxo: usize,
    pub addr_utxo: usize,
    pub tx_index: usize,
    pub addr_history: usize,
}

impl ProjectionRows {
    /// Counted from the tables' lengths (redb keeps them: no scan). A table of an older
    /// projection format (another row type) counts as empty: this is only a hint.
    pub fn of(txn: &WriteTransaction) -> StoreResult<ProjectionRows> {
        Ok(ProjectionRows {
            utxo: rows_in(txn, UTXO)?,
            addr_utxo: rows_in(txn, ADDR_UTXO)?,
            tx_index: rows_in(txn, TX_INDEX)?,
            addr_history: rows_in(txn, ADDR_HISTORY)?,
        })
    }
}

fn rows_in<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> StoreResult<usize> {
    use redb::ReadableTableMetadata;
    match txn.open_table(table) {
        Ok(table) => Ok(usize::try_from(table.len()?).unwrap_or(usize::MAX)),
        Err(redb::TableError::TableTypeMismatch { .. }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Renames every projection table out of the way, so that a rebuild folds into fresh
/// empty tables of the same names while another thread frees the old ones' pages
/// ([`free_set_aside`]). Why: deleting a table walks every page of its tree; for the
/// 1M-transaction rebuild that was 0.35-0.45 s on one core with the other idle, before
/// the fold could start. A rename moves a root, no page. All of it is one write
/// transaction: a crash before its commit leaves the old projections as they were.
pub fn set_projections_aside(txn: &WriteTransaction) -> StoreResult<()> {
    set_aside(txn, PROJ_META)?;
    set_aside(txn, BLOCK_INDEX)?;
    set_aside(txn, MAIN_CHAIN)?;
    set_aside(txn, UTXO)?;
    set_aside(txn, ADDR_UTXO)?;
    set_aside(txn, BALANCE)?;
    set_aside(txn, TX_INDEX)?;
    set_aside(txn, ADDR_HISTORY)?;
    set_aside(txn, UNDO)?;
    set_aside(txn, MEMPOOL)?;
    set_aside(txn, MEMPOOL_SPENDS)?;
    set_aside(txn, MEMPOOL_RATE)?;
    set_aside(txn, MEMPOOL_ADDR)?;
    set_aside(txn, SIDE_BLOCKS)?;
    Ok(())
}

fn set_aside<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> StoreResult<()> {
    let aside = format!("{SET_ASIDE}{}", redb::TableHandle::name(&table));
    match txn.rename_table(table, TableDefinition::<K, V>::new(&aside)) {
        Ok(()) | Err(redb::TableError::TableDoesNotExist(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the tables [`set_projections_aside`] renamed, freeing their pages. It holds
/// the transaction's table catalog while it runs: the tables the fold writes must be
/// open before.
pub fn free_set_aside(txn: &WriteTransaction) -> StoreResult<()> {
    let aside: Vec<_> = txn
        .list_tables()?
        .filter(|t| redb::TableHandle::name(t).starts_with(SET_ASIDE))
        .collect();
    for table in aside {
        txn.delete_table(table)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rebuild's sizing hint counts the rows there are, and takes a table of an older
    /// row type (an older projection format, rebuilt at open) as empty instead of failing.
    #[test]
    fn projection_rows_count_the_tables_and_skip_an_older_format() {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut utxo = txn.open_table(UTXO).unwrap();
            for i in 0..3u8 {
                utxo.insert(&[i; OUTPOINT_LEN], &[0; UTXO_LEN]).unwrap();
            }
            let old_tx_index: TableDefinition<&[u8], &[u8]> =
                TableDefinition::new(redb::TableHandle::name(&TX_INDEX));
            txn.open_table(old_tx_index)
                .unwrap()
                .insert(&[1u8][..], &[2u8][..])
                .unwrap();
        }
        let rows = ProjectionRows::of(&txn).unwrap();
        assert_eq!(
            rows,
            ProjectionRows {
                utxo: 3,
                ..ProjectionRows::default()
            }
        );
    }
}
