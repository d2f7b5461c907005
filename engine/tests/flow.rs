//! End-to-end flows through the engine API: mining, spending, unconfirmed chains,
//! reorganisations, restarts.

mod common;
use common::*;
use engine::hash::Hash256;
use engine::notify::NotificationKind;
use engine::testkit::{outpoint, TestKey};
use engine::{Address, BlockAccepted, Engine, EngineConfig, EngineError, Reject};

#[test]
fn mine_spend_and_balances() {
    let f = Fixture::new();
    let (alice, bob) = (key(1), key(2));
    let b1 = f.mine(alice.address());
    f.mine(alice.address());
    let cb = b1.txs[0].txid();
    let info = f.engine.address(&alice.address(), 10).unwrap();
    assert_eq!(
        info.confirmed, 10,
        "block 1 matured (maturity 2), block 2 not yet"
    );
    assert_eq!(info.immature, 10);

    let pay = alice.spend(
        &[outpoint(cb, 0)],
        &[(bob.address(), 3), (alice.address(), 6)],
    );
    let r = f.engine.submit_tx(pay.clone()).unwrap();
    assert!(!r.duplicate);
    assert!(
        f.engine.submit_tx(pay.clone()).unwrap().duplicate,
        "idempotent"
    );

    // Spend the unconfirmed change at once (no wallet lock).
    let child = alice.spend(&[outpoint(pay.txid(), 1)], &[(bob.address(), 5)]);
    f.engine.submit_tx(child.clone()).unwrap();
    assert_eq!(f.engine.mempool(10).unwrap().len(), 2);
    let bob_info = f.engine.address(&bob.address(), 10).unwrap();
    assert_eq!(bob_info.unconfirmed, 8);
    assert_eq!(bob_info.utxos.len(), 2, "unconfirmed outputs are spendable");

    let b3 = f.mine(alice.address());
    assert_eq!(b3.txs.len(), 3, "parent and child both mined");
    assert_eq!(b3.txs[0].outputs[0].amount, 10 + 2, "fees go to the miner");
    assert!(f.engine.mempool(10).unwrap().is_empty());
    let bob_info = f.engine.address(&bob.address(), 10).unwrap();
    assert_eq!((bob_info.confirmed, bob_info.unconfirmed), (8, 0));
    let tx = f.engine.transaction(&child.txid()).unwrap().unwrap();
    assert_eq!(tx.height, Some(3));
    assert_eq!(tx.fee, Some(1));
    let proof = tx.merkle_proof.unwrap();
    assert_eq!(proof.root_for(&child.txid()), b3.header.merkle_root);
    assert!(f.engine.verify().unwrap().ok());
}

#[test]
fn double_spend_in_mempool_is_refused_and_changes_nothing() {
    let f = Fixture::new();
    let alice = key(1);
    let b1 = f.mine(alice.address());
    f.mine(alice.address());
    let cb = outpoint(b1.txs[0].txid(), 0);
    f.engine
        .submit_tx(alice.spend(&[cb], &[(key(2).address(), 10)]))
        .unwrap();
    let before = f.state();
    let err = f
        .engine
        .submit_tx(alice.spend(&[cb], &[(key(3).address(), 10)]))
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Rejected(Reject::DoubleSpend(..))),
        "{err}"
    );
    assert_eq!(f.state(), before);
}

/// A block spending a coin that a mempool transaction spends evicts that transaction
/// and its descendants, and leaves the rest of the mempool alone (the writer skips the
/// lookups only when the block emptied the mempool).
#[test]
fn a_block_double_spending_a_mempool_coin_evicts_the_spender_and_its_descendants() {
    let f = Fixture::new();
    let (alice, bob) = (key(1), key(2));
    let blocks: Vec<_> = (0..3).map(|_| f.mine(alice.address())).collect();
    let other = Fixture::new();
    for b in &blocks {
        other.engine.submit_block(b.clone()).unwrap();
    }
    let (cb1, cb2) = (
        outpoint(blocks[0].txs[0].txid(), 0),
        outpoint(blocks[1].txs[0].txid(), 0),
    );
    let pay = alice.spend(&[cb1], &[(bob.address(), 9)]);
    let child = bob.spend(&[outpoint(pay.txid(), 0)], &[(key(3).address(), 8)]);
    let unrelated = alice.spend(&[cb2], &[(key(4).address(), 9)]);
    for tx in [&pay, &child, &unrelated] {
        f.engine.submit_tx(tx.clone()).unwrap();
    }
    let double = alice.spend(&[cb1], &[(key(5).address(), 9)]);
    other.engine.submit_tx(double.clone()).unwrap();
    other.clock_from(&f);
    let b4 = other.mine(bob.address());
    assert_eq!(b4.txs.len(), 2);

    assert!(matches!(
        f.engine.submit_block(b4).unwrap(),
        BlockAccepted::Connected { .. }
    ));
    assert_eq!(f.mempool_txids(), vec![unrelated.txid()]);
    assert!(f.engine.transaction(&pay.txid()).unwrap().is_none());
    assert!(f.engine.transaction(&child.txid()).unwrap().is_none());
    assert!(f.engine.verify().unwrap().ok());
    // The next block takes the rest: an empty mempool, nothing else evicted.
    f.mine(alice.address());
    assert!(f.engine.mempool(10).unwrap().is_empty());
    assert!(f.engine.verify().unwrap().ok());
}

