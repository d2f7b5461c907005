//! The server against a client written from the spec, over real sockets.

use super::protocol::*;
use super::vardiff::FAST_SHARES;
use super::*;
use engine::engine::EngineConfig;
use engine::hash::sha256d;
use engine::params::ChainParams;
use engine::pow::CompactTarget;
use engine::testkit::{outpoint, TestKey};
use engine::{Engine, Hash256};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::Lines;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio::net::TcpStream;

fn fast_engine() -> Engine {
    // Fixed difficulty: the tests check set_difficulty.
    let p = engine::testkit::fast_params();
    let now = Arc::new(AtomicU64::new(1_800_000_000));
    let mut c = EngineConfig::new(p);
    c.clock = Arc::new(move || now.fetch_add(1, Ordering::SeqCst));
    Engine::in_memory(c).expect("in-memory engine")
}

/// A Stratum client as a miner writes it: requests with ids, notifications queued.
struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    wr: OwnedWriteHalf,
    next_id: u64,
    queued: VecDeque<Value>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let (rd, wr) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            lines: BufReader::new(rd).lines(),
            wr,
            next_id: 1,
            queued: VecDeque::new(),
        }
    }

    /// Write errors are ignored: the server may close first (oversized line test).
    async fn send_raw(&mut self, line: &str) {
        let _ = self.wr.write_all(line.as_bytes()).await;
        let _ = self.wr.write_all(b"\n").await;
    }

    /// The next message, or None once the server closed the connection.
    async fn recv(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .expect("server answers in time")
            .ok()??;
        Some(serde_json::from_str(&line).expect("server sends JSON lines"))
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"id": id, "method": method, "params": params});
        self.send_raw(&req.to_string()).await;
        loop {
            let msg = self.recv().await.expect("connection open");
            if msg["id"] == json!(id) {
                return msg;
            }
            self.queued.push_back(msg);
        }
    }

    async fn notification(&mut self, method: &str) -> Value {
        if let Some(i) = self
            .queued
            .iter()
            .position(|m| m["method"] == json!(method))
        {
            return self.queued.remove(i).unwrap()["params"].clone();
        }
        loop {
            let msg = self.recv().await.expect("connection open");
            if msg["method"] == json!(method) {
                return msg["params"].clone();
            }
            self.queued.push_back(msg);
        }
    }
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

/// Searches a nonce exactly as pooler's cpuminer does: the header as twenty 32-bit
/// words hashed big-endian, version/prevhash/ntime/nbits read with `le32dec` from the
/// decoded hex, the merkle root with `be32dec`, and the nonce and ntime submitted as
/// the hex of `le32enc(word)`. `want_block` picks a winning or a losing nonce.
fn search(notify: &Value, en1: &[u8], en2: &[u8], want_block: bool) -> (Value, Hash256) {
    search_rolled(notify, en1, en2, want_block, None)
}

