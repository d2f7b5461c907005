//! The work client against a small fake node speaking docs/API.md, and its parsers.

mod common;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use consensus::hash::Hash256;
use consensus::merkle::{coinbase_branch, merkle_root};
use miner_gpu::client::{
    self, job_from_template, parse_submit, ClientError, MinerConfig, SseParser, Submission,
    SubmitOutcome, Template,
};
use miner_gpu::{CpuBackend, Kernel, SearchBackend};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADDRESS: &str = "bp1qtestaddress";

/// A fake node: one job per height, a target it can switch between easy and impossible,
/// submissions checked with the engine's own merkle and hash code.
struct Node {
    height: Mutex<u64>,
    /// Top 32 bits of the target (as a little-endian number) for new templates.
    target_top: Mutex<u32>,
    work: tokio::sync::broadcast::Sender<String>,
    template_fetches: AtomicU64,
    accepted: Mutex<Vec<Submission>>,
}

fn other_txids(height: u64) -> Vec<Hash256> {
    (0..3u64)
        .map(|i| Hash256::sha256d(&(height * 10 + i).to_le_bytes()))
        .collect()
}

fn coinb1(height: u64) -> Vec<u8> {
    format!("coinbase-{height}-").into_bytes()
}

const COINB2: &[u8] = b"-pay-to-miner";

impl Node {
    fn new() -> Arc<Node> {
        Arc::new(Node {
            height: Mutex::new(0),
            target_top: Mutex::new(0x0000_7fff),
            work: tokio::sync::broadcast::channel(16).0,
            template_fetches: AtomicU64::new(0),
            accepted: Mutex::new(Vec::new()),
        })
    }

    fn target(&self) -> [u8; 32] {
        common::target_with_top(*self.target_top.lock().unwrap())
    }

    fn header(&self, height: u64, merkle: Hash256, time: u32, nonce: u32) -> [u8; 80] {
        let mut h = [0u8; 80];
        h[0..4].copy_from_slice(&1u32.to_le_bytes());
        h[4..36].copy_from_slice(&Hash256::sha256d(&height.to_le_bytes()).0);
        h[36..68].copy_from_slice(&merkle.0);
        h[68..72].copy_from_slice(&time.to_le_bytes());
        h[72..76].copy_from_slice(&0x1f00ffffu32.to_le_bytes());
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        h
    }

    fn template(&self) -> Template {
        let height = *self.height.lock().unwrap();
        let mut target = self.target();
        target.reverse();
        Template {
            job_id: format!("job-{height}-{:08x}", *self.target_top.lock().unwrap()),
            height,
            version: 1,
            prev_hash: Hash256::sha256d(&height.to_le_bytes()).to_string(),
            bits: "1f00ffff".into(),
            time: 1_700_000_000,
            target: hex::encode(target),
            header: hex::encode(self.header(height, Hash256::ZERO, 1_700_000_000, 0)),
            coinb1: hex::encode(coinb1(height)),
            coinb2: hex::encode(COINB2),
            extra_nonce_size: 4,
            merkle_branch: coinbase_branch(&other_txids(height))
                .iter()
                .map(|h| hex::encode(h.0))
                .collect(),
            tx_count: 4,
        }
    }

    /// Announces new work, as the real node does after a tip or mempool change.
    fn announce(&self, reason: &str) {
        let height = *self.height.lock().unwrap();
        let _ = self.work.send(
            serde_json::json!({"height": height, "prev_hash": "00", "reason": reason}).to_string(),
        );
    }
}

async fn template(
    State(node): State<Arc<Node>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    assert_eq!(q.get("address").map(String::as_str), Some(ADDRESS));
    node.template_fetches.fetch_add(1, Ordering::SeqCst);
    Json(node.template())
}

