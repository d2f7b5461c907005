//! The staging map of a staged table: its rows (a key and its change) kept densely in
//! the order staged, found through a hash table of their positions.
//!
//! Why: a hash map of the rows themselves spread the 1M-tx rebuild's UTXO staging, a
//! million 70-byte rows, over a 147 MB table, so nearly every insert and probe missed
//! the cache (the fold thread's UTXO inserts and removals were 1.2 s of its 1.5 s, and
//! the fold thread is that rebuild's critical path). Here the hash table holds 4-byte
//! positions (8 MB for two million slots: within the last-level cache), a new row is
//! appended (sequential writes), and a probe reads a row only where the table's 7-bit tag
//! already matched. A removal moves the last row into the hole, so the rows stay dense
//! and a drain or a walk reads nothing but live rows.

use super::{Staging, ValueBuf};
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// A row: its key and its change (`Some` a new value, `None` a deletion).
pub type Row<K, V> = (<K as Staging>::Buf, Option<ValueBuf<V>>);

/// Rows keyed by their key bytes; at most one per key.
pub struct Pending<K: Staging, V: Staging> {
    rows: Vec<Row<K, V>>,
    /// Positions in `rows`, hashed by the key at that position.
    index: HashTable<u32>,
    /// foldhash, not SipHash (hashing the keys was a tenth of a replay's time with the
    /// default hasher), randomly seeded (keys come from the network: no chosen collisions).
    hasher: foldhash::fast::RandomState,
}

impl<K: Staging, V: Staging> Default for Pending<K, V> {
    fn default() -> Self {
        Pending {
            rows: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<K: Staging, V: Staging> Pending<K, V> {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Where `key`'s row is.
    fn position(&self, key: &[u8]) -> Option<usize> {
        let rows = &self.rows;
        let found = self
            .index
            .find(self.hash(key), |&at| rows[at as usize].0.as_ref() == key);
        found.map(|&at| at as usize)
    }

    /// The change staged for `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Option<ValueBuf<V>>> {
        self.position(key).map(|at| &self.rows[at].1)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Option<ValueBuf<V>>> {
        self.position(key).map(|at| &mut self.rows[at].1)
    }

    /// Stages `value` for `key`; returns the change it replaced.
    pub fn insert(
        &mut self,
        key: K::Buf,
        value: Option<ValueBuf<V>>,
    ) -> Option<Option<ValueBuf<V>>> {
        let hash = self.hash(key.as_ref());
        let Pending {
            rows,
            index,
            hasher,
        } = self;
        let found = index.find(hash, |&at| rows[at as usize].0 == key);
        if let Some(&at) = found {
            return Some(std::mem::replace(&mut rows[at as usize].1, value));
        }
        let at = u32::try_from(rows.len()).expect("staged rows are bounded far below 2^32");
        rows.push((key, value));
        index.insert_unique(hash, at, |&i| hasher.hash_one(rows[i as usize].0.as_ref()));
        None
    }

    /// Takes `key`'s row out; returns its change.
    pub fn remove(&mut self, key: &[u8]) -> Option<Option<ValueBuf<V>>> {
        let hash = self.hash(key);
        let Pending {
            rows,
            index,
            hasher,
        } = self;
        let entry = index.find_entry(hash, |&at| rows[at as usize].0.as_ref() == key);
        let (at, _) = entry.ok()?.remove();
        let at = at as usize;
        let last = rows.len() - 1;
        if at != last {
            // The last row moves into the hole: its position in the index follows it.
            let moved = hasher.hash_one(rows[last].0.as_ref());
            let slot = index
                .find_mut(moved, |&i| i as usize == last)
                .expect("every row is indexed");
            *slot = at as u32;
        }
        Some(rows.swap_remove(at).1)
    }

    /// Makes room for `additional` more rows.
    pub fn reserve(&mut self, additional: usize) {
        let Pending {
            rows,
            index,
            hasher,
        } = self;
        rows.reserve(additional);
        index.reserve(additional, |&i| {
            hasher.hash_one(rows[i as usize].0.as_ref())
        });
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.index.clear();
    }

    /// Every row, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Row<K, V>> {
        self.rows.iter()
    }

    /// Every row taken out, in no particular order; the staging is left empty (its
    /// allocations kept for the next rows).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Row<K, V>> {
        self.index.clear();
        self.rows.drain(..)
    }
}

impl<K: Staging, V: Staging> Extend<Row<K, V>> for Pending<K, V> {
    fn extend<I: IntoIterator<Item = Row<K, V>>>(&mut self, rows: I) {
        for (key, value) in rows {
            self.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    type Map = Pending<&'static [u8; 2], u64>;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, Option<u64>),
        Remove(u8),
        Get(u8),
        Clear,
        Reserve(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..32, proptest::option::of(any::<u64>())).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0u8..32).prop_map(Op::Remove),
            2 => (0u8..32).prop_map(Op::Get),
            1 => Just(Op::Clear),
            1 => any::<u8>().prop_map(Op::Reserve),
        ]
    }

    fn key(k: u8) -> [u8; 2] {
        [k, k.wrapping_mul(7)]
    }

    proptest! {
        /// Every answer and the final rows are those of a hash map of the rows.
        #[test]
        fn behaves_as_a_map_of_rows(ops in proptest::collection::vec(op(), 0..200)) {
            let mut ours = Map::default();
            let mut model: HashMap<[u8; 2], Option<[u8; 8]>> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let v = v.map(u64::to_le_bytes);
                        prop_assert_eq!(ours.insert(key(k), v), model.insert(key(k), v));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(ours.remove(&key(k)), model.remove(&key(k)));
                    }
                    Op::Get(k) => {
                        prop_assert_eq!(ours.get(&key(k)), model.get(&key(k)));
                        prop_assert_eq!(ours.get_mut(&key(k)).copied(), model.get(&key(k)).copied());
                    }
                    Op::Clear => {
                        ours.clear();
                        model.clear();
                    }
                    Op::Reserve(n) => ours.reserve(n as usize),
                }
                prop_assert_eq!(ours.len(), model.len());
                prop_assert_eq!(ours.is_empty(), model.is_empty());
            }
            let mut rows: Vec<_> = ours.iter().cloned().collect();
            let mut drained: Vec<_> = ours.drain().collect();
            let mut expected: Vec<_> = model.into_iter().collect();
            rows.sort();
            drained.sort();
            expected.sort();
            prop_assert_eq!(&rows, &expected);
            prop_assert_eq!(&drained, &expected);
            prop_assert!(ours.is_empty() && ours.get(&key(0)).is_none());
        }
    }
}
