//! Per-worker accounting: shares accepted / rejected (by reason) / stale, blocks, the
//! current share difficulty and a hash rate estimated from the accepted share
//! difficulty over a sliding window. A worker is the name a miner authorized with
//! (`bp1…address[.rig]`); several connections may share one.
//!
//! Read by `GET /v1/mining/workers`, the `bitplace_stratum_*` metrics and, every
//! [`PUBLISH_EVERY`] when it changed, the `workers` event of the push feed.

use super::protocol::hashes_per_share;
use axum::body::Bytes;
use engine::Address;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The hash-rate window and its bucket width.
pub const WINDOW: Duration = Duration::from_secs(300);
const BUCKET_SECS: u64 = 5;
/// The `workers` push event is sent at most this often, and only when the list changed.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(2);
/// Worker records kept; beyond it the longest-disconnected one is forgotten.
const MAX_WORKERS: usize = 10_000;
/// A disconnected worker is forgotten after this long.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Why a share was refused (the `rejected_by_reason` keys and metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Duplicate,
    LowDifficulty,
    BadTime,
    Malformed,
    BlockRejected,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Duplicate => "duplicate",
            Reason::LowDifficulty => "low_difficulty",
            Reason::BadTime => "ntime",
            Reason::Malformed => "malformed",
            Reason::BlockRejected => "block_rejected",
        }
    }

    const ALL: [Reason; 5] = [
        Reason::Duplicate,
        Reason::LowDifficulty,
        Reason::BadTime,
        Reason::Malformed,
        Reason::BlockRejected,
    ];
}

/// What became of a submitted share.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Met the share target (credited at this difficulty).
    Accepted(f64),
    /// Met the block target too and the engine took the block.
    Block(f64),
    /// For a job that no longer exists (the tip moved).
    Stale,
    Rejected(Reason),
}

/// One worker as `GET /v1/mining/workers` lists it.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct WorkerView {
    /// The authorized name, `bp1…address[.rig]`.
    pub worker: String,
    /// The payout address (the name up to the first dot).
    #[schema(value_type = String)]
    pub address: Address,
    /// Current share difficulty (of its newest connection).
    pub difficulty: f64,
    pub shares_accepted: u64,
    pub shares_rejected: u64,
    pub shares_stale: u64,
    /// Hashes per second, from the accepted share difficulty over the last five minutes
    /// (or since the worker first connected, if later).
    pub hashrate: f64,
    pub blocks: u64,
    /// Unix seconds of the last accepted share, null before the first.
    pub last_share_time: Option<u64>,
    /// Unix seconds since which the worker has been connected (its earliest open
    /// connection; the last one's start once all closed).
    pub connected_since: u64,
    /// Open connections authorized as this worker (0: disconnected, kept for an hour).
    pub connections: u32,
    /// Rejected shares by reason: duplicate, low_difficulty, ntime, malformed,
    /// block_rejected.
    pub rejected_by_reason: BTreeMap<String, u64>,
}

/// Totals for the metrics.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub connections: u64,
    pub accepted: u64,
    pub stale: u64,
    pub blocks: u64,
    pub rejected: Vec<(&'static str, u64)>,
    /// Sum of every worker's hash rate.
    pub hashrate: f64,
    pub workers: Vec<(String, f64)>,
}

struct WorkerStats {
    address: Address,
    difficulty: f64,
    accepted: u64,
    stale: u64,
    rejected: BTreeMap<Reason, u64>,
    blocks: u64,
    last_share_time: Option<u64>,
    connected_since: u64,
    connections: u32,
    /// When the record was created: the hash-rate window starts there at the latest.
    origin: Instant,
    /// (bucket number, credited work in hashes), oldest first.
    buckets: VecDeque<(u64, f64)>,
    last_active: Instant,
}

impl WorkerStats {
    fn hashrate(&self, start: Instant, now: Instant) -> f64 {
        let bucket_now = now.duration_since(start).as_secs() / BUCKET_SECS;
        let window = WINDOW.as_secs() / BUCKET_SECS;
        let work: f64 = self
            .buckets
            .iter()
            .filter(|(b, _)| b + window > bucket_now)
            .map(|(_, w)| w)
            // fold from +0.0: an empty f64 `sum` is -0.0, shown as "hashrate": -0.0
            .fold(0.0, |a, w| a + w);
        let span = now.duration_since(self.origin).min(WINDOW).as_secs_f64();
        work / span.max(1.0)
    }

