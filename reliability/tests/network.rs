//! Item 4: several real nodes on loopback.
//!
//! - Partition and heal: 3 nodes start unconnected (a partition), each mines its own
//!   branch; after `POST /v1/peers` + `POST /v1/peers/resolve` all three serve one best
//!   chain (the most work) with identical UTXO-set hashes.
//! - A reorganisation 12 blocks deep: the losing side's confirmed transactions are back
//!   in its mempool.
//! - A fake peer (a small axum server speaking `/v1/p2p/*`) offering a chain that claims
//!   more work but starts with an invalid block (bad PoW, bad signature, inflated
//!   coinbase, broken merkle root) is refused: nothing changes, the peer is marked
//!   misbehaving, and the same block pushed to `/v1/p2p/blocks` gets a 400.

use axum::extract::Path as AxPath;
use axum::routing::{get, post};
use axum::{Json, Router};
use bitplace_reliability::*;
use engine::encoding::Encode;
use engine::testkit::{outpoint, TestKey};
use engine::{Block, Hash256, Transaction, TxInputs, TxOut};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

async fn connect(node: &Node, peer: &Node) {
    let (st, r) = node.post("/v1/peers", &json!({"url": peer.api.base})).await;
    assert!(st == 200 || st == 201, "{st} {r}");
}

