//! The CPU backend: the multi-lane or SHA-NI kernel ([`Kernel`]) on every core.

mod kernel;
mod lanes;
#[cfg(target_arch = "x86_64")]
mod shani;

pub use kernel::Kernel;

use crate::{SearchControl, Solution, Work};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Nonces a thread takes at a time: small enough (a few ms) that a cancel for new work
/// is seen quickly and threads finish together, large enough that the shared counter is
/// not contended.
const CHUNK: u64 = 1 << 16;

/// SHA-256d nonce search on the CPU.
#[derive(Clone, Debug)]
pub struct CpuBackend {
    kernel: Kernel,
    threads: usize,
}

impl CpuBackend {
    /// The fastest kernel on this CPU (measured once per process, see
    /// [`Kernel::calibrate`]) on `threads` threads (0 = one per core).
    pub fn new(threads: usize) -> CpuBackend {
        static FASTEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        CpuBackend::with_kernel(*FASTEST.get_or_init(Kernel::calibrate), threads)
    }

    /// A given kernel (tests and benchmarks compare them).
    pub fn with_kernel(kernel: Kernel, threads: usize) -> CpuBackend {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        CpuBackend { kernel, threads }
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Searches `count` nonces from `start` (wrapping past 2^32; `count` ≤ 2^32) and
    /// returns every nonce whose hash meets the work's target, verified on the scalar
    /// reference path, in search order. Stops early when `ctl` is cancelled.
    pub fn search(
        &self,
        work: &Work,
        start: u32,
        count: u64,
        ctl: &SearchControl,
    ) -> Vec<Solution> {
        let found = Mutex::new(Vec::new());
        self.search_with(work, start, count, ctl, &|s| {
            found.lock().unwrap_or_else(|e| e.into_inner()).push(s)
        });
        let mut found = found.into_inner().unwrap_or_else(|e| e.into_inner());
        found.sort_by_key(|s| s.nonce.wrapping_sub(start));
        found
    }

    /// Like [`CpuBackend::search`], but hands each solution to `on_found` as soon as it is
    /// verified (from whichever thread found it).
    pub fn search_with(
        &self,
        work: &Work,
        start: u32,
        count: u64,
        ctl: &SearchControl,
        on_found: &(dyn Fn(Solution) + Sync),
    ) {
        let count = count.min(1 << 32);
        let prepared = work.prepared();
        let next = AtomicU64::new(0);
        let worker = || {
            let mut candidates = Vec::new();
            while !ctl.is_cancelled() {
                let offset = next.fetch_add(CHUNK, Ordering::Relaxed);
                if offset >= count {
                    break;
                }
                let n = CHUNK.min(count - offset);
                self.kernel.scan(
                    &prepared,
                    start.wrapping_add(offset as u32),
                    n as u32,
                    &mut candidates,
                );
                ctl.add_hashes(n);
                // Candidates only passed the early reject on the top word: check in full.
                for nonce in candidates.drain(..) {
                    if let Some(solution) = work.check(nonce) {
                        on_found(solution);
                    }
                }
            }
        };
        if self.threads <= 1 {
            worker();
        } else {
            std::thread::scope(|s| {
                for _ in 0..self.threads {
                    s.spawn(worker);
                }
            });
        }
    }
}
