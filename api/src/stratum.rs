//! Stratum V1 mining server: newline-delimited JSON-RPC over TCP, so standard SHA-256d
//! miners (cpuminer, cgminer, bfgminer, ASICs) mine blocks on this node unchanged.
//!
//! Session: `mining.subscribe` → `[[["mining.set_difficulty", id], ["mining.notify", id]],
//! extranonce1, 4]`; `mining.authorize [worker, password]` where the worker name is the
//! payout address (`bp1...`, optionally followed by `.rigname`); then the server sends
//! `mining.set_difficulty [d]` and `mining.notify [...]` and takes `mining.submit`.
//!
//! The coinbase carries an 8-byte extra nonce = extranonce1 (4 bytes, unique per
//! connection, so two miners never search the same space) ‖ extranonce2 (4 bytes, rolled
//! by the miner). The coinbase body is `coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2`, its
//! txid SHA-256d of that, and the merkle root the fold of `merkle_branch` over it
//! (`root = SHA-256d(root ‖ branch[i])`, branch entries in internal byte order), exactly
//! as Bitcoin pools do it.
//!
//! Byte-order conventions (checked against pooler's cpuminer, `stratum_gen_work` and
//! `submit_upstream_work`, which cgminer and ASIC firmware share):
//! - `prevhash`: the previous block hash in *internal* order (as it sits in the header)
//!   with the bytes of each 4-byte word reversed. cpuminer does
//!   `data[1 + i] = le32dec(prevhash + 4i)` and hashes `data` as big-endian words, so
//!   reversing each word back gives the header bytes.
//! - `version`, `nbits`, `ntime`: big-endian hex of the u32 value (`format!("{:08x}")`);
//!   in the header they are little-endian.
//! - `merkle_branch`: hex of each 32-byte hash in internal order (not reversed).
//! - submit's `ntime` and `nonce`: big-endian hex of the u32 value as the miner prints it
//!   (cpuminer: `le32enc(&nonce, data[19]); bin2hex(...)`, where `data[19]` is the header's
//!   nonce word read big-endian), i.e. the header holds `u32::from_str_radix(nonce, 16)`
//!   as little-endian bytes. `extranonce2` is raw bytes in coinbase order.
//! - Difficulty: share difficulty d means target = diff1 / d with the Bitcoin diff1
//!   target `0x00000000ffff0000…` (cpuminer's `diff_to_target` for sha256d). We send the
//!   network difficulty, so every share a miner reports is (up to float rounding) a block
//!   candidate; a hash that meets the share target but not the block target counts as an
//!   accepted share and is not submitted.

use engine::mining::BlockTemplate;
use engine::notify::NotificationKind;
use engine::{Address, BlockAccepted, Engine, EngineError, Hash256};
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;

/// Longest request line; a longer one closes the connection (no legitimate Stratum
/// message comes near it, and buffering without bound would let a client exhaust memory).
pub const MAX_LINE: usize = 16 * 1024;
/// Bytes of extranonce1 (per connection) and extranonce2 (rolled by the miner).
pub const EXTRANONCE1_SIZE: usize = 4;
pub const EXTRANONCE2_SIZE: usize = 4;
/// Jobs kept per connection: a miner may still submit for a job that a mempool refresh
/// replaced (same tip), so a few stay valid until the tip changes.
const JOBS_KEPT: usize = 8;
/// Shortest interval between mempool-driven job refreshes.
const MEMPOOL_REFRESH: Duration = Duration::from_secs(5);
/// A connection that has not authorized by then is dropped.
const AUTH_TIMEOUT: Duration = Duration::from_secs(120);
/// A miner that does not read its socket for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on remembered submissions per connection (for duplicate detection).
const MAX_SEEN: usize = 100_000;

/// Stratum's standard error codes.
const ERR_OTHER: i64 = 20;
const ERR_JOB_NOT_FOUND: i64 = 21;
const ERR_DUPLICATE: i64 = 22;
const ERR_LOW_DIFFICULTY: i64 = 23;
const ERR_UNAUTHORIZED: i64 = 24;
const ERR_NOT_SUBSCRIBED: i64 = 25;

/// Bitcoin's difficulty-1 target, 0xffff · 2^208, as a float.
fn diff1() -> f64 {
    65535.0 * 2f64.powi(208)
}

