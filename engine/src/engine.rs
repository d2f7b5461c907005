//! The [`Engine`]: commands in, events out.
//!
//! One writer thread owns every write. Callers validate what needs no state (shape,
//! signatures — the expensive part, so it runs on the caller's thread, in parallel) and
//! then queue a command. The writer drains the queue, validates each command against the
//! projections, appends its events and folds them in one redb write transaction per
//! batch of transactions (group commit: one fsync for many submissions), commits with
//! immediate durability, and only then answers the callers and notifies subscribers.
//! Reads never wait for the writer: they use redb's MVCC snapshots.

use crate::block::Block;
use crate::chainlog::{self, Reorg, TipChange};
use crate::error::EngineError;
use crate::events::{Event, RemovalReason};
use crate::hash::Hash256;
use crate::notify::Notification;
use crate::params::ChainParams;
use crate::sigcache::{SigCache, SigCacheStats, SigKey};
use crate::store::chainstate::InputContext;
use crate::store::codec::{decode_mempool_value, fee_rate_micro, BlockMeta};
use crate::store::{read, StoreError, Tables};
use crate::timings::{BlockTimers, BlockTimings, Stage};
use crate::tx::{OutPoint, Transaction};
use crate::validation::{self, CheckedBlock, Reject, VerifiedTx};
use rayon::prelude::*;
use redb::{Database, Durability, ReadableTable, WriteTransaction};
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};

/// Most commands folded into one write transaction.
const MAX_BATCH: usize = 8192;
/// Most prepared blocks committed in one write transaction, and most transactions in
/// them: a group shares one commit and its fsyncs, and its dirty pages stay in memory
/// until then (8 full blocks are 64 MB).
const MAX_BLOCK_GROUP: usize = 8;
const MAX_BLOCK_GROUP_TXS: usize = 100_000;
/// Most block bytes in a group that lingers for more ([`BlockGroup::linger`]): a sync
/// gives a block's share of its read-ahead budget back only once the block is
/// committed, so a group holding most of that budget would wait for a block that cannot
/// be fetched until it commits.
const MAX_LINGER_GROUP_BYTES: usize = 16 << 20;
/// How long the writer holds a group's transaction open for the next block when the last
/// one said more follow ([`Follows::More`]) and none is queued yet. Why: a sync's blocks
/// reach the writer one verification apart, and a commit per block rewrites the pages
/// of every random-keyed table each time (a 100k-transaction sync spent 0.6 s in 14
/// commits, a third of the writer's time); held open, the next block folds on into the
/// same transaction as soon as it is ready, and the group pays one commit.
const GROUP_LINGER: Duration = Duration::from_millis(250);
/// Longest a group's transaction stays open, lingering included: bounds how long the
/// first block of a group waits for its answer.
const MAX_GROUP_OPEN: Duration = Duration::from_secs(2);
/// How far behind the tip a side branch may be, in blocks of the tip's work, for a block
/// on it to be stored. A block body is kept only when its chain could still become the
/// best: anyone can make a valid block off an early, easy block, and each one stored
/// would stay in the log forever. 144 covers every honest fork seen (partitions heal at
/// a few blocks) with a wide margin, while a fork that deep must match the tip's
/// difficulty block for block.
pub const SIDE_CHAIN_REACH_BLOCKS: u64 = 144;
/// Side branches at most this many tip-blocks of work behind the tip are stored even when
/// the side-chain budget is full. Honest forks are this shallow (two miners finding the
/// same height, a reorganisation a few blocks deep), and the blocks of a branch that will
/// overtake are side blocks until the last one: refusing them would let whoever filled
/// the budget split the node from a network that reorganises. Each such block costs about
/// a full block of the tip's proof of work, the bound Bitcoin Core relies on for any block
/// near its tip; the budget covers the deeper branches.
pub const SHALLOW_FORK_BLOCKS: u64 = 6;
/// Default budget for the bytes of stored side-chain blocks within reach of the tip.
/// Honest forks are a block or two deep; 64 MB holds eight full (8 MB) competing blocks.
pub const DEFAULT_MAX_SIDE_CHAIN_BYTES: u64 = 64 * 1000 * 1000;

/// How long reads wait after one of them failed to reopen the storage before trying again.
const READ_REOPEN_GAP: Duration = Duration::from_secs(1);

/// Seconds since the Unix epoch; injectable so tests control "now".
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

#[derive(Clone)]
pub struct EngineConfig {
    pub params: ChainParams,
    pub clock: Clock,
    /// Minimum fee rate for the mempool, units per 1000 bytes.
    pub min_fee_rate: u64,
    /// Entries of the signature cache ([`crate::sigcache`]); 0 turns it off.
    pub sigcache_capacity: usize,
    /// Most bytes of stored blocks off the best chain within reach of the tip
    /// ([`SIDE_CHAIN_REACH_BLOCKS`]); a side block past it is refused (`side_chain_full`)
    /// unless it makes its branch the best chain.
    pub max_side_chain_bytes: u64,
    /// Free bytes in the ledger file below which [`Engine::compact`] does nothing
    /// (a compaction moves pages and commits several times; a few free megabytes are
    /// reused by the next writes anyway).
    pub compact_min_free_bytes: u64,
    /// Bytes of redb's page cache (redb's default, 1 GiB). A small one makes the
    /// engine read its file mid-write, which the fault-injection tests need.
    pub db_cache_bytes: usize,
    /// Rows the coin cache ([`crate::store::coin_cache`]) holds before the writer writes
    /// them to redb; 0 writes the UTXO set and the indexes through in every transaction.
    pub coin_cache_rows: usize,
}

/// [`EngineConfig::coin_cache_rows`] by default: ~4 blocks of 10,000 transactions (about
/// seven rows each over the five cached tables; ~100 bytes a row: ~25 MB), written back
/// in one sorted pass.
pub const DEFAULT_COIN_CACHE_ROWS: usize = 1 << 18;

/// Layers (writer transactions with cached changes) the coin cache holds at most before
/// a write-back, whatever their rows: a lookup that misses searches every layer, and a
/// dev chain's blocks hold a handful of rows each.
const MAX_COIN_CACHE_LAYERS: usize = 32;

impl EngineConfig {
    pub fn new(params: ChainParams) -> EngineConfig {
        EngineConfig {
            params,
            clock: system_clock(),
            min_fee_rate: crate::fee::MIN_RELAY_FEE_RATE,
            sigcache_capacity: crate::sigcache::DEFAULT_CAPACITY,
            max_side_chain_bytes: DEFAULT_MAX_SIDE_CHAIN_BYTES,
            compact_min_free_bytes: 16 << 20,
            db_cache_bytes: 1 << 30,
            coin_cache_rows: DEFAULT_COIN_CACHE_ROWS,
        }
    }

    /// A redb builder with this configuration's cache.
    fn db_builder(&self) -> redb::Builder {
        db_builder(self.db_cache_bytes)
    }
}

/// A redb builder with a cache of `cache_bytes` (a `Builder` is not `Send`: a reopen
/// makes its own).
fn db_builder(cache_bytes: usize) -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    builder
}

/// What happened to a submitted transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TxAccepted {
    pub txid: Hash256,
    /// Already in the mempool or the chain: nothing new was written.
    pub duplicate: bool,
}

/// What happened to a submitted block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BlockAccepted {
    /// It extends the best chain.
    Connected { hash: Hash256, height: u64 },
    /// It made a side branch the best chain.
    Reorganized {
        hash: Hash256,
        height: u64,
        disconnected: usize,
        connected: usize,
    },
    /// Stored on a side branch with no more work than the best chain.
    SideChain { hash: Hash256, height: u64 },
    /// Already known: nothing was written.
    Duplicate { hash: Hash256, height: u64 },
}

impl BlockAccepted {
    pub fn hash(&self) -> Hash256 {
        match self {
            BlockAccepted::Connected { hash, .. }
            | BlockAccepted::Reorganized { hash, .. }
            | BlockAccepted::SideChain { hash, .. }
            | BlockAccepted::Duplicate { hash, .. } => *hash,
        }
    }

