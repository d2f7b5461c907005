//! Where block connects spend their time: running totals per stage, kept by the engine
//! for every block it is given, so an operator (and `bitplace-bench sync`) can see which
//! stage bounds a sync — the context-free checks, signature verification, the writer's
//! validation and folding, or the commit and its fsync.
//!
//! Totals, not samples: a sync reads them before and after and reports the difference
//! ([`BlockTimings::since`]). Relaxed atomics: each total is a statistic, never a fact
//! another thread acts on.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The running totals (one per engine).
#[derive(Default)]
pub(crate) struct BlockTimers {
    blocks: AtomicU64,
    check_ns: AtomicU64,
    verify_ns: AtomicU64,
    verify_wait_ns: AtomicU64,
    fold_ns: AtomicU64,
    linger_ns: AtomicU64,
    commit_ns: AtomicU64,
    commits: AtomicU64,
}

/// Which total a measured span adds to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stage {
    /// Context-free checks: structure, merkle root, proof of work (the caller's thread).
    Check,
    /// Signature verification (the rayon pool), whoever ran it.
    Verify,
    /// The writer waiting for a block's verification to finish before it may commit.
    VerifyWait,
    /// The writer's contextual validation, folding events into the projections and
    /// writing staged rows back before the commit.
    Fold,
    /// The writer holding a group's transaction open for the next block its caller said
    /// would follow.
    Linger,
    /// `commit()`: writing the dirty pages and the fsyncs of the two-phase commit.
    Commit,
}

impl BlockTimers {
    pub(crate) fn add(&self, stage: Stage, spent: Duration) {
        let ns = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        let total = match stage {
            Stage::Check => &self.check_ns,
            Stage::Verify => &self.verify_ns,
            Stage::VerifyWait => &self.verify_wait_ns,
            Stage::Fold => &self.fold_ns,
            Stage::Linger => &self.linger_ns,
            Stage::Commit => &self.commit_ns,
        };
        total.fetch_add(ns, Relaxed);
    }

    /// Runs `work`, adding the time it took to `stage`.
    pub(crate) fn time<T>(&self, stage: Stage, work: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = work();
        self.add(stage, start.elapsed());
        out
    }

    /// Runs the writer's `work` for a block transaction, adding its time to
    /// [`Stage::Fold`] less the [`Stage::Linger`] spans recorded inside it (only the
    /// writer lingers, so none from elsewhere land in between).
    pub(crate) fn time_fold<T>(&self, work: impl FnOnce() -> T) -> T {
        let lingered = self.linger_ns.load(Relaxed);
        let start = Instant::now();
        let out = work();
        let inside = self.linger_ns.load(Relaxed).saturating_sub(lingered);
        let spent = start.elapsed().saturating_sub(Duration::from_nanos(inside));
        self.add(Stage::Fold, spent);
        out
    }

    /// A write transaction that committed `blocks` blocks.
    pub(crate) fn committed(&self, blocks: u64) {
        self.blocks.fetch_add(blocks, Relaxed);
        self.commits.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BlockTimings {
        let ms = |a: &AtomicU64| a.load(Relaxed) as f64 / 1e6;
        BlockTimings {
            blocks: self.blocks.load(Relaxed),
            commits: self.commits.load(Relaxed),
            check_ms: ms(&self.check_ns),
            verify_ms: ms(&self.verify_ns),
            verify_wait_ms: ms(&self.verify_wait_ns),
            fold_ms: ms(&self.fold_ns),
            linger_ms: ms(&self.linger_ns),
            commit_ms: ms(&self.commit_ns),
        }
    }
}

/// Time spent per stage on blocks, in milliseconds, since the engine opened (or between
/// two snapshots, [`BlockTimings::since`]). Stages overlap: verification runs on the
/// rayon pool while the writer folds, so the parts add up to more than the wall time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct BlockTimings {
    /// Blocks committed (connected or stored on a side branch).
    pub blocks: u64,
    /// Write transactions that committed blocks: fewer than `blocks` when blocks were
    /// committed in groups.
    pub commits: u64,
    pub check_ms: f64,
    pub verify_ms: f64,
    /// Of the writer's time, how long it waited for verification (0 when blocks arrive
    /// verified, as sync prepares them).
    pub verify_wait_ms: f64,
    pub fold_ms: f64,
    /// Of the writer's time, how long it held groups open waiting for blocks said to
    /// follow ([`crate::Follows::More`]).
    pub linger_ms: f64,
    pub commit_ms: f64,
}

impl BlockTimings {
    /// What was spent between `earlier` and `self`.
    pub fn since(&self, earlier: &BlockTimings) -> BlockTimings {
        BlockTimings {
            blocks: self.blocks.saturating_sub(earlier.blocks),
            commits: self.commits.saturating_sub(earlier.commits),
            check_ms: self.check_ms - earlier.check_ms,
            verify_ms: self.verify_ms - earlier.verify_ms,
            verify_wait_ms: self.verify_wait_ms - earlier.verify_wait_ms,
            fold_ms: self.fold_ms - earlier.fold_ms,
            linger_ms: self.linger_ms - earlier.linger_ms,
            commit_ms: self.commit_ms - earlier.commit_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_add_to_their_stage_and_since_subtracts() {
        let t = BlockTimers::default();
        t.add(Stage::Fold, Duration::from_millis(3));
        let before = t.snapshot();
        t.add(Stage::Fold, Duration::from_millis(2));
        t.add(Stage::Commit, Duration::from_millis(5));
        t.committed(2);
        let d = t.snapshot().since(&before);
        assert_eq!((d.blocks, d.commits), (2, 1));
        assert!((d.fold_ms - 2.0).abs() < 1e-9, "{d:?}");
        assert!((d.commit_ms - 5.0).abs() < 1e-9, "{d:?}");
        assert_eq!((d.check_ms, d.verify_ms, d.verify_wait_ms), (0.0, 0.0, 0.0));
    }

    #[test]
    fn a_fold_is_timed_without_the_lingering_inside_it() {
        let t = BlockTimers::default();
        t.time_fold(|| {
            t.time(Stage::Linger, || {
                std::thread::sleep(Duration::from_millis(40))
            });
        });
        let s = t.snapshot();
        assert!(s.linger_ms >= 40.0, "{s:?}");
        assert!(s.fold_ms < 20.0, "the wait is not folding: {s:?}");
    }
}
