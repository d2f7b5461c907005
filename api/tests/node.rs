//! End-to-end tests against the real `bitplace-node` binary on 127.0.0.1.

use engine::encoding::Encode;
use engine::hash::Hash256;
use engine::pow::CompactTarget;
use engine::testkit::{outpoint, TestKey};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use testnode::{fast_chain_args, Bound, ChildGuard, NodeSpec};

struct Node {
    child: ChildGuard,
    base: String,
    bound: Bound,
    spec: NodeSpec,
    _logs: tempfile::TempDir,
}

impl Node {
    async fn start(dir: &std::path::Path, dev: bool) -> Node {
        Node::start_with(dir, dev, &[]).await
    }

    /// Starts the node with extra command-line arguments.
    async fn start_with(dir: &std::path::Path, dev: bool, args: &[String]) -> Node {
        Node::launch(Node::spec(dir, dev).args(args))
    }

    /// The node binary on `dir` (`--dev` when asked), its log in a directory of its own.
    fn spec(dir: &std::path::Path, dev: bool) -> NodeSpec {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_bitplace-node"));
        // The data directory is exactly `dir`: keep the log out of it.
        let spec = NodeSpec::new(bin, dir, std::path::Path::new(""));
        spec.args(dev.then_some("--dev"))
    }

    fn launch(mut spec: NodeSpec) -> Node {
        let logs = tempfile::tempdir().unwrap();
        spec.log = logs.path().join("node.log");
        Node::run(spec, logs)
    }

    fn run(spec: NodeSpec, logs: tempfile::TempDir) -> Node {
        let started = spec.start().unwrap_or_else(|e| panic!("{e}"));
        Node {
            child: started.child,
            base: started.bound.url(),
            bound: started.bound,
            spec,
            _logs: logs,
        }
    }

    /// SIGKILL (no shutdown path runs), then the same node again on the same ports.
    async fn restart_after_kill(mut self) -> Node {
        self.child.0.kill().unwrap();
        self.child.0.wait().unwrap();
        self.spec.pin(&self.bound);
        Node::run(self.spec, self._logs)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(self.url(path)).await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string()).await
    }

    async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path}: non-JSON {status} body: {text}"));
        (status, v)
    }

    /// Mines one block through the miner's path: template, nonce search, submit.
    async fn mine_via_template(&self, address: &str) -> Value {
        let (st, t) = self
            .get(&format!("/v1/mining/template?address={address}"))
            .await;
        assert_eq!(st, 200, "{t}");
        let en2 = [7u8, 0, 0, 0];
        let coinbase = [
            hex::decode(t["coinb1"].as_str().unwrap()).unwrap(),
            en2.to_vec(),
            hex::decode(t["coinb2"].as_str().unwrap()).unwrap(),
        ]
        .concat();
        let mut root = Hash256::sha256d(&coinbase).0;
        for b in t["merkle_branch"].as_array().unwrap() {
            let sib = hex::decode(b.as_str().unwrap()).unwrap();
            root = Hash256::sha256d(&[root.as_slice(), &sib].concat()).0;
        }
        let mut header = hex::decode(t["header"].as_str().unwrap()).unwrap();
        header[36..68].copy_from_slice(&root);
        let bits = u32::from_str_radix(t["bits"].as_str().unwrap(), 16).unwrap();
        let target = CompactTarget(bits).to_target().unwrap();
        let nonce = (0..=u32::MAX)
            .find(|n| {
                header[76..80].copy_from_slice(&n.to_le_bytes());
                target.is_met_by(&Hash256::sha256d(&header))
            })
            .unwrap();
        let (st, r) = self
            .post(
                "/v1/mining/submit",
                &json!({"job_id": t["job_id"], "extra_nonce": hex::encode(en2), "time": t["time"], "nonce": nonce}),
            )
            .await;
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["accepted"], true);
        r
    }
}

/// A minimal SSE reader: (id, event, data) triples.
struct Sse {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    async fn open(node: &Node, topics: &str, last_id: Option<u64>) -> Sse {
        let mut req = reqwest::Client::new().get(node.url(&format!("/v1/events?topics={topics}")));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        Sse {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    async fn next(&mut self, within: Duration) -> Option<(u64, String, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut ev, mut data) = (None, String::new(), String::new());
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if let Some(id) = id {
                    return Some((id, ev, serde_json::from_str(&data).unwrap()));
                }
                continue; // keep-alive comment
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    }

