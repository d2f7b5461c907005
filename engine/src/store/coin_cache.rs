//! The coin cache: the changes to the UTXO set and to the address and transaction
//! indexes kept in memory past the commits that made them, and written to redb in key
//! order every so often (Bitcoin Core's `dbcache`, here with the indexes too). Why: a
//! block of 10,000 transactions makes ~20,000 random B-tree writes to the UTXO set and
//! as many to the indexes, most of the writer's fold and commit, while most outputs live
//! only a few blocks (BENCHMARKS.md, sessions 19 and 30; the plan in docs/COIN_CACHE.md).
//!
//! The log stays the ground truth: every record is committed before it is answered, as
//! always. What changes is that redb's *cached tables* (`utxo`, `addr_utxo`, `balance`,
//! `tx_index`, `addr_history`) may be behind the other projections:
//! `PROJ_META.coins_cursor` names the record up to which they are folded (`cursor` names
//! it for every other table), and the records between are held here as layers, one per
//! write transaction. A ledger found behind at open (the node was killed with a
//! non-empty cache) has its projections rebuilt from the log (`recovery::check_and_init`);
//! after a storage failure the ledger is reopened under the cache, which is kept where it
//! covers exactly the records redb's tables lack ([`CoinCache::coverage`]) and dropped
//! for a rebuild where it does not (a commit reported failed that persisted).
//!
//! Readers take the redb snapshot and the layer list together (the engine's lock) and
//! use the layers their snapshot has committed but not written back ([`visible`]); the
//! write-back holds that lock across its commit and the drop of the layers it wrote.

use super::codec::UtxoEntry;
use super::staged::layer::Layer;
use super::staged::{Staging, ValueBuf};
use super::{Bytes, Fixed, StoreError, StoreResult};
use super::{ADDR_HISTORY, ADDR_UTXO, BALANCE, PROJ_META, TX_INDEX, UTXO};
use super::{ADDR_OUTPOINT_LEN, HISTORY_KEY_LEN, HISTORY_VALUE_LEN, TXID_LEN, TX_POSITION_LEN};
use super::{OUTPOINT_LEN, UTXO_LEN};
use redb::{Key, ReadableTable, TableDefinition, Value, WriteTransaction};
use std::cmp::Ordering;
use std::sync::Arc;

/// The `PROJ_META` key of the record up to which redb's cached tables are folded (absent
/// in ledgers written before the cache: the tables were always current).
pub(crate) const COINS_CURSOR_KEY: &str = "coins_cursor";

pub(crate) type UtxoLayer = Layer<Fixed<OUTPOINT_LEN>, Fixed<UTXO_LEN>>;
pub(crate) type CoinIndexLayer = Layer<Fixed<ADDR_OUTPOINT_LEN>, ()>;
pub(crate) type BalanceLayer = Layer<Bytes, u64>;
pub(crate) type TxIndexLayer = Layer<Fixed<TXID_LEN>, Fixed<TX_POSITION_LEN>>;
pub(crate) type HistoryLayer = Layer<Fixed<HISTORY_KEY_LEN>, Fixed<HISTORY_VALUE_LEN>>;

/// One write transaction's changes to each cached table.
#[derive(Clone, Default)]
pub(crate) struct Layers {
    pub utxo: Arc<UtxoLayer>,
    pub addr_utxo: Arc<CoinIndexLayer>,
    pub balance: Arc<BalanceLayer>,
    pub tx_index: Arc<TxIndexLayer>,
    pub addr_history: Arc<HistoryLayer>,
}

impl Layers {
    pub fn rows(&self) -> usize {
        self.utxo.len()
            + self.addr_utxo.len()
            + self.balance.len()
            + self.tx_index.len()
            + self.addr_history.len()
    }
}

/// Each cached table's layers, oldest first: what a transaction stages over, or what
/// a reader reads through.
#[derive(Clone, Default)]
pub(crate) struct Stack {
    pub utxo: Vec<Arc<UtxoLayer>>,
    pub addr_utxo: Vec<Arc<CoinIndexLayer>>,
    pub balance: Vec<Arc<BalanceLayer>>,
    pub tx_index: Vec<Arc<TxIndexLayer>>,
    pub addr_history: Vec<Arc<HistoryLayer>>,
}

