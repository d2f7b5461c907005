//! Harness for the system-level reliability suite (`tests/*.rs`): starts real
//! `bitplace-node` processes on free 127.0.0.1 ports with temporary data directories,
//! kills them with SIGKILL (always, on drop too, even when a test panics), and talks to
//! them over HTTP — both through `reqwest` and through a raw TCP client that can send
//! bytes no well-behaved client would.

pub mod blocks;
pub mod metrics;

use engine::encoding::Encode;
use engine::testkit::{outpoint, TestKey};
use engine::{Hash256, Transaction};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the `bitplace-node` binary is: [`testnode::node_bin_in`] (`BITPLACE_NODE_BIN`,
/// else the one next to the test executable, refused when older than its sources), once
/// it is built. Tests run from `<target>/<profile>/deps/<test>-<hash>`, and `cargo build
/// --workspace --bins` (scripts/test.sh) puts the node at `<target>/<profile>/bitplace-node`.
/// When it is missing or stale (say `cargo test -p bitplace-reliability` on a fresh
/// target dir), it is built once with the same cargo and target dir, and the suite fails
/// with a clear message if that fails.
pub fn node_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test executable lives in <target>/<profile>/deps");
        let bin = testnode::node_path_in(profile_dir);
        if std::env::var_os("BITPLACE_NODE_BIN").is_none() && !testnode::is_current(&bin) {
            build_node(profile_dir, &bin);
        }
        testnode::node_bin_in(profile_dir)
    })
    .clone()
}

/// `cargo build -p bitplace-api --bin bitplace-node` into the target dir above
/// `profile_dir`.
fn build_node(profile_dir: &Path, bin: &Path) {
    let target_dir = profile_dir.parent().expect("target dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "reliability: {} missing or stale; building it (cargo build -p bitplace-api --bin bitplace-node)",
        bin.display()
    );
    let status = Command::new(cargo)
        .args(["build", "-p", "bitplace-api", "--bin", "bitplace-node"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()) && bin.is_file(),
        "the bitplace-node binary is missing at {} and building it failed ({status:?}); \
         run `cargo build --workspace --bins` first or set BITPLACE_NODE_BIN",
        bin.display()
    );
}

pub use testnode::fast_chain_args;

