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

fn imported(dir: &Path) -> PathBuf {
    let w = dir.join("w.json");
    let v = ok_json(run(&w, &["--json", "import", "--mnemonic", ABANDON]));
    assert_eq!(v, json!({ "address": ABANDON_0 }));
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
    let v2 = ok_json(run(&w2, &["--json", "import", "--mnemonic", &mnemonic]));
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
        .args(["--json", "import", "--mnemonic", ABANDON])
        .output()
        .unwrap();
    let v = ok_json(out);
    assert_ne!(v["address"], ABANDON_0);

    // Mnemonic from stdin.
    let w3 = dir.path().join("stdin.json");
    let mut child = bin()
        .arg("--wallet")
        .arg(&w3)
        .args(["--json", "import", "--mnemonic", "-"])
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
    for args in [
        vec!["balance"],
        vec!["history"],
        vec!["watch"],
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
    assert_eq!(
        v["history"],
        json!([
            {"txid": txid(2), "height": null, "delta": 500},
            {"txid": txid(4), "height": 7, "delta": -60},
            {"txid": txid(5), "height": 6, "delta": 300},
            {"txid": txid(1), "height": 5, "delta": 600},
        ])
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
    assert_eq!(v, json!({ "txid": tx.txid() }));

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
    for i in 0..3 {
        let line = lines.next().unwrap().unwrap();
        got.push(serde_json::from_str::<Value>(&line).unwrap());
        if i == 0 {
            go.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        got,
        vec![
            json!({"address": ABANDON_0, "confirmed": 10, "unconfirmed": 0, "immature": 0}),
            json!({"address": ABANDON_1, "confirmed": 20, "unconfirmed": 0, "immature": 0}),
            json!({"address": ABANDON_0, "confirmed": 30, "unconfirmed": 0, "immature": 0}),
        ]
    );
    let reqs = node.requests();
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
