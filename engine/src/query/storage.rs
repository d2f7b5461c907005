//! Where the ledger's bytes go: per table, what redb stores (keys and values), its b-tree
//! overhead and its fragmentation, and the log's bytes by event kind. The measurement
//! behind the storage figures in BENCHMARKS.md (`bitplace-bench sync` prints it).

use super::*;
use std::collections::BTreeMap;

/// One table's share of the file, as redb counts it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TableUsage {
    pub table: &'static str,
    pub entries: u64,
    /// Keys and values as inserted.
    pub stored_bytes: u64,
    /// Branch-page keys and other b-tree metadata.
    pub metadata_bytes: u64,
    /// Unused space inside the table's pages.
    pub fragmented_bytes: u64,
}

/// The log's records of one event kind.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LogKindUsage {
    pub records: u64,
    /// Encoded record bytes (the log table's values).
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StorageUsage {
    pub tables: Vec<TableUsage>,
    /// Log records by event kind (`block_accepted`, `tx_admitted`, ...).
    pub log_by_event: BTreeMap<&'static str, LogKindUsage>,
}

fn usage<K: redb::Key + 'static, V: redb::Value + 'static>(
    s: &Snapshot,
    table: &'static str,
    def: redb::TableDefinition<K, V>,
) -> Result<TableUsage, EngineError> {
    use redb::ReadableTableMetadata;
    let t = s.table(def)?;
    let stats = t.stats()?;
    Ok(TableUsage {
        table,
        entries: t.len()?,
        stored_bytes: stats.stored_bytes(),
        metadata_bytes: stats.metadata_bytes(),
        fragmented_bytes: stats.fragmented_bytes(),
    })
}

/// The pieces of long log records; a file that has none has no table either.
fn chunks_usage(s: &Snapshot) -> Result<TableUsage, EngineError> {
    if s.log_chunks()?.is_none() {
        return Ok(TableUsage {
            table: "log_chunks",
            entries: 0,
            stored_bytes: 0,
            metadata_bytes: 0,
            fragmented_bytes: 0,
        });
    }
    usage(s, "log_chunks", LOG_CHUNKS)
}

fn event_kind(e: &Event) -> &'static str {
    match e {
        Event::BlockAccepted(_) => "block_accepted",
        Event::TipConnected(_) => "tip_connected",
        Event::TipDisconnected(_) => "tip_disconnected",
        Event::TxAdmitted(_) => "tx_admitted",
        Event::TxRemoved { .. } => "tx_removed",
        Event::Reset => "reset",
    }
}

impl Engine {
    /// Bytes per table and log bytes per event kind, read on one snapshot. Reads the
    /// whole log: a measurement, not a request path.
    pub fn storage_usage(&self) -> Result<StorageUsage, EngineError> {
        // Table sizes are redb's: the coin cache's rows go there first.
        self.write_back()?;
        let s = self.snapshot()?;
        let tables = vec![
            usage(&s, "log", LOG)?,
            chunks_usage(&s)?,
            usage(&s, "log_head", LOG_HEAD)?,
            usage(&s, "proj_meta", PROJ_META)?,
            usage(&s, "block_index", BLOCK_INDEX)?,
            usage(&s, "main_chain", MAIN_CHAIN)?,
            usage(&s, "utxo", UTXO)?,
            usage(&s, "addr_utxo", ADDR_UTXO)?,
            usage(&s, "balance", BALANCE)?,
            usage(&s, "tx_index", TX_INDEX)?,
            usage(&s, "addr_history", ADDR_HISTORY)?,
            usage(&s, "undo", UNDO)?,
            usage(&s, "side_blocks", SIDE_BLOCKS)?,
            usage(&s, "mempool", MEMPOOL)?,
            usage(&s, "mempool_spends", MEMPOOL_SPENDS)?,
            usage(&s, "mempool_rate", MEMPOOL_RATE)?,
            usage(&s, "mempool_addr", MEMPOOL_ADDR)?,
        ];
        let mut log_by_event: BTreeMap<&'static str, LogKindUsage> = BTreeMap::new();
        let chunks = s.log_chunks()?;
        for row in s.table(LOG)?.iter()? {
            let (seq, value) = row?;
            let bytes = logtable::record_bytes(chunks.as_ref(), seq.value(), value.value())?;
            let record = Record::decode(&bytes).map_err(|e| StoreError::corrupt(e.to_string()))?;
            let kind = log_by_event.entry(event_kind(&record.event)).or_default();
            kind.records += 1;
            kind.bytes += bytes.len() as u64;
        }
        Ok(StorageUsage {
            tables,
            log_by_event,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::{fast_params, TestKey};
    use crate::{Engine, EngineConfig};

    #[test]
    fn every_table_and_the_log_are_accounted_for() {
        let engine = Engine::in_memory(EngineConfig::new(fast_params())).unwrap();
        let key = TestKey::new(1);
        for _ in 0..3 {
            let b = engine
                .block_template(key.address(), vec![])
                .unwrap()
                .mine_cpu();
            engine.submit_block(b).unwrap();
        }
        let u = engine.storage_usage().unwrap();
        let table = |name: &str| u.tables.iter().find(|t| t.table == name).unwrap();
        // Genesis and three blocks: four accepted, four connected.
        assert_eq!(u.log_by_event["block_accepted"].records, 4);
        assert_eq!(u.log_by_event["tip_connected"].records, 4);
        let records: u64 = u.log_by_event.values().map(|k| k.records).sum();
        assert_eq!(table("log").entries, records);
        let log_bytes: u64 = u.log_by_event.values().map(|k| k.bytes).sum();
        assert!(
            table("log").stored_bytes + table("log_chunks").stored_bytes >= log_bytes,
            "values plus their keys"
        );
        assert_eq!(table("main_chain").entries, 4);
        assert_eq!(table("mempool").entries, 0);
        assert_eq!(u.tables.len(), 17, "every table of store/mod.rs");
    }
}