impl Stack {
    fn of<'a>(layers: impl Iterator<Item = &'a Layers>) -> Stack {
        let mut stack = Stack::default();
        for l in layers {
            stack.utxo.push(l.utxo.clone());
            stack.addr_utxo.push(l.addr_utxo.clone());
            stack.balance.push(l.balance.clone());
            stack.tx_index.push(l.tx_index.clone());
            stack.addr_history.push(l.addr_history.clone());
        }
        stack
    }
}

/// A committed transaction's layers and the log position after it (its `cursor`).
#[derive(Clone)]
pub(crate) struct CachedLayer {
    pub layers: Layers,
    pub end_seq: u64,
}

/// The layers not yet written back, oldest first.
#[derive(Default)]
pub(crate) struct CoinCache {
    layers: Vec<CachedLayer>,
    rows: usize,
    /// The coins cursor of redb's tables under the layers: the record they are folded
    /// up to, where the first layer starts.
    base: u64,
    /// The cursor after the last transaction committed (with a layer or not).
    end: u64,
}

impl CoinCache {
    /// Adds a transaction's layers; pushed *before* that transaction commits, so a
    /// reader whose snapshot holds the commit finds them (a reader whose snapshot does
    /// not ignores them by their position).
    pub fn push(&mut self, layers: Layers, end_seq: u64) {
        self.rows += layers.rows();
        self.layers.push(CachedLayer { layers, end_seq });
    }

    /// Takes back the last layers pushed, whose transaction did not commit.
    pub fn pop(&mut self) {
        if let Some(last) = self.layers.pop() {
            self.rows -= last.layers.rows();
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
    pub fn stack(&self) -> Stack {
        Stack::of(self.layers.iter().map(|l| &l.layers))
    }

    /// Notes a writer transaction committed, leaving the projections at `cursor`. One
    /// that left the cache empty also left redb's cached tables current
    /// (`Tables::flush_meta` moved the coins cursor with the cursor).
    pub fn committed(&mut self, cursor: u64) {
        self.end = cursor;
        if self.layers.is_empty() {
            self.base = cursor;
        }
    }

    /// Drops every layer: redb's tables are folded up to `cursor`, as is everything else
    /// (a write-back, an open).
    pub fn reset(&mut self, cursor: u64) {
        self.layers.clear();
        self.rows = 0;
        (self.base, self.end) = (cursor, cursor);
    }

    /// What the cache makes up for: (the coins cursor of redb's tables under the layers,
    /// the cursor after the last transaction committed over them).
    pub fn coverage(&self) -> (u64, u64) {
        (self.base, self.end)
    }
}

/// `PROJ_META`'s (coins cursor, cursor) in `db`, both zero for a ledger without
/// projections yet.
pub(crate) fn cursors(db: &redb::Database) -> StoreResult<(u64, u64)> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    let meta = match txn.open_table(PROJ_META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, 0)),
        Err(e) => return Err(e.into()),
    };
    let cursor = super::read_proj_meta(&meta)?.cursor;
    Ok((read_coins_cursor(&meta, cursor)?, cursor))
}

/// The layers a reader's snapshot needs: committed in it (`end_seq` ≤ its `cursor`) and
/// not yet written back in it (`end_seq` > its `coins_cursor`).
pub(crate) fn visible(layers: &[CachedLayer], coins_cursor: u64, cursor: u64) -> Stack {
    let seen = layers
        .iter()
        .filter(|l| l.end_seq > coins_cursor && l.end_seq <= cursor);
    Stack::of(seen.map(|l| &l.layers))
}

/// `PROJ_META`'s coins cursor, or `cursor` where the ledger has none.
pub(crate) fn read_coins_cursor(
    t: &impl ReadableTable<&'static str, Bytes>,
    cursor: u64,
) -> StoreResult<u64> {
    match t.get(COINS_CURSOR_KEY)? {
        None => Ok(cursor),
        Some(v) => Ok(u64::from_le_bytes(v.value().try_into().map_err(|_| {
            StoreError::corrupt("projection metadata: coins cursor")
        })?)),
    }
}

