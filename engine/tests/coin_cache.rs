//! The coin cache (engine/src/store/coin_cache.rs): UTXO changes kept in memory past the
//! commits that made them answer every query as a ledger that writes them through does,
//! across spends, a reorganisation and write-backs; and a ledger whose cache was never
//! written back (the process killed) is rebuilt from its log at open, to the same state.

mod common;
use common::*;
use engine::testkit::{ledger_file as tables, outpoint};
use engine::{Block, Engine};
use redb::ReadableDatabase;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Engines fed the same blocks: the first caches its UTXO set (`rows` before a
/// write-back), the second writes it through.
struct Pair {
    cached: Engine,
    through: Engine,
    now: Arc<AtomicU64>,
    /// Every transaction of every block submitted (those a reorg undid included).
    txids: std::cell::RefCell<Vec<engine::hash::Hash256>>,
}

impl Pair {
    fn new(rows: usize) -> Pair {
        let now = Arc::new(AtomicU64::new(START_TIME));
        let mut cached = config(fast_params(), &now);
        cached.coin_cache_rows = rows;
        let mut through = config(fast_params(), &now);
        through.coin_cache_rows = 0;
        Pair {
            cached: Engine::in_memory(cached).unwrap(),
            through: Engine::in_memory(through).unwrap(),
            now,
            txids: Default::default(),
        }
    }

    /// Mines the cached engine's mempool into a block paying `to`; both connect it.
    fn mine(&self, to: &engine::testkit::TestKey) -> Block {
        self.now.fetch_add(60, Ordering::SeqCst);
        let block = self
            .cached
            .block_template(to.address(), vec![])
            .unwrap()
            .mine_cpu();
        self.submit(&block);
        block
    }

    fn submit(&self, block: &Block) {
        let a = self.cached.submit_block(block.clone()).unwrap();
        let b = self.through.submit_block(block.clone()).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        self.txids.borrow_mut().extend(block.txids());
    }

    /// Every query that reads the UTXO set answers alike on both.
    fn assert_alike(&self) {
        let (a, b) = (&self.cached, &self.through);
        assert_eq!(
            a.status().unwrap().utxo_set_hash,
            b.status().unwrap().utxo_set_hash
        );
        let page = |e: &Engine| serde_json::to_string(&e.utxos(None, 10_000).unwrap()).unwrap();
        assert_eq!(page(a), page(b));
        let all = a.utxos(None, 10_000).unwrap();
        if all.len() > 2 {
            // A page that starts inside the set, past a key the layers may hide.
            let after = Some(outpoint(all[1].txid, all[1].vout));
            let from = |e: &Engine| serde_json::to_string(&e.utxos(after, 3).unwrap()).unwrap();
            assert_eq!(from(a), from(b));
        }
        for txid in self.txids.borrow().iter() {
            let tx = |e: &Engine| serde_json::to_string(&e.transaction(txid).unwrap()).unwrap();
            assert_eq!(tx(a), tx(b), "transaction {txid}");
        }
        for k in 1..6 {
            let addr = key(k).address();
            let info = |e: &Engine| serde_json::to_string(&e.address(&addr, 100).unwrap()).unwrap();
            assert_eq!(info(a), info(b), "address of key {k}");
        }
    }
}

/// Spends every output `from` holds to `to` in one transaction per output.
fn spend_all(engine: &Engine, from: u64, to: u64) -> usize {
    let coins = engine.address(&key(from).address(), 0).unwrap().utxos;
    for coin in &coins {
        let tx = key(from).spend(
            &[outpoint(coin.txid, coin.vout)],
            &[
                (key(to).address(), coin.amount / 2),
                (key(from).address(), coin.amount / 4),
            ],
        );
        engine.submit_tx(tx).unwrap();
    }
    coins.len()
}

/// A branch of coinbase-only blocks from `depth` below the tip, `len` long.
fn branch(engine: &Engine, depth: u64, len: u64) -> Vec<Block> {
    let tip = engine.status().unwrap();
    let base_height = tip.height - depth;
    let mut prev = engine.block_hash_at(base_height).unwrap().unwrap();
    let mut time = tip.tip_time + 1;
    (1..=len)
        .map(|i| {
            let block = coinbase_only_block(prev, base_height + i, time, b"branch", 10);
            prev = block.hash();
            time += 1;
            block
        })
        .collect()
}

/// Blocks with spends, spends of those spends, a reorganisation that undoes two of them,
/// then more spends: both engines answer alike after every step, and `verify` (which
/// writes the cache back first) finds the cached one's projections equal to a rebuild.
fn run_pair(rows: usize) {
    let pair = Pair::new(rows);
    for _ in 0..4 {
        pair.mine(&key(1));
    }
    pair.assert_alike();
    assert!(spend_all(&pair.cached, 1, 2) > 0);
    pair.mine(&key(3));
    pair.assert_alike();
    assert!(spend_all(&pair.cached, 2, 4) > 0);
    pair.mine(&key(3));
    pair.mine(&key(1));
    pair.assert_alike();
    let tip = pair.cached.status().unwrap();
    for block in branch(&pair.cached, 2, 3) {
        pair.submit(&block);
    }
    assert_ne!(pair.cached.status().unwrap().best_hash, tip.best_hash);
    pair.now.store(
        pair.cached.status().unwrap().tip_time as u64 + 1,
        Ordering::SeqCst,
    );
    pair.assert_alike();
    pair.mine(&key(1));
    spend_all(&pair.cached, 3, 2);
    pair.mine(&key(2));
    pair.assert_alike();
    assert!(pair.cached.verify().unwrap().ok());
    pair.assert_alike();
    assert!(pair.through.verify().unwrap().ok());
}

#[test]
fn a_cached_utxo_set_answers_as_one_written_through() {
    run_pair(engine::engine::DEFAULT_COIN_CACHE_ROWS);
}

#[test]
fn a_cache_written_back_after_every_block_answers_the_same() {
    run_pair(1);
}

/// The coins cursor and the projection cursor of the ledger file at `path`.
fn cursors(path: &std::path::Path) -> (u64, u64) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(tables::PROJ_META).unwrap();
    let read = |k: &str| {
        let v = meta.get(k).unwrap().unwrap();
        u64::from_le_bytes(v.value().try_into().unwrap())
    };
    (read(tables::COINS_CURSOR_KEY), read("cursor"))
}

