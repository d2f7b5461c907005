//! Issue 17 item 1: side-chain junk. Anyone can push valid-looking blocks off an early,
//! easy block; their bodies must not be stored (the log is forever), and reading a big
//! block back must not build its whole view in one answer.

use bitplace_reliability::*;
use engine::encoding::Encode;
use engine::testkit::{outpoint, TestKey};
use engine::{Block, BlockHeader, CompactTarget, Hash256, Transaction, TxOut};
use serde_json::{json, Value};

fn solve(mut header: BlockHeader) -> BlockHeader {
    while !header.meets_target() {
        header.nonce += 1;
    }
    header
}

fn block(prev: Hash256, height: u64, time: u32, tag: &[u8], txs: Vec<Transaction>) -> Block {
    let coinbase = Transaction::coinbase(
        height,
        tag.to_vec(),
        vec![TxOut {
            amount: 1,
            address: TestKey::new(1).address(),
        }],
    );
    let mut all = vec![coinbase];
    all.extend(txs);
    let ids: Vec<Hash256> = all.iter().map(Transaction::txid).collect();
    let header = solve(BlockHeader {
        version: 1,
        prev_hash: prev,
        merkle_root: engine::merkle::merkle_root(&ids).0,
        time,
        bits: CompactTarget::EASIEST,
        nonce: 0,
    });
    Block { header, txs: all }
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
    // Self-made transactions spending made-up inputs, many outputs each (signed, so
    // every context-free check passes).
    let k = TestKey::new(3);
    let junk_txs = |salt: u8| -> Vec<Transaction> {
        (0..60u8)
            .map(|i| {
                let outs: Vec<_> = (0..100).map(|_| (k.address(), 1)).collect();
                k.spend(&[outpoint(Hash256([i ^ salt; 32]), u32::from(salt))], &outs)
            })
            .collect()
    };
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
