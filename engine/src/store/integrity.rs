//! Checks that the projections the node trusts still say what the log says.
//!
//! redb checksums every page (verified at open by `Engine::open`), but a projection row
//! can also be wrong with a valid checksum (written by a bug or by another tool), and a
//! page can go bad on disk while the node runs. So the values consensus relies on are
//! checked against the log or against each other:
//!
//! - on every read of a block through the index ([`check_block_meta`]): the record the
//!   index points at must be that block (hash, the whole header, size, tx count);
//! - at open ([`check_projections`]): cursor = log head; the main chain is linked from
//!   genesis to the tip with heights, parents and chainwork = parent's + work(bits) on
//!   every row; the tip's record is its block; the UTXO-set hash and count recomputed
//!   from the UTXO table equal the ones kept in `proj_meta`; every balance row equals
//!   the sum of its address's unspent outputs; there is one side-block row per indexed
//!   block off the main chain (a ledger written before that table existed has none, so
//!   it is rebuilt once). The UTXO-set and balance checks are left out while redb's
//!   cached tables are behind (a reopen after a storage failure under a coin cache that
//!   makes up the difference, `store::coin_cache`): they hold for the tables with the
//!   cache, and are made at the next open.
//!
//! A mismatch is [`StoreError::Damaged`]: never served, and repaired by rebuilding the
//! projections from the log.

use super::codec::{BlockMeta, UtxoEntry};
use super::{read, read_head, read_proj_meta, read_record, StoreError, StoreResult};
use super::{Fixed, OUTPOINT_LEN, UTXO_LEN};
use super::{BALANCE, BLOCK_INDEX, LOG, LOG_HEAD, MAIN_CHAIN, PROJ_META, SIDE_BLOCKS, UTXO};
use crate::block::Block;
use crate::encoding::Reader;
use crate::events::Event;
use crate::hash::Hash256;
use crate::header::{BlockHeader, HEADER_SIZE};
use primitive_types::U256;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::collections::HashMap;

/// The block a block-index row points at must be the block the row describes.
pub fn check_block_meta(meta: &BlockMeta, block: &Block) -> StoreResult<()> {
    let h = &block.header;
    let same = block.hash() == meta.hash
        && *h == meta.header()
        && block.txs.len() == meta.tx_count as usize
        && block.size() == meta.size as usize;
    described_by(meta, same)
}

/// [`check_block_meta`] over a block's encoding, without decoding its transactions: the
/// same hash, whole header, transaction count and size, for the reads that want the
/// bytes or the summary rather than the transactions.
pub fn check_block_bytes(meta: &BlockMeta, bytes: &[u8]) -> StoreResult<()> {
    let header = bytes.get(..HEADER_SIZE).and_then(|h| h.try_into().ok());
    let header = header.map(BlockHeader::from_bytes);
    let count = bytes
        .get(HEADER_SIZE..)
        .and_then(|rest| Reader::new(rest).compact_size().ok());
    let same = header.is_some_and(|h| h.hash() == meta.hash && h == meta.header())
        && count == Some(u64::from(meta.tx_count))
        && bytes.len() == meta.size as usize;
    described_by(meta, same)
}

fn described_by(meta: &BlockMeta, same: bool) -> StoreResult<()> {
    if same {
        Ok(())
    } else {
        Err(StoreError::damaged(format!(
            "the block index row of {} does not describe the block in log record {}",
            meta.hash, meta.seq
        )))
    }
}

/// Every check listed in the module comment, on a read snapshot of `db`.
pub fn check_projections(db: &Database) -> StoreResult<()> {
    let txn = db.begin_read()?;
    let head = read_head(&txn.open_table(LOG_HEAD)?)?;
    let meta = read_proj_meta(&txn.open_table(PROJ_META)?)?;
    if meta.cursor != head.next_seq {
        return Err(StoreError::damaged(format!(
            "the projections say {} records are folded, the log has {}",
            meta.cursor, head.next_seq
        )));
    }
    let index = txn.open_table(BLOCK_INDEX)?;
    let main = txn.open_table(MAIN_CHAIN)?;
    let tip = check_main_chain(&index, &main, &meta.tip)?;
    check_side_blocks(&txn, index.len()?, main.len()?)?;
    let chunks = super::logtable::open_chunks(&txn)?;
    match read_record(&txn.open_table(LOG)?, chunks.as_ref(), tip.seq)?.event {
        Event::BlockAccepted(b) => check_block_meta(&tip, &b)?,
        _ => return Err(StoreError::damaged("the tip's log record is not a block")),
    }
    let proj_meta = txn.open_table(PROJ_META)?;
    if super::coin_cache::read_coins_cursor(&proj_meta, meta.cursor)? < meta.cursor {
        return Ok(());
    }
    check_utxo_set(&txn.open_table(UTXO)?, &txn.open_table(BALANCE)?, &meta)
}

