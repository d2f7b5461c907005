//! Helpers for tests and benchmarks of this and other crates: deterministic keys, signed
//! spends and a disk that fails on request ([`fault`]). Not used by the node itself.

use crate::address::Address;
use crate::hash::Hash256;
use crate::params::ChainParams;
use crate::pow::CompactTarget;
use crate::tx::{OutPoint, Transaction, TxIn, TxInputs, TxOut, TX_VERSION};
use ed25519_dalek::SigningKey;

pub mod fault;

/// A deterministic ed25519 key for tests.
#[derive(Clone)]
pub struct TestKey(pub SigningKey);

impl TestKey {
    pub fn new(seed: u64) -> TestKey {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&seed.to_le_bytes());
        b[8] = 0x5a;
        TestKey(SigningKey::from_bytes(&b))
    }

    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    pub fn address(&self) -> Address {
        Address::from_public_key(&self.public())
    }

    /// A signed transaction spending `inputs` (all owned by this key) to `outputs`.
    pub fn spend(&self, inputs: &[OutPoint], outputs: &[(Address, u64)]) -> Transaction {
        let mut tx = Transaction {
            version: TX_VERSION,
            inputs: TxInputs::Transfer(
                inputs
                    .iter()
                    .map(|op| TxIn {
                        prevout: *op,
                        public_key: self.public(),
                        signature: [0; 64],
                    })
                    .collect(),
            ),
            outputs: outputs
                .iter()
                .map(|(address, amount)| TxOut {
                    amount: *amount,
                    address: *address,
                })
                .collect(),
        };
        let keys = vec![&self.0; inputs.len()];
        tx.sign_inputs(&keys);
        tx
    }
}

/// Dev parameters for tests: the easiest target (a block takes ~2 hashes), a coinbase
/// spendable two blocks later, and a fixed difficulty (tests mine bursts of blocks on a
/// fake clock; the dev retarget has its own tests). The one place tests get fast params.
pub fn fast_params() -> ChainParams {
    let mut p = ChainParams::dev();
    p.initial_bits = CompactTarget::EASIEST;
    p.coinbase_maturity = 2;
    p.retarget_interval = 0;
    p
}

/// Output `vout` of `txid`.
pub fn outpoint(txid: Hash256, vout: u32) -> OutPoint {
    OutPoint { txid, vout }
}

/// The ledger file's raw tables, for tests that damage a file on purpose and check that
/// the engine refuses or rebuilds it. The store itself is private to the engine; this is
/// the narrow door tests get (four tables and the block-index row format), nothing else.
pub mod ledger_file {
    use redb::TableDefinition;

    /// The append-only log: sequence number → encoded record (or, for a record longer
    /// than [`CHUNK_BYTES`], its length, its bytes being in [`LOG_CHUNKS`]).
    pub const LOG: TableDefinition<'static, u64, &'static [u8]> = crate::store::LOG;
    /// The pieces of long records: (sequence, piece) → bytes.
    pub const LOG_CHUNKS: TableDefinition<'static, (u64, u32), &'static [u8]> =
        crate::store::LOG_CHUNKS;
    /// The longest record stored whole, and the size of a piece.
    pub const CHUNK_BYTES: usize = crate::store::logtable::CHUNK_BYTES;
    /// The projections' metadata (`cursor`, `tip`, `utxo_hash`, ...).
    pub const PROJ_META: TableDefinition<'static, &'static str, &'static [u8]> =
        crate::store::PROJ_META;
    /// Block hash → [`BlockMeta`].
    pub const BLOCK_INDEX: TableDefinition<'static, &'static [u8], &'static [u8]> =
        crate::store::BLOCK_INDEX;
    /// Address → balance.
    pub const BALANCE: TableDefinition<'static, &'static [u8], u64> = crate::store::BALANCE;
    /// Txid → [`TxPosition`] (height and position in the main chain's block).
    pub const TX_INDEX: TableDefinition<'static, &'static [u8; 32], &'static [u8; 8]> =
        crate::store::TX_INDEX;
    /// Height → block hash, genesis to tip.
    pub const MAIN_CHAIN: TableDefinition<'static, u64, &'static [u8]> = crate::store::MAIN_CHAIN;
    /// The `PROJ_META` key naming the projections' layout, and the layout this build writes.
    pub const FORMAT_KEY: &str = crate::store::FORMAT_KEY;
    pub const PROJECTION_FORMAT: u64 = crate::store::PROJECTION_FORMAT;
    /// The `PROJ_META` key of the record up to which the `utxo` table is folded (the
    /// coin cache may hold later changes).
    pub const COINS_CURSOR_KEY: &str = crate::store::coin_cache::COINS_CURSOR_KEY;

    pub use crate::store::codec::{BlockMeta, TxPosition};
}
