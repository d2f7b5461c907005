//! `GET /v1/events`: push over server-sent events. Each event's SSE id is the event-log
//! sequence number of the record it comes from, so a client reconnecting with
//! `Last-Event-ID` gets everything after it: the feed subscribes to the engine first,
//! then replays the log from that id, then continues live, skipping every sequence
//! number it already sent. A receiver that lags behind the broadcast buffer resyncs
//! from the log the same way instead of silently dropping events.

use crate::error::{ApiResult, AppError};
use crate::state::AppState;
use crate::v1::parse_address;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use engine::notify::{Notification, NotificationKind};
use engine::{Address, Engine};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

/// Log records read per replay step.
const REPLAY_BATCH: usize = 1000;
/// Mempool-driven `work` events are sent at most this often per client: a burst of
/// transactions should not make every miner rebuild its job for each one.
const MEMPOOL_WORK_EVERY: Duration = Duration::from_secs(1);
/// Most addresses one stream may watch.
const MAX_ADDRESSES: usize = 100;

#[derive(Default, Debug, Clone)]
pub struct Topics {
    pub blocks: bool,
    pub mempool: bool,
    pub work: bool,
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
                                "unknown topic `{part}` (blocks, mempool, work, address:<addr>)"
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
        if !t.blocks && !t.mempool && !t.work && t.addresses.is_empty() {
            return Err(AppError::bad_request("bad_topic", "no topics given"));
        }
        Ok(t)
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated: `blocks`, `mempool`, `work`, `address:<addr>`.
    topics: Option<String>,
    /// Same as the `Last-Event-ID` header (for clients that cannot set headers).
    last_event_id: Option<u64>,
}

#[utoipa::path(get, path = "/v1/events", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of block_connected, block_disconnected, mempool_added, mempool_removed, balance, work, reset"),
              (status = 400, body = crate::error::ErrorBody)))]
pub async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Query(q) = query?;
    let topics = Topics::parse(q.topics.as_deref().unwrap_or("blocks,mempool"))?;
    let header_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    AppError::bad_request("bad_last_event_id", "Last-Event-ID must be an integer")
                })?,
        ),
        None => None,
    };
    let last = header_id.or(q.last_event_id);
    // Subscribe before reading anything, so nothing committed from here on is missed.
    let rx = s.engine.subscribe();
    let feed = Feed {
        engine: s.engine.clone(),
        rx,
        topics,
        last_sent: last.unwrap_or(0),
        replay_from: last,
        backlog: VecDeque::new(),
        pending: VecDeque::new(),
        last_mempool_work: None,
        shutdown: s.shutdown.clone(),
        _guard: ClientGuard(s.clone()),
    };
    s.metrics.sse_clients.fetch_add(1, Ordering::Relaxed);
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        feed.next().await.map(|e| (Ok(e), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct ClientGuard(AppState);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.metrics.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Feed {
    engine: Engine,
    rx: broadcast::Receiver<Arc<Notification>>,
    topics: Topics,
    /// Highest sequence number already delivered (or acknowledged by Last-Event-ID).
    last_sent: u64,
    /// Read the log after this sequence number before going back to the live feed.
    replay_from: Option<u64>,
    backlog: VecDeque<Notification>,
    pending: VecDeque<Event>,
    last_mempool_work: Option<Instant>,
    shutdown: watch::Receiver<bool>,
    _guard: ClientGuard,
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            let n: Notification = if let Some(n) = self.backlog.pop_front() {
                n
            } else if let Some(after) = self.replay_from {
                let engine = self.engine.clone();
                let batch = tokio::task::spawn_blocking(move || {
                    engine.notifications_since(after, REPLAY_BATCH)
                })
                .await;
                match batch {
                    Ok(Ok(batch)) => {
                        self.replay_from = match batch.last() {
                            Some(last) if batch.len() == REPLAY_BATCH => Some(last.seq),
                            _ => None,
                        };
                        self.backlog.extend(batch);
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "event replay failed; closing the stream");
                        return None;
                    }
                    Err(_) => return None,
                }
                continue;
            } else {
                let mut shutdown = self.shutdown.clone();
                let got = tokio::select! {
                    r = self.rx.recv() => r,
                    _ = shutdown.changed() => return None,
                };
                match got {
                    Ok(n) => Arc::unwrap_or_clone(n),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "event stream lagged; replaying from the log");
                        self.replay_from = Some(self.last_sent);
                        continue;
                    }
                    Err(RecvError::Closed) => return None,
                }
            };
            if n.seq <= self.last_sent {
                continue;
            }
            self.last_sent = n.seq;
            self.render(&n);
        }
    }

    fn push(&mut self, seq: u64, name: &str, data: serde_json::Value) {
        self.pending.push_back(
            Event::default()
                .id(seq.to_string())
                .event(name)
                .data(data.to_string()),
        );
    }

    fn render(&mut self, n: &Notification) {
        let seq = n.seq;
        let mut all_balances = false;
        match &n.kind {
            NotificationKind::BlockConnected { hash, height, .. } => {
                if self.topics.blocks {
                    self.push(
                        seq,
                        "block_connected",
                        json!({"hash": hash, "height": height}),
                    );
                }
                if self.topics.work {
                    self.push(
                        seq,
                        "work",
                        json!({"height": height + 1, "prev_hash": hash, "reason": "tip"}),
                    );
                }
            }
            NotificationKind::BlockDisconnected { hash, height } if self.topics.blocks => {
                self.push(
                    seq,
                    "block_disconnected",
                    json!({"hash": hash, "height": height}),
                );
            }
            NotificationKind::TxAdded { txid, fee } => {
                if self.topics.mempool {
                    self.push(seq, "mempool_added", json!({"txid": txid, "fee": fee}));
                }
                self.mempool_work(seq);
            }
            NotificationKind::TxRemoved { txid, reason } => {
                if self.topics.mempool {
                    self.push(
                        seq,
                        "mempool_removed",
                        json!({"txid": txid, "reason": reason}),
                    );
                }
                self.mempool_work(seq);
            }
            NotificationKind::Reset => {
                all_balances = true;
                if self.topics.blocks || self.topics.mempool {
                    self.push(seq, "reset", json!({}));
                }
                if self.topics.work {
                    if let Ok(st) = self.engine.status() {
                        self.push(
                            seq,
                            "work",
                            json!({"height": st.height + 1, "prev_hash": st.best_hash, "reason": "tip"}),
                        );
                    }
                }
            }
            _ => {}
        }
        let watched: Vec<Address> = self
            .topics
            .addresses
            .iter()
            .filter(|a| all_balances || n.addresses.contains(a))
            .copied()
            .collect();
        for a in watched {
            // The balance now (not at `seq`): what a wallet wants to show.
            match self.engine.address(&a, 0) {
                Ok(info) => self.push(
                    seq,
                    "balance",
                    json!({
                        "address": a,
                        "confirmed": info.confirmed,
                        "unconfirmed": info.unconfirmed,
                        "immature": info.immature,
                    }),
                ),
                Err(e) => tracing::warn!(error = %e, "balance read failed"),
            }
        }
    }

    fn mempool_work(&mut self, seq: u64) {
        if !self.topics.work {
            return;
        }
        let now = Instant::now();
        if self
            .last_mempool_work
            .is_some_and(|t| now.duration_since(t) < MEMPOOL_WORK_EVERY)
        {
            return;
        }
        self.last_mempool_work = Some(now);
        if let Ok(st) = self.engine.status() {
            self.push(
                seq,
                "work",
                json!({"height": st.height + 1, "prev_hash": st.best_hash, "reason": "mempool"}),
            );
        }
    }
}