/// Walks the main chain from genesis: row `h` names a block of height `h` whose parent is
/// row `h - 1` and whose chainwork is its parent's plus the work of its bits; the last
/// row is the tip. Returns the tip's index row.
fn check_main_chain(
    index: &impl ReadableTable<super::Bytes, super::Bytes>,
    main: &impl ReadableTable<u64, super::Bytes>,
    tip: &Hash256,
) -> StoreResult<BlockMeta> {
    let mut prev: Option<BlockMeta> = None;
    for row in main.iter()? {
        let (k, v) = row?;
        let height = k.value();
        let hash = Hash256(
            v.value()
                .try_into()
                .map_err(|_| StoreError::damaged(format!("main chain row {height}")))?,
        );
        let m = read::block_meta(index, &hash)?.ok_or_else(|| {
            StoreError::damaged(format!("main chain block {hash} is not in the index"))
        })?;
        let (want_height, want_prev, parent_work) = match &prev {
            None => (0, Hash256::ZERO, U256::zero()),
            Some(p) => (p.height + 1, p.hash, p.chainwork),
        };
        let work = m
            .bits
            .work()
            .map_err(|_| StoreError::damaged(format!("bits of block {hash}")))?;
        if height != want_height
            || m.height != height
            || m.prev != want_prev
            || m.chainwork != parent_work.saturating_add(work)
        {
            return Err(StoreError::damaged(format!(
                "block index row of main chain block {height} ({hash}) does not follow its parent"
            )));
        }
        prev = Some(m);
    }
    match prev {
        Some(m) if m.hash == *tip => Ok(m),
        _ => Err(StoreError::damaged(
            "the tip is not the end of the main chain",
        )),
    }
}

/// The side-block rows (the side-chain budget's accounting) must number the indexed
/// blocks off the main chain.
fn check_side_blocks(txn: &redb::ReadTransaction, indexed: u64, main: u64) -> StoreResult<()> {
    let rows = match txn.open_table(SIDE_BLOCKS) {
        Ok(t) => t.len()?,
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    if rows != indexed.saturating_sub(main) {
        return Err(StoreError::damaged(format!(
            "{rows} side-block rows for {} blocks off the main chain",
            indexed.saturating_sub(main)
        )));
    }
    Ok(())
}

/// Recomputes the UTXO-set hash, count and per-address balances from the UTXO table.
fn check_utxo_set(
    utxo: &impl ReadableTable<Fixed<OUTPOINT_LEN>, Fixed<UTXO_LEN>>,
    balance: &impl ReadableTable<super::Bytes, u64>,
    meta: &super::ProjMeta,
) -> StoreResult<()> {
    let (mut sum, mut count) = (U256::zero(), 0u64);
    let mut balances: HashMap<Vec<u8>, u64> = HashMap::new();
    for row in utxo.iter()? {
        let (k, v) = row?;
        let key: [u8; 36] = *k.value();
        let entry = UtxoEntry::decode(v.value()).ok_or_else(|| StoreError::damaged("a UTXO"))?;
        sum = sum
            .overflowing_add(super::fold::utxo_digest(&key, &entry))
            .0;
        count += 1;
        let b = balances.entry(entry.address.0.to_vec()).or_default();
        *b = b
            .checked_add(entry.amount)
            .ok_or_else(|| StoreError::damaged("UTXO amounts overflow"))?;
    }
    if sum != meta.utxo_hash || count != meta.utxo_count {
        return Err(StoreError::damaged(
            "the UTXO-set hash or count differs from the UTXO table",
        ));
    }
    // A zero balance has no row (outputs of amount 0 leave none).
    balances.retain(|_, v| *v != 0);
    let mut rows = 0usize;
    for row in balance.iter()? {
        let (k, v) = row?;
        rows += 1;
        if balances.get(k.value()) != Some(&v.value()) {
            return Err(StoreError::damaged(
                "a balance differs from its address's unspent outputs",
            ));
        }
    }
    if rows != balances.len() {
        return Err(StoreError::damaged(
            "an address with unspent outputs has no balance row",
        ));
    }
    Ok(())
}
