//! What a running node tells its operator (issue 14, item 1: a node that connected blocks,
//! admitted transactions and synced from a peer logged three lines in its life). Starts
//! the real binary twice: a dev node that builds a chain and serves Stratum, and a
//! second node that syncs from it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use testnode::NodeProcess;

const NODE: &str = env!("CARGO_BIN_EXE_bitplace-node");

/// The `fields` of every JSON log line (message included).
fn json_lines(node: &NodeProcess) -> Vec<Value> {
    node.log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["fields"].clone())
        .collect()
}

fn with_message(lines: &[Value], prefix: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|f| f["message"].as_str().unwrap_or("").starts_with(prefix))
        .cloned()
        .collect()
}

/// Waits (up to 30 s) until the node has logged a line starting with `prefix`.
fn wait_for(node: &NodeProcess, prefix: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = with_message(&json_lines(node), prefix).pop() {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no `{prefix}` line; the log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Subscribes and authorizes as `worker` over raw Stratum; returns the authorize answer.
fn stratum_authorize(addr: &str, worker: &str) -> Value {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    writeln!(
        w,
        r#"{{"id":1,"method":"mining.subscribe","params":["logtest/1"]}}"#
    )
    .unwrap();
    writeln!(
        w,
        r#"{{"id":2,"method":"mining.authorize","params":["{worker}","x"]}}"#
    )
    .unwrap();
    for line in BufReader::new(stream).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["id"] == 2 {
            return v;
        }
    }
    panic!("the connection closed before the authorize answer");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_logs_blocks_transactions_requests_peers_sync_and_stratum() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["a", "b"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let debug = [("RUST_LOG", "info,api=debug,engine=debug")];
    let a = NodeProcess::start_with_env(
        NODE.as_ref(),
        &dir.path().join("a"),
        &["--dev", "--log-format", "json", "--stratum", "127.0.0.1:0"],
        &debug,
    );
    let http = reqwest::Client::new();
    // The Pocket demo: 11 blocks and a few payments, through the dev routes.
    let r = http
        .post(format!("{}/api/reset_system", a.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let wallet: Value = http
        .get(format!("{}/wallet/new", a.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let address = wallet["address"].as_str().unwrap().to_string();
    let status: Value = http
        .get(format!("{}/v1/status", a.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let height = status["height"].as_u64().unwrap();
    assert!(height >= 10, "{status}");

    let lines = json_lines(&a);
    // Every block of the chain has its UpdateTip line, the last one naming the tip.
    let tips = with_message(&lines, "UpdateTip");
    let heights: Vec<u64> = tips.iter().map(|t| t["height"].as_u64().unwrap()).collect();
    assert_eq!(heights, (1..=height).collect::<Vec<_>>(), "{tips:?}");
    let last = tips.last().unwrap();
    assert_eq!(last["hash"], status["best_hash"]);
    for field in ["txs", "log2_work", "difficulty", "date", "mempool"] {
        assert!(!last[field].is_null(), "UpdateTip without {field}: {last}");
    }
    assert!(
        !with_message(&lines, "transaction admitted").is_empty(),
        "the demo's payments are admitted at debug: {lines:?}"
    );
    // Requests at debug: method, path, status and time.
    let requests = with_message(&lines, "request");
    let status_req = requests
        .iter()
        .find(|r| r["path"] == "/v1/status")
        .unwrap_or_else(|| panic!("no request line for /v1/status: {requests:?}"));
    assert_eq!(status_req["method"], "GET");
    assert_eq!(status_req["status"], 200);
    assert!(status_req["ms"].as_str().unwrap().parse::<f64>().is_ok());

    // Stratum: said once where it listens, then who connects and authorizes.
    let listening = with_message(&lines, "stratum server listening");
    assert_eq!(listening.len(), 1, "stratum start logged once: {lines:?}");
    let stratum = listening[0]["addr"].as_str().unwrap().to_string();
    let worker = format!("{address}.rig1");
    let answer = stratum_authorize(&stratum, &worker);
    assert_eq!(answer["result"], true, "{answer}");
    let auth = wait_for(&a, "stratum: miner authorized");
    assert_eq!(auth["worker"], worker);
    assert!(!with_message(&json_lines(&a), "stratum: miner connected").is_empty());

    // A second node (text format, not a terminal: no colour codes) syncs from the first.
    let b = NodeProcess::start(
        NODE.as_ref(),
        &dir.path().join("b"),
        &["--dev", "--peer", &a.url],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !b.log().contains("sync: done") {
        assert!(
            Instant::now() < deadline,
            "no sync line; b's log:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = b.log();
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file:\n{log}");
    assert!(log.contains("peer added"), "{log}");
    assert!(log.contains("sync: fetching blocks from peer"), "{log}");
    assert!(
        log.contains(&format!("sync progress: height {height} of {height}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("UpdateTip: new best block at height {height}")),
        "{log}"
    );
}