    /// Waits for an event named `name`, returning it and everything seen before it.
    async fn until(&mut self, name: &str, within: Duration) -> Vec<(u64, String, Value)> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("no `{name}` event within {within:?}; saw {seen:?}"));
            let done = e.1 == name;
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn create_mine_send_mine_with_push_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), true).await;
    let (alice, bob) = (TestKey::new(1), TestKey::new(2));
    let (a, b) = (alice.address().to_string(), bob.address().to_string());

    let mut feed = Sse::open(&node, &format!("blocks,mempool,address:{a}"), None).await;
    let started = Instant::now();
    let mined = node.mine_via_template(&a).await;
    let seen = feed.until("balance", Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let connected = seen
        .iter()
        .find(|e| e.1 == "block_connected")
        .expect("block pushed");
    assert_eq!(connected.2["hash"], mined["hash"]);
    let first_id = connected.0;
    let balance = &seen.last().unwrap().2;
    assert_eq!(balance["address"], a.as_str());
    assert_eq!(
        balance["confirmed"].as_u64().unwrap() + balance["immature"].as_u64().unwrap(),
        10
    );

    // Second block through the Pocket alias; then alice's first coinbase is spendable.
    let (st, r) = node
        .post("/api/mine_block", &json!({"address": a, "txAmount": 5}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert!(r["error"].is_null());
    let (_, block1) = node
        .get(&format!("/v1/blocks/{}", mined["hash"].as_str().unwrap()))
        .await;
    let cb = Hash256::from_display_hex(block1["txs"][0]["txid"].as_str().unwrap()).unwrap();
    let pay = alice.spend(
        &[outpoint(cb, 0)],
        &[(bob.address(), 3), (alice.address(), 7)],
    );
    let (st, r) = node
        .post("/v1/tx", &json!({"hex": hex::encode(pay.encode())}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["txid"], pay.txid().to_string());
    feed.until("mempool_added", Duration::from_secs(1)).await;
    let (_, bob_info) = node.get(&format!("/v1/addresses/{b}")).await;
    assert_eq!(bob_info["unconfirmed"], 3);

    node.mine_via_template(&a).await;
    let (_, bob_info) = node.get(&format!("/v1/addresses/{b}")).await;
    assert_eq!(
        (
            bob_info["confirmed"].as_u64(),
            bob_info["unconfirmed"].as_i64()
        ),
        (Some(3), Some(0))
    );
    let (_, alice_info) = node.get(&format!("/v1/addresses/{a}")).await;
    assert_eq!(
        alice_info["confirmed"].as_u64().unwrap() + alice_info["immature"].as_u64().unwrap(),
        7 + 10 + 10
    );
    let (_, tx) = node.get(&format!("/v1/tx/{}", pay.txid())).await;
    assert_eq!(tx["height"], 3);
    assert!(tx["merkle_proof"]["branch"].is_array());
    let (_, bal) = node.get(&format!("/wallet/balance?address={b}")).await;
    assert_eq!(bal["balance"], 3);
    drop(feed);

    // Reconnect from the first block's id: everything after it is replayed, in order.
    let mut replay = Sse::open(&node, &format!("blocks,address:{a}"), Some(first_id)).await;
    let mut heights = Vec::new();
    let mut last = first_id;
    while let Some((id, ev, data)) = replay.next(Duration::from_millis(500)).await {
        assert!(
            id > first_id && id >= last,
            "ids increase: {id} after {last}"
        );
        last = id;
        if ev == "block_connected" {
            heights.push(data["height"].as_u64().unwrap());
        }
    }
    assert_eq!(heights, vec![2, 3], "the missed blocks are replayed");
}

/// A 1 MiB page cache (`--db-cache-mb 1`) makes the node read its file for what does not
/// fit; it serves the same as with the default. A cache of 0 is refused by name.
#[tokio::test]
async fn a_node_with_a_small_page_cache_serves_what_it_mined_after_a_restart() {
    let out = node_cmd().args(["--db-cache-mb", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--db-cache-mb"));
    let dir = tempfile::tempdir().unwrap();
    let small = ["--db-cache-mb".to_string(), "1".to_string()];
    let node = Node::start_with(dir.path(), true, &small).await;
    let a = TestKey::new(3).address().to_string();
    for _ in 0..3 {
        node.mine_via_template(&a).await;
    }
    let (_, before) = node.get("/v1/status").await;
    let (code, balance) = node.get(&format!("/v1/addresses/{a}")).await;
    assert_eq!(code, 200, "{balance}");
    let node = node.restart_after_kill().await;
    assert_eq!(node.get("/v1/status").await.1, before);
    assert_eq!(node.get(&format!("/v1/addresses/{a}")).await.1, balance);
    assert_eq!(before["height"], 3);
}

/// The coin cache (`--coin-cache-rows`): a node killed with its last blocks' UTXO and
/// index changes still in memory rebuilds its projections from the log at the next start
/// and serves the same; with a cache of 0 every block writes them, so the file a kill
/// leaves is current and the restart rebuilds nothing.
#[tokio::test]
async fn a_node_killed_with_its_coin_cache_rebuilds_at_start_and_one_without_does_not() {
    for (args, rebuilds) in [(vec![], true), (vec!["--coin-cache-rows", "0"], false)] {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let node = Node::start_with(dir.path(), true, &args).await;
        let a = TestKey::new(5).address().to_string();
        for _ in 0..3 {
            node.mine_via_template(&a).await;
        }
        let (_, before) = node.get("/v1/status").await;
        let (_, balance) = node.get(&format!("/v1/addresses/{a}")).await;
        let node = node.restart_after_kill().await;
        assert_eq!(node.get("/v1/status").await.1, before);
        assert_eq!(node.get(&format!("/v1/addresses/{a}")).await.1, balance);
        let log = std::fs::read_to_string(&node.spec.log).unwrap();
        let rebuilt = log.contains("rebuilding every projection from the log now");
        assert_eq!(rebuilt, rebuilds, "{args:?}:\n{log}");
    }
}

#[tokio::test]
async fn sigkill_and_restart_serves_the_same_status() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), true).await;
    let a = TestKey::new(3).address().to_string();
    for _ in 0..3 {
        node.mine_via_template(&a).await;
    }
    let (_, before) = node.get("/v1/status").await;
    let node = node.restart_after_kill().await;
    let (_, after) = node.get("/v1/status").await;
    assert_eq!(before, after);
    assert_eq!(after["height"], 3);
}

/// (url, source) of every peer the node lists.
async fn peer_list(node: &Node) -> Vec<(String, String)> {
    let (st, v) = node.get("/v1/peers").await;
    assert_eq!(st, 200, "{v}");
    let peer = |p: &Value| {
        (
            p["url"].as_str().unwrap().into(),
            p["source"].as_str().unwrap().into(),
        )
    };
    v.as_array().unwrap().iter().map(peer).collect()
}

#[tokio::test]
async fn a_registered_peer_is_known_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flag = vec!["--peer".to_string(), "127.0.0.1:9".to_string()];
    let node = Node::start_with(dir.path(), true, &flag).await;
    let (st, r) = node
        .post("/v1/peers", &json!({"url": "http://127.0.0.1:10"}))
        .await;
    assert_eq!(st, 201, "{r}");

    // SIGKILL right after the answer: the peer was saved before it.
    let node = node.restart_after_kill().await;
    let both = vec![
        ("http://127.0.0.1:10".to_string(), "registered".to_string()),
        ("http://127.0.0.1:9".to_string(), "config".to_string()),
    ];
    assert_eq!(peer_list(&node).await, both);

    // A corrupt list is not fatal: the node starts with its flags (and logs a warning).
    drop(node);
    std::fs::write(dir.path().join("peers.json"), "{ not json").unwrap();
    let node = Node::start_with(dir.path(), true, &flag).await;
    assert_eq!(peer_list(&node).await, both[1..]);
}

#[tokio::test]
async fn dev_routes_are_forbidden_without_dev() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), false).await;
    for path in [
        "/api/new_wallet",
        "/api/send",
        "/api/mine_block",
        "/api/reset_system",
    ] {
        let (st, v) = node.post_raw(path, "").await;
        assert_eq!(st, 403, "{path}");
        assert!(v["data"].is_null());
        assert!(
            v["error"].as_str().unwrap().contains("dev mode only"),
            "{v}"
        );
    }
    let (st, v) = node.get("/api/get_wallets").await;
    assert_eq!(st, 403);
    assert!(v["error"].is_string());
    for path in ["/mine", "/wallet/new"] {
        let (st, v) = node.get(path).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (403, Some("dev_mode_only")),
            "{path}"
        );
    }
    let (st, blocks) = node.get("/api/get_blocks").await;
    assert_eq!(st, 200);
    assert_eq!(blocks.as_array().unwrap().len(), 1);
    assert!(
        !dir.path().join("dev-wallets.json").exists(),
        "no keys outside dev mode"
    );
}

