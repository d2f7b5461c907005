//! Startup checks, rebuilds and verification: the log is the ground truth, so every
//! question about the projections is answered by replaying it.

use crate::encoding::Decode;
use crate::error::EngineError;
use crate::events::{Event, Record};
use crate::hash::Hash256;
use crate::params::ChainParams;
use crate::store::coin_cache;
use crate::store::indexes::IndexJob;
use crate::store::{
    free_set_aside, integrity, logtable, set_projections_aside, Bytes, Head, ProjectionRows,
    StoreError, StoreResult, Tables, FORMAT_KEY, LOG, LOG_CHUNKS, LOG_HEAD, PROJECTION_FORMAT,
    PROJ_META,
};
use redb::{Database, Durability, Key, ReadableDatabase, ReadableTable, TableDefinition, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks the log's hash chain against its head, that it belongs to `params`' network,
/// and that the projections are exactly at the head (folding any missing records).
/// Initializes a new log with the genesis block. Writes only when it changed something,
/// so a ledger on a full disk still opens for reading. (Reopened after a failure, redb
/// itself rewrites the header durably while repairing, so what the new handle reads is
/// on the disk before anything is acknowledged: `engine/tests/power_loss.rs` cuts the
/// power right after such an acknowledgement, a failed sync's writes dropped.)
///
/// Returns whether the projections were rebuilt (an older format, or damage): the file
/// then holds the old rows' pages free, for the caller to compact.
///
/// `cached`: what the engine's coin cache covers, when it reopens after a storage failure
/// ([`coin_cache::CoinCache::coverage`]); redb's cached tables found behind by exactly
/// that much are left to it instead of rebuilt.
pub(crate) fn check_and_init(
    db: &Database,
    params: &ChainParams,
    cached: Option<(u64, u64)>,
) -> Result<bool, EngineError> {
    let upgraded = upgrade_projections(db)? | rebuild_if_coins_behind(db, cached)?;
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.set_two_phase_commit(true);
    let changed = {
        let mut t = Tables::open(&txn)?;
        t.without_notifications();
        let changed = t.head().next_seq == 0
            || t.meta().cursor != t.head().next_seq
            || t.lacks_coins_cursor();
        if t.head().next_seq == 0 {
            let genesis = Arc::new(params.genesis());
            let hash = genesis.hash();
            t.append(Event::BlockAccepted(genesis))?;
            t.append(Event::TipConnected(hash))?;
        } else {
            verify_chain(t.log(), Some(t.log_chunks()), t.head())
                .map_err(|e| EngineError::Open(format!("the event log is damaged: {e}")))?;
            check_network(&t, params)?;
            catch_up(&mut t)?;
        }
        if changed {
            t.flush_meta()?;
        }
        changed
    };
    if changed {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(check_or_rebuild_projections(db)? || upgraded)
}

/// Rebuilds the projections from the log when redb's cached tables (the UTXO set and the
/// indexes) are behind them: the node stopped with changes in its coin cache (killed, or
/// its storage failed and the cache could not be kept), and those are in the log only
/// (`store::coin_cache`). Before anything else folds: a fold onto a table missing changes
/// would fail, or worse, not. Not when `cached` (the engine's coin cache) covers exactly
/// the records the tables lack.
fn rebuild_if_coins_behind(db: &Database, cached: Option<(u64, u64)>) -> Result<bool, EngineError> {
    let (written, cursor) = coin_cache::cursors(db)?;
    if written >= cursor || cached == Some((written, cursor)) {
        return Ok(false);
    }
    tracing::warn!(
        cached_tables_at = written,
        projections_at = cursor,
        "the UTXO set and indexes were cached when the node stopped; rebuilding the projections from the log"
    );
    eprintln!(
        "the UTXO set and indexes on disk are at record {written}, the other projections \
         at {cursor} (the node stopped with its coin cache unwritten); rebuilding every \
         projection from the log now"
    );
    rebuild(db)?;
    Ok(true)
}

/// Rebuilds the projections from the log when they were written in another layout than
/// [`PROJECTION_FORMAT`] (by an older node): folding new records onto rows of another
/// format would misread them. The log itself is unchanged, so this is all a ledger
/// written by an older node needs.
fn upgrade_projections(db: &Database) -> Result<bool, EngineError> {
    let Some(found) = projection_format(db)? else {
        return Ok(false);
    };
    if found == PROJECTION_FORMAT {
        return Ok(false);
    }
    tracing::warn!(
        found,
        ours = PROJECTION_FORMAT,
        "projections in another format"
    );
    eprintln!(
        "the projections are in format {found}, this node writes format {PROJECTION_FORMAT}; \
         rebuilding them from the log now (once)"
    );
    rebuild(db)?;
    eprintln!("projections rebuilt from the log in format {PROJECTION_FORMAT}");
    Ok(true)
}

/// The format the projections were written in (1 before it was recorded), or None for a
/// ledger without projections yet.
fn projection_format(db: &Database) -> StoreResult<Option<u64>> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(PROJ_META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if meta.get("cursor")?.is_none() {
        return Ok(None);
    }
    match meta.get(FORMAT_KEY)? {
        None => Ok(Some(1)),
        Some(v) => v
            .value()
            .try_into()
            .map(|b| Some(u64::from_le_bytes(b)))
            .map_err(|_| StoreError::corrupt("projection format")),
    }
}

/// Checks the projections consensus relies on ([`integrity::check_projections`]); if one
/// is damaged, says so and rebuilds every projection from the log, which is the ground
/// truth. A log that does not fold into sound projections is refused.
fn check_or_rebuild_projections(db: &Database) -> Result<bool, EngineError> {
    let why = match integrity::check_projections(db) {
        Ok(()) => return Ok(false),
        Err(e @ (StoreError::Damaged(_) | StoreError::Corrupt(_))) => e,
        Err(e) => return Err(e.into()),
    };
    tracing::warn!(error = %why, "projections rebuilt from the log");
    eprintln!("{why}; rebuilding every projection from the log now");
    rebuild(db)?;
    integrity::check_projections(db).map_err(|e| {
        EngineError::Damaged(format!("still damaged after a rebuild from the log: {e}"))
    })?;
    eprintln!("projections rebuilt from the log; they pass their checks");
    Ok(true)
}

fn check_network(t: &Tables<'_>, params: &ChainParams) -> Result<(), EngineError> {
    let first = t.record(0).map_err(|e| EngineError::Open(e.to_string()))?;
    let expected = params.genesis_hash();
    match first.event {
        Event::BlockAccepted(b) if b.hash() == expected => Ok(()),
        Event::BlockAccepted(b) => Err(EngineError::Open(format!(
            "this data directory holds another network (genesis {}, expected {expected} for {})",
            b.hash(),
            params.network
        ))),
        _ => Err(EngineError::Open(
            "the event log does not start with a genesis block".into(),
        )),
    }
}

fn catch_up(t: &mut Tables<'_>) -> Result<(), EngineError> {
    let head = t.head().next_seq;
    if t.meta().cursor > head {
        return Err(EngineError::Open(format!(
            "projections claim {} records but the log has {head}: run `rebuild`",
            t.meta().cursor
        )));
    }
    t.stage_projections()?;
    for seq in t.meta().cursor..head {
        let record = t.record(seq)?;
        t.fold(seq, &record.event)?;
    }
    Ok(())
}

/// Walks the whole log: sequence numbers without gaps, each record naming its
/// predecessor's hash, ending exactly at the stored head.
pub(crate) fn verify_chain(
    log: &impl ReadableTable<u64, Bytes>,
    chunks: Option<&impl ReadableTable<(u64, u32), Bytes>>,
    head: &Head,
) -> Result<(), String> {
    let mut expected = 0u64;
    let mut last = Hash256::ZERO;
    for row in log.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        let seq = k.value();
        let bytes = logtable::record_bytes(chunks, seq, v.value()).map_err(|e| e.to_string())?;
        let bytes = bytes.as_ref();
        if seq != expected {
            return Err(format!("record {expected} is missing (found {seq} next)"));
        }
        if bytes.len() < 41 || bytes[1..9] != seq.to_le_bytes() {
            return Err(format!("record {seq} is malformed"));
        }
        if bytes[9..41] != last.0 {
            return Err(format!(
                "record {seq} does not follow record {} (hash chain broken)",
                seq.wrapping_sub(1)
            ));
        }
        last = Record::hash_of_bytes(bytes);
        expected += 1;
    }
    if expected != head.next_seq {
        return Err(format!(
            "the log is truncated: its head says {} records, {expected} are present",
            head.next_seq
        ));
    }
    if last != head.last_hash {
        return Err("the last record does not match the log head's hash".into());
    }
    Ok(())
}

/// What a rebuild ends with: the UTXO set hash, and where its time went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    pub utxo_set_hash: Hash256,
    /// Freeing the old projections' pages, on a thread of its own beside the fold.
    pub dropping: Duration,
    /// Reading, decoding and folding the log (with any interim write-back a bounded
    /// staging forces on a long log).
    pub folding: Duration,
    /// Writing the staged rows into the projection tables.
    pub writing_back: Duration,
    /// redb's durable commit.
    pub committing: Duration,
}

