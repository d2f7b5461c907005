//! The work client: takes jobs from a node's mining API (docs/API.md), searches them on a
//! [`SearchBackend`], submits solutions.
//!
//! Push, never polling: the client subscribes to `/v1/events?topics=work` *before* it
//! fetches a template (so no announcement can fall between the two) and fetches a new
//! template only when a `work` event arrives (or after one of its own blocks was
//! accepted). A new job cancels the running search at once ([`SearchControl::cancel`]).
//! When the 32-bit nonce space of a job is exhausted the client rolls extra_nonce2 (and
//! moves `time` up to now, never past the template's time + 2 h) and rebuilds the merkle
//! root from coinb1 ‖ extra_nonce2 ‖ coinb2 and the merkle branch, as Stratum does.

use crate::{MinerError, SearchBackend, SearchControl, Solution, Work};
use consensus::hash::Hash256;
use consensus::merkle::MerkleProof;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Errors of the work client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("bad template from node: {0}")]
    BadTemplate(String),
    #[error("node request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("node answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("event stream closed by the node")]
    StreamClosed,
    #[error(transparent)]
    Miner(#[from] MinerError),
}

/// `GET /v1/mining/template` (docs/API.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub job_id: String,
    pub height: u64,
    pub version: u32,
    pub prev_hash: String,
    pub bits: String,
    pub time: u32,
    pub target: String,
    pub header: String,
    pub coinb1: String,
    pub coinb2: String,
    pub extra_nonce_size: usize,
    pub merkle_branch: Vec<String>,
    #[serde(default)]
    pub tx_count: u64,
}

/// `POST /v1/mining/submit` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub job_id: String,
    pub extra_nonce: String,
    pub time: u32,
    pub nonce: u32,
}

/// What the node said about a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    Accepted {
        hash: String,
        height: u64,
    },
    /// 409 `stale_job`: the job's tip is no longer the best.
    Stale,
    /// Any other refusal, with the node's error code.
    Rejected(String),
}

/// A template decoded into what the search needs.
#[derive(Clone, Debug)]
pub struct Job {
    pub template: Template,
    header: [u8; 80],
    target: [u8; 32],
    coinb1: Vec<u8>,
    coinb2: Vec<u8>,
    branch: Vec<Hash256>,
}

fn unhex(field: &str, s: &str) -> Result<Vec<u8>, ClientError> {
    hex::decode(s).map_err(|_| ClientError::BadTemplate(format!("{field} is not hex")))
}

