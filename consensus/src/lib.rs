//! Bitplace consensus data: what every node, miner and wallet must agree on byte for byte.
//!
//! - [`encoding`]: the canonical byte encoding (strict: non-minimal lengths and trailing
//!   bytes are errors), versioned in each type's module docs;
//! - [`hash`]: SHA-256 and SHA-256d, [`Hash256`] in internal and display order;
//! - [`header`] and [`pow`]: the 80-byte Bitcoin-layout header, compact targets, chainwork;
//! - [`address`]: `bp1…` bech32m addresses of ed25519 keys;
//! - [`tx`]: transactions and txids; [`merkle`]: roots and proofs (CVE-2012-2459 flagged);
//! - [`block`]: blocks; [`params`]: per-network parameters and the fixed genesis blocks;
//! - [`fee`]: the fee policy (a rate per 1000 bytes, the minimum relay fee) that the wallet,
//!   the node's dev custody and the mempool share.
//!
//! No storage, async runtime or thread pool here: the miner and the wallet build on this
//! crate alone; the engine adds validation, the log and projections on top.

pub mod address;
pub mod block;
pub mod encoding;
pub mod fee;
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