    pub fn height(&self) -> u64 {
        match self {
            BlockAccepted::Connected { height, .. }
            | BlockAccepted::Reorganized { height, .. }
            | BlockAccepted::SideChain { height, .. }
            | BlockAccepted::Duplicate { height, .. } => *height,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// A prepared block as queued for a group: the block, its caller's end, its hint.
type GroupEntry = (PreparedBlock, Reply<BlockAccepted>, Follows);

/// What a block did, and how the best chain changed (for the log, after the commit).
type Accepted = (BlockAccepted, Option<TipChange>);

/// Prepared blocks queued up behind each other, to be committed together
/// ([`Writer::commit_group`]).
struct BlockGroup {
    blocks: Vec<(PreparedBlock, Reply<BlockAccepted>)>,
    txs: usize,
    bytes: usize,
    /// What the last block's caller said of the blocks after it.
    follows: Follows,
    opened: Instant,
}

impl Default for BlockGroup {
    fn default() -> Self {
        BlockGroup {
            blocks: Vec::new(),
            txs: 0,
            bytes: 0,
            follows: Follows::Nothing,
            opened: Instant::now(),
        }
    }
}

impl BlockGroup {
    fn push(&mut self, block: PreparedBlock, reply: Reply<BlockAccepted>, follows: Follows) {
        if self.blocks.is_empty() {
            self.opened = Instant::now();
        }
        self.txs += block.block().txs.len();
        self.bytes += block.block().size();
        self.blocks.push((block, reply));
        self.follows = follows;
    }

    fn is_full(&self) -> bool {
        self.blocks.len() >= MAX_BLOCK_GROUP || self.txs >= MAX_BLOCK_GROUP_TXS
    }

    /// How long to wait for the next block before committing, if at all: while the last
    /// caller said more follow, up to [`GROUP_LINGER`] within [`MAX_GROUP_OPEN`], and
    /// only while the group is under [`MAX_LINGER_GROUP_BYTES`].
    fn linger(&self) -> Option<Duration> {
        let left = MAX_GROUP_OPEN.checked_sub(self.opened.elapsed())?;
        let room = !self.is_full() && self.bytes < MAX_LINGER_GROUP_BYTES;
        (self.follows == Follows::More && room).then(|| left.min(GROUP_LINGER))
    }
}

/// What the caller of [`Engine::queue_prepared`] knows of the blocks after this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follows {
    /// More blocks will be queued right after (a sync with the rest of a round to go):
    /// the writer may hold the group open for them ([`GROUP_LINGER`]).
    More,
    /// Nothing is known to follow: the writer commits once its queue is empty.
    Nothing,
}

/// A block whose context-free checks and signatures have passed
/// ([`Engine::prepare_block`]): only the rules that need the chain are left, the writer's
/// part. Sync prepares the next blocks on the other cores while the writer connects this
/// one, and the writer commits prepared blocks that queue up in groups.
pub struct PreparedBlock(CheckedBlock);

impl PreparedBlock {
    pub fn hash(&self) -> Hash256 {
        self.0.hash()
    }

    pub fn block(&self) -> &Block {
        self.0.block()
    }
}

/// The answer to a queued block ([`Engine::queue_prepared`]), to be awaited later: the
/// caller can queue the next block first, in order.
pub struct BlockReceipt(oneshot::Receiver<Result<BlockAccepted, EngineError>>);

impl BlockReceipt {
    /// Waits until the block (and any reorganisation) is durable, or refused.
    pub async fn wait(self) -> Result<BlockAccepted, EngineError> {
        self.0.await.map_err(|_| EngineError::Closed)?
    }

    /// [`BlockReceipt::wait`] for a thread outside any async runtime.
    pub fn wait_blocking(self) -> Result<BlockAccepted, EngineError> {
        self.0.blocking_recv().map_err(|_| EngineError::Closed)?
    }
}

/// How long a compaction waits for readers to let go of the ledger before it gives up.
const EXCLUSIVE_WAIT: Duration = Duration::from_secs(2);

/// Opens the ledger's storage again after a failure (the file, or a clone of a backend).
type Reopen = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

enum Command {
    Tx(VerifiedTx, Reply<TxAccepted>),
    Block(CheckedBlock, Reply<BlockAccepted>),
    Prepared(PreparedBlock, Reply<BlockAccepted>, Follows),
    Reset(Reply<()>),
    Rebuild(Reply<crate::recovery::Rebuilt>),
    Compact(Reply<Option<crate::recovery::Compaction>>),
    /// Writes the coin cache back, so redb's tables are all current (for `verify`). A
    /// std channel: its callers block, and some run on an async runtime's thread.
    WriteBack(std::sync::mpsc::SyncSender<Result<(), EngineError>>),
}

pub(crate) struct Shared {
    /// None while the storage is being reopened after a failure.
    db: RwLock<Option<Arc<Database>>>,
    /// The handle given up after a failure: no reopen while anyone still uses it, since
    /// two handles on one storage would each think they own its free pages.
    discarded: Mutex<Weak<Database>>,
    /// How to reopen after a failure; None for an in-memory ledger (nothing to reopen).
    reopen: Option<Reopen>,
    /// The ledger file, for a ledger opened from one (what [`Engine::compact`] measures).
    file: Option<std::path::PathBuf>,
    /// When a read's attempt to reopen last failed.
    read_reopen_failed: Mutex<Option<Instant>>,
    /// Changes to the UTXO set and the indexes committed but not yet in redb's tables. A
    /// reader holds its read lock while it begins its snapshot and copies the layers;
    /// the writer holds the write lock across a write-back's commit
    /// ([`crate::store::coin_cache`]).
    pub(crate) coins: RwLock<crate::store::coin_cache::CoinCache>,
    pub config: EngineConfig,
    pub notifier: broadcast::Sender<Arc<Notification>>,
    pub template_cache: Mutex<Option<crate::query::TemplateCache>>,
    /// Blocks refused for good, so a repeated push is refused without validating again.
    pub invalid_blocks: Mutex<crate::invalid::InvalidBlocks>,
    /// Signatures of admitted transactions, so a block holding them skips their check.
    pub sigcache: SigCache,
    /// `side_chain_bytes` as last summed, keyed by the log head (length, last record's
    /// hash) it was read at: the sum scans the side blocks within reach, and only an
    /// appended record can change it, so `/v1/status` polls between writes reuse it.
    pub side_bytes_cache: Mutex<Option<((u64, Hash256), u64)>>,
    /// Where block connects spend their time ([`crate::timings`]).
    pub(crate) timers: BlockTimers,
    /// Threads that verify prepared blocks' signatures ([`Engine::prepare_block`]): one
    /// fewer than the cores, so the writer, whose folding is the serial part of a sync,
    /// keeps a core to itself while the next blocks are verified. Started on first use
    /// (most engines never prepare a block); None if the threads could not be started,
    /// and then the global pool verifies.
    prepare_pool: std::sync::OnceLock<Option<rayon::ThreadPool>>,
}

impl Shared {
    fn remember_invalid(&self, hash: Hash256, r: &Reject) {
        self.invalid_blocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash, r);
    }

    /// The open database. After a storage failure the next write reopens it; a read
    /// tries as well (a reopen writes nothing unless the log needs folding), so reads
    /// come back as soon as the storage does, without waiting for a write. After a
    /// read's reopen failed, reads wait [`READ_REOPEN_GAP`] before trying again: a
    /// reopen re-checks the whole log.
    pub(crate) fn db(&self) -> Result<Arc<Database>, EngineError> {
        if let Some(db) = self.current_db() {
            return Ok(db);
        }
        if !self.read_reopen_due() {
            return Err(EngineError::Unavailable(
                "storage is recovering from a failure".into(),
            ));
        }
        let reopened = self.reopen(1);
        if reopened.is_err() {
            *self
                .read_reopen_failed
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        reopened
    }

    /// The open database for the writer, reopening it (with retries) after a failure.
    fn db_for_write(&self) -> Result<Arc<Database>, EngineError> {
        match self.current_db() {
            Some(db) => Ok(db),
            None => self.reopen(50),
        }
    }

    /// Runs `f` with the only handle on the database (redb's `compact` takes `&mut`): new
    /// readers wait on the handle's lock meanwhile, and those holding it are given
    /// [`EXCLUSIVE_WAIT`] to finish. Called on the writer's thread, so no write is in
    /// flight; `Unavailable` if a reader holds on longer (nothing was changed).
    fn with_exclusive_db<T>(
        &self,
        f: impl FnOnce(&mut Database) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        let Some(mut db) = slot.take() else {
            return Err(EngineError::Unavailable("storage is recovering".into()));
        };
        let deadline = Instant::now() + EXCLUSIVE_WAIT;
        let mut only = loop {
            match Arc::try_unwrap(db) {
                Ok(only) => break only,
                Err(shared) if Instant::now() < deadline => {
                    db = shared;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(shared) => {
                    *slot = Some(shared);
                    return Err(EngineError::Unavailable(
                        "the ledger stayed in use by a reader".into(),
                    ));
                }
            }
        };
        let r = f(&mut only);
        *slot = Some(Arc::new(only));
        r
    }

    pub(crate) fn coins_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, crate::store::coin_cache::CoinCache> {
        self.coins.write().unwrap_or_else(|e| e.into_inner())
    }

    fn current_db(&self) -> Option<Arc<Database>> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn read_reopen_due(&self) -> bool {
        let last = self
            .read_reopen_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        last.is_none_or(|t| t.elapsed() >= READ_REOPEN_GAP)
    }

    /// After an I/O failure redb refuses further commits until the storage is reopened
    /// ("latched"); drop our handle so the next write reopens it.
    fn discard_db(&self) {
        if self.reopen.is_none() {
            return;
        }
        // The coin cache stays: the reopen keeps it if it covers what redb lacks.
        let old = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(old) = old {
            *self.discarded.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&old);
        }
    }

    /// Reopens the storage after [`Shared::discard_db`], re-checking the log, in up to
    /// `attempts` tries 20 ms apart: users of the old handle finish first (for a file,
    /// redb also locks it until then).
    fn reopen(&self, attempts: usize) -> Result<Arc<Database>, EngineError> {
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            match self.open_again() {
                Ok(db) => {
                    let cached = self.coins_mut().coverage();
                    crate::recovery::check_and_init(&db, &self.config.params, Some(cached))?;
                    let (written, cursor) = crate::store::coin_cache::cursors(&db)?;
                    if (written, cursor) != cached {
                        // Rebuilt, or written back after all: redb's tables are current.
                        self.coins_mut().reset(cursor);
                    }
                    let db = Arc::new(db);
                    *slot = Some(db.clone());
                    tracing::warn!("ledger reopened after a storage failure");
                    return Ok(db);
                }
                Err(e) => last = e,
            }
        }
        Err(EngineError::Unavailable(format!(
            "cannot reopen the ledger: {last}"
        )))
    }

    fn open_again(&self) -> Result<Database, String> {
        let reopen = self
            .reopen
            .as_ref()
            .ok_or("an in-memory ledger is not reopened")?;
        let discarded = self.discarded.lock().unwrap_or_else(|e| e.into_inner());
        if discarded.strong_count() > 0 {
            return Err("the failed handle is still in use".into());
        }
        reopen().map_err(|e| e.to_string())
    }
}

/// A handle to the ledger; cheap to clone, usable from any thread. When the last clone
/// is dropped the writer finishes what it was given and the database is closed.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
}

