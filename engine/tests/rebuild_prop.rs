//! Property: the projections after any history of blocks, payments, forks and
//! reorganisations equal (table by table) a full rebuild from the log, and a rebuild
//! resumed from a checkpoint at any record.

mod common;
use common::*;
use engine::testkit::outpoint;
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
        Op::Fork { depth, len } => f.fork(*depth as u64, *len as u64),
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
        for n in [0, 1, 2, 3, 9] {
            // Debug builds assert there that the balance projection equals the sum of
            // the address's outputs.
            f.engine.address(&key(n).address(), 1).unwrap();
        }
        let status = f.engine.status().unwrap();
        let report = f.engine.verify().unwrap();
        prop_assert!(report.ok(), "full rebuild differs in {:?}", report.mismatched);
        let k = cut.index(status.log_length as usize) as u64;
        let report = f.engine.verify_with_checkpoint(k).unwrap();
        prop_assert!(report.ok(), "rebuild resumed at {k} differs in {:?}", report.mismatched);
        let rebuilt = f.engine.rebuild().unwrap();
        prop_assert_eq!(hex::encode(rebuilt.utxo_set_hash.0), status.utxo_set_hash.clone());
        prop_assert_eq!(f.engine.status().unwrap().utxo_set_hash, status.utxo_set_hash);
    }
}
