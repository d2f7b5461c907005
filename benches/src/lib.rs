//! Workloads shared by the criterion benches and the `bitplace-bench` harness: a ledger
//! funded with many independent outputs, and blocks full of signed transactions.

use engine::engine::Clock;
use engine::params::ChainParams;
use engine::pow::CompactTarget;
use engine::testkit::{outpoint, TestKey};
use engine::tx::{OutPoint, Transaction};
use engine::{Block, Engine, EngineConfig};
use rayon::prelude::*;
use std::path::Path;

/// (txid, signature, key) of each transaction's first input: what the ed25519 reference
/// rates (strict single and batch) are measured over, in the bench command and criterion.
pub fn signature_items(
    txs: &[Transaction],
) -> Vec<(
    [u8; 32],
    ed25519_dalek::Signature,
    ed25519_dalek::VerifyingKey,
)> {
    txs.iter()
        .map(|t| {
            let i = &t.spends()[0];
            (
                t.txid().0,
                ed25519_dalek::Signature::from_bytes(&i.signature),
                ed25519_dalek::VerifyingKey::from_bytes(&i.public_key)
                    .expect("bench keys are valid points"),
            )
        })
        .collect()
}
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Outputs per fan-out transaction (the per-transaction item limit).
pub const FAN_OUT: usize = 10_000;
/// Distinct keys owning the funded outputs.
pub const KEYS: u64 = 256;

/// Parameters for benchmarks: easiest target, large reward, big blocks, no maturity wait.
pub fn bench_params() -> ChainParams {
    let mut p = ChainParams::dev();
    p.initial_bits = CompactTarget::EASIEST;
    p.reward = 1 << 50;
    p.coinbase_maturity = 1;
    p.max_block_txs = 100_000;
    p.max_block_bytes = 64_000_000;
    p.mempool_max_txs = 2_000_000;
    // Fixed difficulty: benchmarks mine blocks as fast as they can.
    p.retarget_interval = 0;
    p
}

/// A ledger with a clock that advances one second per read (every template is newer).
pub struct Bench {
    pub engine: Engine,
    now: Arc<AtomicU64>,
}

impl Bench {
    pub fn open(path: Option<&Path>) -> Bench {
        Bench::open_at(path, 1_800_000_000)
    }

    /// Like [`Bench::open`], with the clock starting at `start` (Unix seconds): blocks
    /// meant for a real node must not be ahead of its clock.
    pub fn open_at(path: Option<&Path>, start: u64) -> Bench {
        let now = Arc::new(AtomicU64::new(start));
        let n = now.clone();
        let clock: Clock = Arc::new(move || n.fetch_add(1, Ordering::SeqCst));
        let mut config = EngineConfig::new(bench_params());
        config.clock = clock;
        let engine = match path {
            Some(p) => Engine::open(p, config).expect("open ledger"),
            None => Engine::in_memory(config).expect("open ledger"),
        };
        Bench { engine, now }
    }

    pub fn key(i: u64) -> TestKey {
        TestKey::new(1_000 + i)
    }

    /// Mines a block with the mempool's contents paying `to`.
    pub fn mine(&self, to: &TestKey) -> Block {
        let block = self
            .engine
            .block_template(to.address(), vec![])
            .expect("template")
            .mine_cpu();
        self.engine.submit_block(block.clone()).expect("mine");
        block
    }

    /// Creates `n` confirmed outputs spread over [`KEYS`] keys; returns them with owners.
    pub fn fund(&self, n: usize) -> Vec<(OutPoint, u64, u64)> {
        let miner = Bench::key(u64::MAX / 2);
        let mut funded = Vec::with_capacity(n);
        while funded.len() < n {
            let cb = self.mine(&miner).txs[0].clone();
            self.mine(&miner);
            let count = FAN_OUT.min(n - funded.len());
            let amount = cb.outputs[0].amount / count as u64;
            let owners: Vec<_> = (0..KEYS).map(|i| Bench::key(i).address()).collect();
            let outs: Vec<_> = (0..count)
                .map(|i| (owners[i % owners.len()], amount))
                .collect();
            let fan = miner.spend(&[outpoint(cb.txid(), 0)], &outs);
            self.engine.submit_tx(fan.clone()).expect("fan-out");
            // Hash the (large) fan-out once, not once per output.
            let fan_id = fan.txid();
            funded
                .extend((0..count).map(|i| (outpoint(fan_id, i as u32), amount, i as u64 % KEYS)));
        }
        self.mine(&miner);
        funded
    }

    /// A block on the tip spending each funded output to its owner (one input, one
    /// output, fee 1), signed in parallel.
    pub fn full_block(&self, coins: &[(OutPoint, u64, u64)]) -> Block {
        // Deriving a key costs a scalar multiplication: derive each owner's once.
        let keys: Vec<_> = (0..KEYS).map(Bench::key).collect();
        let txs: Vec<Transaction> = coins
            .par_iter()
            .map(|(op, amount, owner)| {
                let k = &keys[*owner as usize];
                k.spend(&[*op], &[(k.address(), amount - 1)])
            })
            .collect();
        let mut t = self
            .engine
            .block_template(Bench::key(0).address(), vec![])
            .expect("template");
        let fees = txs.len() as u64;
        t.txs[0].outputs[0].amount += fees;
        t.fees += fees;
        t.txs.extend(txs);
        t.header.merkle_root =
            engine::merkle::merkle_root(&t.txs.iter().map(|x| x.txid()).collect::<Vec<_>>()).0;
        self.now.fetch_add(1, Ordering::SeqCst);
        t.mine_cpu()
    }
}