/// Owns the command queue and the writer thread; dropping it drains and joins.
struct WriterHandle {
    commands: Option<mpsc::SyncSender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop; joining makes "dropped" mean "closed",
        // so the same file can be reopened at once (redb holds a lock on it).
        self.commands.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Engine {
    /// Opens (or creates) the ledger at `path`. Checks the log's hash chain and that the
    /// projections are exactly at the log head, catching up if they are behind; refuses
    /// with [`EngineError::Open`] when the log is corrupt or belongs to another network.
    pub fn open(path: impl AsRef<Path>, config: EngineConfig) -> Result<Engine, EngineError> {
        let path = path.as_ref();
        let cannot = |e: redb::DatabaseError| EngineError::Open(format!("{}: {e}", path.display()));
        let db = match std::fs::metadata(path) {
            // An existing ledger is opened, never re-created: an emptied file is damage
            // (a new chain would silently serve zero balances).
            Ok(meta) if meta.len() == 0 => {
                return Err(EngineError::Open(format!(
                    "{} is empty (truncated?); move it away to start a new chain",
                    path.display()
                )))
            }
            Ok(_) => crate::recovery::open_file_with(&config.db_builder(), path, true)?,
            Err(_) => config.db_builder().create(path).map_err(cannot)?,
        };
        let path = path.to_path_buf();
        let file = Some(path.clone());
        let cache = config.db_cache_bytes;
        let reopen: Reopen = Box::new(move || db_builder(cache).open(&path));
        Self::with_database(db, Some(reopen), file, config)
    }

    /// Opens a ledger in memory (tests, benchmarks, `verify`).
    pub fn in_memory(config: EngineConfig) -> Result<Engine, EngineError> {
        let db = config
            .db_builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| EngineError::Open(e.to_string()))?;
        Self::with_database(db, None, None, config)
    }

    /// Opens a ledger on any redb storage backend (tests: fault injection). After a
    /// storage failure it reopens on a clone of `backend`, as a file ledger reopens its
    /// file, so a test exercises the node's own recovery.
    pub fn with_backend<B: redb::StorageBackend + Clone>(
        backend: B,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let db = config
            .db_builder()
            .create_with_backend(backend.clone())
            .map_err(|e| EngineError::Open(e.to_string()))?;
        let cache = config.db_cache_bytes;
        let reopen: Reopen =
            Box::new(move || db_builder(cache).create_with_backend(backend.clone()));
        Self::with_database(db, Some(reopen), None, config)
    }

