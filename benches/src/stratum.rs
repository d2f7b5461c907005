//! `stratum-load`: many concurrent Stratum connections against a spawned node, each
//! submitting shares at the rate vardiff aims for (one per `--share-seconds`), then new
//! tips mined through the HTTP API while they work. Reports shares/s handled, submit →
//! reply latency, the node's CPU and RSS over the share phase, and how long a new tip
//! takes to reach every connection as `mining.notify` with `clean_jobs`.
//!
//! The node runs at a network difficulty (`1e00ffff`, ~16.7 M hashes a block) far above
//! the share difficulty (1e-8, ~43 hashes a share), so the clients' shares cost them
//! almost nothing and essentially never are blocks; the tips come from this harness.

use crate::http::{ms, node_bin, pct, runtime, solve_template};
use anyhow::{bail, ensure, Context, Result};
use engine::hash::Hash256;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(clap::Args, Clone, Debug)]
pub struct StratumArgs {
    /// Concurrent Stratum connections.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds between shares per connection (the node's --stratum-share-seconds).
    #[arg(long, default_value_t = 10.0)]
    pub share_seconds: f64,
    /// Length of the share phase.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// New tips mined after the share phase (shares keep flowing meanwhile).
    #[arg(long, default_value_t = 5)]
    pub tips: usize,
    /// The node binary (default: bitplace-node next to this executable).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Runtime worker threads of this client.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
}

struct Spawned {
    node: testnode::Started,
    _dir: tempfile::TempDir,
    base: String,
    stratum: String,
}

fn spawn(a: &StratumArgs) -> Result<Spawned> {
    let bin = node_bin(a.node_bin.as_ref())?;
    let dir = tempfile::tempdir()?;
    let spec =
        testnode::NodeSpec::new(&bin, &dir.path().join("data"), &dir.path().join("node.log"))
            .args(["--network", "dev"])
            .args(["--difficulty", "1e00ffff", "--rate-limit", "0"])
            .args(["--stratum-difficulty", "1e-8"])
            .args(["--stratum-share-seconds", &a.share_seconds.to_string()])
            .args([
                "--stratum-max-per-ip",
                "0",
                "--stratum-max-connections",
                "0",
            ])
            .env("RUST_LOG", "warn")
            .with_stratum();
    let node = spec.start()?;
    let stratum = node
        .bound
        .stratum
        .context("no Stratum address in the ready line")?;
    Ok(Spawned {
        base: node.bound.url(),
        stratum: stratum.to_string(),
        node,
        _dir: dir,
    })
}

/// CPU seconds (user + system) and resident memory of a process, from /proc.
fn proc_usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = crate::peak_rss::status_field_kib(&status, "VmRSS:").unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Ok((ticks / 100.0, rss_kb * 1024))
}

/// What all connections record.
#[derive(Default)]
struct Record {
    /// Submit → reply latencies of accepted shares.
    latencies: Mutex<Vec<Duration>>,
    accepted: AtomicU64,
    rejected: AtomicU64,
    /// Stratum prevhash → arrival of its clean job, one per connection.
    clean_jobs: Mutex<HashMap<String, Vec<Instant>>>,
    ready: AtomicUsize,
}

/// The current job of a connection, parsed once.
struct Job {
    id: String,
    header: [u8; 80],
    ntime: String,
}

fn unhex(v: &Value) -> Result<Vec<u8>> {
    Ok(hex::decode(v.as_str().context("hex string")?)?)
}

fn parse_job(n: &Value, en1: &[u8], en2: &[u8]) -> Result<Job> {
    let coinbase = [unhex(&n[2])?, en1.to_vec(), en2.to_vec(), unhex(&n[3])?].concat();
    let mut root = Hash256::sha256d(&coinbase).0;
    for b in n[4].as_array().context("branch")? {
        root = Hash256::sha256d(&[root.to_vec(), unhex(b)?].concat()).0;
    }
    let word =
        |v: &Value| -> Result<u32> { Ok(u32::from_str_radix(v.as_str().context("word")?, 16)?) };
    let prev: Vec<u8> = unhex(&n[1])?
        .chunks(4)
        .flat_map(|w| w.iter().rev().copied().collect::<Vec<_>>())
        .collect();
    let header = [
        word(&n[5])?.to_le_bytes().to_vec(),
        prev,
        root.to_vec(),
        word(&n[7])?.to_le_bytes().to_vec(),
        word(&n[6])?.to_le_bytes().to_vec(),
        vec![0; 4],
    ]
    .concat();
    Ok(Job {
        id: n[0].as_str().context("job id")?.to_string(),
        header: header
            .try_into()
            .map_err(|_| anyhow::anyhow!("header size"))?,
        ntime: n[7].as_str().context("ntime")?.to_string(),
    })
}

