//! Chain sync from one peer, headers first: locator → headers (linkage, proof of work and
//! total work judged before any body is fetched) → the bodies of a chain with more work
//! than ours, through the block pipeline ([`super::pipeline`]); how a sync ends decides
//! the peer's health.

use super::*;
use engine::headers::HeaderChain;

/// What one sync from one peer did.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub peer: String,
    /// Headers the peer sent (each checked for linkage and proof of work).
    pub headers: usize,
    /// Blocks fetched from the peer.
    pub fetched: usize,
    /// Blocks that extended or reorganised our best chain.
    pub connected: usize,
    /// Blocks stored on a side branch (not more work yet).
    pub side: usize,
    /// Whether our best chain changed to the peer's.
    pub adopted: bool,
    pub error: Option<String>,
    /// Where the time went, when blocks were fetched.
    pub timings: Option<SyncTimings>,
}

/// The result of syncing from every peer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ResolveReport {
    pub adopted: bool,
    pub height: u64,
    #[schema(value_type = String)]
    pub best_hash: Hash256,
    pub peers: Vec<SyncReport>,
}

/// Why a sync stopped early.
#[derive(Debug, thiserror::Error)]
pub(super) enum SyncError {
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

/// Refused only because a transaction it spends is unknown (not spent, not invalid):
/// it may become valid when that transaction arrives.
pub(super) fn is_orphan_refusal(e: &EngineError) -> bool {
    matches!(e.reject(), Some(Reject::MissingInput(..)))
}

/// Sorts an engine refusal of a peer's block into "the peer is lying" or "not now".
pub(super) fn classify_block_error(e: EngineError) -> SyncError {
    match e.reject() {
        // A time ahead of our clock, or a refusal by our local policy: nothing against the
        // peer, try again later.
        Some(r) if matches!(r, Reject::TimeTooNew { .. }) || !r.is_consensus() => {
            SyncError::Deferred(e.to_string())
        }
        // We ask for blocks in chain order, so an unknown parent is the peer's fault too.
        Some(_) => SyncError::Misbehaved(e.to_string()),
        None => SyncError::Engine(e),
    }
}

impl PeerService {
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

    pub(super) fn waiting(&self, url: &str) -> Option<Duration> {
        let now = Instant::now();
        self.lock_peers().get(url).and_then(|p| p.waiting(now))
    }

    /// One sync per peer at a time. A request that arrives while one runs (say, a pushed
    /// block with an unknown parent) may concern blocks the running sync asked for too
    /// early to see, so it is not dropped: the running sync goes one more time.
    pub(super) async fn sync_guarded(
        &self,
        url: &str,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
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

    /// Headers first, in rounds: the peer's headers after our locator, each checked for
    /// linkage and proof of work ([`HeaderChain`]) as they come, and the bodies of the
    /// blocks we lack fetched only once the header chain has more work than our best
    /// chain (and the minimum chain work). A peer whose chain has no more work than ours
    /// costs us its headers. After the first round the locator starts with the last
    /// header the peer gave us, so it goes on from there.
    pub(super) async fn sync_inner(
        &self,
        url: &str,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let mut progress: Option<SyncProgress> = None;
        let result = self.sync_rounds(url, report, &mut progress).await;
        if let Some(p) = &progress {
            p.done(&self.inner.engine, report, &result);
        }
        if report.connected > 0 {
            self.compact_ledger().await;
        }
        result
    }

    /// After a sync connected blocks: the copy-on-write of their commits leaves the
    /// ledger file about twice its live size, so its free pages go back to the
    /// filesystem (when they are worth it; see `Engine::compact`). A failure is logged,
    /// not fatal: the file is as valid as before, only larger.
    async fn compact_ledger(&self) {
        let engine = self.inner.engine.clone();
        let started = Instant::now();
        match tokio::task::spawn_blocking(move || engine.compact()).await {
            Ok(Ok(Some(c))) => tracing::info!(
                before = c.before,
                after = c.after,
                ms = started.elapsed().as_millis() as u64,
                "ledger compacted after the sync: {} MB → {} MB",
                c.before >> 20,
                c.after >> 20
            ),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "ledger compaction after the sync failed"),
            Err(e) => tracing::warn!(error = %e, "ledger compaction task failed"),
        }
    }

