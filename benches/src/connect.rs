//! `bitplace-bench connect`: one block of N signed transactions connected durably, next to
//! ed25519-dalek's own verification rates over the same signatures in the same run.
//!
//! With `--from-mempool` the transactions are admitted to the mempool first (not timed),
//! so the block's signatures are found in the engine's signature cache and only the
//! writer's own work remains: the figure to compare with the batch bound is then how far
//! past it the cache takes a block.

use crate::median;
use anyhow::{ensure, Context, Result};
use benchkit::Bench;
use ed25519_dalek::{Signature, VerifyingKey};
use engine::tx::Transaction;
use rayon::prelude::*;
use serde_json::json;
use std::time::Instant;

pub fn connect(n: usize, runs: usize, from_mempool: bool) -> Result<()> {
    let mut rates = Vec::new();
    let mut sample = Vec::new();
    let mut hits = 0;
    let mut cpu = Vec::new();
    let mut stages = Vec::new();
    for _ in 0..runs {
        let (_dir, bench, block) = fresh_block(n)?;
        if from_mempool {
            admit(&bench, &block.txs[1..])?;
        }
        let before = bench.engine.sigcache_stats().hits;
        let timings = bench.engine.block_timings();
        let (start, cpu_start) = (Instant::now(), cpu_ns());
        bench
            .engine
            .submit_block(block.clone())
            .context("connect")?;
        rates.push(n as f64 / start.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu_start, cpu_ns()) {
            cpu.push(b.saturating_sub(a) as f64 / 1e6);
        }
        hits = bench.engine.sigcache_stats().hits - before;
        stages.push(bench.engine.block_timings().since(&timings));
        sample = block.txs[1..].to_vec();
    }
    let (single, batch) = verify_references(&sample);
    let rate = median(rates);
    println!(
        "{}",
        json!({"bench": "connect_block", "txs": n, "from_mempool": from_mempool,
               "tx_per_s": rate.round(),
               "sigcache_hits": hits,
               "breakdown_ms": stage_medians(&stages),
               "connect_cpu_ms": (!cpu.is_empty()).then(|| median(cpu).round()),
               "ref_single_verify_per_s_all_cores": single.round(),
               "ref_batch_verify_per_s_all_cores": batch.round(),
               "ratio_to_batch_bound": (rate / batch * 100.0).round() / 100.0,
               "threads": rayon::current_num_threads()})
    );
    Ok(())
}

/// Each stage's median over the runs, in ms: where a block's connect went (the stages
/// overlap, see [`engine::BlockTimings`]).
fn stage_medians(runs: &[engine::BlockTimings]) -> serde_json::Value {
    let of = |f: fn(&engine::BlockTimings) -> f64| {
        (median(runs.iter().map(f).collect()) * 10.0).round() / 10.0
    };
    json!({"check": of(|t| t.check_ms), "verify": of(|t| t.verify_ms),
           "verify_wait": of(|t| t.verify_wait_ms), "fold": of(|t| t.fold_ms),
           "commit": of(|t| t.commit_ms)})
}

/// A new ledger file with `n` funded outputs and, not yet submitted, the block of `n`
/// transactions spending them.
fn fresh_block(n: usize) -> Result<(tempfile::TempDir, Bench, engine::Block)> {
    let dir = tempfile::tempdir()?;
    let bench = Bench::open(Some(&dir.path().join("ledger.redb")));
    let block = bench.full_block(&bench.fund(n));
    Ok((dir, bench, block))
}

/// The durable connect rate (tx/s) of one block of `n` fresh transactions, once: the
/// reference other benches (sync) set their figure against in the same run.
pub fn connect_rate(n: usize) -> Result<f64> {
    let (_dir, bench, block) = fresh_block(n)?;
    let start = Instant::now();
    bench.engine.submit_block(block).context("connect")?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// CPU time of this process so far, every thread's, in nanoseconds (getrusage: user plus
/// system), or None where that is not available. Why: on a machine with fewer cores than
/// work, the time a block takes hides how much of the machine it used; the cache's
/// saving shows here first. Not /proc/self/task: the writer's helper threads end before
/// the block is answered, and their time would be missed.
fn cpu_ns() -> Option<u64> {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage)
    }?;
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Some(ns(usage.ru_utime) + ns(usage.ru_stime))
}

/// Admits `txs` to the mempool, as relay would have before the block came.
fn admit(bench: &Bench, txs: &[Transaction]) -> Result<()> {
    for r in bench.engine.submit_txs(txs.to_vec()) {
        r.context("admit to the mempool")?;
    }
    ensure!(
        bench.engine.status()?.mempool_size == txs.len() as u64,
        "not every transaction is in the mempool"
    );
    Ok(())
}

/// ed25519-dalek's own rates over the same signatures, on all cores.
fn verify_references(txs: &[Transaction]) -> (f64, f64) {
    let items = benchkit::signature_items(txs);
    let start = Instant::now();
    items
        .par_iter()
        .for_each(|(m, s, k)| k.verify_strict(m, s).unwrap());
    let single = items.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    items.par_chunks(256).for_each(|c| {
        let msgs: Vec<&[u8]> = c.iter().map(|x| &x.0[..]).collect();
        let sigs: Vec<Signature> = c.iter().map(|x| x.1).collect();
        let keys: Vec<VerifyingKey> = c.iter().map(|x| x.2).collect();
        ed25519_dalek::verify_batch(&msgs, &sigs, &keys).unwrap();
    });
    let batch = items.len() as f64 / start.elapsed().as_secs_f64();
    (single, batch)
}
