//! Issue 17 item 1: side-chain junk. Anyone can push valid-looking blocks off an early,
//! easy block; their bodies must not be stored (the log is forever), and reading a big
//! block back must not build its whole view in one answer.

use bitplace_reliability::*;
use engine::encoding::Encode;
use engine::testkit::{outpoint, TestKey};
use engine::{Block, Hash256, Transaction, TxOut};
use serde_json::{json, Value};

/// A solved block paying 1 unit to a test key (the shared helper, one payout).
fn block(prev: Hash256, height: u64, time: u32, tag: &[u8], txs: Vec<Transaction>) -> Block {
    let payout = vec![TxOut {
        amount: 1,
        address: TestKey::new(1).address(),
    }];
    bitplace_reliability::blocks::block(prev, height, time, tag, payout, txs)
}

/// Self-made transactions spending made-up inputs, 100 outputs each (signed, so every
/// context-free check passes): about 176 KB of junk per block.
fn junk_txs(salt: u8) -> Vec<Transaction> {
    let k = TestKey::new(3);
    (0..60u8)
        .map(|i| {
            let outs: Vec<_> = (0..100).map(|_| (k.address(), 1)).collect();
            k.spend(&[outpoint(Hash256([i ^ salt; 32]), u32::from(salt))], &outs)
        })
        .collect()
}

fn hash_of(v: &Value) -> Hash256 {
    Hash256::from_display_hex(v.as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn big_blocks_off_an_early_block_are_not_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), fast_dev(&[])).await;
    let miner = TestKey::new(2).address().to_string();
    for _ in 0..150 {
        node.mine(&miner, 1).await;
    }
    let (_, genesis) = node.get("/v1/blocks/0").await;
    let genesis_hash = hash_of(&genesis["hash"]);
    let gtime = genesis["header"]["time"].as_u64().unwrap() as u32;
    let ledger = tmp.path().join("ledger.redb");
    let size_before = std::fs::metadata(&ledger).unwrap().len();
    let before = node.fingerprint().await;
    let mut pushed_bytes = 0;
    for salt in 1..=3u8 {
        let junk = block(genesis_hash, 1, gtime + 1, &[salt], junk_txs(salt));
        let hex = hex::encode(junk.encode());
        pushed_bytes += hex.len() / 2;
        let (st, r) = node.post("/v1/p2p/blocks", &json!({"hex": hex})).await;
        // A refusal by this node's storage policy (422), not "invalid": nothing against
        // a peer that relays it.
        assert_eq!(st, 422, "{r}");
        assert_eq!(r["error"], json!("fork_too_far_behind"), "{r}");
        let (st, _) = node.get(&format!("/v1/blocks/{}", junk.hash())).await;
        assert_eq!(st, 404, "the junk block is not stored");
    }
    assert_eq!(node.fingerprint().await, before, "the log did not grow");
    let size_after = std::fs::metadata(&ledger).unwrap().len();
    eprintln!(
        "side-chain junk: 3 blocks ({pushed_bytes} bytes) off genesis at height 150 refused; ledger {size_before} -> {size_after} bytes"
    );
    assert!(
        size_after < size_before + pushed_bytes as u64 / 2,
        "{size_before} -> {size_after}"
    );
    // A fork a few blocks below the tip can still win: stored as a side chain.
    let st = node.status().await;
    let h = st["height"].as_u64().unwrap();
    let (_, parent) = node.get(&format!("/v1/blocks/{}", h - 2)).await;
    let side = block(
        hash_of(&parent["hash"]),
        h - 1,
        st["tip_time"].as_u64().unwrap() as u32 + 1,
        b"side",
        vec![],
    );
    let (code, r) = node
        .post(
            "/v1/p2p/blocks",
            &json!({"hex": hex::encode(side.encode())}),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["outcome"], json!("side_chain"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_view_is_paged() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(
        tmp.path(),
        &fast_dev(&["--coinbase-maturity", "0", "--reward", "1000"]),
    )
    .await;
    let k = TestKey::new(5);
    let a = k.address().to_string();
    node.mine(&a, 1).await;
    let coin = node.utxos(&a).await[0];
    let fan = k.spend(
        &[outpoint(coin.0, coin.1)],
        &(0..250).map(|_| (k.address(), 4)).collect::<Vec<_>>(),
    );
    assert_eq!(node.submit_tx(&fan).await.0, 200);
    node.mine(&a, 10).await;
    let fan_id = fan.txid();
    for vout in 0..250u32 {
        let tx = k.spend(&[outpoint(fan_id, vout)], &[(k.address(), 4)]);
        assert_eq!(node.submit_tx(&tx).await.0, 200);
    }
    node.mine(&a, 1000).await;
    let height = node.status().await["height"].as_u64().unwrap();
    let (st, first) = node.get(&format!("/v1/blocks/{height}")).await;
    assert_eq!(st, 200);
    assert_eq!(first["tx_count"], json!(251));
    assert_eq!(first["txs"].as_array().unwrap().len(), 100);
    assert_eq!(first["tx_offset"], json!(0));
    assert_eq!(first["next_offset"], json!(100));
    // Walking the pages lists every transaction once, in block order.
    let mut ids: Vec<String> = Vec::new();
    let mut offset = Some(0u64);
    while let Some(o) = offset {
        let (st, page) = node
            .get(&format!("/v1/blocks/{height}?offset={o}&limit=70"))
            .await;
        assert_eq!(st, 200, "{page}");
        assert_eq!(page["tx_offset"], json!(o));
        for t in page["txs"].as_array().unwrap() {
            ids.push(t["txid"].as_str().unwrap().to_string());
        }
        offset = page["next_offset"].as_u64();
    }
    assert_eq!(ids.len(), 251);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 251);
    let (_, past) = node.get(&format!("/v1/blocks/{height}?offset=900")).await;
    assert_eq!(past["txs"], json!([]));
    assert!(past.get("next_offset").is_none());
    let (st, r) = node.get(&format!("/v1/blocks/{height}?offset=-1")).await;
    assert_eq!(st, 400, "{r}");
}