    /// The rounds of [`PeerService::sync_inner`]; `progress` starts with the first block
    /// to fetch.
    async fn sync_rounds(
        &self,
        url: &str,
        report: &mut SyncReport,
        progress: &mut Option<SyncProgress>,
    ) -> Result<(), SyncError> {
        let engine = &self.inner.engine;
        let mut chain: Option<HeaderChain> = None;
        // Blocks of the header chain we do not store, in chain order, not fetched yet.
        let mut pending: Vec<Hash256> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let mut locator = engine.locator()?;
            if let Some(c) = &chain {
                locator.insert(0, c.last());
            }
            let headers = self.post_headers(url, locator, HEADERS_PER_ROUND).await?;
            report.headers += headers.len();
            let Some(first) = headers.first() else { break };
            // The peer's best chain moved off the headers it gave us: start again from
            // where it now forks from ours.
            if chain.as_ref().is_some_and(|c| c.last() != first.prev_hash) {
                (chain, pending) = (None, Vec::new());
            }
            let c = match &mut chain {
                Some(c) => c,
                None => chain.insert(self.header_chain_from(first.prev_hash)?),
            };
            c.extend(&headers, engine.params())
                .map_err(|e| SyncError::Misbehaved(format!("bad headers: {e}")))?;
            let hashes: Vec<Hash256> = headers.iter().map(|h| h.hash()).collect();
            pending.extend(engine.unknown_blocks(&hashes)?);
            if !pending.is_empty() && self.worth_fetching(c)? {
                if progress.is_none() {
                    *progress = Some(SyncProgress::start(self, url).await);
                }
                let blocks = std::mem::take(&mut pending);
                let mut timings = report.timings.take().unwrap_or_default();
                let fetched = self
                    .fetch_and_connect(url, blocks, report, &mut timings)
                    .await;
                report.timings = Some(timings);
                fetched?;
                if let Some(p) = progress.as_ref() {
                    p.round(engine, report);
                }
            } else if pending.len() > MAX_PENDING_HEADERS {
                return Err(SyncError::Deferred(format!(
                    "{} headers without more work than our chain: stopped",
                    pending.len()
                )));
            }
            if headers.len() < HEADERS_PER_ROUND {
                break;
            }
        }
        match chain {
            Some(c) if !pending.is_empty() => self.not_worth_fetching(&c, pending.len()),
            _ => Ok(()),
        }
    }

    /// A header chain from `from`, the parent of the peer's first header: a block the
    /// peer found in our locator, so one we store.
    fn header_chain_from(&self, from: Hash256) -> Result<HeaderChain, SyncError> {
        HeaderChain::from_known(&self.inner.engine, from)?.ok_or_else(|| {
            SyncError::Misbehaved(format!(
                "headers start after block {from}, which is not in our locator"
            ))
        })
    }

    /// Whether the bodies of `chain` are worth fetching: more work than our best chain
    /// and at least the minimum chain work.
    fn worth_fetching(&self, chain: &HeaderChain) -> Result<bool, SyncError> {
        let engine = &self.inner.engine;
        let work = chain.work();
        Ok(work > engine.tip_work()? && work >= engine.params().min_chain_work)
    }

    /// The sync ends with headers whose bodies were not fetched. Below the minimum chain
    /// work that is worth saying (the node cannot start without such a peer); a chain with
    /// no more work than ours is simply not ours to take.
    fn not_worth_fetching(&self, chain: &HeaderChain, left: usize) -> Result<(), SyncError> {
        let min = self.inner.engine.params().min_chain_work;
        if chain.work() < min {
            return Err(SyncError::Deferred(format!(
                "the peer's chain (work {}) is below the minimum chain work {}: not fetched",
                engine::pow::u256_hex(&chain.work()),
                engine::pow::u256_hex(&min)
            )));
        }
        tracing::debug!(
            headers = left,
            work = %engine::pow::u256_hex(&chain.work()),
            "sync: the peer's chain has no more work than ours; its blocks were not fetched"
        );
        Ok(())
    }

    /// The peer's best height, for the progress lines only (None if it does not say).
    async fn peer_height(&self, url: &str) -> Option<u64> {
        let status: serde_json::Value = self.get_json(url, "/v1/status", 1 << 16).await.ok()?;
        status["height"].as_u64()
    }

    /// Fetches one block body and says what the fetch and the decoding cost.
    pub(super) async fn fetch_block_timed(
        &self,
        url: &str,
        hash: Hash256,
    ) -> Result<(Block, FetchCost), SyncError> {
        let max = self
            .inner
            .engine
            .params()
            .max_block_bytes
            .saturating_mul(2)
            .saturating_add(1024);
        let start = Instant::now();
        let bytes = self
            .get_block_bytes(url, &format!("/v1/p2p/blocks/{hash}"), max)
            .await?;
        let fetched = Instant::now();
        let block = Block::decode(&bytes)
            .map_err(|e| SyncError::Misbehaved(format!("block {hash} does not decode: {e}")))?;
        if block.hash() != hash {
            return Err(SyncError::Misbehaved(format!(
                "asked for block {hash}, got {}",
                block.hash()
            )));
        }
        let cost = FetchCost {
            fetch: fetched - start,
            decode: fetched.elapsed(),
            bytes: bytes.len(),
        };
        Ok((block, cost))
    }

