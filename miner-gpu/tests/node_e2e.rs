//! End to end: the real `bitplace-miner` binary mining on the real `bitplace-node --dev`
//! (127.0.0.1 only, a fresh temporary data directory per test). Every child process is
//! killed when its guard drops, panics included.
//!
//! The node binary is the workspace build's, next to ours (the `testnode` crate says why).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testnode::ChildGuard;

/// A valid payout address nobody holds a key for (the test only reads its balance).
const MINER_ADDR: consensus::Address = consensus::Address([0x4d; 20]);
/// Where the test's own blocks (mined through the dev route) pay.
const OTHER_ADDR: consensus::Address = consensus::Address([0x0e; 20]);
/// The dev network's block reward (consensus::params::ChainParams::dev).
const DEV_REWARD: u64 = 10;

/// The `bitplace-node` next to our binary (see the `testnode` crate for why).
fn node_bin() -> PathBuf {
    testnode::node_bin(Path::new(env!("CARGO_BIN_EXE_bitplace-miner")))
}

/// A running `bitplace-node --dev`.
struct Node {
    process: testnode::NodeProcess,
    base: String,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        Node::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Node {
        Node::launch(|spec| spec.args(extra))
    }

    /// A dev node whose spec `more` adds to.
    fn launch(more: impl FnOnce(testnode::NodeSpec) -> testnode::NodeSpec) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let spec = testnode::NodeProcess::spec(&node_bin(), dir.path()).args(["--dev"]);
        let process = testnode::NodeProcess::launch(&more(spec));
        Node {
            base: process.url.clone(),
            process,
            _dir: dir,
        }
    }

    /// A dev node that also serves Stratum; returns it and the pool URL.
    fn start_stratum() -> (Node, String) {
        let node = Node::launch(testnode::NodeSpec::with_stratum);
        // The ready line comes once both listeners are bound.
        let stratum = node.process.bound.stratum.expect("stratum bound");
        (node, format!("stratum+tcp://{stratum}"))
    }

    fn log(&self) -> String {
        self.process.log()
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = http("GET", &format!("{}{path}", self.base), None)
            .unwrap_or_else(|| panic!("GET {path}: node unreachable; log:\n{}", self.log()));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let (status, reply) = http("POST", &format!("{}{path}", self.base), Some(body))
            .unwrap_or_else(|| panic!("POST {path}: node unreachable; log:\n{}", self.log()));
        assert_eq!(status, 200, "POST {path}: {reply}");
        reply
    }

    fn height(&self) -> u64 {
        self.get("/v1/status")["height"].as_u64().unwrap()
    }

    /// confirmed + immature + unconfirmed of an address (all of a miner's rewards).
    fn earned(&self, addr: &consensus::Address) -> u64 {
        let v = self.get(&format!("/v1/addresses/{addr}"));
        assert_eq!(v["unconfirmed"], 0, "{v}");
        v["confirmed"].as_u64().unwrap() + v["immature"].as_u64().unwrap()
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`); None when the
/// node cannot be reached. Enough for JSON requests to our own node.
fn http(method: &str, url: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, payload) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    Some((
        status,
        serde_json::from_str(&payload).unwrap_or(Value::Null),
    ))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A running `bitplace-miner --json`; its stdout lines arrive on a channel.
struct Miner {
    child: ChildGuard,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Miner {
    fn start(node: &str, backend: &str, blocks: u64) -> Miner {
        let address = MINER_ADDR.to_string();
        Miner::start_args(&[
            "--node",
            node,
            "--address",
            &address,
            "--backend",
            backend,
            "--threads",
            "1",
            "--blocks",
            &blocks.to_string(),
        ])
    }

    /// Mines through a Stratum URL as worker `<MINER_ADDR>.rig1`.
    fn start_pool(pool: &str, backend: &[&str], blocks: u64) -> Miner {
        let worker = format!("{MINER_ADDR}.rig1");
        let mut args = vec!["--pool", pool, "--user", &worker, "--threads", "1"];
        args.extend_from_slice(backend);
        let blocks = blocks.to_string();
        args.extend_from_slice(&["--blocks", &blocks]);
        Miner::start_args(&args)
    }

    fn start_args(args: &[&str]) -> Miner {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("miner.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bitplace-miner"))
            .args(args)
            .arg("--json")
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn bitplace-miner");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Miner {
            child: ChildGuard(child),
            lines,
            seen: Vec::new(),
            stderr,
            _dir: dir,
        }
    }

    fn context(&self) -> String {
        let lines: Vec<String> = self
            .seen
            .iter()
            .filter(|v| v["type"] != "status")
            .map(|v| v.to_string())
            .collect();
        format!(
            "miner stdout (status lines left out):\n{}\nminer stderr:\n{}",
            lines.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits for the first JSON line satisfying `pred`.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("miner printed non-JSON {line:?}: {e}"));
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!("waited 60 s for {what}; {}", self.context()),
            }
        }
    }

    /// Waits for the process to exit (its stdout fully read) and returns the `done` line.
    fn finish(&mut self) -> Value {
        let done = self.wait_for("the miner's done line", |v| v["type"] == "done");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "miner did not exit; {}",
                self.context()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "miner exit {status}; {}", self.context());
        done
    }

    fn submissions(&self) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|v| v["type"] == "submitted")
            .collect()
    }
}

/// Mines `blocks` blocks with `backend` and checks the node agrees, block by block.
fn mine_blocks(backend: &str, blocks: u64) {
    let node = Node::start();
    let mut miner = Miner::start(&node.base, backend, blocks);
    let done = miner.finish();
    let ctx = miner.context();
    assert_eq!(
        (&done["accepted"], &done["rejected"], &done["stale"]),
        (&json!(blocks), &json!(0), &json!(0)),
        "{ctx}"
    );
    assert!(node.height() >= blocks, "{ctx}");
    assert_eq!(node.earned(&MINER_ADDR), blocks * DEV_REWARD, "{ctx}");
    // Every block it says was accepted is on the main chain and pays the miner.
    let subs = miner.submissions();
    assert_eq!(subs.len() as u64, blocks, "{ctx}");
    for s in subs {
        assert_eq!(s["outcome"], "accepted", "{ctx}");
        let b = node.get(&format!("/v1/blocks/{}", s["hash"].as_str().unwrap()));
        assert_eq!(b["main_chain"], true, "{b}");
        assert_eq!(b["txs"][0]["coinbase"], true);
        assert_eq!(
            b["txs"][0]["outputs"][0]["address"],
            json!(MINER_ADDR),
            "{b}"
        );
    }
}

#[test]
fn cpu_miner_mines_three_blocks_on_a_real_node() {
    mine_blocks("cpu", 3);
}

/// Bug: after finding a block the search kept hashing the solved job, and every further
/// winner was submitted and refused as stale (about a hundred per block on one CPU thread).
#[test]
fn regression_miner_kept_hashing_a_solved_job_and_submitted_stale_blocks() {
    let node = Node::start();
    let mut miner = Miner::start(&node.base, "cpu", 5);
    let done = miner.finish();
    let ctx = miner.context();
    assert_eq!(
        (&done["accepted"], &done["stale"]),
        (&json!(5), &json!(0)),
        "{ctx}"
    );
    assert_eq!(miner.submissions().len(), 5, "{ctx}");
    assert_eq!(node.height(), 5, "{ctx}");
}

/// Bug: after its own block the miner fetched the next template, then refetched on the
/// node's `work` event for that same tip; the node hands out a new job id per template,
/// so the live job was abandoned for an identical one (and its winner went stale).
#[test]
fn regression_work_event_for_the_current_tip_replaced_the_live_job() {
    let node = Node::start();
    let mut miner = Miner::start(&node.base, "cpu", 4);
    miner.finish();
    let ctx = miner.context();
    let jobs: Vec<&Value> = miner.seen.iter().filter(|v| v["type"] == "job").collect();
    let heights: Vec<u64> = jobs.iter().map(|j| j["height"].as_u64().unwrap()).collect();
    assert_eq!(heights, [1, 2, 3, 4], "one job per height; {ctx}");
    assert!(
        jobs[1..].iter().all(|j| j["reason"] == "own_block"),
        "{ctx}"
    );
}

#[test]
fn gpu_miner_mines_three_blocks_on_a_real_node() {
    if miner_gpu::gpu::pick_adapter(None).is_err() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but no GPU adapter (install mesa-vulkan-drivers)");
        }
        eprintln!("note: skipping the GPU end-to-end test, no adapter");
        return;
    }
    mine_blocks("gpu", 3);
}

/// A transparent TCP relay in front of the node that holds the miner's first
/// `POST /v1/mining/submit` until `release` is set. Everything else (the template, the
/// `work` event stream) passes at once. That makes "the tip changed under the miner" a
/// certainty instead of a race: the test changes the tip while the solution is held, so
/// the real node must answer `stale_job`, and the miner must then follow the pushed work.
struct HoldFirstSubmit {
    url: String,
    held: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
}

impl HoldFirstSubmit {
    fn start(upstream: &str) -> HoldFirstSubmit {
        let upstream = upstream.strip_prefix("http://").unwrap().to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let (h, r) = (held.clone(), release.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // server → client: verbatim.
                std::thread::spawn(move || pipe(s2, c2, |_| {}));
                // client → server: verbatim, except the first submit waits.
                let (h, r) = (h.clone(), r.clone());
                std::thread::spawn(move || {
                    pipe(client, server, |chunk| {
                        let is_submit = chunk.windows(22).any(|w| w == b"POST /v1/mining/submit");
                        if is_submit && !h.swap(true, Ordering::SeqCst) {
                            while !r.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                    })
                });
            }
        });
        HoldFirstSubmit { url, held, release }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, before_forward: impl Fn(&[u8])) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        before_forward(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[test]
fn miner_counts_stale_and_follows_the_new_tip_when_the_tip_changes_under_it() {
    let node = Node::start();
    let relay = HoldFirstSubmit::start(&node.base);
    let mut miner = Miner::start(&relay.url, "cpu", 2);
    let first = miner.wait_for("the first job", |v| v["type"] == "job");
    assert_eq!(first["height"], 1, "{first}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !relay.held.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the miner never submitted; {}",
            miner.context()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The miner's solution for height 1 is in flight. Someone else's block lands first.
    assert_eq!(node.height(), 0);
    node.post(
        "/api/mine_block",
        &json!({"address": OTHER_ADDR, "txAmount": 1}),
    );
    assert_eq!(node.height(), 1);
    relay.release.store(true, Ordering::SeqCst);

    let stale = miner.wait_for("the held submission's outcome", |v| {
        v["type"] == "submitted"
    });
    assert_eq!(stale["outcome"], "stale", "{}", miner.context());
    assert_eq!(stale["job_id"], first["job_id"]);
    // Told "stale", the miner fetched work on the new tip at once; the node's `work` event
    // for that same tip, queued meanwhile, then changes nothing (one job per tip).
    let next = miner.wait_for("a job on the new tip", |v| v["type"] == "job");
    assert_eq!(
        (&next["height"], &next["reason"]),
        (&json!(2), &json!("stale")),
        "{}",
        miner.context()
    );

    let done = miner.finish();
    let ctx = miner.context();
    let jobs_at_2 = miner
        .seen
        .iter()
        .filter(|v| v["type"] == "job" && v["height"] == 2)
        .count();
    assert_eq!(jobs_at_2, 1, "{ctx}");
    assert_eq!(done["accepted"], 2, "{ctx}");
    assert_eq!(done["rejected"], 0, "{ctx}");
    assert!(done["stale"].as_u64().unwrap() >= 1, "{ctx}");
    // Every submission after the switch was for a live job, and nothing stale paid.
    assert_eq!(node.height(), 3, "{ctx}");
    assert_eq!(node.earned(&MINER_ADDR), 2 * DEV_REWARD, "{ctx}");
    assert_eq!(node.earned(&OTHER_ADDR), DEV_REWARD, "{ctx}");
    for s in miner.submissions() {
        if s["outcome"] == "accepted" {
            let b = node.get(&format!("/v1/blocks/{}", s["hash"].as_str().unwrap()));
            assert_eq!(b["main_chain"], true, "{b}");
            assert!(b["height"].as_u64().unwrap() >= 2, "{b}");
        }
    }
}

/// Mines `blocks` blocks through the node's own Stratum server and checks the node
/// agrees: every block the miner counts is on the main chain and pays the worker.
fn mine_blocks_over_stratum(backend: &[&str], blocks: u64) -> (Miner, Node) {
    let (node, pool) = Node::start_stratum();
    let mut miner = Miner::start_pool(&pool, backend, blocks);
    let done = miner.finish();
    let ctx = format!("{}\nnode log:\n{}", miner.context(), node.log());
    assert_eq!(done["blocks"], json!(blocks), "{ctx}");
    assert_eq!(done["rejected"], json!(0), "{ctx}");
    assert_eq!(node.earned(&MINER_ADDR), blocks * DEV_REWARD, "{ctx}");
    let sub = miner
        .seen
        .iter()
        .find(|v| v["type"] == "subscribed")
        .unwrap_or_else(|| panic!("no subscription; {ctx}"));
    assert_eq!(sub["extranonce2_size"], 4, "{ctx}");
    // The node's difficulty is the network's: a fraction (2^-16 on --dev).
    let diff = miner
        .seen
        .iter()
        .find(|v| v["type"] == "difficulty")
        .unwrap_or_else(|| panic!("no difficulty; {ctx}"));
    assert!(diff["difficulty"].as_f64().unwrap() < 1.0, "{ctx}");
    let accepted_blocks: Vec<&Value> = miner
        .submissions()
        .into_iter()
        .filter(|s| s["outcome"] == "accepted" && s["block"] == true)
        .collect();
    assert_eq!(accepted_blocks.len() as u64, blocks, "{ctx}");
    for s in accepted_blocks {
        let b = node.get(&format!("/v1/blocks/{}", s["hash"].as_str().unwrap()));
        assert_eq!(b["main_chain"], true, "{b}");
        assert_eq!(
            b["txs"][0]["outputs"][0]["address"],
            json!(MINER_ADDR),
            "{b}"
        );
    }
    (miner, node)
}

#[test]
fn stratum_miner_mines_three_blocks_on_the_nodes_stratum_server() {
    let (miner, node) = mine_blocks_over_stratum(&["--backend", "cpu"], 3);
    assert_eq!(node.height(), 3, "{}", miner.context());
}

#[test]
fn stratum_miner_on_every_device_mines_on_the_real_node() {
    let adapter = match miner_gpu::gpu::pick_adapter(None) {
        Ok(a) => a.get_info().name,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no GPU adapter: {e} (install mesa-vulkan-drivers)");
            }
            eprintln!("note: skipping, no GPU adapter");
            return;
        }
    };
    let word = adapter.split_whitespace().next().unwrap().to_string();
    let (miner, _node) = mine_blocks_over_stratum(&["--backend", "all", "--adapter", &word], 3);
    // Both devices hashed: the status lines carry a rate for each.
    let status: Vec<&Value> = miner
        .seen
        .iter()
        .filter(|v| v["type"] == "status")
        .collect();
    let devices = status
        .iter()
        .map(|s| s["devices"].as_array().unwrap().len())
        .max()
        .unwrap_or(0);
    assert_eq!(devices, 2, "{}", miner.context());
}

#[test]
fn a_worker_name_the_node_refuses_ends_the_miner_within_seconds() {
    let (node, pool) = Node::start_stratum();
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_bitplace-miner"))
        .args([
            "--pool",
            &pool,
            "--user",
            "not-an-address",
            "--backend",
            "cpu",
            "--threads",
            "1",
            // A named kernel skips the start-up calibration, which takes ~20 s in this
            // unoptimised test build (~0.1 s in release): the bound is on the refusal.
            "--kernel",
            "portable",
        ])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused authorization"),
        "{err}\n{}",
        node.log()
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("bitplace-miner:"))
            .count(),
        1,
        "{err}"
    );
}
