//! Peers and consensus: the peer list, the node-to-node wire protocol under `/v1/p2p/`,
//! chain sync (headers first: locator → headers → the bodies of a chain with more work,
//! each block validated by the engine), relay of new
//! blocks and transactions, and the seed's `/nodes/register` and `/nodes/resolve`.
//!
//! Trust model: nothing a peer says is believed. Every block and transaction goes through
//! the engine, which validates it completely, reorganises only onto more *verified* work
//! and changes nothing when it refuses something. A peer that serves invalid data is
//! marked misbehaving and left alone for [`BAN_SECS`].
//!
//! A peer answering 429 (rate limited) or 503 (busy) is healthy but asks us to slow down:
//! its sync is retried after its `Retry-After` (see [`backoff`]), it is not counted as
//! unreachable.
//!
//! The peer list survives restarts in the data directory ([`store`]).
//!
//! The files, one concept each:
//! - [`registry`]: the known peers, their health (backoff, bans), saving, who may register;
//! - [`wire`]: the node-to-node request and answer types and the bounded JSON client;
//! - [`sync`]: fetching a peer's chain (locator → headers → blocks) into the engine;
//! - [`pipeline`]: the bodies fetched, verified and connected in overlapping stages;
//! - [`relay`]: pushing new blocks and transactions to peers, the orphan pool's retries;
//! - [`handlers`]: the HTTP routes (`/v1/peers`, `/v1/p2p/*`, the seed's `/nodes/*`);
//! - [`misbehaviour`]: scores of the clients pushing blocks and transactions, and bans;
//! - [`orphans`], [`backoff`], [`store`]: the data structures those use.

mod backoff;
mod handlers;
pub(crate) use handlers::PeerApi;
pub mod misbehaviour;
pub mod orphans;
mod pipeline;
mod registry;
mod relay;
mod store;
mod sync;
mod wire;

pub use misbehaviour::{BanConfig, BanCounts, BannedView};
pub use store::{PeerFile, PeerFileError, SavedPeer, PEERS_FILE};

use crate::error::{ApiResult, AppError};
use crate::ratelimit::RateLimiter;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::encoding::{Decode, Encode};
use engine::notify::NotificationKind;
use engine::{Block, BlockAccepted, Engine, EngineError, Hash256, Reject, Transaction};
use misbehaviour::{Misbehaviour, Offence, Scored};
use orphans::{Inserted, Orphan, OrphanPool, OrphanRefused};
use pipeline::FetchCost;
pub use pipeline::SyncTimings;
use registry::*;
pub use registry::{normalize_peer_url, PeerSource, PeerView};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync::*;
pub use sync::{ResolveReport, SyncReport};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio::time::Instant;
use wire::*;

/// Hashes asked for per sync round (and the most a peer may ask of us).
const HASHES_PER_ROUND: usize = 500;

/// Headers asked for per sync round (and the most a peer may ask of us): 160 KB.
const HEADERS_PER_ROUND: usize = 2000;

/// Headers of a peer's chain held before its work beats ours; past that, the sync stops
/// (a peer cannot make us collect headers without end).
const MAX_PENDING_HEADERS: usize = 200_000;

/// Blocks fetched concurrently during a sync (they are still submitted in order).
const FETCH_PARALLEL: usize = 8;

/// Upper bound on sync rounds, so a peer cannot keep one sync going forever.
const MAX_ROUNDS: usize = 100_000;

/// How long a misbehaving peer is ignored, and (by default) how long a client whose
/// pushes misbehaved is refused pushes ([`misbehaviour`]).
pub const BAN_SECS: u64 = 600;
/// Least time between two syncs from one peer started by orphan block pushes: anyone can
/// push orphans as fast as they like, and each would otherwise start a sync with every
/// known peer (a cheap request turned into outbound work times the peer count).
pub const ORPHAN_SYNC_GAP: Duration = Duration::from_secs(2);

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
    /// How clients pushing invalid blocks or floods of orphans are banned.
    pub bans: BanConfig,
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
    /// Scores and bans of the clients that push to `/v1/p2p/*`.
    misbehaviour: Misbehaviour,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
                misbehaviour: Misbehaviour::new(config.bans.clone()),
            }),
        };
        let saved = service.load_saved();
        service.add_initial(&config.initial_peers, &saved);
        for p in &saved {
            service.add_saved(p);
        }
        // Startup, nothing else runs yet: write the merged list now if it is new. A
        // failure is logged (by the save) and not fatal: the next registration retries.
        if service.saved_peers() != saved {
            let _ = service.save_blocking();
        }
        service
    }

    /// Syncs from the initial peers, keeps retrying unreachable ones with backoff,
    /// re-syncs healthy ones now and then, and relays new blocks and transactions to
    /// every peer, until `shutdown` resolves.
    ///
    /// The engine is subscribed to here, when `run` is called, not when the returned
    /// future is first polled: a spawned future may wait for a worker, and a block
    /// committed in that gap would escape the relay and the orphan pool's retries.
    pub fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let notes = self.inner.engine.subscribe();
        self.run_subscribed(notes, shutdown)
    }

    async fn run_subscribed(
        self,
        notes: tokio::sync::broadcast::Receiver<Arc<engine::notify::Notification>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
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
}

#[cfg(test)]
mod tests;
