//! Stratum V1 client: mines through any SHA-256d Stratum server — our node's `--stratum`
//! and the pools cpuminer and cgminer talk to.
//!
//! Newline-delimited JSON-RPC over TCP. The session:
//! 1. `mining.configure [["version-rolling"], {mask, min-bit-count}]` (BIP 310), sent
//!    first and answered or refused by the server — version bits are rolled only when it
//!    agrees, within the mask it returns;
//! 2. `mining.subscribe` → `[subscriptions, extranonce1, extranonce2_size]`;
//! 3. `mining.extranonce.subscribe` (the server may then send `mining.set_extranonce`);
//! 4. `mining.authorize [user, password]` — a refusal ends the miner (retrying cannot
//!    help);
//! 5. then `mining.set_difficulty [d]` (the share target diff1 / d; fractional d allowed)
//!    and `mining.notify [job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime,
//!    clean_jobs]`, and our `mining.submit [user, job_id, extranonce2, ntime, nonce
//!    (, version_bits)]` for every hash that meets the share target.
//!
//! Byte order (as cpuminer, cgminer and our node — api/src/stratum.rs — have it):
//! `prevhash` is the header's 32 bytes with each 4-byte word reversed; `version`, `nbits`,
//! `ntime` are big-endian hex of the u32 that the header holds little-endian; the branch
//! entries are hashes in internal order; the coinbase is coinb1 ‖ extranonce1 ‖
//! extranonce2 ‖ coinb2. Submitted `ntime` and `nonce` are the u32 values as 8 hex digits,
//! `extranonce2` the raw bytes, `version_bits` the rolled bits (`version & mask`).
//!
//! As the protocol says, a new difficulty or extranonce applies from the next job on.
//! Every share is re-derived and re-hashed on the CPU before it is sent ([`Job::verify`]).

use crate::client::wait_after_disconnect;
use crate::devices::{DeviceEvent, DeviceSet};
use crate::endpoint::{pool_addr, UrlError};
use crate::job::{block_target, target_for_difficulty, Found, Job};
use crate::report::{RateMeter, Report, Stats};
use crate::{MinerError, SearchBackend};
use consensus::hash::Hash256;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Longest line accepted from a server (a notify with a long coinbase and a deep branch
/// stays far below it).
pub const MAX_LINE: usize = 256 * 1024;
/// The version bits asked for (BIP 320's general-purpose bits, what ASICs roll).
pub const VERSION_ROLLING_MASK: u32 = 0x1fff_e000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Subscribe and authorize must be answered within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a share that is a block the job is paused (see [`crate::devices`]); without a
/// new job within this, it is resumed.
const RESUME_AFTER_BLOCK: Duration = Duration::from_secs(3);
/// Job ids remembered as live (a share for a job not among them is stale).
const LIVE_JOBS: usize = 64;

const ID_CONFIGURE: u64 = 1;
const ID_SUBSCRIBE: u64 = 2;
const ID_EXTRANONCE: u64 = 3;
const ID_AUTHORIZE: u64 = 4;
/// Submissions count up from here.
const FIRST_SUBMIT_ID: u64 = 100;

/// Errors of the Stratum client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StratumError {
    #[error("--pool {0}")]
    Url(#[from] UrlError),
    #[error("the pool refused authorization of `{user}`: {reason}")]
    Unauthorized { user: String, reason: String },
    #[error("the pool refused the subscription: {0}")]
    SubscribeRefused(String),
    #[error("connection to the pool failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the pool did not answer {0} in time")]
    Timeout(&'static str),
    #[error("the pool closed the connection")]
    Closed,
    #[error("the pool asked to reconnect")]
    Reconnect,
    #[error("pool protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Miner(#[from] MinerError),
}

impl StratumError {
    /// Whether retrying cannot help (the miner then stops with this error): an unusable
    /// URL, a refused authorization or subscription, every device failed.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            StratumError::Url(_)
                | StratumError::Unauthorized { .. }
                | StratumError::SubscribeRefused(_)
                | StratumError::Miner(_)
        )
    }
}

/// Pool-mode settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// `stratum+tcp://HOST:PORT` (or `HOST:PORT`).
    pub url: String,
    /// The worker name; for our node, the payout address (optionally `.rig`).
    pub user: String,
    pub password: String,
    /// Exit after this many blocks (accepted shares that met the block target).
    pub blocks: Option<u64>,
    pub status_every: Duration,
    /// Ask for BIP 310 version rolling.
    pub version_rolling: bool,
}

