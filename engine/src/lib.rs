//! The Bitplace ledger engine.
//!
//! Knows nothing of HTTP or GPUs. Layers, bottom up:
//! - consensus data: the `bitplace-consensus` crate ([`hash`], [`encoding`], [`header`],
//!   [`pow`], [`address`], [`tx`], [`merkle`], [`block`], [`params`]), re-exported here;
//! - rules: [`validation`], [`difficulty`];
//! - storage: [`events`] (the append-only log records), `store` (private: redb tables, the
//!   log and its projections; only `store/fold.rs` writes projections), `recovery` (private:
//!   replay, rebuild, verify, repair; [`repair_file`] and [`VerifyReport`] are its public
//!   face);
//! - the [`Engine`] that turns commands into events; [`query`] for reads, [`mining`] and
//!   `selection` (private) for block templates.

// The consensus types live in their own crate (no storage or threads, so the miner and
// the wallet use it alone); re-exported under the old paths so `engine::tx::…` still works.
pub use consensus::{address, block, encoding, fee, hash, header, merkle, params, pow, tx};

pub use consensus::{
    Address, Block, BlockHeader, ChainParams, CompactTarget, Hash256, Network, OutPoint,
    Transaction, TxIn, TxInputs, TxOut,
};

mod chainlog;
pub mod difficulty;
pub mod engine;
pub mod error;
pub mod events;
pub mod headers;
pub mod invalid;
mod keycache;
pub mod mining;
pub mod notify;
pub mod query;
mod recovery;
mod selection;
pub mod sigcache;
// The redb tables, the log and the projections: private, so the only way to change the
// ledger is through `Engine` (which appends events that `store/fold.rs` folds).
mod store;
// Keys and transactions for tests; not in the production library (feature `testkit`).
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod timings;
pub mod validation;

pub use engine::{
    BlockAccepted, BlockReceipt, Engine, EngineConfig, Follows, PreparedBlock, TxAccepted,
};
pub use error::EngineError;
pub use recovery::{compact_file, repair_file, Compaction, Rebuilt, VerifyReport};
pub use store::StoreError;
pub use timings::BlockTimings;
pub use validation::{Reject, RejectClass};
