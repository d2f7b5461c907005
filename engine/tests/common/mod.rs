#![allow(dead_code)]
//! Shared fixtures: a fast test network and a controllable clock.

use engine::engine::Clock;
use engine::params::ChainParams;
use engine::pow::CompactTarget;
use engine::testkit::TestKey;
use engine::{Address, Block, Engine, EngineConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const START_TIME: u64 = 1_800_000_000;

/// Dev parameters with the easiest target, so a block takes ~2 hashes.
pub fn fast_params() -> ChainParams {
    let mut p = ChainParams::dev();
    p.initial_bits = CompactTarget(0x207fffff);
    p.coinbase_maturity = 2;
    p
}

pub struct Fixture {
    pub engine: Engine,
    pub now: Arc<AtomicU64>,
    pub dir: Option<tempfile::TempDir>,
}

pub fn config(params: ChainParams, now: &Arc<AtomicU64>) -> EngineConfig {
    let n = now.clone();
    let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
    let mut c = EngineConfig::new(params);
    c.clock = clock;
    c
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_params(fast_params())
    }

    pub fn with_params(params: ChainParams) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(START_TIME));
        let engine = Engine::open(dir.path().join("ledger.redb"), config(params, &now)).unwrap();
        Fixture {
            engine,
            now,
            dir: Some(dir),
        }
    }

    pub fn in_memory() -> Fixture {
        let now = Arc::new(AtomicU64::new(START_TIME));
        let engine = Engine::in_memory(config(fast_params(), &now)).unwrap();
        Fixture {
            engine,
            now,
            dir: None,
        }
    }

    pub fn tick(&self) {
        self.now.fetch_add(60, Ordering::SeqCst);
    }

    /// Mines a block paying `to` with everything in the mempool, without submitting it.
    pub fn build_block(&self, to: Address) -> Block {
        self.tick();
        self.engine.block_template(to, vec![]).unwrap().mine_cpu()
    }

    /// Mines and submits a block; panics unless it extends the chain.
    pub fn mine(&self, to: Address) -> Block {
        let b = self.build_block(to);
        let r = self.engine.submit_block(b.clone()).unwrap();
        assert!(
            matches!(r, engine::BlockAccepted::Connected { .. }),
            "{r:?}"
        );
        b
    }

    pub fn state(&self) -> (String, u64) {
        let s = self.engine.status().unwrap();
        (s.utxo_set_hash, s.log_length)
    }
}

pub fn key(n: u64) -> TestKey {
    TestKey::new(n)
}
