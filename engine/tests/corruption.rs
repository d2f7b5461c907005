//! A damaged log is detected at startup: the engine refuses to open with a message that
//! says what is wrong, instead of serving wrong balances.

mod common;
use common::*;
use engine::testkit::ledger_file::LOG;
use engine::{Engine, EngineError};
use redb::{Database, ReadableTable};
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