impl Job {
    pub fn from_template(template: Template) -> Result<Job, ClientError> {
        let work = Work::from_hex(&template.header, &template.target)
            .map_err(|e| ClientError::BadTemplate(e.to_string()))?;
        if template.extra_nonce_size == 0 || template.extra_nonce_size > 8 {
            return Err(ClientError::BadTemplate(format!(
                "extra_nonce_size {} (expected 1..=8)",
                template.extra_nonce_size
            )));
        }
        let branch = template
            .merkle_branch
            .iter()
            .map(|h| {
                let b = unhex("merkle_branch", h)?;
                let arr: [u8; 32] = b.try_into().map_err(|_| {
                    ClientError::BadTemplate("merkle_branch entry is not 32 bytes".into())
                })?;
                Ok(Hash256(arr))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Job {
            header: work.header,
            target: work.target,
            coinb1: unhex("coinb1", &template.coinb1)?,
            coinb2: unhex("coinb2", &template.coinb2)?,
            branch,
            template,
        })
    }

    /// extra_nonce2 number `n` as the `extra_nonce_size` bytes that go into the coinbase
    /// (little-endian, truncated).
    pub fn extra_nonce(&self, n: u64) -> Vec<u8> {
        n.to_le_bytes()[..self.template.extra_nonce_size].to_vec()
    }

    /// The merkle root for an extra_nonce2: the coinbase txid (SHA-256d of
    /// coinb1 ‖ extra_nonce2 ‖ coinb2) folded up the branch (the coinbase is leaf 0).
    pub fn merkle_root(&self, extra_nonce: &[u8]) -> Hash256 {
        let mut coinbase =
            Vec::with_capacity(self.coinb1.len() + extra_nonce.len() + self.coinb2.len());
        coinbase.extend_from_slice(&self.coinb1);
        coinbase.extend_from_slice(extra_nonce);
        coinbase.extend_from_slice(&self.coinb2);
        let txid = Hash256::sha256d(&coinbase);
        MerkleProof {
            index: 0,
            branch: self.branch.clone(),
        }
        .root_for(&txid)
    }

    /// The header to search for extra_nonce2 number `n` and `time`.
    pub fn work(&self, n: u64, time: u32) -> Work {
        let mut header = self.header;
        header[36..68].copy_from_slice(&self.merkle_root(&self.extra_nonce(n)).0);
        header[68..72].copy_from_slice(&time.to_le_bytes());
        Work::new(header, self.target)
    }

    /// The time to use after the nonce space was exhausted: now, but never before the
    /// template's time nor past it + 2 h (the node's future limit).
    pub fn rolled_time(&self, previous: u32) -> u32 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as u32;
        let lo = self.template.time;
        let hi = self.template.time.saturating_add(7200);
        now.max(previous).clamp(lo, hi)
    }
}

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Incremental `text/event-stream` parser: feed it chunks as they arrive (they may split
/// lines or UTF-8 sequences anywhere), get complete events back.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    cur: SseEvent,
    has_data: bool,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                // Blank line: dispatch (an event with neither data nor a name is ignored).
                let ev = std::mem::take(&mut self.cur);
                if self.has_data || !ev.event.is_empty() {
                    out.push(SseEvent {
                        event: if ev.event.is_empty() {
                            "message".into()
                        } else {
                            ev.event
                        },
                        ..ev
                    });
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue; // comment / keep-alive
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (&*line, ""),
            };
            match field {
                "event" => self.cur.event = value.to_string(),
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                "id" => self.cur.id = Some(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

/// Mining-mode settings.
#[derive(Clone, Debug)]
pub struct MinerConfig {
    /// Node base URL, e.g. `http://127.0.0.1:8080`.
    pub node: String,
    /// Payout address (`bp1...`).
    pub address: String,
    /// Stop after this many accepted blocks.
    pub blocks: Option<u64>,
    /// Interval between status reports.
    pub status_every: Duration,
}

/// Counters reported in status lines and returned at the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    /// Height of the job being mined.
    pub height: u64,
    pub hashes: u64,
}

/// What the client tells its caller, for the status line or `--json` logs.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    Status {
        backend: String,
        hashes_per_second: f64,
        #[serde(flatten)]
        stats: Stats,
    },
    Job {
        job_id: String,
        height: u64,
        reason: String,
    },
    Submitted {
        job_id: String,
        nonce: u32,
        hash: String,
        outcome: String,
    },
    Disconnected {
        error: String,
        retry_in_ms: u64,
    },
}

/// A solution found by the search thread, with the job and coinbase it belongs to.
struct Found {
    job: Arc<Job>,
    extra_nonce: u64,
    time: u32,
    solution: Solution,
}

/// What the async side and the search thread share.
struct Shared {
    slot: Mutex<(u64, Option<Arc<Job>>)>,
    cv: Condvar,
    ctl: SearchControl,
    stop: AtomicBool,
}

impl Shared {
    /// Replaces the job (or clears it) and cancels the running search at once.
    fn set_job(&self, job: Option<Arc<Job>>) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.0 += 1;
        slot.1 = job;
        self.ctl.cancel();
        self.cv.notify_all();
    }

    fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        self.set_job(None);
    }
}

