//! Shared state of the HTTP handlers.

use crate::custody::Custody;
use crate::events::FrameCache;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use engine::mining::BlockTemplate;
use engine::notify::NotificationKind;
use engine::{Engine, Hash256};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Node settings the handlers need.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Dev routes (custody wallets, mining in the request, reset) are on.
    pub dev: bool,
    /// Serve this directory at `/` instead of the embedded page.
    pub web_root: Option<PathBuf>,
    /// Largest request body accepted, bytes.
    pub body_limit: usize,
    /// Longest a handler may take to produce its response head.
    pub request_timeout: Duration,
    /// Token that unlocks admin routes outside dev mode (peer registration).
    pub admin_token: Option<String>,
    /// Requests per second per client IP (also the burst); 0 = no limit. See
    /// [`crate::ratelimit`].
    pub rate_limit: u32,
    /// Limit loopback clients too (by default they are exempt).
    pub rate_limit_loopback: bool,
    /// Most open event streams at once; past it `GET /v1/events` answers 503.
    pub max_sse_clients: usize,
}

/// Default cap on open event streams: every open tab of the web page and every miner
/// holds one; each costs a connection and a broadcast receiver.
pub const DEFAULT_MAX_SSE_CLIENTS: usize = 1024;

/// Default requests per second per client: far above what a wallet, a web page or a
/// miner sends, low enough that one remote client cannot monopolise the node.
pub const DEFAULT_RATE_LIMIT: u32 = 1000;

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            dev: false,
            web_root: None,
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
            admin_token: None,
            rate_limit: DEFAULT_RATE_LIMIT,
            rate_limit_loopback: false,
            max_sse_clients: DEFAULT_MAX_SSE_CLIENTS,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub config: Arc<NodeConfig>,
    pub jobs: Arc<JobBook>,
    pub metrics: Arc<Metrics>,
    /// Dev-mode custody wallets; None outside dev mode (nothing is ever loaded then).
    pub custody: Option<Arc<Custody>>,
    /// Serializes in-request mining (dev): two at once would race for the same height.
    pub mine_lock: Arc<tokio::sync::Mutex<()>>,
    /// Flips to true on shutdown so open event streams end and the server can stop.
    pub shutdown: watch::Receiver<bool>,
    /// Per-client token buckets (see [`crate::ratelimit`]).
    pub limiter: Arc<RateLimiter>,
    /// Recent notifications' SSE frames, shared by every event stream.
    pub frames: Arc<FrameCache>,
    /// The Stratum server's per-worker accounting (empty when `--stratum` is off): read by
    /// `/v1/mining/workers`, the metrics and the `workers` push topic.
    pub stratum: Arc<crate::stratum::Accounting>,
}

impl AppState {
    /// State without a shutdown signal (tests); see [`AppState::with_shutdown`].
    pub fn new(engine: Engine, config: NodeConfig, custody: Option<Custody>) -> AppState {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive forever: a dropped sender would read as "shut down".
        std::mem::forget(tx);
        Self::with_shutdown(engine, config, custody, rx)
    }

    pub fn with_shutdown(
        engine: Engine,
        config: NodeConfig,
        custody: Option<Custody>,
        shutdown: watch::Receiver<bool>,
    ) -> AppState {
        let metrics = Arc::new(Metrics::default());
        spawn_counters(&engine, &metrics);
        let limiter = Arc::new(RateLimiter::new(
            config.rate_limit,
            config.rate_limit_loopback,
        ));
        AppState {
            engine,
            limiter,
            config: Arc::new(config),
            jobs: Arc::new(JobBook::new()),
            metrics,
            custody: custody.map(Arc::new),
            mine_lock: Arc::new(tokio::sync::Mutex::new(())),
            shutdown,
            frames: Arc::new(FrameCache::default()),
            stratum: Arc::new(crate::stratum::Accounting::default()),
        }
    }

    pub fn dev(&self) -> bool {
        self.config.dev
    }
}

/// Counts accepted transactions and connected blocks from the engine's notifications,
/// so blocks from peers and Stratum count as well as those from this API.
fn spawn_counters(engine: &Engine, metrics: &Arc<Metrics>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut rx = engine.subscribe();
    let metrics = Arc::downgrade(metrics);
    handle.spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let n = match rx.recv().await {
                Ok(n) => n,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "metrics counter lagged behind the engine");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let Some(m) = metrics.upgrade() else { return };
            match n.kind {
                NotificationKind::TxAdded { .. } => {
                    m.tx_accepted.fetch_add(1, Ordering::Relaxed);
                }
                NotificationKind::BlockConnected { .. } => {
                    m.blocks_accepted.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
}

/// A mining job handed out by `/v1/mining/template`.
pub struct Job {
    pub template: BlockTemplate,
    /// The node-chosen first half of the coinbase extra nonce (extranonce1).
    pub prefix: [u8; 4],
}

/// Issued jobs, job id → template. Bounded: old jobs are dropped first, and jobs for a
/// parent that is no longer the tip are pruned as new ones are issued.
pub struct JobBook {
    inner: Mutex<JobsInner>,
    next_prefix: AtomicU32,
}

struct JobsInner {
    jobs: HashMap<String, Arc<Job>>,
    order: VecDeque<String>,
    next_id: u64,
}

const MAX_JOBS: usize = 4096;

impl JobBook {
    fn new() -> JobBook {
        // Start the prefix counter somewhere different on every run, so two runs of the
        // node mining to the same address do not produce the same coinbase.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        JobBook {
            inner: Mutex::new(JobsInner {
                jobs: HashMap::new(),
                order: VecDeque::new(),
                next_id: 1,
            }),
            next_prefix: AtomicU32::new(seed),
        }
    }

    /// A fresh extranonce1: unique among jobs of this process (wraps after 2^32 jobs).
    pub fn next_prefix(&self) -> [u8; 4] {
        self.next_prefix
            .fetch_add(1, Ordering::Relaxed)
            .to_le_bytes()
    }

    pub fn insert(&self, job: Job, tip: Hash256) -> String {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!("{:016x}", g.next_id);
        g.next_id += 1;
        // Jobs on an old tip can only ever be stale: drop them now.
        g.jobs.retain(|_, j| j.template.header.prev_hash == tip);
        let JobsInner { jobs, order, .. } = &mut *g;
        order.retain(|k| jobs.contains_key(k));
        while g.order.len() >= MAX_JOBS {
            if let Some(old) = g.order.pop_front() {
                g.jobs.remove(&old);
            }
        }
        g.jobs.insert(id.clone(), Arc::new(job));
        g.order.push_back(id.clone());
        id
    }

    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .jobs
            .get(id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .jobs
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