/// Drops every projection and folds the whole log again, checking the hash chain as it
/// goes (signatures are not re-verified: the log holds validated facts).
pub(crate) fn rebuild(db: &Database) -> StoreResult<Rebuilt> {
    let mut lap = Lap::start();
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.set_two_phase_commit(true);
    let rows = ProjectionRows::of(&txn)?;
    set_projections_aside(&txn)?;
    let (utxo_set_hash, dropping, folding, writing_back) = std::thread::scope(|scope| {
        let mut t = Tables::open(&txn)?;
        t.stage_projections()?;
        t.defer_coin_index()?;
        t.reserve_staged(&rows)?;
        let freeing = scope.spawn(|| {
            let mut lap = Lap::start();
            free_set_aside(&txn).map(|()| lap.next())
        });
        t.without_notifications();
        let until = t.head().next_seq;
        let folded = replay(&mut t, until);
        let dropping = freeing
            .join()
            .map_err(|_| StoreError::corrupt("freeing the old projections panicked"))?;
        folded?;
        t.derive_coin_index()?;
        let folding = lap.next();
        t.flush_meta()?;
        let hash = Hash256(t.meta().utxo_hash.to_big_endian());
        StoreResult::Ok((hash, dropping?, folding, lap.next()))
    })?;
    txn.commit()?;
    let rebuilt = Rebuilt {
        utxo_set_hash,
        dropping,
        folding,
        writing_back,
        committing: lap.next(),
    };
    tracing::info!(?rebuilt, "projections rebuilt from the log");
    Ok(rebuilt)
}