/// Writes every layer into redb, each key's newest change, table by table in key order,
/// and marks the tables current (`coins_cursor` = `cursor`). Returns the rows written
/// and that cursor. The caller commits, then drops the layers.
pub(crate) fn write_back(
    txn: &WriteTransaction,
    layers: &[CachedLayer],
) -> StoreResult<(usize, u64)> {
    let stack = Stack::of(layers.iter().map(|l| &l.layers));
    let rows = write_table(txn, UTXO, &stack.utxo)?
        + write_table(txn, ADDR_UTXO, &stack.addr_utxo)?
        + write_table(txn, BALANCE, &stack.balance)?
        + write_table(txn, TX_INDEX, &stack.tx_index)?
        + write_table(txn, ADDR_HISTORY, &stack.addr_history)?;
    let mut meta = txn.open_table(PROJ_META)?;
    let cursor = super::read_proj_meta(&meta)?.cursor;
    meta.insert(COINS_CURSOR_KEY, cursor.to_le_bytes().as_slice())?;
    Ok((rows, cursor))
}

/// One table's layers (oldest first) into redb: the newest change of each key, in key
/// order.
fn write_table<K: Key + Staging + 'static, V: Value + Staging + 'static>(
    txn: &WriteTransaction,
    def: TableDefinition<K, V>,
    layers: &[Arc<Layer<K, V>>],
) -> StoreResult<usize> {
    let mut rows: Vec<_> = layers.iter().flat_map(|l| l.rows().iter()).collect();
    // Stable: a key's changes stay oldest first, so the last of each run is the newest.
    rows.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut table = txn.open_table(def)?;
    let mut written = 0;
    for (i, (key, value)) in rows.iter().enumerate() {
        if rows
            .get(i + 1)
            .is_some_and(|next| next.0.as_ref() == key.as_ref())
        {
            continue;
        }
        let key = K::from_bytes(key.as_ref());
        match value {
            Some(value) => drop(table.insert(key, V::from_bytes(value.as_ref()))?),
            None => drop(table.remove(key)?),
        }
        written += 1;
    }
    Ok(written)
}

pub(crate) use super::staged::layer::get;

/// An unspent output as a reader sees it.
pub(crate) fn utxo(
    layers: &[Arc<UtxoLayer>],
    table: &impl ReadableTable<Fixed<OUTPOINT_LEN>, Fixed<UTXO_LEN>>,
    key: &[u8; OUTPOINT_LEN],
) -> StoreResult<Option<UtxoEntry>> {
    get(layers, table, key)?
        .map(|b| UtxoEntry::decode(&b).ok_or_else(|| StoreError::corrupt("utxo row")))
        .transpose()
}

/// Which way a [`walk`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Forward,
    Backward,
}

/// The row a walk in `direction` meets first in `rows`.
fn head_row<T>(rows: &[T], direction: Direction) -> Option<&T> {
    match direction {
        Direction::Forward => rows.first(),
        Direction::Backward => rows.last(),
    }
}

