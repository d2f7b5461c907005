//! Sync's block pipeline: the bodies of a round's blocks fetched several at a time, each
//! block checked and its signatures verified on the other cores while the writer connects
//! the ones before it, and handed to the writer in chain order without waiting for each
//! answer, so blocks that queue up behind a busy writer are committed together.
//!
//! ```text
//! fetch (FETCH_PARALLEL at once) → decode → prepare (check + signatures) → queue → writer
//!        spawned tasks                      in order, on all cores          in order
//! ```
//!
//! How far the pipeline runs ahead of the writer is bounded by bytes ([`AHEAD_BYTES`]), not
//! by a count of blocks: a chain's blocks differ in cost, and verification is only free
//! when it can run during blocks that are cheap to verify and dear to connect (many
//! outputs, few signatures). Memory stays bounded: `FETCH_PARALLEL` bodies in flight plus
//! `AHEAD_BYTES` fetched and not yet connected.

use super::*;
use engine::{BlockReceipt, Follows, PreparedBlock};
use futures_util::stream::{self, StreamExt};
use std::collections::VecDeque;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Bytes of blocks fetched and not yet connected (being prepared, prepared, or queued at
/// the writer), counted in KiB permits.
const AHEAD_BYTES: usize = 64 << 20;
/// Most blocks queued at the writer whose answers have not been read.
const MAX_QUEUED: usize = 64;

/// Where one sync's time went, in milliseconds. The stages overlap (that is the point), so
/// they add up to more than the wall time; whichever is closest to the wall time bounds
/// the sync.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct SyncTimings {
    /// Wall time from the first block fetched to the sync's end.
    pub wall_ms: f64,
    /// Fetching bodies from the peer, summed over the parallel fetches.
    pub fetch_ms: f64,
    /// Decoding them.
    pub decode_ms: f64,
    /// Time the writer's feed waited for the next prepared block (fetch or verification
    /// could not keep up with connecting).
    pub starved_ms: f64,
    /// The engine's stages over the same time (check, verify, fold, commit; block and
    /// commit counts). Blocks from other sources connected meanwhile count here too.
    #[schema(value_type = Object)]
    pub engine: engine::BlockTimings,
}

impl SyncTimings {
    fn add_fetch(&mut self, cost: &FetchCost) {
        self.fetch_ms += cost.fetch.as_secs_f64() * 1e3;
        self.decode_ms += cost.decode.as_secs_f64() * 1e3;
    }
}

/// What fetching one block cost.
pub(super) struct FetchCost {
    pub fetch: Duration,
    pub decode: Duration,
    /// The body's size, as fetched.
    pub bytes: usize,
}

/// A prepared block on its way to the writer, holding its share of [`AHEAD_BYTES`].
struct Ready {
    block: PreparedBlock,
    cost: FetchCost,
    budget: OwnedSemaphorePermit,
}

/// One block's way through the pipeline, as the feed hands it to the writer.
type Fed = Result<Ready, SyncError>;

/// A queued block's answer, read in chain order; its budget share is given back as soon
/// as the writer is done with it.
type Queued = JoinHandle<Result<BlockAccepted, EngineError>>;

impl PeerService {
    /// Fetches `hashes` (a round's unknown blocks, in chain order) from `url` and connects
    /// them, counting into `report`. Stops at the first block that fails; the blocks
    /// before it stay connected.
    pub(super) async fn fetch_and_connect(
        &self,
        url: &str,
        hashes: Vec<Hash256>,
        report: &mut SyncReport,
        timings: &mut SyncTimings,
    ) -> Result<(), SyncError> {
        let (feed_tx, mut feed) = mpsc::channel::<Fed>(MAX_QUEUED);
        let mut left = hashes.len();
        let producer = tokio::spawn(self.clone().feed(url.to_string(), hashes, feed_tx));
        let mut queued: VecDeque<Queued> = VecDeque::new();
        let mut result = Ok(());
        while result.is_ok() {
            result = settle_finished(&mut queued, report).await;
            if result.is_err() {
                break;
            }
            let wait = Instant::now();
            let Some(next) = feed.recv().await else { break };
            timings.starved_ms += wait.elapsed().as_secs_f64() * 1e3;
            let ready = match next {
                Ok(ready) => ready,
                Err(e) => {
                    result = result.and(Err(e));
                    break;
                }
            };
            timings.add_fetch(&ready.cost);
            report.fetched += 1;
            self.remember_origin(ready.block.hash(), url);
            left -= 1;
            let follows = if left > 0 {
                Follows::More
            } else {
                Follows::Nothing
            };
            queued.push_back(self.queue(ready, follows)?);
            if queued.len() >= MAX_QUEUED {
                result = settle(queued.pop_front(), report).await;
            }
        }
        // Stop the feed first (nothing more is prepared), then hear every queued block.
        drop(feed);
        producer.abort();
        while !queued.is_empty() {
            let settled = settle(queued.pop_front(), report).await;
            result = result.and(settled);
        }
        result
    }