/// `--dev` on the fast chain (`testnode::fast_chain_args`), then `extra`.
pub fn fast_dev(extra: &[&str]) -> Vec<String> {
    let mut args = testnode::fast_dev_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `bitplace-node <args>` to completion (offline subcommands).
pub fn node_cmd(args: &[&str], data_dir: &Path) -> Output {
    Command::new(node_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run bitplace-node")
}

/// A deterministic xorshift generator: the suite's randomness is reproducible from a seed
/// (printed by each test; `BITPLACE_SEED` overrides).
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn from_env(default: u64) -> Rng {
        let seed = std::env::var("BITPLACE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// An environment variable as a number, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A running (or killed) `bitplace-node`. Dropping it SIGKILLs the process.
///
/// Started through `testnode` on `--listen 127.0.0.1:0`: `port` (and `stratum_port`) are
/// what the node's ready line says, and a restart keeps them.
pub struct Node {
    child: Option<Child>,
    /// 0 until the first run printed its ready line.
    pub port: u16,
    pub stratum_port: Option<u16>,
    stratum: bool,
    pub dir: PathBuf,
    pub args: Vec<String>,
    /// stderr of every run, appended (kept outside the data dir, so a full data
    /// filesystem does not also lose the logs).
    pub log: PathBuf,
    /// Where the current run's output starts in `log`.
    run_starts_at: u64,
    _log_dir: tempfile::TempDir,
    pub api: Api,
}

impl Node {
    /// Starts a node over `dir` with extra `args` (e.g. `--dev`) and waits until it is
    /// ready.
    pub async fn start(dir: &Path, args: impl IntoIterator<Item = impl AsRef<str>>) -> Node {
        let mut node = Node::spawn(dir, args);
        node.wait_ready().await;
        node
    }

    /// Starts the process without waiting for it.
    pub fn spawn(dir: &Path, args: impl IntoIterator<Item = impl AsRef<str>>) -> Node {
        let mut node = Node::new(dir, args, false);
        node.launch();
        node
    }

    /// Starts a node that also serves Stratum.
    pub async fn start_with_stratum(
        dir: &Path,
        args: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Node {
        let mut node = Node::new(dir, args, true);
        node.launch();
        node.wait_ready().await;
        node
    }

    fn new(dir: &Path, args: impl IntoIterator<Item = impl AsRef<str>>, stratum: bool) -> Node {
        let log_dir = tempfile::tempdir().unwrap();
        Node {
            child: None,
            port: 0,
            stratum_port: None,
            stratum,
            dir: dir.to_path_buf(),
            args: args.into_iter().map(|s| s.as_ref().to_string()).collect(),
            log: log_dir.path().join("node.log"),
            run_starts_at: 0,
            _log_dir: log_dir,
            api: Api::default(),
        }
    }

    /// What the next run starts: this node's data directory, flags and (once known) ports.
    fn spec(&self) -> testnode::NodeSpec {
        let mut spec = testnode::NodeSpec::new(&node_bin(), &self.dir, &self.log)
            .args(&self.args)
            .env("RUST_LOG", "warn");
        if self.port != 0 {
            spec.listen.set_port(self.port);
        }
        if self.stratum {
            spec = spec.with_stratum();
            if let (Some(s), Some(p)) = (spec.stratum.as_mut(), self.stratum_port) {
                s.set_port(p);
            }
        }
        spec
    }

    fn launch(&mut self) {
        let spec = self.spec();
        self.run_starts_at = testnode::log_len(&self.log);
        self.child = Some(spec.spawn().unwrap_or_else(|e| panic!("{e}")));
    }

    /// The node's stderr so far (for failure messages).
    pub fn log_tail(&self) -> String {
        testnode::log_tail(&self.log)
    }

    /// The ready line of the current run, if it has printed one; records its ports.
    fn take_ready(&mut self) -> bool {
        let Some(bound) = testnode::ready_in(&self.log, self.run_starts_at) else {
            return false;
        };
        self.port = bound.api.port();
        self.stratum_port = bound.stratum.map(|s| s.port());
        self.api.base = bound.url();
        true
    }

    /// Waits for the ready line; panics with the node's log if it exits or takes too long.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + testnode::START_TIMEOUT;
        while !self.take_ready() {
            if let Some(st) = self.try_wait() {
                panic!(
                    "bitplace-node exited during startup ({st}); log:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "node did not come up; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again over the same data directory and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch();
        self.wait_ready().await;
    }

    /// Starts the process again and waits for it to exit (it is expected to refuse):
    /// `Some(output)` if it exited (its stderr: what this run logged), `None` if it came
    /// up instead (it then runs under `self`).
    pub fn start_expecting_exit(&mut self, within: Duration) -> Option<Output> {
        self.kill();
        self.launch();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && !self.take_ready() {
            if let Some(status) = self.try_wait() {
                self.child = None;
                return Some(Output {
                    status,
                    stdout: Vec::new(),
                    stderr: testnode::read_from(&self.log, self.run_starts_at).into_bytes(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP client bound to one node's base URL; cheap to clone into tasks.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Default for Api {
    fn default() -> Api {
        Api {
            base: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }
}

impl std::ops::Deref for Node {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_string(),
            ..Api::default()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.try_post(path, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// POST without panicking on a connection error (the node may be dying).
    pub async fn try_post(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        reply(r).await
    }

    /// GET without panicking on a connection error.
    pub async fn try_get(&self, path: &str) -> Result<(u16, Value), String> {
        let r = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        reply(r).await
    }

    /// POST /v1/tx without panicking on a connection error.
    pub async fn submit_tx_raw(&self, tx: &Transaction) -> Result<(u16, Value), String> {
        self.try_post("/v1/tx", &json!({"hex": hex::encode(tx.encode())}))
            .await
    }

    pub async fn status(&self) -> Value {
        let (st, v) = self.get("/v1/status").await;
        assert_eq!(st, 200, "{v}");
        v
    }

    /// `(utxo_set_hash, log_length, height, best_hash, mempool_size)`.
    pub async fn fingerprint(&self) -> (String, u64, u64, String, u64) {
        let s = self.status().await;
        (
            s["utxo_set_hash"].as_str().unwrap().to_string(),
            s["log_length"].as_u64().unwrap(),
            s["height"].as_u64().unwrap(),
            s["best_hash"].as_str().unwrap().to_string(),
            s["mempool_size"].as_u64().unwrap(),
        )
    }

    /// Dev mining: one block paying `address`, with at most `max_txs` mempool transactions
    /// (at least 1: Pocket's `mine_block` refuses 0; an empty mempool still makes a block).
    pub async fn mine(&self, address: &str, max_txs: u64) {
        let (st, r) = self
            .post(
                "/api/mine_block",
                &json!({"address": address, "txAmount": max_txs}),
            )
            .await;
        assert_eq!(st, 200, "{r}");
        assert!(r["error"].is_null(), "{r}");
    }

    pub async fn submit_tx(&self, tx: &Transaction) -> (u16, Value) {
        self.post("/v1/tx", &json!({"hex": hex::encode(tx.encode())}))
            .await
    }

    /// Spendable outputs of `address` (confirmed mature and unconfirmed), as
    /// `(txid, vout, amount, confirmed)`.
    pub async fn utxos(&self, address: &str) -> Vec<(Hash256, u32, u64, bool)> {
        let (st, v) = self.get(&format!("/v1/addresses/{address}")).await;
        assert_eq!(st, 200, "{v}");
        v["utxos"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["mature"].as_bool().unwrap_or(true))
            .map(|u| {
                (
                    Hash256::from_display_hex(u["txid"].as_str().unwrap()).unwrap(),
                    u["vout"].as_u64().unwrap() as u32,
                    u["amount"].as_u64().unwrap(),
                    !u["height"].is_null(),
                )
            })
            .collect()
    }

    /// Whether `/v1/tx/{txid}` knows it, and where: `Some(true)` confirmed,
    /// `Some(false)` in the mempool, `None` unknown.
    pub async fn tx_state(&self, txid: &str) -> Option<bool> {
        let (st, v) = self.get(&format!("/v1/tx/{txid}")).await;
        match st {
            200 => {
                let confirmed = !v["block_hash"].is_null();
                assert!(
                    confirmed || v["in_mempool"] == json!(true),
                    "{txid} neither confirmed nor in the mempool: {v}"
                );
                Some(confirmed)
            }
            404 => None,
            _ => panic!("GET /v1/tx/{txid}: {st} {v}"),
        }
    }

    /// Sum of every confirmed UTXO amount, from the Pocket alias `/api/get_chainstate`
    /// (checked against `/v1/status`'s `utxo_count`).
    pub async fn utxo_total(&self) -> u64 {
        let (st, v) = self.get("/api/get_chainstate").await;
        assert_eq!(st, 200, "{v}");
        let mut total = 0u64;
        let mut count = 0u64;
        for (_txid, entry) in v.as_object().unwrap() {
            let outs: Value =
                serde_json::from_str(entry["serializedUnspentOutputs"].as_str().unwrap()).unwrap();
            for o in outs.as_array().unwrap() {
                total = total.checked_add(o["val"].as_u64().unwrap()).unwrap();
                count += 1;
            }
        }
        let status = self.status().await;
        assert_eq!(
            count,
            status["utxo_count"].as_u64().unwrap(),
            "get_chainstate listed a different number of UTXOs than /v1/status"
        );
        total
    }
}

/// Sums of coinbase outputs and fees of the best chain, block by block, cached by hash
/// so each check only fetches blocks it has not seen.
#[derive(Default)]
pub struct ChainAudit {
    /// height → (hash, coinbase outputs, fees of the other transactions)
    blocks: BTreeMap<u64, (String, u64, u64)>,
}

impl ChainAudit {
    /// `(Σ coinbase outputs, Σ fees)` over the best chain the node serves now.
    pub async fn totals(&mut self, node: &Api) -> (u64, u64) {
        let height = node.status().await["height"].as_u64().unwrap();
        self.blocks.retain(|h, _| *h <= height);
        let mut from = 0;
        while from <= height {
            let (st, list) = node
                .get(&format!("/v1/blocks?from={from}&limit=1000"))
                .await;
            assert_eq!(st, 200, "{list}");
            let list = list.as_array().unwrap().clone();
            if list.is_empty() {
                break;
            }
            for b in &list {
                let h = b["height"].as_u64().unwrap();
                let hash = b["hash"].as_str().unwrap().to_string();
                if self.blocks.get(&h).is_some_and(|c| c.0 == hash) {
                    continue;
                }
                let (st, full) = node.get(&format!("/v1/blocks/{hash}")).await;
                assert_eq!(st, 200, "{full}");
                let txs = full["txs"].as_array().unwrap();
                let coinbase: u64 = txs[0]["outputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["amount"].as_u64().unwrap())
                    .sum();
                let fees: u64 = txs[1..].iter().map(|t| t["fee"].as_u64().unwrap()).sum();
                self.blocks.insert(h, (hash, coinbase, fees));
            }
            from += list.len() as u64;
        }
        self.blocks
            .values()
            .fold((0, 0), |(c, f), b| (c + b.1, f + b.2))
    }
}

/// A plain HTTP/1.1 exchange over a fresh TCP connection: `request` is sent as-is
/// (so it may carry bytes no HTTP library would produce). Returns the status code and
/// body, or an error when the connection fails or the answer is not HTTP.
pub fn raw_http(port: u16, request: &[u8], timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    // A server may answer (413) and close before reading a huge body: a failed write is
    // fine as long as an answer comes back.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                // An event stream never ends: the head is all we need.
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    if head.contains("text/event-stream") {
                        break;
                    }
                }
            }
            Err(e) => {
                if buf.is_empty() {
                    return Err(format!("read: {e}"));
                }
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", &text[..text.len().min(200)]))?;
    let body = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => buf[i + 4..].to_vec(),
        None => Vec::new(),
    };
    Ok((status, body))
}

/// Builds a raw request with `Connection: close` and a correct Content-Length.
pub fn request(method: &str, path: &[u8], content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(path);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        r.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// A signed zero-fee transaction moving `amount` from `key`'s output to `to`.
pub fn pay(key: &TestKey, from: (Hash256, u32), outputs: &[(engine::Address, u64)]) -> Transaction {
    key.spend(&[outpoint(from.0, from.1)], outputs)
}

/// Polls `cond` every 50 ms until it holds or `within` passes.
pub async fn wait_until<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Status and body of a response: JSON when it parses, else the text as a JSON string.
async fn reply(r: reqwest::Response) -> Result<(u16, Value), String> {
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}
