//! End to end through the CLI against the real ledger engine (in memory, dev params)
//! behind a minimal HTTP shim that serves the two routes the wallet's `send`/`balance`
//! use, shaped as docs/API.md says: `GET /v1/addresses/{addr}` (the engine's own
//! `AddressInfo`) and `POST /v1/tx`. The real node (`bitplace-node`) replaces the shim
//! in the end-to-end test still to be written once it exists.
//!
//! Flow: import wallet A, create wallet B; mine a block to A and one more to mature it;
//! A pays B 5, then at once pays B 2 more out of its *unconfirmed* change; a block
//! confirms both; balances of A and B are exactly right at each step.

mod common;

use common::{not_found, wallet_json, FakeNode, Reply, Request, PASSPHRASE};
use engine::encoding::Decode;
use engine::{Address, ChainParams, Engine, EngineConfig, Hash256, Transaction};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const ABANDON_0: &str = "bp1s53gfleaqdwfaxyas5xhzsytz56arptawkt7rh";

fn shim(engine: Engine) -> FakeNode {
    FakeNode::start(move |req: &Request, _| {
        if req.method == "GET" && req.path.starts_with("/v1/tx/") {
            // `history` reads each transaction: the fields docs/API.md's tx view has.
            let txid: Hash256 = req.path["/v1/tx/".len()..].parse().unwrap();
            let Some(t) = engine.transaction(&txid).unwrap() else {
                return not_found();
            };
            let outputs: Vec<Value> =
                t.tx.outputs
                    .iter()
                    .map(|o| json!({"address": o.address, "amount": o.amount}))
                    .collect();
            Reply::Json(
                200,
                json!({
                    "txid": t.txid, "coinbase": t.coinbase, "inputs": t.inputs,
                    "outputs": outputs, "fee": t.fee, "size": t.size, "height": t.height,
                    "confirmations": t.confirmations,
                })
                .to_string(),
            )
        } else if req.method == "GET" && req.path.starts_with("/v1/blocks?from=") {
            let q = &req.path["/v1/blocks?from=".len()..];
            let from: u64 = q.split('&').next().unwrap().parse().unwrap();
            let blocks = engine.blocks(from, 1).unwrap();
            Reply::Json(200, serde_json::to_string(&blocks).unwrap())
        } else if req.method == "GET" {
            let Some(addr) = req.path.strip_prefix("/v1/addresses/") else {
                return not_found();
            };
            let Ok(addr) = addr.parse::<Address>() else {
                return Reply::Json(
                    400,
                    json!({"error": "bad_address", "message": addr}).to_string(),
                );
            };
            let info = engine.address(&addr, 100).unwrap();
            Reply::Json(200, serde_json::to_string(&info).unwrap())
        } else if req.method == "POST" && req.path == "/v1/tx" {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let bytes = hex::decode(body["hex"].as_str().unwrap()).unwrap();
            let tx = Transaction::decode(&bytes).unwrap();
            match engine.submit_tx(tx) {
                Ok(a) => Reply::Json(200, json!({ "txid": a.txid }).to_string()),
                Err(e) => Reply::Json(
                    400,
                    json!({"error": "rejected", "message": e.to_string()}).to_string(),
                ),
            }
        } else {
            not_found()
        }
    })
}

fn balance(wallet: &Path, node: &str) -> (u64, i64, u64) {
    let v = wallet_json(wallet, node, &["balance"]);
    (
        v["confirmed"].as_u64().unwrap(),
        v["unconfirmed"].as_i64().unwrap(),
        v["immature"].as_u64().unwrap(),
    )
}

#[test]
fn mine_send_spend_unconfirmed_change_confirm() {
    let mut config = EngineConfig::new(ChainParams::dev());
    // A fixed clock a day after the dev genesis (whose timestamp may be ahead of this
    // machine's clock, which would make every block "too new").
    let genesis_time = u64::from(config.params.genesis().header.time);
    config.clock = std::sync::Arc::new(move || genesis_time + 86_400);
    let engine = Engine::in_memory(config).unwrap();
    let node = shim(engine.clone());
    let url = node.url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let wa = dir.path().join("a.json");
    let wb = dir.path().join("b.json");
    assert_eq!(
        wallet_json(&wa, url, &["import", "--mnemonic", ABANDON])["address"],
        ABANDON_0
    );
    let b_addr: Address = wallet_json(&wb, url, &["create"])["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let a_addr: Address = ABANDON_0.parse().unwrap();
    let elsewhere = Address([0x33; 20]);

    // Reward 10 (dev); coinbase maturity 1.
    engine.mine_block(a_addr, None).unwrap();
    let (c, u, i) = balance(&wa, url);
    assert_eq!((c + i, u), (10, 0));
    engine.mine_block(elsewhere, None).unwrap();
    assert_eq!(balance(&wa, url), (10, 0, 0));

    // A pays B 5 at 1 unit / 1000 bytes: one input, two outputs, 195 bytes → fee 1, change 4.
    let t1: Hash256 = wallet_json(
        &wa,
        url,
        &["send", "--to", &b_addr.to_string(), "--amount", "5"],
    )["txid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(balance(&wb, url), (0, 5, 0));
    assert_eq!(balance(&wa, url), (10, -6, 0));

    // At once, 2 more out of the unconfirmed change (the only output left): fee 1, change 1.
    let t2: Hash256 = wallet_json(
        &wa,
        url,
        &["send", "--to", &b_addr.to_string(), "--amount", "2"],
    )["txid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let tx2 = engine.transaction(&t2).unwrap().expect("t2 known");
    let tx2 = serde_json::to_value(&tx2).unwrap();
    assert_eq!(tx2["inputs"][0]["txid"], json!(t1), "spends t1's change");
    assert_eq!(balance(&wb, url), (0, 7, 0));
    assert_eq!(balance(&wa, url), (10, -9, 0));

    // A block confirms both.
    engine.mine_block(elsewhere, None).unwrap();
    assert_eq!(balance(&wb, url), (7, 0, 0));
    assert_eq!(balance(&wa, url), (1, 0, 0));
    let h = wallet_json(&wb, url, &["history"]);
    let rows = h["history"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["direction"], "in", "{r}");
        assert_eq!(r["counterparty"], ABANDON_0, "{r}");
        assert_eq!(r["confirmations"], 1, "{r}");
        assert!(r["time"].is_u64(), "{r}");
    }
    let h = wallet_json(&wa, url, &["history"]);
    let mut out: Vec<(u64, u64)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["direction"] == "out")
        .map(|r| (r["amount"].as_u64().unwrap(), r["fee"].as_u64().unwrap()))
        .collect();
    out.sort();
    assert_eq!(out, vec![(2, 1), (5, 1)], "{h}");

    // More than A has: refused, nothing submitted.
    let out = Command::new(env!("CARGO_BIN_EXE_bitplace-wallet"))
        .env("BITPLACE_WALLET_PASSPHRASE", PASSPHRASE)
        .arg("--wallet")
        .arg(&wa)
        .args([
            "--node",
            url,
            "send",
            "--to",
            &b_addr.to_string(),
            "--amount",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("insufficient funds"));
    assert_eq!(balance(&wa, url), (1, 0, 0));
}
