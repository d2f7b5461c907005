//! `bitplace-bench sync`: a new node catching up with a peer, next to the engine's own
//! block-connect rate measured in the same run (issue 15's goal: ≥ 0.8× connect): the
//! one-block figure of `bitplace-bench connect` (`connect_tx_per_s`, a median), and the
//! same chain's blocks connected in order by a fresh engine in process
//! (`chain_connect_tx_per_s`).
//!
//! The chain (funding blocks, then blocks of `--block-txs` signed one-input transactions)
//! is built in process on the bench parameters, then pushed to node A through its public
//! peer route (`POST /v1/p2p/blocks`), in order. Node B starts empty with `--peer A` and is
//! timed from its ready line until its tip and UTXO-set hash are A's. Both nodes run the
//! same chain flags as the local engine, so they agree on every block.

use crate::connect::connect_rate;
use crate::http::{node_bin, runtime, spawn_node};
use anyhow::{ensure, Context, Result};
use benchkit::Bench;
use engine::encoding::Encode;
use engine::Block;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct SyncArgs {
    /// Signed transactions in the chain (besides the funding ones).
    #[arg(long, default_value_t = 100_000)]
    pub txs: usize,
    /// Transactions per block (≤ 40,000: a block stays under the node's 8 MB).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=40_000))]
    pub block_txs: u64,
    /// The node binary (default: bitplace-node next to this executable).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Fresh blocks of `--block-txs` the connect reference is measured on (its median is
    /// `connect_tx_per_s`; one block's rate moved ±15 % between runs on a 2-core VM).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub connect_runs: u64,
    /// Give up when B has not caught up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// Every block of the local engine's best chain after genesis, in order.
fn best_chain(bench: &Bench) -> Result<Vec<Block>> {
    let height = bench.engine.status()?.height;
    (1..=height)
        .map(|h| {
            let hash = bench.engine.block_hash_at(h)?.context("main chain gap")?;
            Ok(bench
                .engine
                .block(&hash)?
                .context("indexed block missing")?
                .1)
        })
        .collect()
}

/// Unix seconds a day back: the node refuses blocks more than 2 h ahead of its clock, so
/// the chain's clock starts there.
fn chain_start() -> Result<u64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    Ok(now.as_secs() - 86_400)
}

/// Builds the chain: funding blocks, then blocks of `block_txs` transactions each.
fn build_chain(txs: usize, block_txs: usize, start: u64) -> Result<Vec<Block>> {
    let bench = Bench::open_at(None, start);
    let coins = bench.fund(txs);
    for chunk in coins.chunks(block_txs) {
        let block = bench.full_block(chunk);
        bench.engine.submit_block(block).context("local block")?;
    }
    best_chain(&bench)
}

/// The durable connect rate (tx/s) of the very blocks the sync fetches, funding blocks
/// included, submitted in order to a fresh engine of this process (on disk, signatures
/// verified cold, one durable commit per block). Why beside the one-block reference: the
/// chain's funding blocks create an output per coin and hold few transactions, work the
/// one-block figure never pays but the sync does.
fn chain_connect_rate(blocks: &[Block], start: u64) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let bench = Bench::open_at(Some(&dir.path().join("ledger.redb")), start);
    let txs: usize = blocks.iter().map(|b| b.txs.len()).sum();
    let blocks = blocks.to_vec();
    let started = Instant::now();
    for block in blocks {
        bench
            .engine
            .submit_block(block)
            .context("connect the chain")?;
    }
    Ok(txs as f64 / started.elapsed().as_secs_f64())
}

