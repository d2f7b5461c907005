//! Chain parameters per network and the fixed genesis blocks.

use crate::address::Address;
use crate::block::Block;
use crate::hash::Hash256;
use crate::header::BlockHeader;
use crate::pow::CompactTarget;
use crate::tx::{Transaction, TxOut};
/// Chain work (and [`ChainParams::min_chain_work`]).
pub use primitive_types::U256;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Main,
    Dev,
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Network::Main => "main",
            Network::Dev => "dev",
        })
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "main" => Ok(Network::Main),
            "dev" => Ok(Network::Dev),
            other => Err(format!("unknown network `{other}` (expected main or dev)")),
        }
    }
}

/// Consensus and policy parameters. The genesis block depends only on `network`, so
/// nodes started with different flags still share history up to the first block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainParams {
    pub network: Network,
    /// Easiest target any block may have.
    pub pow_limit: CompactTarget,
    /// Target of the first blocks, until the first retarget.
    pub initial_bits: CompactTarget,
    /// Seconds between blocks that retargeting aims for.
    pub target_block_time: u32,
    /// Blocks between retargets: 0 never retargets; 1 retargets every block from the
    /// parent's interval (the dev rule, `difficulty::PER_BLOCK_HALF_LIFE`); N ≥ 2 scales
    /// the target every N blocks by the window's actual / expected time (main).
    pub retarget_interval: u64,
    /// Coinbase reward (before halvings) in units.
    pub reward: u64,
    /// Blocks between halvings; 0 means the reward never halves.
    pub halving_interval: u64,
    /// A coinbase created at height h is spendable in a block at height ≥ h + maturity.
    pub coinbase_maturity: u64,
    pub max_block_txs: usize,
    pub max_block_bytes: usize,
    /// How far past the local clock a block time may be before it is refused (for now).
    pub max_future_secs: u32,
    /// Most transactions the mempool holds before evicting the lowest fee rate.
    pub mempool_max_txs: usize,
    /// Work our best chain must have before this node stores side-chain block bodies
    /// (and before sync fetches a peer's chain that claims less): below it, a branch
    /// that is not the best is cheap junk, not a fork worth keeping (Bitcoin Core's
    /// `nMinimumChainWork`). 0 on every network for now: a real value is only known
    /// once a chain has history worth protecting.
    #[serde(default, with = "u256_serde")]
    pub min_chain_work: U256,
}

/// Chain work as a 64-digit big-endian hex string, as every API shows it.
mod u256_serde {
    use super::*;

    pub fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::pow::u256_hex(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let text = String::deserialize(d)?;
        parse_chain_work(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses chain work written in hex (up to 64 digits, `0x` optional).
pub fn parse_chain_work(text: &str) -> Result<U256, String> {
    let hex = text
        .trim()
        .trim_start_matches("0x")
        .trim_start_matches("0X");
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "`{text}` is not chain work in hex (1 to 64 hex digits, like 1000000)"
        ));
    }
    U256::from_str_radix(hex, 16).map_err(|e| format!("`{text}`: {e:?}"))
}

impl ChainParams {
    pub fn main() -> ChainParams {
        ChainParams {
            network: Network::Main,
            pow_limit: CompactTarget(0x1f00ffff),
            initial_bits: CompactTarget(0x1e0fffff),
            target_block_time: 60,
            retarget_interval: 144,
            reward: 50_0000_0000,
            halving_interval: 210_000,
            coinbase_maturity: 100,
            max_block_txs: 20_000,
            max_block_bytes: 8_000_000,
            max_future_secs: 2 * 60 * 60,
            mempool_max_txs: 200_000,
            min_chain_work: U256::zero(),
        }
    }