/// Times consecutive parts of one piece of work.
struct Lap(Instant);

impl Lap {
    fn start() -> Lap {
        Lap(Instant::now())
    }

    /// Time since the start or the previous call.
    fn next(&mut self) -> Duration {
        let now = Instant::now();
        now.duration_since(std::mem::replace(&mut self.0, now))
    }
}

/// Decoded blocks a replay keeps for the connects that follow their acceptance.
const REPLAY_BLOCK_CACHE: usize = 8;

/// Records read and decoded ahead of the fold (at most 16 blocks of 8 MB twice over in
/// memory: raw and decoded).
const DECODE_AHEAD: u64 = 16;

/// Blocks the index thread may lag behind the fold (each job holds a decoded block).
const INDEX_JOBS_AHEAD: usize = 4;

/// Folds records from the projection cursor up to (not including) `until`, staging the
/// projections in memory (the caller's `flush_meta` writes them). Three threads share
/// the work: one reads nothing but decodes each record and hashes it for the chain
/// check, [`DECODE_AHEAD`] records ahead; the fold thread folds the log into the UTXO
/// set, undo data and chain; a third folds the address and transaction indexes from
/// what the fold thread hands it (`store::indexes`), a few blocks behind.
pub(crate) fn replay(t: &mut Tables<'_>, until: u64) -> StoreResult<()> {
    t.stage_projections()?;
    std::thread::scope(|scope| {
        let (jobs, job_rx) = mpsc::sync_channel::<IndexJob>(INDEX_JOBS_AHEAD);
        let mut indexes = t.send_indexes(jobs)?;
        let index_thread = scope.spawn(move || {
            let folded = job_rx
                .into_iter()
                .try_for_each(|job| indexes.apply(job).map(drop));
            (indexes, folded)
        });
        let folded = fold_records(t, until);
        t.stop_index_jobs();
        let (indexes, index_folded) = index_thread
            .join()
            .map_err(|_| StoreError::corrupt("the index fold panicked"))?;
        t.take_back_indexes(indexes);
        // The index thread's own error first: the fold thread only saw it stop.
        index_folded.and(folded)
    })
}

