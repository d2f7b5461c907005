//! Runs the built `bitplace-wallet` binary: create/import/address without a node; errors
//! (wrong passphrase, mistyped address, unreachable node, amount above balance) with
//! nothing sent; send/balance/history/watch against a fake node.

mod common;

use common::{not_found, FakeNode, Reply, Request};
use consensus::encoding::Decode;
use consensus::{Address, Hash256, Transaction};
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
/// m/44'/8080'/0'/0' and 1' of ABANDON (see wallet/README.md).
const ABANDON_0: &str = "bp1s53gfleaqdwfaxyas5xhzsytz56arptawkt7rh";
const ABANDON_1: &str = "bp1s34c5a8ymvtzmt68ytxmfhjkaljjdhrnsrgqaa";
const PASS: &str = "test passphrase";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bitplace-wallet"));
    c.env_remove("BITPLACE_WALLET_BIP39_PASSPHRASE")
        .env("BITPLACE_WALLET_PASSPHRASE", PASS)
        .stdin(Stdio::null());
    c
}

fn run(wallet: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--wallet")
        .arg(wallet)
        .args(args)
        .output()
        .unwrap()
}

fn ok_json(out: Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// Non-zero exit and exactly one line on stderr; returns it.
fn err_line(out: Output) -> String {
    assert!(!out.status.success(), "unexpected success");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    stderr.trim().to_string()
}

/// The ABANDON wallet, imported without asking a node for used addresses.
fn imported(dir: &Path) -> PathBuf {
    let w = dir.join("w.json");
    let v = ok_json(run(
        &w,
        &["--json", "import", "--no-scan", "--mnemonic", ABANDON],
    ));
    assert_eq!(
        v,
        json!({ "address": ABANDON_0, "addresses": 1, "scanned": false })
    );
    w
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[test]
fn create_shows_mnemonic_once_and_keeps_it_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("sub").join("wallet.json");
    let v = ok_json(run(&w, &["--json", "create", "--words", "24"]));
    let mnemonic = v["mnemonic"].as_str().unwrap().to_string();
    let address = v["address"].as_str().unwrap().to_string();
    assert_eq!(mnemonic.split(' ').count(), 24);
    assert_eq!(v.as_object().unwrap().len(), 2);
    address.parse::<Address>().unwrap();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&w).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let file = std::fs::read_to_string(&w).unwrap();
    let words: Vec<&str> = mnemonic.split(' ').collect();
    for pair in words.windows(2) {
        assert!(!file.contains(&pair.join(" ")), "mnemonic words in clear");
    }
    assert!(!file.contains(PASS));

    // Not shown again: `address` prints the address only.
    let a = ok_json(run(&w, &["--json", "address"]));
    assert_eq!(a, json!({ "address": address }));
    // Same mnemonic, imported elsewhere, gives the same address.
    let w2 = dir.path().join("again.json");
    let v2 = ok_json(run(
        &w2,
        &["--json", "import", "--no-scan", "--mnemonic", &mnemonic],
    ));
    assert_eq!(v2["address"], address);
    // Never overwrites.
    let e = err_line(run(&w, &["create"]));
    assert!(e.contains("already exists"), "{e}");

    // Human output shows the words with a warning.
    let w3 = dir.path().join("human.json");
    let out = run(&w3, &["create"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("shown only this once"));
    assert_eq!(
        text.lines()
            .filter(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() == 12 && w.iter().all(|x| x.chars().all(|c| c.is_ascii_lowercase()))
            })
            .count(),
        1
    );
}