#[test]
fn a_ledger_left_with_its_cache_unwritten_reopens_rebuilt_to_the_same_state() {
    let node = Fixture::new();
    for _ in 0..4 {
        node.mine(key(1).address());
    }
    spend_all(&node.engine, 1, 2);
    node.mine(key(3).address());
    let state = node.state();
    // What a kill -9 leaves: the file as committed, with the cache's changes unwritten.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ledger.redb");
    std::fs::copy(node.dir.as_ref().unwrap().path().join("ledger.redb"), &copy).unwrap();
    let (coins, cursor) = cursors(&copy);
    assert!(
        coins < cursor,
        "the UTXO set was cached: {coins} < {cursor}"
    );
    let reopened = Engine::open(&copy, config(fast_params(), &node.now)).unwrap();
    let status = reopened.status().unwrap();
    assert_eq!((status.utxo_set_hash, status.log_length), state);
    assert!(reopened.verify().unwrap().ok());
    let alike = |e: &Engine| serde_json::to_string(&e.utxos(None, 1000).unwrap()).unwrap();
    assert_eq!(alike(&reopened), alike(&node.engine));
    drop(reopened);
    let (coins, cursor) = cursors(&copy);
    assert_eq!(coins, cursor, "the rebuild left the UTXO set current");
}

#[test]
fn a_clean_close_writes_the_cache_back() {
    let node = Fixture::new();
    for _ in 0..3 {
        node.mine(key(1).address());
    }
    let path = node.dir.as_ref().unwrap().path().join("ledger.redb");
    let Fixture { engine, dir, .. } = node;
    drop(engine);
    let (coins, cursor) = cursors(&path);
    assert_eq!(coins, cursor);
    drop(dir);
}
