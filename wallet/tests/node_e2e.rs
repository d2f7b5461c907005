//! End to end against the real `bitplace-node --dev`, started by the test on a free
//! 127.0.0.1 port with a temporary data directory (killed on drop, panics included): the
//! issue's "create → mine to it → send to a second wallet → both balances right", and
//! `watch` printing the balance changes the node pushes, without polling.
//!
//! Mining goes through the public API (`GET /v1/mining/template`, a CPU nonce search here,
//! `POST /v1/mining/submit`), as docs/API.md describes it.
//!
//! The node binary is the workspace build's, next to ours (the `testnode` crate says why).

mod common;
use common::wallet_json;
use consensus::hash::sha256d;
use consensus::Address;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testnode::ChildGuard;

/// The `bitplace-node` next to our binary (see the `testnode` crate for why).
fn node_bin() -> PathBuf {
    testnode::node_bin(Path::new(env!("CARGO_BIN_EXE_bitplace-wallet")))
}

/// A running `bitplace-node --dev` on a free port of 127.0.0.1.
struct Node {
    _process: testnode::NodeProcess,
    url: String,
    http: reqwest::blocking::Client,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let process = testnode::NodeProcess::start(&node_bin(), dir, &["--dev"]);
        Node {
            url: process.url.clone(),
            _process: process,
            http: reqwest::blocking::Client::new(),
        }
    }

    fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// A gauge or counter without labels from /metrics.
    fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    }

    /// Requests the node has answered, per route, except the metrics scrapes themselves.
    fn request_counts(&self) -> Vec<String> {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("bitplace_http_request_duration_seconds_count"))
            .filter(|l| !l.contains("/metrics"))
            .map(String::from)
            .collect()
    }

    /// Mines one block paying `to` through the mining API, searching nonces on this CPU.
    fn mine(&self, to: &Address) {
        let t: Value = self
            .http
            .get(format!("{}/v1/mining/template?address={to}", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let mut header = hex::decode(t["header"].as_str().unwrap()).unwrap();
        assert_eq!(header.len(), 80);
        let target = t["target"].as_str().unwrap().to_lowercase();
        let extra = "00".repeat(t["extra_nonce_size"].as_u64().unwrap() as usize);
        let nonce = (0u32..=u32::MAX)
            .find(|n| {
                header[76..80].copy_from_slice(&n.to_le_bytes());
                let mut h = sha256d(&header);
                h.reverse();
                hex::encode(h) <= target
            })
            .expect("a nonce below the dev target");
        let r = self
            .http
            .post(format!("{}/v1/mining/submit", self.url))
            .json(&json!({"job_id": t["job_id"], "extra_nonce": extra, "time": t["time"], "nonce": nonce}))
            .send()
            .unwrap();
        let status = r.status();
        let body: Value = r.json().unwrap();
        assert!(
            status.is_success() && body["accepted"] == true,
            "{status} {body}"
        );
    }
}

fn balance(w: &Path, node: &str) -> (u64, i64, u64) {
    let v = wallet_json(w, node, &["balance"]);
    (
        v["confirmed"].as_u64().unwrap(),
        v["unconfirmed"].as_i64().unwrap(),
        v["immature"].as_u64().unwrap(),
    )
}

/// `bitplace-wallet --json watch`, its stdout lines on a channel.
struct Watch {
    _child: ChildGuard,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(w: &Path, node: &str) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bitplace-wallet"))
            .env_remove("BITPLACE_WALLET_PASSPHRASE")
            .stdin(Stdio::null())
            .arg("--wallet")
            .arg(w)
            .args(["--node", node, "--json", "watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch {
            _child: ChildGuard(child),
            lines,
        }
    }

    /// The next printed balance change (within 30 s).
    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("watch printed nothing within 30 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }
}

#[test]
fn create_mine_send_both_balances_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path());
    let node = n.url.as_str();
    let (wa, wb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let a: Address = wallet_json(&wa, node, &["create"])["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let b: Address = wallet_json(&wb, node, &["create"])["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(a, b);
    let sink = Address([0x5a; 20]);

    // Watch B (no passphrase needed: addresses are public) and wait until its event
    // stream is open, so nothing it should hear can happen before it listens.
    let sse_before = n.metric("bitplace_sse_clients");
    let watch = Watch::start(&wb, node);
    let deadline = Instant::now() + Duration::from_secs(30);
    while n.metric("bitplace_sse_clients") <= sse_before {
        assert!(Instant::now() < deadline, "watch never subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // It starts with the balance as it is now.
    assert_eq!(
        watch.next(),
        json!({"address": b, "confirmed": 0, "unconfirmed": 0, "immature": 0})
    );

    n.mine(&a);
    let (c, u, i) = balance(&wa, node);
    let reward = c + i;
    assert!(reward > 0 && u == 0, "{:?}", (c, u, i));
    // Mature the coinbase (dev maturity is small).
    let start = Instant::now();
    while balance(&wa, node).0 < reward {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "coinbase never matured"
        );
        n.mine(&sink);
    }
    assert_eq!(balance(&wa, node), (reward, 0, 0));
    assert_eq!(balance(&wb, node), (0, 0, 0));

    let amount = reward / 2;
    let txid = wallet_json(
        &wa,
        node,
        &[
            "send",
            "--to",
            &b.to_string(),
            "--amount",
            &amount.to_string(),
        ],
    )["txid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(txid.len(), 64);
    assert_eq!(balance(&wb, node), (0, amount as i64, 0));
    let (ac, au, _) = balance(&wa, node);
    assert_eq!(ac, reward);
    let fee = (-au) as u64 - amount;
    assert!(fee >= 1, "default fee rate 1 pays at least 1 unit");

    // Pushed at once: B's unconfirmed incoming payment, before any block.
    let heard = watch.next();
    assert_eq!(
        heard,
        json!({"address": b, "confirmed": 0, "unconfirmed": amount, "immature": 0})
    );

    // Never polls: with the watcher idle and nothing happening, the node answers no
    // requests at all (a polling watcher would show up in these per-route counters).
    let counts = n.request_counts();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(n.request_counts(), counts, "something polled the node");
    assert!(
        watch.lines.try_recv().is_err(),
        "nothing changed, nothing printed"
    );

    // Unconfirmed change is spendable at once: A pays B again before any block, and that
    // transaction spends the change of the first one.
    let txid2 = wallet_json(
        &wa,
        node,
        &["send", "--to", &b.to_string(), "--amount", "1"],
    )["txid"]
        .as_str()
        .unwrap()
        .to_string();
    let tx2: Value = n
        .http
        .get(format!("{node}/v1/tx/{txid2}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tx2["inputs"][0]["txid"], json!(txid), "{tx2}");
    assert_eq!(tx2["in_mempool"], true, "{tx2}");
    let (ac, au, _) = balance(&wa, node);
    assert_eq!(ac, reward);
    let fees = (-au) as u64 - amount - 1;
    assert!(fees > fee, "the second send paid a fee too");
    assert_eq!(balance(&wb, node), (0, amount as i64 + 1, 0));
    assert_eq!(
        watch.next(),
        json!({"address": b, "confirmed": 0, "unconfirmed": amount + 1, "immature": 0})
    );

    n.mine(&sink);
    assert_eq!(balance(&wb, node), (amount + 1, 0, 0));
    assert_eq!(balance(&wa, node), (reward - amount - 1 - fees, 0, 0));

    // The confirmation is pushed too.
    assert_eq!(
        watch.next(),
        json!({"address": b, "confirmed": amount + 1, "unconfirmed": 0, "immature": 0})
    );
    // B's history has both payments, confirmed.
    let h = wallet_json(&wb, node, &["history"]);
    let mut got: Vec<(String, i64, bool)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["txid"].as_str().unwrap().to_string(),
                e["delta"].as_i64().unwrap(),
                e["height"].is_u64(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![(txid, amount as i64, true), (txid2, 1, true)];
    want.sort();
    assert_eq!(got, want, "{h}");
}

/// The "a restore shows 33 where the original shows 40": a wallet that handed out
/// addresses 0..=2 and was paid on 0 and 2 (1 stays unused), restored from its mnemonic on
/// the real node, sees every unit the original sees.
#[test]
fn restore_from_the_mnemonic_finds_the_funds_of_every_address_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path());
    let node = n.url.as_str();
    let original = dir.path().join("original.json");
    let phrase = wallet_json(&original, node, &["create"])["mnemonic"]
        .as_str()
        .unwrap()
        .to_string();
    let a0: Address = wallet_json(&original, node, &["address"])["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wallet_json(&original, node, &["address", "--new"]);
    let a2: Address = wallet_json(&original, node, &["address", "--new"])["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    n.mine(&a0);
    n.mine(&a2);
    let (c, u, i) = balance(&original, node);
    assert!(c + i > 0 && u == 0);

    let restored = dir.path().join("restored.json");
    let v = wallet_json(&restored, node, &["import", "--mnemonic", &phrase]);
    assert_eq!(v["scanned"], true, "{v}");
    assert_eq!(v["addresses"], 3, "{v}");
    assert_eq!(v["address"], json!(a2), "{v}");
    assert_eq!(balance(&restored, node), (c, u, i));
}
