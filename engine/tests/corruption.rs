//! A damaged log is detected at startup: the engine refuses to open with a message that
//! says what is wrong, instead of serving wrong balances.

mod common;
use common::*;
use engine::testkit::ledger_file::{CHUNK_BYTES, LOG, LOG_CHUNKS};
use engine::testkit::outpoint;
use engine::{Engine, EngineError};
use redb::{Database, ReadableDatabase, ReadableTable};
use std::path::PathBuf;

fn ledger_with_blocks() -> (Fixture, PathBuf) {
    let f = Fixture::new();
    for i in 0..4 {
        f.mine(key(i).address());
    }
    let path = f.dir.as_ref().unwrap().path().join("ledger.redb");
    (f, path)
}

fn reopen(f: &Fixture, path: &PathBuf) -> Result<Engine, EngineError> {
    Engine::open(path, config(fast_params(), &f.now))
}

fn close(f: Fixture) -> Fixture {
    let Fixture { engine, now, dir } = f;
    drop(engine);
    Fixture {
        engine: Engine::in_memory(config(fast_params(), &now)).unwrap(),
        now,
        dir,
    }
}

fn tamper(path: &PathBuf, change: impl FnOnce(&mut redb::Table<u64, &'static [u8]>)) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut log = txn.open_table(LOG).unwrap();
        change(&mut log);
    }
    txn.commit().unwrap();
}

fn open_error(f: &Fixture, path: &PathBuf) -> String {
    match reopen(f, path) {
        Ok(_) => panic!("a damaged log was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_record_is_detected() {
    let (f, path) = ledger_with_blocks();
    let f = close(f);
    tamper(&path, |log| {
        log.remove(3).unwrap();
    });
    let msg = open_error(&f, &path);
    assert!(msg.contains("record 3 is missing"), "{msg}");
}

#[test]
fn an_altered_record_is_detected() {
    let (f, path) = ledger_with_blocks();
    let f = close(f);
    tamper(&path, |log| {
        let mut bytes = log.get(4).unwrap().unwrap().value().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        log.insert(4, bytes.as_slice()).unwrap();
    });
    let msg = open_error(&f, &path);
    assert!(
        msg.contains("hash chain broken") || msg.contains("head"),
        "{msg}"
    );
}

#[test]
fn a_truncated_log_is_detected() {
    let (f, path) = ledger_with_blocks();
    let f = close(f);
    tamper(&path, |log| {
        let last = log.last().unwrap().unwrap().0.value();
        log.remove(last).unwrap();
    });
    let msg = open_error(&f, &path);
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn a_data_dir_of_another_network_is_refused() {
    let (f, path) = ledger_with_blocks();
    let f = close(f);
    let err = Engine::open(&path, config(engine::ChainParams::main(), &f.now))
        .err()
        .unwrap();
    assert!(err.to_string().contains("another network"), "{err}");
}

#[test]
fn a_damaged_file_is_refused() {
    let (f, path) = ledger_with_blocks();
    let f = close(f);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 3).unwrap();
    drop(file);
    assert!(reopen(&f, &path).is_err());
}

/// Regression: a ledger file truncated to nothing was taken for a new chain, and the node
/// served height 0 with zero balances instead of refusing to start.
#[test]
fn regression_an_emptied_ledger_file_is_refused_not_recreated() {
    let (f, path) = ledger_with_blocks();
    let f = close(f);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let msg = open_error(&f, &path);
    assert!(msg.contains("is empty"), "{msg}");
}

/// A ledger whose last block (and the admission of its one transaction, spending 40
/// coinbase outputs) is longer than a page: both records are stored in pieces.
fn ledger_with_a_long_block() -> (Fixture, PathBuf) {
    let f = Fixture::new();
    let alice = key(1);
    let coins: Vec<_> = (0..40)
        .map(|_| outpoint(f.mine(alice.address()).txs[0].txid(), 0))
        .collect();
    f.mine(alice.address());
    let pay = alice.spend(&coins, &[(key(2).address(), 300)]);
    assert!(engine::encoding::Encode::encode(&pay).len() > CHUNK_BYTES);
    f.engine.submit_tx(pay).unwrap();
    let block = f.mine(alice.address());
    assert_eq!(block.txs.len(), 2);
    let path = f.dir.as_ref().unwrap().path().join("ledger.redb");
    (f, path)
}

fn pieces(path: &PathBuf) -> Vec<((u64, u32), usize)> {
    let db = Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let chunks = txn.open_table(LOG_CHUNKS).unwrap();
    chunks
        .iter()
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.value(), v.value().len())
        })
        .collect()
}

#[test]
fn long_records_are_stored_in_pieces_and_read_back_whole() {
    let (f, path) = ledger_with_a_long_block();
    let status = f.engine.status().unwrap();
    let f = close(f);
    let pieces = pieces(&path);
    let records: std::collections::BTreeSet<u64> = pieces.iter().map(|((s, _), _)| *s).collect();
    assert_eq!(records.len(), 2, "the admission and the block: {pieces:?}");
    assert!(pieces.iter().all(|(_, len)| *len <= CHUNK_BYTES));
    let engine = reopen(&f, &path).unwrap();
    assert_eq!(engine.status().unwrap().utxo_set_hash, status.utxo_set_hash);
    assert!(engine.verify().unwrap().ok());
    engine.rebuild().unwrap();
    assert_eq!(engine.status().unwrap().utxo_set_hash, status.utxo_set_hash);
}

#[test]
fn a_damaged_piece_of_a_long_record_is_refused() {
    for damage in ["flip a byte", "remove a piece"] {
        let (f, path) = ledger_with_a_long_block();
        let f = close(f);
        let ((seq, piece), _) = pieces(&path)[1];
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut chunks = txn.open_table(LOG_CHUNKS).unwrap();
            if damage == "flip a byte" {
                let mut bytes = chunks.get((seq, piece)).unwrap().unwrap().value().to_vec();
                bytes[7] ^= 1;
                chunks.insert((seq, piece), bytes.as_slice()).unwrap();
            } else {
                chunks.remove((seq, piece)).unwrap();
            }
        }
        txn.commit().unwrap();
        drop(db);
        let msg = open_error(&f, &path);
        assert!(
            msg.contains("hash chain broken") || msg.contains("pieces") || msg.contains("head"),
            "{damage}: {msg}"
        );
    }
}

/// A log written before records were cut holds every record whole: it opens as it is.
#[test]
fn a_long_record_stored_whole_by_an_older_build_still_opens() {
    let (f, path) = ledger_with_a_long_block();
    let status = f.engine.status().unwrap();
    let f = close(f);
    let db = Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut chunks = txn.open_table(LOG_CHUNKS).unwrap();
        let mut log = txn.open_table(LOG).unwrap();
        let mut whole: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
        for row in chunks.iter().unwrap() {
            let (k, v) = row.unwrap();
            whole
                .entry(k.value().0)
                .or_default()
                .extend_from_slice(v.value());
        }
        chunks.retain(|_, _| false).unwrap();
        for (seq, bytes) in whole {
            log.insert(seq, bytes.as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
    drop(db);
    let engine = reopen(&f, &path).unwrap();
    assert_eq!(engine.status().unwrap().utxo_set_hash, status.utxo_set_hash);
    assert!(engine.verify().unwrap().ok());
}
