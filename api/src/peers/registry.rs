//! The peer registry: who our peers are, their health (backoff, bans), the saved list,
//! and who may register new ones.

use super::*;

/// How this node first learned of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeerSource {
    Config,
    Registered,
}

pub(super) struct Peer {
    pub(super) source: PeerSource,
    pub(super) added_at: u64,
    pub(super) last_seen: Option<u64>,
    pub(super) last_error: Option<String>,
    pub(super) failures: u32,
    /// Back-off answers (429/503) in a row; they say nothing against the peer's health.
    pub(super) throttled: u32,
    pub(super) next_sync: Instant,
    pub(super) banned_until: Option<Instant>,
    pub(super) last_sync: Option<SyncReport>,
    /// When an orphan push last started a sync from this peer ([`ORPHAN_SYNC_GAP`]).
    pub(super) orphan_sync_at: Option<Instant>,
}

impl Peer {
    pub(super) fn new(source: PeerSource, added_at: u64) -> Peer {
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
            orphan_sync_at: None,
        }
    }

    pub(super) fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|t| t > now)
    }

    /// How long the peer still asked us to stay away (None if it did not, or that is over).
    pub(super) fn waiting(&self, now: Instant) -> Option<Duration> {
        (self.throttled > 0 && self.next_sync > now).then(|| self.next_sync - now)
    }

    /// Records one sync's outcome: when to sync next, and whether the peer is healthy,
    /// unreachable (backoff) or misbehaving (ignored for [`BAN_SECS`]).
    pub(super) fn record(&mut self, url: &str, result: &Result<(), SyncError>, now: Instant) {
        match result {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(peer = %url, "peer reachable again");
                }
                self.answered();
                self.last_error = None;
                self.next_sync = now + Duration::from_secs(RESYNC_SECS);
            }
            Err(SyncError::Busy | SyncError::Waiting(_)) => {}
            Err(SyncError::Unreachable(e)) => {
                // Said once when a peer goes away, not on every retry of the backoff.
                if self.failures == 0 {
                    tracing::info!(peer = %url, "peer lost: {e}; retrying with backoff");
                }
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
                self.ban(url, e, Duration::from_secs(BAN_SECS), now);
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

    /// The peer served or pushed invalid data: ignored for `ban_for`.
    pub(super) fn ban(&mut self, url: &str, why: &str, ban_for: Duration, now: Instant) {
        let ban_secs = ban_for.as_secs();
        tracing::warn!(peer = %url, ban_secs, "peer banned: misbehaved: {why}");
        self.last_seen = Some(unix_now());
        self.last_error = Some(format!("misbehaved: {why}"));
        self.banned_until = Some(now + ban_for);
        self.next_sync = now + ban_for;
    }

    /// The peer gave a proper answer: it is up and no longer asking us to wait.
    pub(super) fn answered(&mut self) {
        self.failures = 0;
        self.throttled = 0;
        self.last_seen = Some(unix_now());
    }
}

/// A peer as `GET /v1/peers` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
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

/// Whether `given` is the admin token: their SHA-256d digests compared in constant time,
/// so neither the time taken nor an early exit on a length mismatch tells a caller how
/// much of a guess was right, or how long the token is.
pub(super) fn token_matches(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    let given = Hash256::sha256d(given.as_bytes());
    let expected = Hash256::sha256d(expected.as_bytes());
    given.0.ct_eq(&expected.0).into()
}

/// The credentials of an `Authorization: Bearer <token>` header. The scheme is matched
/// case-insensitively (RFC 7235 section 2.1: `bearer` and `BEARER` are `Bearer`).
pub(super) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
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

