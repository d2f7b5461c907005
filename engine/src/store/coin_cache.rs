//! The coin cache: the UTXO set's changes kept in memory past the commits that made
//! them, and written to redb's `utxo` table in key order every so often (Bitcoin Core's
//! `dbcache`). Why: a block of 10,000 transactions makes ~20,000 random B-tree writes to
//! the UTXO set, the largest part of the writer's fold, while most outputs live only a
//! few blocks (BENCHMARKS.md, sessions 19 and 30; the plan in docs/COIN_CACHE.md).
//!
//! The log stays the ground truth: every record is committed before it is answered, as
//! always. What changes is that redb's `utxo` table may be *behind* the other
//! projections: `PROJ_META.coins_cursor` names the record up to which it is folded
//! (`cursor` names it for every other table), and the records between are held here as
//! layers, one per write transaction. A ledger found behind at open (the node was killed
//! with a non-empty cache) has its projections rebuilt from the log
//! (`recovery::check_and_init`).
//!
//! Readers take the redb snapshot and the layer list together (the engine's lock) and
//! use the layers their snapshot has committed but not written back
//! ([`visible`]); the write-back holds that lock across its commit and the drop of the
//! layers it wrote.

use super::codec::UtxoEntry;
use super::staged::layer::{self, Layer};
use super::{Fixed, StoreError, StoreResult, OUTPOINT_LEN, PROJ_META, UTXO, UTXO_LEN};
use redb::{ReadableTable, WriteTransaction};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `PROJ_META` key of the record up to which redb's `utxo` table is folded (absent
/// in ledgers written before the cache: the table was always current).
pub(crate) const COINS_CURSOR_KEY: &str = "coins_cursor";

pub(crate) type UtxoKey = Fixed<OUTPOINT_LEN>;
pub(crate) type UtxoValue = Fixed<UTXO_LEN>;
/// One write transaction's changes to the UTXO set.
pub(crate) type UtxoLayer = Layer<UtxoKey, UtxoValue>;

/// A committed transaction's layer and the log position after it (its `cursor`).
#[derive(Clone)]
pub(crate) struct CachedLayer {
    pub rows: Arc<UtxoLayer>,
    pub end_seq: u64,
}

/// The layers not yet written back, oldest first.
#[derive(Default)]
pub(crate) struct CoinCache {
    layers: Vec<CachedLayer>,
    rows: usize,
}

impl CoinCache {
    /// Adds a transaction's layer; pushed *before* that transaction commits, so a reader
    /// whose snapshot holds the commit finds its layer (a reader whose snapshot does not
    /// ignores it by its position).
    pub fn push(&mut self, rows: UtxoLayer, end_seq: u64) {
        self.rows += rows.len();
        self.layers.push(CachedLayer {
            rows: Arc::new(rows),
            end_seq,
        });
    }

