//! The Stratum server of the real `bitplace-node` against a CPU miner written here from
//! the Stratum V1 spec (CI cannot download cpuminer): at a network difficulty far above
//! the miner's reach, vardiff still gives it shares every second or so, and the node's
//! per-worker figures (`/v1/mining/workers`, the `workers` push event, the metrics)
//! agree with the miner's own.

use engine::hash::Hash256;
use engine::testkit::TestKey;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Starts the node with Stratum on; returns it (killed on drop), its base URL and the
/// Stratum address. Its log lives in `dir`, beside the data directory.
fn start_node(dir: &std::path::Path, args: &[&str]) -> (testnode::NodeProcess, String, String) {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_bitplace-node"));
    let spec = testnode::NodeProcess::spec(bin, dir)
        .args(args)
        .with_stratum();
    let node = testnode::NodeProcess::launch(&spec);
    let stratum = node.bound.stratum.expect("stratum bound").to_string();
    let base = node.url.clone();
    (node, base, stratum)
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// The work the hashing thread searches: a header (nonce 0) per extranonce2, and the
/// share target as a float (diff1 / difficulty), as cpuminer computes it.
#[derive(Clone)]
struct Work {
    generation: u64,
    job_id: String,
    notify: Value,
    en1: Vec<u8>,
    target: f64,
}

impl Work {
    fn header(&self, en2: &[u8]) -> [u8; 80] {
        let n = &self.notify;
        let coinbase = [unhex(&n[2]), self.en1.clone(), en2.to_vec(), unhex(&n[3])].concat();
        let mut root = Hash256::sha256d(&coinbase).0;
        for b in n[4].as_array().unwrap() {
            root = Hash256::sha256d(&[root.to_vec(), unhex(b)].concat()).0;
        }
        let word = |v: &Value| u32::from_str_radix(v.as_str().unwrap(), 16).unwrap();
        let prev: Vec<u8> = unhex(&n[1])
            .chunks(4)
            .flat_map(|w| w.iter().rev().copied().collect::<Vec<_>>())
            .collect();
        let h = [
            word(&n[5]).to_le_bytes().to_vec(),
            prev,
            root.to_vec(),
            word(&n[7]).to_le_bytes().to_vec(),
            word(&n[6]).to_le_bytes().to_vec(),
            vec![0; 4],
        ]
        .concat();
        h.try_into().unwrap()
    }
}

/// A hash as a number (little-endian 256-bit), as a float.
fn value(hash: &Hash256) -> f64 {
    hash.0
        .iter()
        .rev()
        .fold(0.0, |acc, b| acc * 256.0 + *b as f64)
}

fn diff1() -> f64 {
    65535.0 * 2f64.powi(208)
}

/// (job_id, extranonce2, ntime, nonce) of a found share.
type Found = (String, Vec<u8>, String, u32);

/// Hashes the current work until `stop`, sending each share it finds.
fn hash_loop(
    work: Arc<Mutex<Option<Work>>>,
    hashes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    found: mpsc::UnboundedSender<Found>,
) {
    let mut en2 = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let Some(w) = work.lock().unwrap().clone() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        en2 += 1;
        let en2_bytes = en2.to_be_bytes();
        let mut header = w.header(&en2_bytes);
        let mut nonce = 0u32;
        'job: loop {
            for _ in 0..4096 {
                header[76..80].copy_from_slice(&nonce.to_le_bytes());
                let h = Hash256::sha256d(&header);
                if value(&h) <= w.target {
                    let ntime = w.notify[7].as_str().unwrap().to_string();
                    let _ = found.send((w.job_id.clone(), en2_bytes.to_vec(), ntime, nonce));
                }
                nonce = nonce.wrapping_add(1);
            }
            hashes.fetch_add(4096, Ordering::Relaxed);
            let current = work.lock().unwrap().as_ref().map(|x| x.generation);
            if stop.load(Ordering::Relaxed) || current != Some(w.generation) || nonce == 0 {
                break 'job;
            }
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    accepted: u64,
    rejected: u64,
    difficulties: Vec<f64>,
}

/// Runs the miner for `secs`: returns its tally and its own hash rate (hashes over the
/// time since the first job).
async fn mine(stratum: &str, worker: &str, secs: f64) -> (Tally, f64) {
    let stream = tokio::net::TcpStream::connect(stratum).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let send = |id: u64, method: &str, params: Value| {
        json!({"id": id, "method": method, "params": params}).to_string() + "\n"
    };
    wr.write_all(send(1, "mining.subscribe", json!(["spec-miner/1"])).as_bytes())
        .await
        .unwrap();
    wr.write_all(send(2, "mining.authorize", json!([worker, "x"])).as_bytes())
        .await
        .unwrap();
    let work: Arc<Mutex<Option<Work>>> = Arc::default();
    let (hashes, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (found_tx, mut found) = mpsc::unbounded_channel();
    let thread = {
        let (w, h, s) = (work.clone(), hashes.clone(), stop.clone());
        std::thread::spawn(move || hash_loop(w, h, s, found_tx))
    };
    let mut tally = Tally::default();
    let (mut en1, mut difficulty, mut generation) = (Vec::new(), 1.0, 0);
    let mut started = None;
    let mut next_id = 10;
    let mut outstanding = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let msg: Value = serde_json::from_str(&line.unwrap().expect("open")).unwrap();
                match (msg["method"].as_str(), msg["id"].as_u64()) {
                    (Some("mining.set_difficulty"), _) => {
                        difficulty = msg["params"][0].as_f64().unwrap();
                        tally.difficulties.push(difficulty);
                    }
                    (Some("mining.notify"), _) => {
                        generation += 1;
                        started.get_or_insert_with(Instant::now);
                        *work.lock().unwrap() = Some(Work {
                            generation,
                            job_id: msg["params"][0].as_str().unwrap().into(),
                            notify: msg["params"].clone(),
                            en1: en1.clone(),
                            target: diff1() / difficulty,
                        });
                    }
                    (None, Some(1)) => en1 = unhex(&msg["result"][1]),
                    (None, Some(2)) => assert_eq!(msg["result"], true, "{msg}"),
                    (None, Some(_)) if msg["result"] == true => {
                        tally.accepted += 1;
                        outstanding -= 1;
                    }
                    (None, Some(_)) => {
                        tally.rejected += 1;
                        outstanding -= 1;
                    }
                    _ => panic!("unexpected {msg}"),
                }
            }
            Some((job, en2, ntime, nonce)) = found.recv() => {
                next_id += 1;
                let params = json!([worker, job, hex::encode(en2), ntime, format!("{nonce:08x}")]);
                wr.write_all(send(next_id, "mining.submit", params).as_bytes()).await.unwrap();
                outstanding += 1;
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.expect("got a job").elapsed().as_secs_f64();
    thread.join().unwrap();
    let rate = hashes.load(Ordering::Relaxed) as f64 / elapsed;
    // Every share sent gets its answer before the tally is compared with the node's.
    while outstanding > 0 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("answers come")
            .unwrap()
            .expect("open");
        let msg: Value = serde_json::from_str(&line).unwrap();
        if msg["id"].as_u64().is_some_and(|i| i > 10) {
            outstanding -= 1;
            match msg["result"] == true {
                true => tally.accepted += 1,
                false => tally.rejected += 1,
            }
        } else if msg["method"] == "mining.set_difficulty" {
            tally.difficulties.push(msg["params"][0].as_f64().unwrap());
        }
    }
    // Regression (flaky in CI once: the node's difficulty 3x the tally's last): the node
    // answers a share that fills its vardiff window with the reply *and then* a
    // `mining.set_difficulty`; hanging up right after the last reply missed that retarget.
    // Read until the line has been quiet for a moment, so the tally ends with the
    // difficulty the node last sent (the node sends nothing once we are gone).
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await
    {
        let msg: Value = serde_json::from_str(&line).unwrap();
        if msg["method"] == "mining.set_difficulty" {
            tally.difficulties.push(msg["params"][0].as_f64().unwrap());
        }
    }
    (tally, rate)
}

/// The first `workers` event on the push feed whose list satisfies `want`.
async fn workers_event(base: &str, want: impl Fn(&Value) -> bool) -> Value {
    let resp = reqwest::get(format!("{base}/v1/events?topics=workers"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(data) = frame.strip_prefix("event: workers\ndata: ") {
                let list: Value = serde_json::from_str(data.trim()).unwrap();
                if want(&list) {
                    return list;
                }
            }
        }
        assert!(Instant::now() < deadline, "no matching workers event");
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the feed sends")
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cpu_miner_far_below_the_network_difficulty_gets_shares_and_is_accounted() {
    let dir = tempfile::tempdir().unwrap();
    // Difficulty 256: days per block for this miner. Shares aimed at two a second, so
    // the node's estimate rests on ~30 shares (Poisson noise ~20%).
    let args = [
        "--network",
        "dev",
        "--difficulty",
        "1c00ffff",
        "--stratum-difficulty",
        "0.0005",
        "--stratum-share-seconds",
        "0.5",
    ];
    let (_node, base, stratum) = start_node(dir.path(), &args);
    let worker = format!("{}.cpu0", TestKey::new(70).address());

    let before = workers_event(&base, |l| l == &json!([])).await;
    assert_eq!(before, json!([]), "the feed starts with the current list");
    let watch = {
        let (base, worker) = (base.clone(), worker.clone());
        tokio::spawn(async move {
            workers_event(&base, |l| {
                l[0]["worker"] == json!(worker) && l[0]["shares_accepted"].as_u64() > Some(0)
            })
            .await
        })
    };
    let (tally, own_rate) = mine(&stratum, &worker, 15.0).await;
    assert!(
        tally.accepted >= 8,
        "several shares in 15 s at share time 0.5 s: {tally:?} at {own_rate:.0} H/s"
    );
    assert!(
        tally.difficulties.len() >= 2,
        "vardiff retargeted: {tally:?}"
    );

    let list: Value = reqwest::get(format!("{base}/v1/mining/workers"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let w = &list[0];
    assert_eq!(w["worker"], json!(worker), "{list}");
    assert_eq!(w["address"], json!(worker.split('.').next().unwrap()));
    assert_eq!(w["shares_accepted"], json!(tally.accepted), "{w}");
    assert_eq!(w["shares_rejected"], json!(tally.rejected), "{w}");
    assert_eq!(w["blocks"], json!(0));
    assert_eq!(
        w["difficulty"].as_f64(),
        tally.difficulties.last().copied(),
        "{w}"
    );
    for field in ["shares_stale", "last_share_time", "connected_since"] {
        assert!(w[field].is_u64(), "{field}: {w}");
    }
    let rate = w["hashrate"].as_f64().unwrap();
    assert!(
        rate > own_rate / 2.0 && rate < own_rate * 2.0,
        "node says {rate:.0} H/s, the miner {own_rate:.0} H/s: {tally:?}"
    );
    let pushed = tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .expect("a workers event with shares")
        .unwrap();
    assert_eq!(pushed[0]["worker"], json!(worker));

    // The miner hung up: once the server noticed, no open connection and no per-worker
    // series for it (only connected workers get one).
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let m = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains("bitplace_stratum_connections 0") || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(
        line("bitplace_stratum_shares_total{result=\"accepted\"}"),
        tally.accepted as f64
    );
    assert_eq!(line("bitplace_stratum_blocks_total"), 0.0);
    assert_eq!(line("bitplace_stratum_connections"), 0.0);
    assert!(!metrics.contains(&worker), "{metrics}");
}
