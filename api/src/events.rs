//! `GET /v1/events`: push over server-sent events. Each event's SSE id is the event-log
//! sequence number of the record it comes from, so a client reconnecting with
//! `Last-Event-ID` gets everything after it: the feed subscribes to the engine first,
//! then replays the log from that id, then continues live, skipping every sequence
//! number it already sent. A receiver that lags behind the broadcast buffer resyncs
//! from the log the same way instead of silently dropping events.
//!
//! Frames are rendered once per notification and shared by all streams ([`frames`]); a
//! stream only decides which of them its topics want.

mod frames;

pub use frames::FrameCache;

use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use crate::v1::parse_address;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use engine::notify::{Notification, NotificationKind};
use engine::{Address, Engine};
use frames::Frames;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio::time::Sleep;

/// Log records read per replay step.
const REPLAY_BATCH: usize = 1000;
/// Mempool-driven `work` events are sent at most this often per client: a burst of
/// transactions should not make every miner rebuild its job for each one.
const MEMPOOL_WORK_EVERY: Duration = Duration::from_secs(1);
/// Most addresses one stream may watch.
const MAX_ADDRESSES: usize = 100;
/// A quiet stream sends a comment this often, so proxies and clients see it is alive.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// The keep-alive comment (what axum's `KeepAlive` sent before: an empty comment).
const KEEP_ALIVE: Bytes = Bytes::from_static(b":\n\n");

#[derive(Default, Debug, Clone)]
pub struct Topics {
    pub blocks: bool,
    pub mempool: bool,
    pub work: bool,
    /// The Stratum workers list (event `workers`, not from the event log: no id).
    pub workers: bool,
    pub addresses: Vec<Address>,
}

impl Topics {
    pub fn parse(s: &str) -> ApiResult<Topics> {
        let mut t = Topics::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "blocks" => t.blocks = true,
                "mempool" => t.mempool = true,
                "work" => t.work = true,
                "workers" => t.workers = true,
                _ => match part.strip_prefix("address:") {
                    Some(a) => {
                        let a = parse_address(a)?;
                        if !t.addresses.contains(&a) {
                            t.addresses.push(a);
                        }
                    }
                    None => {
                        return Err(AppError::bad_request(
                            "bad_topic",
                            format!(
                                "unknown topic `{part}` (blocks, mempool, work, workers, address:<addr>)"
                            ),
                        ))
                    }
                },
            }
        }
        if t.addresses.len() > MAX_ADDRESSES {
            return Err(AppError::bad_request(
                "too_many_topics",
                format!("at most {MAX_ADDRESSES} addresses per stream"),
            ));
        }
        if !t.blocks && !t.mempool && !t.work && !t.workers && t.addresses.is_empty() {
            return Err(AppError::bad_request("bad_topic", "no topics given"));
        }
        Ok(t)
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated: `blocks`, `mempool`, `work`, `workers`, `address:<addr>`.
    topics: Option<String>,
    /// Same as the `Last-Event-ID` header (for clients that cannot set headers).
    last_event_id: Option<u64>,
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of block_connected, block_disconnected, mempool_added, mempool_removed, balance, work, reset, workers"),
              (status = 400, body = crate::error::ErrorBody),
              (status = 503, description = "too_many_subscribers: every event-stream place is taken", body = crate::error::ErrorBody)))]
