//! How log records sit in redb: the record layout is `events::Record`'s; this is only
//! where its bytes go.
//!
//! A record up to [`CHUNK_BYTES`] long is one `LOG` value. A longer one (a block of
//! thousands of transactions) is cut into [`CHUNK_BYTES`] pieces in `LOG_CHUNKS`, keyed by
//! (sequence, piece), and its `LOG` value is a marker: the record's length, 8 bytes (no
//! record is that short). Why: redb gives a value larger than a page a run of pages
//! rounded up to a power of two, so an 8 MB block took 8–16 MB, a third of the log's
//! bytes went to the rounding, and such runs pinned the end of the file: redb's
//! compaction moves pages only into free runs of their own size, and it stops at the
//! first it cannot move. Page-sized pieces fill their pages and move anywhere.
//!
//! The records and their hash chain are unchanged, so a log written before this layout
//! (every record one value) reads the same; only what this build writes is cut.

use super::{Bytes, StoreError, StoreResult};
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, Table, TableDefinition};
use std::borrow::Cow;

/// The pieces of records longer than [`CHUNK_BYTES`]: (sequence, piece index) → bytes.
pub(crate) const LOG_CHUNKS: TableDefinition<(u64, u32), Bytes> =
    TableDefinition::new("log_chunks");

/// The longest record stored whole, and the size of a piece: one piece fills a 4 KiB
/// page with its key and redb's per-leaf and per-entry headers (4096 − 96 to spare).
pub(crate) const CHUNK_BYTES: usize = 4000;

/// Room reserved at most when putting a record together (a block is at most 8 MB).
const MAX_RECORD_BYTES: usize = 16 << 20;

/// The length of a `LOG` value that marks a record stored in pieces (shorter than any
/// record: a record holds its sequence and its predecessor's hash).
const MARKER_LEN: usize = 8;

/// Writes the record `bytes` at `seq`: whole, or in pieces behind a marker.
pub(crate) fn put(
    log: &mut Table<'_, u64, Bytes>,
    chunks: &mut Table<'_, (u64, u32), Bytes>,
    seq: u64,
    bytes: &[u8],
) -> StoreResult<()> {
    if bytes.len() <= CHUNK_BYTES {
        log.insert(seq, bytes)?;
        return Ok(());
    }
    for (piece, part) in bytes.chunks(CHUNK_BYTES).enumerate() {
        chunks.insert((seq, piece as u32), part)?;
    }
    log.insert(seq, (bytes.len() as u64).to_le_bytes().as_slice())?;
    Ok(())
}

/// The record at `seq` whose `LOG` value is `value`: the value itself, or the record
/// put together from its pieces. Pieces that are missing, out of order or of another
/// total length than the marker says are corruption, as a damaged record is.
pub(crate) fn record_bytes<'v>(
    chunks: Option<&impl ReadableTable<(u64, u32), Bytes>>,
    seq: u64,
    value: &'v [u8],
) -> StoreResult<Cow<'v, [u8]>> {
    if value.len() != MARKER_LEN {
        return Ok(Cow::Borrowed(value));
    }
    let len = u64::from_le_bytes(value.try_into().expect("8 bytes"));
    let damaged = |why: &str| StoreError::corrupt(format!("log record {seq}: {why}"));
    let chunks = chunks.ok_or_else(|| damaged("its pieces are missing"))?;
    let len = usize::try_from(len).map_err(|_| damaged("its length is impossible"))?;
    if len <= CHUNK_BYTES {
        return Err(damaged("a marker for a record short enough to be whole"));
    }
    // The marker may be damaged: reserve no more than a record can hold.
    let mut bytes = Vec::with_capacity(len.min(MAX_RECORD_BYTES));
    for (expected, row) in chunks.range((seq, 0)..=(seq, u32::MAX))?.enumerate() {
        let (key, part) = row?;
        let part = part.value();
        let last = bytes.len() + part.len() >= len;
        if key.value().1 as usize != expected
            || part.is_empty()
            || part.len() > CHUNK_BYTES
            || (!last && part.len() != CHUNK_BYTES)
        {
            return Err(damaged("its pieces are out of order"));
        }
        bytes.extend_from_slice(part);
        if bytes.len() > len {
            return Err(damaged("its pieces are longer than the record"));
        }
    }
    if bytes.len() != len {
        return Err(damaged("its pieces are shorter than the record"));
    }
    Ok(Cow::Owned(bytes))
}