/// [`search`] with BIP 310 version bits: the header's version is `version_bits` under
/// the mask `0x1fffe000` (job version bits elsewhere), sent as submit's sixth parameter.
fn search_rolled(
    notify: &Value,
    en1: &[u8],
    en2: &[u8],
    want_block: bool,
    version_bits: Option<u32>,
) -> (Value, Hash256) {
    let le32dec = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    let be32dec = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let coinbase = [
        unhex(&notify[2]),
        en1.to_vec(),
        en2.to_vec(),
        unhex(&notify[3]),
    ]
    .concat();
    let mut root = sha256d(&coinbase);
    for b in notify[4].as_array().unwrap() {
        root = sha256d(&[root.to_vec(), unhex(b)].concat());
    }
    let prev = unhex(&notify[1]);
    let mut data = [0u32; 20];
    data[0] = le32dec(&unhex(&notify[5]));
    if let Some(bits) = version_bits {
        // The version word as cpuminer-style firmware rolls it: masked bits replaced.
        let job = u32::from_str_radix(notify[5].as_str().unwrap(), 16).unwrap();
        data[0] = ((job & !0x1fff_e000) | (bits & 0x1fff_e000)).swap_bytes();
    }
    for i in 0..8 {
        data[1 + i] = le32dec(&prev[4 * i..4 * i + 4]);
        data[9 + i] = be32dec(&root[4 * i..4 * i + 4]);
    }
    data[17] = le32dec(&unhex(&notify[7]));
    data[18] = le32dec(&unhex(&notify[6]));
    let nbits = u32::from_str_radix(notify[6].as_str().unwrap(), 16).unwrap();
    let target = CompactTarget(nbits).to_target().unwrap();
    for n in 0u32.. {
        data[19] = n;
        let header: Vec<u8> = data.iter().flat_map(|w| w.to_be_bytes()).collect();
        let hash = Hash256::sha256d(&header);
        if target.is_met_by(&hash) == want_block {
            let mut submit = json!([
                "worker",
                notify[0],
                hex::encode(en2),
                hex::encode(data[17].to_le_bytes()),
                hex::encode(data[19].to_le_bytes()),
            ]);
            if let Some(bits) = version_bits {
                submit
                    .as_array_mut()
                    .unwrap()
                    .push(json!(format!("{bits:08x}")));
            }
            return (submit, hash);
        }
    }
    unreachable!("the easiest target is met within a few nonces")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_gets_work_and_its_share_becomes_a_block() {
    let engine = fast_engine();
    let (alice, miner) = (TestKey::new(1), TestKey::new(7));
    let mut first = None;
    for _ in 0..2 {
        let b = engine
            .block_template(alice.address(), vec![])
            .unwrap()
            .mine_cpu();
        engine.submit_block_async(b.clone()).await.unwrap();
        first.get_or_insert(b);
    }
    // A mempool transaction, so the job carries a non-empty merkle branch.
    let cb = first.unwrap().txs[0].txid();
    let pay = alice.spend(&[outpoint(cb, 0)], &[(alice.address(), 7)]);
    engine.submit_tx_async(pay.clone()).await.unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(engine.clone(), listener));
    let mut c = Client::connect(addr).await;

    // A bad line gets an error and the connection stays usable.
    c.send_raw("this is not json").await;
    let err = c.recv().await.unwrap();
    assert_eq!(err["error"][0], json!(ERR_OTHER), "{err}");
    assert_eq!(err["id"], Value::Null);
    let r = c.call("mining.bogus", json!([])).await;
    assert_eq!(r["error"][0], json!(ERR_OTHER), "{r}");

    let r = c.call("mining.subscribe", json!(["test-miner/1.0"])).await;
    let en1 = unhex(&r["result"][1]);
    assert_eq!(en1.len(), EXTRANONCE1_SIZE);
    assert_eq!(r["result"][2], json!(EXTRANONCE2_SIZE));
    assert_eq!(r["result"][0][1][0], json!("mining.notify"));

    let r = c
        .call("mining.authorize", json!(["bp1notanaddress", "x"]))
        .await;
    assert_eq!(r["result"], json!(false), "{r}");
    assert_eq!(r["error"][0], json!(ERR_UNAUTHORIZED));
    let worker = format!("{}.rig1", miner.address());
    let r = c.call("mining.authorize", json!([worker, "x"])).await;
    assert_eq!(r["result"], json!(true), "{r}");
    let diff = c.notification("mining.set_difficulty").await;
    let expected = engine::query::difficulty(CompactTarget::EASIEST);
    assert_eq!(diff[0].as_f64().unwrap(), expected);
    let job = c.notification("mining.notify").await;
    assert_eq!(job[8], json!(true), "first job is clean");
    assert_eq!(job[4].as_array().unwrap().len(), 1, "{job}");
    let tip = engine.status().unwrap().best_hash;
    assert_eq!(job[1], json!(stratum_prevhash(&tip)));

    let en2 = [0, 0, 0, 9];
    // Wrong job, malformed fields, and a hash above the target.
    let (mut stale, _) = search(&job, &en1, &en2, true);
    stale[1] = json!("ffff");
    let r = c.call("mining.submit", stale).await;
    assert_eq!(r["error"][0], json!(ERR_JOB_NOT_FOUND), "{r}");
    let (mut short, _) = search(&job, &en1, &en2, true);
    short[2] = json!("00");
    let r = c.call("mining.submit", short).await;
    assert_eq!(r["error"][0], json!(ERR_OTHER), "{r}");
    let (low, _) = search(&job, &en1, &en2, false);
    let r = c.call("mining.submit", low).await;
    assert_eq!(r["error"][0], json!(ERR_LOW_DIFFICULTY), "{r}");
    assert_eq!(engine.status().unwrap().height, 2);

    // The winning share becomes the block the miner hashed, paying the miner.
    let (win, hash) = search(&job, &en1, &en2, true);
    let r = c.call("mining.submit", win.clone()).await;
    assert_eq!(r["result"], json!(true), "{r}");
    let status = engine.status().unwrap();
    assert_eq!(status.height, 3);
    assert_eq!(
        status.best_hash, hash,
        "the engine stored the header we hashed"
    );
    let (_, block) = engine.block(&hash).unwrap().unwrap();
    assert_eq!(block.txs.len(), 2);
    assert_eq!(block.txs[1].txid(), pay.txid());
    assert_eq!(block.txs[0].outputs[0].address, miner.address());
    assert_eq!(
        block.txs[0].outputs[0].amount,
        10 + 3,
        "reward plus the fee"
    );
    let r = c.call("mining.submit", win).await;
    assert_eq!(r["error"][0], json!(ERR_DUPLICATE), "{r}");

    // The new tip brings a clean job on top of the block just found.
    let next = loop {
        let n = c.notification("mining.notify").await;
        if n[1] == json!(stratum_prevhash(&hash)) {
            break n;
        }
    };
    assert_eq!(next[8], json!(true));
    assert!(
        next[4].as_array().unwrap().is_empty(),
        "mempool is empty again"
    );

    // Each connection gets its own extranonce1.
    let mut other = Client::connect(addr).await;
    let r = other.call("mining.subscribe", json!([])).await;
    assert_ne!(unhex(&r["result"][1]), en1);

    // An oversized line closes the connection.
    c.send_raw(&"x".repeat(MAX_LINE + 10)).await;
    let mut closed = false;
    for _ in 0..4 {
        if c.recv().await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "connection closed after an oversized line");
    // The server itself is still up for others.
    let r = other
        .call("mining.authorize", json!([miner.address().to_string()]))
        .await;
    assert_eq!(r["result"], json!(true));
}