/// The fold thread's part of [`replay`]: checks the hash chain and folds every record.
fn fold_records(t: &mut Tables<'_>, until: u64) -> StoreResult<()> {
    let start = t.meta().cursor;
    let mut prev = if start == 0 {
        Hash256::ZERO
    } else {
        Record::hash_of_bytes(&raw(t, start - 1)?)
    };
    std::thread::scope(|scope| {
        // In flight ≤ DECODE_AHEAD, so the two queues can never both be full.
        let (to_decode, raw_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(DECODE_AHEAD as usize);
        let (decoded_tx, decoded) = mpsc::sync_channel(DECODE_AHEAD as usize);
        scope.spawn(move || {
            for (seq, bytes) in raw_rx {
                if decoded_tx.send(decode_record(seq, &bytes)).is_err() {
                    return;
                }
            }
        });
        let mut read = start;
        for seq in start..until {
            while read < until && read < seq + DECODE_AHEAD {
                let bytes = raw(t, read)?;
                to_decode
                    .send((read, bytes))
                    .map_err(|_| StoreError::corrupt("the record decoder stopped"))?;
                read += 1;
            }
            let Decoded {
                record,
                hash,
                txids,
            } = decoded
                .recv()
                .map_err(|_| StoreError::corrupt("the record decoder stopped"))??;
            if record.prev_hash != prev || record.seq != seq {
                return Err(StoreError::corrupt(format!(
                    "hash chain broken at record {seq}"
                )));
            }
            prev = hash;
            if let Some((block, txids)) = txids {
                t.hand_txids(block, txids);
            }
            t.fold(seq, &record.event)?;
            // A block is cached when accepted for its connect, which follows soon; after a
            // connect the cache is cut back. It held up to 256 decoded blocks before (a GB of
            // 10,000-transaction blocks, each page of it fresh memory for the kernel to
            // zero): the 1M-transaction rebuild ran at 75-93k tx/s then, 98-108k with 8.
            if matches!(record.event, Event::TipConnected(_)) {
                t.bound_block_cache(REPLAY_BLOCK_CACHE);
            }
        }
        Ok(())
    })
}

/// A record as the decode thread hands it to the fold.
struct Decoded {
    record: Record,
    /// The record's hash, for the chain check.
    hash: Hash256,
    /// A block's hash and txids, worked out here rather than on the fold thread
    /// (a connect needs them; hashing every transaction was a tenth of the fold's time).
    txids: Option<(Hash256, Vec<Hash256>)>,
}

fn decode_record(seq: u64, bytes: &[u8]) -> StoreResult<Decoded> {
    let record =
        Record::decode(bytes).map_err(|e| StoreError::corrupt(format!("record {seq}: {e}")))?;
    let txids = match &record.event {
        Event::BlockAccepted(block) => Some((block.hash(), block.txids())),
        _ => None,
    };
    Ok(Decoded {
        record,
        hash: Record::hash_of_bytes(bytes),
        txids,
    })
}

fn raw(t: &Tables<'_>, seq: u64) -> StoreResult<Vec<u8>> {
    logtable::get(t.log(), Some(t.log_chunks()), seq)?
        .ok_or_else(|| StoreError::corrupt(format!("log record {seq} is missing")))
}

/// Digest of every row of a table, to compare two databases' projections.
fn table_digest<K: Key + 'static, V: Value + 'static>(
    db: &Database,
    def: TableDefinition<K, V>,
) -> StoreResult<[u8; 32]> {
    let txn = db.begin_read()?;
    let mut h = Sha256::new();
    let table = match txn.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(h.finalize().into()),
        Err(e) => return Err(e.into()),
    };
    for row in table.iter()? {
        let (k, v) = row?;
        let (kv, vv) = (k.value(), v.value());
        let kb = K::as_bytes(&kv);
        let vb = V::as_bytes(&vv);
        h.update((kb.as_ref().len() as u64).to_le_bytes());
        h.update(kb.as_ref());
        h.update((vb.as_ref().len() as u64).to_le_bytes());
        h.update(vb.as_ref());
    }
    Ok(h.finalize().into())
}