pub async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let topics = Topics::parse(q.topics.as_deref().unwrap_or("blocks,mempool"))?;
    let last = last_event_id(&headers)?.or(q.last_event_id);
    let guard = ClientGuard::reserve(&s)?;
    // Subscribe before reading anything, so nothing committed from here on is missed.
    let rx = s.engine.subscribe();
    let workers = topics.workers.then(|| {
        let mut w = s.stratum.frames();
        // The current list goes out first, then each change.
        w.mark_changed();
        w
    });
    let feed = Feed {
        workers,
        engine: s.engine.clone(),
        cache: s.frames.clone(),
        rx,
        topics,
        last_sent: last.unwrap_or(0),
        replay_from: last,
        backlog: VecDeque::new(),
        pending: VecDeque::new(),
        last_mempool_work: None,
        last_frame_at: tokio::time::Instant::now(),
        idle: Box::pin(tokio::time::sleep(KEEP_ALIVE_EVERY)),
        shutdown: s.shutdown.clone(),
        _guard: guard,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        feed.next().await.map(|b| (Ok::<_, Infallible>(b), feed))
    });
    // The frames are ready-made bytes, so the body streams them as they are (axum's `Sse`
    // would copy each into its own buffer); same headers as `Sse`.
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            AppError::bad_request("bad_last_event_id", "Last-Event-ID must be an integer")
        })
}

/// One open stream's place under [`crate::NodeConfig::max_sse_clients`]; counted in the
/// `bitplace_sse_clients` gauge and freed on drop.
struct ClientGuard(AppState);

impl ClientGuard {
    /// Takes a place, or answers 503 when every place is taken.
    fn reserve(s: &AppState) -> ApiResult<ClientGuard> {
        let max = s.config.max_sse_clients as u64;
        s.metrics
            .sse_clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| {
                AppError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_subscribers",
                    format!("the node serves at most {max} event streams at once; retry later"),
                )
            })?;
        Ok(ClientGuard(s.clone()))
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.metrics.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Feed {
    engine: Engine,
    cache: Arc<FrameCache>,
    rx: broadcast::Receiver<Arc<Notification>>,
    topics: Topics,
    /// Highest sequence number already delivered (or acknowledged by Last-Event-ID).
    last_sent: u64,
    /// Read the log after this sequence number before going back to the live feed.
    replay_from: Option<u64>,
    backlog: VecDeque<Arc<Notification>>,
    pending: VecDeque<Bytes>,
    last_mempool_work: Option<Instant>,
    /// When the last frame (or keep-alive) went out.
    last_frame_at: tokio::time::Instant,
    /// Fires [`KEEP_ALIVE_EVERY`] after the last frame; re-armed lazily when it fires,
    /// so sending a frame costs no timer update.
    idle: Pin<Box<Sleep>>,
    shutdown: watch::Receiver<bool>,
    /// The Stratum workers list when the `workers` topic is on.
    workers: Option<watch::Receiver<Bytes>>,
    _guard: ClientGuard,
}

/// What waiting on the live feed gave.
enum Live {
    Note(Arc<Notification>),
    /// Fell behind the broadcast buffer: resync from the log.
    Lagged,
    /// A keep-alive is due.
    KeepAlive,
    /// The idle timer fired early (frames went out meanwhile): wait again.
    NotYet,
    /// A ready frame not from the event log (the `workers` list).
    Frame(Bytes),
    Closed,
}