/// A nonce whose hash meets share difficulty `d` (from `start`).
fn find_share(job: &Job, d: f64, start: u32) -> u32 {
    let target = 65535.0 * 2f64.powi(208) / d;
    let mut h = job.header;
    let mut nonce = start;
    loop {
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        let hash = Hash256::sha256d(&h);
        let v = hash
            .0
            .iter()
            .rev()
            .fold(0.0f64, |acc, b| acc * 256.0 + *b as f64);
        if v <= target {
            return nonce;
        }
        nonce = nonce.wrapping_add(1);
    }
}

/// One miner: subscribe, authorize, then a share every `share_secs` (random phase).
async fn connection(
    addr: String,
    worker: String,
    share_secs: f64,
    rec: Arc<Record>,
    phase: f64,
) -> Result<()> {
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let req = |id: u64, method: &str, params: Value| {
        json!({"id": id, "method": method, "params": params}).to_string() + "\n"
    };
    wr.write_all(req(1, "mining.subscribe", json!(["bench/1"])).as_bytes())
        .await?;
    wr.write_all(req(2, "mining.authorize", json!([worker, "x"])).as_bytes())
        .await?;
    let en2 = [0u8, 0, 0, 1];
    let (mut en1, mut difficulty, mut job) = (Vec::new(), 1.0, None::<Job>);
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let (mut next_id, mut nonce) = (10u64, 0u32);
    let mut timer = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs_f64(share_secs * phase),
        Duration::from_secs_f64(share_secs),
    );
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { bail!("server closed") };
                let now = Instant::now();
                let msg: Value = serde_json::from_str(&line)?;
                match msg["method"].as_str() {
                    Some("mining.set_difficulty") => difficulty = msg["params"][0].as_f64().context("difficulty")?,
                    Some("mining.notify") => {
                        let p = &msg["params"];
                        if p[8] == true {
                            let first = job.is_none();
                            rec.clean_jobs.lock().unwrap().entry(p[1].as_str().unwrap_or("").to_string()).or_default().push(now);
                            if first {
                                rec.ready.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        job = Some(parse_job(p, &en1, &en2)?);
                    }
                    Some(_) => {}
                    None => match msg["id"].as_u64() {
                        Some(1) => en1 = unhex(&msg["result"][1])?,
                        Some(2) => ensure!(msg["result"] == true, "authorize: {msg}"),
                        Some(id) => {
                            if let Some(t) = sent.remove(&id) {
                                if msg["result"] == true {
                                    rec.accepted.fetch_add(1, Ordering::Relaxed);
                                    rec.latencies.lock().unwrap().push(now - t);
                                } else {
                                    rec.rejected.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        None => {}
                    },
                }
            }
            _ = timer.tick() => {
                let Some(j) = &job else { continue };
                let n = find_share(j, difficulty, nonce);
                nonce = n.wrapping_add(1);
                next_id += 1;
                let params = json!([worker, j.id, hex::encode(en2), j.ntime, format!("{n:08x}")]);
                sent.insert(next_id, Instant::now());
                wr.write_all(req(next_id, "mining.submit", params).as_bytes()).await?;
            }
        }
    }
}

pub fn stratum_load(a: StratumArgs) -> Result<()> {
    runtime(a.client_threads)?.block_on(stratum_load_async(a))
}

async fn stratum_load_async(a: StratumArgs) -> Result<()> {
    let node = spawn(&a)?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{}/healthz", node.base))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        ensure!(Instant::now() < deadline, "node did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rec = Arc::new(Record::default());
    let miner = engine::testkit::TestKey::new(4242).address();
    let mut tasks = Vec::new();
    for i in 0..a.connections {
        let (addr, rec) = (node.stratum.clone(), rec.clone());
        let worker = format!("{miner}.rig{i}");
        let phase = (i as f64 + 0.5) / a.connections as f64;
        let share_secs = a.share_seconds;
        tasks.push(tokio::spawn(async move {
            if let Err(e) = connection(addr, worker, share_secs, rec, phase).await {
                eprintln!("connection {i}: {e:#}");
            }
        }));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while rec.ready.load(Ordering::Relaxed) < a.connections {
        ensure!(
            Instant::now() < deadline,
            "only {} connections got a job",
            rec.ready.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Share phase: everything submitted and answered in the window counts.
    let pid = node.node.child.0.id();
    let (cpu0, _) = proc_usage(pid)?;
    let (acc0, t0) = (rec.accepted.load(Ordering::Relaxed), Instant::now());
    rec.latencies.lock().unwrap().clear();
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(a.seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max = rss_max.max(proc_usage(pid)?.1);
    }
    let window = t0.elapsed().as_secs_f64();
    let (cpu1, rss) = proc_usage(pid)?;
    let accepted = rec.accepted.load(Ordering::Relaxed) - acc0;
    let mut lat = std::mem::take(&mut *rec.latencies.lock().unwrap());
    lat.sort();
    ensure!(!lat.is_empty(), "no share answered");

    // Tips: mine through the HTTP API, time each connection's clean job.
    let mut tip_from_submit = Vec::new();
    let mut tip_from_ack = Vec::new();
    let mut missing = 0;
    for _ in 0..a.tips {
        let t: Value = http
            .get(format!("{}/v1/mining/template?address={miner}", node.base))
            .send()
            .await?
            .json()
            .await?;
        let body = tokio::task::spawn_blocking(move || solve_template(&t)).await??;
        let sent = Instant::now();
        let r: Value = http
            .post(format!("{}/v1/mining/submit", node.base))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        let acked = Instant::now();
        ensure!(r["accepted"] == true, "tip not accepted: {r}");
        let hash = Hash256::from_display_hex(r["hash"].as_str().context("hash")?)?;
        let key = stratum_prevhash(&hash);
        let wait = Instant::now() + Duration::from_secs(10);
        let arrivals = loop {
            let n = rec.clean_jobs.lock().unwrap().get(&key).map_or(0, Vec::len);
            if n >= a.connections || Instant::now() > wait {
                break rec
                    .clean_jobs
                    .lock()
                    .unwrap()
                    .remove(&key)
                    .unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        missing += a.connections - arrivals.len().min(a.connections);
        for at in arrivals {
            tip_from_submit.push(at.saturating_duration_since(sent));
            tip_from_ack.push(at.saturating_duration_since(acked));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tip_from_submit.sort();
    tip_from_ack.sort();
    ensure!(!tip_from_submit.is_empty(), "no clean job arrived");
    for t in &tasks {
        t.abort();
    }
    println!(
        "{}",
        json!({"bench": "stratum_load", "connections": a.connections,
               "share_seconds": a.share_seconds, "window_s": (window * 10.0).round() / 10.0,
               "shares_accepted": accepted, "shares_rejected": rec.rejected.load(Ordering::Relaxed),
               "shares_per_s": (accepted as f64 / window).round(),
               "submit_reply_p50_ms": ms(pct(&lat, 0.50)), "submit_reply_p99_ms": ms(pct(&lat, 0.99)),
               "submit_reply_max_ms": ms(*lat.last().unwrap()),
               "node_cpu_percent_of_one_core": ((cpu1 - cpu0) / window * 1000.0).round() / 10.0,
               "node_rss_mib": (rss as f64 / 1048576.0 * 10.0).round() / 10.0,
               "node_rss_max_mib": (rss_max.max(rss) as f64 / 1048576.0 * 10.0).round() / 10.0,
               "tips": a.tips, "tip_deliveries": tip_from_submit.len(), "tip_missing": missing,
               "tip_notify_p50_ms": ms(pct(&tip_from_submit, 0.50)),
               "tip_notify_p99_ms": ms(pct(&tip_from_submit, 0.99)),
               "tip_measured_from": "HTTP submit sent (includes validating and committing the block)",
               "tip_after_ack_p50_ms": ms(pct(&tip_from_ack, 0.50)),
               "tip_after_ack_p99_ms": ms(pct(&tip_from_ack, 0.99)),
               "client_threads": a.client_threads})
    );
    Ok(())
}

fn stratum_prevhash(hash: &Hash256) -> String {
    let mut b = hash.0;
    for w in b.chunks_exact_mut(4) {
        w.reverse();
    }
    hex::encode(b)
}
