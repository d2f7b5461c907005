//! Peers and consensus: the peer list, the node-to-node wire protocol under `/v1/p2p/`,
//! chain sync (locator → hashes → blocks, each validated by the engine), relay of new
//! blocks and transactions, and the seed's `/nodes/register` and `/nodes/resolve`.
//!
//! Trust model: nothing a peer says is believed. Every block and transaction goes through
//! the engine, which validates it completely, reorganises only onto more *verified* work
//! and changes nothing when it refuses something. A peer that serves invalid data is
//! marked misbehaving and left alone for [`BAN_SECS`].
//!
//! Wire protocol (JSON over plain HTTP; hashes in display order, blocks and transactions
//! as hex of their consensus encoding, see `engine::encoding`):
//! - `POST /v1/p2p/hashes {locator:[hash...], limit}` → `[hash...]`: best-chain hashes
//!   after the first locator entry on our best chain (after genesis if none).
//! - `GET /v1/p2p/locator` → `[hash...]`: our own locator (diagnostics).
//! - `GET /v1/p2p/blocks/{hash}` → `{hex}`.
//! - `POST /v1/p2p/blocks {hex, from?}`: a peer pushes a block; `from` is its own base
//!   URL. A block with an unknown parent answers 202 and starts a sync from `from` when
//!   it is a known peer, otherwise from every known peer.
//! - `POST /v1/p2p/tx {hex, from?}`: a peer pushes a transaction. One refused only
//!   because a transaction it spends is unknown (pushes run concurrently, so a child can
//!   overtake its parent) answers 202 and is held as an orphan ([`orphans`]) until that
//!   transaction arrives, then submitted again.
//!
//! A peer answering 429 (rate limited) or 503 (busy) is healthy but asks us to slow down:
//! its sync is retried after its `Retry-After` (see [`backoff`]), it is not counted as
//! unreachable.
//!
//! The peer list survives restarts in the data directory ([`store`]).

mod backoff;
pub mod orphans;
mod store;

pub use store::{PeerFile, PeerFileError, SavedPeer, PEERS_FILE};

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::encoding::{Decode, Encode};
use engine::notify::NotificationKind;
use engine::{Block, BlockAccepted, Engine, EngineError, Hash256, Reject, Transaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio::time::Instant;

use orphans::{Inserted, Orphan, OrphanPool, OrphanRefused};

/// Hashes asked for per sync round (and the most a peer may ask of us).
const HASHES_PER_ROUND: usize = 500;
/// Blocks fetched concurrently during a sync (they are still submitted in order).
const FETCH_PARALLEL: usize = 8;
/// Upper bound on sync rounds, so a peer cannot keep one sync going forever.
const MAX_ROUNDS: usize = 100_000;
/// How long a misbehaving peer is ignored.
pub const BAN_SECS: u64 = 600;
/// A healthy peer is re-synced this often as a safety net for lost relays.
const RESYNC_SECS: u64 = 60;
/// Timeouts for every request to a peer: a dead peer must never stall us.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Relay pushes are fire-and-forget; this bounds how many are in flight at once.
const MAX_RELAYS_IN_FLIGHT: usize = 64;
/// Most peers kept; registration past this is refused.
const MAX_PEERS: usize = 256;
/// Longest peer URL accepted.
const MAX_URL_LEN: usize = 256;
/// Most origins remembered to avoid pushing data back to the peer that sent it.
const MAX_ORIGINS: usize = 8192;
/// Most blocks listed by `GET /nodes/resolve` (the most recent ones).
const MAX_CHAIN_LISTED: usize = 10_000;

/// How the node's peering is set up (from the command line).
#[derive(Clone, Debug, Default)]
pub struct PeerConfig {
    /// Base URLs (`http://host:port`) to sync from at start.
    pub initial_peers: Vec<String>,
    /// Needed (as `Authorization: Bearer <token>`) to register peers outside dev mode.
    pub admin_token: Option<String>,
    /// Dev mode: peer registration needs no token.
    pub dev: bool,
    /// Our own base URL as peers reach it; sent along with pushes so a peer that misses
    /// a parent knows whom to sync from, and never added as our own peer.
    pub self_url: Option<String>,
    /// Where the known peers are saved (loaded at start, merged with `initial_peers`,
    /// rewritten on every change); None keeps them in memory only.
    pub peers_file: Option<PeerFile>,
}

/// Peers, sync and relay; cheap to clone.
#[derive(Clone)]
pub struct PeerService {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: PeerConfig,
    self_url: Option<String>,
    http: reqwest::Client,
    peers: Mutex<BTreeMap<String, Peer>>,
    /// Peers a sync is running from right now (one sync per peer at a time), each with
    /// whether another sync was asked for meanwhile.
    syncing: Mutex<HashMap<String, bool>>,
    /// Which peer sent us a block or transaction, so relay does not echo it back.
    origins: Mutex<HashMap<Hash256, String>>,
    relay_slots: Arc<tokio::sync::Semaphore>,
    /// One writer of the peer file at a time, so the last write is the newest list.
    save_lock: Mutex<()>,
    /// Transactions peers pushed before their parents.
    orphans: Mutex<OrphanPool>,
}

/// How this node first learned of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerSource {
    Config,
    Registered,
}

struct Peer {
    source: PeerSource,
    added_at: u64,
    last_seen: Option<u64>,
    last_error: Option<String>,
    failures: u32,
    /// Back-off answers (429/503) in a row; they say nothing against the peer's health.
    throttled: u32,
    next_sync: Instant,
    banned_until: Option<Instant>,
    last_sync: Option<SyncReport>,
}

impl Peer {
    fn new(source: PeerSource, added_at: u64) -> Peer {
        Peer {
            source,
            added_at,
            last_seen: None,
            last_error: None,
            failures: 0,
            throttled: 0,
            next_sync: Instant::now(),
            banned_until: None,
            last_sync: None,
        }
    }

    fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|t| t > now)
    }

    /// How long the peer still asked us to stay away (None if it did not, or that is over).
    fn waiting(&self, now: Instant) -> Option<Duration> {
        (self.throttled > 0 && self.next_sync > now).then(|| self.next_sync - now)
    }

    /// Records one sync's outcome: when to sync next, and whether the peer is healthy,
    /// unreachable (backoff) or misbehaving (ignored for [`BAN_SECS`]).
    fn record(&mut self, url: &str, result: &Result<(), SyncError>, now: Instant) {
        match result {
            Ok(()) => {
                self.answered();
                self.last_error = None;
                self.next_sync = now + Duration::from_secs(RESYNC_SECS);
            }
            Err(SyncError::Busy | SyncError::Waiting(_)) => {}
            Err(SyncError::Unreachable(e)) => {
                self.failures = self.failures.saturating_add(1);
                self.last_error = Some(e.clone());
                self.next_sync = now + backoff::exponential(self.failures);
            }
            Err(e @ SyncError::Throttled { retry_after, .. }) => {
                // It answered, so it is reachable; only the wait grows.
                let throttled = self.throttled.saturating_add(1);
                self.answered();
                self.throttled = throttled;
                self.last_error = Some(e.to_string());
                self.next_sync = now + backoff::throttled(*retry_after, throttled);
            }
            Err(SyncError::Misbehaved(e)) => {
                tracing::warn!(peer = %url, "peer misbehaved: {e}");
                self.last_seen = Some(unix_now());
                self.last_error = Some(format!("misbehaved: {e}"));
                self.banned_until = Some(now + Duration::from_secs(BAN_SECS));
                self.next_sync = now + Duration::from_secs(BAN_SECS);
            }
            Err(SyncError::Deferred(e)) => {
                self.last_seen = Some(unix_now());
                self.last_error = Some(e.clone());
                self.next_sync = now + Duration::from_secs(10);
            }
            Err(SyncError::Engine(e)) => {
                self.last_error = Some(format!("local error: {e}"));
                self.next_sync = now + Duration::from_secs(10);
            }
        }
    }

    /// The peer gave a proper answer: it is up and no longer asking us to wait.
    fn answered(&mut self) {
        self.failures = 0;
        self.throttled = 0;
        self.last_seen = Some(unix_now());
    }
}

/// A peer as `GET /v1/peers` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    pub url: String,
    pub source: PeerSource,
    /// `new` (never reached), `ok`, `unreachable` (retrying with backoff),
    /// `rate_limited` (it answered 429/503; retrying after its `Retry-After`) or
    /// `misbehaving` (served invalid data; ignored for a while).
    pub status: &'static str,
    pub added_at: u64,
    /// Unix seconds of the last successful exchange.
    pub last_seen: Option<u64>,
    pub last_error: Option<String>,
    pub failures: u32,
    pub last_sync: Option<SyncReport>,
}

