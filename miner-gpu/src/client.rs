//! The HTTP work client: takes jobs from a node's mining API (docs/API.md), searches them
//! on every device ([`DeviceSet`]), submits solutions.
//!
//! Push, never polling: the client subscribes to `/v1/events?topics=work` *before* it
//! fetches a template (so no announcement can fall between the two) and fetches a new
//! template only when a `work` event arrives (or after one of its own blocks was
//! accepted). A new job cancels the running search at once. When the 32-bit nonce space
//! of a header is exhausted the device rolls extra_nonce2 (and moves `time` up to now,
//! never past the template's time + 2 h) and rebuilds the merkle root from
//! coinb1 ‖ extra_nonce2 ‖ coinb2 and the merkle branch, as Stratum does ([`crate::job`]).

use crate::devices::{DeviceEvent, DeviceSet};
pub use crate::job::Job;
use crate::report::RateMeter;
pub use crate::report::{Report, Stats};
use crate::{MinerError, SearchBackend, Work};
use consensus::hash::Hash256;
use consensus::header::BlockHeader;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// How far past the template's time the client may roll `time` (the node's future limit).
pub const MAX_TIME_ROLL_SECS: u32 = 7200;

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
    #[error(transparent)]
    Url(#[from] crate::endpoint::UrlError),
    #[error("event stream closed by the node")]
    StreamClosed,
    #[error(transparent)]
    Miner(#[from] MinerError),
}

impl ClientError {
    /// Whether retrying cannot help, so the miner should stop with this error: the node
    /// refused the request itself (any 4xx but 408 and 429, e.g. a payout address it does
    /// not accept, or a 404 from a server that is not a Bitplace node), the URL is
    /// unusable, or the node sent a template the miner cannot read.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Status { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            ClientError::Http(e) => e.is_builder(),
            ClientError::Url(_) | ClientError::BadTemplate(_) => true,
            ClientError::StreamClosed | ClientError::Miner(_) => false,
        }
    }
}

/// Reads a refusal's body: the node's `{"error": code, "message": text}` as
/// `code: text`, anything else as its first 200 characters.
fn refusal_body(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let code = v.get("error").and_then(|c| c.as_str());
        let message = v.get("message").and_then(|m| m.as_str());
        match (code, message) {
            (Some(c), Some(m)) => return format!("{c}: {m}"),
            (Some(c), None) => return c.to_string(),
            _ => {}
        }
    }
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &body[..i]),
        None if body.is_empty() => "(empty body)".to_string(),
        None => body.to_string(),
    }
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

/// Decodes a template into a [`Job`]: the header fields come from its `header`, the
/// target from `target` (a share over HTTP is a block, so both targets are the same).
/// The node's extra_nonce1 is already at the end of coinb1.
pub fn job_from_template(t: &Template) -> Result<Job, ClientError> {
    let work = Work::from_hex(&t.header, &t.target)
        .map_err(|e| ClientError::BadTemplate(e.to_string()))?;
    if t.extra_nonce_size == 0 || t.extra_nonce_size > 8 {
        return Err(ClientError::BadTemplate(format!(
            "extra_nonce_size {} (expected 1..=8)",
            t.extra_nonce_size
        )));
    }
    let branch = t
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
    let h = BlockHeader::from_bytes(&work.header);
    Ok(Job {
        id: t.job_id.clone(),
        height: Some(t.height),
        version: h.version,
        prev_hash: h.prev_hash.0,
        bits: h.bits.0,
        time: h.time,
        // The node refuses a time more than 2 h past its clock; the template's time is
        // the node's now (or its minimum, if later).
        max_time: Some(h.time.saturating_add(MAX_TIME_ROLL_SECS)),
        coinb1: unhex("coinb1", &t.coinb1)?,
        extranonce1: Vec::new(),
        extranonce2_size: t.extra_nonce_size,
        coinb2: unhex("coinb2", &t.coinb2)?,
        branch,
        version_mask: 0,
        share_target: work.target,
        block_target: work.target,
    })
}