/// `mining.notify`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub job_id: String,
    /// Header order (the wire's word-swapped form undone).
    pub prev_hash: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<Hash256>,
    pub version: u32,
    pub bits: u32,
    pub time: u32,
    pub clean: bool,
}

fn hex_field(params: &[Value], i: usize, what: &str) -> Result<Vec<u8>, String> {
    let s = params
        .get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} must be a hex string"))?;
    hex::decode(s).map_err(|_| format!("{what} is not hex: {s:?}"))
}

fn u32_field(params: &[Value], i: usize, what: &str) -> Result<u32, String> {
    let s = params
        .get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} must be a hex string"))?;
    if s.len() != 8 {
        return Err(format!("{what} must be 8 hex digits: {s:?}"));
    }
    u32::from_str_radix(s, 16).map_err(|_| format!("{what} is not hex: {s:?}"))
}

/// The previous-block hash from Stratum's form: each 4-byte word reversed back.
pub fn prevhash_from_stratum(bytes: &[u8]) -> Option<[u8; 32]> {
    let mut b: [u8; 32] = bytes.try_into().ok()?;
    for w in b.chunks_exact_mut(4) {
        w.reverse();
    }
    Some(b)
}

/// Decodes `mining.notify` params.
pub fn parse_notify(params: &[Value]) -> Result<Notify, String> {
    if params.len() < 9 {
        return Err(format!("mining.notify has {} params, not 9", params.len()));
    }
    let job_id = match &params[0] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("job_id must be a string".into()),
    };
    let prev = hex_field(params, 1, "prevhash")?;
    let prev_hash = prevhash_from_stratum(&prev).ok_or("prevhash must be 32 bytes")?;
    let branch = params[4]
        .as_array()
        .ok_or("merkle_branch must be an array")?
        .iter()
        .map(|h| {
            let b = h
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .ok_or("merkle_branch entries must be hex")?;
            Ok(Hash256(
                b.try_into()
                    .map_err(|_| "merkle_branch entries must be 32 bytes")?,
            ))
        })
        .collect::<Result<Vec<_>, &str>>()?;
    Ok(Notify {
        job_id,
        prev_hash,
        coinb1: hex_field(params, 2, "coinb1")?,
        coinb2: hex_field(params, 3, "coinb2")?,
        branch,
        version: u32_field(params, 5, "version")?,
        bits: u32_field(params, 6, "nbits")?,
        time: u32_field(params, 7, "ntime")?,
        clean: params[8].as_bool().unwrap_or(false),
    })
}

/// What a session has agreed with the server so far, and what it turns a notify into.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
    /// Share difficulty for the next job (1 until the server sets one).
    pub difficulty: f64,
    /// Version-rolling mask agreed (0: none).
    pub version_mask: u32,
}

impl Default for Session {
    fn default() -> Session {
        Session {
            extranonce1: Vec::new(),
            extranonce2_size: 4,
            difficulty: 1.0,
            version_mask: 0,
        }
    }
}

impl Session {
    /// The job a notify describes under this session's extranonce, difficulty and mask.
    pub fn job(&self, n: &Notify) -> Job {
        Job {
            id: n.job_id.clone(),
            height: None,
            version: n.version,
            prev_hash: n.prev_hash,
            bits: n.bits,
            time: n.time,
            max_time: None,
            coinb1: n.coinb1.clone(),
            extranonce1: self.extranonce1.clone(),
            extranonce2_size: self.extranonce2_size,
            coinb2: n.coinb2.clone(),
            branch: n.branch.clone(),
            version_mask: self.version_mask,
            share_target: target_for_difficulty(self.difficulty).unwrap_or([0xff; 32]),
            block_target: block_target(n.bits),
        }
    }

    /// Reads the `mining.subscribe` result `[subscriptions, extranonce1, size]`.
    pub fn subscribed(&mut self, result: &Value) -> Result<(), String> {
        let en1 = result
            .get(1)
            .and_then(Value::as_str)
            .and_then(|s| hex::decode(s).ok())
            .ok_or("subscribe result has no extranonce1")?;
        let size = result
            .get(2)
            .and_then(Value::as_u64)
            .ok_or("subscribe result has no extranonce2_size")?;
        self.set_extranonce(en1, size)
    }