/// Digests of every projection table, by name.
pub(crate) fn projection_digests(db: &Database) -> StoreResult<Vec<(&'static str, [u8; 32])>> {
    use crate::store::*;
    Ok(vec![
        ("proj_meta", table_digest(db, PROJ_META)?),
        ("block_index", table_digest(db, BLOCK_INDEX)?),
        ("main_chain", table_digest(db, MAIN_CHAIN)?),
        ("utxo", table_digest(db, UTXO)?),
        ("addr_utxo", table_digest(db, ADDR_UTXO)?),
        ("balance", table_digest(db, BALANCE)?),
        ("tx_index", table_digest(db, TX_INDEX)?),
        ("addr_history", table_digest(db, ADDR_HISTORY)?),
        ("undo", table_digest(db, UNDO)?),
        ("mempool", table_digest(db, MEMPOOL)?),
        ("mempool_spends", table_digest(db, MEMPOOL_SPENDS)?),
        ("mempool_rate", table_digest(db, MEMPOOL_RATE)?),
        ("mempool_addr", table_digest(db, MEMPOOL_ADDR)?),
        ("side_blocks", table_digest(db, SIDE_BLOCKS)?),
    ])
}

/// Copies the log of `db` into a fresh in-memory database and rebuilds it there.
pub(crate) fn rebuild_copy(db: &Database) -> StoreResult<Database> {
    let copy = copy_log(db)?;
    rebuild(&copy)?;
    Ok(copy)
}

/// Rebuilds a copy in two commits, as a resumed rebuild would: the first `checkpoint`
/// records, then the rest from the projection cursor.
pub(crate) fn rebuild_copy_with_checkpoint(
    db: &Database,
    checkpoint: u64,
) -> StoreResult<Database> {
    let copy = copy_log(db)?;
    for until in [Some(checkpoint), None] {
        let txn = copy.begin_write()?;
        {
            let mut t = Tables::open(&txn)?;
            t.without_notifications();
            let until = until.unwrap_or(t.head().next_seq).min(t.head().next_seq);
            replay(&mut t, until)?;
            t.flush_meta()?;
        }
        txn.commit()?;
    }
    Ok(copy)
}

fn copy_log(db: &Database) -> StoreResult<Database> {
    copy_log_into(
        db,
        Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?,
    )
}

/// Copies the log and its head from `db` into the empty database `copy`, each record
/// stored as this build stores it (a long record of an older file is cut into pieces).
fn copy_log_into(db: &Database, copy: Database) -> StoreResult<Database> {
    let src = db.begin_read()?;
    let log = src.open_table(LOG)?;
    let chunks = logtable::open_chunks(&src)?;
    let head = src.open_table(crate::store::LOG_HEAD)?;
    let w = copy.begin_write()?;
    {
        let mut dst = w.open_table(LOG)?;
        let mut dst_chunks = w.open_table(LOG_CHUNKS)?;
        for row in log.iter()? {
            let (k, v) = row?;
            let bytes = logtable::record_bytes(chunks.as_ref(), k.value(), v.value())?;
            logtable::put(&mut dst, &mut dst_chunks, k.value(), &bytes)?;
        }
        let mut dst_head = w.open_table(crate::store::LOG_HEAD)?;
        for row in head.iter()? {
            let (k, v) = row?;
            dst_head.insert(k.value(), v.value())?;
        }
    }
    w.commit()?;
    Ok(copy)
}

/// The result of [`crate::Engine::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    /// Projection tables whose content differs from a rebuild (empty = all equal).
    pub mismatched: Vec<&'static str>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.mismatched.is_empty()
    }
}