struct Shared {
    engine: Engine,
    next_extranonce1: AtomicU32,
}

/// Accepts Stratum connections on `listener` until the task is dropped. Accept errors
/// (such as running out of file descriptors) are logged and retried, not fatal.
pub async fn serve(engine: Engine, listener: TcpListener) -> std::io::Result<()> {
    // Start the extranonce1 counter somewhere different on every start, so miners that
    // reconnect after a restart do not repeat the coinbases they searched before.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(1);
    let shared = Arc::new(Shared {
        engine,
        next_extranonce1: AtomicU32::new(seed),
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "stratum server listening");
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("stratum accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let en1 = shared
                .next_extranonce1
                .fetch_add(1, Ordering::Relaxed)
                .to_be_bytes();
            let conn = Connection::new(shared, en1);
            tracing::debug!(%peer, extranonce1 = %hex::encode(en1), "stratum connection");
            if let Err(e) = conn.run(stream).await {
                tracing::debug!(%peer, "stratum connection closed: {e}");
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("write failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("client stopped reading")]
    WriteTimeout,
}

/// A unit of work sent to the miner.
struct Job {
    id: String,
    template: BlockTemplate,
    coinb1: Vec<u8>,
    coinb2: Vec<u8>,
    branch: Vec<Hash256>,
}

impl Job {
    fn notify_params(&self, clean: bool) -> Value {
        let h = &self.template.header;
        json!([
            self.id,
            stratum_prevhash(&h.prev_hash),
            hex::encode(&self.coinb1),
            hex::encode(&self.coinb2),
            self.branch
                .iter()
                .map(|b| hex::encode(b.0))
                .collect::<Vec<_>>(),
            format!("{:08x}", h.version),
            format!("{:08x}", h.bits.0),
            format!("{:08x}", h.time),
            clean,
        ])
    }
}

/// The previous-block hash as Stratum sends it: internal byte order with each 4-byte word
/// reversed (see the module docs).
pub fn stratum_prevhash(hash: &Hash256) -> String {
    let mut b = hash.0;
    for word in b.chunks_exact_mut(4) {
        word.reverse();
    }
    hex::encode(b)
}

/// A hash's difficulty: diff1 over the hash read as a little-endian 256-bit number.
pub fn hash_difficulty(hash: &Hash256) -> f64 {
    let value = hash
        .0
        .iter()
        .rev()
        .fold(0.0f64, |acc, b| acc * 256.0 + *b as f64);
    if value == 0.0 {
        f64::INFINITY
    } else {
        diff1() / value
    }
}

/// Parses 8 hex digits as a big-endian u32 (Stratum's `ntime` and `nonce`).
fn parse_u32_hex(v: Option<&Value>, what: &str) -> Result<u32, String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} must be a hex string"))?;
    if s.len() != 8 {
        return Err(format!("{what} must be 8 hex digits"));
    }
    u32::from_str_radix(s, 16).map_err(|_| format!("{what} must be 8 hex digits"))
}

fn error_value(code: i64, message: &str) -> Value {
    json!([code, message, null])
}

fn response(id: &Value, result: Value) -> Value {
    json!({"id": id, "result": result, "error": null})
}

fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({"id": id, "result": null, "error": error_value(code, message)})
}

fn notification(method: &str, params: Value) -> Value {
    json!({"id": null, "method": method, "params": params})
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

struct Connection {
    shared: Arc<Shared>,
    extranonce1: [u8; EXTRANONCE1_SIZE],
    subscribed: bool,
    address: Option<Address>,
    jobs: VecDeque<Arc<Job>>,
    job_counter: u64,
    /// The share difficulty last sent.
    difficulty: Option<f64>,
    seen: HashSet<(String, [u8; EXTRANONCE2_SIZE], u32, u32)>,
    mempool_dirty: bool,
}

impl Connection {
    fn new(shared: Arc<Shared>, extranonce1: [u8; EXTRANONCE1_SIZE]) -> Connection {
        Connection {
            shared,
            extranonce1,
            subscribed: false,
            address: None,
            jobs: VecDeque::new(),
            job_counter: 0,
            difficulty: None,
            seen: HashSet::new(),
            mempool_dirty: false,
        }
    }

    async fn run(mut self, stream: TcpStream) -> Result<(), ConnError> {
        let (rd, mut wr) = stream.into_split();
        let (line_tx, mut lines) = mpsc::channel(16);
        let reader = tokio::spawn(read_lines(rd, line_tx));
        let mut notes = self.shared.engine.subscribe();
        let mut refresh = tokio::time::interval(MEMPOOL_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let auth_deadline = tokio::time::sleep(AUTH_TIMEOUT);
        tokio::pin!(auth_deadline);
        let result = loop {
            let out = tokio::select! {
                ev = lines.recv() => match ev {
                    Some(LineEvent::Line(bytes)) => self.handle_line(&bytes).await,
                    Some(LineEvent::TooLong) => {
                        let msg = error_response(&Value::Null, ERR_OTHER, "line too long; closing");
                        let _ = write_all(&mut wr, &[msg]).await;
                        break Ok(());
                    }
                    None => break Ok(()),
                },
                n = notes.recv() => {
                    let mut tip_changed = false;
                    let mut engine_closed = false;
                    let mut next = Some(n);
                    // Drain what is queued so a burst (a reorganisation, a block's worth
                    // of mempool removals) produces one job, not one per event.
                    while let Some(n) = next.take() {
                        match n {
                            Ok(note) => match note.kind {
                                NotificationKind::BlockConnected { .. }
                                | NotificationKind::BlockDisconnected { .. }
                                | NotificationKind::Reset => tip_changed = true,
                                NotificationKind::TxAdded { .. }
                                | NotificationKind::TxRemoved { .. } => self.mempool_dirty = true,
                                _ => {}
                            },
                            Err(RecvError::Lagged(_)) => tip_changed = true,
                            Err(RecvError::Closed) => engine_closed = true,
                        }
                        next = match notes.try_recv() {
                            Ok(n) => Some(Ok(n)),
                            Err(TryRecvError::Lagged(k)) => Some(Err(RecvError::Lagged(k))),
                            Err(_) => None,
                        };
                    }
                    if engine_closed {
                        // The node is shutting down: no more work will come.
                        break Ok(());
                    }
                    if tip_changed { self.refresh_job(true).await } else { Vec::new() }
                }
                _ = refresh.tick() => {
                    if self.mempool_dirty { self.refresh_job(false).await } else { Vec::new() }
                }
                _ = &mut auth_deadline, if self.address.is_none() => {
                    let msg = error_response(&Value::Null, ERR_UNAUTHORIZED, "not authorized in time; closing");
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
        let req: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                return vec![error_response(
                    &Value::Null,
                    ERR_OTHER,
                    &format!("parse error: {e}"),
                )]
            }
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let Some(method) = req.get("method").and_then(Value::as_str) else {
            return vec![error_response(&id, ERR_OTHER, "missing method")];
        };
        let params = match req.get("params") {
            Some(Value::Array(p)) => p.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return vec![error_response(&id, ERR_OTHER, "params must be an array")],
        };
        match method {
            "mining.subscribe" => self.subscribe(&id).await,
            "mining.authorize" => self.authorize(&id, &params).await,
            "mining.submit" => vec![self.submit(&id, &params).await],
            // We never change extranonce1 mid-connection, so agreeing costs nothing.
            "mining.extranonce.subscribe" => vec![response(&id, json!(true))],
            // Version rolling (BIP 310) is not offered: the header version is fixed.
            "mining.configure" => vec![response(&id, json!({"version-rolling": false}))],
            // Our share difficulty is the network's; a suggestion does not change it.
            "mining.suggest_difficulty" => vec![response(&id, json!(true))],
            other => vec![error_response(
                &id,
                ERR_OTHER,
                &format!("unknown method `{other}`"),
            )],
        }
    }

    async fn subscribe(&mut self, id: &Value) -> Vec<Value> {
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
        if self.address.is_some() {
            out.extend(self.refresh_job(true).await);
        }
        out
    }

    async fn authorize(&mut self, id: &Value, params: &[Value]) -> Vec<Value> {
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
        let changed = self.address != Some(address);
        self.address = Some(address);
        let mut out = vec![response(id, json!(true))];
        if self.subscribed && changed {
            out.extend(self.refresh_job(true).await);
        }
        out
    }

    /// Builds a job on the current tip and returns the messages announcing it. `clean`
    /// asks for a tip check: jobs on an old tip are dropped and the miner is told to
    /// abandon them. Nothing is sent when the tip did not actually change.
    async fn refresh_job(&mut self, clean: bool) -> Vec<Value> {
        let (Some(address), true) = (self.address, self.subscribed) else {
            return Vec::new();
        };
        let engine = self.shared.engine.clone();
        let built = tokio::task::spawn_blocking(move || {
            engine.block_template(address, vec![0; EXTRANONCE1_SIZE + EXTRANONCE2_SIZE])
        })
        .await;
        let template = match built {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::warn!("stratum: cannot build a template: {e}");
                return Vec::new();
            }
            Err(e) => {
                tracing::warn!("stratum: template task failed: {e}");
                return Vec::new();
            }
        };
        self.mempool_dirty = false;
        let last_prev = self.jobs.back().map(|j| j.template.header.prev_hash);
        let new_tip = last_prev != Some(template.header.prev_hash);
        if clean && !new_tip {
            return Vec::new();
        }
        let (coinb1, coinb2) = template.coinbase_parts();
        let branch = template.merkle_branch();
        self.job_counter += 1;
        let job = Arc::new(Job {
            id: format!("{:x}", self.job_counter),
            template,
            coinb1,
            coinb2,
            branch,
        });
        if new_tip {
            self.jobs.clear();
        }
        self.jobs.push_back(job.clone());
        while self.jobs.len() > JOBS_KEPT {
            self.jobs.pop_front();
        }
        let mut out = Vec::new();
        let difficulty = engine::query::difficulty(job.template.header.bits);
        if self.difficulty != Some(difficulty) {
            self.difficulty = Some(difficulty);
            out.push(notification("mining.set_difficulty", json!([difficulty])));
        }
        out.push(notification("mining.notify", job.notify_params(new_tip)));
        out
    }

    async fn submit(&mut self, id: &Value, params: &[Value]) -> Value {
        if !self.subscribed {
            return error_response(id, ERR_NOT_SUBSCRIBED, "not subscribed");
        }
        if self.address.is_none() {
            return error_response(id, ERR_UNAUTHORIZED, "unauthorized worker");
        }
        if params.len() > 5 {
            return error_response(id, ERR_OTHER, "version rolling is not supported");
        }
        let Some(job_id) = params.get(1).and_then(Value::as_str) else {
            return error_response(id, ERR_OTHER, "job_id must be a string");
        };
        let en2 = match params
            .get(2)
            .and_then(Value::as_str)
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| <[u8; EXTRANONCE2_SIZE]>::try_from(b).ok())
        {
            Some(e) => e,
            None => {
                return error_response(
                    id,
                    ERR_OTHER,
                    &format!("extranonce2 must be {EXTRANONCE2_SIZE} bytes of hex"),
                )
            }
        };
        let (ntime, nonce) = match (
            parse_u32_hex(params.get(3), "ntime"),
            parse_u32_hex(params.get(4), "nonce"),
        ) {
            (Ok(t), Ok(n)) => (t, n),
            (Err(e), _) | (_, Err(e)) => return error_response(id, ERR_OTHER, &e),
        };
        // Checked before the job lookup: a share that became a block clears its own job
        // when the tip moves, and resubmitting it must still read as a duplicate.
        let key = (job_id.to_string(), en2, ntime, nonce);
        if self.seen.contains(&key) {
            return error_response(id, ERR_DUPLICATE, "duplicate share");
        }
        let Some(job) = self.jobs.iter().find(|j| j.id == job_id).cloned() else {
            return error_response(id, ERR_JOB_NOT_FOUND, "job not found (stale)");
        };
        let engine = &self.shared.engine;
        let max_time = engine
            .now()
            .saturating_add(engine.params().max_future_secs as u64);
        if ntime < job.template.min_time || ntime as u64 > max_time {
            return error_response(id, ERR_OTHER, "ntime out of range");
        }
        let mut extra_nonce = self.extranonce1.to_vec();
        extra_nonce.extend_from_slice(&en2);
        let Some(block) = job.template.solve_with(&extra_nonce, ntime, nonce) else {
            return error_response(id, ERR_OTHER, "extra nonce does not fit the job");
        };
        let hash = block.hash();
        let meets_block = block.header.meets_target();
        let share_difficulty = self.difficulty.unwrap_or(0.0);
        // Float rounding on both sides: accept a share within a millionth of the target.
        if !meets_block && hash_difficulty(&hash) < share_difficulty * (1.0 - 1e-6) {
            return error_response(id, ERR_LOW_DIFFICULTY, "low difficulty share");
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.clear();
        }
        self.seen.insert(key);
        if !meets_block {
            return response(id, json!(true));
        }
        let engine = engine.clone();
        let submitted = tokio::task::spawn_blocking(move || engine.submit_block(block))
            .await
            .unwrap_or(Err(EngineError::Closed));
        match submitted {
            Ok(BlockAccepted::Connected { height, .. })
            | Ok(BlockAccepted::Reorganized { height, .. }) => {
                tracing::info!(%hash, height, "stratum: block found");
                response(id, json!(true))
            }
            Ok(BlockAccepted::SideChain { .. }) => {
                tracing::info!(%hash, "stratum: block found but the tip moved first");
                response(id, json!(true))
            }
            Ok(BlockAccepted::Duplicate { .. }) => {
                error_response(id, ERR_DUPLICATE, "duplicate share (block known)")
            }
            Err(e) => error_response(id, ERR_OTHER, &format!("block rejected: {e}")),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use engine::engine::EngineConfig;
    use engine::hash::sha256d;
    use engine::params::ChainParams;
    use engine::pow::CompactTarget;
    use engine::testkit::{outpoint, TestKey};
    use std::sync::atomic::AtomicU64;
    use tokio::io::Lines;

    fn fast_engine() -> Engine {
        let mut p = ChainParams::dev();
        p.initial_bits = CompactTarget(0x207fffff);
        p.coinbase_maturity = 2;
        let now = Arc::new(AtomicU64::new(1_800_000_000));
        let mut c = EngineConfig::new(p);
        c.clock = Arc::new(move || now.fetch_add(1, Ordering::SeqCst));
        Engine::in_memory(c).expect("in-memory engine")
    }

    /// A Stratum client as a miner writes it: requests with ids, notifications queued.
    struct Client {
        lines: Lines<BufReader<OwnedReadHalf>>,
        wr: OwnedWriteHalf,
        next_id: u64,
        queued: VecDeque<Value>,
    }

    impl Client {
        async fn connect(addr: std::net::SocketAddr) -> Client {
            let (rd, wr) = TcpStream::connect(addr).await.unwrap().into_split();
            Client {
                lines: BufReader::new(rd).lines(),
                wr,
                next_id: 1,
                queued: VecDeque::new(),
            }
        }

        /// Write errors are ignored: the server may close first (oversized line test).
        async fn send_raw(&mut self, line: &str) {
            let _ = self.wr.write_all(line.as_bytes()).await;
            let _ = self.wr.write_all(b"\n").await;
        }

        /// The next message, or None once the server closed the connection.
        async fn recv(&mut self) -> Option<Value> {
            let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
                .await
                .expect("server answers in time")
                .ok()??;
            Some(serde_json::from_str(&line).expect("server sends JSON lines"))
        }

        async fn call(&mut self, method: &str, params: Value) -> Value {
            let id = self.next_id;
            self.next_id += 1;
            let req = json!({"id": id, "method": method, "params": params});
            self.send_raw(&req.to_string()).await;
            loop {
                let msg = self.recv().await.expect("connection open");
                if msg["id"] == json!(id) {
                    return msg;
                }
                self.queued.push_back(msg);
            }
        }

        async fn notification(&mut self, method: &str) -> Value {
            if let Some(i) = self
                .queued
                .iter()
                .position(|m| m["method"] == json!(method))
            {
                return self.queued.remove(i).unwrap()["params"].clone();
            }
            loop {
                let msg = self.recv().await.expect("connection open");
                if msg["method"] == json!(method) {
                    return msg["params"].clone();
                }
                self.queued.push_back(msg);
            }
        }
    }

    fn unhex(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().expect("hex string")).expect("valid hex")
    }

    /// Searches a nonce exactly as pooler's cpuminer does: the header as twenty 32-bit
    /// words hashed big-endian, version/prevhash/ntime/nbits read with `le32dec` from the
    /// decoded hex, the merkle root with `be32dec`, and the nonce and ntime submitted as
    /// the hex of `le32enc(word)`. `want_block` picks a winning or a losing nonce.
    fn search(notify: &Value, en1: &[u8], en2: &[u8], want_block: bool) -> (Value, Hash256) {
        let le32dec = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
        let be32dec = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
        let coinbase = [
            unhex(&notify[2]),
            en1.to_vec(),
            en2.to_vec(),
            unhex(&notify[3]),
        ]
        .concat();
        let mut root = sha256d(&coinbase);
        for b in notify[4].as_array().unwrap() {
            root = sha256d(&[root.to_vec(), unhex(b)].concat());
        }
        let prev = unhex(&notify[1]);
        let mut data = [0u32; 20];
        data[0] = le32dec(&unhex(&notify[5]));
        for i in 0..8 {
            data[1 + i] = le32dec(&prev[4 * i..4 * i + 4]);
            data[9 + i] = be32dec(&root[4 * i..4 * i + 4]);
        }
        data[17] = le32dec(&unhex(&notify[7]));
        data[18] = le32dec(&unhex(&notify[6]));
        let nbits = u32::from_str_radix(notify[6].as_str().unwrap(), 16).unwrap();
        let target = CompactTarget(nbits).to_target().unwrap();
        for n in 0u32.. {
            data[19] = n;
            let header: Vec<u8> = data.iter().flat_map(|w| w.to_be_bytes()).collect();
            let hash = Hash256::sha256d(&header);
            if target.is_met_by(&hash) == want_block {
                let submit = json!([
                    "worker",
                    notify[0],
                    hex::encode(en2),
                    hex::encode(data[17].to_le_bytes()),
                    hex::encode(data[19].to_le_bytes()),
                ]);
                return (submit, hash);
            }
        }
        unreachable!("the easiest target is met within a few nonces")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_miner_gets_work_and_its_share_becomes_a_block() {
        let engine = fast_engine();
        let (alice, miner) = (TestKey::new(1), TestKey::new(7));
        let mut first = None;
        for _ in 0..2 {
            let b = engine
                .block_template(alice.address(), vec![])
                .unwrap()
                .mine_cpu();
            engine.submit_block_async(b.clone()).await.unwrap();
            first.get_or_insert(b);
        }
        // A mempool transaction, so the job carries a non-empty merkle branch.
        let cb = first.unwrap().txs[0].txid();
        let pay = alice.spend(&[outpoint(cb, 0)], &[(alice.address(), 7)]);
        engine.submit_tx_async(pay.clone()).await.unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(engine.clone(), listener));
        let mut c = Client::connect(addr).await;

        // A bad line gets an error and the connection stays usable.
        c.send_raw("this is not json").await;
        let err = c.recv().await.unwrap();
        assert_eq!(err["error"][0], json!(ERR_OTHER), "{err}");
        assert_eq!(err["id"], Value::Null);
        let r = c.call("mining.bogus", json!([])).await;
        assert_eq!(r["error"][0], json!(ERR_OTHER), "{r}");

        let r = c.call("mining.subscribe", json!(["test-miner/1.0"])).await;
        let en1 = unhex(&r["result"][1]);
        assert_eq!(en1.len(), EXTRANONCE1_SIZE);
        assert_eq!(r["result"][2], json!(EXTRANONCE2_SIZE));
        assert_eq!(r["result"][0][1][0], json!("mining.notify"));

        let r = c
            .call("mining.authorize", json!(["bp1notanaddress", "x"]))
            .await;
        assert_eq!(r["result"], json!(false), "{r}");
        assert_eq!(r["error"][0], json!(ERR_UNAUTHORIZED));
        let worker = format!("{}.rig1", miner.address());
        let r = c.call("mining.authorize", json!([worker, "x"])).await;
        assert_eq!(r["result"], json!(true), "{r}");
        let diff = c.notification("mining.set_difficulty").await;
        let expected = engine::query::difficulty(CompactTarget(0x207fffff));
        assert_eq!(diff[0].as_f64().unwrap(), expected);
        let job = c.notification("mining.notify").await;
        assert_eq!(job[8], json!(true), "first job is clean");
        assert_eq!(job[4].as_array().unwrap().len(), 1, "{job}");
        let tip = engine.status().unwrap().best_hash;
        assert_eq!(job[1], json!(stratum_prevhash(&tip)));

        let en2 = [0, 0, 0, 9];
        // Wrong job, malformed fields, and a hash above the target.
        let (mut stale, _) = search(&job, &en1, &en2, true);
        stale[1] = json!("ffff");
        let r = c.call("mining.submit", stale).await;
        assert_eq!(r["error"][0], json!(ERR_JOB_NOT_FOUND), "{r}");
        let (mut short, _) = search(&job, &en1, &en2, true);
        short[2] = json!("00");
        let r = c.call("mining.submit", short).await;
        assert_eq!(r["error"][0], json!(ERR_OTHER), "{r}");
        let (low, _) = search(&job, &en1, &en2, false);
        let r = c.call("mining.submit", low).await;
        assert_eq!(r["error"][0], json!(ERR_LOW_DIFFICULTY), "{r}");
        assert_eq!(engine.status().unwrap().height, 2);

        // The winning share becomes the block the miner hashed, paying the miner.
        let (win, hash) = search(&job, &en1, &en2, true);
        let r = c.call("mining.submit", win.clone()).await;
        assert_eq!(r["result"], json!(true), "{r}");
        let status = engine.status().unwrap();
        assert_eq!(status.height, 3);
        assert_eq!(
            status.best_hash, hash,
            "the engine stored the header we hashed"
        );
        let (_, block) = engine.block(&hash).unwrap().unwrap();
        assert_eq!(block.txs.len(), 2);
        assert_eq!(block.txs[1].txid(), pay.txid());
        assert_eq!(block.txs[0].outputs[0].address, miner.address());
        assert_eq!(
            block.txs[0].outputs[0].amount,
            10 + 3,
            "reward plus the fee"
        );
        let r = c.call("mining.submit", win).await;
        assert_eq!(r["error"][0], json!(ERR_DUPLICATE), "{r}");

        // The new tip brings a clean job on top of the block just found.
        let next = loop {
            let n = c.notification("mining.notify").await;
            if n[1] == json!(stratum_prevhash(&hash)) {
                break n;
            }
        };
        assert_eq!(next[8], json!(true));
        assert!(
            next[4].as_array().unwrap().is_empty(),
            "mempool is empty again"
        );

        // Each connection gets its own extranonce1.
        let mut other = Client::connect(addr).await;
        let r = other.call("mining.subscribe", json!([])).await;
        assert_ne!(unhex(&r["result"][1]), en1);

        // An oversized line closes the connection.
        c.send_raw(&"x".repeat(MAX_LINE + 10)).await;
        let mut closed = false;
        for _ in 0..4 {
            if c.recv().await.is_none() {
                closed = true;
                break;
            }
        }
        assert!(closed, "connection closed after an oversized line");
        // The server itself is still up for others.
        let r = other
            .call("mining.authorize", json!([miner.address().to_string()]))
            .await;
        assert_eq!(r["result"], json!(true));
    }

    #[test]
    fn prevhash_swaps_each_word_and_difficulty_matches_bitcoin() {
        // Bitcoin block 1's previous hash (the genesis), as pools send it.
        let genesis: Hash256 = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
            .parse()
            .unwrap();
        // Internal order 6fe28c0a b6f1b372 ..., each word reversed; the display hash's
        // leading zeros end up last, as in pools' notify messages.
        assert_eq!(
            stratum_prevhash(&genesis),
            "0a8ce26f72b3f1b646a2a6c14ff763ae65831e939c085ae10019d66800000000"
        );
        let one = CompactTarget(0x1d00ffff).to_target().unwrap();
        let mut at_target = [0u8; 32];
        at_target.copy_from_slice(&one.to_be_bytes());
        at_target.reverse();
        let d = hash_difficulty(&Hash256(at_target));
        assert!((d - 1.0).abs() < 1e-12, "{d}");
    }
}
