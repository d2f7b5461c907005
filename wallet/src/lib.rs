//! The Bitplace wallet: keys stay on the user's machine.
//!
//! - [`mnemonic`]: BIP39 mnemonics (12 or 24 words, optional BIP39 passphrase).
//! - [`slip10`] and [`keys`]: SLIP-0010 ed25519 keys along the hardened path
//!   **`m/44'/8080'/<account>'/<index>'`** (44' = BIP44 purpose, 8080' = Bitplace's coin
//!   type, account 0' by default, one hardened index per receive address). An address is
//!   `bech32m("bp", sha256(public key)[0..20])`.
//! - [`keystore`]: the mnemonic encrypted at rest (argon2id + XChaCha20-Poly1305), mode 0600.
//! - [`coinselect`]: largest-first coin selection with a size-based fee, change, signing.
//! - `client` (feature `client`): a blocking HTTP client of the node API (docs/API.md),
//!   including its server-sent events feed, and `ops` over it.
//!
//! Features: `client` (the node client), `cli` (the `bitplace-wallet` binary: clap,
//! passphrase prompts, the keystore's default directory); both on by default. The node
//! depends on this crate with `default-features = false`.
//!
//! Cross-check vector (the web page must derive the same): the mnemonic
//! `abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about`
//! with an empty BIP39 passphrase gives, at `m/44'/8080'/0'/0'`, the address
//! `bp1s53gfleaqdwfaxyas5xhzsytz56arptawkt7rh`
//! (public key `536d5feb764a094e7ac4fe773f6a262fdcd1972248a46c0285fb4985e4a2ec33`).

pub mod keys;
pub mod mnemonic;
pub mod slip10;

pub use keys::{derivation_path, Keychain, COIN_TYPE};
pub use mnemonic::{Mnemonic, MnemonicError};
pub use slip10::{DerivationError, ExtendedKey};
pub mod keystore;
pub use keystore::{KdfParams, Keystore, KeystoreError, UnlockedWallet};
pub mod coinselect;
pub use coinselect::{build_payment, select, select_all, Amount, SendError, Spendable};
// The node client and the operations over it are the command line's stack (blocking HTTP):
// behind the `client` feature, so the node, which links this library for dev custody,
// does not compile them.
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub use client::{AddressInfo, BalanceEvent, NodeClient, NodeError};
#[cfg(feature = "client")]
pub mod ops;
#[cfg(feature = "client")]
pub use ops::{Balance, Direction, HistoryRow, WalletError, GAP_LIMIT};