pub fn sync(a: SyncArgs) -> Result<()> {
    let bin = node_bin(a.node_bin.as_ref())?;
    let start = chain_start()?;
    let blocks = build_chain(a.txs, a.block_txs as usize, start)?;
    let raw_block_bytes: usize = blocks.iter().map(|b| b.encode().len()).sum();
    let chain_txs: usize = blocks.iter().map(|b| b.txs.len()).sum();
    let connect_rates = (0..a.connect_runs)
        .map(|_| connect_rate(a.block_txs as usize))
        .collect::<Result<Vec<f64>>>()?;
    let connect = crate::median(connect_rates.clone());
    let chain_connect = chain_connect_rate(&blocks, start)?;
    let rt = runtime(2)?;
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
    let node_a = spawn_node(&bin, dirs.0.path(), None)?;
    let a_url = node_a.bound.url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    rt.block_on(push_chain(&http, &a_url, &blocks))?;
    let want = rt.block_on(status(&http, &a_url))?;
    let started = Instant::now();
    let node_b = spawn_node(&bin, dirs.1.path(), Some(&a_url))?;
    let b_url = node_b.bound.url();
    let deadline = Duration::from_secs(a.timeout_secs);
    rt.block_on(wait_caught_up(&http, &b_url, &want, started, deadline))?;
    let secs = started.elapsed().as_secs_f64();
    let breakdown = rt.block_on(sync_breakdown(&http, &b_url))?;
    drop((node_a, node_b));
    let ledger = dirs.1.path().join("data/ledger.redb");
    let ledger_bytes = std::fs::metadata(&ledger)?.len();
    let usage = storage_usage(&ledger)?;
    let rebuilt_bytes = rebuild_offline(&bin, &dirs.1.path().join("data"))?;
    let usage_after_rebuild = storage_usage(&ledger)?;
    let rate = chain_txs as f64 / secs;
    println!(
        "{}",
        json!({"bench": "sync", "txs": a.txs, "chain_txs": chain_txs, "blocks": blocks.len(),
               "block_txs": a.block_txs, "seconds": (secs * 100.0).round() / 100.0,
               "tx_per_s": rate.round(), "connect_tx_per_s": connect.round(),
               "connect_runs_tx_per_s": connect_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
               "ratio_to_connect": (rate / connect * 100.0).round() / 100.0,
               "chain_connect_tx_per_s": chain_connect.round(),
               "ratio_to_chain_connect": (rate / chain_connect * 100.0).round() / 100.0,
               "ledger_bytes": ledger_bytes, "raw_block_bytes": raw_block_bytes,
               "ledger_to_raw": (ledger_bytes as f64 / raw_block_bytes as f64 * 100.0).round() / 100.0,
               "ledger_bytes_after_rebuild": rebuilt_bytes,
               "breakdown": breakdown,
               "storage": usage, "storage_after_rebuild": usage_after_rebuild})
    );
    Ok(())
}

/// `bitplace-node rebuild` on the stopped node's data (it compacts the file after):
/// the size a rebuilt ledger settles at.
fn rebuild_offline(bin: &Path, data: &Path) -> Result<u64> {
    let out = std::process::Command::new(bin)
        .arg("rebuild")
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()?;
    ensure!(
        out.status.success(),
        "bitplace-node rebuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(std::fs::metadata(data.join("ledger.redb"))?.len())
}

/// Where the synced ledger's bytes go (the node is stopped; the file opened in process).
fn storage_usage(ledger: &Path) -> Result<engine::query::StorageUsage> {
    let engine = engine::Engine::open(ledger, engine::EngineConfig::new(benchkit::bench_params()))
        .context("open the synced ledger")?;
    Ok(engine.storage_usage()?)
}

/// Pushes every block to the node in order, each answered before the next.
async fn push_chain(http: &reqwest::Client, base: &str, blocks: &[Block]) -> Result<()> {
    for (i, b) in blocks.iter().enumerate() {
        let r = http
            .post(format!("{base}/v1/p2p/blocks"))
            .json(&json!({"hex": hex::encode(b.encode())}))
            .send()
            .await?;
        let status = r.status();
        ensure!(
            status.is_success(),
            "block {} refused: {status} {}",
            i + 1,
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn status(http: &reqwest::Client, base: &str) -> Result<Value> {
    Ok(http
        .get(format!("{base}/v1/status"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// B's own account of the sync that caught it up: `last_sync.timings` of its one peer in
/// `GET /v1/peers` (fetch, decode, check, verify, fold, commit, starved; milliseconds),
/// waited for briefly since the report is filed just after the last block commits.
async fn sync_breakdown(http: &reqwest::Client, base: &str) -> Result<Value> {
    for _ in 0..250 {
        let peers: Value = http
            .get(format!("{base}/v1/peers"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let list = peers.get("peers").unwrap_or(&peers);
        let timings = &list[0]["last_sync"]["timings"];
        if !timings.is_null() {
            return Ok(timings.clone());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("B never reported its sync's timings")
}

/// Polls B until its best block and UTXO-set hash are `want`'s.
async fn wait_caught_up(
    http: &reqwest::Client,
    base: &str,
    want: &Value,
    started: Instant,
    within: Duration,
) -> Result<()> {
    let same = |s: &Value| {
        s["best_hash"] == want["best_hash"] && s["utxo_set_hash"] == want["utxo_set_hash"]
    };
    loop {
        let now = status(http, base).await?;
        if same(&now) {
            return Ok(());
        }
        ensure!(
            started.elapsed() < within,
            "not caught up after {within:?}: at height {} of {}",
            now["height"],
            want["height"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