    fn credit(&mut self, start: Instant, now: Instant, difficulty: f64) {
        let bucket = now.duration_since(start).as_secs() / BUCKET_SECS;
        let work = hashes_per_share(difficulty);
        match self.buckets.back_mut() {
            Some((b, w)) if *b == bucket => *w += work,
            _ => self.buckets.push_back((bucket, work)),
        }
        let keep = WINDOW.as_secs() / BUCKET_SECS + 1;
        while self.buckets.len() as u64 > keep {
            self.buckets.pop_front();
        }
    }
}

/// Every worker's record plus node-wide counters; shared by the Stratum server and the
/// HTTP handlers (through [`crate::AppState`]).
pub struct Accounting {
    start: Instant,
    workers: Mutex<HashMap<String, WorkerStats>>,
    connections: AtomicU64,
    accepted: AtomicU64,
    stale: AtomicU64,
    blocks: AtomicU64,
    rejected: [AtomicU64; Reason::ALL.len()],
    frames: watch::Sender<Bytes>,
}

impl Default for Accounting {
    fn default() -> Self {
        Accounting {
            start: Instant::now(),
            workers: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            rejected: Default::default(),
            frames: watch::Sender::new(workers_frame(&[])),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The SSE frame of the `workers` event: no `id:` line, so it never moves a client's
/// Last-Event-ID (which names event-log records).
fn workers_frame(list: &[WorkerView]) -> Bytes {
    let data = serde_json::to_string(list).unwrap_or_else(|_| "[]".into());
    Bytes::from(format!("event: workers\ndata: {data}\n\n"))
}

impl Accounting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, WorkerStats>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection opened (counted until the returned guard drops).
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    pub fn open_connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// A connection authorized as `worker` paying `address`; the record is released when
    /// the returned handle drops (the connection closed or re-authorized).
    pub fn attach(
        self: &Arc<Self>,
        worker: &str,
        address: Address,
        difficulty: f64,
    ) -> WorkerHandle {
        let now = Instant::now();
        let mut w = self.lock();
        if !w.contains_key(worker) && w.len() >= MAX_WORKERS {
            let oldest = w
                .iter()
                .filter(|(_, s)| s.connections == 0)
                .min_by_key(|(_, s)| s.last_active)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                w.remove(&k);
            }
        }
        let s = w.entry(worker.to_string()).or_insert_with(|| WorkerStats {
            address,
            difficulty,
            accepted: 0,
            stale: 0,
            rejected: BTreeMap::new(),
            blocks: 0,
            last_share_time: None,
            connected_since: unix_now(),
            connections: 0,
            origin: now,
            buckets: VecDeque::new(),
            last_active: now,
        });
        if s.connections == 0 {
            s.connected_since = unix_now();
        }
        s.connections += 1;
        s.address = address;
        s.difficulty = difficulty;
        s.last_active = now;
        WorkerHandle {
            book: self.clone(),
            worker: worker.to_string(),
        }
    }

    /// Counts a share that came before any authorization (node totals only).
    pub fn anonymous(&self, outcome: Outcome) {
        self.count(outcome);
    }

    fn count(&self, outcome: Outcome) {
        let c = match outcome {
            Outcome::Accepted(_) => &self.accepted,
            Outcome::Block(_) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                &self.blocks
            }
            Outcome::Stale => &self.stale,
            Outcome::Rejected(r) => {
                &self.rejected[Reason::ALL.iter().position(|x| *x == r).unwrap_or(0)]
            }
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Every worker, by name.
    pub fn snapshot(&self) -> Vec<WorkerView> {
        let now = Instant::now();
        let mut w = self.lock();
        w.retain(|_, s| s.connections > 0 || now.duration_since(s.last_active) < FORGET_AFTER);
        let mut list: Vec<WorkerView> = w
            .iter()
            .map(|(name, s)| WorkerView {
                worker: name.clone(),
                address: s.address,
                difficulty: s.difficulty,
                shares_accepted: s.accepted,
                shares_rejected: s.rejected.values().sum(),
                shares_stale: s.stale,
                hashrate: s.hashrate(self.start, now).round(),
                blocks: s.blocks,
                last_share_time: s.last_share_time,
                connected_since: s.connected_since,
                connections: s.connections,
                rejected_by_reason: s
                    .rejected
                    .iter()
                    .map(|(r, n)| (r.label().to_string(), *n))
                    .collect(),
            })
            .collect();
        list.sort_by(|a, b| a.worker.cmp(&b.worker));
        list
    }

    /// Node-wide totals and each worker's hash rate, for the metrics.
    pub fn totals(&self) -> Totals {
        let workers: Vec<(String, f64)> = self
            .snapshot()
            .into_iter()
            .filter(|w| w.connections > 0)
            .map(|w| (w.worker, w.hashrate))
            .collect();
        Totals {
            connections: self.open_connections(),
            accepted: self.accepted.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            blocks: self.blocks.load(Ordering::Relaxed),
            rejected: Reason::ALL
                .iter()
                .zip(&self.rejected)
                .map(|(r, c)| (r.label(), c.load(Ordering::Relaxed)))
                .collect(),
            hashrate: workers.iter().map(|(_, h)| h).sum(),
            workers,
        }
    }

    /// The latest `workers` SSE frame (the push feed waits on it).
    pub fn frames(&self) -> watch::Receiver<Bytes> {
        self.frames.subscribe()
    }

    /// Renders the list every [`PUBLISH_EVERY`] and publishes it when it changed. Runs
    /// while the Stratum server does.
    pub async fn publish(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let frame = workers_frame(&self.snapshot());
            self.frames.send_if_modified(|old| {
                if *old == frame {
                    false
                } else {
                    *old = frame;
                    true
                }
            });
        }
    }
}

/// Counts an open connection while it lives.
pub struct ConnectionGuard(Arc<Accounting>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's link to its worker's record.
pub struct WorkerHandle {
    book: Arc<Accounting>,
    worker: String,
}

impl WorkerHandle {
    pub fn name(&self) -> &str {
        &self.worker
    }

    fn with(&self, f: impl FnOnce(&mut WorkerStats)) {
        if let Some(s) = self.book.lock().get_mut(&self.worker) {
            f(s);
        }
    }

    pub fn share(&self, outcome: Outcome) {
        self.book.count(outcome);
        let start = self.book.start;
        let now = Instant::now();
        self.with(|s| {
            s.last_active = now;
            match outcome {
                Outcome::Accepted(d) | Outcome::Block(d) => {
                    s.accepted += 1;
                    s.blocks += matches!(outcome, Outcome::Block(_)) as u64;
                    s.last_share_time = Some(unix_now());
                    s.credit(start, now, d);
                }
                Outcome::Stale => s.stale += 1,
                Outcome::Rejected(r) => *s.rejected.entry(r).or_default() += 1,
            }
        });
    }

    pub fn set_difficulty(&self, d: f64) {
        self.with(|s| s.difficulty = d);
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let now = Instant::now();
        self.with(|s| {
            s.connections = s.connections.saturating_sub(1);
            s.last_active = now;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_counted_per_worker_and_hashrate_follows_credited_work() {
        let book = Arc::new(Accounting::default());
        let a = Address([1; 20]);
        let h = book.attach("bp1x.rig", a, 2.0);
        h.share(Outcome::Accepted(2.0));
        h.share(Outcome::Block(2.0));
        h.share(Outcome::Stale);
        h.share(Outcome::Rejected(Reason::Duplicate));
        h.share(Outcome::Rejected(Reason::LowDifficulty));
        h.share(Outcome::Rejected(Reason::LowDifficulty));
        let list = book.snapshot();
        assert_eq!(list.len(), 1);
        let w = &list[0];
        assert_eq!(
            (
                w.shares_accepted,
                w.shares_stale,
                w.shares_rejected,
                w.blocks
            ),
            (2, 1, 3, 1)
        );
        assert_eq!(w.rejected_by_reason["low_difficulty"], 2);
        assert_eq!(w.connections, 1);
        assert!(w.last_share_time.is_some());
        // 4 difficulty-1 shares' worth of hashes over at least the 1 s floor.
        let expected = hashes_per_share(4.0);
        assert!(
            w.hashrate <= expected.round() && w.hashrate > 0.0,
            "{}",
            w.hashrate
        );
        let t = book.totals();
        assert_eq!((t.accepted, t.blocks, t.stale), (2, 1, 1));
        drop(h);
        assert_eq!(book.snapshot()[0].connections, 0, "kept, disconnected");
    }

    #[test]
    fn the_frame_is_an_sse_event_without_an_id() {
        let f = workers_frame(&[]);
        assert_eq!(&f[..], b"event: workers\ndata: []\n\n");
    }
}