#[test]
fn import_and_addresses_match_the_cross_check_vector() {
    let dir = tempfile::tempdir().unwrap();
    let w = imported(dir.path());
    assert_eq!(
        ok_json(run(&w, &["--json", "address"])),
        json!({ "address": ABANDON_0 })
    );
    assert_eq!(
        ok_json(run(&w, &["--json", "address", "--new"])),
        json!({ "address": ABANDON_1 })
    );
    let out = run(&w, &["address"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), ABANDON_1);

    // A BIP39 passphrase changes the keys.
    let w2 = dir.path().join("p.json");
    let out = bin()
        .arg("--wallet")
        .arg(&w2)
        .env("BITPLACE_WALLET_BIP39_PASSPHRASE", "TREZOR")
        .args(["--json", "import", "--no-scan", "--mnemonic", ABANDON])
        .output()
        .unwrap();
    let v = ok_json(out);
    assert_ne!(v["address"], ABANDON_0);

    // Mnemonic from stdin.
    let w3 = dir.path().join("stdin.json");
    let mut child = bin()
        .arg("--wallet")
        .arg(&w3)
        .args(["--json", "import", "--no-scan", "--mnemonic", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{ABANDON}").unwrap();
    let v = ok_json(child.wait_with_output().unwrap());
    assert_eq!(v["address"], ABANDON_0);
}

#[test]
fn import_errors_name_the_word_or_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.json");
    let typo = ABANDON.replacen("abandon", "abandn", 1);
    let e = err_line(run(&w, &["import", "--mnemonic", &typo]));
    assert!(e.contains("`abandn`") && e.contains("word 1"), "{e}");
    let bad_sum = ["abandon"; 12].join(" ");
    let e = err_line(run(&w, &["import", "--mnemonic", &bad_sum]));
    assert!(e.contains("checksum"), "{e}");
    assert!(!w.exists(), "no wallet written on error");
}

#[test]
fn usage_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.json");
    let e = err_line(run(&w, &["send", "--to", ABANDON_0]));
    assert!(e.contains("--amount"), "{e}");
    let e = err_line(run(&w, &["create", "--words", "13"]));
    assert!(e.contains("12 or 24"), "{e}");
    let e = err_line(run(&w, &["send", "--to", ABANDON_0, "--amount", "0"]));
    assert!(e.contains("amount"), "{e}");
    let e = err_line(run(&w, &["balance"]));
    assert!(e.contains("no wallet"), "{e}");
}

/// A node that must never be contacted.
fn silent_node() -> FakeNode {
    FakeNode::start(|_, _| not_found())
}

#[test]
fn wrong_passphrase_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = imported(dir.path());
    let node = silent_node();
    let out = bin()
        .env("BITPLACE_WALLET_PASSPHRASE", "not the passphrase")
        .arg("--wallet")
        .arg(&w)
        .args([
            "--node", &node.url, "send", "--to", ABANDON_1, "--amount", "5",
        ])
        .output()
        .unwrap();
    let e = err_line(out);
    assert!(e.contains("wrong passphrase"), "{e}");
    assert!(node.requests().is_empty());
    // --new with a wrong passphrase hands out nothing.
    let out = bin()
        .env("BITPLACE_WALLET_PASSPHRASE", "nope")
        .arg("--wallet")
        .arg(&w)
        .args(["address", "--new"])
        .output()
        .unwrap();
    assert!(err_line(out).contains("wrong passphrase"));
    assert_eq!(
        ok_json(run(&w, &["--json", "address"])),
        json!({ "address": ABANDON_0 })
    );
}

#[test]
fn mistyped_address_is_rejected_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let w = imported(dir.path());
    let node = silent_node();
    // Last character changed: the bech32m checksum fails.
    let typo = format!("{}j", &ABANDON_1[..ABANDON_1.len() - 1]);
    let e = err_line(run(
        &w,
        &["--node", &node.url, "send", "--to", &typo, "--amount", "5"],
    ));
    assert!(e.contains("invalid --to address"), "{e}");
    assert!(node.requests().is_empty());
}

#[test]
fn unreachable_node_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = imported(dir.path());
    let url = closed_port_url();
    // (`watch` waits for the node instead: see watch_starts_with_the_current_balance_…)
    for args in [
        vec!["balance"],
        vec!["history"],
        vec!["send", "--to", ABANDON_1, "--amount", "5"],
    ] {
        let mut full = vec!["--node", url.as_str()];
        full.extend(args);
        let e = err_line(run(&w, &full));
        assert!(
            e.starts_with("error: cannot reach the node at http://127.0.0.1:"),
            "{e}"
        );
    }
}

fn txid(n: u8) -> String {
    Hash256([n; 32]).to_display_hex()
}