/// The pieces table, read-only.
pub(crate) type Chunks = ReadOnlyTable<(u64, u32), Bytes>;

/// The pieces table in a read snapshot; `None` in a file no build of this layout has
/// written to yet (it holds every record whole).
pub(crate) fn open_chunks(txn: &ReadTransaction) -> StoreResult<Option<Chunks>> {
    match txn.open_table(LOG_CHUNKS) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The record at `seq`, or `None` when the log has none there.
pub(crate) fn get(
    log: &impl ReadableTable<u64, Bytes>,
    chunks: Option<&impl ReadableTable<(u64, u32), Bytes>>,
    seq: u64,
) -> StoreResult<Option<Vec<u8>>> {
    let Some(value) = log.get(seq)? else {
        return Ok(None);
    };
    Ok(Some(record_bytes(chunks, seq, value.value())?.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    const LOG: TableDefinition<u64, Bytes> = TableDefinition::new("log");

    fn db() -> Database {
        Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap()
    }

    fn write(db: &Database, records: &[(u64, Vec<u8>)]) {
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(LOG).unwrap();
            let mut chunks = txn.open_table(LOG_CHUNKS).unwrap();
            for (seq, bytes) in records {
                put(&mut log, &mut chunks, *seq, bytes).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn read(db: &Database, seq: u64) -> StoreResult<Option<Vec<u8>>> {
        let txn = db.begin_read().unwrap();
        let log = txn.open_table(LOG).unwrap();
        let chunks = txn.open_table(LOG_CHUNKS).unwrap();
        get(&log, Some(&chunks), seq)
    }

    fn record(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn records_of_every_length_read_back_whole() {
        let db = db();
        let lens = [41, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES, 1_700_001];
        let records: Vec<_> = lens
            .iter()
            .enumerate()
            .map(|(i, len)| (i as u64, record(*len, i as u8)))
            .collect();
        write(&db, &records);
        for (seq, bytes) in &records {
            assert_eq!(read(&db, *seq).unwrap().as_ref(), Some(bytes));
        }
        assert_eq!(read(&db, 99).unwrap(), None);
        // Only the long ones were cut, into page-sized pieces.
        let txn = db.begin_read().unwrap();
        let chunks = txn.open_table(LOG_CHUNKS).unwrap();
        let pieces = chunks.iter().unwrap().count();
        assert_eq!(pieces, 2 + 2 + 1_700_001usize.div_ceil(CHUNK_BYTES));
    }

    #[test]
    fn a_missing_or_altered_piece_is_corruption() {
        type Damage = fn(&mut Table<'_, (u64, u32), Bytes>);
        let cases: [(&str, Damage); 4] = [
            ("a piece gone", |c| {
                c.remove((0, 1)).unwrap();
            }),
            ("the last piece gone", |c| {
                c.remove((0, 2)).unwrap();
            }),
            ("a piece shortened", |c| {
                c.insert((0, 0), [7u8; 10].as_slice()).unwrap();
            }),
            ("a piece added", |c| {
                c.insert((0, 3), [7u8; 10].as_slice()).unwrap();
            }),
        ];
        // A marker whose length was flipped to something huge is refused, not allocated.
        let huge = db();
        write(&huge, &[(0, record(2 * CHUNK_BYTES + 5, 1))]);
        let txn = huge.begin_write().unwrap();
        txn.open_table(LOG)
            .unwrap()
            .insert(0, (1u64 << 60).to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert!(matches!(read(&huge, 0), Err(StoreError::Corrupt(_))));
        for (what, damage) in cases {
            let db = db();
            write(&db, &[(0, record(2 * CHUNK_BYTES + 5, 1))]);
            let txn = db.begin_write().unwrap();
            damage(&mut txn.open_table(LOG_CHUNKS).unwrap());
            txn.commit().unwrap();
            assert!(
                matches!(read(&db, 0), Err(StoreError::Corrupt(_))),
                "{what} was not refused"
            );
        }
    }
}
