//! Each notification's SSE frames, rendered once and shared by every stream that sends
//! them. With a thousand subscribers the JSON and the frame bytes used to be built once
//! per stream; now the first stream that needs a frame renders it and the others clone a
//! [`Bytes`] (a reference count). Only the frames some stream asks for are rendered.
//!
//! A frame is exactly what `axum::response::sse::Event::default().id(seq).event(name)
//! .data(json)` writes: `id: <seq>\nevent: <name>\ndata: <json>\n\n` (compact JSON has no
//! line breaks, so it is always one `data:` line).

use axum::body::Bytes;
use engine::notify::{Notification, NotificationKind};
use engine::{Address, Engine, EngineError};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

/// Notifications whose frames stay cached. Live streams move together, so they ask for
/// the newest few; a stream further behind than this (a slow reader, a replay) renders
/// its own copy, byte for byte the same.
const CACHED: usize = 1024;

/// The recent notifications' frames, in sequence order, shared by all event streams.
#[derive(Default)]
pub struct FrameCache {
    recent: Mutex<VecDeque<Arc<Frames>>>,
}

impl FrameCache {
    /// The shared frames of `n`: cached by its log sequence number, which names one log
    /// record forever (the log is append-only), so one number means one set of frames.
    pub(crate) fn frames(&self, n: &Arc<Notification>) -> Arc<Frames> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let newest = recent.back().map(|f| f.note.seq);
        if newest.is_some_and(|newest| n.seq <= newest) {
            return match recent.binary_search_by_key(&n.seq, |f| f.note.seq) {
                Ok(i) => recent[i].clone(),
                // Fell out of the cache (or was never live): render privately.
                Err(_) => Arc::new(Frames::new(n.clone())),
            };
        }
        let frames = Arc::new(Frames::new(n.clone()));
        recent.push_back(frames.clone());
        if recent.len() > CACHED {
            recent.pop_front();
        }
        frames
    }
}

/// One notification's frames, each rendered on first use.
pub(crate) struct Frames {
    note: Arc<Notification>,
    /// The kind's own event: `block_connected`, `block_disconnected`, `mempool_added`,
    /// `mempool_removed` or `reset`.
    event: OnceLock<Option<Bytes>>,
    /// The `work` event the notification causes.
    work: OnceLock<Bytes>,
    /// `balance` events per watched address.
    balances: Mutex<HashMap<Address, Bytes>>,
}

impl Frames {
    fn new(note: Arc<Notification>) -> Frames {
        Frames {
            note,
            event: OnceLock::new(),
            work: OnceLock::new(),
            balances: Mutex::new(HashMap::new()),
        }
    }

    /// The kind's own event; None for kinds no topic shows (a block stored off the tip).
    pub(crate) fn event(&self) -> Option<Bytes> {
        self.event.get_or_init(|| self.render_event()).clone()
    }

    fn render_event(&self) -> Option<Bytes> {
        let (name, data) = match &self.note.kind {
            NotificationKind::BlockConnected { hash, height, .. } => {
                ("block_connected", json!({"hash": hash, "height": height}))
            }
            NotificationKind::BlockDisconnected { hash, height } => (
                "block_disconnected",
                json!({"hash": hash, "height": height}),
            ),
            NotificationKind::TxAdded { txid, fee } => {
                ("mempool_added", json!({"txid": txid, "fee": fee}))
            }
            NotificationKind::TxRemoved { txid, reason } => {
                ("mempool_removed", json!({"txid": txid, "reason": reason}))
            }
            NotificationKind::Reset => ("reset", json!({})),
            _ => return None,
        };
        Some(frame(self.note.seq, name, &data))
    }