    /// Block validation checks every signature: run it off the async worker threads.
    pub(super) async fn submit_block(&self, block: Block) -> Result<BlockAccepted, EngineError> {
        let engine = self.inner.engine.clone();
        tokio::task::spawn_blocking(move || engine.submit_block(block))
            .await
            .map_err(|_| EngineError::Closed)?
    }

    pub(super) fn remember_origin(&self, hash: Hash256, url: &str) {
        let mut origins = self.inner.origins.lock().unwrap_or_else(|e| e.into_inner());
        // Crude bound: the map only saves an echo, so forgetting everything is harmless.
        if origins.len() >= MAX_ORIGINS {
            origins.clear();
        }
        origins.insert(hash, url.to_string());
    }

    pub(super) fn origin_of(&self, hash: &Hash256) -> Option<String> {
        self.inner
            .origins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
            .cloned()
    }

    /// A peer pushed a block whose parent we lack: sync from it (or, when we cannot
    /// tell who it is, from everyone) in the background, within each peer's backoff and
    /// at most once per [`ORPHAN_SYNC_GAP`] per peer (later pushes wait for the gap).
    pub(super) fn sync_after_orphan(&self, from: Option<String>) {
        for (url, wait) in self.orphan_sync_targets(from.as_deref()) {
            let s = self.clone();
            tokio::spawn(async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                s.sync_from(&url).await;
            });
        }
    }
}

/// Log lines of one sync that fetched blocks: a line per round (height of the peer's
/// height, blocks per second) and one when it ends — like Bitcoin Core's progress during
/// initial block download, so an operator sees a sync move and how fast.
struct SyncProgress {
    peer: String,
    peer_height: Option<u64>,
    started: Instant,
    /// The engine's block timings when the first block was asked for.
    engine_before: engine::BlockTimings,
}

impl SyncProgress {
    async fn start(service: &PeerService, url: &str) -> SyncProgress {
        let peer_height = service.peer_height(url).await;
        tracing::info!(peer = %url, peer_height, "sync: fetching blocks from peer");
        SyncProgress {
            peer: url.to_string(),
            peer_height,
            engine_before: service.inner.engine.block_timings(),
            started: Instant::now(),
        }
    }

    fn blocks_per_second(&self, report: &SyncReport) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        format!("{:.1}", report.fetched as f64 / secs)
    }

    fn round(&self, engine: &engine::Engine, report: &SyncReport) {
        let height = engine.status().map(|s| s.height).ok();
        tracing::info!(
            peer = %self.peer,
            height,
            peer_height = self.peer_height,
            fetched = report.fetched,
            blocks_per_s = self.blocks_per_second(report),
            "sync progress: height {} of {}",
            height.map_or("?".into(), |h| h.to_string()),
            self.peer_height.map_or("?".into(), |h| h.to_string()),
        );
    }

    /// Completes the report's timings and says how the sync ended, with its breakdown.
    fn done(
        &self,
        engine: &engine::Engine,
        report: &mut SyncReport,
        result: &Result<(), SyncError>,
    ) {
        let blocks_per_s = self.blocks_per_second(report);
        let t = report.timings.get_or_insert_with(Default::default);
        t.wall_ms = self.started.elapsed().as_secs_f64() * 1e3;
        t.engine = engine.block_timings().since(&self.engine_before);
        let ms = |v: f64| format!("{v:.0}");
        tracing::info!(
            peer = %self.peer,
            fetched = report.fetched,
            connected = report.connected,
            side = report.side,
            secs = format!("{:.1}", t.wall_ms / 1e3),
            blocks_per_s,
            fetch_ms = ms(t.fetch_ms),
            decode_ms = ms(t.decode_ms),
            check_ms = ms(t.engine.check_ms),
            verify_ms = ms(t.engine.verify_ms),
            fold_ms = ms(t.engine.fold_ms),
            commit_ms = ms(t.engine.commit_ms),
            commits = t.engine.commits,
            starved_ms = ms(t.starved_ms),
            error = result.as_ref().err().map(|e| e.to_string()),
            "sync: {}",
            if result.is_ok() { "done" } else { "stopped" }
        );
    }
}