#[tokio::test]
async fn bad_input_is_4xx_json_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), true).await;
    let (_, w) = node.post_raw("/api/new_wallet", "").await;
    let from = w["data"].as_str().unwrap().to_string();
    let to = TestKey::new(9).address().to_string();
    node.post("/api/mine_block", &json!({"address": from, "txAmount": 1}))
        .await;
    let (_, before) = node.get("/v1/status").await;

    let alice = TestKey::new(1);
    let overflow = alice.spend(
        &[outpoint(Hash256([1; 32]), 0)],
        &[(alice.address(), u64::MAX), (alice.address(), 2)],
    );
    let bad_posts: Vec<(&str, String)> = vec![
        ("/v1/tx", "{not json".into()),
        ("/v1/tx", json!({"hex": "xyz"}).to_string()),
        (
            "/v1/tx",
            json!({"hex": hex::encode(overflow.encode())}).to_string(),
        ),
        ("/v1/tx", json!({"hex": 12}).to_string()),
        (
            "/api/send",
            json!({"from": from, "to": "bp1notanaddress", "amount": 1}).to_string(),
        ),
        (
            "/api/send",
            json!({"from": from, "to": to, "amount": -1}).to_string(),
        ),
        (
            "/api/send",
            json!({"from": from, "to": to, "amount": 1.5}).to_string(),
        ),
        (
            "/api/send",
            "{\"from\": \"x\", \"to\": \"y\", \"amount\": 1e30}".into(),
        ),
        (
            "/api/send",
            json!({"from": from, "to": to, "amount": u64::MAX}).to_string(),
        ),
        (
            "/api/send",
            json!({"from": from, "to": to, "amount": "5"}).to_string(),
        ),
        ("/api/send", "[1,2]".into()),
        (
            "/api/mine_block",
            json!({"address": "nope", "txAmount": 1}).to_string(),
        ),
        ("/transactions/new", json!({"hex": "00"}).to_string()),
        (
            "/v1/mining/submit",
            json!({"job_id": "1", "extra_nonce": "zz", "time": 1, "nonce": 1}).to_string(),
        ),
    ];
    for (path, body) in bad_posts {
        let (st, v) = node.post_raw(path, &body).await;
        assert!((400..500).contains(&st), "{path} {body}: {st} {v}");
        assert!(v["error"].is_string(), "{path} {body}: {v}");
    }
    let (_, after) = node.get("/v1/status").await;
    assert_eq!(before, after, "rejected input changed nothing");

    // And a good custody send works.
    let (st, v) = node
        .post("/api/send", &json!({"from": from, "to": to, "amount": 4}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["error"].is_null());
    let (_, pool) = node.get("/api/get_pool").await;
    assert_eq!(pool[0]["amount"], 4);
    assert_eq!(pool[0]["toAddr"], to.as_str());
}