fn search_thread(
    shared: Arc<Shared>,
    mut backend: Box<dyn SearchBackend>,
    found: tokio::sync::mpsc::UnboundedSender<Found>,
    errors: tokio::sync::mpsc::UnboundedSender<MinerError>,
) {
    let mut seen = 0u64;
    loop {
        let job = {
            let mut slot = shared.slot.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                if slot.0 != seen {
                    seen = slot.0;
                    if let Some(job) = slot.1.clone() {
                        // Reset under the lock: a newer job's cancel comes after this.
                        shared.ctl.reset_cancel();
                        break job;
                    }
                }
                slot = shared.cv.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
        };
        let mut extra_nonce = 0u64;
        let mut time = job.template.time;
        while !shared.ctl.is_cancelled() {
            let work = job.work(extra_nonce, time);
            let on_found = |solution: Solution| {
                let _ = found.send(Found {
                    job: job.clone(),
                    extra_nonce,
                    time,
                    solution,
                });
                // A solved job is finished: every further winner would be a second block
                // on the same parent, stale once the first is accepted (hashing on meant
                // dozens of stale submissions per block). Wait for the next job, which the
                // client fetches after the node has answered this submission.
                shared.ctl.cancel();
            };
            if let Err(e) = backend.search_with(&work, 0, 1 << 32, &shared.ctl, &on_found) {
                let _ = errors.send(e);
                return;
            }
            // Nonce space exhausted (unless cancelled): next extra_nonce2, fresher time.
            extra_nonce += 1;
            time = job.rolled_time(time);
        }
    }
}

/// The node's HTTP API as the miner uses it.
#[derive(Clone, Debug)]
pub struct NodeClient {
    http: reqwest::Client,
    base: String,
}

impl NodeClient {
    pub fn new(base: &str) -> Result<NodeClient, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(NodeClient {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub async fn template(&self, address: &str) -> Result<Template, ClientError> {
        let resp = self
            .http
            .get(format!(
                "{}/v1/mining/template?address={}",
                self.base,
                url_encode(address)
            ))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                status: status.as_u16(),
                body,
            });
        }
        Ok(resp.json().await?)
    }

    pub async fn submit(&self, s: &Submission) -> Result<SubmitOutcome, ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/mining/submit", self.base))
            .json(s)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        Ok(parse_submit(status.as_u16(), &body))
    }

    /// Opens the SSE stream of `work` events.
    pub async fn work_events(&self) -> Result<reqwest::Response, ClientError> {
        let resp = self
            .http
            .get(format!("{}/v1/events?topics=work", self.base))
            .header("accept", "text/event-stream")
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                status: status.as_u16(),
                body,
            });
        }
        Ok(resp)
    }
}

/// Percent-encodes a query value (addresses are bech32, but never trust input).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Interprets a submit response (status code and JSON body).
pub fn parse_submit(status: u16, body: &serde_json::Value) -> SubmitOutcome {
    let error = body.get("error").and_then(|v| v.as_str()).unwrap_or("");
    if (200..300).contains(&status) && body.get("accepted").and_then(|v| v.as_bool()) == Some(true)
    {
        SubmitOutcome::Accepted {
            hash: body
                .get("hash")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            height: body.get("height").and_then(|v| v.as_u64()).unwrap_or(0),
        }
    } else if status == 409 || error == "stale_job" {
        SubmitOutcome::Stale
    } else if error.is_empty() {
        SubmitOutcome::Rejected(format!("http_{status}"))
    } else {
        SubmitOutcome::Rejected(error.to_string())
    }
}

/// Mines against a node until `cfg.blocks` blocks are accepted (forever without it).
/// Reconnects with exponential backoff (250 ms .. 10 s) whenever the node goes away.
pub async fn mine(
    cfg: MinerConfig,
    backend: Box<dyn SearchBackend>,
    report: impl Fn(Report),
) -> Result<Stats, ClientError> {
    let node = NodeClient::new(&cfg.node)?;
    let backend_name = backend.describe();
    let shared = Arc::new(Shared {
        slot: Mutex::new((0, None)),
        cv: Condvar::new(),
        ctl: SearchControl::new(),
        stop: AtomicBool::new(false),
    });
    let (found_tx, mut found_rx) = tokio::sync::mpsc::unbounded_channel();
    let (err_tx, mut err_rx) = tokio::sync::mpsc::unbounded_channel();
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("search".into())
            .spawn(move || search_thread(shared, backend, found_tx, err_tx))
            .map_err(|e| MinerError::Gpu(format!("spawn search thread: {e}")))?
    };
    let result = mine_loop(
        &cfg,
        &node,
        &shared,
        &backend_name,
        &mut found_rx,
        &mut err_rx,
        &report,
    )
    .await;
    shared.shutdown();
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    result
}

