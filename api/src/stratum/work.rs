//! The work every connection mines on, built once per change for all of them: one task
//! follows the engine's notifications and publishes a new [`Work`] (a base block template)
//! on a `watch` channel when the tip moves, or at most every [`MEMPOOL_REFRESH`] when the
//! mempool changed. Connections wake on the channel and take the variant paying their
//! address ([`Work::for_address`]), built once per address and shared. With a thousand
//! connections a new tip costs one template and one coinbase per address, not a
//! thousand templates, and the engine has one subscriber here, not a thousand.

use super::protocol::stratum_prevhash;
use super::{EXTRANONCE1_SIZE, EXTRANONCE2_SIZE};
use engine::mining::BlockTemplate;
use engine::notify::NotificationKind;
use engine::{Address, Block, BlockHeader, Engine, Hash256};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;

/// Shortest interval between mempool-driven job refreshes.
pub const MEMPOOL_REFRESH: Duration = Duration::from_secs(5);
/// Addresses whose coinbase variants one [`Work`] keeps (beyond it, variants are built
/// per connection and not shared: bounded memory whatever the workers).
const MAX_VARIANTS: usize = 4096;

/// One published unit of work: the base template on the current tip.
pub struct Work {
    /// Increases with every publication.
    pub epoch: u64,
    base: BlockTemplate,
    /// The network difficulty of the template's bits: the vardiff ceiling.
    pub network_difficulty: f64,
    variants: Mutex<HashMap<Address, Arc<JobTemplate>>>,
}

impl Work {
    fn new(epoch: u64, base: BlockTemplate) -> Work {
        Work {
            epoch,
            network_difficulty: engine::query::difficulty(base.header.bits),
            base,
            variants: Mutex::new(HashMap::new()),
        }
    }

    pub fn prev_hash(&self) -> Hash256 {
        self.base.header.prev_hash
    }

    /// The template paying `address`, shared by every connection mining to it.
    pub fn for_address(&self, address: Address) -> Arc<JobTemplate> {
        let mut v = self.variants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = v.get(&address) {
            return t.clone();
        }
        let t = Arc::new(JobTemplate::new(self.base.paying(address)));
        if v.len() < MAX_VARIANTS {
            v.insert(address, t.clone());
        }
        t
    }
}

/// A template split the way Stratum sends it.
pub struct JobTemplate {
    pub template: BlockTemplate,
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<Hash256>,
}

impl JobTemplate {
    pub fn new(template: BlockTemplate) -> JobTemplate {
        let (coinb1, coinb2) = template.coinbase_parts();
        let branch = template.merkle_branch();
        JobTemplate {
            template,
            coinb1,
            coinb2,
            branch,
        }
    }

    /// `mining.notify`'s params for this template under job id `id`.
    /// `mining.notify`'s parameters for job `id` with `time` as its ntime (at least the
    /// template's).
    pub fn notify_params(&self, id: &str, clean: bool, time: u32) -> Value {
        let h = &self.template.header;
        json!([
            id,
            stratum_prevhash(&h.prev_hash),
            hex::encode(&self.coinb1),
            hex::encode(&self.coinb2),
            self.branch
                .iter()
                .map(|b| hex::encode(b.0))
                .collect::<Vec<_>>(),
            format!("{:08x}", h.version),
            format!("{:08x}", h.bits.0),
            format!("{:08x}", time.max(h.time)),
            clean,
        ])
    }

    /// The header a share describes, without building the block: the coinbase txid from
    /// `coinb1 ‖ extra nonce ‖ coinb2`, the root folded over the branch. Shares are far
    /// more frequent than blocks, and this avoids copying the template's transactions.
    pub fn header(&self, extra_nonce: &[u8], time: u32, nonce: u32, version: u32) -> BlockHeader {
        let mut body =
            Vec::with_capacity(self.coinb1.len() + extra_nonce.len() + self.coinb2.len());
        body.extend_from_slice(&self.coinb1);
        body.extend_from_slice(extra_nonce);
        body.extend_from_slice(&self.coinb2);
        let mut root = Hash256::sha256d(&body);
        for b in &self.branch {
            let mut pair = [0u8; 64];
            pair[..32].copy_from_slice(&root.0);
            pair[32..].copy_from_slice(&b.0);
            root = Hash256::sha256d(&pair);
        }
        BlockHeader {
            version,
            merkle_root: root,
            time,
            nonce,
            ..self.template.header
        }
    }

    /// The whole block (when a share meets the block target).
    pub fn block(&self, extra_nonce: &[u8], time: u32, nonce: u32, version: u32) -> Option<Block> {
        let mut block = self.template.solve_with(extra_nonce, time, nonce)?;
        block.header.version = version;
        Some(block)
    }
}

/// Follows the engine and publishes work until the engine closes (then the sender is
/// dropped and every connection sees the channel close).
pub async fn publish(engine: Engine, tx: watch::Sender<Option<Arc<Work>>>) {
    let mut notes = engine.subscribe();
    let mut epoch = 0u64;
    let mut refresh = tokio::time::interval(MEMPOOL_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut mempool_dirty = false;
    let mut build = true;
    loop {
        if build {
            match build_base(&engine).await {
                Some(base) => {
                    epoch += 1;
                    mempool_dirty = false;
                    tx.send_replace(Some(Arc::new(Work::new(epoch, base))));
                }
                // Retried on the next notification or refresh tick.
                None => mempool_dirty = true,
            }
            build = false;
        }
        tokio::select! {
            n = notes.recv() => {
                let mut next = Some(n);
                // Drain what is queued so a burst (a reorganisation, a block's worth of
                // mempool removals) produces one job, not one per event.
                while let Some(n) = next.take() {
                    match n {
                        Ok(note) => match note.kind {
                            NotificationKind::BlockConnected { .. }
                            | NotificationKind::BlockDisconnected { .. }
                            | NotificationKind::Reset => build = true,
                            NotificationKind::TxAdded { .. }
                            | NotificationKind::TxRemoved { .. } => mempool_dirty = true,
                            _ => {}
                        },
                        Err(RecvError::Lagged(_)) => build = true,
                        // The node is shutting down: no more work will come.
                        Err(RecvError::Closed) => return,
                    }
                    next = match notes.try_recv() {
                        Ok(n) => Some(Ok(n)),
                        Err(TryRecvError::Lagged(k)) => Some(Err(RecvError::Lagged(k))),
                        Err(_) => None,
                    };
                }
            }
            _ = refresh.tick() => build = mempool_dirty,
        }
    }
}

async fn build_base(engine: &Engine) -> Option<BlockTemplate> {
    let engine = engine.clone();
    // The payout is replaced per connection ([`Work::for_address`]).
    let built = tokio::task::spawn_blocking(move || {
        engine.block_template(
            Address([0; 20]),
            vec![0; EXTRANONCE1_SIZE + EXTRANONCE2_SIZE],
        )
    })
    .await;
    match built {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            tracing::warn!("stratum: cannot build a template: {e}");
            None
        }
        Err(e) => {
            tracing::warn!("stratum: template task failed: {e}");
            None
        }
    }
}
