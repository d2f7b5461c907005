#![allow(dead_code)]
//! Shared fixtures: a fast test network and a controllable clock.

use engine::engine::Clock;
use engine::header::BlockHeader;
use engine::merkle::merkle_root;
use engine::mining::BlockTemplate;
use engine::params::ChainParams;
use engine::pow::CompactTarget;
use engine::testkit::TestKey;
use engine::tx::{Transaction, TxOut};
use engine::{Address, Block, Engine, EngineConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const START_TIME: u64 = 1_800_000_000;

pub use engine::testkit::fast_params;

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

    /// Sets this fixture's clock to `other`'s (two nodes of one test agreeing on the time).
    pub fn clock_from(&self, other: &Fixture) {
        self.now
            .store(other.now.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The txids in the mempool, best fee rate first (up to 1,000).
    pub fn mempool_txids(&self) -> Vec<engine::hash::Hash256> {
        let pool = self.engine.mempool(1000).unwrap();
        pool.into_iter().map(|m| m.txid).collect()
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

    /// A branch of coinbase-only blocks from `depth` below the tip.
    pub fn fork(&self, depth: u64, len: u64) {
        let tip = self.engine.status().unwrap();
        let base_height = tip.height.saturating_sub(depth);
        let base = self.engine.block_hash_at(base_height).unwrap().unwrap();
        let (info, _) = self.engine.block(&base).unwrap().unwrap();
        let mut prev = base;
        let mut time = info.time.max(tip.tip_time) + 1;
        for i in 1..=len {
            let b = coinbase_only_block(prev, base_height + i, time, b"fork", 10);
            prev = b.hash();
            time += 1;
            self.engine.submit_block(b).unwrap();
        }
        self.now.store(time as u64 + 1, Ordering::SeqCst);
        if base_height + len > tip.height {
            assert_eq!(
                self.engine.status().unwrap().best_hash,
                prev,
                "the longer branch wins"
            );
        } else {
            assert_eq!(
                self.engine.status().unwrap().best_hash,
                tip.best_hash,
                "a shorter branch does not"
            );
        }
    }

    pub fn state(&self) -> (String, u64) {
        let s = self.engine.status().unwrap();
        (s.utxo_set_hash, s.log_length)
    }
}

/// A block on `prev` at `height` holding only a coinbase of `reward` to key 9 (tag `tag`),
/// mined at the easiest target.
pub fn coinbase_only_block(
    prev: engine::hash::Hash256,
    height: u64,
    time: u32,
    tag: &[u8],
    reward: u64,
) -> Block {
    let cb = Transaction::coinbase(
        height,
        tag.to_vec(),
        vec![TxOut {
            amount: reward,
            address: key(9).address(),
        }],
    );
    let header = BlockHeader {
        version: 1,
        prev_hash: prev,
        merkle_root: merkle_root(&[cb.txid()]).0,
        time,
        bits: CompactTarget::EASIEST,
        nonce: 0,
    };
    let t = BlockTemplate {
        height,
        header,
        txs: vec![cb],
        fees: 0,
        reward,
        min_time: 0,
    };
    t.mine_cpu()
}

pub fn key(n: u64) -> TestKey {
    TestKey::new(n)
}

/// An ed25519 signature of `tx`'s txid by `secret` (public key `public`) with nonce
/// `attempt`, set on its first input: `s·B = R + k·A`, or with `torsion`, `R` shifted by a
/// point of order 8 (`verify_strict` refuses it, dalek's cofactorless batch equation
/// accepts it one time in eight, depending on the batch).
pub fn sign_first_input(
    secret: &curve25519_dalek::Scalar,
    public: [u8; 32],
    tx: &mut Transaction,
    attempt: u64,
    torsion: bool,
) {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::Scalar;
    use sha2::{Digest, Sha512};
    let txid = tx.txid();
    let wide = |parts: &[&[u8]]| {
        let mut h = Sha512::new();
        for p in parts {
            h.update(p);
        }
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    };
    let r = wide(&[b"nonce", &attempt.to_le_bytes()]);
    let mut point = r * ED25519_BASEPOINT_POINT;
    if torsion {
        point += EIGHT_TORSION[1];
    }
    let big_r = point.compress();
    let k = wide(&[big_r.as_bytes(), &public, &txid.0]);
    let s = r + k * secret;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    if let engine::tx::TxInputs::Transfer(ins) = &mut tx.inputs {
        ins[0].signature = sig;
    }
}