#[tokio::test]
async fn reset_system_seeds_the_pocket_demo() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), true).await;
    let (st, v) = node.post_raw("/api/reset_system", "").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"], "System is reset");
    assert!(v["error"].is_null());
    let (_, w) = node.get("/api/get_wallets").await;
    let wallets = w["data"].as_array().unwrap();
    assert_eq!(wallets.len(), 8);
    assert!(wallets
        .iter()
        .all(|w| w["wallet"].get("privateKey").is_none()));
    let (_, pool) = node.get("/api/get_pool").await;
    assert_eq!(
        pool.as_array().unwrap().len(),
        2,
        "two payments stay in the pool"
    );
    let (_, blocks) = node.get("/api/get_blocks").await;
    assert_eq!(blocks.as_array().unwrap().len(), 1 + 1 + 7 + 2);
    let (_, cs) = node.get("/api/get_chainstate").await;
    let first = cs.as_object().unwrap().values().next().unwrap();
    let outs: Value =
        serde_json::from_str(first["serializedUnspentOutputs"].as_str().unwrap()).unwrap();
    assert!(outs[0]["val"].is_number());
    let (_, chain) = node.get("/chain").await;
    assert_eq!(chain["length"], 11);
    assert_eq!(chain["chain"][0]["previous_hash"], "0");
    let (st, mined) = node.get("/mine").await;
    assert_eq!(st, 200, "{mined}");
    assert_eq!(mined["index"], 12);
    let (st, nw) = node.get("/wallet/new").await;
    assert_eq!(st, 200 + 1);
    assert_eq!(nw["seed_phrase"].as_str().unwrap().split(' ').count(), 12);
    let (_, w) = node.get("/api/get_wallets").await;
    assert!(
        !w.to_string().contains(nw["seed_phrase"].as_str().unwrap()),
        "mnemonic shown once"
    );
}