/// What one sync from one peer did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    pub peer: String,
    /// Blocks fetched from the peer.
    pub fetched: usize,
    /// Blocks that extended or reorganised our best chain.
    pub connected: usize,
    /// Blocks stored on a side branch (not more work yet).
    pub side: usize,
    /// Whether our best chain changed to the peer's.
    pub adopted: bool,
    pub error: Option<String>,
}

/// The result of syncing from every peer.
#[derive(Clone, Debug, Serialize)]
pub struct ResolveReport {
    pub adopted: bool,
    pub height: u64,
    pub best_hash: Hash256,
    pub peers: Vec<SyncReport>,
}

/// Why a sync stopped early.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// Connection failure, timeout or an HTTP error status: retry later.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The peer answered 429 or 503: it is up but asks us to come back later, after
    /// `retry_after` when it said so.
    #[error("peer asked us to back off: HTTP {status}{}", backoff::describe(*.retry_after))]
    Throttled {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// We are still inside a wait the peer asked for: it was not contacted.
    #[error("peer asked us to back off; retrying in {}s", .0.as_secs())]
    Waiting(Duration),
    /// The peer broke the protocol or sent invalid data: it is marked misbehaving.
    #[error("peer misbehaved: {0}")]
    Misbehaved(String),
    /// A block was refused for a reason that says nothing bad about the peer (a block
    /// time ahead of our clock): stop, try again later.
    #[error("block refused for now: {0}")]
    Deferred(String),
    #[error("local engine error: {0}")]
    Engine(#[from] EngineError),
    #[error("peer is already being synced")]
    Busy,
}

/// An HTTP error answer: `{"error": code, "message": text}`.
#[derive(Debug)]
pub struct PeerApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl PeerApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        PeerApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn engine(e: EngineError) -> Self {
        match e.reject() {
            Some(r) => Self::new(reject_status(r), r.code(), r.to_string()),
            None => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_unavailable",
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for PeerApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"error": self.code, "message": self.message}));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Conflicts with current state are 409; anything wrong with the data itself is 400.
fn reject_status(r: &Reject) -> StatusCode {
    match r {
        Reject::DoubleSpend(..)
        | Reject::InputSpent(..)
        | Reject::MissingInput(..)
        | Reject::MempoolFull
        | Reject::FeeTooLow { .. }
        | Reject::TimeTooNew { .. } => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

type ApiResult<T> = Result<T, PeerApiError>;

/// Parses a JSON body ourselves so that malformed JSON, unknown fields and wrong types get
/// our `{error, message}` shape rather than axum's plain-text rejection.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| PeerApiError::bad_request("malformed_json", format!("invalid body: {e}")))
}

fn decode_hex<T: Decode>(hex_str: &str, what: &str) -> ApiResult<T> {
    let bytes = hex::decode(hex_str)
        .map_err(|e| PeerApiError::bad_request("bad_hex", format!("{what} hex: {e}")))?;
    T::decode(&bytes)
        .map_err(|e| PeerApiError::bad_request("malformed", format!("{what} does not decode: {e}")))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Compares without an early exit, so response timing does not leak the token's prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Canonical form of a peer address: `http://host[:port]`, no path. A scheme-less
/// `host:port` (as the seed's clients send) means http. https is refused: this build
/// carries no TLS stack.
pub fn normalize_peer_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("empty peer URL".into());
    }
    if raw.len() > MAX_URL_LEN {
        return Err(format!("peer URL longer than {MAX_URL_LEN} characters"));
    }
    let full = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = reqwest::Url::parse(&full).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "`{raw}`: only http:// peers are supported (this node has no TLS)"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{raw}`: credentials in peer URLs are not allowed"));
    }
    if (url.path() != "/" && !url.path().is_empty()) || url.query().is_some() {
        return Err(format!(
            "`{raw}`: a peer URL is a base address without path or query"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HashesRequest {
    locator: Vec<Hash256>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HexPush {
    hex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
}

#[derive(Deserialize, Serialize)]
struct HexBody {
    hex: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPeerRequest {
    url: String,
}

#[derive(Deserialize)]
struct RegisterNodesRequest {
    nodes: Option<Vec<String>>,
}

impl PeerService {
    pub fn new(engine: Engine, config: PeerConfig) -> PeerService {
        let self_url = config
            .self_url
            .as_deref()
            .and_then(|u| normalize_peer_url(u).ok());
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            // Building a plain-HTTP client only fails if the system resolver/TLS backend
            // cannot initialise; fall back to defaults rather than refusing to start.
            .unwrap_or_default();
        let service = PeerService {
            inner: Arc::new(Inner {
                engine,
                config: config.clone(),
                self_url,
                http,
                peers: Mutex::new(BTreeMap::new()),
                syncing: Mutex::new(HashMap::new()),
                origins: Mutex::new(HashMap::new()),
                relay_slots: Arc::new(tokio::sync::Semaphore::new(MAX_RELAYS_IN_FLIGHT)),
                save_lock: Mutex::new(()),
                orphans: Mutex::new(OrphanPool::new()),
            }),
        };
        let saved = service.load_saved();
        service.add_initial(&config.initial_peers, &saved);
        for p in &saved {
            service.add_saved(p);
        }
        // Startup, nothing else runs yet: write the merged list now if it is new.
        if service.saved_peers() != saved {
            service.save_blocking();
        }
        service
    }

    /// The peers saved by an earlier run. A file that cannot be read is reported and
    /// ignored (the node still starts, with its `--peer` flags); an unparseable one is
    /// also set aside for inspection, since the next save replaces it.
    fn load_saved(&self) -> Vec<SavedPeer> {
        let Some(file) = &self.inner.config.peers_file else {
            return Vec::new();
        };
        match file.load() {
            Ok(peers) => peers,
            Err(e) => {
                let kept = match e {
                    PeerFileError::Parse { .. } | PeerFileError::Version { .. } => {
                        file.set_aside().ok()
                    }
                    _ => None,
                };
                let kept = kept.map(|p| p.display().to_string());
                tracing::warn!(error = %e, kept_as = ?kept, "ignoring the saved peer list");
                Vec::new()
            }
        }
    }

    /// The `--peer` flags, keeping when each was first added if it was saved before.
    fn add_initial(&self, raw: &[String], saved: &[SavedPeer]) {
        for raw in raw {
            match normalize_peer_url(raw) {
                Ok(url) => {
                    let added_at = saved.iter().find(|p| p.url == url).map(|p| p.added_at);
                    let at = added_at.unwrap_or_else(unix_now);
                    let _ = self.add_peer_at(&url, PeerSource::Config, at);
                }
                Err(e) => tracing::warn!(peer = %raw, "ignoring initial peer: {e}"),
            }
        }
    }

    /// A saved peer, checked like any other (the file may have been edited by hand).
    fn add_saved(&self, p: &SavedPeer) {
        let added =
            normalize_peer_url(&p.url).and_then(|url| self.add_peer_at(&url, p.source, p.added_at));
        if let Err(e) = added {
            tracing::warn!(peer = %p.url, "ignoring saved peer: {e}");
        }
    }

    /// What the peer file holds for the current list.
    fn saved_peers(&self) -> Vec<SavedPeer> {
        self.lock_peers()
            .iter()
            .map(|(url, p)| SavedPeer {
                url: url.clone(),
                source: p.source,
                added_at: p.added_at,
            })
            .collect()
    }

    /// Writes the current list to the peer file, if there is one. A failure is logged,
    /// never fatal: the peers stay known until the process ends.
    fn save_blocking(&self) {
        let Some(file) = &self.inner.config.peers_file else {
            return;
        };
        let _one_writer = self
            .inner
            .save_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Listed under the writer lock: a write that comes later never holds an older list.
        let peers = self.saved_peers();
        if let Err(e) = file.save(&peers) {
            tracing::warn!(error = %e, "peer list not saved; peers are kept in memory");
        }
    }

    /// [`Self::save_blocking`] off the async workers (it fsyncs); done before a
    /// registration is answered, so an acknowledged peer survives a crash.
    async fn persist(&self) {
        let s = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || s.save_blocking()).await {
            tracing::warn!(error = %e, "peer list save did not run");
        }
    }

    /// The routes listed in the module docs, state applied (ready to `.merge`).
    pub fn router(&self) -> Router {
        // A pushed block may be as large as the chain allows, as hex, plus the envelope.
        let block_limit = self
            .inner
            .engine
            .params()
            .max_block_bytes
            .saturating_mul(2)
            .saturating_add(4096);
        Router::new()
            .route("/v1/peers", get(list_peers).post(add_peer))
            .route("/v1/peers/resolve", post(resolve_v1))
            .route("/nodes/register", post(register_nodes))
            .route("/nodes/resolve", get(resolve_seed))
            .route("/v1/p2p/locator", get(p2p_locator))
            .route("/v1/p2p/hashes", post(p2p_hashes))
            .route("/v1/p2p/blocks/{hash}", get(p2p_get_block))
            .route(
                "/v1/p2p/blocks",
                post(p2p_push_block).layer(DefaultBodyLimit::max(block_limit)),
            )
            .route(
                "/v1/p2p/tx",
                post(p2p_push_tx).layer(DefaultBodyLimit::max(block_limit)),
            )
            .with_state(self.clone())
    }

    /// Syncs from the initial peers, keeps retrying unreachable ones with backoff,
    /// re-syncs healthy ones now and then, and relays new blocks and transactions to
    /// every peer, until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        // Subscribe before anything else runs, so no block committed after `run` was
        // first polled escapes the relay.
        let notes = self.inner.engine.subscribe();
        let mut relay = tokio::spawn(self.clone().relay_loop(notes));
        let mut syncs = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    for url in self.due_peers() {
                        let s = self.clone();
                        syncs.spawn(async move { s.sync_from(&url).await });
                    }
                }
                Some(_) = syncs.join_next(), if !syncs.is_empty() => {}
                r = &mut relay => {
                    // The relay only ends when the engine closes; nothing left to do.
                    tracing::warn!("peer relay stopped: {r:?}");
                    break;
                }
            }
        }
        relay.abort();
        // Dropping the JoinSet aborts in-flight syncs: each block submission is atomic
        // in the engine, so stopping between them loses nothing.
        syncs.shutdown().await;
    }

    /// Adds a peer (already normalised) learned now; false if it was known. Refused if
    /// it is ourselves or the list is full.
    fn add_peer(&self, url: &str, source: PeerSource) -> Result<bool, String> {
        self.add_peer_at(url, source, unix_now())
    }

    fn add_peer_at(&self, url: &str, source: PeerSource, added_at: u64) -> Result<bool, String> {
        if self.inner.self_url.as_deref() == Some(url) {
            return Err("that is this node's own URL".into());
        }
        let mut peers = self.lock_peers();
        if peers.contains_key(url) {
            return Ok(false);
        }
        if peers.len() >= MAX_PEERS {
            return Err(format!("peer list is full ({MAX_PEERS})"));
        }
        peers.insert(url.to_string(), Peer::new(source, added_at));
        Ok(true)
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Peer>> {
        // A panic while holding this lock cannot leave the map inconsistent (every
        // update is a single field write), so a poisoned lock is still usable.
        self.inner.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peers and their last-seen status.
    pub fn peers(&self) -> Vec<PeerView> {
        let now = Instant::now();
        self.lock_peers()
            .iter()
            .map(|(url, p)| PeerView {
                url: url.clone(),
                source: p.source,
                status: if p.banned(now) {
                    "misbehaving"
                } else if p.failures > 0 {
                    "unreachable"
                } else if p.throttled > 0 {
                    "rate_limited"
                } else if p.last_seen.is_some() {
                    "ok"
                } else {
                    "new"
                },
                added_at: p.added_at,
                last_seen: p.last_seen,
                last_error: p.last_error.clone(),
                failures: p.failures,
                last_sync: p.last_sync.clone(),
            })
            .collect()
    }

    /// How many peers are known (for the `bitplace_peers` metric).
    pub fn peer_count(&self) -> usize {
        self.lock_peers().len()
    }

    fn peer_urls(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock_peers()
            .iter()
            .filter(|(_, p)| !p.banned(now))
            .map(|(u, _)| u.clone())
            .collect()
    }

    fn due_peers(&self) -> Vec<String> {
        let now = Instant::now();
        let busy = self.inner.syncing.lock().unwrap_or_else(|e| e.into_inner());
        self.lock_peers()
            .iter()
            .filter(|(u, p)| !p.banned(now) && p.next_sync <= now && !busy.contains_key(*u))
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Syncs from every usable peer, one after another, and says whether our chain changed.
    pub async fn resolve(&self) -> ResolveReport {
        let before = self.inner.engine.status().ok().map(|s| s.best_hash);
        let mut reports = Vec::new();
        for url in self.peer_urls() {
            reports.push(self.sync_from(&url).await);
        }
        let (height, best_hash) = match self.inner.engine.status() {
            Ok(s) => (s.height, s.best_hash),
            Err(_) => (0, Hash256::ZERO),
        };
        ResolveReport {
            adopted: before.is_some_and(|b| b != best_hash) && reports.iter().any(|r| r.adopted),
            height,
            best_hash,
            peers: reports,
        }
    }

    /// Syncs from one peer and records the outcome on it (backoff, ban, last seen).
    pub async fn sync_from(&self, url: &str) -> SyncReport {
        let mut report = SyncReport {
            peer: url.to_string(),
            ..SyncReport::default()
        };
        let result = match self.waiting(url) {
            // It asked us to stay away for now: a pushed orphan or a manual resolve
            // must not knock again before it said we may.
            Some(left) => Err(SyncError::Waiting(left)),
            None => self.sync_guarded(url, &mut report).await,
        };
        if let Err(e) = &result {
            report.error = Some(e.to_string());
        }
        let mut peers = self.lock_peers();
        if let Some(p) = peers.get_mut(url) {
            p.record(url, &result, Instant::now());
            if !matches!(result, Err(SyncError::Busy | SyncError::Waiting(_))) {
                p.last_sync = Some(report.clone());
            }
        }
        report
    }

    fn waiting(&self, url: &str) -> Option<Duration> {
        let now = Instant::now();
        self.lock_peers().get(url).and_then(|p| p.waiting(now))
    }

    /// One sync per peer at a time. A request that arrives while one runs (say, a pushed
    /// block with an unknown parent) may concern blocks the running sync asked for too
    /// early to see, so it is not dropped: the running sync goes one more time.
    async fn sync_guarded(&self, url: &str, report: &mut SyncReport) -> Result<(), SyncError> {
        {
            let mut busy = self.inner.syncing.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(again) = busy.get_mut(url) {
                *again = true;
                return Err(SyncError::Busy);
            }
            busy.insert(url.to_string(), false);
        }
        let result = loop {
            let result = self.sync_inner(url, report).await;
            let mut busy = self.inner.syncing.lock().unwrap_or_else(|e| e.into_inner());
            let again = busy.get(url).copied().unwrap_or(false);
            if result.is_err() || !again {
                busy.remove(url);
                break result;
            }
            busy.insert(url.to_string(), false);
        };
        result
    }

    /// Locator → hashes → blocks, in rounds. After the first round the locator starts
    /// with the last hash the peer gave us: when the peer's branch does not (yet) have
    /// more work than ours, those blocks sit on a side branch and our own locator would
    /// make the peer send the same hashes again.
    async fn sync_inner(&self, url: &str, report: &mut SyncReport) -> Result<(), SyncError> {
        let engine = &self.inner.engine;
        let mut resume: Option<Hash256> = None;
        for _ in 0..MAX_ROUNDS {
            let mut locator = engine.locator()?;
            if let Some(h) = resume {
                locator.insert(0, h);
            }
            let request = HashesRequest {
                locator,
                limit: Some(HASHES_PER_ROUND),
            };
            let hashes: Vec<Hash256> = self
                .post_json(url, "/v1/p2p/hashes", &request, 1 << 20)
                .await?;
            if hashes.len() > HASHES_PER_ROUND {
                return Err(SyncError::Misbehaved(format!(
                    "sent {} hashes, {HASHES_PER_ROUND} asked",
                    hashes.len()
                )));
            }
            let mut unknown = Vec::new();
            for h in &hashes {
                if engine.block(h)?.is_none() {
                    unknown.push(*h);
                }
            }
            if unknown.is_empty() {
                return Ok(());
            }
            for chunk in unknown.chunks(FETCH_PARALLEL) {
                let mut fetches = Vec::with_capacity(chunk.len());
                for h in chunk {
                    let s = self.clone();
                    let (url, h) = (url.to_string(), *h);
                    fetches.push(tokio::spawn(async move { s.fetch_block(&url, h).await }));
                }
                for f in fetches {
                    let block = f
                        .await
                        .map_err(|e| SyncError::Unreachable(format!("fetch task failed: {e}")))??;
                    report.fetched += 1;
                    self.remember_origin(block.hash(), url);
                    match self.submit_block(block).await {
                        Ok(BlockAccepted::Connected { .. })
                        | Ok(BlockAccepted::Reorganized { .. }) => {
                            report.connected += 1;
                            report.adopted = true;
                        }
                        Ok(BlockAccepted::SideChain { .. }) => report.side += 1,
                        Ok(BlockAccepted::Duplicate { .. }) => {}
                        Err(e) => return Err(classify_block_error(e)),
                    }
                }
            }
            if hashes.len() < HASHES_PER_ROUND {
                return Ok(());
            }
            resume = hashes.last().copied();
        }
        Ok(())
    }

    async fn fetch_block(&self, url: &str, hash: Hash256) -> Result<Block, SyncError> {
        let max = self
            .inner
            .engine
            .params()
            .max_block_bytes
            .saturating_mul(2)
            .saturating_add(1024);
        let body: HexBody = self
            .get_json(url, &format!("/v1/p2p/blocks/{hash}"), max)
            .await?;
        let bytes = hex::decode(&body.hex)
            .map_err(|e| SyncError::Misbehaved(format!("block {hash}: bad hex: {e}")))?;
        let block = Block::decode(&bytes)
            .map_err(|e| SyncError::Misbehaved(format!("block {hash} does not decode: {e}")))?;
        if block.hash() != hash {
            return Err(SyncError::Misbehaved(format!(
                "asked for block {hash}, got {}",
                block.hash()
            )));
        }
        Ok(block)
    }

    /// Block validation checks every signature: run it off the async worker threads.
    async fn submit_block(&self, block: Block) -> Result<BlockAccepted, EngineError> {
        let engine = self.inner.engine.clone();
        tokio::task::spawn_blocking(move || engine.submit_block(block))
            .await
            .map_err(|_| EngineError::Closed)?
    }

    fn remember_origin(&self, hash: Hash256, url: &str) {
        let mut origins = self.inner.origins.lock().unwrap_or_else(|e| e.into_inner());
        // Crude bound: the map only saves an echo, so forgetting everything is harmless.
        if origins.len() >= MAX_ORIGINS {
            origins.clear();
        }
        origins.insert(hash, url.to_string());
    }

    fn origin_of(&self, hash: &Hash256) -> Option<String> {
        self.inner
            .origins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
            .cloned()
    }

    async fn get_json<R: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        max: usize,
    ) -> Result<R, SyncError> {
        let resp = self
            .inner
            .http
            .get(format!("{base}{path}"))
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        read_json(resp, max).await
    }

    async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        body: &B,
        max: usize,
    ) -> Result<R, SyncError> {
        let resp = self
            .inner
            .http
            .post(format!("{base}{path}"))
            .json(body)
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        read_json(resp, max).await
    }

    /// Hears every committed event and pushes new best-chain blocks and admitted
    /// transactions to every peer except the one that sent them. A peer that already
    /// has the data answers Duplicate and, since the engine emits no event for known
    /// data, relays nothing further: no echo loops.
    async fn relay_loop(
        self,
        mut rx: tokio::sync::broadcast::Receiver<Arc<engine::notify::Notification>>,
    ) {
        loop {
            let note = match rx.recv().await {
                Ok(n) => n,
                // We missed some events; peers catch up through sync on unknown parents.
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!("peer relay skipped {n} events");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            // Before the peer check: orphans wait for their parents with or without peers.
            self.retry_orphans_of(&note.kind);
            let targets = self.peer_urls();
            if targets.is_empty() {
                continue;
            }
            let (hash, path, hex) = match &note.kind {
                NotificationKind::BlockConnected { hash, .. } => {
                    match self.inner.engine.block(hash) {
                        Ok(Some((_, block))) => {
                            (*hash, "/v1/p2p/blocks", hex::encode(block.encode()))
                        }
                        _ => continue,
                    }
                }
                NotificationKind::TxAdded { txid, .. } => {
                    match self.inner.engine.transaction(txid) {
                        Ok(Some(info)) if info.in_mempool => {
                            (*txid, "/v1/p2p/tx", hex::encode(info.tx.encode()))
                        }
                        _ => continue,
                    }
                }
                _ => continue,
            };
            let origin = self.origin_of(&hash);
            let body = Arc::new(HexPush {
                hex,
                from: self.inner.self_url.clone(),
            });
            for url in targets {
                if origin.as_deref() == Some(url.as_str()) {
                    continue;
                }
                // Fire and forget, bounded: when all slots are busy the push is dropped
                // rather than queued without limit; the peer will sync on its own.
                let Ok(permit) = self.inner.relay_slots.clone().try_acquire_owned() else {
                    tracing::debug!(peer = %url, "relay slots full, dropping a push");
                    continue;
                };
                let s = self.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    s.push(&url, path, &body).await;
                });
            }
        }
    }

    async fn push(&self, url: &str, path: &str, body: &HexPush) {
        let result = self
            .inner
            .http
            .post(format!("{url}{path}"))
            .timeout(Duration::from_secs(5))
            .json(body)
            .send()
            .await;
        let mut peers = self.lock_peers();
        let Some(p) = peers.get_mut(url) else { return };
        match result {
            // Any HTTP answer (even a refusal of data it cannot place yet) means it is up.
            Ok(_) => p.last_seen = Some(unix_now()),
            Err(e) => {
                p.last_error = Some(format!("push failed: {e}"));
                // Pull from it soon: when it comes back it may have blocks we lack.
                p.next_sync = p.next_sync.min(Instant::now() + Duration::from_secs(5));
            }
        }
    }

    /// How many orphan transactions are held (diagnostics and metrics).
    pub fn orphan_count(&self) -> usize {
        self.lock_orphans().len()
    }

    fn lock_orphans(&self) -> std::sync::MutexGuard<'_, OrphanPool> {
        // Every pool operation completes its index updates before it can panic (none
        // does by design), so a poisoned lock still guards a consistent pool.
        self.inner.orphans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a peer's transaction that spends an unknown transaction. The parent may have
    /// been admitted between the engine's refusal and now, its notification finding no
    /// orphan yet: so look once more, and retry at once if a parent is known.
    fn hold_orphan(&self, tx: Transaction) -> Result<Inserted, OrphanRefused> {
        let parents = orphans::parents(&tx);
        let held = self.lock_orphans().insert(tx, std::time::Instant::now())?;
        let known: Vec<Hash256> = parents
            .into_iter()
            .filter(|p| matches!(self.inner.engine.transaction(p), Ok(Some(_))))
            .collect();
        if !known.is_empty() {
            let s = self.clone();
            tokio::spawn(async move { s.retry_orphans(known).await });
        }
        Ok(held)
    }

    /// Newly known transactions (admitted, or confirmed in a block) may be parents of
    /// held orphans: submit those again, in the background so the relay never waits on
    /// the engine.
    fn retry_orphans_of(&self, kind: &NotificationKind) {
        let parents = match kind {
            NotificationKind::TxAdded { txid, .. } => vec![*txid],
            NotificationKind::BlockConnected { txids, .. } => txids.clone(),
            _ => return,
        };
        if self.lock_orphans().is_empty() {
            return;
        }
        let s = self.clone();
        tokio::spawn(async move { s.retry_orphans(parents).await });
    }

    /// Submits again every orphan spending one of `parents`, and in turn those spending
    /// an orphan admitted here (a chain of orphans), without waiting for notifications.
    async fn retry_orphans(&self, mut parents: Vec<Hash256>) {
        while let Some(parent) = parents.pop() {
            let children = self
                .lock_orphans()
                .take_children(&parent, std::time::Instant::now());
            for orphan in children {
                if let Some(txid) = self.resubmit(orphan).await {
                    parents.push(txid);
                }
            }
        }
    }

    /// Some(txid) when the orphan is admitted (or was known already). One still missing
    /// another parent is held again, keeping its arrival time; any other refusal drops it.
    async fn resubmit(&self, orphan: Orphan) -> Option<Hash256> {
        let txid = orphan.tx.txid();
        match self.inner.engine.submit_tx_async(orphan.tx.clone()).await {
            Ok(_) => Some(txid),
            Err(e) if is_orphan_refusal(&e) => {
                if let Err(e) = self.lock_orphans().insert(orphan.tx, orphan.received) {
                    tracing::debug!(%txid, "orphan not held again: {e}");
                }
                None
            }
            Err(e) => {
                tracing::debug!(%txid, "dropping orphan: {e}");
                None
            }
        }
    }

    /// A peer pushed a block whose parent we lack: sync from it (or, when we cannot
    /// tell who it is, from everyone) in the background.
    fn sync_after_orphan(&self, from: Option<String>) {
        let known = self.peer_urls();
        let targets: Vec<String> = match from.and_then(|f| normalize_peer_url(&f).ok()) {
            Some(f) if known.contains(&f) => vec![f],
            _ => known,
        };
        for url in targets {
            let s = self.clone();
            tokio::spawn(async move {
                s.sync_from(&url).await;
            });
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        if self.inner.config.dev {
            return Ok(());
        }
        let Some(expected) = self.inner.config.admin_token.as_deref() else {
            return Err(PeerApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "registering peers needs an admin token: start the node with --admin-token \
                 (or --dev)",
            ));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            None => Err(PeerApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "registering peers needs `Authorization: Bearer <admin token>`",
            )),
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(PeerApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "wrong admin token",
            )),
        }
    }

    /// Validates every URL first, so a list with one bad entry adds nothing.
    fn register(&self, raw: &[String]) -> ApiResult<Vec<String>> {
        let urls = raw
            .iter()
            .map(|u| normalize_peer_url(u).map_err(|e| PeerApiError::bad_request("bad_url", e)))
            .collect::<ApiResult<Vec<_>>>()?;
        let mut added = Vec::new();
        for url in urls {
            match self.add_peer(&url, PeerSource::Registered) {
                Ok(true) => added.push(url),
                Ok(false) => {}
                Err(e) => return Err(PeerApiError::bad_request("bad_url", e)),
            }
        }
        Ok(added)
    }
}

/// Refused only because a transaction it spends is unknown (not spent, not invalid):
/// it may become valid when that transaction arrives.
fn is_orphan_refusal(e: &EngineError) -> bool {
    matches!(e.reject(), Some(Reject::MissingInput(..)))
}

/// Sorts an engine refusal of a peer's block into "the peer is lying" or "not now".
fn classify_block_error(e: EngineError) -> SyncError {
    match e.reject() {
        Some(Reject::TimeTooNew { .. }) => SyncError::Deferred(e.to_string()),
        // We ask for blocks in chain order, so an unknown parent is the peer's fault too.
        Some(_) => SyncError::Misbehaved(e.to_string()),
        None => SyncError::Engine(e),
    }
}

/// Reads at most `max` bytes of a peer's answer: a hostile peer must not make us buffer
/// an unbounded body.
async fn read_json<R: DeserializeOwned>(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<R, SyncError> {
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(SyncError::Throttled {
            status,
            retry_after: backoff::retry_after(resp.headers(), std::time::SystemTime::now()),
        });
    }
    if !status.is_success() {
        return Err(SyncError::Unreachable(format!("HTTP {status}")));
    }
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(SyncError::Misbehaved(format!(
            "answer larger than {max} bytes"
        )));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| SyncError::Unreachable(e.to_string()))?
    {
        if buf.len() + chunk.len() > max {
            return Err(SyncError::Misbehaved(format!(
                "answer larger than {max} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&buf).map_err(|e| SyncError::Misbehaved(format!("bad JSON: {e}")))
}

// ---- handlers ----

async fn list_peers(State(s): State<PeerService>) -> Json<Vec<PeerView>> {
    Json(s.peers())
}

async fn add_peer(
    State(s): State<PeerService>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    s.authorize(&headers)?;
    let req: AddPeerRequest = parse_body(&body)?;
    let url = normalize_peer_url(&req.url).map_err(|e| PeerApiError::bad_request("bad_url", e))?;
    let added = s
        .add_peer(&url, PeerSource::Registered)
        .map_err(|e| PeerApiError::bad_request("bad_url", e))?;
    if added {
        s.persist().await;
    }
    // The run loop syncs from a new peer within a tick.
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({"url": url, "added": added, "peers": s.peer_urls().len()})),
    ))
}

async fn resolve_v1(State(s): State<PeerService>) -> Json<ResolveReport> {
    Json(s.resolve().await)
}

async fn register_nodes(
    State(s): State<PeerService>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    s.authorize(&headers)?;
    let req: RegisterNodesRequest = parse_body(&body)?;
    let Some(nodes) = req.nodes.filter(|n| !n.is_empty()) else {
        return Err(PeerApiError::bad_request(
            "missing_nodes",
            "please supply a valid list of nodes: {\"nodes\": [\"http://host:port\", ...]}",
        ));
    };
    let registered = s.register(&nodes);
    // Saved even when refused: a list refused part-way (full) added the peers before it.
    if registered.as_ref().map_or(true, |added| !added.is_empty()) {
        s.persist().await;
    }
    registered?;
    // The seed lists host:port without the scheme.
    let total: Vec<String> = s
        .peers()
        .into_iter()
        .map(|p| p.url.trim_start_matches("http://").to_string())
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "message": "New nodes have been added",
            "total_nodes": total,
        })),
    ))
}

/// The seed's consensus route: sync from every peer, say whether our chain was
/// replaced, and list the (most recent part of the) best chain.
async fn resolve_seed(State(s): State<PeerService>) -> ApiResult<Json<serde_json::Value>> {
    let report = s.resolve().await;
    let engine = &s.inner.engine;
    let from = (report.height + 1).saturating_sub(MAX_CHAIN_LISTED as u64);
    let chain = engine
        .blocks(from, MAX_CHAIN_LISTED)
        .map_err(PeerApiError::engine)?;
    let message = if report.adopted {
        "Our chain was replaced"
    } else {
        "Our chain is authoritative"
    };
    Ok(Json(serde_json::json!({
        "message": message,
        "chain": chain,
        "length": report.height + 1,
        "peers": report.peers,
    })))
}

async fn p2p_locator(State(s): State<PeerService>) -> ApiResult<Json<Vec<Hash256>>> {
    s.inner
        .engine
        .locator()
        .map(Json)
        .map_err(PeerApiError::engine)
}

async fn p2p_hashes(
    State(s): State<PeerService>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Vec<Hash256>>> {
    let req: HashesRequest = parse_body(&body)?;
    if req.locator.len() > 256 {
        return Err(PeerApiError::bad_request(
            "locator_too_long",
            "a locator has at most 256 hashes",
        ));
    }
    let limit = req
        .limit
        .unwrap_or(HASHES_PER_ROUND)
        .clamp(1, HASHES_PER_ROUND);
    s.inner
        .engine
        .hashes_after(&req.locator, limit)
        .map(Json)
        .map_err(PeerApiError::engine)
}

async fn p2p_get_block(
    State(s): State<PeerService>,
    Path(hash): Path<String>,
) -> ApiResult<Json<HexBody>> {
    let hash: Hash256 = hash
        .parse()
        .map_err(|e| PeerApiError::bad_request("bad_hash", format!("{e}")))?;
    match s.inner.engine.block(&hash).map_err(PeerApiError::engine)? {
        Some((_, block)) => Ok(Json(HexBody {
            hex: hex::encode(block.encode()),
        })),
        None => Err(PeerApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no block {hash}"),
        )),
    }
}

async fn p2p_push_block(
    State(s): State<PeerService>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req: HexPush = parse_body(&body)?;
    let block: Block = decode_hex(&req.hex, "block")?;
    let hash = block.hash();
    if let Some(from) = req.from.as_deref().and_then(|f| normalize_peer_url(f).ok()) {
        s.remember_origin(hash, &from);
    }
    match s.submit_block(block).await {
        Ok(accepted) => Ok(Json(accepted).into_response()),
        Err(e) if matches!(e.reject(), Some(Reject::UnknownParent(_))) => {
            s.sync_after_orphan(req.from);
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "outcome": "unknown_parent",
                    "hash": hash,
                    "message": "parent unknown; syncing from the sender",
                })),
            )
                .into_response())
        }
        Err(e) => Err(PeerApiError::engine(e)),
    }
}

/// A peer's transaction. One spending an unknown transaction is held as an orphan and
/// answered 202 (like a block with an unknown parent); one too large to hold gets the
/// engine's refusal, as does every other refusal.
async fn p2p_push_tx(State(s): State<PeerService>, body: axum::body::Bytes) -> ApiResult<Response> {
    let req: HexPush = parse_body(&body)?;
    let tx: Transaction = decode_hex(&req.hex, "transaction")?;
    let txid = tx.txid();
    if let Some(from) = req.from.as_deref().and_then(|f| normalize_peer_url(f).ok()) {
        s.remember_origin(txid, &from);
    }
    match s.inner.engine.submit_tx_async(tx.clone()).await {
        Ok(accepted) => Ok(Json(accepted).into_response()),
        Err(e) if is_orphan_refusal(&e) => match s.hold_orphan(tx) {
            Ok(_) => Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "outcome": "orphan",
                    "txid": txid,
                    "message": format!("held as an orphan until its input's transaction arrives: {e}"),
                })),
            )
                .into_response()),
            Err(refused) => {
                tracing::debug!(%txid, "orphan not held: {refused}");
                Err(PeerApiError::engine(e))
            }
        },
        Err(e) => Err(PeerApiError::engine(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use engine::engine::EngineConfig;
    use engine::params::ChainParams;
    use engine::pow::CompactTarget;
    use engine::testkit::{outpoint, TestKey};
    use engine::Address;
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use tower::ServiceExt;

    const START: u64 = 1_800_000_000;

    /// Dev parameters with the easiest target (a block takes ~2 hashes) and a clock the
    /// test controls, shared by every engine of a test so block times agree.
    fn fast_engine(now: &Arc<AtomicU64>) -> Engine {
        let mut p = ChainParams::dev();
        p.initial_bits = CompactTarget(0x207fffff);
        p.coinbase_maturity = 2;
        let n = now.clone();
        let mut c = EngineConfig::new(p);
        c.clock = Arc::new(move || n.load(SeqCst));
        Engine::in_memory(c).expect("in-memory engine")
    }

    fn clock() -> Arc<AtomicU64> {
        Arc::new(AtomicU64::new(START))
    }

    async fn mine(engine: &Engine, now: &AtomicU64, to: Address) -> Block {
        now.fetch_add(60, SeqCst);
        let b = engine.block_template(to, vec![]).unwrap().mine_cpu();
        let r = engine.submit_block_async(b.clone()).await.unwrap();
        assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
        b
    }

    fn dev_config() -> PeerConfig {
        PeerConfig {
            dev: true,
            ..PeerConfig::default()
        }
    }

    /// Serves a router on a loopback port; returns its base URL.
    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    async fn call(
        router: &Router,
        method: &str,
        uri: &str,
        body: Option<String>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = body.map(Body::from).unwrap_or_else(Body::empty);
        let resp = router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn state(e: &Engine) -> (Hash256, String, u64) {
        let s = e.status().unwrap();
        (s.best_hash, s.utxo_set_hash, s.log_length)
    }

    async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..100 {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cond()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn engines_mined_apart_converge_on_most_work_chain() {
        let now = clock();
        let (a, b) = (fast_engine(&now), fast_engine(&now));
        let (ka, kb) = (TestKey::new(1), TestKey::new(2));
        for _ in 0..3 {
            mine(&a, &now, ka.address()).await;
        }
        let b1 = mine(&b, &now, kb.address()).await;
        for _ in 0..2 {
            mine(&b, &now, kb.address()).await;
        }
        // A payment on B's branch, so the UTXO sets differ in more than coinbases.
        let pay = kb.spend(
            &[outpoint(b1.txs[0].txid(), 0)],
            &[(ka.address(), 4), (kb.address(), 5)],
        );
        b.submit_tx_async(pay.clone()).await.unwrap();
        for _ in 0..2 {
            mine(&b, &now, kb.address()).await;
        }
        assert_ne!(state(&a).1, state(&b).1);

        let sa = PeerService::new(a.clone(), dev_config());
        let sb = PeerService::new(b.clone(), dev_config());
        let (url_a, url_b) = (serve(sa.router()).await, serve(sb.router()).await);
        sa.add_peer(&url_b, PeerSource::Registered).unwrap();
        sb.add_peer(&url_a, PeerSource::Registered).unwrap();

        // B has more work: syncing from A fetches A's branch but keeps B's chain.
        let b_before = state(&b).0;
        let rb = sb.resolve().await;
        assert!(!rb.adopted, "{rb:?}");
        assert_eq!(rb.peers[0].side, 3, "{rb:?}");
        assert_eq!(state(&b).0, b_before);

        // A adopts B's chain, reorganising away its own three blocks.
        let (status, body) = call(&sa.router(), "POST", "/v1/peers/resolve", None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["adopted"], json!(true), "{body}");
        assert_eq!(body["height"], json!(5));
        assert_eq!(state(&a).0, state(&b).0);
        assert_eq!(state(&a).1, state(&b).1, "identical UTXO set hash");
        assert!(a
            .transaction(&pay.txid())
            .unwrap()
            .unwrap()
            .height
            .is_some());
        assert!(a.verify().unwrap().ok());

        // Both peers now show as seen.
        let (_, peers) = call(&sa.router(), "GET", "/v1/peers", None, None).await;
        assert_eq!(peers[0]["status"], json!("ok"), "{peers}");
        assert_eq!(peers[0]["url"], json!(url_b));

        // The seed's route: nothing new now, so our chain is authoritative.
        let (status, body) = call(&sa.router(), "GET", "/nodes/resolve", None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["message"], json!("Our chain is authoritative"));
        assert_eq!(body["chain"].as_array().unwrap().len(), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_pushes_blocks_and_txs_and_orphans_trigger_sync() {
        let now = clock();
        let (a, b) = (fast_engine(&now), fast_engine(&now));
        let ka = TestKey::new(1);
        // Bind A's listener first so B can be configured with A's URL at start.
        let listener_a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url_a = format!("http://{}", listener_a.local_addr().unwrap());
        let listener_b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url_b = format!("http://{}", listener_b.local_addr().unwrap());
        let sa = PeerService::new(
            a.clone(),
            PeerConfig {
                initial_peers: vec![url_b.clone()],
                self_url: Some(url_a.clone()),
                ..dev_config()
            },
        );
        let sb = PeerService::new(
            b.clone(),
            PeerConfig {
                initial_peers: vec![url_a.clone()],
                self_url: Some(url_b.clone()),
                ..dev_config()
            },
        );
        let ra = sa.router();
        tokio::spawn(async move { axum::serve(listener_a, ra).await });
        let rb = sb.router();
        tokio::spawn(async move { axum::serve(listener_b, rb).await });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run_a = tokio::spawn(sa.clone().run(async move {
            let _ = stop_rx.await;
        }));
        tokio::spawn(sb.clone().run(std::future::pending()));
        // Both run loops are going (each has reached the other once) before A mines.
        assert!(
            wait_for(|| {
                sa.peers().iter().all(|p| p.last_seen.is_some())
                    && sb.peers().iter().all(|p| p.last_seen.is_some())
            })
            .await
        );

        let b1 = mine(&a, &now, ka.address()).await;
        for _ in 0..2 {
            mine(&a, &now, ka.address()).await;
        }
        assert!(
            wait_for(|| b.status().unwrap().best_hash == a.status().unwrap().best_hash).await,
            "B hears A's blocks"
        );
        let pay = ka.spend(&[outpoint(b1.txs[0].txid(), 0)], &[(ka.address(), 9)]);
        a.submit_tx_async(pay.clone()).await.unwrap();
        assert!(
            wait_for(|| b.mempool(10).unwrap().iter().any(|e| e.txid == pay.txid())).await,
            "B hears A's transaction"
        );

        // Stop A's relay, mine two blocks on A, then push only the tip to B: B lacks its
        // parent, answers 202 and syncs from A.
        stop_tx.send(()).unwrap();
        run_a.await.unwrap();
        mine(&a, &now, ka.address()).await;
        let tip = mine(&a, &now, ka.address()).await;
        let push = json!({"hex": hex::encode(tip.encode()), "from": url_a}).to_string();
        let (status, body) = call(&sb.router(), "POST", "/v1/p2p/blocks", Some(push), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["outcome"], json!("unknown_parent"));
        assert!(
            wait_for(|| b.status().unwrap().best_hash == tip.hash()).await,
            "B synced the missing parent from A"
        );
        assert_eq!(state(&a).1, state(&b).1);
    }

    async fn push_tx(s: &PeerService, tx: &Transaction) -> (StatusCode, Value) {
        let push = json!({"hex": hex::encode(tx.encode()), "from": "http://127.0.0.1:9"});
        call(
            &s.router(),
            "POST",
            "/v1/p2p/tx",
            Some(push.to_string()),
            None,
        )
        .await
    }

    fn in_mempool(e: &Engine, txid: Hash256) -> bool {
        e.mempool(100).unwrap().iter().any(|m| m.txid == txid)
    }

    /// Node B for the orphan tests: `funded` blocks paying `k`, two more so their
    /// coinbases mature, and B's peer service running.
    async fn orphan_node(
        k: &TestKey,
        funded: usize,
    ) -> (Arc<AtomicU64>, Engine, PeerService, Vec<Block>) {
        let now = clock();
        let b = fast_engine(&now);
        let mut blocks = Vec::new();
        for _ in 0..funded {
            blocks.push(mine(&b, &now, k.address()).await);
        }
        for _ in 0..2 {
            mine(&b, &now, k.address()).await;
        }
        let sb = PeerService::new(b.clone(), dev_config());
        tokio::spawn(sb.clone().run(std::future::pending()));
        (now, b, sb, blocks)
    }

    /// An orphan's parent may never be relayed at all: it can arrive inside a block.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphan_is_admitted_when_its_parent_arrives_in_a_block() {
        let k = TestKey::new(5);
        let (now, b, sb, funded) = orphan_node(&k, 1).await;
        let parent = k.spend(&[outpoint(funded[0].txs[0].txid(), 0)], &[(k.address(), 9)]);
        let child = k.spend(&[outpoint(parent.txid(), 0)], &[(k.address(), 8)]);
        assert_eq!(push_tx(&sb, &child).await.0, StatusCode::ACCEPTED);
        assert_eq!(sb.orphan_count(), 1);

        // The parent never passes through B's mempool: it arrives mined.
        now.fetch_add(60, SeqCst);
        let mut template = b.block_template(k.address(), vec![]).unwrap();
        template.txs.push(parent.clone());
        let ids: Vec<_> = template.txs.iter().map(|t| t.txid()).collect();
        template.header.merkle_root = engine::merkle::merkle_root(&ids).0;
        let r = b.submit_block_async(template.mine_cpu()).await.unwrap();
        assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
        assert!(!in_mempool(&b, parent.txid()), "confirmed, not pending");
        assert!(
            wait_for(|| in_mempool(&b, child.txid())).await,
            "B's mempool: {:?}",
            b.mempool(100).unwrap()
        );
        assert_eq!(sb.orphan_count(), 0);
    }

    /// The bug: relay pushes run concurrently, so a child could reach a peer before its
    /// parent; the peer refused it (`missing_input`) and, with no transaction sync, never
    /// got it until it was mined. Now it is held as an orphan and admitted once the
    /// parent arrives, as is an orphan of that orphan.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn child_relayed_before_its_parent_is_admitted_once_the_parent_arrives() {
        let k = TestKey::new(4);
        let (_now, b, sb, funded) = orphan_node(&k, 1).await;
        let parent = k.spend(&[outpoint(funded[0].txs[0].txid(), 0)], &[(k.address(), 9)]);
        let child = k.spend(&[outpoint(parent.txid(), 0)], &[(k.address(), 8)]);
        let grandchild = k.spend(&[outpoint(child.txid(), 0)], &[(k.address(), 7)]);

        for (tx, held) in [(&grandchild, 1), (&child, 2)] {
            let (status, body) = push_tx(&sb, tx).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            assert_eq!(body["outcome"], json!("orphan"), "{body}");
            assert_eq!(body["txid"], json!(tx.txid()), "{body}");
            assert_eq!(sb.orphan_count(), held);
        }
        // A duplicate push is held once.
        assert_eq!(push_tx(&sb, &child).await.0, StatusCode::ACCEPTED);
        assert_eq!(sb.orphan_count(), 2);
        assert!(!in_mempool(&b, child.txid()));

        let (status, body) = push_tx(&sb, &parent).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            wait_for(|| [&parent, &child, &grandchild]
                .iter()
                .all(|t| in_mempool(&b, t.txid())))
            .await,
            "B's mempool: {:?}",
            b.mempool(100).unwrap()
        );
        assert_eq!(sb.orphan_count(), 0);
    }

    /// An orphan waits for every transaction it spends; one refused for another reason
    /// when retried (here a double spend of a now-spent output) is dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphan_waits_for_all_its_parents_and_is_dropped_when_invalid() {
        let k = TestKey::new(5);
        let (_now, b, sb, funded) = orphan_node(&k, 2).await;
        let p1 = k.spend(&[outpoint(funded[0].txs[0].txid(), 0)], &[(k.address(), 9)]);
        let p2 = k.spend(&[outpoint(funded[1].txs[0].txid(), 0)], &[(k.address(), 9)]);
        let both = k.spend(
            &[outpoint(p1.txid(), 0), outpoint(p2.txid(), 0)],
            &[(k.address(), 17)],
        );
        // Spends more than p1's output holds: only found out once p1 is known.
        let greedy = k.spend(&[outpoint(p1.txid(), 0)], &[(k.address(), 100)]);

        for tx in [&both, &greedy] {
            assert_eq!(push_tx(&sb, tx).await.0, StatusCode::ACCEPTED);
        }
        assert_eq!(sb.orphan_count(), 2);
        assert_eq!(push_tx(&sb, &p1).await.0, StatusCode::OK);
        // Both retried on p1: `greedy` is dropped, `both` still lacks p2 and is held.
        assert!(wait_for(|| sb.orphan_count() == 1).await);
        assert!(!in_mempool(&b, both.txid()));

        assert_eq!(push_tx(&sb, &p2).await.0, StatusCode::OK);
        assert!(wait_for(|| in_mempool(&b, both.txid())).await);
        assert_eq!(sb.orphan_count(), 0);
        assert!(!in_mempool(&b, greedy.txid()));

        // Only a missing input makes an orphan: a double spend gets the plain refusal.
        let double = k.spend(&[outpoint(p1.txid(), 0)], &[(k.address(), 8)]);
        let (status, body) = push_tx(&sb, &double).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], json!("double_spend"), "{body}");
        assert_eq!(sb.orphan_count(), 0);
    }

    /// A fake peer that offers exactly one block, whatever it is.
    async fn fake_peer(block: Block) -> String {
        let hash = block.hash();
        let hex_block = hex::encode(block.encode());
        let router = Router::new()
            .route(
                "/v1/p2p/hashes",
                post(move || async move { Json(vec![hash]) }),
            )
            .route(
                "/v1/p2p/blocks/{hash}",
                get(move || {
                    let hex = hex_block.clone();
                    async move { Json(json!({ "hex": hex })) }
                }),
            );
        serve(router).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peer_serving_invalid_blocks_is_refused_and_changes_nothing() {
        let now = clock();
        let a = fast_engine(&now);
        let k = TestKey::new(3);
        mine(&a, &now, k.address()).await;
        let before = state(&a);

        // An inflated coinbase with valid proof of work and more work than our chain.
        now.fetch_add(60, SeqCst);
        let mut t = a.block_template(k.address(), vec![]).unwrap();
        t.txs[0].outputs[0].amount = 1_000_000;
        t.header.merkle_root = engine::merkle::merkle_root(&[t.txs[0].txid()]).0;
        let inflated = t.mine_cpu();
        assert!(inflated.header.meets_target());

        // A block whose hash misses its target.
        let mut bad_pow = a.block_template(k.address(), vec![]).unwrap().mine_cpu();
        while bad_pow.header.meets_target() {
            bad_pow.header.nonce = bad_pow.header.nonce.wrapping_add(1);
        }

        for (block, code) in [(inflated, "coinbase_too_large"), (bad_pow, "high_hash")] {
            let s = PeerService::new(a.clone(), dev_config());
            let url = fake_peer(block.clone()).await;
            s.add_peer(&url, PeerSource::Registered).unwrap();
            let report = s.sync_from(&url).await;
            assert!(report.error.is_some(), "{report:?}");
            assert!(!report.adopted);
            assert_eq!(state(&a), before, "nothing changed");
            let view = &s.peers()[0];
            assert_eq!(view.status, "misbehaving", "{view:?}");
            // Banned: a resolve does not even ask it again.
            assert!(s.resolve().await.peers.is_empty());

            // Pushed directly, the same block gets a JSON error and changes nothing.
            let push = json!({ "hex": hex::encode(block.encode()) }).to_string();
            let (status, body) =
                call(&s.router(), "POST", "/v1/p2p/blocks", Some(push), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["error"], json!(code), "{body}");
            assert_eq!(state(&a), before);
        }
    }

    #[tokio::test]
    async fn registering_peers_needs_the_admin_token_outside_dev() {
        let now = clock();
        let e = fast_engine(&now);
        let guarded = PeerService::new(
            e.clone(),
            PeerConfig {
                admin_token: Some("s3cret".into()),
                ..PeerConfig::default()
            },
        )
        .router();
        let add = || Some(json!({"url": "http://127.0.0.1:9"}).to_string());
        let (status, body) = call(&guarded, "POST", "/v1/peers", add(), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], json!("unauthorized"));
        assert!(body["message"].is_string());
        let (status, body) = call(&guarded, "POST", "/v1/peers", add(), Some("nope")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let nodes = || Some(json!({"nodes": ["127.0.0.1:5001"]}).to_string());
        let (status, _) = call(&guarded, "POST", "/nodes/register", nodes(), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (_, peers) = call(&guarded, "GET", "/v1/peers", None, None).await;
        assert_eq!(peers, json!([]), "nothing was registered");

        let (status, body) = call(&guarded, "POST", "/v1/peers", add(), Some("s3cret")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["url"], json!("http://127.0.0.1:9"));
        let (status, body) =
            call(&guarded, "POST", "/nodes/register", nodes(), Some("s3cret")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["message"], json!("New nodes have been added"));
        assert_eq!(
            body["total_nodes"],
            json!(["127.0.0.1:5001", "127.0.0.1:9"])
        );

        // No token configured and not dev: registration is simply off.
        let closed = PeerService::new(e.clone(), PeerConfig::default()).router();
        let (status, body) = call(&closed, "POST", "/v1/peers", add(), Some("x")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        // Dev mode: no token needed.
        let dev = PeerService::new(e, dev_config()).router();
        let (status, _) = call(&dev, "POST", "/v1/peers", add(), None).await;
        assert_eq!(status, StatusCode::CREATED);
    }

    #[tokio::test]
    async fn malformed_requests_get_json_errors() {
        let now = clock();
        let e = fast_engine(&now);
        let r = PeerService::new(e.clone(), dev_config()).router();
        let before = state(&e);
        let cases = [
            ("POST", "/v1/p2p/blocks", Some("not json"), "malformed_json"),
            ("POST", "/v1/p2p/blocks", Some(r#"{"hex":"zz"}"#), "bad_hex"),
            (
                "POST",
                "/v1/p2p/blocks",
                Some(r#"{"hex":"00"}"#),
                "malformed",
            ),
            (
                "POST",
                "/v1/p2p/blocks",
                Some(r#"{"hex":"00","x":1}"#),
                "malformed_json",
            ),
            ("POST", "/v1/p2p/tx", Some(r#"{"hex":"0102"}"#), "malformed"),
            (
                "POST",
                "/v1/p2p/hashes",
                Some(r#"{"locator":["xx"]}"#),
                "malformed_json",
            ),
            ("GET", "/v1/p2p/blocks/xyz", None, "bad_hash"),
            (
                "POST",
                "/v1/peers",
                Some(r#"{"url":"https://example.org"}"#),
                "bad_url",
            ),
            (
                "POST",
                "/v1/peers",
                Some(r#"{"url":"http://h:1/path"}"#),
                "bad_url",
            ),
            ("POST", "/v1/peers", Some(r#"{"url":5}"#), "malformed_json"),
            ("POST", "/nodes/register", Some(r#"{}"#), "missing_nodes"),
            (
                "POST",
                "/nodes/register",
                Some(r#"{"nodes":["ok:1","ftp://x"]}"#),
                "bad_url",
            ),
        ];
        for (method, uri, body, code) in cases {
            let (status, v) = call(&r, method, uri, body.map(String::from), None).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} {uri} {body:?}: {v}"
            );
            assert_eq!(v["error"], json!(code), "{method} {uri} {body:?}: {v}");
            assert!(v["message"].is_string());
        }
        let (_, peers) = call(&r, "GET", "/v1/peers", None, None).await;
        assert_eq!(peers, json!([]), "a list with one bad URL adds nothing");
        let unknown = format!("/v1/p2p/blocks/{}", "ab".repeat(32));
        let (status, v) = call(&r, "GET", &unknown, None, None).await;
        assert_eq!(
            (status, v["error"].clone()),
            (StatusCode::NOT_FOUND, json!("not_found"))
        );
        assert_eq!(state(&e), before);

        // The wire protocol itself: hashes after genesis, and the genesis block by hash.
        let genesis = e.status().unwrap().genesis_hash;
        let (status, v) = call(&r, "GET", "/v1/p2p/locator", None, None).await;
        assert_eq!((status, v), (StatusCode::OK, json!([genesis])));
        let (_, hex_body) = call(&r, "GET", &format!("/v1/p2p/blocks/{genesis}"), None, None).await;
        let bytes = hex::decode(hex_body["hex"].as_str().unwrap()).unwrap();
        assert_eq!(Block::decode(&bytes).unwrap().hash(), genesis);
    }

    #[test]
    fn peer_urls_are_normalised() {
        assert_eq!(
            normalize_peer_url("127.0.0.1:5000").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            normalize_peer_url("http://Node.Example:80/").unwrap(),
            "http://node.example"
        );
        assert_eq!(
            normalize_peer_url(" http://[::1]:8080 ").unwrap(),
            "http://[::1]:8080"
        );
        for bad in [
            "",
            "https://a:1",
            "http://u:p@a:1",
            "http://a:1/x",
            "http://a:1?q",
            "::",
        ] {
            assert!(normalize_peer_url(bad).is_err(), "{bad}");
        }
    }

    /// Refusals still to give: (status, Retry-After), the last one first.
    type Refusals = Arc<Mutex<Vec<(StatusCode, &'static str)>>>;

    /// Answers requests with `refusals` while there are any, then lets them through: a
    /// peer behind a rate limiter.
    async fn refuse_first(
        State(refusals): State<Refusals>,
        req: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> Response {
        let refusal = refusals.lock().unwrap().pop();
        match refusal {
            Some((status, retry_after)) => {
                (status, [(header::RETRY_AFTER, retry_after)], "slow down").into_response()
            }
            None => next.run(req).await,
        }
    }

    /// The bug: a peer answering 429 (its rate limit) or 503 was marked `unreachable` and
    /// backed off exponentially as if it were down, ignoring its `Retry-After`. It must be
    /// retried once its wait is over, and its blocks fetched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peer_answering_429_is_retried_not_dropped() {
        let now = clock();
        let (a, b) = (fast_engine(&now), fast_engine(&now));
        for _ in 0..3 {
            mine(&b, &now, TestKey::new(2).address()).await;
        }
        // Popped from the end: a 429 first, then a 503, then B serves normally.
        let refusals: Refusals = Arc::new(Mutex::new(vec![
            (StatusCode::SERVICE_UNAVAILABLE, "1"),
            (StatusCode::TOO_MANY_REQUESTS, "1"),
        ]));
        let sb = PeerService::new(b.clone(), dev_config());
        let router = sb.router().layer(axum::middleware::from_fn_with_state(
            refusals.clone(),
            refuse_first,
        ));
        let url_b = serve(router).await;
        let sa = PeerService::new(a.clone(), dev_config());
        sa.add_peer(&url_b, PeerSource::Registered).unwrap();

        let report = sa.sync_from(&url_b).await;
        assert!(
            report.error.as_deref().unwrap().contains("429"),
            "{report:?}"
        );
        let view = &sa.peers()[0];
        assert_eq!(
            (view.status, view.failures),
            ("rate_limited", 0),
            "{view:?}"
        );
        let wait = sa.waiting(&url_b).expect("waits as asked");
        assert!(
            wait <= Duration::from_secs(1),
            "Retry-After: 1 honoured, {wait:?}"
        );

        // Inside the wait nothing is sent (the 503 is still queued for B's next answer).
        let early = sa.sync_from(&url_b).await;
        assert!(early.error.unwrap().contains("back off"));
        assert_eq!(refusals.lock().unwrap().len(), 1);

        // The run loop comes back after each wait and gets the blocks.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = tokio::spawn(sa.clone().run(async move {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while state(&a).0 != state(&b).0 {
            assert!(
                Instant::now() < deadline,
                "never synced: {:?}",
                sa.peers()[0]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(refusals.lock().unwrap().is_empty());
        let view = &sa.peers()[0];
        assert_eq!((view.status, view.failures), ("ok", 0), "{view:?}");
        let _ = stop.send(());
        runner.await.unwrap();
    }

    fn with_file(initial: &[&str], dir: &std::path::Path) -> PeerConfig {
        PeerConfig {
            initial_peers: initial.iter().map(|u| u.to_string()).collect(),
            peers_file: Some(PeerFile::in_dir(dir)),
            ..dev_config()
        }
    }

    fn listed(s: &PeerService) -> Vec<(String, PeerSource)> {
        s.peers().into_iter().map(|p| (p.url, p.source)).collect()
    }

    #[tokio::test]
    async fn known_peers_survive_a_restart_merged_with_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let (u9, u10, u11) = (
            "http://127.0.0.1:9",
            "http://127.0.0.1:10",
            "http://127.0.0.1:11",
        );
        let first = PeerService::new(fast_engine(&clock()), with_file(&[u9], dir.path()));
        let body = Some(format!("{{\"url\":\"{u10}\"}}"));
        let (status, _) = call(&first.router(), "POST", "/v1/peers", body, None).await;
        assert_eq!(status, StatusCode::CREATED);
        let registered_at = first.peers()[0].added_at;
        drop(first);

        // Same data directory, other flags: the saved peers come back, with their source.
        let second = PeerService::new(fast_engine(&clock()), with_file(&[u11], dir.path()));
        let want = |u: &str, s| (u.to_string(), s);
        assert_eq!(
            listed(&second),
            vec![
                want(u10, PeerSource::Registered),
                want(u11, PeerSource::Config),
                want(u9, PeerSource::Config),
            ]
        );
        assert_eq!(second.peers()[0].added_at, registered_at);
        // The merged list is saved at once, so a third start sees all three.
        let saved = PeerFile::in_dir(dir.path()).load().unwrap();
        assert_eq!(saved.len(), 3, "{saved:?}");
    }

    #[tokio::test]
    async fn a_corrupt_peer_file_is_set_aside_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = PeerFile::in_dir(dir.path());
        std::fs::write(file.path(), "{\"version\": 1, \"peers\": [tru").unwrap();
        let s = PeerService::new(
            fast_engine(&clock()),
            with_file(&["127.0.0.1:9"], dir.path()),
        );
        assert_eq!(
            listed(&s),
            vec![("http://127.0.0.1:9".to_string(), PeerSource::Config)]
        );
        let bad = std::fs::read_to_string(dir.path().join("peers.json.bad")).unwrap();
        assert!(bad.ends_with("[tru"), "the unreadable list is kept: {bad}");
        assert_eq!(file.load().unwrap().len(), 1, "a fresh list replaced it");
    }
}