fn unhex(field: &str, s: &str) -> Result<Vec<u8>, ClientError> {
    hex::decode(s).map_err(|_| ClientError::BadTemplate(format!("{field} is not hex")))
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

/// The node's HTTP API as the miner uses it.
#[derive(Clone, Debug)]
pub struct NodeClient {
    http: reqwest::Client,
    base: String,
}

impl NodeClient {
    /// `base` is checked and normalised first ([`crate::endpoint::node_url`]).
    pub fn new(base: &str) -> Result<NodeClient, ClientError> {
        let base = crate::endpoint::node_url(base)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(NodeClient { http, base })
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
            let body = refusal_body(&resp.text().await.unwrap_or_default());
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
            let body = refusal_body(&resp.text().await.unwrap_or_default());
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

/// Mining-mode settings.
#[derive(Clone, Debug)]
pub struct MinerConfig {
    /// Node base URL, e.g. `http://127.0.0.1:8080` (no scheme: `http://`).
    pub node: String,
    /// Payout address (`bp1...`).
    pub address: String,
    /// Stop after this many accepted blocks.
    pub blocks: Option<u64>,
    /// Interval between status reports.
    pub status_every: Duration,
}

/// Mines against a node on every device in `backends` until `cfg.blocks` blocks are
/// accepted (forever without it). Reconnects with exponential backoff (250 ms .. 10 s)
/// whenever the node goes away; returns at once with an error that retrying cannot fix
/// ([`ClientError::is_permanent`]).
pub async fn mine(
    cfg: MinerConfig,
    backends: Vec<Box<dyn SearchBackend>>,
    report: impl Fn(Report),
) -> Result<Stats, ClientError> {
    let node = NodeClient::new(&cfg.node)?;
    let (mut devices, mut events) = DeviceSet::start(backends)?;
    let result = mine_loop(&cfg, &node, &mut devices, &mut events, &report).await;
    // Joining waits for each device's dispatch in flight: off the async thread.
    let _ = tokio::task::spawn_blocking(move || drop(devices)).await;
    result
}

/// The job being mined and the tip it builds on.
#[derive(Default)]
struct Current {
    job_id: Option<String>,
    /// (height, prev_hash) of the current job: a `work` event for exactly that tip
    /// needs no new template (the node answers every template request with a new job
    /// id, so refetching would abandon a live job for an identical one).
    tip: Option<(u64, String)>,
}

impl Current {
    /// Starts mining a template unless it is the job already being mined.
    fn set(
        &mut self,
        t: Template,
        reason: &str,
        stats: &mut Stats,
        devices: &DeviceSet,
        report: &impl Fn(Report),
    ) -> Result<(), ClientError> {
        if self.job_id.as_deref() == Some(t.job_id.as_str()) {
            return Ok(());
        }
        // A `tip` event can arrive after we have fetched past it (the event for our
        // previous block, delivered once the next one was already accepted): the template
        // it fetched builds on the tip we mine on, the same work under a new job id, so
        // the live job stays (CI once saw it replaced: `regression_work_event_for_the_
        // current_tip_replaced_the_live_job`, heights [1, 2, 3, 3, 4]).
        if reason == "tip" && self.builds_on(t.height, &t.prev_hash) {
            return Ok(());
        }
        let job = job_from_template(&t)?;
        stats.height = t.height;
        self.job_id = Some(t.job_id.clone());
        self.tip = Some((t.height, t.prev_hash.clone()));
        report(Report::Job {
            job_id: t.job_id,
            height: Some(t.height),
            reason: reason.to_string(),
        });
        devices.set_job(Some(Arc::new(job)));
        Ok(())
    }

    fn clear(&mut self, devices: &DeviceSet) {
        devices.set_job(None);
        *self = Current::default();
    }

    /// Whether a `work` event names the tip the current job builds on.
    fn is_on_tip(&self, event: &serde_json::Value) -> bool {
        let height = event.get("height").and_then(|h| h.as_u64());
        let prev = event.get("prev_hash").and_then(|p| p.as_str());
        height
            .zip(prev)
            .is_some_and(|(height, prev)| self.builds_on(height, prev))
    }

    /// Whether the current job is at `height` on top of `prev_hash`.
    fn builds_on(&self, height: u64, prev_hash: &str) -> bool {
        self.tip
            .as_ref()
            .is_some_and(|(h, p)| *h == height && p.eq_ignore_ascii_case(prev_hash))
    }
}

async fn mine_loop(
    cfg: &MinerConfig,
    node: &NodeClient,
    devices: &mut DeviceSet,
    events: &mut UnboundedReceiver<DeviceEvent>,
    report: &impl Fn(Report),
) -> Result<Stats, ClientError> {
    let mut stats = Stats::default();
    let mut backoff = Duration::from_millis(250);
    let mut current = Current::default();
    // Height of our last accepted block: a solution at or below it is stale for certain.
    let mut accepted_height: Option<u64> = None;
    let mut meter = RateMeter::new(devices);
    let mut tick = tokio::time::interval(cfg.status_every);
    loop {
        // Subscribe first, then fetch: a `work` event cannot slip between the two.
        let connected = async {
            let stream = node.work_events().await?;
            let template = node.template(&cfg.address).await?;
            Ok::<_, ClientError>((stream, template))
        }
        .await;
        let (stream, template) = match connected {
            Ok(x) => x,
            Err(e) if e.is_permanent() => return Err(e),
            Err(e) => {
                current.clear(devices);
                backoff = wait_after_disconnect(report, e.to_string(), backoff).await;
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        current.set(template, "connect", &mut stats, devices, report)?;
        let mut stream = stream.bytes_stream();
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
                            // Already mining on that very tip (e.g. the event for our own
                            // block, whose template we fetched right after it was accepted).
                            if !(reason == "tip" && current.is_on_tip(&data)) {
                                refetch = Some(reason);
                            }
                        }
                    }
                    if let Some(reason) = refetch {
                        match node.template(&cfg.address).await {
                            Ok(t) => current.set(t, &reason, &mut stats, devices, report)?,
                            Err(e) => break e,
                        }
                    }
                }
                Some(ev) = events.recv() => {
                    let f = match ev {
                        DeviceEvent::Found(f) => f,
                        DeviceEvent::Failed { device, error } => {
                            report(Report::DeviceFailed {
                                device,
                                adapter: devices.info()[device].adapter.clone(),
                                error: error.to_string(),
                            });
                            if devices.mark_failed(device) == 0 {
                                return Err(error.into());
                            }
                            continue;
                        }
                    };
                    let height = f.job.height.unwrap_or(0);
                    if accepted_height.is_some_and(|h| height <= h) {
                        // Another device's winner for a job we already solved, or a
                        // superseded job at the same height: the node would call it stale.
                        continue;
                    }
                    let sub = Submission {
                        job_id: f.job.id.clone(),
                        extra_nonce: hex::encode(f.job.extranonce2_bytes(f.roll.extranonce2)),
                        time: f.roll.time,
                        nonce: f.solution.nonce,
                    };
                    let outcome = match node.submit(&sub).await {
                        Ok(o) => o,
                        Err(e) => break e,
                    };
                    let label = match &outcome {
                        SubmitOutcome::Accepted { .. } => {
                            stats.accepted += 1;
                            stats.blocks += 1;
                            "accepted".to_string()
                        }
                        SubmitOutcome::Stale => { stats.stale += 1; "stale".to_string() }
                        SubmitOutcome::Rejected(code) => { stats.rejected += 1; format!("rejected: {code}") }
                    };
                    report(Report::Submitted {
                        job_id: sub.job_id.clone(),
                        nonce: sub.nonce,
                        hash: f.solution.hash.to_string(),
                        outcome: label,
                        block: true,
                    });
                    if let SubmitOutcome::Accepted { .. } = outcome {
                        accepted_height = Some(height);
                        if cfg.blocks.is_some_and(|n| stats.blocks >= n) {
                            stats.hashes = devices.hashes().iter().sum();
                            return Ok(stats);
                        }
                    }
                    // The search paused when it found this solution: if it was for the
                    // current job, fetch the next one now. After our own block that is the
                    // block on top of it (the node's `work` event for the same tip that
                    // follows is then skipped); after a stale or rejected one, a fresh job.
                    if current.job_id.as_deref() == Some(sub.job_id.as_str()) {
                        let reason = match outcome {
                            SubmitOutcome::Accepted { .. } => "own_block",
                            SubmitOutcome::Stale => "stale",
                            SubmitOutcome::Rejected(_) => "rejected",
                        };
                        current.clear(devices);
                        match node.template(&cfg.address).await {
                            Ok(t) => current.set(t, reason, &mut stats, devices, report)?,
                            Err(e) => break e,
                        }
                    }
                }
                _ = tick.tick() => report(meter.status(devices, &stats)),
            }
        };
        if disconnect.is_permanent() {
            return Err(disconnect);
        }
        current.clear(devices);
        backoff = wait_after_disconnect(report, disconnect.to_string(), backoff).await;
    }
}

/// Reports the lost connection, waits `backoff`, and returns the next wait (doubled,
/// at most 10 s).
pub(crate) async fn wait_after_disconnect(
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