    fn set_extranonce(&mut self, en1: Vec<u8>, size: u64) -> Result<(), String> {
        if !(1..=8).contains(&size) {
            return Err(format!(
                "extranonce2_size {size} (this miner rolls 1..=8 bytes)"
            ));
        }
        if en1.len() > 32 {
            return Err("extranonce1 longer than 32 bytes".into());
        }
        self.extranonce1 = en1;
        self.extranonce2_size = size as usize;
        Ok(())
    }

    /// Reads the `mining.configure` result: the mask the server allows, if any.
    pub fn configured(&mut self, result: &Value) {
        let on = result.get("version-rolling").and_then(Value::as_bool) == Some(true);
        let mask = result
            .get("version-rolling.mask")
            .and_then(Value::as_str)
            .and_then(|m| u32::from_str_radix(m, 16).ok());
        self.version_mask = match (on, mask) {
            (true, Some(m)) => m & VERSION_ROLLING_MASK,
            _ => 0,
        };
    }
}

/// `mining.submit` params for a found share.
pub fn submit_params(user: &str, found: &Found) -> Value {
    let job = &found.job;
    let mut p = vec![
        json!(user),
        json!(job.id),
        json!(hex::encode(job.extranonce2_bytes(found.roll.extranonce2))),
        json!(format!("{:08x}", found.roll.time)),
        json!(format!("{:08x}", found.solution.nonce)),
    ];
    if job.version_mask != 0 {
        p.push(json!(format!(
            "{:08x}",
            found.roll.version & job.version_mask
        )));
    }
    Value::Array(p)
}

/// A server's error member as one line (`[code, message, data]`, or anything else).
fn error_text(error: &Value) -> String {
    match error {
        Value::Array(a) => {
            let code = a.first().map(|c| c.to_string()).unwrap_or_default();
            let msg = a.get(1).and_then(Value::as_str).unwrap_or("");
            format!("{code} {msg}").trim().to_string()
        }
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How a `mining.submit` came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareOutcome {
    Accepted,
    /// Job not found (21), or a refusal that says "stale".
    Stale(String),
    Rejected(String),
}

/// Classifies a `mining.submit` response.
pub fn share_outcome(result: &Value, error: &Value) -> ShareOutcome {
    if result == &Value::Bool(true) && error.is_null() {
        return ShareOutcome::Accepted;
    }
    let text = if error.is_null() {
        "refused".to_string()
    } else {
        error_text(error)
    };
    let code = error.get(0).and_then(Value::as_i64);
    if code == Some(21) || text.to_lowercase().contains("stale") {
        ShareOutcome::Stale(text)
    } else {
        ShareOutcome::Rejected(text)
    }
}

/// A submission waiting for its answer.
struct Pending {
    found: Found,
}

/// Mines through a Stratum pool on every device in `backends` until `cfg.blocks`
/// blocks (forever without it). Reconnects with backoff (250 ms .. 10 s) when the pool
/// goes away; returns at once on what retrying cannot fix
/// ([`StratumError::is_permanent`]).
pub async fn mine(
    cfg: PoolConfig,
    backends: Vec<Box<dyn SearchBackend>>,
    report: impl Fn(Report),
) -> Result<Stats, StratumError> {
    let (host, port) = pool_addr(&cfg.url)?;
    let (mut devices, mut events) = DeviceSet::start(backends)?;
    let mut stats = Stats::default();
    let mut backoff = Duration::from_millis(250);
    let result = loop {
        let outcome = Connection {
            cfg: &cfg,
            devices: &mut devices,
            events: &mut events,
            report: &report,
            stats: &mut stats,
            session: Session::default(),
            live: VecDeque::new(),
            solved: HashSet::new(),
            pending: HashMap::new(),
            next_id: FIRST_SUBMIT_ID,
            authorized: false,
            subscribed: false,
            last_notify: None,
            paused_at: None,
        }
        .run(&host, port, &mut backoff)
        .await;
        devices.set_job(None);
        match outcome {
            Ok(()) => break Ok(stats.clone()),
            Err(e) if e.is_permanent() => break Err(e),
            Err(e) => backoff = wait_after_disconnect(&report, e.to_string(), backoff).await,
        }
    };
    let _ = tokio::task::spawn_blocking(move || drop(devices)).await;
    result
}

/// One connection to the pool.
struct Connection<'a, R: Fn(Report)> {
    cfg: &'a PoolConfig,
    devices: &'a mut DeviceSet,
    events: &'a mut mpsc::UnboundedReceiver<DeviceEvent>,
    report: &'a R,
    stats: &'a mut Stats,
    session: Session,
    /// Job ids whose shares the server still takes (cleared by `clean_jobs`).
    live: VecDeque<String>,
    /// Jobs a block was found for: their further shares are not sent.
    solved: HashSet<String>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    authorized: bool,
    subscribed: bool,
    /// The latest notify, kept until the session can turn it into a job.
    last_notify: Option<Notify>,
    /// When the current job was paused after a block.
    paused_at: Option<Instant>,
}

enum Line {
    Msg(Vec<u8>),
    TooLong,
}

async fn read_lines(rd: OwnedReadHalf, tx: mpsc::Sender<Line>) {
    let mut reader = BufReader::new(rd);
    loop {
        let mut buf = Vec::new();
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
            let _ = tx.send(Line::TooLong).await;
            return;
        }
        if tx.send(Line::Msg(buf)).await.is_err() {
            return;
        }
    }
}

