//! Load against a running `bitplace-node` over HTTP: `http-submit` (sustained `POST /v1/tx`
//! of pre-signed transactions from many connections) and `sse-latency` (block commit →
//! server-sent event at many subscribers). Either targets `--node URL` or spawns a fresh
//! dev node (`--spawn`) from the `bitplace-node` binary next to this one.
//!
//! Funding goes through the public API only, so it works on any node with an easy enough
//! target: blocks are mined with `/v1/mining/template` + a CPU nonce search +
//! `/v1/mining/submit`, their coinbases fanned out with signed transactions of
//! [`benchkit::FAN_OUT`] outputs, and those outputs spent by the load.

use anyhow::{anyhow, bail, ensure, Context, Result};
use benchkit::{Bench, FAN_OUT, KEYS};
use engine::encoding::Encode;
use engine::hash::Hash256;
use engine::pow::CompactTarget;
use engine::testkit::{outpoint, TestKey};
use engine::tx::OutPoint;
use futures_util::StreamExt;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the load goes.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// Base URL of a running node (it must accept blocks at its current target quickly).
    #[arg(long, conflicts_with = "spawn")]
    pub node: Option<String>,
    /// Spawn a fresh dev node (easiest target, big reward) in a temporary directory.
    #[arg(long)]
    pub spawn: bool,
    /// The node binary for --spawn (default: bitplace-node next to this executable).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Runtime worker threads of this client (the node gets the rest of the machine).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
}

struct Node {
    base: String,
    http: reqwest::Client,
    /// The node this harness started (killed on drop) and its data directory.
    _spawned: Option<(testnode::Started, tempfile::TempDir)>,
}

/// The node binary: `given`, else `bitplace-node` next to this executable.
pub(crate) fn node_bin(given: Option<&PathBuf>) -> Result<PathBuf> {
    let bin = match given {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("executable has no directory")?
            .join("bitplace-node"),
    };
    ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build --release -p bitplace-api) or pass --node-bin",
        bin.display()
    );
    Ok(bin)
}

/// The chain flags that make a node agree with `benchkit::bench_params` on every block
/// these benches build (huge rewards, big blocks; the node's 8 MB block limit is the one
/// difference, and blocks stay under it), with no rate limit.
fn bench_chain_args() -> Vec<String> {
    let p = benchkit::bench_params();
    let mut args = testnode::fast_dev_args();
    for (flag, value) in [
        ("--coinbase-maturity", p.coinbase_maturity.to_string()),
        ("--reward", p.reward.to_string()),
        ("--max-block-txs", p.max_block_txs.to_string()),
        ("--rate-limit", "0".to_string()),
    ] {
        args.extend([flag.to_string(), value]);
    }
    args
}

/// A node on the bench chain over `dir` (data in `dir/data`, its log beside it), peering
/// with `peer` when given.
pub(crate) fn spawn_node(bin: &Path, dir: &Path, peer: Option<&str>) -> Result<testnode::Started> {
    let mut spec = testnode::NodeSpec::new(bin, &dir.join("data"), &dir.join("node.log"))
        .args(bench_chain_args())
        .env("RUST_LOG", "warn");
    if let Some(url) = peer {
        spec = spec.args(["--peer", url]);
    }
    Ok(spec.start()?)
}