async fn resolve(node: &Node) -> Value {
    let (st, r) = node.post("/v1/peers/resolve", &json!({})).await;
    assert_eq!(st, 200, "{r}");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_nodes_heal_onto_one_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Node::start(&tmp.path().join(format!("n{i}")), fast_dev(&[])).await);
    }
    // Partitioned: each mines its own branch; node 1 the longest.
    let keys: Vec<TestKey> = (0..3).map(|i| TestKey::new(200 + i)).collect();
    for (i, n) in nodes.iter().enumerate() {
        for _ in 0..[3, 6, 2][i] {
            n.mine(&keys[i].address().to_string(), 10).await;
        }
    }
    // A confirmed payment on node 0's branch, which is about to lose.
    let c = nodes[0].utxos(&keys[0].address().to_string()).await[0];
    let tx = pay(&keys[0], (c.0, c.1), &[(keys[1].address(), c.2)]);
    assert_eq!(nodes[0].submit_tx(&tx).await.0, 200);
    nodes[0].mine(&keys[0].address().to_string(), 10).await;
    let hashes: Vec<String> = {
        let mut v = Vec::new();
        for n in &nodes {
            v.push(n.fingerprint().await.3);
        }
        v
    };
    assert!(
        hashes[0] != hashes[1] && hashes[1] != hashes[2],
        "branches differ"
    );
    let winner = nodes[1].fingerprint().await;

    // Heal: everyone learns everyone, then resolves.
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                connect(&nodes[i], &nodes[j]).await;
            }
        }
    }
    for n in &nodes {
        resolve(n).await;
    }
    let converged = wait_until(Duration::from_secs(30), || async {
        let mut fps = Vec::new();
        for n in &nodes {
            let f = n.fingerprint().await;
            fps.push((f.0, f.2, f.3));
        }
        fps.iter().all(|f| *f == fps[0])
    })
    .await;
    let mut states = Vec::new();
    for n in &nodes {
        states.push(n.fingerprint().await);
    }
    assert!(converged, "nodes did not converge: {states:?}");
    assert_eq!(states[0].3, winner.3, "the most-work branch won");
    assert_eq!(states[0].0, winner.0, "UTXO set of the winner");
    // The loser's payment spent a coinbase of the losing branch: it is gone from the
    // chain and, invalid now, not in any mempool either (no coin was created twice).
    for n in &nodes {
        assert_eq!(n.tx_state(&tx.txid().to_string()).await, None);
    }
    eprintln!(
        "network: 3 nodes partitioned (3/6/2 blocks), healed onto height {} with one UTXO set hash",
        states[0].2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reorg_deeper_than_ten_blocks_returns_transactions_to_the_mempool() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let k = TestKey::new(300);
    let ka = k.address().to_string();
    // A shared prefix: 4 blocks, then the data directory is copied (no peering needed).
    let mut a = Node::start(&da, fast_dev(&[])).await;
    for _ in 0..4 {
        a.mine(&ka, 1).await;
    }
    a.kill();
    copy_dir(&da, &db);
    a.restart().await;
    let b = Node::start(&db, fast_dev(&[])).await;
    // Side A: two payments confirmed, then 12 blocks in all.
    let coins: Vec<_> = a.utxos(&ka).await.into_iter().filter(|c| c.3).collect();
    assert!(coins.len() >= 2);
    let other = TestKey::new(301).address();
    let txs: Vec<Transaction> = coins[..2]
        .iter()
        .map(|c| pay(&k, (c.0, c.1), &[(other, c.2)]))
        .collect();
    for tx in &txs {
        assert_eq!(a.submit_tx(tx).await.0, 200);
    }
    for _ in 0..12 {
        a.mine(&TestKey::new(302).address().to_string(), 10).await;
    }
    for tx in &txs {
        assert_eq!(a.tx_state(&tx.txid().to_string()).await, Some(true));
    }
    // Side B: 15 blocks, more work.
    for _ in 0..15 {
        b.mine(&TestKey::new(303).address().to_string(), 1).await;
    }
    let before_a = a.fingerprint().await;
    assert_eq!(before_a.2, 16);
    connect(&a, &b).await;
    let r = resolve(&a).await;
    let after_a = a.fingerprint().await;
    let after_b = b.fingerprint().await;
    assert_eq!(after_a.3, after_b.3, "A adopted B's chain: {r}");
    assert_eq!(after_a.0, after_b.0, "same UTXO set hash");
    assert_eq!(after_a.2, 19);
    for tx in &txs {
        assert_eq!(
            a.tx_state(&tx.txid().to_string()).await,
            Some(false),
            "{} is back in the mempool after a 12-block reorg",
            tx.txid()
        );
    }
    eprintln!("network: reorg 12 blocks deep, 2 transactions back in the mempool");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Serves `chain` over the peer protocol; returns its base URL.
async fn fake_peer(chain: Vec<Block>) -> String {
    let headers: Vec<u8> = chain.iter().flat_map(|b| b.header.to_bytes()).collect();
    let by_hash: Arc<HashMap<String, String>> = Arc::new(
        chain
            .iter()
            .map(|b| (b.hash().to_string(), hex::encode(b.encode())))
            .collect(),
    );
    let router = Router::new()
        .route(
            "/v1/p2p/headers",
            post(move || {
                let h = headers.clone();
                async move { ([("content-type", "application/octet-stream")], h) }
            }),
        )
        .route(
            "/v1/p2p/blocks/{hash}",
            get(move |AxPath(h): AxPath<String>| {
                let m = by_hash.clone();
                async move {
                    match m.get(&h) {
                        Some(hex) => Ok(Json(json!({"hex": hex}))),
                        None => Err(axum::http::StatusCode::NOT_FOUND),
                    }
                }
            }),
        )
        .route(
            "/v1/p2p/locator",
            get(|| async { Json(Vec::<Hash256>::new()) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// A block on `prev` at `height` paying `reward` to `to`, with `txs` after the coinbase.
fn block(
    prev: Hash256,
    height: u64,
    time: u32,
    to: &TestKey,
    reward: u64,
    txs: Vec<Transaction>,
) -> Block {
    let payout = vec![TxOut {
        amount: reward,
        address: to.address(),
    }];
    blocks::block(prev, height, time, b"fake", payout, txs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_offering_an_invalid_chain_with_more_work_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), fast_dev(&[])).await;
    let k = TestKey::new(400);
    for _ in 0..3 {
        node.mine(&k.address().to_string(), 1).await;
    }
    let st = node.status().await;
    let tip = Hash256::from_display_hex(st["best_hash"].as_str().unwrap()).unwrap();
    let height = st["height"].as_u64().unwrap();
    let time = st["tip_time"].as_u64().unwrap() as u32 + 1;
    let coin = node.utxos(&k.address().to_string()).await[0];
    let before = node.fingerprint().await;

    // The first block of each chain is invalid in one way; 5 valid-looking blocks follow,
    // so the chain claims far more work than ours.
    let good_first = || block(tip, height + 1, time, &k, 10, vec![]);
    let mut bad_pow = good_first();
    while bad_pow.header.meets_target() {
        bad_pow.header.nonce += 1;
    }
    let mut bad_sig_tx = k.spend(&[outpoint(coin.0, coin.1)], &[(k.address(), coin.2)]);
    if let TxInputs::Transfer(ins) = &mut bad_sig_tx.inputs {
        ins[0].signature[5] ^= 0x40;
    }
    let bad_sig = block(tip, height + 1, time, &k, 10, vec![bad_sig_tx]);
    let inflated = block(tip, height + 1, time, &k, 1_000_000, vec![]);
    let mut bad_merkle = good_first();
    bad_merkle.header.merkle_root = Hash256([7; 32]);
    bad_merkle.header = blocks::solve(bad_merkle.header);
    // The status each gets is the one every route gives that refusal: 400 for data that
    // can never be valid, 422 for a ledger rule broken given the chain.
    let cases = [
        ("bad proof of work", bad_pow, "high_hash", 400),
        ("bad signature", bad_sig, "bad_signature", 400),
        ("inflated coinbase", inflated, "coinbase_too_large", 422),
        ("broken merkle root", bad_merkle, "bad_merkle_root", 400),
    ];
    for (what, first, _code, _) in &cases {
        let mut chain = vec![first.clone()];
        for i in 0..5u64 {
            let prev = chain.last().unwrap().hash();
            chain.push(block(
                prev,
                height + 2 + i,
                time + 1 + i as u32,
                &k,
                10,
                vec![],
            ));
        }
        let url = fake_peer(chain).await;
        let (st, r) = node.post("/v1/peers", &json!({"url": url})).await;
        assert!(st == 200 || st == 201, "{r}");
        let report = resolve(&node).await;
        assert_eq!(report["adopted"], json!(false), "{what}: {report}");
        assert_eq!(node.fingerprint().await, before, "{what}: the node changed");
        let (_, peers) = node.get("/v1/peers").await;
        let me = peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["url"] == json!(url))
            .unwrap();
        assert_eq!(me["status"], json!("misbehaving"), "{what}: {me}");
    }
    // Pushed directly, each gets its refusal's status and code and changes nothing.
    let mut codes = Vec::new();
    for (what, first, code, status) in &cases {
        let (st, r) = node
            .post(
                "/v1/p2p/blocks",
                &json!({"hex": hex::encode(first.encode())}),
            )
            .await;
        assert_eq!(st, *status, "{what}: {r}");
        codes.push(format!("{what}: {}", r["error"]));
        assert_eq!(r["error"], json!(code), "{what}: {r}");
    }
    assert_eq!(node.fingerprint().await, before);
    // A valid block on the same tip is still accepted afterwards (nothing got stuck).
    let (st, r) = node
        .post(
            "/v1/p2p/blocks",
            &json!({"hex": hex::encode(block(tip, height + 1, time, &k, 10, vec![]).encode())}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    eprintln!(
        "network: 4 invalid chains with more work refused ({})",
        codes.join(", ")
    );
}
