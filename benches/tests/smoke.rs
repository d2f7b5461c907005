//! The figures BENCHMARKS.md quotes come from `bitplace-bench`: run its engine benches
//! small, so a change that breaks one (or the JSON fields other tools read) fails here
//! rather than in the next session that measures.

use serde_json::Value;
use std::process::Command;

/// Runs `bitplace-bench` with `args`; its last stdout line, as JSON.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_bitplace-bench"))
        .args(args)
        .output()
        .expect("run bitplace-bench");
    assert!(
        out.status.success(),
        "bitplace-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let line = stdout.lines().last().expect("a result line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn positive(v: &Value, field: &str) -> f64 {
    let x = v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} in {v}"));
    assert!(x > 0.0, "{field} = {x} in {v}");
    x
}

/// A rebuild of a small log keeps the UTXO-set hash (the bench checks it) and says where
/// its time and memory went.
#[test]
fn the_rebuild_bench_rebuilds_and_reports_its_parts() {
    let v = bench(&["rebuild", "--txs", "3000", "--runs", "2"]);
    assert!(v["log_txs"].as_u64().unwrap() >= 3000, "{v}");
    positive(&v, "tx_per_s");
    for part in ["folding_s", "writing_back_s", "committing_s"] {
        assert!(v[part].as_f64().is_some(), "{part} in {v}");
    }
    if cfg!(target_os = "linux") {
        let before = positive(&v, "rss_before_mib");
        assert!(positive(&v, "peak_rss_mib") >= before, "{v}");
    }
}

/// A block of transactions the mempool already verified connects with every signature
/// answered by the cache, next to the batch-verify reference of the same run.
#[test]
fn the_connect_bench_from_the_mempool_hits_the_signature_cache() {
    let v = bench(&["connect", "--txs", "600", "--runs", "1", "--from-mempool"]);
    assert_eq!(v["txs"], 600, "{v}");
    assert_eq!(v["sigcache_hits"], 600, "{v}");
    positive(&v, "tx_per_s");
    positive(&v, "ref_batch_verify_per_s_all_cores");
    positive(&v, "ratio_to_batch_bound");
}

/// Two real nodes on loopback: B, started empty with `--peer A`, catches up with A (the
/// bench fails unless B's tip and UTXO-set hash become A's), and the run reports the
/// fields issue 15 names, each next to its in-process reference.
#[test]
fn the_sync_bench_catches_a_second_node_up_and_reports_against_connect() {
    let sibling = std::path::Path::new(env!("CARGO_BIN_EXE_bitplace-bench"));
    let node = testnode::node_bin(sibling);
    let node = node.to_str().expect("a UTF-8 path");
    let v = bench(&[
        "sync",
        "--txs",
        "1200",
        "--block-txs",
        "400",
        "--connect-runs",
        "1",
        "--timeout-secs",
        "120",
        "--node-bin",
        node,
    ]);
    assert_eq!(v["txs"], 1200, "{v}");
    assert!(
        v["chain_txs"].as_u64().unwrap() > 1200,
        "funding blocks too: {v}"
    );
    for field in [
        "tx_per_s",
        "connect_tx_per_s",
        "ratio_to_connect",
        "chain_connect_tx_per_s",
    ] {
        positive(&v, field);
    }
    let (ledger, raw) = (
        positive(&v, "ledger_bytes"),
        positive(&v, "raw_block_bytes"),
    );
    assert!(ledger > raw, "the ledger holds the blocks and more: {v}");
    assert!(v["breakdown"].is_object(), "{v}");
}