    /// The `work` event: after a block, the next height on it; after a mempool change or
    /// a reset, the tip as the engine has it now. None if the status read fails (not
    /// cached: the next stream tries again) or the kind causes no work event.
    pub(crate) fn work(&self, engine: &Engine) -> Option<Bytes> {
        if let Some(w) = self.work.get() {
            return Some(w.clone());
        }
        let data = match &self.note.kind {
            NotificationKind::BlockConnected { hash, height, .. } => {
                json!({"height": height + 1, "prev_hash": hash, "reason": "tip"})
            }
            NotificationKind::Reset => status_work(engine, "tip")?,
            NotificationKind::TxAdded { .. } | NotificationKind::TxRemoved { .. } => {
                status_work(engine, "mempool")?
            }
            _ => return None,
        };
        let rendered = frame(self.note.seq, "work", &data);
        // Two streams may render at once; both send the one stored first.
        Some(self.work.get_or_init(|| rendered).clone())
    }

    /// `address`'s balance now (not at this sequence number: what a wallet wants to show),
    /// read once per notification for all the streams watching it.
    pub(crate) fn balance(&self, engine: &Engine, address: Address) -> Result<Bytes, EngineError> {
        if let Some(b) = self.lock_balances().get(&address) {
            return Ok(b.clone());
        }
        // Read outside the lock: other streams' addresses need not wait for this one.
        let info = engine.address(&address, 0)?;
        let data = json!({
            "address": address,
            "confirmed": info.confirmed,
            "unconfirmed": info.unconfirmed,
            "immature": info.immature,
        });
        let rendered = frame(self.note.seq, "balance", &data);
        Ok(self
            .lock_balances()
            .entry(address)
            .or_insert(rendered)
            .clone())
    }

    fn lock_balances(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Bytes>> {
        self.balances.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn status_work(engine: &Engine, reason: &str) -> Option<Value> {
    let st = engine.status().ok()?;
    Some(json!({"height": st.height + 1, "prev_hash": st.best_hash, "reason": reason}))
}

/// One SSE frame. `data` is compact JSON, which escapes line breaks inside strings, so the
/// frame never needs the multi-line `data:` splitting.
pub(crate) fn frame(seq: u64, name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("id: {seq}\nevent: {name}\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::sse::{Event, Sse};
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    use std::convert::Infallible;

    /// What axum's SSE writer sends for the same event (the renderer before this one).
    async fn axum_bytes(seq: u64, name: &str, data: &Value) -> Bytes {
        let event = Event::default()
            .id(seq.to_string())
            .event(name)
            .data(data.to_string());
        let stream = futures_util::stream::iter([Ok::<_, Infallible>(event)]);
        let body = Sse::new(stream).into_response().into_body();
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn frame_is_byte_identical_to_axums_event() {
        let cases = [
            (7, "block_connected", json!({"hash": "00ab", "height": 3})),
            (8, "reset", json!({})),
            (
                u64::MAX,
                "mempool_removed",
                json!({"txid": "x\ny\r", "reason": "conflict"}),
            ),
        ];
        for (seq, name, data) in cases {
            assert_eq!(frame(seq, name, &data), axum_bytes(seq, name, &data).await);
        }
    }

    fn note(seq: u64) -> Arc<Notification> {
        Arc::new(Notification {
            seq,
            kind: NotificationKind::Reset,
            addresses: Vec::new(),
        })
    }

    #[test]
    fn cache_shares_one_entry_per_sequence_number() {
        let cache = FrameCache::default();
        let (a, b) = (note(5), note(5));
        let first = cache.frames(&a);
        assert!(Arc::ptr_eq(&first, &cache.frames(&b)));
        // Rendered once: both callers hold the very same bytes.
        assert_eq!(
            first.event().unwrap().as_ptr(),
            cache.frames(&b).event().unwrap().as_ptr()
        );
    }

    #[test]
    fn cache_keeps_the_newest_and_renders_evicted_ones_privately() {
        let cache = FrameCache::default();
        let oldest = cache.frames(&note(1));
        for seq in 2..=CACHED as u64 + 1 {
            cache.frames(&note(seq));
        }
        let again = cache.frames(&note(1));
        assert!(!Arc::ptr_eq(&oldest, &again), "seq 1 was evicted");
        assert_eq!(oldest.event(), again.event(), "but renders the same bytes");
        let newest = cache.frames(&note(CACHED as u64 + 1));
        assert!(Arc::ptr_eq(
            &newest,
            &cache.frames(&note(CACHED as u64 + 1))
        ));
    }
}