/// Address 0 holds a confirmed 600 and an unconfirmed 500 (mempool change), plus an
/// immature coinbase; address 1 holds 300.
fn funded_node() -> FakeNode {
    FakeNode::start(|req: &Request, _| {
        let path = req.path.as_str();
        if req.method == "GET" && path == format!("/v1/addresses/{ABANDON_0}") {
            Reply::Json(200, json!({
                "address": ABANDON_0, "confirmed": 600, "unconfirmed": 500, "immature": 10,
                "utxos": [
                    {"txid": txid(1), "vout": 0, "amount": 600, "height": 5, "coinbase": false, "mature": true},
                    {"txid": txid(2), "vout": 1, "amount": 500, "height": null, "coinbase": false, "mature": true},
                    {"txid": txid(3), "vout": 0, "amount": 10, "height": 9, "coinbase": true, "mature": false},
                ],
                "history": [
                    {"txid": txid(1), "height": 5, "delta": 600},
                    {"txid": txid(2), "height": null, "delta": 500},
                    {"txid": txid(4), "height": 7, "delta": -100},
                ]
            }).to_string())
        } else if req.method == "GET" && path == format!("/v1/addresses/{ABANDON_1}") {
            Reply::Json(200, json!({
                "address": ABANDON_1, "confirmed": 300, "unconfirmed": -20, "immature": 0,
                "utxos": [
                    {"txid": txid(5), "vout": 2, "amount": 300, "height": 6, "coinbase": false, "mature": true},
                ],
                "history": [
                    {"txid": txid(5), "height": 6, "delta": 300},
                    {"txid": txid(4), "height": 7, "delta": 40},
                ]
            }).to_string())
        } else if let Some(id) = path.strip_prefix("/v1/tx/") {
            match tx_view(id) {
                Some(v) => Reply::Json(200, v.to_string()),
                None => not_found(),
            }
        } else if let Some(q) = path.strip_prefix("/v1/blocks?from=") {
            let h: u64 = q.split('&').next().unwrap().parse().unwrap();
            Reply::Json(
                200,
                json!([{"hash": txid(100 + h as u8), "height": h, "time": block_time(h)}])
                    .to_string(),
            )
        } else if req.method == "POST" && path == "/v1/tx" {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let bytes = hex::decode(body["hex"].as_str().unwrap()).unwrap();
            match Transaction::decode(&bytes) {
                Ok(tx) => Reply::Json(200, json!({ "txid": tx.txid() }).to_string()),
                Err(e) => Reply::Json(
                    400,
                    json!({"error": "bad_encoding", "message": e.to_string()}).to_string(),
                ),
            }
        } else {
            not_found()
        }
    })
}

/// A stranger's address.
const STRANGER: &str = "bp1pqyqszqgpqyqszqgpqyqszqgpqyqszqggnmngf";

/// 2026-12-02 00:00:00 UTC plus ten minutes per block.
fn block_time(height: u64) -> u64 {
    1_796_169_600 + height * 600
}

/// `GET /v1/tx/{txid}` of the funded node's history: tx 1 (height 5) pays address 0 600
/// from a stranger; tx 2 (mempool) pays it 500; tx 4 (height 7) spends 100 of address 0:
/// 40 to address 1, 59 to the stranger, fee 1; tx 5 (height 6) is a coinbase of 300 to
/// address 1. The tip is at height 9.
fn tx_view(id: &str) -> Option<Value> {
    let n = (1..=5).find(|n| txid(*n) == id)?;
    let (coinbase, inputs, outputs, fee, height) = match n {
        1 => (
            false,
            json!([{"address": STRANGER, "amount": 700}]),
            json!([{"address": ABANDON_0, "amount": 600}, {"address": STRANGER, "amount": 99}]),
            json!(1),
            json!(5),
        ),
        2 => (
            false,
            json!([{"address": STRANGER, "amount": 501}]),
            json!([{"address": ABANDON_0, "amount": 500}]),
            json!(1),
            Value::Null,
        ),
        4 => (
            false,
            json!([{"address": ABANDON_0, "amount": 100}]),
            json!([{"address": ABANDON_1, "amount": 40}, {"address": STRANGER, "amount": 59}]),
            json!(1),
            json!(7),
        ),
        5 => (
            true,
            json!([]),
            json!([{"address": ABANDON_1, "amount": 300}]),
            Value::Null,
            json!(6),
        ),
        _ => return None,
    };
    let confirmations = height.as_u64().map_or(0, |h| 9 - h + 1);
    Some(json!({
        "txid": id, "coinbase": coinbase, "inputs": inputs, "outputs": outputs, "fee": fee,
        "size": 195, "hex": "", "block_hash": null, "height": height,
        "confirmations": confirmations, "in_mempool": height.is_null(), "merkle_proof": null,
    }))
}

fn with_two_addresses(dir: &Path) -> PathBuf {
    let w = imported(dir);
    ok_json(run(&w, &["--json", "address", "--new"]));
    w
}