    /// The dev network: it starts where a CPU finds a block in well under a second, then
    /// retargets every block toward one block per 5 s, so an attached miner settles at
    /// that pace within a minute instead of flooding the ledger. Reward 10, and a coinbase
    /// is spendable in the very next block (the seeds' walk-through works).
    pub fn dev() -> ChainParams {
        ChainParams {
            network: Network::Dev,
            pow_limit: CompactTarget::EASIEST,
            initial_bits: CompactTarget(0x1f00ffff),
            target_block_time: 5,
            retarget_interval: 1,
            reward: 10,
            halving_interval: 0,
            coinbase_maturity: 1,
            max_block_txs: 20_000,
            max_block_bytes: 8_000_000,
            max_future_secs: 2 * 60 * 60,
            mempool_max_txs: 200_000,
            min_chain_work: U256::zero(),
        }
    }

    pub fn for_network(network: Network) -> ChainParams {
        match network {
            Network::Main => ChainParams::main(),
            Network::Dev => ChainParams::dev(),
        }
    }

    /// The reward for a block at `height`, halving every `halving_interval` blocks.
    pub fn block_reward(&self, height: u64) -> u64 {
        if self.halving_interval == 0 {
            return self.reward;
        }
        let halvings = height / self.halving_interval;
        if halvings >= 64 {
            0
        } else {
            self.reward >> halvings
        }
    }

    /// The fixed genesis block of this network.
    pub fn genesis(&self) -> Block {
        genesis_block(self.network)
    }

    pub fn genesis_hash(&self) -> Hash256 {
        self.genesis().hash()
    }
}

/// Genesis pays nothing (its coinbase has no outputs) and is never validated; its fields
/// are fixed so every node of a network starts from the same block.
fn genesis_block(network: Network) -> Block {
    let message = format!("Bitplace {network} genesis, 2026-11-24");
    let coinbase = Transaction::coinbase(0, message.into_bytes(), Vec::<TxOut>::new());
    let (merkle_root, _) = crate::merkle::merkle_root(&[coinbase.txid()]);
    let header = BlockHeader {
        version: 1,
        prev_hash: Hash256::ZERO,
        merkle_root,
        time: 1_795_478_400,
        bits: ChainParams::for_network_limit(network),
        nonce: 0,
    };
    Block {
        header,
        txs: vec![coinbase],
    }
}

impl ChainParams {
    fn for_network_limit(network: Network) -> CompactTarget {
        match network {
            Network::Main => CompactTarget(0x1f00ffff),
            Network::Dev => CompactTarget::EASIEST,
        }
    }
}

/// An address nobody holds a key for (all-zero payload), for tests and burn outputs.
pub const BURN_ADDRESS: Address = Address([0; 20]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_fixed_and_differs_per_network() {
        assert_eq!(
            ChainParams::main().genesis_hash(),
            ChainParams::main().genesis_hash()
        );
        assert_ne!(
            ChainParams::main().genesis_hash(),
            ChainParams::dev().genesis_hash()
        );
        let mut custom = ChainParams::dev();
        custom.initial_bits = CompactTarget(0x1e00ffff);
        assert_eq!(custom.genesis_hash(), ChainParams::dev().genesis_hash());
    }

    #[test]
    fn min_chain_work_parses_hex_and_round_trips() {
        assert_eq!(parse_chain_work("0").unwrap(), U256::zero());
        assert_eq!(parse_chain_work("0x1000").unwrap(), U256::from(0x1000));
        assert!(parse_chain_work("").is_err());
        assert!(parse_chain_work("xyz").is_err());
        assert!(parse_chain_work(&"f".repeat(65)).is_err());
        let mut p = ChainParams::main();
        p.min_chain_work = U256::from(0xabcdef);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("0000abcdef"), "{json}");
        assert_eq!(serde_json::from_str::<ChainParams>(&json).unwrap(), p);
    }

    #[test]
    fn reward_halves() {
        let mut p = ChainParams::dev();
        p.halving_interval = 10;
        assert_eq!(p.block_reward(9), 10);
        assert_eq!(p.block_reward(10), 5);
        assert_eq!(p.block_reward(10 * 70), 0);
    }
}