#[test]
fn reorg_to_more_work_returns_transactions_to_the_mempool() {
    let f = Fixture::new();
    let (alice, bob) = (key(1), key(2));
    let b1 = f.mine(alice.address());
    let fork_point = f.mine(alice.address());
    let pay = alice.spend(&[outpoint(b1.txs[0].txid(), 0)], &[(bob.address(), 4)]);
    f.engine.submit_tx(pay.clone()).unwrap();
    let a3 = f.mine(alice.address());
    assert_eq!(a3.txs.len(), 2);

    // A competing branch from the fork point, two blocks long, without `pay`.
    let other = Fixture::new();
    other.engine.submit_block(b1.clone()).unwrap();
    other.engine.submit_block(fork_point.clone()).unwrap();
    other.clock_from(&f);
    let c3 = other.mine(bob.address());
    let c4 = other.mine(bob.address());

    assert!(matches!(
        f.engine.submit_block(c3).unwrap(),
        BlockAccepted::SideChain { .. }
    ));
    f.clock_from(&other);
    let r = f.engine.submit_block(c4.clone()).unwrap();
    assert!(
        matches!(
            r,
            BlockAccepted::Reorganized {
                disconnected: 1,
                connected: 2,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(f.engine.status().unwrap().best_hash, c4.hash());
    let pool = f.mempool_txids();
    assert_eq!(
        pool,
        vec![pay.txid()],
        "the disconnected payment is back in the mempool"
    );
    assert_eq!(
        f.engine.status().unwrap().utxo_set_hash,
        other.engine.status().unwrap().utxo_set_hash
    );
    assert!(f.engine.verify().unwrap().ok());
}

#[test]
fn state_survives_reopen_and_rebuild_gives_the_same_hash() {
    let f = Fixture::new();
    let alice = key(1);
    let b1 = f.mine(alice.address());
    f.mine(alice.address());
    f.engine
        .submit_tx(alice.spend(&[outpoint(b1.txs[0].txid(), 0)], &[(key(2).address(), 7)]))
        .unwrap();
    let status = f.engine.status().unwrap();
    let path = f.dir.as_ref().unwrap().path().join("ledger.redb");
    drop(f.engine);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let reopened = Engine::open(&path, config(fast_params(), &f.now)).unwrap();
    let again = reopened.status().unwrap();
    assert_eq!(again.utxo_set_hash, status.utxo_set_hash);
    assert_eq!(again.mempool_size, 1);
    assert_eq!(
        reopened.rebuild().unwrap().utxo_set_hash.to_string().len(),
        64
    );
    assert_eq!(
        reopened.status().unwrap().utxo_set_hash,
        status.utxo_set_hash
    );
}

#[test]
fn dev_reset_goes_back_to_genesis_and_replays() {
    let f = Fixture::new();
    f.mine(key(1).address());
    f.engine.reset().unwrap();
    let s = f.engine.status().unwrap();
    assert_eq!(s.height, 0);
    assert_eq!(s.utxo_count, 0);
    f.mine(key(1).address());
    assert!(f.engine.verify().unwrap().ok());
}

/// Regression: the genesis time once lay six days ahead of the release date, so every
/// template on a fresh dev node was refused as too new. Mines with the real clock.
#[test]
fn regression_genesis_time_in_the_future_blocked_mining() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::new(engine::ChainParams::dev());
    let engine = Engine::open(dir.path().join("l.redb"), config).unwrap();
    let r = engine.mine_block(key(1).address(), None).unwrap();
    assert!(
        matches!(r, BlockAccepted::Connected { height: 1, .. }),
        "{r:?}"
    );
}

/// Regression (found by the rebuild property test): a reorg re-admits a parent with a
/// newer admission number than its child already in the mempool; templates ordered by
/// admission put the child first and produced an invalid block.
#[test]
fn regression_readmitted_parent_is_mined_before_its_child() {
    let f = Fixture::new();
    let a = key(1);
    let b1 = f.mine(a.address());
    f.mine(a.address());
    let parent = a.spend(&[outpoint(b1.txs[0].txid(), 0)], &[(a.address(), 9)]);
    f.engine.submit_tx(parent.clone()).unwrap();
    f.mine(a.address());
    let child = a.spend(&[outpoint(parent.txid(), 0)], &[(a.address(), 8)]);
    f.engine.submit_tx(child.clone()).unwrap();
    f.fork(1, 2);
    assert_eq!(
        f.engine.mempool(10).unwrap().len(),
        2,
        "parent re-admitted, child kept"
    );
    let block = f.mine(a.address());
    let ids: Vec<_> = block.txids();
    assert_eq!(&ids[1..], &[parent.txid(), child.txid()]);
}

#[test]
fn reorg_does_not_readmit_a_transaction_whose_signature_only_a_batch_accepts() {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use engine::validation::verify_signatures_batch;
    let f = Fixture::new();
    let secret = curve25519_dalek::Scalar::from_bytes_mod_order([7; 32]);
    let public = (secret * ED25519_BASEPOINT_POINT).compress().to_bytes();
    let owner = Address::from_public_key(&public);
    let b1 = f.mine(owner);
    f.mine(owner);
    let mut template = key(1).spend(&[outpoint(b1.txs[0].txid(), 0)], &[(key(2).address(), 9)]);
    if let engine::tx::TxInputs::Transfer(ins) = &mut template.inputs {
        ins[0].public_key = public; // part of the signed body: set before signing
    }
    let odd = (0..1000)
        .map(|i| {
            let mut tx = template.clone();
            sign_first_input(&secret, public, &mut tx, i, true);
            tx
        })
        .find(|tx| verify_signatures_batch(std::slice::from_ref(tx)).is_ok())
        .expect("one in eight passes the batch equation");
    let err = f.engine.submit_tx(odd.clone()).unwrap_err();
    assert!(
        matches!(err, EngineError::Rejected(Reject::BadSignature(0))),
        "the mempool's rule is strict: {err}"
    );

    // A block carries it: its batch check (same single signature) passes.
    f.tick();
    let mut t = f.engine.block_template(key(3).address(), vec![]).unwrap();
    t.txs.push(odd.clone());
    let ids: Vec<_> = t.txs.iter().map(|tx| tx.txid()).collect();
    t.header.merkle_root = engine::merkle::merkle_root(&ids).0;
    let block = t.mine_cpu();
    let r = f.engine.submit_block(block).unwrap();
    assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
    assert!(f.engine.transaction(&odd.txid()).unwrap().is_some());

    // Reorganised away: its input is spendable again, but it must not come back.
    f.fork(1, 2);
    assert!(f.engine.transaction(&odd.txid()).unwrap().is_none());
    assert!(
        f.engine.mempool(100).unwrap().is_empty(),
        "re-admission checks signatures strictly"
    );
    assert!(f.engine.verify().unwrap().ok());
}

#[test]
fn regression_hashrate_estimate_leaves_out_genesis_week_old_time() {
    // Genesis' time is fixed in the parameters, long before START_TIME: a window that
    // reached it read a working miner as a tiny fraction of a hash per second.
    let f = Fixture::new();
    let miner = TestKey::new(7).address();
    f.mine(miner);
    assert_eq!(f.engine.status().unwrap().hashrate_estimate, 0.0);
    f.mine(miner);
    f.mine(miner);
    // Two blocks after block 1, one tick (60 s) apart each.
    let work = f.engine.params().initial_bits.work().unwrap().as_u64() as f64;
    let rate = f.engine.status().unwrap().hashrate_estimate;
    assert_eq!(rate, 2.0 * work / 120.0);
}

#[test]
fn regression_replayed_tx_added_carries_the_fee_it_had_after_confirmation() {
    // A replay (Last-Event-ID) re-derived the fee from the current mempool, so a
    // transaction confirmed since was replayed with fee 0.
    let f = Fixture::new();
    let (alice, bob) = (key(1), key(2));
    let b1 = f.mine(alice.address());
    f.mine(alice.address());
    let pay = alice.spend(
        &[outpoint(b1.txs[0].txid(), 0)],
        &[(bob.address(), 3), (alice.address(), 6)],
    );
    f.engine.submit_tx(pay.clone()).unwrap();
    let child = alice.spend(&[outpoint(pay.txid(), 1)], &[(bob.address(), 4)]);
    f.engine.submit_tx(child.clone()).unwrap();
    let live_fees = |f: &Fixture| -> Vec<(Hash256, u64)> {
        f.engine
            .notifications_since(0, 1000)
            .unwrap()
            .into_iter()
            .filter_map(|n| match n.kind {
                NotificationKind::TxAdded { txid, fee } => Some((txid, fee)),
                _ => None,
            })
            .collect()
    };
    let want = vec![(pay.txid(), 1), (child.txid(), 2)];
    assert_eq!(live_fees(&f), want, "while in the mempool");
    f.mine(alice.address());
    assert!(f.engine.mempool(10).unwrap().is_empty());
    assert_eq!(live_fees(&f), want, "after both were confirmed");
}