impl Node {
    async fn connect(t: &Target, pool: usize) -> Result<Node> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?;
        let (base, spawned) = match (&t.node, t.spawn) {
            (Some(url), _) => (url.trim_end_matches('/').to_string(), None),
            (None, true) => {
                let dir = tempfile::tempdir()?;
                let node = spawn_node(&node_bin(t.node_bin.as_ref())?, dir.path(), None)?;
                (node.bound.url(), Some((node, dir)))
            }
            (None, false) => bail!("give --node URL or --spawn"),
        };
        let node = Node {
            base,
            http,
            _spawned: spawned,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match node.http.get(node.url("/healthz")).send().await {
                Ok(r) if r.status().is_success() => return Ok(node),
                _ if Instant::now() > deadline => bail!("{} did not come up", node.base),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let r = self.http.get(self.url(path)).send().await?;
        let st = r.status();
        let v: Value = r.json().await?;
        ensure!(st.is_success(), "GET {path}: {st} {v}");
        Ok(v)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self.http.post(self.url(path)).json(body).send().await?;
        let st = r.status();
        let v: Value = r.json().await?;
        ensure!(st.is_success(), "POST {path}: {st} {v}");
        Ok(v)
    }

    /// A solved block for the current tip paying `to`: (submit body, height). The nonce
    /// search runs here, on a blocking thread.
    async fn solve(&self, to: &TestKey) -> Result<(Value, u64)> {
        let t = self
            .get(&format!("/v1/mining/template?address={}", to.address()))
            .await?;
        let height = t["height"].as_u64().context("template height")?;
        let body = tokio::task::spawn_blocking(move || solve_template(&t)).await??;
        Ok((body, height))
    }

    /// Mines one block through the miner's API; returns its hash.
    async fn mine(&self, to: &TestKey) -> Result<String> {
        let (body, _) = self.solve(to).await?;
        let r = self.post("/v1/mining/submit", &body).await?;
        ensure!(r["accepted"] == true, "block not accepted: {r}");
        Ok(r["hash"].as_str().context("hash")?.to_string())
    }

    async fn submit_tx(&self, tx: &engine::tx::Transaction) -> Result<()> {
        self.post("/v1/tx", &json!({"hex": hex::encode(tx.encode())}))
            .await
            .map(|_| ())
    }

    /// `n` confirmed outputs spread over [`KEYS`] keys: (outpoint, amount, owner index).
    async fn fund(&self, n: usize) -> Result<Vec<(OutPoint, u64, u64)>> {
        let miner = Bench::key(u64::MAX / 2);
        let fans = n.div_ceil(FAN_OUT);
        let mut coinbases = Vec::new();
        for _ in 0..fans {
            let hash = self.mine(&miner).await?;
            let block = self.get(&format!("/v1/blocks/{hash}")).await?;
            let txid = block["txs"][0]["txid"].as_str().context("coinbase")?;
            let tx = self.get(&format!("/v1/tx/{txid}")).await?;
            let amount = tx["outputs"][0]["amount"].as_u64().context("amount")?;
            coinbases.push((Hash256::from_display_hex(txid)?, amount));
        }
        let mut funded = Vec::with_capacity(n);
        let mut pending = Vec::new();
        for (i, (cb, amount)) in coinbases.into_iter().enumerate() {
            let count = FAN_OUT.min(n - i * FAN_OUT);
            let each = amount / count as u64;
            ensure!(
                each >= 2,
                "the block reward ({amount}) is too small to fund {count} outputs: spawn a node or start it with --reward"
            );
            let outs: Vec<_> = (0..count)
                .map(|j| (Bench::key(j as u64 % KEYS).address(), each))
                .collect();
            let fan = miner.spend(&[outpoint(cb, 0)], &outs);
            funded.extend(
                (0..count).map(|j| (outpoint(fan.txid(), j as u32), each, j as u64 % KEYS)),
            );
            pending.push(fan);
        }
        // Coinbases mature after --coinbase-maturity blocks: mine until the fan-outs go in.
        let mut tries = 0;
        while !pending.is_empty() {
            let mut still = Vec::new();
            for fan in pending {
                if let Err(e) = self.submit_tx(&fan).await {
                    ensure!(e.to_string().contains("immature"), "fan-out: {e}");
                    still.push(fan);
                }
            }
            pending = still;
            self.mine(&miner).await?;
            tries += 1;
            ensure!(tries < 200, "coinbases never matured");
        }
        while self.get("/v1/status").await?["mempool_size"] != 0 {
            self.mine(&miner).await?;
        }
        Ok(funded)
    }
}

/// Finds a nonce for a `/v1/mining/template` answer; returns the `/v1/mining/submit` body.
pub(crate) fn solve_template(t: &Value) -> Result<Value> {
    let unhex = |v: &Value| -> Result<Vec<u8>> {
        Ok(hex::decode(
            v.as_str().ok_or_else(|| anyhow!("not hex: {v}"))?,
        )?)
    };
    let size = t["extra_nonce_size"].as_u64().context("extra_nonce_size")? as usize;
    let bits = u32::from_str_radix(t["bits"].as_str().context("bits")?, 16)?;
    let target = CompactTarget(bits).to_target()?;
    let mut time = t["time"].as_u64().context("time")? as u32;
    for roll in 0u32.. {
        let en2: Vec<u8> = roll
            .to_le_bytes()
            .iter()
            .copied()
            .cycle()
            .take(size)
            .collect();
        let coinbase = [unhex(&t["coinb1"])?, en2.clone(), unhex(&t["coinb2"])?].concat();
        let mut root = Hash256::sha256d(&coinbase).0;
        for b in t["merkle_branch"].as_array().context("branch")? {
            root = Hash256::sha256d(&[root.to_vec(), unhex(b)?].concat()).0;
        }
        let mut header = unhex(&t["header"])?;
        header[36..68].copy_from_slice(&root);
        if roll > 0 {
            time += 1;
        }
        header[68..72].copy_from_slice(&time.to_le_bytes());
        for nonce in 0..=u32::MAX {
            header[76..80].copy_from_slice(&nonce.to_le_bytes());
            if target.is_met_by(&Hash256::sha256d(&header)) {
                return Ok(
                    json!({"job_id": t["job_id"], "extra_nonce": hex::encode(en2),
                                 "time": time, "nonce": nonce}),
                );
            }
        }
    }
    unreachable!()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// The `p`-quantile of sorted samples.
pub(crate) fn pct<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[derive(clap::Args, Clone, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub target: Target,
    /// Concurrent HTTP connections, each sending one transaction at a time.
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// Seconds of measured load (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of load before measuring (connections open, caches warm).
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Pre-signed transactions (independent spends of funded outputs); the run ends early
    /// when they run out. Keep under the node's mempool limit (dev: 200,000).
    #[arg(long, default_value_t = 150_000)]
    pub txs: usize,
}

pub fn http_submit(a: SubmitArgs) -> Result<()> {
    runtime(a.target.client_threads)?.block_on(http_submit_async(a))
}

async fn http_submit_async(a: SubmitArgs) -> Result<()> {
    let node = Arc::new(Node::connect(&a.target, a.connections).await?);
    let t_fund = Instant::now();
    let coins = node.fund(a.txs).await?;
    let fund_secs = t_fund.elapsed().as_secs_f64();
    // Pre-sign every transaction (one input, one output, fee 1) and pre-encode its body.
    let bodies: Vec<bytes::Bytes> = tokio::task::spawn_blocking(move || {
        coins
            .par_iter()
            .map(|(op, amount, owner)| {
                let k = Bench::key(*owner);
                let tx = k.spend(&[*op], &[(k.address(), amount - 1)]);
                bytes::Bytes::from(format!("{{\"hex\":\"{}\"}}", hex::encode(tx.encode())))
            })
            .collect()
    })
    .await?;
    let bodies = Arc::new(bodies);
    let mempool_before = node.get("/v1/status").await?["mempool_size"]
        .as_u64()
        .unwrap_or(0);

    eprintln!(
        "funded and signed {} transactions in {fund_secs:.0} s; load starts ({} s warm-up, {} s measured)",
        bodies.len(),
        a.warmup,
        a.seconds
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(a.warmup);
    let deadline = measure_from + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let (node, bodies, next) = (node.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut ok_warm = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let r = node
                    .http
                    .post(node.url("/v1/tx"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let outcome = match r {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.map(|_| None).map_err(|e| e.to_string())
                    }
                    Ok(r) => {
                        let st = r.status().as_u16();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        Ok(Some(format!("{st} {}", v["error"].as_str().unwrap_or("?"))))
                    }
                    Err(e) => Err(e.to_string()),
                };
                let took = t0.elapsed();
                match outcome {
                    Ok(None) if t0 >= measure_from => lat.push(took),
                    Ok(None) => ok_warm += 1,
                    Ok(Some(code)) => *errors.entry(code).or_default() += 1,
                    Err(e) => *errors.entry(format!("transport: {e}")).or_default() += 1,
                }
            }
            (lat, errors, ok_warm)
        }));
    }
    let mut lat = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok_warm = 0;
    for t in tasks {
        let (l, e, w) = t.await?;
        lat.extend(l);
        ok_warm += w;
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    let measured = Instant::now()
        .min(deadline)
        .saturating_duration_since(measure_from);
    ensure!(
        !lat.is_empty(),
        "no transaction accepted in the measured window: {errors:?}"
    );
    lat.sort();
    let exhausted = next.load(Ordering::Relaxed) >= bodies.len();
    // Every acknowledged transaction is in the node's mempool (it answered after fsync).
    let mempool_after = node.get("/v1/status").await?["mempool_size"]
        .as_u64()
        .unwrap_or(0);
    let acked = lat.len() as u64 + ok_warm;
    println!(
        "{}",
        json!({"bench": "http_submit", "node": node.base, "connections": a.connections,
               "client_threads": a.target.client_threads,
               "measured_secs": (measured.as_secs_f64() * 100.0).round() / 100.0,
               "txs": lat.len(), "tx_per_s": (lat.len() as f64 / measured.as_secs_f64()).round(),
               "p50_ms": ms(pct(&lat, 0.50)), "p99_ms": ms(pct(&lat, 0.99)),
               "max_ms": ms(*lat.last().unwrap()),
               "errors": errors, "ran_out_of_txs": exhausted,
               "ack": "durable (200 only after the fsync'd commit)",
               "acked_total": acked, "mempool_growth": mempool_after.saturating_sub(mempool_before),
               "funding_secs": fund_secs.round()})
    );
    ensure!(
        mempool_after.saturating_sub(mempool_before) >= acked,
        "acknowledged {acked} transactions but the mempool grew by {}",
        mempool_after.saturating_sub(mempool_before)
    );
    Ok(())
}

#[derive(clap::Args, Clone, Debug)]
pub struct SseArgs {
    #[command(flatten)]
    pub target: Target,
    /// Concurrent SSE subscribers (topic `blocks`).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Blocks mined (one at a time) while they listen.
    #[arg(long, default_value_t = 30)]
    pub blocks: usize,
    /// Pause between blocks, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub gap_ms: u64,
}

pub fn sse_latency(a: SseArgs) -> Result<()> {
    runtime(a.target.client_threads)?.block_on(sse_latency_async(a))
}

async fn sse_latency_async(a: SseArgs) -> Result<()> {
    let node = Arc::new(Node::connect(&a.target, 16).await?);
    // (height, arrival) per subscriber, gathered in one place.
    let arrivals: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let connected = Arc::new(AtomicUsize::new(0));
    let stream_client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let mut subs = Vec::new();
    for _ in 0..a.subscribers {
        let (url, http) = (node.url("/v1/events?topics=blocks"), stream_client.clone());
        let (arrivals, connected) = (arrivals.clone(), connected.clone());
        subs.push(tokio::spawn(async move {
            let r = http.get(url).send().await?;
            ensure!(r.status().is_success(), "subscribe: {}", r.status());
            connected.fetch_add(1, Ordering::Relaxed);
            let mut stream = r.bytes_stream();
            // Cheap parsing (this client shares the machine with the node): find the
            // `block_connected` events and read their height without a JSON parser.
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = stream.next().await {
                let now = Instant::now();
                buf.extend_from_slice(&chunk?);
                while let Some(end) = find(&buf, b"\n\n") {
                    let ev = &buf[..end];
                    if find(ev, b"event: block_connected").is_some() {
                        if let Some(h) = find(ev, b"\"height\":").map(|i| {
                            ev[i + 9..]
                                .iter()
                                .take_while(|c| c.is_ascii_digit())
                                .fold(0u64, |n, c| n * 10 + u64::from(c - b'0'))
                        }) {
                            arrivals.lock().unwrap().push((h, now));
                        }
                    }
                    buf.drain(..end + 2);
                }
            }
            Ok(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::Relaxed) < a.subscribers {
        ensure!(
            Instant::now() < deadline,
            "only {} subscribers connected",
            connected.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The node counts its open streams: all of ours must be in before the first block.
    let metrics = node
        .http
        .get(node.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let sse_clients: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("bitplace_sse_clients "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ensure!(
        sse_clients >= a.subscribers as u64,
        "node reports {sse_clients} SSE clients"
    );

    let miner = Bench::key(7);
    let mut sent = BTreeMap::new(); // height → (request sent, answer received)
    for _ in 0..a.blocks {
        let (body, height) = node.solve(&miner).await?;
        let t_send = Instant::now();
        let r = node.post("/v1/mining/submit", &body).await?;
        let t_ack = Instant::now();
        ensure!(r["accepted"] == true, "{r}");
        sent.insert(height, (t_send, t_ack));
        let wait_until = Instant::now() + Duration::from_secs(10);
        loop {
            let got = arrivals
                .lock()
                .unwrap()
                .iter()
                .filter(|x| x.0 == height)
                .count();
            if got >= a.subscribers {
                break;
            }
            ensure!(
                Instant::now() < wait_until,
                "block {height}: only {got} of {} subscribers heard it in 10 s",
                a.subscribers
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
    }
    for s in &subs {
        s.abort();
    }
    let arrivals = arrivals.lock().unwrap().clone();
    let mut from_submit = Vec::new();
    let mut from_ack = Vec::new(); // signed, ms: negative = before the HTTP answer arrived
    for (h, at) in &arrivals {
        if let Some((s, k)) = sent.get(h) {
            from_submit.push(at.saturating_duration_since(*s));
            from_ack.push(if at >= k { ms(*at - *k) } else { -ms(*k - *at) });
        }
    }
    // Spread of each block's deliveries after its first one: the fan-out itself.
    let mut first: BTreeMap<u64, Instant> = BTreeMap::new();
    for (h, at) in &arrivals {
        let f = first.entry(*h).or_insert(*at);
        *f = (*f).min(*at);
    }
    let mut spread: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(h, at)| first.get(h).map(|f| *at - *f))
        .collect();
    spread.sort();
    let mut rtt: Vec<Duration> = sent.values().map(|(s, k)| *k - *s).collect();
    rtt.sort();
    from_submit.sort();
    from_ack.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{}",
        json!({"bench": "sse_latency", "node": node.base, "subscribers": a.subscribers,
               "blocks": a.blocks, "deliveries": from_submit.len(),
               "client_threads": a.target.client_threads,
               "p50_ms": ms(pct(&from_submit, 0.50)), "p99_ms": ms(pct(&from_submit, 0.99)),
               "max_ms": ms(*from_submit.last().unwrap()),
               "measured_from": "submit request sent (upper bound: includes validating and committing the block)",
               "after_ack_p50_ms": pct(&from_ack, 0.50), "after_ack_p99_ms": pct(&from_ack, 0.99),
               "after_first_delivery_p50_ms": ms(pct(&spread, 0.50)),
               "after_first_delivery_p99_ms": ms(pct(&spread, 0.99)),
               "submit_rtt_p50_ms": ms(pct(&rtt, 0.50))})
    );
    Ok(())
}