    fn with_database(
        mut db: Database,
        reopen: Option<Reopen>,
        file: Option<std::path::PathBuf>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        if crate::recovery::check_and_init(&db, &config.params, None)? && file.is_some() {
            // A rebuild at open (an older node's projection format, or damage) rewrote
            // every projection row: give the old rows' pages back before serving.
            crate::recovery::compact_until_done(&mut db, Duration::ZERO)?;
        }
        let mut coins = crate::store::coin_cache::CoinCache::default();
        coins.reset(crate::store::coin_cache::cursors(&db)?.1);
        let (notifier, _) = broadcast::channel(65_536);
        let sigcache = SigCache::new(config.sigcache_capacity);
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            discarded: Mutex::new(Weak::new()),
            reopen,
            file,
            read_reopen_failed: Mutex::new(None),
            coins: RwLock::new(coins),
            config,
            notifier,
            template_cache: Mutex::new(None),
            side_bytes_cache: Mutex::new(None),
            timers: BlockTimers::default(),
            prepare_pool: std::sync::OnceLock::new(),
            invalid_blocks: Mutex::new(Default::default()),
            sigcache,
        });
        let (commands, rx) = mpsc::sync_channel(MAX_BATCH * 4);
        let writer = Writer {
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("bitplace-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| EngineError::Open(format!("cannot start the writer thread: {e}")))?;
        Ok(Engine {
            shared,
            writer: Arc::new(WriterHandle {
                commands: Some(commands),
                thread: Some(thread),
            }),
        })
    }

    pub fn params(&self) -> &ChainParams {
        &self.shared.config.params
    }

    pub fn now(&self) -> u64 {
        (self.shared.config.clock)()
    }

    /// Hears every notification committed from now on (after it is durable).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Notification>> {
        self.shared.notifier.subscribe()
    }

    /// Submits a signed transaction to the mempool; returns once it is durable. Its
    /// signatures are verified on the calling thread.
    pub fn submit_tx(&self, tx: Transaction) -> Result<TxAccepted, EngineError> {
        let verified = check_tx(tx)?;
        let key = verified.sig_key();
        let r = self
            .queue_tx(verified)?
            .blocking_recv()
            .map_err(|_| EngineError::Closed)?;
        self.remember_signatures(key, r)
    }

    /// Async form of [`Engine::submit_tx`]: signatures are verified on the rayon pool,
    /// so the caller's async runtime is never blocked by them.
    pub async fn submit_tx_async(&self, tx: Transaction) -> Result<TxAccepted, EngineError> {
        let (done, verified) = oneshot::channel();
        rayon::spawn(move || {
            let _ = done.send(check_tx(tx));
        });
        let verified = verified.await.map_err(|_| EngineError::Closed)??;
        let key = verified.sig_key();
        let r = self
            .queue_tx(verified)?
            .await
            .map_err(|_| EngineError::Closed)?;
        self.remember_signatures(key, r)
    }

    /// Submits many transactions at once (verified in parallel; they share commits);
    /// results in order.
    pub fn submit_txs(&self, txs: Vec<Transaction>) -> Vec<Result<TxAccepted, EngineError>> {
        let checked: Vec<_> = txs.into_par_iter().map(check_tx).collect();
        let pending: Vec<_> = checked
            .into_iter()
            .map(|tx| -> Result<_, EngineError> {
                let tx = tx?;
                Ok((tx.sig_key(), self.queue_tx(tx)?))
            })
            .collect();
        pending
            .into_iter()
            .map(|p| {
                let (key, rx) = p?;
                let r = rx.blocking_recv().map_err(|_| EngineError::Closed)?;
                self.remember_signatures(key, r)
            })
            .collect()
    }

    /// Once a transaction is admitted (or known already), its strictly verified
    /// signatures go into the cache; a refused one's do not, so only transactions that
    /// paid their way into the mempool can push others out.
    fn remember_signatures(
        &self,
        key: SigKey,
        r: Result<TxAccepted, EngineError>,
    ) -> Result<TxAccepted, EngineError> {
        if r.is_ok() {
            self.shared.sigcache.insert(key);
        }
        r
    }

    /// The signature cache's counters: block transactions whose signatures were skipped
    /// (hits) or verified (misses) since the engine opened, and its size.
    pub fn sigcache_stats(&self) -> SigCacheStats {
        self.shared.sigcache.stats()
    }

    fn queue_tx(
        &self,
        tx: VerifiedTx,
    ) -> Result<oneshot::Receiver<Result<TxAccepted, EngineError>>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Tx(tx, reply))?;
        Ok(rx)
    }

    /// Submits a block; returns once it (and any reorganisation) is durable.
    pub fn submit_block(&self, block: Block) -> Result<BlockAccepted, EngineError> {
        self.queue_block(block)?
            .blocking_recv()
            .map_err(|_| EngineError::Closed)?
    }

    pub async fn submit_block_async(&self, block: Block) -> Result<BlockAccepted, EngineError> {
        self.queue_block(block)?
            .await
            .map_err(|_| EngineError::Closed)?
    }

    /// Why `hash` was refused for good before, if it is remembered (bounded, see
    /// [`crate::invalid`]).
    pub fn known_invalid(&self, hash: &Hash256) -> Option<Reject> {
        self.shared
            .invalid_blocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
            .cloned()
    }

    fn queue_block(
        &self,
        block: Block,
    ) -> Result<oneshot::Receiver<Result<BlockAccepted, EngineError>>, EngineError> {
        // Not remembered when this fails: these checks are cheap, and a body that does not
        // match its header (bad merkle root, duplicated transactions, added ones) says
        // nothing about the block the header names.
        // Signatures are verified by the writer, overlapped with its validation work.
        let checked = self.check_block(block)?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::Block(checked, reply))?;
        Ok(rx)
    }

    fn check_block(&self, block: Block) -> Result<CheckedBlock, EngineError> {
        if let Some(r) = self.known_invalid(&block.hash()) {
            return Err(r.into());
        }
        let timers = &self.shared.timers;
        Ok(timers.time(Stage::Check, || {
            validation::check_block(block, self.params())
        })?)
    }

    /// Runs every check that needs no chain now, on this thread and the rayon pool: the
    /// context-free rules and every signature (the signature cache applies). A block that
    /// fails is refused here and never reaches the writer; one that passes is queued with
    /// [`Engine::queue_prepared`]. A bad signature is not remembered as a refusal of the
    /// block, as on the writer's path: the hash does not commit to signatures.
    pub fn prepare_block(&self, block: Block) -> Result<PreparedBlock, EngineError> {
        let checked = self.check_block(block)?;
        let shared = &self.shared;
        shared
            .timers
            .time(Stage::Verify, || {
                let verify = || {
                    let (txs, ids) = (checked.spends(), checked.spend_txids());
                    validation::verify_block_signatures(txs, ids, &shared.sigcache)
                };
                match shared.prepare_pool.get_or_init(prepare_pool) {
                    Some(pool) => pool.install(verify),
                    None => verify(),
                }
            })
            .map_err(|(_, reject)| EngineError::from(reject))?;
        Ok(PreparedBlock(checked))
    }

    /// Queues a prepared block for the writer and returns at once; the receipt says what
    /// became of it. Blocks queued one after another are handled in that order, and those
    /// that queue up while the writer is busy are committed together (one fsync).
    /// `follows` says whether more blocks come right after this one.
    pub fn queue_prepared(
        &self,
        block: PreparedBlock,
        follows: Follows,
    ) -> Result<BlockReceipt, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Prepared(block, reply, follows))?;
        Ok(BlockReceipt(rx))
    }

    /// Time spent per stage on blocks since the engine opened.
    pub fn block_timings(&self) -> BlockTimings {
        self.shared.timers.snapshot()
    }

    /// Dev mode: appends a reset; every projection goes back to genesis.
    pub fn reset(&self) -> Result<(), EngineError> {
        self.command(Command::Reset)
    }

    /// Drops every projection and replays the log; returns the UTXO set hash and where
    /// the time went.
    pub fn rebuild(&self) -> Result<crate::recovery::Rebuilt, EngineError> {
        self.command(Command::Rebuild)
    }

    /// Gives the ledger file's free pages back to the filesystem while the node runs, when
    /// they are worth it (a third of the file free, and at least
    /// [`EngineConfig::compact_min_free_bytes`]): a sync or a reorg
    /// rewrites most projection pages copy-on-write and leaves the file about twice its
    /// live size. Reads wait while it runs (a second or two per hundred megabytes); the
    /// log and the projections are unchanged, and a crash part-way leaves a valid file.
    /// None when nothing was done (not sparse enough, an in-memory ledger, or a reader
    /// that held the ledger too long).
    pub fn compact(&self) -> Result<Option<crate::recovery::Compaction>, EngineError> {
        self.command(Command::Compact)
    }

    /// Checks the log's hash chain and compares every projection with a fresh rebuild.
    pub fn verify(&self) -> Result<crate::recovery::VerifyReport, EngineError> {
        self.write_back()?;
        crate::recovery::verify(&*self.shared.db()?, None)
    }

    /// Like [`Engine::verify`], rebuilding in two commits split at log record `checkpoint`
    /// (what a rebuild resumed after a crash does).
    pub fn verify_with_checkpoint(
        &self,
        checkpoint: u64,
    ) -> Result<crate::recovery::VerifyReport, EngineError> {
        self.write_back()?;
        crate::recovery::verify(&*self.shared.db()?, Some(checkpoint))
    }

    /// Dev mode: builds a template with up to `max_txs` mempool transactions, mines it on
    /// this CPU and submits it.
    pub fn mine_block(
        &self,
        address: crate::address::Address,
        max_txs: Option<usize>,
    ) -> Result<BlockAccepted, EngineError> {
        let template =
            self.block_template_limited(address, Vec::new(), max_txs.unwrap_or(usize::MAX))?;
        self.submit_block(template.mine_cpu())
    }

    /// Asks the writer to write the coin cache back and waits until it has: redb's
    /// tables are then all current (for whole-table reads: `verify`, storage figures).
    pub(crate) fn write_back(&self) -> Result<(), EngineError> {
        let (reply, done) = std::sync::mpsc::sync_channel(1);
        self.send(Command::WriteBack(reply))?;
        done.recv().map_err(|_| EngineError::Closed)?
    }

    fn command<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply))?;
        rx.blocking_recv().map_err(|_| EngineError::Closed)?
    }

    fn send(&self, cmd: Command) -> Result<(), EngineError> {
        let queue = self.writer.commands.as_ref().ok_or(EngineError::Closed)?;
        queue.send(cmd).map_err(|_| EngineError::Closed)
    }
}

struct Writer {
    shared: Arc<Shared>,
}

impl Writer {
    fn params(&self) -> &ChainParams {
        &self.shared.config.params
    }

    /// Drains the queue in order: runs of transactions are committed as one batch, runs of
    /// prepared blocks as one group, anything else alone.
    fn run(self, rx: mpsc::Receiver<Command>) {
        let mut next = None;
        while let Some(cmd) = next.take().or_else(|| rx.recv().ok()) {
            next = self.run_command(cmd, &rx);
            self.write_back_if_full();
        }
        // A clean close leaves redb's tables current: the next open need not rebuild.
        if let Err(e) = self.write_back_coins() {
            tracing::warn!(error = %e, "the coin cache was not written back at close; the next open rebuilds the projections from the log");
        }
    }

    /// Writes the coin cache back once it holds more than its bound of rows or layers.
    /// After the callers of the last command were answered: the write-back is off
    /// their path.
    fn write_back_if_full(&self) {
        let (rows, layers) = {
            let cache = self.shared.coins.read().unwrap_or_else(|e| e.into_inner());
            (cache.rows(), cache.layers().len())
        };
        if rows > self.shared.config.coin_cache_rows || layers > MAX_COIN_CACHE_LAYERS {
            if let Err(e) = self.write_back_coins() {
                tracing::warn!(error = %e, "writing the coin cache back failed");
            }
        }
    }