    /// Hands a prepared block to the writer; a task waits for its answer and then gives
    /// its budget share back, whether or not anyone reads the answer yet.
    /// `follows` says whether the round has more blocks after this one (so the writer may
    /// hold its group open for them).
    fn queue(&self, ready: Ready, follows: Follows) -> Result<Queued, SyncError> {
        let receipt: BlockReceipt = self.inner.engine.queue_prepared(ready.block, follows)?;
        let budget = ready.budget;
        Ok(tokio::spawn(async move {
            let answer = receipt.wait().await;
            drop(budget);
            answer
        }))
    }

    /// The producer: fetches bodies `FETCH_PARALLEL` at a time (each its own task, so they
    /// run while we wait), prepares them one after another in chain order within the
    /// byte budget and sends them on; stops at the first failure, which it sends too.
    async fn feed(self, url: String, hashes: Vec<Hash256>, out: mpsc::Sender<Fed>) {
        let budget = Arc::new(Semaphore::new(AHEAD_BYTES >> 10));
        let fetches = stream::iter(hashes).map(|h| {
            let (s, url) = (self.clone(), url.clone());
            tokio::spawn(async move { s.fetch_block_timed(&url, h).await })
        });
        let mut fetched = fetches.buffered(FETCH_PARALLEL);
        while let Some(joined) = fetched.next().await {
            let next = match joined {
                Ok(Ok((block, cost))) => self.ready(block, cost, &budget).await,
                Ok(Err(e)) => Err(e),
                Err(e) => Err(SyncError::Unreachable(format!("fetch task failed: {e}"))),
            };
            let failed = next.is_err();
            if out.send(next).await.is_err() || failed {
                return;
            }
        }
    }

    /// Waits for the block's share of the budget, then checks it and verifies its
    /// signatures, off the async workers.
    async fn ready(&self, block: Block, cost: FetchCost, budget: &Arc<Semaphore>) -> Fed {
        let kib = (cost.bytes >> 10).clamp(1, AHEAD_BYTES >> 10) as u32;
        let budget = budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| SyncError::Engine(EngineError::Closed))?;
        let engine = self.inner.engine.clone();
        let block = tokio::task::spawn_blocking(move || engine.prepare_block(block))
            .await
            .map_err(|_| SyncError::Engine(EngineError::Closed))?
            .map_err(classify_block_error)?;
        Ok(Ready {
            block,
            cost,
            budget,
        })
    }
}

/// Reads the answers of the queued blocks at the front that the writer has finished.
async fn settle_finished(
    queued: &mut VecDeque<Queued>,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    while queued.front().is_some_and(|q| q.is_finished()) {
        settle(queued.pop_front(), report).await?;
    }
    Ok(())
}

/// Reads the answer for the oldest queued block into `report`.
async fn settle(queued: Option<Queued>, report: &mut SyncReport) -> Result<(), SyncError> {
    let Some(queued) = queued else {
        return Ok(());
    };
    // The task only fails if the runtime is shutting down.
    let answer = queued
        .await
        .map_err(|_| SyncError::Engine(EngineError::Closed))?;
    match answer {
        Ok(BlockAccepted::Connected { .. }) | Ok(BlockAccepted::Reorganized { .. }) => {
            report.connected += 1;
            report.adopted = true;
        }
        Ok(BlockAccepted::SideChain { .. }) => report.side += 1,
        Ok(BlockAccepted::Duplicate { .. }) => {}
        Err(e) => return Err(classify_block_error(e)),
    }
    Ok(())
}
