//! A frozen, sorted set of one write transaction's changes to a staged table, kept in
//! memory after that transaction commits (the coin cache, `store::coin_cache`): the
//! staged table of a later transaction, and a reader, look through the layers newest
//! first before they look in redb.

use super::pending::Row;
use super::{Staging, ValueBuf};
use crate::store::StoreResult;
use redb::{Key, ReadableTable, Value};
use std::sync::Arc;

/// Rows sorted by key bytes, each key once: a value, or `None` for a row deleted.
pub struct Layer<K: Staging, V: Staging> {
    rows: Vec<Row<K, V>>,
}

impl<K: Staging, V: Staging> Default for Layer<K, V> {
    fn default() -> Self {
        Layer { rows: Vec::new() }
    }
}

impl<K: Staging, V: Staging> Layer<K, V> {
    /// A layer of `rows`, which must be in key order with each key once.
    pub(crate) fn from_sorted(rows: Vec<Row<K, V>>) -> Self {
        debug_assert!(K::BYTE_ORDERED, "a layer is searched by key bytes");
        debug_assert!(
            rows.windows(2).all(|w| w[0].0.as_ref() < w[1].0.as_ref()),
            "a layer's rows are sorted and unique"
        );
        Layer { rows }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The change this layer holds for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&Option<ValueBuf<V>>> {
        self.rows
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| &self.rows[i].1)
    }

    /// The rows whose keys lie from `start` to `end` (inclusive; no end: all the rest),
    /// in key order.
    pub fn rows_within(&self, start: &[u8], end: Option<&[u8]>) -> &[Row<K, V>] {
        let first = self.rows.partition_point(|(k, _)| k.as_ref() < start);
        let last = end.map_or(self.rows.len(), |end| {
            self.rows.partition_point(|(k, _)| k.as_ref() <= end)
        });
        &self.rows[first..last.max(first)]
    }

    pub fn rows(&self) -> &[Row<K, V>] {
        &self.rows
    }
}

/// The newest change to `key` in `layers` (oldest first), if any layer holds one.
pub fn newest<'a, K: Staging, V: Staging>(
    layers: &'a [Arc<Layer<K, V>>],
    key: &[u8],
) -> Option<&'a Option<ValueBuf<V>>> {
    layers.iter().rev().find_map(|layer| layer.get(key))
}

/// A row as seen through `layers` (oldest first): the newest layer holding `key`, else
/// `table`. What a cached table's writer and the readers both look up.
pub fn get<K: Key + Staging + 'static, V: Value + Staging + 'static>(
    layers: &[Arc<Layer<K, V>>],
    table: &impl ReadableTable<K, V>,
    key: &[u8],
) -> StoreResult<Option<ValueBuf<V>>> {
    Ok(match newest(layers, key) {
        Some(row) => row.clone(),
        None => table
            .get(K::from_bytes(key))?
            .map(|v| V::buf(V::as_bytes(&v.value()).as_ref())),
    })
}