/// A server with `config` on an engine at the easiest target, plus its accounting.
async fn start(engine: &Engine, config: StratumConfig) -> (std::net::SocketAddr, Arc<Accounting>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let book = Arc::new(Accounting::default());
    tokio::spawn(serve_with(engine.clone(), listener, config, book.clone()));
    (addr, book)
}

/// Subscribes and authorizes as `worker`; returns the extranonce1 and the first job.
async fn session(c: &mut Client, worker: &str) -> (Vec<u8>, Value) {
    let r = c.call("mining.subscribe", json!(["test-miner/1.0"])).await;
    let en1 = unhex(&r["result"][1]);
    let r = c.call("mining.authorize", json!([worker, "x"])).await;
    assert_eq!(r["result"], json!(true), "{r}");
    (en1, c.notification("mining.notify").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_rolled_share_becomes_a_block_with_the_rolled_version() {
    let engine = fast_engine();
    let (addr, book) = start(&engine, StratumConfig::default()).await;
    let miner = TestKey::new(8);
    let mut c = Client::connect(addr).await;
    let r = c
        .call(
            "mining.configure",
            json!([["version-rolling"], {"version-rolling.mask": "ffffffff", "version-rolling.min-bit-count": 2}]),
        )
        .await;
    assert_eq!(r["result"]["version-rolling"], json!(true), "{r}");
    assert_eq!(r["result"]["version-rolling.mask"], json!("1fffe000"));
    let (en1, job) = session(&mut c, &miner.address().to_string()).await;
    let bits = 0x0aba_e000;
    let (win, hash) = search_rolled(&job, &en1, &[0, 0, 0, 1], true, Some(bits));
    let r = c.call("mining.submit", win.clone()).await;
    assert_eq!(r["result"], json!(true), "{r}");
    assert_eq!(engine.status().unwrap().best_hash, hash);
    let (_, block) = engine.block(&hash).unwrap().unwrap();
    assert_eq!(
        block.header.version, 0x0aba_e001,
        "rolled bits over version 1"
    );
    let r = c.call("mining.submit", win).await;
    assert_eq!(r["error"][0], json!(ERR_DUPLICATE), "{r}");
    assert_eq!(book.snapshot()[0].blocks, 1);

    // Without mining.configure a sixth parameter is refused, not silently dropped.
    let mut plain = Client::connect(addr).await;
    let (en1, job) = session(&mut plain, &miner.address().to_string()).await;
    let (share, _) = search_rolled(&job, &en1, &[0, 0, 0, 2], true, Some(bits));
    let r = plain.call("mining.submit", share).await;
    assert_eq!(r["error"][0], json!(ERR_OTHER), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_below_the_block_target_are_counted_and_vardiff_retargets() {
    // A network far above this test's reach; shares at a tiny share difficulty.
    let mut p = ChainParams::dev();
    p.initial_bits = CompactTarget(0x1d00ffff);
    let engine = Engine::in_memory(EngineConfig::new(p)).unwrap();
    let config = StratumConfig {
        start_difficulty: 1e-7,
        share_seconds: 1.0,
        ..StratumConfig::default()
    };
    let (addr, book) = start(&engine, config).await;
    let miner = TestKey::new(9);
    let worker = format!("{}.cpu", miner.address());
    let mut c = Client::connect(addr).await;
    let r = c.call("mining.suggest_difficulty", json!([2e-7])).await;
    assert_eq!(r["result"], json!(true));
    let (en1, job) = session(&mut c, &worker).await;
    let d = c.notification("mining.set_difficulty").await[0]
        .as_f64()
        .unwrap();
    assert_eq!(d, 2e-7, "the suggestion is the start");
    // Ten quick shares at 2e-7 (~860 hashes each): far more than one a second, so
    // vardiff raises the difficulty and sends it with a fresh job.
    let target = diff1() / d;
    let mut found = 0;
    for n in 0u32.. {
        let (share, hash) = share_at(&job, &en1, n, target);
        if let Some(share) = share {
            let r = c.call("mining.submit", share).await;
            assert_eq!(r["result"], json!(true), "{r} ({hash})");
            found += 1;
            if found == FAST_SHARES {
                break;
            }
        }
    }
    let raised = c.notification("mining.set_difficulty").await[0]
        .as_f64()
        .unwrap();
    assert!(raised > d * 1.4, "{raised} after {found} instant shares");
    let next = c.notification("mining.notify").await;
    assert_eq!(next[8], json!(false), "same tip: not clean");
    assert_eq!(
        engine.status().unwrap().height,
        0,
        "no block: far below the target"
    );
    let w = &book.snapshot()[0];
    assert_eq!(w.worker, worker);
    assert_eq!(w.shares_accepted, FAST_SHARES as u64);
    assert_eq!(w.difficulty, raised);
    assert!(w.hashrate > 0.0);
}

/// A cpuminer-style share for nonce `n` of `job` if its hash meets `target` (a float).
fn share_at(job: &Value, en1: &[u8], n: u32, target: f64) -> (Option<Value>, Hash256) {
    let en2 = n.to_be_bytes();
    let coinbase = [unhex(&job[2]), en1.to_vec(), en2.to_vec(), unhex(&job[3])].concat();
    let mut root = sha256d(&coinbase);
    for b in job[4].as_array().unwrap() {
        root = sha256d(&[root.to_vec(), unhex(b)].concat());
    }
    let word = |v: &Value| u32::from_str_radix(v.as_str().unwrap(), 16).unwrap();
    let prev: Vec<u8> = unhex(&job[1])
        .chunks(4)
        .flat_map(|w| w.iter().rev().copied().collect::<Vec<_>>())
        .collect();
    let header = [
        word(&job[5]).to_le_bytes().to_vec(),
        prev,
        root.to_vec(),
        word(&job[7]).to_le_bytes().to_vec(),
        word(&job[6]).to_le_bytes().to_vec(),
        0u32.to_le_bytes().to_vec(),
    ]
    .concat();
    let hash = Hash256::sha256d(&header);
    let ok = diff1() / hash_difficulty(&hash) <= target;
    let share = json!(["w", job[0], hex::encode(en2), job[7], "00000000"]);
    (ok.then_some(share), hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthorizing_with_another_address_gets_a_clean_job_paying_it() {
    let engine = fast_engine();
    let (addr, book) = start(&engine, StratumConfig::default()).await;
    let (a, b) = (TestKey::new(10), TestKey::new(11));
    let mut c = Client::connect(addr).await;
    let (en1, first) = session(&mut c, &a.address().to_string()).await;
    let r = c
        .call("mining.authorize", json!([b.address().to_string(), "x"]))
        .await;
    assert_eq!(r["result"], json!(true));
    let second = c.notification("mining.notify").await;
    assert_eq!(
        second[8],
        json!(true),
        "clean: the old jobs paid someone else"
    );
    assert_ne!(second[3], first[3], "a coinbase paying someone else");
    let r = c
        .call("mining.submit", search(&first, &en1, &[0, 0, 0, 3], true).0)
        .await;
    assert_eq!(r["error"][0], json!(ERR_JOB_NOT_FOUND), "{r}");
    let (win, hash) = search(&second, &en1, &[0, 0, 0, 3], true);
    let r = c.call("mining.submit", win).await;
    assert_eq!(r["result"], json!(true), "{r}");
    let (_, block) = engine.block(&hash).unwrap().unwrap();
    assert_eq!(block.txs[0].outputs[0].address, b.address());
    let names: Vec<_> = book
        .snapshot()
        .into_iter()
        .map(|w| (w.worker, w.connections))
        .collect();
    assert_eq!(
        names.len(),
        2,
        "both workers are known, only the second connected: {names:?}"
    );
    assert_eq!(names.iter().map(|n| n.1).sum::<u32>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_stratum_errors() {
    let engine = fast_engine();
    let config = StratumConfig {
        max_connections: 3,
        max_per_ip: 2,
        auth_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        ..StratumConfig::default()
    };
    let (addr, _) = start(&engine, config).await;
    let miner = TestKey::new(12).address().to_string();
    let mut first = Client::connect(addr).await;
    let _ = session(&mut first, &miner).await;
    let mut second = Client::connect(addr).await;
    let r = second.call("mining.subscribe", json!([])).await;
    assert!(r["error"].is_null());
    // A third from the same IP: one error line, then closed.
    let mut third = Client::connect(addr).await;
    let refusal = third.recv().await.expect("an error line first");
    assert_eq!(refusal["error"][0], json!(ERR_OTHER), "{refusal}");
    assert!(refusal["error"][1]
        .as_str()
        .unwrap()
        .contains("from this address"));
    assert!(third.recv().await.is_none(), "then closed");
    // The second never authorizes: dropped with code 24.
    let msg = second.recv().await.expect("an error before closing");
    assert_eq!(msg["error"][0], json!(ERR_UNAUTHORIZED), "{msg}");
    assert!(second.recv().await.is_none());
    // The first stops talking: dropped as idle.
    let closed = loop {
        match first.recv().await {
            Some(m) if m["error"].is_null() => continue,
            other => break other,
        }
    };
    assert_eq!(closed.expect("an error line")["error"][0], json!(ERR_OTHER));
    assert!(first.recv().await.is_none());
}

/// Regression (found with pooler/cpuminer 2.5.1 by hand): a quiet connection's lowered
/// difficulty came with a job whose header equalled the last one (same tip, same ntime),
/// and cpuminer keeps mining its current work at the old target while the header bytes
/// are unchanged, so a 10 MH/s CPU on a far network saw no share in 70 s. A re-sent job
/// now carries the current time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_retarget_job_differs_from_the_last_in_its_header() {
    let mut p = ChainParams::dev();
    p.initial_bits = CompactTarget(0x1d00ffff);
    let now = Arc::new(AtomicU64::new(1_800_000_000));
    let mut c = EngineConfig::new(p);
    c.clock = Arc::new(move || now.fetch_add(1, Ordering::SeqCst));
    let engine = Engine::in_memory(c).unwrap();
    let config = StratumConfig {
        start_difficulty: 1.0,
        share_seconds: 0.2,
        ..StratumConfig::default()
    };
    let (addr, _) = start(&engine, config).await;
    let mut c = Client::connect(addr).await;
    let worker = format!("{}.quiet", TestKey::new(3).address());
    let (_, first) = session(&mut c, &worker).await;
    let lowered = c.notification("mining.set_difficulty").await[0]
        .as_f64()
        .unwrap();
    let lowered = if lowered == 1.0 {
        // the first set_difficulty is the start; the lowered one follows
        c.notification("mining.set_difficulty").await[0]
            .as_f64()
            .unwrap()
    } else {
        lowered
    };
    assert!(lowered < 1.0, "no share found: lowered, got {lowered}");
    let next = c.notification("mining.notify").await;
    assert_eq!(next[1], first[1], "same tip");
    assert_eq!(next[8], json!(false), "same tip: not clean");
    let ntime = |j: &Value| u32::from_str_radix(j[7].as_str().unwrap(), 16).unwrap();
    assert!(ntime(&next) > ntime(&first), "{next} after {first}");
}
