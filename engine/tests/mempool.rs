//! Mempool policy: bounded with lowest-fee-rate eviction, and templates ordered by
//! ancestor-package fee rate (a high-fee child pulls in its low-fee parent).

mod common;
use common::*;
use engine::testkit::{outpoint, TestKey};
use engine::tx::OutPoint;
use engine::{EngineError, Hash256, Reject};

/// A fixture whose key `n` (n in 1..=count) owns one mature coin of 10.
fn funded(count: u64, max_mempool: usize) -> (Fixture, Vec<(TestKey, OutPoint)>) {
    let mut p = fast_params();
    p.mempool_max_txs = max_mempool;
    let f = Fixture::with_params(p);
    let coins = (1..=count)
        .map(|n| {
            let k = key(n);
            let b = f.mine(k.address());
            (k, outpoint(b.txs[0].txid(), 0))
        })
        .collect();
    f.mine(key(99).address());
    f.mine(key(99).address());
    (f, coins)
}

fn pay(k: &TestKey, coin: OutPoint, fee: u64) -> engine::Transaction {
    k.spend(&[coin], &[(key(50).address(), 10 - fee)])
}

#[test]
fn a_full_mempool_evicts_the_lowest_fee_rate_or_refuses() {
    let (f, coins) = funded(5, 3);
    let low = pay(&coins[0].0, coins[0].1, 1);
    for (i, fee) in [(0, 1), (1, 2), (2, 3)] {
        let tx = pay(&coins[i].0, coins[i].1, fee);
        f.engine.submit_tx(tx).unwrap();
    }
    // Paying no more than the cheapest: refused, nothing changes.
    let before = f.state();
    let err = f
        .engine
        .submit_tx(pay(&coins[3].0, coins[3].1, 1))
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Rejected(Reject::MempoolFull)),
        "{err}"
    );
    assert_eq!(f.state(), before);
    // Paying more: the cheapest leaves.
    f.engine.submit_tx(pay(&coins[4].0, coins[4].1, 4)).unwrap();
    let pool = f.mempool_txids();
    assert_eq!(pool.len(), 3);
    assert!(
        !pool.contains(&low.txid()),
        "the lowest fee rate was evicted"
    );
    assert!(f.engine.verify().unwrap().ok());
}

#[test]
fn templates_take_the_best_package_first() {
    let (f, coins) = funded(2, 100);
    let (a, b) = (&coins[0], &coins[1]);
    // Parent pays no fee, its child pays 6: the package rate beats a lone fee of 2.
    let parent = a.0.spend(&[a.1], &[(a.0.address(), 10)]);
    let child =
        a.0.spend(&[outpoint(parent.txid(), 0)], &[(key(50).address(), 4)]);
    let middle = pay(&b.0, b.1, 2);
    for tx in [&parent, &middle, &child] {
        f.engine.submit_tx(tx.clone()).unwrap();
    }
    let t = f
        .engine
        .block_template_limited(key(9).address(), vec![], 2)
        .unwrap();
    let ids: Vec<Hash256> = t.txs[1..].iter().map(|t| t.txid()).collect();
    assert_eq!(ids, vec![parent.txid(), child.txid()]);
    assert_eq!(t.fees, 6);
    let all = f.engine.block_template(key(9).address(), vec![]).unwrap();
    assert_eq!(all.txs.len(), 4);
    assert_eq!(all.fees, 8);
}

/// Admits `mined` payments, builds a block of them, admits `left` more, then connects the
/// block: the mempool must hold exactly the `left`, and every projection (the mempool's
/// indexes included) must equal a rebuild's, which folds the block one point delete at a
/// time.
fn mine_part_of_the_mempool(mined: usize, left: usize) {
    let (f, coins) = funded((mined + left) as u64, 100);
    let pays: Vec<_> = coins
        .iter()
        .enumerate()
        .map(|(i, (k, coin))| pay(k, *coin, 1 + i as u64 % 3))
        .collect();
    for tx in &pays[..mined] {
        f.engine.submit_tx(tx.clone()).unwrap();
    }
    let block = f.build_block(key(99).address());
    assert_eq!(block.txs.len(), mined + 1);
    for tx in &pays[mined..] {
        f.engine.submit_tx(tx.clone()).unwrap();
    }
    f.engine.submit_block(block).unwrap();
    let mut pool = f.mempool_txids();
    let mut expected: Vec<Hash256> = pays[mined..].iter().map(|t| t.txid()).collect();
    pool.sort();
    expected.sort();
    assert_eq!(pool, expected);
    assert_eq!(f.engine.status().unwrap().mempool_size, left as u64);
    let report = f.engine.verify().unwrap();
    assert!(
        report.ok(),
        "differs from a rebuild: {:?}",
        report.mismatched
    );
    // The survivors still spend what they spent: a double spend of one is refused.
    if let Some((k, coin)) = coins.get(mined) {
        let fee = 1 + mined as u64 % 3;
        let twin = k.spend(&[*coin], &[(key(51).address(), 10 - fee)]);
        let err = f.engine.submit_tx(twin).unwrap_err();
        assert!(matches!(err, EngineError::Rejected(_)), "{err}");
    }
}

#[test]
fn a_block_taking_most_of_the_mempool_leaves_exactly_the_rest() {
    // 7 block transactions against a mempool of 9: past the scan share.
    mine_part_of_the_mempool(6, 3);
}

#[test]
fn a_block_taking_all_of_the_mempool_empties_it() {
    mine_part_of_the_mempool(5, 0);
}

#[test]
fn a_small_block_against_a_large_mempool_leaves_exactly_the_rest() {
    // 2 block transactions against a mempool of 12: point deletes.
    mine_part_of_the_mempool(1, 11);
}
