//! Bitplace's miner: SHA-256d nonce search over the 80-byte block header on the CPU
//! (a hand-written multi-lane kernel, [`cpu`]) and on GPUs through wgpu and the WGSL
//! kernel in `shaders/sha256d.wgsl` ([`gpu`]), every device at once ([`devices`]) over
//! disjoint parts of a job's space ([`job`]), fed by one of two work clients: a node's
//! HTTP mining API ([`client`]) or a Stratum V1 pool ([`stratum`]).
//!
//! Byte order: hashes are kept in internal order (as SHA-256 emits them) and compared
//! as little-endian 256-bit numbers; targets and hashes are printed and parsed in display
//! order (reversed), as block explorers and the node's API show them.

pub mod client;
pub mod cpu;
pub mod devices;
pub mod endpoint;
pub mod gpu;
pub mod job;
pub mod report;
pub mod sha256;
pub mod stratum;

use consensus::hash::Hash256;
use consensus::header::HEADER_SIZE;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use cpu::{CpuBackend, Kernel};
pub use gpu::GpuBackend;
pub use sha256::Prepared;

/// Errors of the miner library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MinerError {
    #[error("header must be 160 hex digits (80 bytes), got {0} characters")]
    HeaderLength(usize),
    #[error("target must be 64 hex digits (display order), got {0} characters")]
    TargetLength(usize),
    #[error("invalid hex in {0}")]
    Hex(&'static str),
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("GPU kernel does not compile: {0}")]
    Shader(String),
}

/// One header to search: its 80 bytes (the nonce field is ignored) and the target, both
/// in internal byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub header: [u8; HEADER_SIZE],
    pub target: [u8; 32],
}

/// A nonce whose header hash meets the target, with that hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Solution {
    pub nonce: u32,
    pub hash: Hash256,
}

impl Work {
    pub fn new(header: [u8; HEADER_SIZE], target: [u8; 32]) -> Work {
        Work { header, target }
    }

    /// From a raw header as 160 hex digits and a target as 64 hex digits in display order.
    pub fn from_hex(header_hex: &str, target_display_hex: &str) -> Result<Work, MinerError> {
        let header_hex = header_hex.trim();
        let target_hex = target_display_hex.trim();
        if header_hex.len() != 2 * HEADER_SIZE {
            return Err(MinerError::HeaderLength(header_hex.len()));
        }
        if target_hex.len() != 64 {
            return Err(MinerError::TargetLength(target_hex.len()));
        }
        let mut header = [0u8; HEADER_SIZE];
        hex::decode_to_slice(header_hex, &mut header).map_err(|_| MinerError::Hex("header"))?;
        let mut target = [0u8; 32];
        hex::decode_to_slice(target_hex, &mut target).map_err(|_| MinerError::Hex("target"))?;
        target.reverse();
        Ok(Work { header, target })
    }

    /// The per-header precomputation the kernels start from.
    pub fn prepared(&self) -> Prepared {
        Prepared::new(&self.header, &self.target)
    }

    /// The header hash with `nonce`, by the scalar reference path.
    pub fn hash(&self, nonce: u32) -> Hash256 {
        Hash256(sha256::sha256d_header(&self.header, nonce))
    }

    /// Full check of a nonce reported by a kernel: `Some` only if its hash meets the target.
    pub fn check(&self, nonce: u32) -> Option<Solution> {
        let hash = self.hash(nonce);
        sha256::meets(&hash.0, &self.target).then_some(Solution { nonce, hash })
    }

    /// The header bytes with `nonce` written in.
    pub fn header_with_nonce(&self, nonce: u32) -> [u8; HEADER_SIZE] {
        let mut h = self.header;
        h[consensus::header::NONCE_OFFSET..].copy_from_slice(&nonce.to_le_bytes());
        h
    }
}

/// Shared between a running search and whoever drives it: a cancel flag (new work has
/// arrived) and a counter of nonces tried (for the hashrate).
#[derive(Debug, Default)]
pub struct SearchControl {
    cancel: AtomicBool,
    hashes: AtomicU64,
}

impl SearchControl {
    pub fn new() -> SearchControl {
        SearchControl::default()
    }
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }
    pub fn reset_cancel(&self) {
        self.cancel.store(false, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
    pub fn add_hashes(&self, n: u64) {
        self.hashes.fetch_add(n, Ordering::Relaxed);
    }
    /// Nonces tried so far.
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }
}

/// What the work client drives: a nonce search on some device.
pub trait SearchBackend: Send {
    /// `"cpu"` or `"gpu"`.
    fn kind(&self) -> &'static str;
    /// The adapter (GPU) or kernel and thread count (CPU), for status lines.
    fn describe(&self) -> String;
    /// For reports that need the concrete backend (its kernel, threads, dispatch).
    fn as_any(&self) -> &dyn std::any::Any;
    /// Searches `count` nonces from `start`, handing each verified solution to `on_found`
    /// as soon as it is known; returns early when `ctl` is cancelled.
    fn search_with(
        &mut self,
        work: &Work,
        start: u32,
        count: u64,
        ctl: &SearchControl,
        on_found: &(dyn Fn(Solution) + Sync),
    ) -> Result<(), MinerError>;
}

impl SearchBackend for CpuBackend {
    fn kind(&self) -> &'static str {
        "cpu"
    }
    fn describe(&self) -> String {
        format!("cpu {} x{}", self.kernel().name(), self.threads())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn search_with(
        &mut self,
        work: &Work,
        start: u32,
        count: u64,
        ctl: &SearchControl,
        on_found: &(dyn Fn(Solution) + Sync),
    ) -> Result<(), MinerError> {
        CpuBackend::search_with(&*self, work, start, count, ctl, on_found);
        Ok(())
    }
}

impl SearchBackend for GpuBackend {
    fn kind(&self) -> &'static str {
        "gpu"
    }
    fn describe(&self) -> String {
        format!("gpu {}", self.adapter())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn search_with(
        &mut self,
        work: &Work,
        start: u32,
        count: u64,
        ctl: &SearchControl,
        on_found: &(dyn Fn(Solution) + Sync),
    ) -> Result<(), MinerError> {
        GpuBackend::search_with(self, work, start, count, ctl, on_found)
    }
}
