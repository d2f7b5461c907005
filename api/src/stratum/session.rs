//! One Stratum connection: reads request lines, answers them, and sends work when the
//! shared [`Work`] changes or its share difficulty is retargeted.

use super::accounting::{ConnectionGuard, Outcome, Reason, WorkerHandle};
use super::protocol::*;
use super::vardiff::Vardiff;
use super::version::{self, Configured};
use super::work::{JobTemplate, Work};
use super::{Shared, EXTRANONCE1_SIZE, EXTRANONCE2_SIZE, MAX_LINE};
use engine::{Address, BlockAccepted, EngineError};
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Jobs kept per connection: a miner may still submit for a job that a mempool refresh
/// or a retarget replaced (same tip), so a few stay valid until the tip changes.
const JOBS_KEPT: usize = 8;
/// A miner that does not read its socket for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Remembered submissions per connection (duplicate detection), oldest forgotten first:
/// 28 bytes each, so a connection's memory stays bounded (~1 MiB with the set).
const MAX_SEEN: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("write failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("client stopped reading")]
    WriteTimeout,
}

/// A unit of work sent to the miner.
struct Job {
    /// The job id is this number in hex.
    number: u64,
    template: Arc<JobTemplate>,
    /// The share difficulty in force when the job was sent.
    difficulty: f64,
}

/// A submission: (job number, extranonce2, ntime, nonce, rolled version bits).
type ShareKey = (u64, [u8; EXTRANONCE2_SIZE], u32, u32, u32);

/// Submissions already seen, bounded (oldest forgotten first).
#[derive(Default)]
struct Seen {
    set: HashSet<ShareKey>,
    order: VecDeque<ShareKey>,
}

impl Seen {
    fn contains(&self, k: &ShareKey) -> bool {
        self.set.contains(k)
    }