    /// Takes back the last layer pushed, whose transaction did not commit.
    pub fn pop(&mut self) {
        if let Some(layer) = self.layers.pop() {
            self.rows -= layer.rows.len();
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    pub fn layers(&self) -> &[CachedLayer] {
        &self.layers
    }

    /// The layers for the writer's next transaction to stage over.
    pub fn behind(&self) -> Vec<Arc<UtxoLayer>> {
        self.layers.iter().map(|l| l.rows.clone()).collect()
    }

    pub fn clear(&mut self) {
        self.layers.clear();
        self.rows = 0;
    }
}

/// The layers a reader's snapshot needs: committed in it (`end_seq` ≤ its `cursor`) and
/// not yet written back in it (`end_seq` > its `coins_cursor`).
pub(crate) fn visible(
    layers: &[CachedLayer],
    coins_cursor: u64,
    cursor: u64,
) -> Vec<Arc<UtxoLayer>> {
    layers
        .iter()
        .filter(|l| l.end_seq > coins_cursor && l.end_seq <= cursor)
        .map(|l| l.rows.clone())
        .collect()
}

/// `PROJ_META`'s coins cursor, or `cursor` where the ledger has none.
pub(crate) fn read_coins_cursor(
    t: &impl ReadableTable<&'static str, super::Bytes>,
    cursor: u64,
) -> StoreResult<u64> {
    match t.get(COINS_CURSOR_KEY)? {
        None => Ok(cursor),
        Some(v) => Ok(u64::from_le_bytes(v.value().try_into().map_err(|_| {
            StoreError::corrupt("projection metadata: coins cursor")
        })?)),
    }
}

/// Writes every layer into redb's `utxo` table, each key's newest change, in key order,
/// and marks the table current (`coins_cursor` = `cursor`). Returns the rows written.
/// The caller commits, then drops the layers.
pub(crate) fn write_back(txn: &WriteTransaction, layers: &[CachedLayer]) -> StoreResult<usize> {
    let mut merged: BTreeMap<[u8; OUTPOINT_LEN], Option<[u8; UTXO_LEN]>> = BTreeMap::new();
    for layer in layers {
        merged.extend(layer.rows.rows().iter().cloned());
    }
    let mut utxo = txn.open_table(UTXO)?;
    for (key, value) in &merged {
        match value {
            Some(value) => utxo.insert(key, value)?,
            None => utxo.remove(key)?,
        };
    }
    let mut meta = txn.open_table(PROJ_META)?;
    let cursor = super::read_proj_meta(&meta)?.cursor;
    meta.insert(COINS_CURSOR_KEY, cursor.to_le_bytes().as_slice())?;
    Ok(merged.len())
}

/// An unspent output as a reader sees it: the newest layer holding its key, else redb.
pub(crate) fn utxo(
    layers: &[Arc<UtxoLayer>],
    table: &impl ReadableTable<UtxoKey, UtxoValue>,
    key: &[u8; OUTPOINT_LEN],
) -> StoreResult<Option<UtxoEntry>> {
    row(layers, table, key)?
        .map(|b| UtxoEntry::decode(&b).ok_or_else(|| StoreError::corrupt("utxo row")))
        .transpose()
}

/// A `utxo` row's bytes as a reader sees them.
fn row(
    layers: &[Arc<UtxoLayer>],
    table: &impl ReadableTable<UtxoKey, UtxoValue>,
    key: &[u8; OUTPOINT_LEN],
) -> StoreResult<Option<[u8; UTXO_LEN]>> {
    Ok(match layer::newest(layers, key) {
        Some(row) => *row,
        None => table.get(key)?.map(|v| *v.value()),
    })
}

/// Walks the UTXO set as a reader sees it (redb's rows under the layers' changes), in
/// key order from `start`, while `f` answers true.
pub(crate) fn walk(
    layers: &[Arc<UtxoLayer>],
    table: &impl ReadableTable<UtxoKey, UtxoValue>,
    start: &[u8; OUTPOINT_LEN],
    mut f: impl FnMut(&[u8; OUTPOINT_LEN], &[u8; UTXO_LEN]) -> StoreResult<bool>,
) -> StoreResult<()> {
    let mut stored = table.range::<&[u8; OUTPOINT_LEN]>(start..)?;
    let mut next_stored = || -> StoreResult<Option<([u8; OUTPOINT_LEN], [u8; UTXO_LEN])>> {
        Ok(stored
            .next()
            .transpose()?
            .map(|(k, v)| (*k.value(), *v.value())))
    };
    let mut heads: Vec<&[_]> = layers.iter().map(|l| l.rows_from(start)).collect();
    let mut db = next_stored()?;
    loop {
        let cached = heads.iter().filter_map(|h| h.first().map(|r| r.0)).min();
        let key = match (db.map(|r| r.0), cached) {
            (None, None) => return Ok(()),
            (Some(d), Some(c)) => d.min(c),
            (Some(d), None) => d,
            (None, Some(c)) => c,
        };
        // The newest layer holding `key` decides, then redb; every head at `key` moves on.
        let mut value = None;
        let mut decided = false;
        for head in heads.iter_mut().rev() {
            if let Some(((k, v), rest)) = head.split_first() {
                if *k == key {
                    if !decided {
                        (value, decided) = (*v, true);
                    }
                    *head = rest;
                }
            }
        }
        if let Some((_, v)) = db.filter(|r| r.0 == key) {
            if !decided {
                value = Some(v);
            }
            db = next_stored()?;
        }
        if let Some(v) = value {
            if !f(&key, &v)? {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redb::{Database, ReadableDatabase};

    fn key(k: u8) -> [u8; OUTPOINT_LEN] {
        let mut key = [0; OUTPOINT_LEN];
        key[0] = k / 4;
        key[35] = k;
        key
    }

    fn value(v: u8) -> [u8; UTXO_LEN] {
        [v; UTXO_LEN]
    }

    type Changes = std::collections::BTreeMap<u8, Option<u8>>;

    proptest! {
        /// A walk answers redb's rows under the layers' changes, newest first, from
        /// the start key on, as a map with the changes applied in order would.
        #[test]
        fn walk_merges_the_layers_over_redb(
            stored in proptest::collection::btree_map(0u8..40, any::<u8>(), 0..20),
            layers in proptest::collection::vec(
                proptest::collection::btree_map(0u8..40, proptest::option::of(any::<u8>()), 0..12),
                0..4,
            ),
            start in 0u8..40,
            stop_after in 1usize..30,
        ) {
            let db = Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(UTXO).unwrap();
                for (k, v) in &stored {
                    t.insert(&key(*k), &value(*v)).unwrap();
                }
            }
            txn.commit().unwrap();
            let mut model: std::collections::BTreeMap<u8, u8> = stored.clone();
            for changes in &layers {
                for (k, v) in changes {
                    match v {
                        Some(v) => model.insert(*k, *v),
                        None => model.remove(k),
                    };
                }
            }
            let layers: Vec<Arc<UtxoLayer>> = layers
                .iter()
                .map(|changes: &Changes| {
                    let rows = changes.iter().map(|(k, v)| (key(*k), v.map(value))).collect();
                    Arc::new(Layer::from_sorted(rows))
                })
                .collect();
            let read = db.begin_read().unwrap();
            let table = read.open_table(UTXO).unwrap();
            let mut seen = Vec::new();
            walk(&layers, &table, &key(start), |k, v| {
                seen.push((k[35], v[0]));
                Ok(seen.len() < stop_after)
            })
            .unwrap();
            let expected: Vec<(u8, u8)> = model
                .range(start..)
                .map(|(k, v)| (*k, *v))
                .take(stop_after)
                .collect();
            prop_assert_eq!(&seen, &expected);
            for k in 0u8..40 {
                let got = row(&layers, &table, &key(k)).unwrap();
                prop_assert_eq!(got, model.get(&k).map(|v| value(*v)));
            }
        }
    }
}