fn node_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bitplace-node"))
}

#[tokio::test]
async fn sigterm_stops_cleanly_then_rebuild_and_verify_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), true).await;
    node.mine_via_template(&TestKey::new(4).address().to_string())
        .await;
    let (_, st) = node.get("/v1/status").await;
    // An open event stream must not hold the shutdown up.
    let _feed = Sse::open(&node, "blocks", None).await;
    let pid = node.child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(8);
    let code = loop {
        if let Some(s) = node.child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(code.success(), "{code:?}");
    // The clean stop wrote the coin cache back: the next open finds the file current.
    let out = node_cmd()
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("rebuilding every projection"), "{said}");

    let out = node_cmd()
        .args(["rebuild", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        st["utxo_set_hash"]
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("rebuilt the projections from the log in")
            && said.contains("folding the log")
            && said.contains("committing"),
        "{said}"
    );
    let out = node_cmd()
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok:"));
}

#[test]
fn corrupt_or_missing_data_dir_is_one_line_and_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ledger.redb"),
        b"this is not a redb file at all",
    )
    .unwrap();
    let out = node_cmd()
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("error"))
        .expect("an error line");
    assert!(line.contains("ledger.redb"), "{err}");
    let out = node_cmd()
        .args(["verify", "--data-dir", "/nonexistent/bp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = node_cmd().args(["--difficulty", "zz"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn help_documents_every_chain_flag_with_its_main_and_dev_default() {
    let out = node_cmd().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    // Each chain parameter says what it is on main and what --dev sets.
    for (flag, main, dev) in [
        ("--difficulty", "1e0fffff", "1f00ffff"),
        ("--target-block-time", "60", "5"),
        ("--retarget-interval", "144", "1"),
        ("--reward", "5000000000", "10"),
        ("--halving-interval", "210000", "0"),
        ("--coinbase-maturity", "100", "1"),
        ("--min-chain-work", "0", "0"),
    ] {
        let at = help
            .find(flag)
            .unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        let text: String = help[at..].split("\n  -").next().unwrap().to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains(&format!("[main: {main}; dev (--dev): {dev}]")),
            "{flag}: {text}"
        );
    }
    // Every other flag documents its default (or that it has none).
    for flag in [
        "--network",
        "--stratum",
        "--admin-token",
        "--web-root",
        "--log-format",
        "--max-side-chain-mb",
        "--coin-cache-rows",
    ] {
        let at = help.find(flag).unwrap();
        let text: String = help[at..].split("\n  -").next().unwrap().to_string();
        assert!(text.contains("default"), "{flag}: {text}");
    }
}

#[tokio::test]
async fn web_root_serves_spa_and_api_stays_json() {
    let dir = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<h1>stand</h1>").unwrap();
    std::fs::create_dir(web.path().join("assets")).unwrap();
    std::fs::write(web.path().join("assets/app.js"), "x=1").unwrap();
    let node = Node::launch(
        Node::spec(dir.path(), true).args(["--web-root".as_ref(), web.path().as_os_str()]),
    );
    let page = reqwest::get(node.url("/some/client/route")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), "<h1>stand</h1>");
    let js = reqwest::get(node.url("/assets/app.js")).await.unwrap();
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    // A path that tries to leave the root is refused outright (not the app shell).
    let traversal = reqwest::get(node.url("/assets/..%2f..%2fetc/passwd"))
        .await
        .unwrap();
    assert_eq!(traversal.status(), 404);
    assert!(!traversal.text().await.unwrap().contains("root:"));
    for path in ["/api/unknown", "/v1/unknown", "/wallet/unknown"] {
        let (st, v) = node.get(path).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (st, _) = node.get("/api/get_blocks").await;
    assert_eq!(st, 200);
    // The miner's kernel is the embedded one even when the page comes from --web-root.
    let wgsl = reqwest::get(node.url("/shaders/sha256d.wgsl"))
        .await
        .unwrap();
    assert_eq!(wgsl.headers()["content-type"], "text/wgsl; charset=utf-8");
    assert_eq!(wgsl.text().await.unwrap(), api::web::SHADER);
}