/// Checks the hash chain, then compares every projection with a rebuild of a copy of the
/// log (in one pass, or resumed from `checkpoint` when given).
pub(crate) fn verify(db: &Database, checkpoint: Option<u64>) -> Result<VerifyReport, EngineError> {
    let txn = db.begin_read()?;
    let head = crate::store::read_head(&txn.open_table(crate::store::LOG_HEAD)?)?;
    let chunks = logtable::open_chunks(&txn)?;
    verify_chain(&txn.open_table(LOG)?, chunks.as_ref(), &head)
        .map_err(|e| StoreError::corrupt(format!("event log: {e}")))?;
    let copy = match checkpoint {
        None => rebuild_copy(db)?,
        Some(k) => rebuild_copy_with_checkpoint(db, k)?,
    };
    let ours = projection_digests(db)?;
    let theirs = projection_digests(&copy)?;
    let mismatched = ours
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
        .collect();
    Ok(VerifyReport {
        records: head.next_seq,
        mismatched,
    })
}

/// Checks the ledger file's page checksums (redb's `check_integrity`: every page of every
/// tree against the checksum its parent holds). Damage is [`EngineError::Damaged`]; a
/// repair redb made by itself (a torn last commit rolled back, a rebuilt allocator) is
/// said on stderr and the log and projections are checked next as usual.
pub(crate) fn check_file(db: &mut Database, path: &Path) -> Result<(), EngineError> {
    match db.check_integrity() {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(file = %path.display(), "redb repaired the ledger file");
            eprintln!(
                "{}: redb found and repaired damage in the file (a commit that was not \
                 completely written is rolled back)",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(EngineError::Damaged(format!(
            "{} fails its checksums ({e})",
            path.display()
        ))),
    }
}

/// File sizes before and after [`compact_file`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    pub before: u64,
    pub after: u64,
}

/// Gives a closed ledger file's free pages back to the filesystem (redb's `compact`:
/// pages are moved down and the file truncated, each step a durable commit, so a crash
/// part-way leaves a valid, merely less compact, file). Replays and rebuilds rewrite most
/// projection rows, leaving the file about twice its live size until compacted; the log
/// and every projection are unchanged by it.
pub fn compact_file(path: &Path) -> Result<Compaction, EngineError> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = size(path);
    let mut db = open_file(path, false)?;
    compact_until_done(&mut db, Duration::ZERO)
        .map_err(|e| EngineError::Open(format!("cannot compact {}: {e}", path.display())))?;
    drop(db);
    Ok(Compaction {
        before,
        after: size(path),
    })
}

/// Runs redb's `compact` until nothing moves (each call moves what it can, redb's own
/// advice), waiting up to `wait` for read snapshots still open to end.
pub(crate) fn compact_until_done(db: &mut Database, wait: Duration) -> Result<(), EngineError> {
    let deadline = Instant::now() + wait;
    loop {
        match db.compact() {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(redb::CompactionError::TransactionInProgress) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(redb::CompactionError::TransactionInProgress) => {
                return Err(EngineError::Unavailable(
                    "a read snapshot stayed open".into(),
                ))
            }
            Err(e) => return Err(StoreError::Redb(e.into()).into()),
        }
    }
}

/// Bytes of the pages redb has allocated (live data and its B-tree overhead): what a
/// compacted file would hold, near enough.
pub(crate) fn allocated_bytes(db: &Database) -> StoreResult<u64> {
    let txn = db.begin_write()?;
    let stats = txn.stats()?;
    txn.abort()?;
    Ok(stats.allocated_pages() * stats.page_size() as u64)
}

/// Whether a file of `file_bytes` holding `allocated` bytes of pages is worth compacting:
/// at least a third of it free, and at least `min_free` bytes.
pub(crate) fn worth_compacting(file_bytes: u64, allocated: u64, min_free: u64) -> bool {
    let free = file_bytes.saturating_sub(allocated);
    free >= min_free && free * 3 >= file_bytes
}

