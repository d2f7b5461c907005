//! Item 5: the same transaction or block submitted again — directly, after a SIGKILL
//! restart, or through another peer — is applied once: the log does not grow, the
//! mempool and the chain hold it once.

use bitplace_reliability::*;
use engine::encoding::Encode;
use engine::testkit::TestKey;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resubmitted_transactions_and_blocks_apply_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::start(&tmp.path().join("a"), fast_dev(&[])).await;
    let b = Node::start(&tmp.path().join("b"), fast_dev(&[])).await;
    let k = TestKey::new(500);
    let ka = k.address().to_string();
    for _ in 0..2 {
        a.mine(&ka, 1).await;
    }
    let (st, r) = b.post("/v1/peers", &json!({"url": a.api.base})).await;
    assert!(st == 200 || st == 201, "{r}");
    b.post("/v1/peers/resolve", &json!({})).await;
    assert_eq!(a.fingerprint().await.3, b.fingerprint().await.3);

    let c = a.utxos(&ka).await.into_iter().find(|c| c.3).unwrap();
    let tx = pay(&k, (c.0, c.1), &[(TestKey::new(501).address(), c.2)]);
    let txid = tx.txid().to_string();
    let hex_tx = hex::encode(tx.encode());
    let (st, r) = a.submit_tx(&tx).await;
    assert_eq!((st, &r["duplicate"]), (200, &json!(false)), "{r}");
    let once = a.fingerprint().await;
    assert_eq!(once.4, 1);

    // Again, directly; through the peer route; after a SIGKILL restart.
    let (st, r) = a.submit_tx(&tx).await;
    assert_eq!((st, &r["duplicate"]), (200, &json!(true)), "{r}");
    let (st, r) = a
        .post("/v1/p2p/tx", &json!({"hex": hex_tx, "from": b.api.base}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        a.fingerprint().await,
        once,
        "nothing written for a duplicate"
    );
    a.restart().await;
    let (st, r) = a.submit_tx(&tx).await;
    assert_eq!(
        (st, &r["duplicate"]),
        (200, &json!(true)),
        "after restart: {r}"
    );
    assert_eq!(a.fingerprint().await, once);

    // Through the other node: B gets it (by relay or from us), holds it once, and relays
    // nothing new back to A.
    let (st, r) = b.submit_tx(&tx).await;
    assert_eq!(st, 200, "{r}");
    let (st, r) = b.submit_tx(&tx).await;
    assert_eq!((st, &r["duplicate"]), (200, &json!(true)), "{r}");
    assert_eq!(b.fingerprint().await.4, 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(a.fingerprint().await, once);

    // A block: mined on A, pushed again to A (also after a restart) and to B twice.
    a.mine(&ka, 10).await;
    let mined = a.fingerprint().await;
    assert_eq!(mined.4, 0, "the transaction left the mempool for the block");
    let (_, blk) = a.get(&format!("/v1/p2p/blocks/{}", mined.3)).await;
    let push = json!({"hex": blk["hex"]});
    let (st, r) = a.post("/v1/p2p/blocks", &push).await;
    assert_eq!((st, &r["outcome"]), (200, &json!("duplicate")), "{r}");
    assert_eq!(a.fingerprint().await, mined);
    a.restart().await;
    let (st, r) = a.post("/v1/p2p/blocks", &push).await;
    assert_eq!((st, &r["outcome"]), (200, &json!("duplicate")), "{r}");
    assert_eq!(a.fingerprint().await, mined);
    for _ in 0..2 {
        let (st, r) = b.post("/v1/p2p/blocks", &push).await;
        assert_eq!(st, 200, "{r}");
    }
    let bf = b.fingerprint().await;
    assert_eq!((&bf.0, bf.2, &bf.3, bf.4), (&mined.0, mined.2, &mined.3, 0));
    // The confirmed transaction submitted again: a duplicate, not back in the mempool.
    for n in [&a, &b] {
        let (st, r) = n.submit_tx(&tx).await;
        assert_eq!((st, &r["duplicate"]), (200, &json!(true)), "{r}");
        assert_eq!(n.tx_state(&txid).await, Some(true));
        assert_eq!(n.fingerprint().await.4, 0);
    }
    assert_eq!(a.fingerprint().await, mined);
    // The chain holds it once: one block with it, one history entry for the payee.
    let (_, hist) = a
        .get(&format!("/v1/addresses/{}", TestKey::new(501).address()))
        .await;
    assert_eq!(hist["history"].as_array().unwrap().len(), 1, "{hist}");
    eprintln!("idempotence: tx x7 and block x4 resubmitted (direct, peer route, after restart, other node): applied once");
}