/// Issue 17 item 1: side blocks within reach of the tip are stored up to
/// `--max-side-chain-mb`; past it a push is refused by policy (503 `side_chain_full`,
/// nothing written), the count holds across a restart, and shallow forks and a branch
/// that overtakes are still taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn side_chain_storage_is_bounded_by_its_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(tmp.path(), fast_dev(&["--max-side-chain-mb", "1"])).await;
    let miner = TestKey::new(2).address().to_string();
    for _ in 0..10 {
        node.mine(&miner, 1).await;
    }
    let st = node.status().await;
    let height = st["height"].as_u64().unwrap();
    let tip_time = st["tip_time"].as_u64().unwrap() as u32;
    // Forks deeper than the shallow ones the budget leaves alone (engine
    // SHALLOW_FORK_BLOCKS = 6): siblings of the block 7 below the tip.
    let deep = 7;
    let fork_height = height - deep;
    let (_, parent) = node.get(&format!("/v1/blocks/{}", fork_height - 1)).await;
    let parent = hash_of(&parent["hash"]);
    let ledger = tmp.path().join("ledger.redb");
    let size_before = std::fs::metadata(&ledger).unwrap().len();
    // Stored on a side branch while there is room: first a valid one (later blocks can
    // make it the best chain), then junk.
    let clean = block(parent, fork_height, tip_time + 100, b"clean", vec![]);
    let (code, r) = node
        .post(
            "/v1/p2p/blocks",
            &json!({"hex": hex::encode(clean.encode())}),
        )
        .await;
    assert_eq!(
        (code, r["outcome"].clone()),
        (200, json!("side_chain")),
        "{r}"
    );
    let (mut stored, mut refused, mut stored_bytes, mut refused_bytes) = (0, 0, 0, 0);
    let mut last = None;
    for salt in 1..=8u8 {
        let junk = block(
            parent,
            fork_height,
            tip_time + u32::from(salt),
            &[salt],
            junk_txs(salt),
        );
        let size = junk.encode().len();
        let before = node.fingerprint().await;
        let (code, r) = node
            .post(
                "/v1/p2p/blocks",
                &json!({"hex": hex::encode(junk.encode())}),
            )
            .await;
        if code == 200 {
            assert_eq!(r["outcome"], json!("side_chain"), "{r}");
            assert_eq!(refused, 0, "nothing is stored after the first refusal");
            stored += 1;
            stored_bytes += size;
        } else {
            // This node's storage policy, not "invalid": nothing against a relaying peer.
            assert_eq!(code, 503, "{r}");
            assert_eq!(r["error"], json!("side_chain_full"), "{r}");
            assert_eq!(node.fingerprint().await, before, "nothing written");
            let (st, _) = node.get(&format!("/v1/blocks/{}", junk.hash())).await;
            assert_eq!(st, 404, "the refused block is not stored");
            refused += 1;
            refused_bytes += size;
            last = Some(junk);
        }
    }
    assert_eq!(stored, 5, "1 MB holds five junk blocks of ~176 KB");
    assert_eq!(refused, 3);
    let counted = node.status().await["side_chain_bytes"].as_u64().unwrap();
    assert_eq!(counted, (stored_bytes + clean.encode().len()) as u64);
    let size_after = std::fs::metadata(&ledger).unwrap().len();
    eprintln!(
        "side-chain budget 1 MB: a clean sibling and {stored} junk side blocks stored ({stored_bytes} bytes), {refused} refused ({refused_bytes} bytes, 503 side_chain_full); ledger {size_before} -> {size_after} bytes"
    );
    // The count comes from the projections: the same after a restart, and so is the answer.
    node.restart().await;
    assert_eq!(node.status().await["side_chain_bytes"], json!(counted));
    let last = last.unwrap();
    let (code, r) = node
        .post(
            "/v1/p2p/blocks",
            &json!({"hex": hex::encode(last.encode())}),
        )
        .await;
    assert_eq!(
        (code, r["error"].clone()),
        (503, json!("side_chain_full")),
        "{r}"
    );
    // However full, a shallow fork (a sibling of the tip) is stored, and the clean deep
    // branch still overtakes: the blocks on top of it are shallow forks, the last one
    // makes it the best chain.
    let (_, tip_parent) = node.get(&format!("/v1/blocks/{}", height - 1)).await;
    let tie = block(
        hash_of(&tip_parent["hash"]),
        height,
        tip_time + 99,
        b"tie",
        vec![],
    );
    let (code, r) = node
        .post("/v1/p2p/blocks", &json!({"hex": hex::encode(tie.encode())}))
        .await;
    assert_eq!(
        (code, r["outcome"].clone()),
        (200, json!("side_chain")),
        "{r}"
    );
    let mut prev = clean.hash();
    let mut outcome = Value::Null;
    for i in 1..=deep + 1 {
        let next = block(
            prev,
            fork_height + i,
            tip_time + 100 + i as u32,
            b"win",
            vec![],
        );
        prev = next.hash();
        let (code, r) = node
            .post(
                "/v1/p2p/blocks",
                &json!({"hex": hex::encode(next.encode())}),
            )
            .await;
        assert_eq!(code, 200, "{r}");
        outcome = r["outcome"].clone();
    }
    assert_eq!(outcome, json!("reorganized"));
    let (_, v) = node.get("/v1/status").await;
    assert_eq!(v["best_hash"], json!(prev.to_string()));
}