/// Opens an existing ledger file, checking its page checksums when `check` is set. redb
/// panics on some damaged files (a root pointing at the header page, for one) instead of
/// returning an error; such a panic is caught here and refused like any damage.
pub(crate) fn open_file(path: &Path, check: bool) -> Result<Database, EngineError> {
    open_file_with(&Database::builder(), path, check)
}

/// [`open_file`] through `builder` (its cache size).
pub(crate) fn open_file_with(
    builder: &redb::Builder,
    path: &Path,
    check: bool,
) -> Result<Database, EngineError> {
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut db = builder.open(path).map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => {
                EngineError::Damaged(format!("{}: {why}", path.display()))
            }
            e => EngineError::Open(format!("{}: {e}", path.display())),
        })?;
        if check {
            check_file(&mut db, path)?;
        }
        Ok(db)
    }));
    opened.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(EngineError::Damaged(format!(
            "{}: redb cannot read it ({what})",
            path.display()
        )))
    })
}

/// `bitplace-node rebuild` on a file whose pages fail their checksums: the log (checked
/// record by record along its hash chain) is copied into a new file, every projection
/// is rebuilt there, and the new file takes the old one's place; the damaged file is
/// kept next to it. Returns where it was kept, or None when the file was sound (then
/// nothing is done here: an ordinary rebuild follows). A damaged log is refused: the
/// projections cannot be rebuilt from it.
pub fn repair_file(path: &Path) -> Result<Option<PathBuf>, EngineError> {
    if open_file(path, true).is_ok() {
        return Ok(None);
    }
    // The failed check discarded the handle's allocator state; a fresh handle reads.
    let src = open_file(path, false).map_err(|e| {
        EngineError::Open(format!(
            "the event log cannot be read from the damaged file ({e}): restore a backup"
        ))
    })?;
    let fresh = path.with_extension("redb.rebuilding");
    let _ = std::fs::remove_file(&fresh);
    // A panic of redb's reading the damaged file refuses it like any damage.
    let copied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rebuild_from_log_of(&src, &fresh)
    }))
    .unwrap_or_else(|_| {
        Err(EngineError::Damaged(
            "redb cannot read the event log: restore a backup".into(),
        ))
    });
    close_without_writing(src);
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&fresh);
        return Err(e);
    }
    drop(copied);
    let kept = path.with_extension("redb.damaged");
    std::fs::rename(path, &kept)
        .and_then(|()| std::fs::rename(&fresh, path))
        .and_then(|()| match path.parent() {
            // The renames are durable only once the directory is synced.
            Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
            _ => Ok(()),
        })
        .map_err(|e| EngineError::Open(format!("cannot put the rebuilt ledger in place: {e}")))?;
    Ok(Some(kept))
}

/// Closes a handle on a damaged file without writing to it. A plain close commits the
/// handle's allocator state into the file, where redb may panic on the damage, and panic
/// again in a destructor while that first panic unwinds, which aborts the process
/// (`bitplace-node rebuild` died so on some flipped bits in release builds). redb writes
/// nothing for a handle dropped while its thread unwinds (the next open recovers the
/// file), so the handle is dropped inside an unwind begun for that purpose and caught at
/// once; `resume_unwind` runs no panic hook, so nothing is printed.
fn close_without_writing(db: Database) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _dropped_while_unwinding = db;
        std::panic::resume_unwind(Box::new("closing a damaged file"));
    }));
}

/// Copies the log of `src` into a new file at `fresh`, checks its hash chain there and
/// rebuilds every projection from it.
fn rebuild_from_log_of(src: &Database, fresh: &Path) -> Result<Database, EngineError> {
    copy_log_into(src, Database::builder().create(fresh)?)
        .map_err(|e| EngineError::Damaged(format!("the event log cannot be read: {e}")))
        .and_then(|db| {
            let txn = db.begin_read()?;
            let head = crate::store::read_head(&txn.open_table(LOG_HEAD)?)?;
            let chunks = logtable::open_chunks(&txn)?;
            verify_chain(&txn.open_table(LOG)?, chunks.as_ref(), &head).map_err(|e| {
                EngineError::Damaged(format!(
                    "the event log itself is damaged ({e}): restore a backup"
                ))
            })?;
            drop(txn);
            rebuild(&db)?;
            Ok(db)
        })
}