impl Feed {
    async fn next(&mut self) -> Option<Bytes> {
        let frame = self.next_frame().await?;
        self.last_frame_at = tokio::time::Instant::now();
        Some(frame)
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            let n = if let Some(n) = self.backlog.pop_front() {
                n
            } else if let Some(after) = self.replay_from {
                self.replay(after).await?;
                continue;
            } else {
                match self.live().await {
                    Live::Note(n) => n,
                    Live::Lagged => {
                        self.replay_from = Some(self.last_sent);
                        continue;
                    }
                    Live::KeepAlive => return Some(KEEP_ALIVE),
                    Live::NotYet => continue,
                    Live::Frame(f) => return Some(f),
                    Live::Closed => return None,
                }
            };
            if n.seq <= self.last_sent {
                continue;
            }
            self.last_sent = n.seq;
            let frames = self.cache.frames(&n);
            self.render(&n, &frames);
        }
    }

    /// Reads the next batch of the log after `after` into the backlog.
    async fn replay(&mut self, after: u64) -> Option<()> {
        let engine = self.engine.clone();
        let batch =
            tokio::task::spawn_blocking(move || engine.notifications_since(after, REPLAY_BATCH))
                .await
                .ok()?;
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "event replay failed; closing the stream");
                return None;
            }
        };
        self.replay_from = match batch.last() {
            Some(last) if batch.len() == REPLAY_BATCH => Some(last.seq),
            _ => None,
        };
        self.backlog.extend(batch.into_iter().map(Arc::new));
        Some(())
    }

    async fn live(&mut self) -> Live {
        let mut shutdown = self.shutdown.clone();
        let got = tokio::select! {
            r = self.rx.recv() => r,
            _ = shutdown.changed() => return Live::Closed,
            () = &mut self.idle => return self.idle_fired(),
            Some(f) = next_workers(&mut self.workers) => return Live::Frame(f),
        };
        match got {
            Ok(n) => Live::Note(n),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "event stream lagged; replaying from the log");
                Live::Lagged
            }
            Err(RecvError::Closed) => Live::Closed,
        }
    }

    /// The idle timer fired: a keep-alive if nothing went out for a whole interval, and
    /// the timer re-armed for one interval after the last frame.
    fn idle_fired(&mut self) -> Live {
        let now = tokio::time::Instant::now();
        let due = now.duration_since(self.last_frame_at) >= KEEP_ALIVE_EVERY;
        let from = if due { now } else { self.last_frame_at };
        self.idle.as_mut().reset(from + KEEP_ALIVE_EVERY);
        if due {
            Live::KeepAlive
        } else {
            Live::NotYet
        }
    }

    /// Queues the frames of `n` (shared in `frames`) that this stream's topics want.
    fn render(&mut self, n: &Notification, frames: &Frames) {
        let (blocks, mempool) = (self.topics.blocks, self.topics.mempool);
        let (wanted, work) = match &n.kind {
            NotificationKind::BlockConnected { .. } => (blocks, self.topics.work),
            NotificationKind::BlockDisconnected { .. } => (blocks, false),
            NotificationKind::TxAdded { .. } | NotificationKind::TxRemoved { .. } => {
                (mempool, self.mempool_work_due())
            }
            NotificationKind::Reset => (blocks || mempool, self.topics.work),
            _ => (false, false),
        };
        if wanted {
            self.pending.extend(frames.event());
        }
        if work {
            self.pending.extend(frames.work(&self.engine));
        }
        self.balances(n, frames);
    }

    /// Balance frames for the watched addresses `n` touched (all of them after a reset).
    fn balances(&mut self, n: &Notification, frames: &Frames) {
        let all = matches!(n.kind, NotificationKind::Reset);
        for a in &self.topics.addresses {
            if !all && !n.addresses.contains(a) {
                continue;
            }
            match frames.balance(&self.engine, *a) {
                Ok(frame) => self.pending.push_back(frame),
                Err(e) => tracing::warn!(error = %e, "balance read failed"),
            }
        }
    }

    /// Whether a mempool change should send `work` now: at most every
    /// [`MEMPOOL_WORK_EVERY`] per stream.
    fn mempool_work_due(&mut self) -> bool {
        if !self.topics.work {
            return false;
        }
        let now = Instant::now();
        if self
            .last_mempool_work
            .is_some_and(|t| now.duration_since(t) < MEMPOOL_WORK_EVERY)
        {
            return false;
        }
        self.last_mempool_work = Some(now);
        true
    }
}

/// The next `workers` frame; never resolves without the topic (or once its sender is
/// gone, which only happens at shutdown).
async fn next_workers(rx: &mut Option<watch::Receiver<Bytes>>) -> Option<Bytes> {
    let Some(r) = rx else {
        return std::future::pending().await;
    };
    if r.changed().await.is_err() {
        *rx = None;
        return std::future::pending().await;
    }
    Some(r.borrow_and_update().clone())
}