#[test]
fn balance_and_history_sum_over_the_wallets_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_two_addresses(dir.path());
    let node = funded_node();
    let v = ok_json(run(&w, &["--node", &node.url, "--json", "balance"]));
    assert_eq!(
        v,
        json!({"confirmed": 900, "unconfirmed": 480, "immature": 10})
    );
    let v = ok_json(run(&w, &["--node", &node.url, "--json", "history"]));
    let short: Vec<Value> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"txid": e["txid"], "height": e["height"], "delta": e["delta"]}))
        .collect();
    assert_eq!(
        short,
        vec![
            json!({"txid": txid(2), "height": null, "delta": 500}),
            json!({"txid": txid(4), "height": 7, "delta": -60}),
            json!({"txid": txid(5), "height": 6, "delta": 300}),
            json!({"txid": txid(1), "height": 5, "delta": 600}),
        ]
    );
    // Read-only commands need no passphrase.
    let out = bin()
        .env_remove("BITPLACE_WALLET_PASSPHRASE")
        .arg("--wallet")
        .arg(&w)
        .args(["--node", &node.url, "balance"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn send_selects_signs_and_submits_with_change() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_two_addresses(dir.path());
    let node = funded_node();
    let dest = Address::from_public_key(&[42; 32]);
    let v = ok_json(run(
        &w,
        &[
            "--node",
            &node.url,
            "--json",
            "send",
            "--to",
            &dest.to_string(),
            "--amount",
            "1200",
            "--fee-rate",
            "100",
        ],
    ));
    let posts: Vec<Request> = node
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
    let tx = Transaction::decode(&hex::decode(body["hex"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(v["txid"], json!(tx.txid()));
    // The result says what was paid (added fields; `txid` as before).
    assert_eq!(
        (
            v["amount"].as_u64(),
            v["fee"].as_u64(),
            v["fee_rate"].as_u64()
        ),
        (
            Some(1200),
            Some((tx.size() as u64 * 100).div_ceil(1000)),
            Some(100)
        )
    );

    // Largest first: 600 (confirmed), 500 (unconfirmed change), then 300; the immature
    // coinbase is never used.
    let spent: Vec<(Hash256, u32)> = tx
        .spends()
        .iter()
        .map(|i| (i.prevout.txid, i.prevout.vout))
        .collect();
    assert_eq!(
        spent,
        vec![
            (Hash256([1; 32]), 0),
            (Hash256([2; 32]), 1),
            (Hash256([5; 32]), 2)
        ]
    );
    let fee = (tx.size() as u64 * 100).div_ceil(1000);
    assert_eq!(tx.outputs[0].address, dest);
    assert_eq!(tx.outputs[0].amount, 1200);
    assert_eq!(tx.outputs[1].address.to_string(), ABANDON_0);
    assert_eq!(tx.outputs[1].amount, 1400 - 1200 - fee);
    assert_eq!(tx.outputs.len(), 2);
    let id = tx.txid();
    for input in tx.spends() {
        VerifyingKey::from_bytes(&input.public_key)
            .unwrap()
            .verify_strict(&id.0, &Signature::from_bytes(&input.signature))
            .unwrap();
    }
    assert_eq!(
        Address::from_public_key(&tx.spends()[2].public_key).to_string(),
        ABANDON_1
    );
}

#[test]
fn amount_above_balance_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_two_addresses(dir.path());
    let node = funded_node();
    let e = err_line(run(
        &w,
        &[
            "--node", &node.url, "send", "--to", ABANDON_0, "--amount", "1400",
        ],
    ));
    assert!(e.contains("insufficient funds"), "{e}");
    assert!(node.requests().iter().all(|r| r.method == "GET"));
}

#[test]
fn node_rejection_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let w = imported(dir.path());
    let node = FakeNode::start(|req: &Request, _| {
        if req.method == "POST" {
            Reply::Json(
                409,
                json!({"error": "double_spend", "message": "input already spent"}).to_string(),
            )
        } else {
            Reply::Json(200, json!({
                "address": ABANDON_0, "confirmed": 50, "unconfirmed": 0, "immature": 0,
                "utxos": [{"txid": txid(1), "vout": 0, "amount": 50, "height": 1, "coinbase": false, "mature": true}],
                "history": []
            }).to_string())
        }
    });
    let e = err_line(run(
        &w,
        &[
            "--node", &node.url, "send", "--to", ABANDON_1, "--amount", "20",
        ],
    ));
    assert!(
        e.contains("double_spend") && e.contains("input already spent"),
        "{e}"
    );
}

#[test]
fn watch_prints_pushed_balances_and_resumes_with_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_two_addresses(dir.path());
    let go = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = go.clone();
    let node = FakeNode::start(move |req: &Request, n| {
        if let Some(a) = req.path.strip_prefix("/v1/addresses/") {
            return Reply::Json(
                200,
                json!({
                    "address": a, "confirmed": 7, "unconfirmed": 0, "immature": 0,
                    "utxos": [], "history": []
                })
                .to_string(),
            );
        }
        if !req.path.starts_with("/v1/events") {
            return not_found();
        }
        let ev = |id: u32, addr: &str, c: u64| {
            format!(
                "id: {id}\nevent: balance\ndata: {}\n\n",
                json!({"address": addr, "confirmed": c, "unconfirmed": 0, "immature": 0})
            )
        };
        match n {
            // The first event must reach stdout while this stream is still open.
            0 => Reply::SseGated {
                first: vec![": hello\n\n".into(), ev(1, ABANDON_0, 10)],
                go: gate.clone(),
                then: vec![
                    "id: 2\nevent: block_connected\ndata: {\"hash\":\"00\",\"height\":1}\n\n"
                        .into(),
                    ev(3, ABANDON_1, 20),
                ],
                late: vec![ev(3, ABANDON_1, 555)],
            },
            _ if req.header("last-event-id") == Some("3") => Reply::Sse(vec![ev(4, ABANDON_0, 30)]),
            _ => Reply::Sse(vec![ev(99, ABANDON_0, 999)]),
        }
    });
    let mut child = bin()
        .arg("--wallet")
        .arg(&w)
        .args(["--node", &node.url, "--json", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut got = Vec::new();
    for i in 0..5 {
        let line = lines.next().unwrap().unwrap();
        got.push(serde_json::from_str::<Value>(&line).unwrap());
        if i == 2 {
            go.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        got,
        vec![
            // The balance now, first, in the events' shape ...
            json!({"address": ABANDON_0, "confirmed": 7, "unconfirmed": 0, "immature": 0}),
            json!({"address": ABANDON_1, "confirmed": 7, "unconfirmed": 0, "immature": 0}),
            // ... then each change as it is pushed.
            json!({"address": ABANDON_0, "confirmed": 10, "unconfirmed": 0, "immature": 0}),
            json!({"address": ABANDON_1, "confirmed": 20, "unconfirmed": 0, "immature": 0}),
            json!({"address": ABANDON_0, "confirmed": 30, "unconfirmed": 0, "immature": 0}),
        ]
    );
    let all = node.requests();
    // The current balance is read once per address, after the stream opened; never again.
    assert!(all[0].path.starts_with("/v1/events"));
    let reads: Vec<&str> = all
        .iter()
        .filter(|r| r.path.starts_with("/v1/addresses/"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        reads,
        vec![
            format!("/v1/addresses/{ABANDON_0}"),
            format!("/v1/addresses/{ABANDON_1}")
        ]
    );
    let reqs: Vec<Request> = all
        .into_iter()
        .filter(|r| !r.path.starts_with("/v1/addresses/"))
        .collect();
    let first = &reqs[0];
    assert!(first.path.starts_with("/v1/events?topics="));
    let topics = first
        .path
        .split("topics=")
        .nth(1)
        .unwrap()
        .replace("%3A", ":")
        .replace("%2C", ",");
    assert_eq!(topics, format!("address:{ABANDON_0},address:{ABANDON_1}"));
    assert_eq!(first.header("accept"), Some("text/event-stream"));
    assert_eq!(first.header("last-event-id"), None);
    assert_eq!(reqs[1].header("last-event-id"), Some("3"));
    // Push only: nothing but event-stream requests, no polling of addresses.
    assert!(reqs.iter().all(|r| r.path.starts_with("/v1/events")));
}

/// An address view with nothing in it (never used).
fn empty_address(a: &str) -> Value {
    json!({"address": a, "confirmed": 0, "unconfirmed": 0, "immature": 0, "utxos": [], "history": []})
}

fn abandon_keys() -> wallet::Keychain {
    wallet::Keychain::from_mnemonic(&wallet::Mnemonic::parse(ABANDON).unwrap(), "", 0).unwrap()
}

/// The node of a wallet that handed out addresses 0..=21 and used 0 (30 units), 1 (its
/// funds spent again: history, no balance), 21 (10 units arriving in the mempool); 43 holds
/// 5 units but lies past a gap of 21 unused addresses, so no BIP44 wallet finds it.
fn restore_node() -> FakeNode {
    let k = abandon_keys();
    let addr = |i| k.address(i).unwrap().to_string();
    let (a0, a1, a21, a43) = (addr(0), addr(1), addr(21), addr(43));
    FakeNode::start(move |req: &Request, _| {
        let Some(a) = req.path.strip_prefix("/v1/addresses/") else {
            return not_found();
        };
        let v = if a == a0 {
            json!({"address": a, "confirmed": 30, "unconfirmed": 0, "immature": 0,
                   "utxos": [{"txid": txid(1), "vout": 0, "amount": 30, "height": 3, "coinbase": false, "mature": true}],
                   "history": [{"txid": txid(1), "height": 3, "delta": 30}]})
        } else if a == a1 {
            json!({"address": a, "confirmed": 0, "unconfirmed": 0, "immature": 0, "utxos": [],
                   "history": [{"txid": txid(3), "height": 4, "delta": -8}, {"txid": txid(2), "height": 2, "delta": 8}]})
        } else if a == a21 {
            json!({"address": a, "confirmed": 0, "unconfirmed": 10, "immature": 0,
                   "utxos": [{"txid": txid(4), "vout": 0, "amount": 10, "height": null, "coinbase": false, "mature": true}],
                   "history": [{"txid": txid(4), "height": null, "delta": 10}]})
        } else if a == a43 {
            json!({"address": a, "confirmed": 5, "unconfirmed": 0, "immature": 0, "utxos": [],
                   "history": [{"txid": txid(5), "height": 5, "delta": 5}]})
        } else {
            empty_address(a)
        };
        Reply::Json(200, v.to_string())
    })
}

#[test]
fn import_finds_funds_on_every_address_the_wallet_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = restore_node();
    let w = dir.path().join("restored.json");
    let k = abandon_keys();
    let v = ok_json(run(
        &w,
        &[
            "--node",
            &node.url,
            "--json",
            "import",
            "--mnemonic",
            ABANDON,
        ],
    ));
    assert_eq!(
        v,
        json!({"address": k.address(21).unwrap(), "addresses": 22, "scanned": true})
    );
    // Probed in order, and only until 20 unused addresses followed the last used one.
    let probed: Vec<String> = node.requests().iter().map(|r| r.path.clone()).collect();
    let want: Vec<String> = (0..42)
        .map(|i| format!("/v1/addresses/{}", k.address(i).unwrap()))
        .collect();
    assert_eq!(probed, want);
    // The restore sees everything the original wallet does: 30 confirmed + 10 pending.
    let b = ok_json(run(&w, &["--node", &node.url, "--json", "balance"]));
    assert_eq!(
        b,
        json!({"confirmed": 30, "unconfirmed": 10, "immature": 0})
    );

    // A wallet imported offline finds them later with `scan`.
    let w2 = imported(dir.path());
    let v = ok_json(run(&w2, &["--node", &node.url, "--json", "scan"]));
    assert_eq!(v, json!({"addresses": 22, "added": 21}));
    let b = ok_json(run(&w2, &["--node", &node.url, "--json", "balance"]));
    assert_eq!(
        b,
        json!({"confirmed": 30, "unconfirmed": 10, "immature": 0})
    );
    // Nothing new: nothing added.
    let v = ok_json(run(&w2, &["--node", &node.url, "--json", "scan"]));
    assert_eq!(v, json!({"addresses": 22, "added": 0}));
}

#[test]
fn import_without_a_node_still_saves_the_wallet_and_says_to_scan() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.json");
    let out = run(
        &w,
        &[
            "--node",
            &closed_port_url(),
            "--json",
            "import",
            "--mnemonic",
            ABANDON,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("bitplace-wallet scan"), "{stderr}");
    assert_eq!(
        ok_json(out),
        json!({"address": ABANDON_0, "addresses": 1, "scanned": false})
    );
}

/// Runs with `--json` and expects a failure: exit status, one line on stderr, and exactly
/// one JSON object `{error, message, ...}` on stdout; returns it.
fn json_error(out: Output, code: i32) -> Value {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on stdout: {stdout:?}"
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
    v
}

#[test]
fn json_errors_are_one_json_object_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let w = imported(dir.path());
    let funded = funded_node();

    let v = json_error(
        run(&dir.path().join("none.json"), &["--json", "balance"]),
        1,
    );
    assert_eq!(v["error"], "no_wallet");
    assert!(v["message"].as_str().unwrap().contains("no wallet"), "{v}");

    let v = json_error(
        run(&w, &["--json", "send", "--to", ABANDON_1, "--amount", "0"]),
        2,
    );
    assert_eq!(v["error"], "usage");
    assert!(v["message"].as_str().unwrap().contains("amount"), "{v}");

    let v = json_error(
        run(&w, &["--json", "--node", &closed_port_url(), "balance"]),
        1,
    );
    assert_eq!(v["error"], "node_unreachable");

    let typo = format!("{}j", &ABANDON_1[..ABANDON_1.len() - 1]);
    let v = json_error(
        run(&w, &["--json", "send", "--to", &typo, "--amount", "5"]),
        1,
    );
    assert_eq!(v["error"], "invalid_address");

    let out = bin()
        .env("BITPLACE_WALLET_PASSPHRASE", "not it")
        .arg("--wallet")
        .arg(&w)
        .args([
            "--json",
            "--node",
            &funded.url,
            "send",
            "--to",
            ABANDON_1,
            "--amount",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(json_error(out, 1)["error"], "wrong_passphrase");

    let v = json_error(
        run(
            &w,
            &[
                "--json",
                "--node",
                &funded.url,
                "send",
                "--to",
                STRANGER,
                "--amount",
                "5000",
            ],
        ),
        1,
    );
    assert_eq!(v["error"], "insufficient_funds");

    let v = json_error(
        run(
            &w,
            &["--json", "import", "--no-scan", "--mnemonic", ABANDON],
        ),
        1,
    );
    assert_eq!(v["error"], "wallet_exists");

    let rejecting = FakeNode::start(|req: &Request, _| {
        if req.method == "POST" {
            Reply::Json(
                409,
                json!({"error": "double_spend", "message": "input already spent"}).to_string(),
            )
        } else {
            Reply::Json(200, json!({
                "address": ABANDON_0, "confirmed": 50, "unconfirmed": 0, "immature": 0,
                "utxos": [{"txid": txid(1), "vout": 0, "amount": 50, "height": 1, "coinbase": false, "mature": true}],
                "history": []
            }).to_string())
        }
    });
    let v = json_error(
        run(
            &w,
            &[
                "--json",
                "--node",
                &rejecting.url,
                "send",
                "--to",
                ABANDON_1,
                "--amount",
                "20",
            ],
        ),
        1,
    );
    assert_eq!(
        (
            v["error"].as_str(),
            v["code"].as_str(),
            v["status"].as_u64()
        ),
        (Some("node_rejected"), Some("double_spend"), Some(409))
    );
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("input already spent"));
}

#[test]
fn send_all_sweeps_everything_spendable_minus_the_fee() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_two_addresses(dir.path());
    let node = funded_node();
    let v = ok_json(run(
        &w,
        &[
            "--node",
            &node.url,
            "--json",
            "send",
            "--to",
            STRANGER,
            "--amount",
            "all",
            "--fee-rate",
            "100",
        ],
    ));
    let post = node
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    let tx = Transaction::decode(&hex::decode(body["hex"].as_str().unwrap()).unwrap()).unwrap();
    // 600 + 500 + 300 spendable (the immature coinbase is not), one output, no change; the
    // fee is the shared policy's for this exact size (consensus/tests/vectors/fee_policy.json).
    assert_eq!(tx.spends().len(), 3);
    assert_eq!(tx.outputs.len(), 1);
    let fee = consensus::fee::policy_fee(tx.size(), 100).unwrap();
    assert_eq!((tx.size(), fee), (431, 44));
    assert_eq!(tx.outputs[0].amount, 1_400 - fee);
    assert_eq!(tx.outputs[0].address.to_string(), STRANGER);
    assert_eq!(
        v,
        json!({"txid": tx.txid(), "to": STRANGER, "amount": 1_356, "fee": 44, "fee_rate": 100,
               "size": 431, "change": 0, "inputs": 3})
    );
}

#[test]
fn history_is_a_table_a_person_reads() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_two_addresses(dir.path());
    let node = funded_node();
    let v = ok_json(run(&w, &["--node", &node.url, "--json", "history"]));
    let rows = v["history"].as_array().unwrap();
    let pick = |r: &Value| {
        json!([
            r["direction"],
            r["counterparty"],
            r["amount"],
            r["fee"],
            r["confirmations"],
            r["time"]
        ])
    };
    assert_eq!(
        rows.iter().map(pick).collect::<Vec<_>>(),
        vec![
            json!(["in", STRANGER, 500, 0, 0, null]),
            json!(["out", STRANGER, 59, 1, 3, block_time(7)]),
            json!(["in", "coinbase", 300, 0, 4, block_time(6)]),
            json!(["in", STRANGER, 600, 0, 5, block_time(5)]),
        ]
    );
    let out = run(&w, &["--node", &node.url, "history"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for col in [
        "TIME (UTC)",
        "DIR",
        "COUNTERPARTY",
        "AMOUNT",
        "FEE",
        "CONF",
        "TXID",
    ] {
        assert!(lines[0].contains(col), "{text}");
    }
    assert!(
        lines[1].starts_with("in mempool") && lines[1].contains("+500"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("2026-12-02 01:10:00  out ") && lines[2].contains("-59"),
        "{text}"
    );
    assert!(
        lines[3].contains(" coinbase ") && lines[3].contains("+300"),
        "{text}"
    );
    assert!(lines[4].ends_with(&txid(1)), "{text}");
}

#[test]
fn watch_starts_with_the_current_balance_and_waits_for_a_node_not_up_yet() {
    let dir = tempfile::tempdir().unwrap();
    let w = imported(dir.path());
    // A port nothing listens on yet.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut child = bin()
        .arg("--wallet")
        .arg(&w)
        .args(["--node", &format!("http://{addr}"), "--json", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let said = stderr.next().unwrap().unwrap();
    assert!(
        said.starts_with("waiting for the node at http://"),
        "{said}"
    );
    assert!(said.contains("retrying in"), "{said}");
    // Still running, not exited.
    assert!(child.try_wait().unwrap().is_none());
    let go = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = go.clone();
    let _node = FakeNode::start_on(&addr, move |req: &Request, _| {
        if let Some(a) = req.path.strip_prefix("/v1/addresses/") {
            return Reply::Json(
                200,
                json!({
                    "address": a, "confirmed": 40, "unconfirmed": -3, "immature": 2,
                    "utxos": [], "history": []
                })
                .to_string(),
            );
        }
        Reply::SseGated {
            first: vec![": hello\n\n".into()],
            go: gate.clone(),
            then: vec![format!(
                "id: 1\nevent: balance\ndata: {}\n\n",
                json!({"address": ABANDON_0, "confirmed": 41, "unconfirmed": 0, "immature": 2})
            )],
            late: vec![],
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        first,
        json!({"address": ABANDON_0, "confirmed": 40, "unconfirmed": -3, "immature": 2})
    );
    go.store(true, std::sync::atomic::Ordering::SeqCst);
    let next: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        next,
        json!({"address": ABANDON_0, "confirmed": 41, "unconfirmed": 0, "immature": 2})
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// On a terminal (`script` gives the wallet a pseudo-terminal as stdin), `send` shows the
/// payment and sends only after a `y`; `--yes` does not ask.
#[cfg(target_os = "linux")]
#[test]
fn an_interactive_send_asks_for_confirmation_and_yes_skips_it() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let w = with_two_addresses(dir.path());
    let node = funded_node();
    let send = |extra: &str, answer: &str| -> String {
        let cmd = format!(
            "{} --wallet {} --node {} send --to {STRANGER} --amount 100 {extra}",
            env!("CARGO_BIN_EXE_bitplace-wallet"),
            w.display(),
            node.url
        );
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", &cmd, "/dev/null"])
            .env("BITPLACE_WALLET_PASSPHRASE", PASS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(answer.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let posts = || {
        node.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    let said = send("", "n\n");
    assert!(
        said.contains("Pay 100 to ") && said.contains(STRANGER),
        "{said}"
    );
    assert!(
        said.contains("fee ") && said.contains("Send it? [y/N]"),
        "{said}"
    );
    assert!(said.contains("not confirmed"), "{said}");
    assert_eq!(posts(), 0, "declined: nothing sent");
    let said = send("", "y\n");
    assert!(said.contains("Send it? [y/N]"), "{said}");
    assert_eq!(posts(), 1, "{said}");
    let said = send("--yes", "");
    assert!(!said.contains("Send it?"), "{said}");
    assert!(
        said.contains("Pay 100 to "),
        "shown even without asking: {said}"
    );
    assert_eq!(posts(), 2, "{said}");
}

/// Regression (issue 14, item 12): on a terminal a mistyped passphrase is asked again,
/// saying how many tries are left, and the right one then unlocks; after the last wrong
/// try the command fails with nothing done. Run on a pseudo-terminal, since rpassword
/// reads /dev/tty.
#[cfg(unix)]
#[test]
fn regression_a_wrong_passphrase_can_be_retried_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let w = imported(dir.path());
    let on_terminal = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bitplace-wallet"));
        c.env_remove("BITPLACE_WALLET_PASSPHRASE")
            .env_remove("BITPLACE_WALLET_BIP39_PASSPHRASE")
            .arg("--wallet")
            .arg(&w)
            .args(["address", "--new"]);
        rexpect::session::spawn_command(c, Some(20_000)).unwrap()
    };
    let mut p = on_terminal();
    p.exp_string("Wallet passphrase: ").unwrap();
    p.send_line("not it").unwrap();
    p.exp_string("wrong passphrase; try again (2 left)")
        .unwrap();
    p.exp_string("Wallet passphrase: ").unwrap();
    p.send_line(PASS).unwrap();
    p.exp_string(ABANDON_1).unwrap();
    p.exp_eof().unwrap();

    let mut p = on_terminal();
    for left in [2, 1] {
        p.exp_string("Wallet passphrase: ").unwrap();
        p.send_line("still not it").unwrap();
        p.exp_string(&format!("try again ({left} left)")).unwrap();
    }
    p.exp_string("Wallet passphrase: ").unwrap();
    p.send_line("no").unwrap();
    p.exp_string("wrong passphrase").unwrap();
    p.exp_eof().unwrap();
    // Only the first session's address was handed out.
    let v = ok_json(run(&w, &["--json", "address"]));
    assert_eq!(v, json!({ "address": ABANDON_1 }));
}