async fn mine_loop(
    cfg: &MinerConfig,
    node: &NodeClient,
    shared: &Shared,
    backend_name: &str,
    found_rx: &mut tokio::sync::mpsc::UnboundedReceiver<Found>,
    err_rx: &mut tokio::sync::mpsc::UnboundedReceiver<MinerError>,
    report: &impl Fn(Report),
) -> Result<Stats, ClientError> {
    let mut stats = Stats::default();
    let mut backoff = Duration::from_millis(250);
    let mut current_job: Option<String> = None;
    // (height, prev_hash) the current job builds on: a `work` event for exactly that tip
    // needs no new template (the node answers every template request with a new job id, so
    // refetching would abandon a live job for an identical one).
    let mut current_tip: Option<(u64, String)> = None;
    // Height of our last accepted block: a solution at or below it is stale for certain.
    let mut accepted_height: Option<u64> = None;
    let mut last_hashes = 0u64;
    let mut last_tick = Instant::now();
    let mut tick = tokio::time::interval(cfg.status_every);
    loop {
        // Subscribe first, then fetch: a `work` event cannot slip between the two.
        let connected = async {
            let events = node.work_events().await?;
            let template = node.template(&cfg.address).await?;
            Ok::<_, ClientError>((events, template))
        }
        .await;
        let (events, template) = match connected {
            Ok(x) => x,
            Err(e) => {
                shared.set_job(None);
                (current_job, current_tip) = (None, None);
                backoff = wait_after_disconnect(report, e.to_string(), backoff).await;
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        let set_template = |t: Template,
                            reason: &str,
                            stats: &mut Stats,
                            current: &mut Option<String>,
                            tip: &mut Option<(u64, String)>|
         -> Result<(), ClientError> {
            if current.as_deref() == Some(t.job_id.as_str()) {
                return Ok(());
            }
            let job = Job::from_template(t)?;
            stats.height = job.template.height;
            *current = Some(job.template.job_id.clone());
            *tip = Some((job.template.height, job.template.prev_hash.clone()));
            report(Report::Job {
                job_id: job.template.job_id.clone(),
                height: job.template.height,
                reason: reason.to_string(),
            });
            shared.set_job(Some(Arc::new(job)));
            Ok(())
        };
        set_template(
            template,
            "connect",
            &mut stats,
            &mut current_job,
            &mut current_tip,
        )?;
        let mut stream = events.bytes_stream();
        let mut parser = SseParser::default();
        let disconnect: ClientError = loop {
            tokio::select! {
                chunk = stream.next() => {
                    let chunk = match chunk {
                        Some(Ok(c)) => c,
                        Some(Err(e)) => break e.into(),
                        None => break ClientError::StreamClosed,
                    };
                    let mut refetch = None;
                    for ev in parser.push(&chunk) {
                        if ev.event == "work" {
                            let data = serde_json::from_str::<serde_json::Value>(&ev.data)
                                .unwrap_or_default();
                            let reason = data.get("reason").and_then(|r| r.as_str())
                                .unwrap_or("work").to_string();
                            let on_tip = data.get("height").and_then(|h| h.as_u64())
                                .zip(data.get("prev_hash").and_then(|p| p.as_str()))
                                .is_some_and(|(h, p)| current_tip.as_ref()
                                    .is_some_and(|(ch, cp)| *ch == h && cp.eq_ignore_ascii_case(p)));
                            // Already mining on that very tip (e.g. the event for our own
                            // block, whose template we fetched right after it was accepted).
                            if !(reason == "tip" && on_tip) {
                                refetch = Some(reason);
                            }
                        }
                    }
                    if let Some(reason) = refetch {
                        match node.template(&cfg.address).await {
                            Ok(t) => set_template(t, &reason, &mut stats, &mut current_job, &mut current_tip)?,
                            Err(e) => break e,
                        }
                    }
                }
                Some(f) = found_rx.recv() => {
                    if accepted_height.is_some_and(|h| f.job.template.height <= h) {
                        // Another thread's winner for a job we already solved, or a
                        // superseded job at the same height: the node would call it stale.
                        continue;
                    }
                    let sub = Submission {
                        job_id: f.job.template.job_id.clone(),
                        extra_nonce: hex::encode(f.job.extra_nonce(f.extra_nonce)),
                        time: f.time,
                        nonce: f.solution.nonce,
                    };
                    let outcome = match node.submit(&sub).await {
                        Ok(o) => o,
                        Err(e) => break e,
                    };
                    let label = match &outcome {
                        SubmitOutcome::Accepted { .. } => { stats.accepted += 1; "accepted".to_string() }
                        SubmitOutcome::Stale => { stats.stale += 1; "stale".to_string() }
                        SubmitOutcome::Rejected(code) => { stats.rejected += 1; format!("rejected: {code}") }
                    };
                    report(Report::Submitted {
                        job_id: sub.job_id.clone(),
                        nonce: sub.nonce,
                        hash: f.solution.hash.to_string(),
                        outcome: label,
                    });
                    if let SubmitOutcome::Accepted { .. } = outcome {
                        accepted_height = Some(f.job.template.height);
                        if cfg.blocks.is_some_and(|n| stats.accepted >= n) {
                            stats.hashes = shared.ctl.hashes();
                            return Ok(stats);
                        }
                    }
                    // The search stopped when it found this solution: if it was for the
                    // current job, fetch the next one now. After our own block that is the
                    // block on top of it (the node's `work` event for the same tip that
                    // follows is then skipped); after a stale or rejected one, a fresh job.
                    if current_job.as_deref() == Some(sub.job_id.as_str()) {
                        let reason = match outcome {
                            SubmitOutcome::Accepted { .. } => "own_block",
                            SubmitOutcome::Stale => "stale",
                            SubmitOutcome::Rejected(_) => "rejected",
                        };
                        shared.set_job(None);
                        current_job = None;
                        current_tip = None;
                        match node.template(&cfg.address).await {
                            Ok(t) => set_template(t, reason, &mut stats, &mut current_job, &mut current_tip)?,
                            Err(e) => break e,
                        }
                    }
                }
                Some(e) = err_rx.recv() => return Err(e.into()),
                _ = tick.tick() => {
                    let hashes = shared.ctl.hashes();
                    let dt = last_tick.elapsed().as_secs_f64().max(1e-9);
                    stats.hashes = hashes;
                    report(Report::Status {
                        backend: backend_name.to_string(),
                        hashes_per_second: (hashes - last_hashes) as f64 / dt,
                        stats: stats.clone(),
                    });
                    last_hashes = hashes;
                    last_tick = Instant::now();
                }
            }
        };
        shared.set_job(None);
        (current_job, current_tip) = (None, None);
        backoff = wait_after_disconnect(report, disconnect.to_string(), backoff).await;
    }
}

/// Reports the lost connection, waits `backoff`, and returns the next wait (doubled,
/// at most 10 s).
async fn wait_after_disconnect(
    report: &impl Fn(Report),
    error: String,
    backoff: Duration,
) -> Duration {
    report(Report::Disconnected {
        error,
        retry_in_ms: backoff.as_millis() as u64,
    });
    tokio::time::sleep(backoff).await;
    (backoff * 2).min(Duration::from_secs(10))
}
