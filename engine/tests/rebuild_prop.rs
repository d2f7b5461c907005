//! Property: the projections after any history of blocks, payments, forks and
//! reorganisations equal (table by table) a full rebuild from the log, and a rebuild
//! resumed from a checkpoint at any record.

mod common;
use common::*;
use engine::header::BlockHeader;
use engine::merkle::merkle_root;
use engine::mining::BlockTemplate;
use engine::pow::CompactTarget;
use engine::testkit::outpoint;
use engine::tx::{Transaction, TxOut};
use engine::Block;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Mine on the tip, paying key `n`.
    Mine(u8),
    /// Key `from` pays its first spendable output (or nothing) to key `to`.
    Pay { from: u8, to: u8 },
    /// Build a branch of `len` blocks from `depth` blocks below the tip (more work when
    /// len > depth, so the node reorganises).
    Fork { depth: u8, len: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4).prop_map(Op::Mine),
        4 => (0u8..4, 0u8..4).prop_map(|(from, to)| Op::Pay { from, to }),
        1 => (1u8..4, 1u8..5).prop_map(|(depth, len)| Op::Fork { depth, len }),
    ]
}

fn apply(f: &Fixture, op: &Op) {
    match op {
        Op::Mine(n) => {
            f.mine(key(*n as u64).address());
        }
        Op::Pay { from, to } => {
            let k = key(*from as u64);
            let info = f.engine.address(&k.address(), 1).unwrap();
            if let Some(u) = info.utxos.first() {
                let amount = u.amount;
                let outputs: Vec<_> = if amount > 1 {
                    vec![
                        (key(*to as u64).address(), amount / 2),
                        (k.address(), amount - amount / 2 - 1),
                    ]
                } else {
                    vec![(key(*to as u64).address(), amount)]
                };
                let outputs: Vec<_> = outputs.into_iter().filter(|(_, a)| *a > 0).collect();
                f.engine
                    .submit_tx(k.spend(&[outpoint(u.txid, u.vout)], &outputs))
                    .unwrap();
            }
        }
        Op::Fork { depth, len } => fork(f, *depth as u64, *len as u64),
    }
}

/// A branch of coinbase-only blocks from `depth` below the tip.
fn fork(f: &Fixture, depth: u64, len: u64) {
    let tip = f.engine.status().unwrap();
    let base_height = tip.height.saturating_sub(depth);
    let base = f.engine.block_hash_at(base_height).unwrap().unwrap();
    let (info, _) = f.engine.block(&base).unwrap().unwrap();
    let mut prev = base;
    let mut time = info.time.max(tip.tip_time) + 1;
    for i in 1..=len {
        let height = base_height + i;
        let cb = Transaction::coinbase(
            height,
            b"fork".to_vec(),
            vec![TxOut {
                amount: 10,
                address: key(9).address(),
            }],
        );
        let header = BlockHeader {
            version: 1,
            prev_hash: prev,
            merkle_root: merkle_root(&[cb.txid()]).0,
            time,
            bits: CompactTarget(0x207fffff),
            nonce: 0,
        };
        let t = BlockTemplate {
            height,
            header,
            txs: vec![cb],
            fees: 0,
            reward: 10,
            min_time: 0,
        };
        let b: Block = t.mine_cpu();
        prev = b.hash();
        time += 1;
        f.engine.submit_block(b).unwrap();
    }
    f.now
        .store(time as u64 + 1, std::sync::atomic::Ordering::SeqCst);
    if base_height + len > tip.height {
        assert_eq!(
            f.engine.status().unwrap().best_hash,
            prev,
            "the longer branch wins"
        );
    } else {
        assert_eq!(
            f.engine.status().unwrap().best_hash,
            tip.best_hash,
            "a shorter branch does not"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn projections_equal_full_and_checkpointed_rebuilds(ops in prop::collection::vec(op(), 1..18), cut in any::<prop::sample::Index>()) {
        let f = Fixture::in_memory();
        f.mine(key(0).address());
        f.mine(key(1).address());
        for o in &ops {
            apply(&f, o);
        }
        let status = f.engine.status().unwrap();
        let report = f.engine.verify().unwrap();
        prop_assert!(report.ok(), "full rebuild differs in {:?}", report.mismatched);
        let k = cut.index(status.log_length as usize) as u64;
        let report = f.engine.verify_with_checkpoint(k).unwrap();
        prop_assert!(report.ok(), "rebuild resumed at {k} differs in {:?}", report.mismatched);
        let rebuilt = f.engine.rebuild().unwrap();
        prop_assert_eq!(hex::encode(rebuilt.0), status.utxo_set_hash.clone());
        prop_assert_eq!(f.engine.status().unwrap().utxo_set_hash, status.utxo_set_hash);
    }
}