    fn insert(&mut self, k: ShareKey) {
        if self.set.insert(k) {
            self.order.push_back(k);
        }
        while self.order.len() > MAX_SEEN {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

enum LineEvent {
    Line(Vec<u8>),
    TooLong,
}

/// Reads newline-terminated lines of at most [`MAX_LINE`] bytes and hands them over; a
/// longer line ends the connection.
async fn read_lines(rd: OwnedReadHalf, tx: mpsc::Sender<LineEvent>) {
    let mut reader = BufReader::new(rd);
    loop {
        let mut buf = Vec::new();
        let limit = MAX_LINE as u64 + 1;
        let n = match (&mut reader).take(limit).read_until(b'\n', &mut buf).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
            let _ = tx.send(LineEvent::TooLong).await;
            return;
        }
        // A final line without a newline at EOF is still a line.
        if tx.send(LineEvent::Line(buf)).await.is_err() {
            return;
        }
    }
}

pub struct Connection {
    shared: Arc<Shared>,
    /// The miner's address, for log lines.
    peer: SocketAddr,
    extranonce1: [u8; EXTRANONCE1_SIZE],
    subscribed: bool,
    address: Option<Address>,
    worker: Option<WorkerHandle>,
    /// The newest published work (None until the first template is built).
    current: Option<Arc<Work>>,
    jobs: VecDeque<Job>,
    job_counter: u64,
    /// The share difficulty last sent.
    sent_difficulty: Option<f64>,
    vardiff: Vardiff,
    configured: Configured,
    seen: Seen,
    started: Instant,
    _open: ConnectionGuard,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>, peer: SocketAddr) -> Connection {
        let c = &shared.config;
        let vardiff = Vardiff::new(c.start_difficulty, c.share_seconds, 0.0);
        Connection {
            peer,
            extranonce1: shared.next_extranonce1(),
            _open: shared.accounting.connection(),
            shared,
            subscribed: false,
            address: None,
            worker: None,
            current: None,
            jobs: VecDeque::new(),
            job_counter: 0,
            sent_difficulty: None,
            vardiff,
            configured: Configured::default(),
            seen: Seen::default(),
            started: Instant::now(),
        }
    }

    /// The authorized worker's name, for log lines ("" before authorization).
    fn worker_name(&self) -> &str {
        self.worker.as_ref().map(WorkerHandle::name).unwrap_or("")
    }

    /// Seconds since the connection opened (vardiff's clock).
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub async fn run(mut self, stream: TcpStream) -> Result<(), ConnError> {
        let (rd, mut wr) = stream.into_split();
        let (line_tx, mut lines) = mpsc::channel(16);
        let reader = tokio::spawn(read_lines(rd, line_tx));
        let mut work = self.shared.work.clone();
        self.current = work.borrow_and_update().clone();
        let config = self.shared.config.clone();
        let tick_every = Duration::from_secs_f64((config.share_seconds / 2.0).clamp(0.1, 5.0));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let auth_deadline = tokio::time::sleep(config.auth_timeout);
        tokio::pin!(auth_deadline);
        let idle = tokio::time::sleep(config.idle_timeout);
        tokio::pin!(idle);
        let result = loop {
            let out = tokio::select! {
                ev = lines.recv() => match ev {
                    Some(LineEvent::Line(bytes)) => {
                        idle.as_mut().reset(tokio::time::Instant::now() + config.idle_timeout);
                        self.handle_line(&bytes).await
                    }
                    Some(LineEvent::TooLong) => {
                        let msg = error_response(&Value::Null, ERR_OTHER, "line too long; closing");
                        let _ = write_all(&mut wr, &[msg]).await;
                        break Ok(());
                    }
                    None => break Ok(()),
                },
                changed = work.changed() => {
                    if changed.is_err() {
                        // The node is shutting down: no more work will come.
                        break Ok(());
                    }
                    self.current = work.borrow_and_update().clone();
                    self.send_work(false)
                }
                _ = tick.tick() => self.tick(),
                _ = &mut auth_deadline, if self.address.is_none() => {
                    let msg = error_response(&Value::Null, ERR_UNAUTHORIZED, "not authorized in time; closing");
                    let _ = write_all(&mut wr, &[msg]).await;
                    break Ok(());
                }
                _ = &mut idle => {
                    let msg = error_response(&Value::Null, ERR_OTHER, "idle for too long; closing");
                    let _ = write_all(&mut wr, &[msg]).await;
                    break Ok(());
                }
            };
            if let Err(e) = write_all(&mut wr, &out).await {
                break Err(e);
            }
        };
        reader.abort();
        result
    }

    async fn handle_line(&mut self, bytes: &[u8]) -> Vec<Value> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Vec::new();
        }
        let req = match parse_request(bytes) {
            Ok(r) => r,
            Err(e) => return vec![e],
        };
        let (id, params) = (&req.id, &req.params[..]);
        match req.method.as_str() {
            "mining.subscribe" => self.subscribe(id),
            "mining.authorize" => self.authorize(id, params),
            "mining.submit" => self.submit(id, params).await,
            // extranonce1 never changes during a connection, so `mining.set_extranonce`
            // is never needed; agreeing costs nothing.
            "mining.extranonce.subscribe" => {
                self.configured.subscribe_extranonce = true;
                vec![response(id, json!(true))]
            }
            "mining.configure" => self.configure(id, params),
            "mining.suggest_difficulty" => self.suggest_difficulty(id, params),
            other => vec![error_response(
                id,
                ERR_OTHER,
                &format!("unknown method `{other}`"),
            )],
        }
    }

    fn subscribe(&mut self, id: &Value) -> Vec<Value> {
        self.subscribed = true;
        let en1 = hex::encode(self.extranonce1);
        let mut out = vec![response(
            id,
            json!([
                [["mining.set_difficulty", en1], ["mining.notify", en1]],
                en1,
                EXTRANONCE2_SIZE
            ]),
        )];
        // Some miners authorize before subscribing; they get work now.
        out.extend(self.send_work(true));
        out
    }

    fn configure(&mut self, id: &Value, params: &[Value]) -> Vec<Value> {
        match version::configure(params) {
            Ok((result, agreed)) => {
                if let Some(d) = agreed.minimum_difficulty {
                    self.vardiff.set_floor(d);
                }
                let keep_extranonce = self.configured.subscribe_extranonce;
                self.configured = agreed;
                self.configured.subscribe_extranonce |= keep_extranonce;
                vec![response(id, result)]
            }
            Err(e) => vec![error_response(id, ERR_OTHER, &e)],
        }
    }

    fn suggest_difficulty(&mut self, id: &Value, params: &[Value]) -> Vec<Value> {
        let Some(d) = params.first().and_then(Value::as_f64) else {
            return vec![error_response(id, ERR_OTHER, "difficulty must be a number")];
        };
        let now = self.now();
        self.vardiff.suggest(d, now);
        let mut out = vec![response(id, json!(true))];
        // Already working: the suggestion applies from the next job, sent now.
        out.extend(self.resend_job());
        out
    }

    fn authorize(&mut self, id: &Value, params: &[Value]) -> Vec<Value> {
        let Some(worker) = params.first().and_then(Value::as_str) else {
            return vec![error_response(
                id,
                ERR_OTHER,
                "worker name must be a string",
            )];
        };
        // `bp1...address.rig` is common practice; bech32 never contains a dot.
        let addr_part = worker.split('.').next().unwrap_or(worker);
        let address: Address = match addr_part.parse() {
            Ok(a) => a,
            Err(e) => {
                return vec![json!({
                    "id": id,
                    "result": false,
                    "error": error_value(
                        ERR_UNAUTHORIZED,
                        &format!("the worker name must be a payout address (bp1...): {e}"),
                    ),
                })]
            }
        };
        if self.worker.as_ref().map(WorkerHandle::name) != Some(worker) {
            // Drop the old record's link first: re-authorizing as the same name must not
            // count two connections.
            self.worker = None;
            let d = self.difficulty_now();
            self.worker = Some(self.shared.accounting.attach(worker, address, d));
            tracing::info!(peer = %self.peer, worker, difficulty = d, "stratum: miner authorized");
        }
        let changed = self.address != Some(address);
        self.address = Some(address);
        let mut out = vec![response(id, json!(true))];
        if changed {
            // Jobs paying the old address are void: a clean job pays the new one.
            self.jobs.clear();
            out.extend(self.send_work(true));
        }
        out
    }

    /// The share difficulty a job sent now would get.
    fn difficulty_now(&self) -> f64 {
        let ceiling = self
            .current
            .as_ref()
            .map_or(f64::MAX, |w| w.network_difficulty);
        self.vardiff.effective(ceiling)
    }

    /// Sends a job on the current work if it is new to this connection (or `force`),
    /// clean when it is on another tip than the last job.
    fn send_work(&mut self, force: bool) -> Vec<Value> {
        let (Some(address), true, Some(work)) = (self.address, self.subscribed, &self.current)
        else {
            return Vec::new();
        };
        let template = work.for_address(address);
        let last = self.jobs.back();
        if !force && last.is_some_and(|j| Arc::ptr_eq(&j.template, &template)) {
            return Vec::new();
        }
        let clean = last.is_none_or(|j| j.template.template.header.prev_hash != work.prev_hash());
        self.push_job(template, clean)
    }

    /// A fresh job on the last template (after a retarget: the new difficulty takes
    /// effect with it).
    fn resend_job(&mut self) -> Vec<Value> {
        match self.jobs.back() {
            Some(j) => {
                let t = j.template.clone();
                self.push_job(t, false)
            }
            None => Vec::new(),
        }
    }

    fn push_job(&mut self, template: Arc<JobTemplate>, clean: bool) -> Vec<Value> {
        let ceiling = engine::query::difficulty(template.template.header.bits);
        let difficulty = self.vardiff.effective(ceiling);
        let mut out = Vec::new();
        if self.sent_difficulty != Some(difficulty) {
            self.sent_difficulty = Some(difficulty);
            if let Some(w) = &self.worker {
                w.set_difficulty(difficulty);
            }
            out.push(notification("mining.set_difficulty", json!([difficulty])));
        }
        self.job_counter += 1;
        if clean {
            self.jobs.clear();
        }
        // Each job carries the current time, so a job re-sent after a retarget differs
        // from the last one in its header: pooler/cpuminer keeps mining its current work
        // (at the old share target) while a new job's first 76 header bytes equal it,
        // and so never saw a lowered difficulty on a quiet tip.
        let now = u32::try_from(self.shared.engine.now()).unwrap_or(u32::MAX);
        out.push(notification(
            "mining.notify",
            template.notify_params(&format!("{:x}", self.job_counter), clean, now),
        ));
        self.jobs.push_back(Job {
            number: self.job_counter,
            template,
            difficulty,
        });
        while self.jobs.len() > JOBS_KEPT {
            self.jobs.pop_front();
        }
        out
    }

    /// The periodic vardiff check: lowers a connection that finds nothing.
    fn tick(&mut self) -> Vec<Value> {
        if self.worker.is_none() || self.jobs.is_empty() {
            return Vec::new();
        }
        let (now, ceiling) = (self.now(), self.ceiling());
        match self.vardiff.on_tick(now, ceiling) {
            Some(_) => self.resend_job(),
            None => Vec::new(),
        }
    }

    fn ceiling(&self) -> f64 {
        self.jobs.back().map_or(f64::MAX, |j| {
            engine::query::difficulty(j.template.template.header.bits)
        })
    }

    fn count(&self, outcome: Outcome) {
        match &self.worker {
            Some(w) => w.share(outcome),
            None => self.shared.accounting.anonymous(outcome),
        }
    }

    fn reject(&self, id: &Value, reason: Reason, code: i64, message: &str) -> Value {
        self.count(Outcome::Rejected(reason));
        error_response(id, code, message)
    }

    async fn submit(&mut self, id: &Value, params: &[Value]) -> Vec<Value> {
        if !self.subscribed {
            return vec![error_response(id, ERR_NOT_SUBSCRIBED, "not subscribed")];
        }
        if self.address.is_none() {
            return vec![error_response(id, ERR_UNAUTHORIZED, "unauthorized worker")];
        }
        let share = match self.parse_share(params) {
            Ok(s) => s,
            Err(e) => return vec![self.reject(id, Reason::Malformed, ERR_OTHER, &e)],
        };
        let outcome = self.check_share(id, share).await;
        let mut out = vec![outcome.0];
        if let Some(credited) = outcome.1 {
            let (now, ceiling) = (self.now(), self.ceiling());
            if self.vardiff.on_share(credited, now, ceiling).is_some() {
                out.extend(self.resend_job());
            }
        }
        out
    }

    fn parse_share(&self, params: &[Value]) -> Result<Share, String> {
        let job_id = params
            .get(1)
            .and_then(Value::as_str)
            .ok_or("job_id must be a string")?;
        let en2 = params
            .get(2)
            .and_then(Value::as_str)
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| <[u8; EXTRANONCE2_SIZE]>::try_from(b).ok())
            .ok_or(format!(
                "extranonce2 must be {EXTRANONCE2_SIZE} bytes of hex"
            ))?;
        let ntime = parse_u32_hex(params.get(3), "ntime")?;
        let nonce = parse_u32_hex(params.get(4), "nonce")?;
        let version_bits = match params.get(5) {
            None => None,
            Some(_) if self.configured.version_mask.is_none() => {
                return Err("version rolling was not negotiated (mining.configure)".into())
            }
            Some(v) => Some(parse_u32_hex(Some(v), "version bits")?),
        };
        // Our job ids are hex counters; anything else names no job (stale).
        let job = u64::from_str_radix(job_id, 16).unwrap_or(u64::MAX);
        Ok(Share {
            job,
            en2,
            ntime,
            nonce,
            version_bits,
        })
    }

    /// Checks a share; returns the response and, when accepted, the difficulty it was
    /// credited at.
    async fn check_share(&mut self, id: &Value, s: Share) -> (Value, Option<f64>) {
        let mask = self.configured.version_mask.unwrap_or(0);
        // Only the bits under the mask reach the header, so only they tell shares apart.
        let rolled_bits = s.version_bits.unwrap_or(0) & mask;
        let key = (s.job, s.en2, s.ntime, s.nonce, rolled_bits);
        // Checked before the job lookup: a share that became a block clears its own job
        // when the tip moves, and resubmitting it must still read as a duplicate.
        if self.seen.contains(&key) {
            return (
                self.reject(id, Reason::Duplicate, ERR_DUPLICATE, "duplicate share"),
                None,
            );
        }
        let Some(job) = self.jobs.iter().find(|j| j.number == s.job) else {
            self.count(Outcome::Stale);
            return (
                error_response(id, ERR_JOB_NOT_FOUND, "job not found (stale)"),
                None,
            );
        };
        let template = job.template.clone();
        let version = version::rolled(template.template.header.version, mask, rolled_bits);
        // The easier of the job's and the current difficulty: after a retarget down, a
        // miner may already apply it to the job it is on.
        let difficulty = job.difficulty.min(self.difficulty_now());
        let engine = &self.shared.engine;
        let max_time = engine
            .now()
            .saturating_add(engine.params().max_future_secs as u64);
        if s.ntime < template.template.min_time || s.ntime as u64 > max_time {
            return (
                self.reject(id, Reason::BadTime, ERR_OTHER, "ntime out of range"),
                None,
            );
        }
        let mut extra_nonce = self.extranonce1.to_vec();
        extra_nonce.extend_from_slice(&s.en2);
        let header = template.header(&extra_nonce, s.ntime, s.nonce, version);
        let hash = header.hash();
        let meets_block = header.meets_target();
        if !meets_block && !meets_difficulty(&hash, difficulty) {
            return (
                self.reject(
                    id,
                    Reason::LowDifficulty,
                    ERR_LOW_DIFFICULTY,
                    "low difficulty share",
                ),
                None,
            );
        }
        self.seen.insert(key);
        if !meets_block {
            self.count(Outcome::Accepted(difficulty));
            return (response(id, json!(true)), Some(difficulty));
        }
        let Some(block) = template.block(&extra_nonce, s.ntime, s.nonce, version) else {
            return (
                self.reject(
                    id,
                    Reason::Malformed,
                    ERR_OTHER,
                    "extra nonce does not fit the job",
                ),
                None,
            );
        };
        let engine = engine.clone();
        let submitted = tokio::task::spawn_blocking(move || engine.submit_block(block))
            .await
            .unwrap_or(Err(EngineError::Closed));
        match submitted {
            Ok(BlockAccepted::Connected { height, .. })
            | Ok(BlockAccepted::Reorganized { height, .. }) => {
                tracing::info!(%hash, height, worker = self.worker_name(), "stratum: block found");
                self.count(Outcome::Block(difficulty));
                (response(id, json!(true)), Some(difficulty))
            }
            Ok(BlockAccepted::SideChain { .. }) => {
                tracing::info!(
                    %hash,
                    worker = self.worker_name(),
                    "stratum: block found but the tip moved first"
                );
                self.count(Outcome::Accepted(difficulty));
                (response(id, json!(true)), Some(difficulty))
            }
            Ok(BlockAccepted::Duplicate { .. }) => (
                self.reject(
                    id,
                    Reason::Duplicate,
                    ERR_DUPLICATE,
                    "duplicate share (block known)",
                ),
                None,
            ),
            Err(e) => (
                self.reject(
                    id,
                    Reason::BlockRejected,
                    ERR_OTHER,
                    &format!("block rejected: {e}"),
                ),
                None,
            ),
        }
    }
}

/// A parsed `mining.submit`.
struct Share {
    job: u64,
    en2: [u8; EXTRANONCE2_SIZE],
    ntime: u32,
    nonce: u32,
    version_bits: Option<u32>,
}

async fn write_all(wr: &mut OwnedWriteHalf, msgs: &[Value]) -> Result<(), ConnError> {
    if msgs.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    for m in msgs {
        // Serialising a `Value` cannot fail (string keys only).
        if serde_json::to_writer(&mut buf, m).is_ok() {
            buf.push(b'\n');
        }
    }
    tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&buf))
        .await
        .map_err(|_| ConnError::WriteTimeout)??;
    Ok(())
}