async fn send(wr: &mut OwnedWriteHalf, msg: &Value) -> Result<(), StratumError> {
    let mut line = msg.to_string();
    line.push('\n');
    tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(line.as_bytes()))
        .await
        .map_err(|_| StratumError::Timeout("a write"))??;
    Ok(())
}

impl<R: Fn(Report)> Connection<'_, R> {
    /// Connects, handshakes and mines until the connection ends (`Err`) or the block
    /// count is reached (`Ok`).
    async fn run(
        &mut self,
        host: &str,
        port: u16,
        backoff: &mut Duration,
    ) -> Result<(), StratumError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| StratumError::Timeout("the connection"))??;
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = stream.into_split();
        let (tx, mut lines) = mpsc::channel(64);
        let reader = tokio::spawn(read_lines(rd, tx));
        let result = self.session_loop(&mut wr, &mut lines, backoff).await;
        reader.abort();
        result
    }

    async fn session_loop(
        &mut self,
        wr: &mut OwnedWriteHalf,
        lines: &mut mpsc::Receiver<Line>,
        backoff: &mut Duration,
    ) -> Result<(), StratumError> {
        let agent = concat!("bitplace-miner/", env!("CARGO_PKG_VERSION"));
        if self.cfg.version_rolling {
            let mask = format!("{VERSION_ROLLING_MASK:08x}");
            let params = json!([["version-rolling"], {"version-rolling.mask": mask, "version-rolling.min-bit-count": 2}]);
            send(
                wr,
                &json!({"id": ID_CONFIGURE, "method": "mining.configure", "params": params}),
            )
            .await?;
        }
        send(
            wr,
            &json!({"id": ID_SUBSCRIBE, "method": "mining.subscribe", "params": [agent]}),
        )
        .await?;
        let handshake = tokio::time::sleep(HANDSHAKE_TIMEOUT);
        tokio::pin!(handshake);
        let mut meter = RateMeter::new(self.devices);
        let mut tick = tokio::time::interval(self.cfg.status_every);
        loop {
            let resume_at = self.paused_at.map(|t| t + RESUME_AFTER_BLOCK);
            tokio::select! {
                line = lines.recv() => match line {
                    Some(Line::Msg(bytes)) => {
                        if self.handle_line(wr, &bytes, agent).await? {
                            return Ok(());
                        }
                        if self.authorized {
                            // A working session: the next disconnect starts backing off anew.
                            *backoff = Duration::from_millis(250);
                        }
                    }
                    Some(Line::TooLong) => {
                        return Err(StratumError::Protocol(format!("a line longer than {MAX_LINE} bytes")))
                    }
                    None => return Err(StratumError::Closed),
                },
                Some(ev) = self.events.recv() => match ev {
                    DeviceEvent::Found(f) => self.share(wr, f).await?,
                    DeviceEvent::Failed { device, error } => {
                        (self.report)(Report::DeviceFailed {
                            device,
                            adapter: self.devices.info()[device].adapter.clone(),
                            error: error.to_string(),
                        });
                        if self.devices.mark_failed(device) == 0 {
                            return Err(error.into());
                        }
                    }
                },
                _ = tick.tick() => {
                    self.stats.difficulty = Some(self.session.difficulty);
                    (self.report)(meter.status(self.devices, self.stats));
                }
                _ = &mut handshake, if !self.authorized => {
                    return Err(StratumError::Timeout(if self.subscribed { "mining.authorize" } else { "mining.subscribe" }));
                }
                _ = tokio::time::sleep_until(resume_at.unwrap_or_else(Instant::now)), if resume_at.is_some() => {
                    // A block-level share and no new job: the pool did not take it as a
                    // block (or is slow); go on with this job where each device was.
                    self.paused_at = None;
                    if let Some(job) = self.devices.job() {
                        self.solved.remove(&job.id);
                    }
                    self.devices.resume();
                }
            }
        }
    }

    /// Handles one line from the server; `Ok(true)` when the miner is done.
    async fn handle_line(
        &mut self,
        wr: &mut OwnedWriteHalf,
        bytes: &[u8],
        agent: &str,
    ) -> Result<bool, StratumError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        let msg: Value = serde_json::from_slice(bytes).map_err(|e| {
            StratumError::Protocol(format!(
                "not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })?;
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        if let Some(method) = msg.get("method").and_then(Value::as_str) {
            let params = match msg.get("params") {
                Some(Value::Array(p)) => p.clone(),
                _ => Vec::new(),
            };
            return self.notification(wr, method, &params, &id, agent).await;
        }
        let result = msg.get("result").cloned().unwrap_or(Value::Null);
        let error = msg.get("error").cloned().unwrap_or(Value::Null);
        match id.as_u64() {
            Some(ID_CONFIGURE) => {
                if error.is_null() {
                    self.session.configured(&result);
                }
            }
            Some(ID_SUBSCRIBE) => {
                if !error.is_null() || result.is_null() {
                    return Err(StratumError::SubscribeRefused(error_text(&error)));
                }
                self.session
                    .subscribed(&result)
                    .map_err(StratumError::SubscribeRefused)?;
                self.subscribed = true;
                (self.report)(Report::Subscribed {
                    extranonce1: hex::encode(&self.session.extranonce1),
                    extranonce2_size: self.session.extranonce2_size,
                    version_mask: (self.session.version_mask != 0)
                        .then(|| format!("{:08x}", self.session.version_mask)),
                });
                send(wr, &json!({"id": ID_EXTRANONCE, "method": "mining.extranonce.subscribe", "params": []})).await?;
                let auth = json!([self.cfg.user, self.cfg.password]);
                send(
                    wr,
                    &json!({"id": ID_AUTHORIZE, "method": "mining.authorize", "params": auth}),
                )
                .await?;
            }
            // Servers without the extension answer with an error: nothing changes.
            Some(ID_EXTRANONCE) => {}
            Some(ID_AUTHORIZE) => {
                if result != Value::Bool(true) || !error.is_null() {
                    return Err(StratumError::Unauthorized {
                        user: self.cfg.user.clone(),
                        reason: if error.is_null() {
                            "it answered false".into()
                        } else {
                            error_text(&error)
                        },
                    });
                }
                self.authorized = true;
                if let Some(n) = self.last_notify.clone() {
                    self.start_job(&n, "connect");
                }
            }
            Some(id) => {
                if let Some(p) = self.pending.remove(&id) {
                    return Ok(self.answered(p, &result, &error));
                }
            }
            None => {
                // An error with a null id: the server could not read a request of ours.
                if !error.is_null() {
                    tracing::warn!("pool error: {}", error_text(&error));
                }
            }
        }
        Ok(false)
    }

    async fn notification(
        &mut self,
        wr: &mut OwnedWriteHalf,
        method: &str,
        params: &[Value],
        id: &Value,
        agent: &str,
    ) -> Result<bool, StratumError> {
        match method {
            "mining.notify" => {
                let n = parse_notify(params).map_err(StratumError::Protocol)?;
                if n.clean {
                    self.live.clear();
                }
                self.live.push_back(n.job_id.clone());
                while self.live.len() > LIVE_JOBS {
                    self.live.pop_front();
                }
                if self.subscribed && self.authorized {
                    self.start_job(&n, if n.clean { "clean" } else { "notify" });
                }
                self.last_notify = Some(n);
            }
            "mining.set_difficulty" => {
                let d = params.first().and_then(Value::as_f64);
                match d.filter(|d| target_for_difficulty(*d).is_some()) {
                    Some(d) => {
                        self.session.difficulty = d;
                        (self.report)(Report::Difficulty { difficulty: d });
                    }
                    None => tracing::warn!("pool sent an unusable difficulty {params:?}"),
                }
            }
            "mining.set_extranonce" => {
                let en1 = params
                    .first()
                    .and_then(Value::as_str)
                    .and_then(|s| hex::decode(s).ok());
                let size = params.get(1).and_then(Value::as_u64);
                match en1.zip(size) {
                    Some((en1, size)) => self
                        .session
                        .set_extranonce(en1, size)
                        .map_err(StratumError::Protocol)?,
                    None => tracing::warn!("pool sent an unusable extranonce {params:?}"),
                }
            }
            "mining.set_version_mask" => {
                if let Some(m) = params
                    .first()
                    .and_then(Value::as_str)
                    .and_then(|m| u32::from_str_radix(m, 16).ok())
                {
                    if self.session.version_mask != 0 {
                        self.session.version_mask = m & VERSION_ROLLING_MASK;
                    }
                }
            }
            "client.reconnect" => return Err(StratumError::Reconnect),
            "client.get_version" => {
                send(wr, &json!({"id": id, "result": agent, "error": null})).await?;
            }
            "client.show_message" => {
                let text = params
                    .first()
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("");
                tracing::info!("pool says: {text}");
            }
            other => {
                // A request we do not know gets an error, so the server is not left waiting.
                if !id.is_null() {
                    let err = json!([20, format!("unsupported method {other}"), null]);
                    send(wr, &json!({"id": id, "result": null, "error": err})).await?;
                }
            }
        }
        Ok(false)
    }

    fn start_job(&mut self, n: &Notify, reason: &str) {
        let job = self.session.job(n);
        self.paused_at = None;
        (self.report)(Report::Job {
            job_id: job.id.clone(),
            height: None,
            reason: reason.to_string(),
        });
        self.devices.set_job(Some(Arc::new(job)));
    }

    /// Sends a share the devices found, unless it can no longer count.
    async fn share(&mut self, wr: &mut OwnedWriteHalf, f: Found) -> Result<(), StratumError> {
        if self.solved.contains(&f.job.id) {
            // A second winner for a job already solved: the network has moved on.
            return Ok(());
        }
        if !self.live.contains(&f.job.id) {
            self.stats.stale += 1;
            (self.report)(Report::Submitted {
                job_id: f.job.id.clone(),
                nonce: f.solution.nonce,
                hash: f.solution.hash.to_string(),
                outcome: "stale: job replaced, not sent".into(),
                block: f.is_block(),
            });
            return Ok(());
        }
        if f.job.verify(&f.roll, f.solution.nonce) != Some(f.solution.hash) {
            self.stats.rejected += 1;
            (self.report)(Report::Submitted {
                job_id: f.job.id.clone(),
                nonce: f.solution.nonce,
                hash: f.solution.hash.to_string(),
                outcome: "rejected: failed the CPU check, not sent".into(),
                block: false,
            });
            return Ok(());
        }
        if f.is_block() {
            // The device pauses the job on such a share (crate::devices); resume it if no
            // new job comes.
            self.solved.insert(f.job.id.clone());
            self.paused_at = Some(Instant::now());
        }
        let id = self.next_id;
        self.next_id += 1;
        let params = submit_params(&self.cfg.user, &f);
        send(
            wr,
            &json!({"id": id, "method": "mining.submit", "params": params}),
        )
        .await?;
        self.pending.insert(id, Pending { found: f });
        Ok(())
    }

    /// Counts a submission's answer; `true` when the block count is reached.
    fn answered(&mut self, p: Pending, result: &Value, error: &Value) -> bool {
        let f = p.found;
        let block = f.is_block();
        let outcome = share_outcome(result, error);
        let label = match &outcome {
            ShareOutcome::Accepted => {
                self.stats.accepted += 1;
                if block {
                    self.stats.blocks += 1;
                }
                "accepted".to_string()
            }
            ShareOutcome::Stale(why) => {
                self.stats.stale += 1;
                format!("stale: {why}")
            }
            ShareOutcome::Rejected(why) => {
                self.stats.rejected += 1;
                format!("rejected: {why}")
            }
        };
        (self.report)(Report::Submitted {
            job_id: f.job.id.clone(),
            nonce: f.solution.nonce,
            hash: f.solution.hash.to_string(),
            outcome: label,
            block,
        });
        if block && outcome != ShareOutcome::Accepted {
            // Not a block after all (for this server): carry on with the job.
            self.solved.remove(&f.job.id);
            if self.devices.job().is_some_and(|j| j.id == f.job.id) {
                self.paused_at = None;
                self.devices.resume();
            }
        }
        self.cfg.blocks.is_some_and(|n| self.stats.blocks >= n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prevhash_words_are_reversed_back() {
        // Bitcoin's genesis hash as pools send it (api/src/stratum.rs has the other way).
        let wire = hex::decode("0a8ce26f72b3f1b646a2a6c14ff763ae65831e939c085ae10019d66800000000")
            .unwrap();
        let header_order = prevhash_from_stratum(&wire).unwrap();
        let display: Hash256 = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
            .parse()
            .unwrap();
        assert_eq!(header_order, display.0);
        assert_eq!(prevhash_from_stratum(&wire[..31]), None);
    }

    #[test]
    fn malformed_notify_is_refused() {
        let good = json!([
            "1",
            "00".repeat(32),
            "aa",
            "bb",
            [],
            "00000001",
            "1d00ffff",
            "495fab29",
            true
        ]);
        let p = good.as_array().unwrap();
        let n = parse_notify(p).unwrap();
        assert_eq!(
            (n.version, n.bits, n.time, n.clean),
            (1, 0x1d00ffff, 0x495fab29, true)
        );
        for (i, bad) in [
            (1, json!("00")),
            (2, json!("zz")),
            (4, json!(["00"])),
            (5, json!("1")),
            (6, json!(7)),
        ] {
            let mut p = p.clone();
            p[i] = bad;
            assert!(parse_notify(&p).is_err(), "param {i}");
        }
        assert!(parse_notify(&p[..8]).is_err());
    }

    #[test]
    fn configure_result_sets_the_mask_only_when_offered() {
        let mut s = Session::default();
        s.configured(&json!({"version-rolling": false}));
        assert_eq!(s.version_mask, 0);
        s.configured(&json!({"version-rolling": true, "version-rolling.mask": "1fffe000"}));
        assert_eq!(s.version_mask, 0x1fffe000);
        // Never more than we asked for.
        s.configured(&json!({"version-rolling": true, "version-rolling.mask": "ffffffff"}));
        assert_eq!(s.version_mask, VERSION_ROLLING_MASK);
        s.configured(&json!({"version-rolling": true}));
        assert_eq!(s.version_mask, 0);
    }

    #[test]
    fn subscribe_result_is_read_and_checked() {
        let mut s = Session::default();
        s.subscribed(&json!([[["mining.notify", "ae68"]], "08000002", 4]))
            .unwrap();
        assert_eq!(
            (s.extranonce1.clone(), s.extranonce2_size),
            (vec![8, 0, 0, 2], 4)
        );
        assert!(s.subscribed(&json!([[], "0800", 0])).is_err());
        assert!(s.subscribed(&json!([[], "zz", 4])).is_err());
        assert!(s.subscribed(&json!(null)).is_err());
    }

    #[test]
    fn submit_answers_are_classified() {
        assert_eq!(
            share_outcome(&json!(true), &Value::Null),
            ShareOutcome::Accepted
        );
        assert!(matches!(
            share_outcome(&Value::Null, &json!([21, "job not found (stale)", null])),
            ShareOutcome::Stale(_)
        ));
        assert!(matches!(
            share_outcome(&json!(false), &json!([23, "low difficulty share", null])),
            ShareOutcome::Rejected(m) if m.contains("low difficulty")
        ));
        assert!(matches!(
            share_outcome(
                &json!(false),
                &json!({"code": -1, "message": "Stale share"})
            ),
            ShareOutcome::Stale(_)
        ));
        assert!(matches!(
            share_outcome(&json!(false), &Value::Null),
            ShareOutcome::Rejected(_)
        ));
    }
}
