//! Relay: new best-chain blocks and admitted transactions are pushed to every peer, and
//! transactions pushed before their parents wait in the orphan pool.

use super::*;

impl PeerService {
    /// Hears every committed event and pushes new best-chain blocks and admitted
    /// transactions to every peer except the one that sent them. A peer that already
    /// has the data answers Duplicate and, since the engine emits no event for known
    /// data, relays nothing further: no echo loops.
    pub(super) async fn relay_loop(
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
                    match self.inner.engine.block_bytes(hash) {
                        Ok(Some(bytes)) => (*hash, "/v1/p2p/blocks", hex::encode(bytes)),
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

    pub(super) async fn push(&self, url: &str, path: &str, body: &HexPush) {
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

    pub(super) fn lock_orphans(&self) -> std::sync::MutexGuard<'_, OrphanPool> {
        // Every pool operation completes its index updates before it can panic (none
        // does by design), so a poisoned lock still guards a consistent pool.
        self.inner.orphans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a peer's transaction that spends an unknown transaction. The parent may have
    /// been admitted between the engine's refusal and now, its notification finding no
    /// orphan yet: so look once more, and retry at once if a parent is known.
    pub(super) fn hold_orphan(&self, tx: Transaction) -> Result<Inserted, OrphanRefused> {
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
    pub(super) fn retry_orphans_of(&self, kind: &NotificationKind) {
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
    pub(super) async fn retry_orphans(&self, mut parents: Vec<Hash256>) {
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
    pub(super) async fn resubmit(&self, orphan: Orphan) -> Option<Hash256> {
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
}