/// Walks a table as a reader sees it (redb's rows under the layers' changes) over the
/// keys from `start` to `end` (inclusive; no end: the table's), in `direction`, while `f`
/// answers true.
pub(crate) fn walk<K, V, E>(
    layers: &[Arc<Layer<K, V>>],
    table: &impl ReadableTable<K, V>,
    (start, end): (&[u8], Option<&[u8]>),
    direction: Direction,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
) -> Result<(), E>
where
    K: Key + Staging + 'static,
    V: Value + Staging + 'static,
    E: From<StoreError>,
{
    let range = match end {
        Some(end) => table.range(K::from_bytes(start)..=K::from_bytes(end)),
        None => table.range(K::from_bytes(start)..),
    }
    .map_err(StoreError::from)?;
    let mut stored: Box<dyn Iterator<Item = _>> = match direction {
        Direction::Forward => Box::new(range),
        Direction::Backward => Box::new(range.rev()),
    };
    let mut next_stored = || -> StoreResult<Option<(K::Buf, ValueBuf<V>)>> {
        Ok(stored.next().transpose()?.map(|(k, v)| {
            (
                K::buf(K::as_bytes(&k.value()).as_ref()),
                V::buf(V::as_bytes(&v.value()).as_ref()),
            )
        }))
    };
    // Each layer's rows within the bounds, consumed from the end the walk starts at.
    let mut heads: Vec<&[_]> = layers.iter().map(|l| l.rows_within(start, end)).collect();
    let first = |h| head_row(h, direction);
    // The key that comes first in the walk's direction.
    let earlier = |a: &[u8], b: &[u8]| match direction {
        Direction::Forward => a.cmp(b) == Ordering::Less,
        Direction::Backward => a.cmp(b) == Ordering::Greater,
    };
    let mut db = next_stored()?;
    loop {
        let mut key: Option<K::Buf> = db.as_ref().map(|r| r.0.clone());
        for head in &heads {
            if let Some((k, _)) = first(head) {
                if key
                    .as_ref()
                    .is_none_or(|key| earlier(k.as_ref(), key.as_ref()))
                {
                    key = Some(k.clone());
                }
            }
        }
        let Some(key) = key else { return Ok(()) };
        // The newest layer holding `key` decides, then redb; every head at `key` moves on.
        let mut value: Option<Option<ValueBuf<V>>> = None;
        for head in heads.iter_mut().rev() {
            if let Some((k, v)) = first(head) {
                if k.as_ref() == key.as_ref() {
                    value.get_or_insert_with(|| v.clone());
                    *head = match direction {
                        Direction::Forward => &head[1..],
                        Direction::Backward => &head[..head.len() - 1],
                    };
                }
            }
        }
        if db.as_ref().is_some_and(|r| r.0.as_ref() == key.as_ref()) {
            let (_, v) = db.take().expect("just matched");
            value.get_or_insert(Some(v));
            db = next_stored()?;
        }
        if let Some(Some(v)) = value {
            if !f(key.as_ref(), v.as_ref())? {
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
    use std::collections::BTreeMap;

    fn key(k: u8) -> [u8; OUTPOINT_LEN] {
        let mut key = [0; OUTPOINT_LEN];
        key[0] = k / 4;
        key[35] = k;
        key
    }

    fn value(v: u8) -> [u8; UTXO_LEN] {
        [v; UTXO_LEN]
    }

    proptest! {
        /// A walk answers redb's rows under the layers' changes (the newest layer
        /// holding a key decides), within its bounds, in either direction, as a map
        /// with the changes applied in order would; a lookup answers as that map.
        #[test]
        fn walk_merges_the_layers_over_redb(
            stored in proptest::collection::btree_map(0u8..40, any::<u8>(), 0..20),
            changes in proptest::collection::vec(
                proptest::collection::btree_map(0u8..40, proptest::option::of(any::<u8>()), 0..12),
                0..4,
            ),
            start in 0u8..40,
            end in proptest::option::of(0u8..40),
            backward in any::<bool>(),
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
            let mut model: BTreeMap<u8, u8> = stored.clone();
            for layer in &changes {
                for (k, v) in layer {
                    match v {
                        Some(v) => model.insert(*k, *v),
                        None => model.remove(k),
                    };
                }
            }
            let layers: Vec<Arc<UtxoLayer>> = changes
                .iter()
                .map(|layer| {
                    let rows = layer.iter().map(|(k, v)| (key(*k), v.map(value))).collect();
                    Arc::new(Layer::from_sorted(rows))
                })
                .collect();
            let read = db.begin_read().unwrap();
            let table = read.open_table(UTXO).unwrap();
            let (start_key, end_key) = (key(start), end.map(key));
            let direction = if backward { Direction::Backward } else { Direction::Forward };
            let mut seen = Vec::new();
            walk::<_, _, StoreError>(&layers, &table, (&start_key, end_key.as_ref().map(|k| k.as_slice())), direction, |k, v| {
                seen.push((k[35], v[0]));
                Ok(seen.len() < stop_after)
            })
            .unwrap();
            let within = model.iter().filter(|(k, _)| **k >= start && end.is_none_or(|e| **k <= e));
            let mut expected: Vec<(u8, u8)> = within.map(|(k, v)| (*k, *v)).collect();
            if backward {
                expected.reverse();
            }
            expected.truncate(stop_after);
            prop_assert_eq!(&seen, &expected);
            for k in 0u8..40 {
                let got = get(&layers, &table, &key(k)).unwrap();
                prop_assert_eq!(got, model.get(&k).map(|v| value(*v)));
            }
        }
    }
}