#[tokio::test]
async fn rate_limit_applies_to_real_connections() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--rate-limit", "5", "--rate-limit-loopback"].map(String::from);
    let node = Node::start_with(dir.path(), false, &args).await;
    // Startup polling may have used some of the bucket: wait for a full refill.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = reqwest::get(node.url("/v1/status")).await.unwrap();
        let st = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if st == 429 {
            assert_eq!(v["error"], "rate_limited", "{v}");
        }
        statuses.push(st);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((5..=6).contains(&ok), "a burst of 5 then 429: {statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
}

async fn status(node: &Node) -> Value {
    let (st, v) = node.get("/v1/status").await;
    assert_eq!(st, 200, "{v}");
    v
}

async fn metric(node: &Node, name: &str) -> u64 {
    let text = reqwest::get(node.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

async fn mine_dev(node: &Node, address: &str) {
    let (st, r) = node
        .post(
            "/api/mine_block",
            &json!({"address": address, "txAmount": 100}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert!(r["error"].is_null(), "{r}");
}

#[tokio::test]
async fn three_nodes_mined_apart_converge_on_the_most_work_chain() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = fast_chain_args();
    let mut nodes = Vec::new();
    for d in &dirs {
        nodes.push(Node::start_with(d.path(), true, &args).await);
    }
    let keys: Vec<TestKey> = (0..3).map(|i| TestKey::new(40 + i)).collect();
    let bob = TestKey::new(50);

    // Apart: A mines 2 blocks, B 4 (with a payment in its 3rd), C 3 — B has the most work.
    for (node, (key, n)) in nodes.iter().zip(keys.iter().zip([2, 4, 3])) {
        for _ in 0..n {
            mine_dev(node, &key.address().to_string()).await;
        }
    }
    let heights: Vec<u64> = {
        let mut h = Vec::new();
        for n in &nodes {
            h.push(status(n).await["height"].as_u64().unwrap());
        }
        h
    };
    assert_eq!(heights, vec![2, 4, 3]);
    // B's chain also carries a transaction: its first coinbase, paid to bob, in a block
    // mined on top (block 5 once B has 4; that makes B's lead 5 > 3 > 2).
    let (_, b1) = nodes[1].get("/v1/blocks/1").await;
    let cb = Hash256::from_display_hex(b1["txs"][0]["txid"].as_str().unwrap()).unwrap();
    let pay = keys[1].spend(
        &[outpoint(cb, 0)],
        &[(bob.address(), 6), (keys[1].address(), 3)],
    );
    let (st, r) = nodes[1]
        .post("/v1/tx", &json!({"hex": hex::encode(pay.encode())}))
        .await;
    assert_eq!(st, 200, "{r}");
    mine_dev(&nodes[1], &keys[1].address().to_string()).await;
    let tips: Vec<Value> = {
        let mut t = Vec::new();
        for n in &nodes {
            t.push(status(n).await);
        }
        t
    };
    assert_eq!(tips[1]["height"], 5);
    let hashes: std::collections::HashSet<_> =
        tips.iter().map(|t| t["utxo_set_hash"].clone()).collect();
    assert_eq!(
        hashes.len(),
        3,
        "three different UTXO sets before connecting"
    );
    for n in &nodes {
        assert_eq!(metric(n, "bitplace_peers").await, 0);
    }

    // Connect: every node registers the other two, then resolves.
    for (i, n) in nodes.iter().enumerate() {
        for (j, m) in nodes.iter().enumerate() {
            if i != j {
                let (st, r) = n.post("/v1/peers", &json!({"url": m.base})).await;
                assert_eq!(st, 201, "{r}");
            }
        }
        assert_eq!(
            metric(n, "bitplace_peers").await,
            2,
            "metric follows registrations"
        );
    }
    for n in &nodes {
        let (st, r) = n.post("/v1/peers/resolve", &json!({})).await;
        assert_eq!(st, 200, "{r}");
    }
    let want = &tips[1];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = Vec::new();
        for n in &nodes {
            all.push(status(n).await);
        }
        let same = all.iter().all(|s| {
            s["best_hash"] == want["best_hash"] && s["utxo_set_hash"] == want["utxo_set_hash"]
        });
        if same {
            for s in &all {
                assert_eq!(s["height"], 5);
                assert_eq!(s["utxo_count"], want["utxo_count"]);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence within 30 s: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The losers reorganised: their own coinbases are gone, bob's payment is there.
    let (_, bob_on_a) = nodes[0]
        .get(&format!("/v1/addresses/{}", bob.address()))
        .await;
    assert_eq!(bob_on_a["confirmed"], 6, "{bob_on_a}");
    let (_, a_on_a) = nodes[0]
        .get(&format!("/v1/addresses/{}", keys[0].address()))
        .await;
    assert_eq!(
        a_on_a["confirmed"].as_u64().unwrap() + a_on_a["immature"].as_u64().unwrap(),
        0,
        "{a_on_a}"
    );

    // Connected now: a block mined on C (a former loser) reaches A and B by relay.
    mine_dev(&nodes[2], &keys[2].address().to_string()).await;
    let want = status(&nodes[2]).await;
    assert_eq!(want["height"], 6);
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in &nodes[..2] {
        loop {
            let s = status(n).await;
            if s["best_hash"] == want["best_hash"] {
                assert_eq!(s["utxo_set_hash"], want["utxo_set_hash"]);
                break;
            }
            assert!(Instant::now() < deadline, "block not relayed: {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A Stratum V1 client over a real socket: requests with ids, notifications queued.
struct StratumClient {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>,
    wr: tokio::net::tcp::OwnedWriteHalf,
    next_id: u64,
    queued: std::collections::VecDeque<Value>,
}

impl StratumClient {
    async fn connect(addr: &str) -> StratumClient {
        use tokio::io::AsyncBufReadExt;
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "stratum not up: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let (rd, wr) = stream.into_split();
        StratumClient {
            lines: tokio::io::BufReader::new(rd).lines(),
            wr,
            next_id: 1,
            queued: Default::default(),
        }
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("server answers within 10 s")
            .unwrap()
            .expect("connection open");
        serde_json::from_str(&line).unwrap()
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        use tokio::io::AsyncWriteExt;
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"id": id, "method": method, "params": params}).to_string() + "\n";
        self.wr.write_all(line.as_bytes()).await.unwrap();
        loop {
            let msg = self.recv().await;
            if msg["id"] == json!(id) {
                return msg;
            }
            self.queued.push_back(msg);
        }
    }

    async fn notification(&mut self, method: &str) -> Value {
        if let Some(i) = self.queued.iter().position(|m| m["method"] == method) {
            return self.queued.remove(i).unwrap()["params"].clone();
        }
        loop {
            let msg = self.recv().await;
            if msg["method"] == method {
                return msg["params"].clone();
            }
            self.queued.push_back(msg);
        }
    }
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn stratum_miner_share_becomes_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::launch(
        Node::spec(dir.path(), true)
            .args(fast_chain_args())
            .with_stratum(),
    );
    let stratum = node.bound.stratum.expect("stratum bound").to_string();
    let miner = TestKey::new(60);
    let before = status(&node).await;

    let mut c = StratumClient::connect(&stratum).await;
    let r = c.call("mining.subscribe", json!(["bitplace-test/1"])).await;
    assert!(r["error"].is_null(), "{r}");
    let en1 = unhex(&r["result"][1]);
    let en2_size = r["result"][2].as_u64().unwrap() as usize;
    assert_eq!(en1.len(), 4);
    let worker = format!("{}.rig", miner.address());
    let r = c.call("mining.authorize", json!([worker, "x"])).await;
    assert_eq!(r["result"], true, "{r}");
    let diff = c.notification("mining.set_difficulty").await;
    assert!(diff[0].as_f64().unwrap() > 0.0, "{diff}");
    let job = c.notification("mining.notify").await;
    // [job_id, prevhash, coinb1, coinb2, merkle_branch, version, nbits, ntime, clean_jobs]
    assert_eq!(job[8], true, "first job is clean: {job}");

    // The header as the byte orders in api/src/stratum.rs say: prevhash has each 4-byte
    // word reversed; version, nbits, ntime are big-endian hex of little-endian fields.
    let en2 = vec![0xab; en2_size];
    let coinbase = [unhex(&job[2]), en1.clone(), en2.clone(), unhex(&job[3])].concat();
    let mut root = Hash256::sha256d(&coinbase).0;
    for b in job[4].as_array().unwrap() {
        root = Hash256::sha256d(&[root.to_vec(), unhex(b)].concat()).0;
    }
    let prev: Vec<u8> = unhex(&job[1])
        .chunks(4)
        .flat_map(|w| w.iter().rev().copied().collect::<Vec<_>>())
        .collect();
    assert_eq!(
        Hash256::from_display_hex(before["best_hash"].as_str().unwrap())
            .unwrap()
            .0
            .to_vec(),
        prev,
        "the job builds on the node's tip"
    );
    let word = |v: &Value| u32::from_str_radix(v.as_str().unwrap(), 16).unwrap();
    let (version, nbits, ntime) = (word(&job[5]), word(&job[6]), word(&job[7]));
    let mut header = [
        version.to_le_bytes().to_vec(),
        prev,
        root.to_vec(),
        ntime.to_le_bytes().to_vec(),
        nbits.to_le_bytes().to_vec(),
        vec![0; 4],
    ]
    .concat();
    assert_eq!(header.len(), 80);
    let target = CompactTarget(nbits).to_target().unwrap();
    let mut found = None;
    for n in 0..=u32::MAX {
        header[76..80].copy_from_slice(&n.to_le_bytes());
        let h = Hash256::sha256d(&header);
        if target.is_met_by(&h) {
            found = Some((n, h));
            break;
        }
    }
    let (nonce, hash) = found.unwrap();
    let submit = json!([
        worker,
        job[0],
        hex::encode(&en2),
        format!("{ntime:08x}"),
        format!("{nonce:08x}")
    ]);
    let r = c.call("mining.submit", submit).await;
    assert_eq!(r["result"], true, "{r}");

    // The share is now the node's tip, one higher, paying the worker's address.
    let after = status(&node).await;
    assert_eq!(
        after["height"].as_u64().unwrap(),
        before["height"].as_u64().unwrap() + 1
    );
    assert_eq!(after["best_hash"], hash.to_string(), "the block we hashed");
    let (_, block) = node.get(&format!("/v1/blocks/{hash}")).await;
    let (_, cb) = node
        .get(&format!(
            "/v1/tx/{}",
            block["txs"][0]["txid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(cb["coinbase"], true, "{cb}");
    assert_eq!(
        cb["outputs"][0]["address"],
        miner.address().to_string(),
        "pays the worker"
    );
    assert_eq!(cb["outputs"][0]["amount"], 10, "the dev reward");
    assert_eq!(cb["block_hash"], hash.to_string());
    // A new tip brings a clean job on top of the block just found.
    let next = loop {
        let n = c.notification("mining.notify").await;
        if n[8] == true {
            break n;
        }
    };
    assert_ne!(next[1], job[1]);
}

/// Writes a whole request (head and a `len`-byte JSON-typed body) on a raw socket, as a
/// client that does not wait for an early answer does, then reads the answer.
fn send_oversized(base: &str, path: &str, len: usize) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    )?;
    let chunk = vec![b' '; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n])?;
        left -= n;
    }
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_oversized_body_gets_a_json_413_not_a_broken_pipe() {
    // `/v1/peers` answered 413 in plain text, and a client still sending its body met a
    // reset connection instead of the answer.
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), true).await;
    let base = node.base.clone();
    for path in ["/v1/peers", "/v1/tx", "/nodes/register"] {
        let (b, p) = (base.clone(), path.to_string());
        let answer = tokio::task::spawn_blocking(move || send_oversized(&b, &p, 8 << 20))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{path}: the client met {e} instead of the answer"));
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(v["error"], "body_too_large", "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains("at most"), "{v}");
    }
    // Nothing changed and the node still answers.
    let (status, peers) = node.get("/v1/peers").await;
    assert_eq!(status, 200);
    assert_eq!(peers, serde_json::json!([]));
}
