//! The Bitplace ledger engine.
//!
//! Knows nothing of HTTP or GPUs. Layers, bottom up:
//! - consensus data: [`hash`], [`encoding`], [`header`], [`pow`], [`address`], [`tx`],
//!   [`merkle`], [`block`], [`params`];
//! - rules: [`validation`], [`difficulty`];
//! - storage: [`events`] (the append-only log records), [`store`] (redb tables, the log and
//!   its projections);
//! - the [`Engine`] that turns commands into events; [`query`] for reads, [`mining`] and
//!   [`selection`] for block templates.

pub mod address;
pub mod block;
pub mod encoding;
pub mod hash;
pub mod header;
pub mod merkle;
pub mod params;
pub mod pow;
pub mod tx;

pub use address::Address;
pub use block::Block;
pub use hash::Hash256;
pub use header::BlockHeader;
pub use params::{ChainParams, Network};
pub use pow::CompactTarget;
pub use tx::{OutPoint, Transaction, TxIn, TxInputs, TxOut};

pub mod difficulty;
pub mod engine;
pub mod error;
pub mod events;
mod keycache;
pub mod mining;
pub mod notify;
pub mod query;
pub mod recovery;
pub mod selection;
pub mod store;
pub mod testkit;
pub mod validation;

pub use engine::{BlockAccepted, Engine, EngineConfig, TxAccepted};
pub use error::EngineError;
pub use validation::{Reject, RejectClass};