async fn submit(State(node): State<Arc<Node>>, Json(s): Json<Submission>) -> impl IntoResponse {
    let current = node.template();
    if s.job_id != current.job_id {
        return (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": "stale_job", "message": "old job"})),
        );
    }
    // Rebuild the block the way a node would: coinbase txid, full merkle tree, header.
    let height = current.height;
    let mut coinbase = coinb1(height);
    coinbase.extend(hex::decode(&s.extra_nonce).unwrap());
    coinbase.extend_from_slice(COINB2);
    let mut leaves = vec![Hash256::sha256d(&coinbase)];
    leaves.extend(other_txids(height));
    let root = merkle_root(&leaves).0;
    let header = node.header(height, root, s.time, s.nonce);
    let hash = Hash256::sha256d(&header);
    let mut t = node.target();
    let ok = {
        let mut h = hash.0;
        h.reverse();
        t.reverse();
        h <= t
    };
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "high_hash", "message": "no"})),
        );
    }
    node.accepted.lock().unwrap().push(s);
    *node.height.lock().unwrap() += 1;
    node.announce("tip");
    (
        StatusCode::OK,
        Json(serde_json::json!({"accepted": true, "hash": hash.to_string(), "height": height})),
    )
}

async fn events(
    State(node): State<Arc<Node>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    assert_eq!(q.get("topics").map(String::as_str), Some("work"));
    let rx = node.work.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(data) => {
                    return Some((
                        Ok::<_, std::convert::Infallible>(
                            Event::default().event("work").data(data),
                        ),
                        rx,
                    ))
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn serve(node: Arc<Node>, listener: tokio::net::TcpListener) {
    let app = Router::new()
        .route("/v1/mining/template", get(template))
        .route("/v1/mining/submit", post(submit))
        .route("/v1/events", get(events))
        .with_state(node);
    axum::serve(listener, app).await.unwrap();
}

async fn start_node() -> (Arc<Node>, String) {
    let node = Node::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(node.clone(), listener));
    (node, url)
}

fn config(url: &str, blocks: u64) -> MinerConfig {
    MinerConfig {
        node: url.to_string(),
        address: ADDRESS.into(),
        blocks: Some(blocks),
        status_every: Duration::from_millis(100),
    }
}

fn cpu() -> Vec<Box<dyn SearchBackend>> {
    vec![Box::new(CpuBackend::with_kernel(Kernel::detect(), 1))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mines_blocks_until_the_count_and_exits() {
    let (node, url) = start_node().await;
    let stats = tokio::time::timeout(
        Duration::from_secs(60),
        client::mine(config(&url, 3), cpu(), |_| {}),
    )
    .await
    .expect("finished in time")
    .expect("mined");
    assert_eq!(stats.accepted, 3);
    assert_eq!(stats.rejected, 0);
    assert_eq!(*node.height.lock().unwrap(), 3);
    let accepted = node.accepted.lock().unwrap();
    let jobs: Vec<&str> = accepted.iter().map(|s| s.job_id.as_str()).collect();
    assert_eq!(jobs, ["job-0-00007fff", "job-1-00007fff", "job-2-00007fff"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_to_new_work_when_announced() {
    let (node, url) = start_node().await;
    // The first job cannot be solved (target zero): only a `work` event can unstick it.
    *node.target_top.lock().unwrap() = 0;
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r2 = reports.clone();
    let miner = tokio::spawn(client::mine(config(&url, 1), cpu(), move |r| {
        r2.lock().unwrap().push(serde_json::to_value(&r).unwrap())
    }));
    // Wait until the miner has the first job and is hashing it.
    for _ in 0..100 {
        if node.template_fetches.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        node.template_fetches.load(Ordering::SeqCst),
        1,
        "no polling"
    );
    *node.target_top.lock().unwrap() = 0x0000_7fff;
    node.announce("mempool");
    let stats = tokio::time::timeout(Duration::from_secs(60), miner)
        .await
        .expect("finished in time")
        .unwrap()
        .unwrap();
    assert_eq!(stats.accepted, 1);
    assert_eq!(node.accepted.lock().unwrap()[0].job_id, "job-0-00007fff");
    assert_eq!(node.template_fetches.load(Ordering::SeqCst), 2);
    let reports = reports.lock().unwrap();
    assert!(reports
        .iter()
        .any(|r| r["type"] == "job" && r["reason"] == "mempool"));
    assert!(reports
        .iter()
        .any(|r| r["type"] == "status" && r["hashes_per_second"].as_f64().unwrap() > 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_backoff_when_the_node_comes_up_late() {
    // Reserve a port, release it, start the miner, then bring the node up on it.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{addr}");
    let disconnects = Arc::new(AtomicU64::new(0));
    let d2 = disconnects.clone();
    let miner = tokio::spawn(client::mine(config(&url, 1), cpu(), move |r| {
        if let client::Report::Disconnected { .. } = r {
            d2.fetch_add(1, Ordering::SeqCst);
        }
    }));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(disconnects.load(Ordering::SeqCst) >= 1);
    let node = Node::new();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(serve(node.clone(), listener));
    let stats = tokio::time::timeout(Duration::from_secs(60), miner)
        .await
        .expect("finished in time")
        .unwrap()
        .unwrap();
    assert_eq!(stats.accepted, 1);
}

#[test]
fn job_merkle_root_matches_the_engine_tree() {
    let node = Node::new();
    let job = job_from_template(&node.template()).unwrap();
    for n in [0u64, 1, 0xdead_beef] {
        let en = job.extranonce2_bytes(n);
        assert_eq!(en.len(), 4);
        let mut coinbase = coinb1(0);
        coinbase.extend_from_slice(&en);
        coinbase.extend_from_slice(COINB2);
        let mut leaves = vec![Hash256::sha256d(&coinbase)];
        leaves.extend(other_txids(0));
        let root = merkle_root(&leaves).0;
        assert_eq!(job.merkle_root(n), root);
        let roll = job.roll(n, Some(1_700_000_000)).unwrap();
        assert_eq!(roll.extranonce2, n, "no version rolling over HTTP");
        let work = job.work(&roll);
        assert_eq!(work.header[36..68], root.0);
        // Time rolls forward but stays within the template's time + 2 h.
        assert_eq!(roll.time, 1_700_000_000 + 7200, "now is long past 2023");
        assert_eq!(work.header[68..72], roll.time.to_le_bytes());
        // Everything else is the template's header.
        let template_header = hex::decode(node.template().header).unwrap();
        assert_eq!(work.header[..36], template_header[..36]);
        assert_eq!(work.header[72..76], template_header[72..76]);
    }
    assert_eq!(job.roll(1u64 << 32, None), None, "4 bytes of extra nonce");
}

#[test]
fn bad_templates_are_rejected() {
    let node = Node::new();
    let mut t = node.template();
    t.coinb1 = "zz".into();
    assert!(job_from_template(&t).is_err());
    let mut t = node.template();
    t.header = "00".into();
    assert!(job_from_template(&t).is_err());
    let mut t = node.template();
    t.merkle_branch = vec!["00".into()];
    assert!(job_from_template(&t).is_err());
}

/// A node that answers every template request with `status` and `body`.
async fn refusing_node(status: u16, body: &'static str) -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let app = Router::new()
        .route(
            "/v1/mining/template",
            get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                async move { (StatusCode::from_u16(status).unwrap(), body) }
            }),
        )
        .route(
            "/v1/events",
            get(|| async {
                let s = futures_util::stream::pending::<Result<Event, std::convert::Infallible>>();
                Sse::new(s)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payout_address_ends_the_miner_at_once() {
    let (url, hits) = refusing_node(
        400,
        r#"{"error":"bad_address","message":"`bp1qtestaddress`: invalid checksum"}"#,
    )
    .await;
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        client::mine(config(&url, 1), cpu(), |_| {}),
    )
    .await
    .expect("gave up within seconds")
    .expect_err("a refusal is an error");
    assert!(err.is_permanent(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("400") && msg.contains("bad_address: "),
        "{msg}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_a_node_ends_the_miner_but_429_is_retried() {
    // A 404 (say, another web server on that port) will not change by retrying.
    let (url, _) = refusing_node(404, "not found").await;
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        client::mine(config(&url, 1), cpu(), |_| {}),
    )
    .await
    .expect("gave up within seconds")
    .expect_err("an error");
    assert!(
        matches!(err, ClientError::Status { status: 404, .. }),
        "{err}"
    );
    // Too many requests: back off and try again.
    let (url, hits) = refusing_node(429, r#"{"error":"rate_limited","message":"slow"}"#).await;
    let miner = tokio::spawn(client::mine(config(&url, 1), cpu(), |_| {}));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!miner.is_finished(), "429 is not permanent");
    assert!(hits.load(Ordering::SeqCst) >= 2, "retried");
    miner.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_url_is_refused_before_connecting() {
    for url in ["https://127.0.0.1:1", "ftp://node", "http://no spaces"] {
        let err = client::mine(config(url, 1), cpu(), |_| {})
            .await
            .expect_err(url);
        assert!(err.is_permanent(), "{url}: {err}");
        assert!(matches!(err, ClientError::Url(_)), "{url}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_mine_together_and_report_each_rate() {
    let (node, url) = start_node().await;
    // Blocks 16x harder than the default (~2^21 hashes): at the default, one device
    // could find all four before the other, starved on a loaded machine, reported once.
    *node.target_top.lock().unwrap() = 0x0000_07ff;
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r2 = reports.clone();
    let devices: Vec<Box<dyn SearchBackend>> = vec![
        Box::new(CpuBackend::with_kernel(Kernel::detect(), 1)),
        Box::new(CpuBackend::with_kernel(Kernel::detect(), 1)),
    ];
    let mut cfg = config(&url, 4);
    cfg.status_every = Duration::from_millis(50);
    let stats = tokio::time::timeout(
        Duration::from_secs(60),
        client::mine(cfg, devices, move |r| {
            r2.lock().unwrap().push(serde_json::to_value(&r).unwrap())
        }),
    )
    .await
    .expect("finished in time")
    .expect("mined");
    assert_eq!((stats.accepted, stats.blocks, stats.stale), (4, 4, 0));
    assert_eq!(*node.height.lock().unwrap(), 4);
    let reports = reports.lock().unwrap();
    let status: Vec<&serde_json::Value> =
        reports.iter().filter(|r| r["type"] == "status").collect();
    assert!(!status.is_empty());
    for s in &status {
        let devs = s["devices"].as_array().unwrap();
        assert_eq!(devs.len(), 2, "{s}");
        let sum: f64 = devs
            .iter()
            .map(|d| d["hashes_per_second"].as_f64().unwrap())
            .sum();
        assert!(
            (sum - s["hashes_per_second"].as_f64().unwrap()).abs() < 1.0,
            "{s}"
        );
    }
    // Both devices searched (each has a non-zero rate in some report).
    for i in 0..2 {
        assert!(
            status
                .iter()
                .any(|s| s["devices"][i]["hashes_per_second"].as_f64().unwrap() > 0.0),
            "device {i} never hashed"
        );
    }
}

#[test]
fn sse_parser_handles_split_chunks_comments_and_multiline_data() {
    let stream = b": keep-alive\n\nid: 7\r\nevent: work\r\ndata: {\"height\":1,\r\ndata: \"reason\":\"tip\"}\r\n\r\nevent: block_connected\ndata: x\n\n";
    for split in 0..stream.len() {
        let mut p = SseParser::default();
        let mut events = p.push(&stream[..split]);
        events.extend(p.push(&stream[split..]));
        assert_eq!(events.len(), 2, "split at {split}");
        assert_eq!(events[0].event, "work");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].data, "{\"height\":1,\n\"reason\":\"tip\"}");
        assert_eq!(events[1].event, "block_connected");
    }
}

#[test]
fn submit_responses_are_classified() {
    use serde_json::json;
    assert_eq!(
        parse_submit(200, &json!({"accepted": true, "hash": "00ab", "height": 5})),
        SubmitOutcome::Accepted {
            hash: "00ab".into(),
            height: 5
        }
    );
    assert_eq!(
        parse_submit(409, &json!({"error": "stale_job"})),
        SubmitOutcome::Stale
    );
    assert_eq!(
        parse_submit(400, &json!({"error": "high_hash", "message": "x"})),
        SubmitOutcome::Rejected("high_hash".into())
    );
    assert_eq!(
        parse_submit(500, &serde_json::Value::Null),
        SubmitOutcome::Rejected("http_500".into())
    );
}
