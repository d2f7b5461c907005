//! Rewriting sparse projection tables with full pages.
//!
//! Why: the writer inserts rows one block at a time, at random keys (txids, outpoints,
//! addresses), and redb splits a full leaf into two half-full ones, so after a sync the
//! projection tables hold about as many unused bytes inside their pages as rows (BENCHMARKS.md,
//! issue 15 item 3). Compaction cannot give that back: it moves pages, it does not
//! refill them. A table copied in key order through one cursor into a new table is built
//! from full leaves (redb packs such a run), and the old table's pages are then free for
//! compaction to return. The rows are unchanged, so this is invisible to every reader and
//! to `verify`; it runs in one write transaction, so a crash leaves the old table or the
//! new one, never half of either.

use super::*;
use redb::{Key, ReadableTableMetadata, TableHandle, Value};
use std::ops::Bound;

/// A table is rewritten when its pages hold at least this many unused bytes...
const MIN_SPARE_BYTES: u64 = 1 << 20;
/// ...and at least this fraction (1/N) of its rows' own bytes.
const SPARE_FRACTION: u64 = 4;

/// Rewrites every projection table that is sparse enough (see the constants); returns
/// the names of those rewritten.
pub(crate) fn repack_sparse_tables(txn: &WriteTransaction) -> StoreResult<Vec<&'static str>> {
    let repacked = [
        ("utxo", repack_if_sparse(txn, UTXO)?),
        ("addr_utxo", repack_if_sparse(txn, ADDR_UTXO)?),
        ("balance", repack_if_sparse(txn, BALANCE)?),
        ("tx_index", repack_if_sparse(txn, TX_INDEX)?),
        ("addr_history", repack_if_sparse(txn, ADDR_HISTORY)?),
        ("undo", repack_if_sparse(txn, UNDO)?),
        ("block_index", repack_if_sparse(txn, BLOCK_INDEX)?),
        ("main_chain", repack_if_sparse(txn, MAIN_CHAIN)?),
    ];
    Ok(repacked
        .into_iter()
        .filter_map(|(name, done)| done.then_some(name))
        .collect())
}

/// Whether a table with these page statistics is worth rewriting.
fn is_sparse(stored: u64, fragmented: u64) -> bool {
    fragmented >= MIN_SPARE_BYTES && fragmented * SPARE_FRACTION >= stored
}

fn repack_if_sparse<K: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> StoreResult<bool> {
    let stats = txn.open_table(def)?.stats()?;
    if !is_sparse(stats.stored_bytes(), stats.fragmented_bytes()) {
        return Ok(false);
    }
    repack(txn, def)?;
    Ok(true)
}

/// Copies `def` in key order into a fresh table through one cursor, then puts the copy
/// in its place.
pub(crate) fn repack<K: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> StoreResult<()> {
    let name = format!("{}.repacking", def.name());
    let copy = TableDefinition::<K, V>::new(&name);
    // A copy left by an interrupted call cannot exist (one transaction does it all), but
    // an empty start is what the cursor needs, so make sure.
    txn.delete_table(copy)?;
    {
        let src = txn.open_table(def)?;
        let mut dst = txn.open_table(copy)?;
        let mut cursor = dst.upper_bound_mut(Bound::<K::SelfType<'_>>::Unbounded)?;
        for row in src.iter()? {
            let (key, value) = row?;
            cursor
                .insert_before(key.value(), value.value())
                .map_err(redb::Error::from)?;
        }
        cursor.close().map_err(redb::Error::from)?;
    }
    txn.delete_table(def)?;
    txn.rename_table(copy, def)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    const T: TableDefinition<&[u8], u64> = TableDefinition::new("t");

    #[test]
    fn a_repacked_table_holds_the_same_rows_in_fewer_bytes() {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        // Random keys, one commit at a time: the half-full leaves of a node's writes.
        let keys: Vec<[u8; 32]> = (0u64..60_000)
            .map(|i| crate::hash::sha256(&i.to_le_bytes()))
            .collect();
        for chunk in keys.chunks(6_000) {
            let txn = db.begin_write().unwrap();
            let mut t = txn.open_table(T).unwrap();
            for (i, k) in chunk.iter().enumerate() {
                t.insert(k.as_slice(), i as u64).unwrap();
            }
            drop(t);
            txn.commit().unwrap();
        }
        let rows = |db: &Database| -> Vec<(Vec<u8>, u64)> {
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(T).unwrap();
            t.iter()
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value().to_vec(), v.value())
                })
                .collect()
        };
        let stats = |db: &Database| {
            let txn = db.begin_read().unwrap();
            let s = txn.open_table(T).unwrap().stats().unwrap();
            (s.stored_bytes(), s.fragmented_bytes())
        };
        let before = rows(&db);
        let (stored, sparse) = stats(&db);
        assert!(is_sparse(stored, sparse), "{sparse} spare of {stored}");
        let txn = db.begin_write().unwrap();
        repack(&txn, T).unwrap();
        txn.commit().unwrap();
        assert_eq!(rows(&db), before);
        let (_, after) = stats(&db);
        assert!(after * 10 < sparse, "{after} spare bytes left of {sparse}");
        assert!(!is_sparse(stored, after));
    }
}
