//! Stratum V1 mining server: newline-delimited JSON-RPC over TCP, so standard SHA-256d
//! miners (cpuminer, cgminer, bfgminer, ASICs) mine blocks on this node unchanged.
//!
//! Session: optionally `mining.configure` (BIP 310, [`version`]); `mining.subscribe` →
//! `[[["mining.set_difficulty", id], ["mining.notify", id]], extranonce1, 4]`;
//! `mining.authorize [worker, password]` where the worker name is the payout address
//! (`bp1...`, optionally followed by `.rigname`); then the server sends
//! `mining.set_difficulty [d]` and `mining.notify [...]` and takes `mining.submit`.
//! Authorizing again with another address gets a clean job paying it.
//!
//! Modules: [`session`] (one connection), [`work`] (the shared templates, one task for
//! all connections), [`vardiff`] (per-connection share difficulty), [`accounting`]
//! (per-worker counters and hash rate), [`protocol`] (messages, error codes, byte
//! orders), [`version`] (BIP 310), [`limits`] (operator caps).
//!
//! The coinbase carries an 8-byte extra nonce = extranonce1 (4 bytes, unique per
//! connection, so two miners never search the same space) ‖ extranonce2 (4 bytes, rolled
//! by the miner). The coinbase body is `coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2`, its
//! txid SHA-256d of that, and the merkle root the fold of `merkle_branch` over it
//! (`root = SHA-256d(root ‖ branch[i])`, branch entries in internal byte order), exactly
//! as Bitcoin pools do it.
//!
//! Byte-order conventions (checked against pooler's cpuminer, `stratum_gen_work` and
//! `submit_upstream_work`, which cgminer and ASIC firmware share):
//! - `prevhash`: the previous block hash in *internal* order (as it sits in the header)
//!   with the bytes of each 4-byte word reversed. cpuminer does
//!   `data[1 + i] = le32dec(prevhash + 4i)` and hashes `data` as big-endian words, so
//!   reversing each word back gives the header bytes.
//! - `version`, `nbits`, `ntime`: big-endian hex of the u32 value (`format!("{:08x}")`);
//!   in the header they are little-endian.
//! - `merkle_branch`: hex of each 32-byte hash in internal order (not reversed).
//! - submit's `ntime`, `nonce` and version bits: big-endian hex of the u32 value as the
//!   miner prints it (cpuminer: `le32enc(&nonce, data[19]); bin2hex(...)`, where
//!   `data[19]` is the header's nonce word read big-endian), i.e. the header holds
//!   `u32::from_str_radix(nonce, 16)` as little-endian bytes. `extranonce2` is raw bytes
//!   in coinbase order.
//! - Difficulty: share difficulty d means target = diff1 / d with the Bitcoin diff1
//!   target `0x00000000ffff0000…` (cpuminer's `diff_to_target` for sha256d). Each
//!   connection has its own ([`vardiff`]), never above the network difficulty; a share
//!   that meets the share target but not the block target is an accepted share, one that
//!   meets the block target is submitted as a block.

pub mod accounting;
pub mod limits;
pub mod protocol;
pub mod session;
pub mod vardiff;
pub mod version;
pub mod work;

pub use accounting::{Accounting, WorkerView};

use limits::Limits;
use protocol::{error_response, ERR_OTHER};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Longest request line; a longer one closes the connection (no legitimate Stratum
/// message comes near it, and buffering without bound would let a client exhaust memory).
pub const MAX_LINE: usize = 16 * 1024;
/// Bytes of extranonce1 (per connection) and extranonce2 (rolled by the miner).
pub const EXTRANONCE1_SIZE: usize = 4;
pub const EXTRANONCE2_SIZE: usize = 4;

/// The operator's settings (`--stratum-*` flags).
#[derive(Clone, Debug)]
pub struct StratumConfig {
    /// Share difficulty a connection starts at (`--stratum-difficulty`); also the
    /// default when a miner suggests nothing.
    pub start_difficulty: f64,
    /// Seconds between shares that vardiff aims for (`--stratum-share-seconds`).
    pub share_seconds: f64,
    /// Open connections at most (`--stratum-max-connections`, 0 = no cap).
    pub max_connections: usize,
    /// Open connections per client IP (`--stratum-max-per-ip`, 0 = no cap).
    pub max_per_ip: usize,
    /// A connection that sends nothing for this long is closed (`--stratum-idle-timeout`).
    pub idle_timeout: Duration,
    /// A connection not authorized by then is closed (`--stratum-auth-timeout`).
    pub auth_timeout: Duration,
}

impl Default for StratumConfig {
    fn default() -> Self {
        StratumConfig {
            start_difficulty: 1.0,
            share_seconds: 10.0,
            max_connections: 10_000,
            max_per_ip: 1_000,
            idle_timeout: Duration::from_secs(600),
            auth_timeout: Duration::from_secs(120),
        }
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub engine: engine::Engine,
    pub config: StratumConfig,
    pub accounting: Arc<Accounting>,
    pub work: watch::Receiver<Option<Arc<work::Work>>>,
    next_extranonce1: AtomicU32,
}

impl Shared {
    /// A fresh extranonce1, unique among this process's connections (wraps after 2^32).
    pub fn next_extranonce1(&self) -> [u8; EXTRANONCE1_SIZE] {
        self.next_extranonce1
            .fetch_add(1, Ordering::Relaxed)
            .to_be_bytes()
    }
}

/// Serves with the default settings and a private accounting book (tests, simple use).
pub async fn serve(engine: engine::Engine, listener: TcpListener) -> std::io::Result<()> {
    serve_with(
        engine,
        listener,
        StratumConfig::default(),
        Arc::new(Accounting::default()),
    )
    .await
}

/// Accepts Stratum connections on `listener` until the task is dropped. Accept errors
/// (such as running out of file descriptors) are logged and retried, not fatal.
pub async fn serve_with(
    engine: engine::Engine,
    listener: TcpListener,
    config: StratumConfig,
    accounting: Arc<Accounting>,
) -> std::io::Result<()> {
    // Start the extranonce1 counter somewhere different on every start, so miners that
    // reconnect after a restart do not repeat the coinbases they searched before.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(1);
    let (work_tx, work_rx) = watch::channel(None);
    let publisher = tokio::spawn(work::publish(engine.clone(), work_tx));
    let workers = tokio::spawn(accounting.clone().publish());
    let limits = Arc::new(Limits::new(config.max_connections, config.max_per_ip));
    let shared = Arc::new(Shared {
        engine,
        config,
        accounting,
        work: work_rx,
        next_extranonce1: AtomicU32::new(seed),
    });
    // Ends the helper tasks when this future is dropped.
    struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.iter().for_each(|t| t.abort());
        }
    }
    let _tasks = AbortOnDrop(vec![publisher, workers]);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "stratum server listening");
    }
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("stratum accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(refusal) => {
                tracing::debug!(%peer, "stratum connection refused: {refusal}");
                tokio::spawn(async move {
                    let msg = error_response(&Value::Null, ERR_OTHER, &refusal.to_string());
                    let line = msg.to_string() + "\n";
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        let _ = stream.write_all(line.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                });
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let conn = session::Connection::new(shared, peer);
            tracing::info!(%peer, "stratum: miner connected");
            match conn.run(stream).await {
                Ok(()) => tracing::info!(%peer, "stratum: miner disconnected"),
                Err(e) => tracing::info!(%peer, "stratum: miner disconnected: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests;
