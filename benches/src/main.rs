//! `bitplace-bench`: the engine's and the node's load harness. Each subcommand prints one
//! JSON line with its figures (and, for the engine ones, the reference measured in the same
//! run).

mod connect;
mod http;
mod stratum;
mod sync;

use anyhow::{Context, Result};
use benchkit::Bench;
use clap::{Parser, Subcommand};
use engine::tx::Transaction;
use rayon::prelude::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Bitplace engine and node benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Connect one block of N signed transactions (durable), next to ed25519 verify rates.
    Connect {
        #[arg(long, default_value_t = 10_000)]
        txs: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Admit the transactions to the mempool first (not timed), as a node that
        /// relayed them has: the block then connects without verifying their signatures
        /// again (engine/src/sigcache.rs).
        #[arg(long)]
        from_mempool: bool,
    },
    /// Rebuild every projection from a log holding at least N transactions.
    Rebuild {
        #[arg(long, default_value_t = 1_000_000)]
        txs: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Keep the ledger at PATH and reuse it when it is already there (building a
        /// million signed transactions takes minutes; the rebuild is what is timed).
        #[arg(long)]
        ledger: Option<std::path::PathBuf>,
    },
    /// Concurrent durable submissions through the engine API: tx/s, p50, p99. Each
    /// thread signs its whole chain of spends before the clock starts, so the figure is
    /// the engine's cost, not the client's signing.
    Submit {
        #[arg(long, default_value_t = 256)]
        threads: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Transactions each thread pre-signs (a thread that runs out stops early, and
        /// the output says so); default: enough for 40,000 tx/s over `seconds`.
        #[arg(long)]
        per_thread: Option<usize>,
    },
    /// Sustained POST /v1/tx of pre-signed transactions to a node: tx/s, p50, p99.
    HttpSubmit(http::SubmitArgs),
    /// Block commit → SSE delivery latency at many concurrent subscribers.
    SseLatency(http::SseArgs),
    /// Many Stratum connections submitting at vardiff rate, then new tips: shares/s,
    /// submit → reply latency, node CPU and RSS, tip → clean job latency.
    StratumLoad(stratum::StratumArgs),
    /// A new node syncing a chain of N signed transactions from a peer (two nodes on
    /// loopback), next to the engine's block-connect rate in the same run: tx/s, ratio,
    /// ledger bytes against raw block bytes.
    Sync(sync::SyncArgs),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Connect {
            txs,
            runs,
            from_mempool,
        } => connect::connect(txs, runs, from_mempool),
        Cmd::Rebuild { txs, runs, ledger } => rebuild(txs, runs, ledger),
        Cmd::Submit {
            threads,
            seconds,
            per_thread,
        } => submit(threads, seconds, per_thread),
        Cmd::HttpSubmit(a) => http::http_submit(a),
        Cmd::SseLatency(a) => http::sse_latency(a),
        Cmd::StratumLoad(a) => stratum::stratum_load(a),
        Cmd::Sync(a) => sync::sync(a),
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn rebuild(n: usize, runs: usize, ledger: Option<std::path::PathBuf>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = ledger.unwrap_or_else(|| dir.path().join("ledger.redb"));
    let count_file = path.with_extension("txs");
    let reused = std::fs::read_to_string(&count_file)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|_| path.exists());
    let bench = Bench::open(Some(&path));
    let build = Instant::now();
    let log_txs = match reused {
        Some(total) => total,
        None => {
            let mut total = 0;
            while total < n {
                let coins = bench.fund(benchkit::FAN_OUT);
                let block = bench.full_block(&coins);
                bench.engine.submit_block(block).context("connect")?;
                total += coins.len();
            }
            std::fs::write(&count_file, total.to_string())?;
            total
        }
    };
    let build_secs = build.elapsed().as_secs_f64();
    let (mut rates, mut parts) = (Vec::new(), Vec::new());
    let status = bench.engine.status()?;
    let rss_before = peak_rss::reset();
    for _ in 0..runs {
        let start = Instant::now();
        let r = bench.engine.rebuild()?;
        rates.push(log_txs as f64 / start.elapsed().as_secs_f64());
        anyhow::ensure!(
            hex_of(&r.utxo_set_hash.0) == status.utxo_set_hash,
            "rebuild changed the UTXO set hash"
        );
        parts.push(r);
    }
    // Each part's median over the runs, in seconds.
    let part = |of: fn(&engine::Rebuilt) -> Duration| {
        (median(parts.iter().map(|r| of(r).as_secs_f64()).collect()) * 1000.0).round() / 1000.0
    };
    println!(
        "{}",
        json!({"bench": "rebuild", "log_txs": log_txs, "log_records": status.log_length,
               "tx_per_s": median(rates).round(), "build_secs": build_secs.round(),
               "dropping_s": part(|r| r.dropping), "folding_s": part(|r| r.folding),
               "writing_back_s": part(|r| r.writing_back),
               "committing_s": part(|r| r.committing),
               "rss_before_mib": rss_before.map(peak_rss::mib),
               "peak_rss_mib": peak_rss::high_water().map(peak_rss::mib)})
    );
    Ok(())
}

/// The process's peak resident memory over a stretch of work (Linux: `VmHWM`, reset
/// through `/proc/self/clear_refs`); `None` where the kernel does not say.
pub(crate) mod peak_rss {
    /// Resets the high-water mark to the memory resident now, and returns that (KiB).
    pub fn reset() -> Option<u64> {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        status_kib("VmRSS:")
    }

    /// The most memory resident since the last [`reset`] (KiB).
    pub fn high_water() -> Option<u64> {
        status_kib("VmHWM:")
    }

    pub fn mib(kib: u64) -> f64 {
        (kib as f64 / 1024.0 * 10.0).round() / 10.0
    }

    fn status_kib(field: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        status_field_kib(&status, field)
    }

    /// A `/proc/<pid>/status` field given in kB (`VmRSS:`, `VmHWM:`, ...), from its text.
    pub fn status_field_kib(status: &str, field: &str) -> Option<u64> {
        let line = status.lines().find_map(|l| l.strip_prefix(field))?;
        line.split_whitespace().next()?.parse().ok()
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn submit(threads: usize, seconds: u64, per_thread: Option<usize>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bench = Bench::open(Some(&dir.path().join("ledger.redb")));
    let coins = bench.fund(threads);
    let per_thread = per_thread.unwrap_or((40_000 * seconds as usize).div_ceil(threads).max(8));
    let chains: Vec<Vec<Transaction>> = coins
        .par_iter()
        .map(|coin| signed_chain(*coin, per_thread))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let latencies: Vec<(Vec<Duration>, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = chains
            .into_iter()
            .map(|chain| {
                let engine = bench.engine.clone();
                s.spawn(move || chain_submitter(&engine, chain, deadline))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let exhausted = latencies.iter().filter(|(_, ran_out)| *ran_out).count();
    let mut all: Vec<Duration> = latencies.into_iter().flat_map(|(l, _)| l).collect();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{}",
        json!({"bench": "submit_durable", "threads": threads, "txs": all.len(),
               "tx_per_s": (all.len() as f64 / elapsed).round(),
               "p50_ms": pct(0.50), "p99_ms": pct(0.99),
               "presigned_per_thread": per_thread, "threads_out_of_txs": exhausted})
    );
    Ok(())
}

/// `n` transactions each spending the previous one's output back to the same key (an
/// unconfirmed chain), signed up front.
fn signed_chain(coin: (engine::OutPoint, u64, u64), n: usize) -> Vec<Transaction> {
    let key = Bench::key(coin.2);
    let (mut op, amount) = (coin.0, coin.1);
    (0..n)
        .map(|_| {
            let tx = key.spend(&[op], &[(key.address(), amount)]);
            op = engine::testkit::outpoint(tx.txid(), 0);
            tx
        })
        .collect()
}

/// Submits a chain in order until the deadline, timing each durable acknowledgement;
/// also says whether the chain ran out before the deadline.
fn chain_submitter(
    engine: &engine::Engine,
    chain: Vec<Transaction>,
    deadline: Instant,
) -> (Vec<Duration>, bool) {
    let mut out = Vec::new();
    for tx in chain {
        if Instant::now() >= deadline {
            return (out, false);
        }
        let t0 = Instant::now();
        engine.submit_tx(tx).expect("submit");
        out.push(t0.elapsed());
    }
    (out, Instant::now() < deadline)
}