    /// Writes every cached change to redb in one transaction, then drops the layers. The cache's write lock is held across the commit, so no reader begins a
    /// snapshot that sees the rows in neither place, or the layers over rows they hold.
    fn write_back_coins(&self) -> Result<(), EngineError> {
        if self
            .shared
            .coins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            return Ok(());
        }
        // Before the lock: a reopen after a storage failure takes it.
        let db = self.shared.db_for_write()?;
        let mut cache = self.shared.coins_mut();
        let written = Self::begin_on(&db).and_then(|txn| {
            let rows = crate::store::coin_cache::write_back(&txn, cache.layers())?;
            txn.commit()?;
            Ok(rows)
        });
        match written {
            Ok((rows, cursor)) => {
                tracing::debug!(
                    rows,
                    layers = cache.layers().len(),
                    "coin cache written back"
                );
                cache.reset(cursor);
                Ok(())
            }
            Err(e) => {
                drop(cache);
                self.shared.discard_db();
                Err(e)
            }
        }
    }

    /// Commits `first` with the transactions queued right behind it (up to
    /// [`MAX_BATCH`]); returns the command that ended the run, if one did.
    fn run_tx_batch(
        &self,
        first: (VerifiedTx, Reply<TxAccepted>),
        rx: &mpsc::Receiver<Command>,
    ) -> Option<Command> {
        let mut txs = vec![first];
        let mut next = None;
        while txs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Command::Tx(tx, reply)) => txs.push((tx, reply)),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.commit_txs(txs);
        next
    }

    /// Commits `group` with the prepared blocks that reach the queue while it is open
    /// (waiting for them a moment when their caller said more follow); returns the
    /// command that ended the group, if one did.
    fn run_group(&self, group: BlockGroup, rx: &mpsc::Receiver<Command>) -> Option<Command> {
        let mut next = None;
        self.commit_group(group, |open| match self.next_for_group(rx, open.linger()) {
            Some(Command::Prepared(block, reply, follows)) => Some((block, reply, follows)),
            other => {
                next = other;
                None
            }
        });
        next
    }

    /// The next command while a group is open: one already queued, or one that arrives
    /// within `linger`.
    fn next_for_group(
        &self,
        rx: &mpsc::Receiver<Command>,
        linger: Option<Duration>,
    ) -> Option<Command> {
        match rx.try_recv() {
            Ok(cmd) => Some(cmd),
            Err(mpsc::TryRecvError::Disconnected) => None,
            Err(mpsc::TryRecvError::Empty) => {
                let wait = linger?;
                let timers = &self.shared.timers;
                timers.time(Stage::Linger, || rx.recv_timeout(wait).ok())
            }
        }
    }

    fn begin(&self) -> Result<WriteTransaction, EngineError> {
        let db = self.shared.db_for_write()?;
        Self::begin_on(&db)
    }

    /// A durable write transaction on `db`.
    fn begin_on(db: &Database) -> Result<WriteTransaction, EngineError> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }

    /// Runs `work` in one write transaction; commits only if it succeeded, then publishes
    /// the notifications. On any error nothing is written.
    fn transact<T>(
        &self,
        work: impl FnOnce(&mut Tables<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        self.transact_gated(work, || Ok(()), None)
    }

    /// Like [`Writer::transact`], but `gate` must also pass before the commit: work that
    /// ran alongside (signature verification) can still veto it. With `timers`, the
    /// work, the wait at the gate and the commit are added to their stages.
    fn transact_gated<T>(
        &self,
        work: impl FnOnce(&mut Tables<'_>) -> Result<T, EngineError>,
        gate: impl FnOnce() -> Result<(), EngineError>,
        timers: Option<&BlockTimers>,
    ) -> Result<T, EngineError> {
        match self.run_transaction(work, gate, timers) {
            Ok((v, notes)) => {
                self.publish(notes);
                Ok(v)
            }
            // Wherever in the transaction redb failed (beginning it, opening the tables,
            // writing the meta row, committing), its handle may be latched: reopen.
            Err(e @ EngineError::Store(StoreError::Redb(_))) => {
                self.shared.discard_db();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// One write transaction: committed with its notifications if `work` and `gate`
    /// succeeded, else aborted.
    fn run_transaction<T>(
        &self,
        work: impl FnOnce(&mut Tables<'_>) -> Result<T, EngineError>,
        gate: impl FnOnce() -> Result<(), EngineError>,
        timers: Option<&BlockTimers>,
    ) -> Result<(T, Vec<Notification>), EngineError> {
        let txn = self.begin()?;
        let (outcome, notes) = {
            let mut tables = Tables::open(&txn)?;
            tables.set_clock((self.shared.config.clock)());
            if self.shared.config.coin_cache_rows > 0 {
                let stack = self
                    .shared
                    .coins
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .stack();
                tables.cache_coins(stack)?;
            }
            let result = timed_fold(timers, || work(&mut tables))
                .and_then(|v| timed(timers, Stage::VerifyWait, gate).map(|_| v));
            // Errors here propagate as they are: redb's handle is latched after a failed
            // write, and an abort's own error would hide the cause.
            let outcome = match result {
                Ok(v) => {
                    timed(timers, Stage::Fold, || tables.flush_meta())?;
                    let layers = timed(timers, Stage::Fold, || tables.freeze_coins())?;
                    Ok((v, layers, tables.meta().cursor))
                }
                Err(e) => Err(e),
            };
            (outcome, tables.take_notes())
        };
        match outcome {
            Ok((v, layers, end)) => {
                // Published before the commit, so a snapshot holding the commit finds it.
                let published = layers.map(|l| self.shared.coins_mut().push(l, end));
                if let Err(e) = timed(timers, Stage::Commit, || txn.commit()) {
                    if published.is_some() {
                        self.shared.coins_mut().pop();
                    }
                    return Err(e.into());
                }
                self.shared.coins_mut().committed(end);
                Ok((v, notes))
            }
            // The first error is the cause: after a failed write redb's handle is latched
            // and the abort fails as well ("previous I/O error").
            Err(e) => {
                if let Err(abort) = txn.abort() {
                    tracing::debug!(%abort, "aborting after {e}");
                }
                Err(e)
            }
        }
    }

    fn publish(&self, notes: Vec<Notification>) {
        for n in notes {
            // No subscribers is fine: nobody is listening.
            let _ = self.shared.notifier.send(Arc::new(n));
        }
    }

    /// Runs `cmd` (with the transactions or prepared blocks queued behind it, for those);
    /// returns the command that ended such a run, if one did.
    fn run_command(&self, cmd: Command, rx: &mpsc::Receiver<Command>) -> Option<Command> {
        match cmd {
            Command::Tx(tx, reply) => return self.run_tx_batch((tx, reply), rx),
            Command::Prepared(block, reply, follows) => {
                let mut group = BlockGroup::default();
                group.push(block, reply, follows);
                return self.run_group(group, rx);
            }
            Command::Block(block, reply) => {
                let r = self.accept_block_verified(&block);
                let _ = reply.send(self.settle(&block, r));
            }
            // Each of these reads or rewrites whole tables: the cache goes to redb first.
            Command::Reset(reply) => {
                let reset = self
                    .write_back_coins()
                    .and_then(|()| self.transact(|t| self.reset(t)));
                let _ = reply.send(reset);
            }
            Command::Rebuild(reply) => {
                let rebuilt = self.write_back_coins().and_then(|()| {
                    let db = self.shared.db()?;
                    crate::recovery::rebuild(&db).map_err(Into::into)
                });
                let _ = reply.send(rebuilt);
            }
            Command::Compact(reply) => {
                let _ = reply.send(self.write_back_coins().and_then(|()| self.compact()));
            }
            Command::WriteBack(reply) => {
                let _ = reply.send(self.write_back_coins());
            }
        }
        None
    }

    /// [`Engine::compact`], on the writer's thread.
    fn compact(&self) -> Result<Option<crate::recovery::Compaction>, EngineError> {
        let Some(file) = &self.shared.file else {
            return Ok(None);
        };
        let before = std::fs::metadata(file).map_or(0, |m| m.len());
        self.repack_sparse_tables()?;
        let allocated = crate::recovery::allocated_bytes(&*self.shared.db_for_write()?)?;
        let min_free = self.shared.config.compact_min_free_bytes;
        if !crate::recovery::worth_compacting(before, allocated, min_free) {
            return Ok(None);
        }
        let moved = self
            .shared
            .with_exclusive_db(|db| crate::recovery::compact_until_done(db, EXCLUSIVE_WAIT));
        match moved {
            Ok(()) => Ok(Some(crate::recovery::Compaction {
                before,
                after: std::fs::metadata(file).map_or(0, |m| m.len()),
            })),
            Err(EngineError::Unavailable(why)) => {
                tracing::debug!(%why, "compaction skipped");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Rewrites the projection tables whose pages are mostly half full (the writer's
    /// random inserts split leaves in two) with full pages, in one transaction
    /// (`store::repack`), so that the compaction after it has their old pages to give
    /// back. The rows are unchanged.
    fn repack_sparse_tables(&self) -> Result<(), EngineError> {
        let txn = self.begin()?;
        let repacked = match crate::store::repack::repack_sparse_tables(&txn) {
            Ok(names) => names,
            Err(e) => {
                txn.abort()?;
                return Err(e.into());
            }
        };
        if repacked.is_empty() {
            txn.abort()?;
        } else {
            txn.commit()?;
            tracing::info!(tables = ?repacked, "sparse projection tables rewritten with full pages");
        }
        Ok(())
    }

    /// Group commit: every transaction of the batch is validated and appended in one write
    /// transaction; rejected ones write nothing; all callers hear back after the fsync.
    fn commit_txs(&self, batch: Vec<(VerifiedTx, Reply<TxAccepted>)>) {
        if batch.is_empty() {
            return;
        }
        let (txs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let txids: Vec<Hash256> = txs.iter().map(|t| t.tx().txid()).collect();
        let outcome = self.transact(|t| {
            let mut results = Vec::with_capacity(txs.len());
            let next_height = self.tip_height(t)? + 1;
            for tx in txs {
                match self.admit(t, tx, next_height) {
                    Err(EngineError::Rejected(r)) => results.push(Err(EngineError::Rejected(r))),
                    // A storage failure fails the whole batch: nothing is acknowledged.
                    Err(e) => return Err(e),
                    Ok(ok) => results.push(Ok(ok)),
                }
            }
            Ok(results)
        });
        match outcome {
            Ok(results) => {
                for ((reply, r), txid) in replies.into_iter().zip(results).zip(txids) {
                    chainlog::tx_outcome(&txid, &r);
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::WriteFailed(msg.clone()).into()));
                }
            }
        }
    }

    /// Validates `tx` against the mempool view and appends it. A rejection writes nothing:
    /// every check comes before the first append.
    /// `next_height` is the height of the next block (the tip does not move within a batch).
    fn admit(
        &self,
        t: &mut Tables<'_>,
        tx: VerifiedTx,
        next_height: u64,
    ) -> Result<TxAccepted, EngineError> {
        let tx = tx.into_tx();
        let txid = tx.txid();
        if t.mempool().get(txid.0.as_slice())?.is_some() || t.tx_known(&txid)? {
            return Ok(TxAccepted {
                txid,
                duplicate: true,
            });
        }
        let ctx = InputContext::Mempool {
            next_height,
            replacing: None,
        };
        let fee = t.check_inputs(&tx, &ctx, self.params())?;
        let size = crate::encoding::Encode::encode(&tx).len();
        // The same arithmetic the wallets pay by (consensus::fee): a fee of
        // `fee_for_size(size, min)` is exactly the smallest one admitted.
        let rate_kb = crate::fee::fee_rate(fee, size);
        if rate_kb < self.shared.config.min_fee_rate {
            return Err(Reject::FeeTooLow {
                rate: rate_kb,
                min: self.shared.config.min_fee_rate,
            }
            .into());
        }
        self.make_room(t, &tx, fee_rate_micro(fee, size))?;
        t.append(Event::TxAdmitted(tx))?;
        Ok(TxAccepted {
            txid,
            duplicate: false,
        })
    }

    fn tip_height(&self, t: &Tables<'_>) -> Result<u64, EngineError> {
        Ok(read::block_meta(t.block_index(), &t.meta().tip)?
            .ok_or_else(|| StoreError::corrupt("tip is not in the block index"))?
            .height)
    }

    /// Keeps the mempool bounded: evicts the lowest fee-rate transaction (with its
    /// descendants) if the newcomer pays more and does not depend on it.
    fn make_room(
        &self,
        t: &mut Tables<'_>,
        tx: &Transaction,
        rate: u64,
    ) -> Result<(), EngineError> {
        if (t.meta().mempool_count as usize) < self.params().mempool_max_txs {
            return Ok(());
        }
        let lowest = match t.mempool_by_rate()?.first()? {
            Some((k, _)) => k.value().to_vec(),
            None => return Ok(()),
        };
        let lowest_rate = u64::from_be_bytes(lowest[..8].try_into().expect("8 bytes"));
        let victim = Hash256(lowest[8..40].try_into().expect("32 bytes"));
        let doomed = descendants(t, &victim)?;
        let depends = tx.spends().iter().any(|i| doomed.contains(&i.prevout.txid));
        if lowest_rate >= rate || depends {
            return Err(Reject::MempoolFull.into());
        }
        for id in doomed.iter().rev() {
            t.append(Event::TxRemoved {
                txid: *id,
                reason: RemovalReason::Evicted,
            })?;
        }
        Ok(())
    }

    fn reset(&self, t: &mut Tables<'_>) -> Result<(), EngineError> {
        t.append(Event::Reset)?;
        let genesis = Arc::new(self.params().genesis());
        let hash = genesis.hash();
        t.append(Event::BlockAccepted(genesis))?;
        t.append(Event::TipConnected(hash))?;
        Ok(())
    }

    /// Accepts a block while its signatures are batch-verified on the other cores: the
    /// verification (the most expensive part) overlaps validation and folding, and the
    /// transaction commits only if both succeed.
    fn accept_block_verified(&self, block: &CheckedBlock) -> Result<Accepted, EngineError> {
        let (tx, rx) = mpsc::channel();
        let for_pool = block.clone();
        let shared = self.shared.clone();
        rayon::spawn(move || {
            let verdict = shared.timers.time(Stage::Verify, || {
                let (txs, ids) = (for_pool.spends(), for_pool.spend_txids());
                validation::verify_block_signatures(txs, ids, &shared.sigcache)
            });
            // Let go of the engine before answering: once the writer has heard back,
            // nothing of this block's work holds the ledger file open.
            drop((for_pool, shared));
            let _ = tx.send(verdict);
        });
        let gate = || match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err((_, reject))) => Err(reject.into()),
            Err(_) => Err(EngineError::Closed),
        };
        let timers = &self.shared.timers;
        let accepted = self.transact_gated(|t| self.accept_block(t, block), gate, Some(timers));
        if accepted.is_err() {
            // Refused before the gate: wait for the verification anyway, so the caller
            // that drops the engine on this answer finds the file closed (regression:
            // side_chain_storage_stops_at_its_budget_across_restarts_and_rebuilds reopened
            // the ledger while a refused block's verification still held it).
            let _ = rx.recv();
        }
        let accepted = accepted?;
        timers.committed(1);
        Ok(accepted)
    }

    /// Commits a group of prepared blocks (their signatures already verified) in one
    /// write transaction, folding on the blocks `more` hands over while the group is open
    /// and not full: one commit and its fsyncs for all. If any block is refused, or the
    /// storage fails, that transaction is aborted and each block is tried alone, so every
    /// caller hears its own block's verdict and the blocks before a bad one still
    /// connect, exactly as if they had come one by one.
    fn commit_group(
        &self,
        mut group: BlockGroup,
        mut more: impl FnMut(&BlockGroup) -> Option<GroupEntry>,
    ) {
        let timers = &self.shared.timers;
        let all = |t: &mut Tables<'_>| {
            let mut outcomes = Vec::new();
            for (block, _) in &group.blocks {
                outcomes.push(self.accept_block(t, &block.0)?);
            }
            while !group.is_full() {
                let Some((block, reply, follows)) = more(&group) else {
                    break;
                };
                let accepted = self.accept_block(t, &block.0);
                group.push(block, reply, follows);
                outcomes.push(accepted?);
            }
            Ok(outcomes)
        };
        let outcomes = match self.transact_gated(all, || Ok(()), Some(timers)) {
            Ok(outcomes) => outcomes,
            Err(alone) if group.blocks.len() == 1 => {
                // Tried alone already: that is its verdict.
                let (block, reply) = group.blocks.remove(0);
                let _ = reply.send(self.settle(&block.0, Err(alone)));
                return;
            }
            Err(_) => return self.commit_one_by_one(group.blocks),
        };
        timers.committed(group.blocks.len() as u64);
        for ((block, reply), outcome) in group.blocks.into_iter().zip(outcomes) {
            let _ = reply.send(self.settle(&block.0, Ok(outcome)));
        }
    }

    /// Commits each block in its own transaction (after its group failed).
    fn commit_one_by_one(&self, blocks: Vec<(PreparedBlock, Reply<BlockAccepted>)>) {
        let timers = &self.shared.timers;
        for (block, reply) in blocks {
            let one = |t: &mut Tables<'_>| self.accept_block(t, &block.0);
            let r = self.transact_gated(one, || Ok(()), Some(timers));
            if r.is_ok() {
                timers.committed(1);
            }
            let _ = reply.send(self.settle(&block.0, r));
        }
    }

    /// After a block's transaction: the operator's log line, a final refusal remembered,
    /// and the caller's answer.
    fn settle(
        &self,
        block: &CheckedBlock,
        r: Result<Accepted, EngineError>,
    ) -> Result<BlockAccepted, EngineError> {
        match &r {
            Ok((_, Some(change))) => chainlog::tip_changed(change),
            Ok((BlockAccepted::SideChain { hash, height }, None)) => {
                chainlog::side_chain_block(hash, *height)
            }
            Err(EngineError::Rejected(reject)) => {
                chainlog::block_refused(&block.hash(), reject);
                self.shared.remember_invalid(block.hash(), reject);
            }
            _ => {}
        }
        r.map(|(accepted, _)| accepted)
    }

    /// Stores `block` and, when its chain has the most work, makes it the tip; also says
    /// how the best chain changed (for the log, written after the commit).
    fn accept_block(
        &self,
        t: &mut Tables<'_>,
        block: &CheckedBlock,
    ) -> Result<Accepted, EngineError> {
        let hash = block.hash();
        if let Some(meta) = read::block_meta(t.block_index(), &hash)? {
            let height = meta.height;
            return Ok((BlockAccepted::Duplicate { hash, height }, None));
        }
        let prev = block.block().header.prev_hash;
        let parent =
            read::block_meta(t.block_index(), &prev)?.ok_or(Reject::UnknownParent(prev))?;
        let height = parent.height + 1;
        let now = (self.shared.config.clock)();
        t.check_header_context(block.block(), &parent, self.params(), now)?;
        crate::store::chainstate::check_coinbase(
            block.coinbase(),
            height,
            u64::MAX,
            self.params(),
        )?;
        let tip = read::block_meta(t.block_index(), &t.meta().tip)?
            .ok_or_else(|| StoreError::corrupt("tip missing"))?;
        check_within_reach(block.block(), &parent, &tip)?;
        let branch = branch_work(block.block(), &parent)?;
        if branch <= tip.chainwork {
            self.check_side_room(t, block.block(), branch, &tip)?;
        }
        t.append(Event::BlockAccepted(block.shared().clone()))?;
        t.hand_txids(hash, block.txids().to_vec());
        let new = read::block_meta(t.block_index(), &hash)?
            .ok_or_else(|| StoreError::corrupt("block just stored"))?;
        if new.chainwork <= tip.chainwork {
            return Ok((BlockAccepted::SideChain { hash, height }, None));
        }
        let reorg = self.reorganize_to(t, &hash)?;
        let accepted = if reorg.disconnected == 0 {
            BlockAccepted::Connected { hash, height }
        } else {
            BlockAccepted::Reorganized {
                hash,
                height,
                disconnected: reorg.disconnected,
                connected: reorg.connected,
            }
        };
        let change = TipChange {
            tip: new,
            mempool_size: t.meta().mempool_count,
            reorg: (reorg.disconnected > 0).then_some(reorg),
        };
        Ok((accepted, Some(change)))
    }

    /// Makes `target` the tip: disconnects back to the fork point, then validates and
    /// connects each block of the new branch. Any invalid block fails the whole step
    /// (the caller aborts the transaction, so nothing changes).
    fn reorganize_to(&self, t: &mut Tables<'_>, target: &Hash256) -> Result<Reorg, EngineError> {
        let (fork, branch) = self.find_fork(t, target)?;
        let mut disconnected = Vec::new();
        while t.meta().tip != fork {
            let tip = t.meta().tip;
            disconnected.push(tip);
            t.append(Event::TipDisconnected(tip))?;
        }
        for hash in branch.iter().rev() {
            self.connect_validated(t, hash)?;
        }
        let mut reorg = Reorg {
            fork_hash: fork,
            disconnected: disconnected.len(),
            connected: branch.len(),
            ..Reorg::default()
        };
        if !disconnected.is_empty() {
            reorg.fork_height = read::block_meta(t.block_index(), &fork)?
                .ok_or_else(|| StoreError::corrupt("fork point missing"))?
                .height;
            (reorg.returned_to_mempool, reorg.invalidated) =
                self.repair_mempool(t, &disconnected)?;
        }
        Ok(reorg)
    }

    /// The last common block with the best chain, and the branch from `target` down to
    /// just above it (highest first).
    fn find_fork(
        &self,
        t: &Tables<'_>,
        target: &Hash256,
    ) -> Result<(Hash256, Vec<Hash256>), EngineError> {
        let mut branch = Vec::new();
        let mut cur = read::block_meta(t.block_index(), target)?
            .ok_or_else(|| StoreError::corrupt("target missing"))?;
        while read::main_hash_at(t.main_chain(), cur.height)? != Some(cur.hash) {
            branch.push(cur.hash);
            cur = read::block_meta(t.block_index(), &cur.prev)?
                .ok_or_else(|| StoreError::corrupt("branch parent missing"))?;
        }
        Ok((cur.hash, branch))
    }

    fn connect_validated(&self, t: &mut Tables<'_>, hash: &Hash256) -> Result<(), EngineError> {
        let block = t.block(hash)?;
        let meta = read::block_meta(t.block_index(), hash)?
            .ok_or_else(|| StoreError::corrupt("block missing"))?;
        let txids = t.txids_of(hash, &block);
        let spent = t.check_block_txs(&block, &txids, meta.height, self.params())?;
        t.hand_txids(*hash, txids);
        t.hand_spent(*hash, spent);
        t.append(Event::TipConnected(*hash))?;
        let mut conflicts = Vec::new();
        for tx in &block.txs[1..] {
            for input in tx.spends() {
                if let Some(by) = t.mempool_spender(&input.prevout)? {
                    conflicts.push(by);
                }
            }
        }
        for id in conflicts {
            self.remove_with_descendants(t, &id, RemovalReason::Conflict)?;
        }
        Ok(())
    }

    fn remove_with_descendants(
        &self,
        t: &mut Tables<'_>,
        txid: &Hash256,
        reason: RemovalReason,
    ) -> Result<(), EngineError> {
        if t.mempool().get(txid.0.as_slice())?.is_none() {
            return Ok(());
        }
        for id in descendants(t, txid)?.iter().rev() {
            t.append(Event::TxRemoved { txid: *id, reason })?;
        }
        Ok(())
    }

    /// After a reorganisation: puts the disconnected blocks' transactions back when still
    /// valid, then drops mempool transactions the new chain made invalid. Returns how many
    /// went back and how many were dropped.
    fn repair_mempool(
        &self,
        t: &mut Tables<'_>,
        disconnected: &[Hash256],
    ) -> Result<(usize, usize), EngineError> {
        let next_height = self.tip_height(t)? + 1;
        let (mut returned, mut invalidated) = (0, 0);
        for hash in disconnected.iter().rev() {
            let block = t.block(hash)?;
            let mut candidates = Vec::new();
            for tx in &block.txs[1..] {
                let txid = tx.txid();
                if !t.tx_known(&txid)? && t.mempool().get(txid.0.as_slice())?.is_none() {
                    candidates.push(tx.clone());
                }
            }
            // The block's signatures passed its batch check, which is not the mempool's
            // strict rule (see `validation::verify_tx`): check them again, in parallel.
            let verified: Vec<_> = candidates
                .into_par_iter()
                .filter_map(|tx| validation::verify_tx(tx).ok())
                .collect();
            for tx in verified {
                let ctx = InputContext::Mempool {
                    next_height,
                    replacing: None,
                };
                if t.check_inputs(tx.tx(), &ctx, self.params()).is_ok() {
                    // Verified strictly just above: true whether or not this commits.
                    self.shared.sigcache.insert(tx.sig_key());
                    t.append(Event::TxAdmitted(tx.into_tx()))?;
                    returned += 1;
                }
            }
        }
        for (txid, tx) in mempool_in_order(t)? {
            if t.mempool().get(txid.0.as_slice())?.is_none() {
                continue;
            }
            let ctx = InputContext::Mempool {
                next_height,
                replacing: Some(txid),
            };
            match t.check_inputs(&tx, &ctx, self.params()) {
                Ok(_) => {}
                Err(EngineError::Rejected(_)) => {
                    invalidated += 1;
                    self.remove_with_descendants(t, &txid, RemovalReason::Invalidated)?
                }
                Err(e) => return Err(e),
            }
        }
        Ok((returned, invalidated))
    }
}

impl Writer {
    /// A block that would sit off the best chain is stored only when our best chain has
    /// the minimum chain work (below it, anything but the best chain is cheap junk) and
    /// either its branch is a shallow fork ([`SHALLOW_FORK_BLOCKS`]) or the side blocks
    /// within reach of the tip leave room for it in the budget. The sum is read from the
    /// side-block projection, so it holds across restarts and rebuilds.
    fn check_side_room(
        &self,
        t: &Tables<'_>,
        block: &Block,
        branch: primitive_types::U256,
        tip: &BlockMeta,
    ) -> Result<(), EngineError> {
        if tip.chainwork < self.params().min_chain_work {
            return Err(Reject::BelowMinChainWork.into());
        }
        if is_shallow_fork(branch, tip)? {
            return Ok(());
        }
        let max = self.shared.config.max_side_chain_bytes;
        let used = side_bytes_within_reach(t.side_blocks(), tip)?;
        let size = block.size() as u64;
        if used.saturating_add(size) > max {
            return Err(Reject::SideChainFull { used, size, max }.into());
        }
        Ok(())
    }
}

/// Bytes of the stored blocks off the main chain whose chainwork is within reach of the
/// tip's: the side blocks that could still become the best chain. Blocks further behind
/// stay in the log (it is append-only) but no longer count, so the budget frees up as
/// the tip moves on.
pub(crate) fn side_bytes_within_reach(
    side: &impl ReadableTable<crate::store::Bytes, u64>,
    tip: &BlockMeta,
) -> Result<u64, EngineError> {
    let floor = tip.chainwork.saturating_sub(reach_work(tip)?);
    let from = crate::store::codec::side_block_key(&floor, &Hash256::ZERO);
    let mut used = 0u64;
    for row in side.range(from.as_slice()..).map_err(StoreError::from)? {
        used = used.saturating_add(row.map_err(StoreError::from)?.1.value());
    }
    Ok(used)
}

/// One block of the tip's work (at least 1): the unit forks are measured in.
fn tip_block_work(tip: &BlockMeta) -> Result<primitive_types::U256, Reject> {
    Ok(tip
        .bits
        .work()
        .map_err(Reject::InvalidBits)?
        .max(1u64.into()))
}

/// Whether a branch with `branch` work is at most [`SHALLOW_FORK_BLOCKS`] tip-blocks of
/// work behind the tip: such side blocks are stored whatever the budget says.
fn is_shallow_fork(branch: primitive_types::U256, tip: &BlockMeta) -> Result<bool, Reject> {
    let shallow = tip_block_work(tip)?.saturating_mul(SHALLOW_FORK_BLOCKS.into());
    Ok(branch.saturating_add(shallow) >= tip.chainwork)
}

/// The work of the chain ending in `block`.
fn branch_work(block: &Block, parent: &BlockMeta) -> Result<primitive_types::U256, Reject> {
    let work = block.header.bits.work().map_err(Reject::InvalidBits)?;
    Ok(parent.chainwork.saturating_add(work))
}

/// [`SIDE_CHAIN_REACH_BLOCKS`] blocks of the tip's work.
fn reach_work(tip: &BlockMeta) -> Result<primitive_types::U256, Reject> {
    Ok(tip_block_work(tip)?.saturating_mul(SIDE_CHAIN_REACH_BLOCKS.into()))
}

/// Refuses `block` when its branch's work is more than [`SIDE_CHAIN_REACH_BLOCKS`]
/// tip-blocks of work below the tip's: it could not become the best chain before the
/// honest chain moves on, so its body is not worth a place in the log.
fn check_within_reach(block: &Block, parent: &BlockMeta, tip: &BlockMeta) -> Result<(), Reject> {
    let branch = branch_work(block, parent)?;
    if branch.saturating_add(reach_work(tip)?) >= tip.chainwork {
        return Ok(());
    }
    let behind = (tip.chainwork - branch) / tip_block_work(tip)?;
    Err(Reject::ForkTooFarBehind {
        behind: behind.try_into().unwrap_or(u64::MAX),
        reach: SIDE_CHAIN_REACH_BLOCKS,
    })
}

/// The pool for [`Shared::prepare_pool`]: a thread per core. Not one fewer to leave the
/// writer a core of its own: the writer idles between blocks and in its fsyncs, and with
/// sync's groups held open ([`GROUP_LINGER`]) the verification, not the writer, bounds
/// a sync on few cores. A 100k-transaction sync on a 2-core VM took 2.25 s with one
/// verification thread and 1.96–2.05 s with two (the writer's share of the cores
/// shrinks, its folding takes longer, the sum finishes sooner).
fn prepare_pool() -> Option<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .thread_name(|i| format!("bitplace-verify-{i}"))
        .build()
        .inspect_err(|e| {
            tracing::warn!("verification threads not started ({e}): using the shared pool")
        })
        .ok()
}

/// Runs the writer's part of a block transaction, adding its time (less any lingering
/// for more blocks) to [`Stage::Fold`] when there are timers.
fn timed_fold<T>(timers: Option<&BlockTimers>, work: impl FnOnce() -> T) -> T {
    match timers {
        Some(t) => t.time_fold(work),
        None => work(),
    }
}

/// Runs `work`, adding its time to `stage` when there are timers (block transactions).
fn timed<T>(timers: Option<&BlockTimers>, stage: Stage, work: impl FnOnce() -> T) -> T {
    match timers {
        Some(t) => t.time(stage, work),
        None => work(),
    }
}

/// The checks a transaction passes before it is queued for the writer: context-free
/// rules, then strict signature verification.
fn check_tx(tx: Transaction) -> Result<VerifiedTx, EngineError> {
    // The txid costs a hash: only worth it when the refusal will be logged.
    let txid = tracing::enabled!(tracing::Level::DEBUG).then(|| tx.txid());
    let checked = validation::check_loose_tx(&tx).and_then(|()| validation::verify_tx(tx));
    if let (Err(r), Some(txid)) = (&checked, txid) {
        chainlog::tx_refused(&txid, r);
    }
    Ok(checked?)
}

/// Mempool transactions in admission order (parents before children).
fn mempool_in_order(t: &mut Tables<'_>) -> Result<Vec<(Hash256, Transaction)>, EngineError> {
    let mut rows = Vec::new();
    for row in t.mempool_flushed()?.iter()? {
        let (k, v) = row?;
        let (seq, _, bytes) =
            decode_mempool_value(v.value()).ok_or_else(|| StoreError::corrupt("mempool row"))?;
        let tx = <Transaction as crate::encoding::Decode>::decode(bytes)
            .map_err(|e| StoreError::corrupt(format!("mempool tx: {e}")))?;
        let txid = Hash256(
            k.value()
                .try_into()
                .map_err(|_| StoreError::corrupt("mempool key"))?,
        );
        rows.push((seq, txid, tx));
    }
    rows.sort_by_key(|r| r.0);
    Ok(rows.into_iter().map(|(_, id, tx)| (id, tx)).collect())
}

/// `txid` and every mempool transaction depending on it, parents before children.
fn descendants(t: &Tables<'_>, txid: &Hash256) -> Result<Vec<Hash256>, EngineError> {
    let mut out = vec![*txid];
    let mut seen: HashSet<Hash256> = out.iter().copied().collect();
    let mut i = 0;
    while i < out.len() {
        let id = out[i];
        if let Some((tx, _)) = t.mempool_tx(&id)? {
            for vout in 0..tx.outputs.len() as u32 {
                if let Some(child) = t.mempool_spender(&OutPoint { txid: id, vout })? {
                    if seen.insert(child) {
                        out.push(child);
                    }
                }
            }
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