impl PeerService {
    /// The peers saved by an earlier run. A file that cannot be read is reported and
    /// ignored (the node still starts, with its `--peer` flags); an unparseable one is
    /// also set aside for inspection, since the next save replaces it.
    pub(super) fn load_saved(&self) -> Vec<SavedPeer> {
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
    pub(super) fn add_initial(&self, raw: &[String], saved: &[SavedPeer]) {
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
    pub(super) fn add_saved(&self, p: &SavedPeer) {
        let added =
            normalize_peer_url(&p.url).and_then(|url| self.add_peer_at(&url, p.source, p.added_at));
        if let Err(e) = added {
            tracing::warn!(peer = %p.url, "ignoring saved peer: {e}");
        }
    }

    /// What the peer file holds for the current list.
    pub(super) fn saved_peers(&self) -> Vec<SavedPeer> {
        self.lock_peers()
            .iter()
            .map(|(url, p)| SavedPeer {
                url: url.clone(),
                source: p.source,
                added_at: p.added_at,
            })
            .collect()
    }

    /// Writes the current list to the peer file, if there is one. A failure is logged
    /// and returned; the peers stay known in memory either way.
    pub(super) fn save_blocking(&self) -> Result<(), PeerFileError> {
        let Some(file) = &self.inner.config.peers_file else {
            return Ok(());
        };
        let _one_writer = self
            .inner
            .save_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Listed under the writer lock: a write that comes later never holds an older list.
        let peers = self.saved_peers();
        file.save(&peers).inspect_err(|e| {
            tracing::warn!(error = %e, "peer list not saved; peers are kept in memory");
        })
    }

    /// [`Self::save_blocking`] off the async workers (it fsyncs); done before a
    /// registration is answered, so an acknowledged peer survives a crash. A list that
    /// could not be saved is an error for the caller (503 `storage_error`): the peer is
    /// known until the process ends, but a registration must not be acknowledged as
    /// lasting when it would be lost on restart.
    pub(super) async fn persist(&self) -> ApiResult<()> {
        let s = self.clone();
        let saved = tokio::task::spawn_blocking(move || s.save_blocking())
            .await
            .map_err(|e| AppError::unavailable(format!("peer list save did not run: {e}")))?;
        saved.map_err(|e| {
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_error",
                format!("the peer is known until restart but could not be saved: {e}"),
            )
        })
    }

    /// Adds a peer (already normalised) learned now; false if it was known. Refused if
    /// it is ourselves or the list is full.
    pub(super) fn add_peer(&self, url: &str, source: PeerSource) -> Result<bool, String> {
        self.add_peer_at(url, source, unix_now())
    }

    pub(super) fn add_peer_at(
        &self,
        url: &str,
        source: PeerSource,
        added_at: u64,
    ) -> Result<bool, String> {
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
        tracing::info!(peer = %url, source = ?source, "peer added");
        Ok(true)
    }

    pub(super) fn lock_peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Peer>> {
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

    pub(super) fn peer_urls(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock_peers()
            .iter()
            .filter(|(_, p)| !p.banned(now))
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// The peers an orphan block push may start a sync from (`from` alone when it is a
    /// known peer, else every peer), each with how long to wait first. Left out: banned
    /// peers, peers in their unreachable backoff or asked-for wait (an orphan push must
    /// not knock sooner than the schedule would), and peers that already have a sync
    /// waiting. At most one sync per [`ORPHAN_SYNC_GAP`] per peer: a push within the gap
    /// of the last one is deferred to the gap's end, never dropped (the block it lacks
    /// may have been announced after the sync already running had read the peer's tip).
    pub(super) fn orphan_sync_targets(&self, from: Option<&str>) -> Vec<(String, Duration)> {
        let now = Instant::now();
        let mut peers = self.lock_peers();
        let from = from.and_then(|f| normalize_peer_url(f).ok());
        let only = from.filter(|f| peers.contains_key(f));
        let mut out = Vec::new();
        for (url, p) in peers.iter_mut() {
            if only.as_ref().is_some_and(|o| o != url) {
                continue;
            }
            let backing_off = (p.failures > 0 || p.throttled > 0) && p.next_sync > now;
            if p.banned(now) || backing_off {
                continue;
            }
            let at = match p.orphan_sync_at {
                Some(last) if last > now => continue, // one is already waiting
                Some(last) if now < last + ORPHAN_SYNC_GAP => last + ORPHAN_SYNC_GAP,
                _ => now,
            };
            p.orphan_sync_at = Some(at);
            out.push((url.clone(), at - now));
        }
        out
    }

    /// The known peer that a push's `from` names, if its URL's host is the address the
    /// push came from (IPv6 by /64). Only then is the claim believed: anyone can write
    /// another peer's URL into `from`, and must not get that peer banned by it. Host names
    /// are not resolved (a peer known by name is never matched).
    pub(super) fn peer_at(&self, from: Option<&str>, ip: IpAddr) -> Option<String> {
        let url = normalize_peer_url(from?).ok()?;
        let parsed = reqwest::Url::parse(&url).ok()?;
        let host = parsed.host_str()?;
        let host: IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
        let same = RateLimiter::key(host) == RateLimiter::key(ip);
        (same && self.lock_peers().contains_key(&url)).then_some(url)
    }

    /// Marks the known peer at `url` misbehaving for `ban_for`.
    pub(super) fn ban_peer(&self, url: &str, why: &str, ban_for: Duration) {
        if let Some(p) = self.lock_peers().get_mut(url) {
            p.ban(url, why, ban_for, Instant::now());
        }
    }

    pub(super) fn due_peers(&self) -> Vec<String> {
        let now = Instant::now();
        let busy = self.inner.syncing.lock().unwrap_or_else(|e| e.into_inner());
        self.lock_peers()
            .iter()
            .filter(|(u, p)| !p.banned(now) && p.next_sync <= now && !busy.contains_key(*u))
            .map(|(u, _)| u.clone())
            .collect()
    }

    pub(super) fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        if self.inner.config.dev {
            return Ok(());
        }
        let Some(expected) = self.inner.config.admin_token.as_deref() else {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "registering peers needs an admin token: start the node with --admin-token \
                 (or --dev)",
            ));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        match given {
            None => Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "registering peers needs `Authorization: Bearer <admin token>`",
            )),
            Some(t) if token_matches(t, expected) => Ok(()),
            Some(_) => Err(AppError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "wrong admin token",
            )),
        }
    }

    /// Validates every URL first, so a list with one bad entry adds nothing.
    pub(super) fn register(&self, raw: &[String]) -> ApiResult<Vec<String>> {
        let urls = raw
            .iter()
            .map(|u| normalize_peer_url(u).map_err(|e| AppError::bad_request("bad_url", e)))
            .collect::<ApiResult<Vec<_>>>()?;
        let mut added = Vec::new();
        for url in urls {
            match self.add_peer(&url, PeerSource::Registered) {
                Ok(true) => added.push(url),
                Ok(false) => {}
                Err(e) => return Err(AppError::bad_request("bad_url", e)),
            }
        }
        Ok(added)
    }
}
