//! Context-free rules and the typed reasons a transaction or block is rejected.
//!
//! Checks that need no chain state live here (shape, amounts, signatures, merkle root,
//! proof of work); checks against the UTXO set and the block index live in
//! [`crate::store::chainstate`]. Every rejection is one [`Reject`] variant, so callers
//! (HTTP, peers, tests) can tell exactly why.

use crate::block::Block;
use crate::encoding::DecodeError;
use crate::hash::Hash256;
use crate::header::BlockHeader;
use crate::params::ChainParams;
use crate::pow::{BitsError, CompactTarget};
use crate::sigcache::{SigCache, SigKey};
use crate::tx::{OutPoint, Transaction, MAX_EXTRA_NONCE};
use ed25519_dalek::Signature;
use rayon::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;

/// Why a transaction or block was refused. Nothing was written when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    #[error("malformed encoding: {0}")]
    Decode(#[from] DecodeError),
    #[error("transaction has no inputs")]
    NoInputs,
    #[error("transaction has no outputs")]
    NoOutputs,
    #[error("output {0} pays zero units")]
    ZeroOutput(usize),
    #[error("input {0}:{1} is spent twice by the same transaction")]
    DuplicateInput(Hash256, u32),
    #[error("output amounts overflow u64")]
    OutputOverflow,
    #[error("input amounts overflow u64")]
    InputOverflow,
    #[error("transaction of {size} bytes exceeds the limit of {max}")]
    TxTooLarge { size: usize, max: usize },
    #[error("a coinbase is only valid as the first transaction of a block")]
    UnexpectedCoinbase,
    #[error("signature of input {0} does not verify")]
    BadSignature(usize),
    #[error("public key of input {0} is not a valid ed25519 key")]
    BadPublicKey(usize),
    #[error("input {0} spends {1}:{2} which does not exist")]
    MissingInput(usize, Hash256, u32),
    #[error("input {0} spends {1}:{2} which is already spent")]
    InputSpent(usize, Hash256, u32),
    #[error("input {0} double-spends {1:?}, already spent by mempool transaction {2}")]
    DoubleSpend(usize, OutPoint, Hash256),
    #[error("public key of input {0} does not match the address of the output it spends")]
    KeyMismatch(usize),
    #[error("input {input} spends a coinbase of height {coinbase_height} that matures at height {mature_at}")]
    ImmatureCoinbase {
        input: usize,
        coinbase_height: u64,
        mature_at: u64,
    },
    #[error("outputs ({outputs}) exceed inputs ({inputs})")]
    SpendsMoreThanInputs { inputs: u64, outputs: u64 },
    #[error("fee rate {rate} is below the mempool's minimum {min} (units per 1000 bytes)")]
    FeeTooLow { rate: u64, min: u64 },
    #[error("the mempool is full and this transaction pays too little to evict another")]
    MempoolFull,
    #[error("block has no transactions")]
    NoTransactions,
    #[error("first transaction of a block must be the coinbase")]
    FirstNotCoinbase,
    #[error("block has more than one coinbase")]
    MultipleCoinbase,
    #[error("coinbase height {got} does not match the block height {expected}")]
    BadCoinbaseHeight { expected: u64, got: u64 },
    #[error("coinbase extra nonce of {0} bytes exceeds {MAX_EXTRA_NONCE}")]
    ExtraNonceTooLong(usize),
    #[error("coinbase pays {paid}, more than reward plus fees ({allowed})")]
    CoinbaseTooLarge { paid: u64, allowed: u64 },
    #[error("merkle root does not match the transactions")]
    BadMerkleRoot,
    #[error("block lists transaction {0} more than once")]
    DuplicateTx(Hash256),
    #[error("block hash does not meet its target")]
    HighHash,
    #[error("invalid compact target: {0}")]
    InvalidBits(BitsError),
    #[error("bits {got:?} differ from the required {expected:?}")]
    BadBits {
        expected: CompactTarget,
        got: CompactTarget,
    },
    #[error("block time {time} is not after the median time past {median}")]
    TimeTooOld { time: u32, median: u32 },
    #[error(
        "block time {time} is more than the allowed {max} (too far in the future; retry later)"
    )]
    TimeTooNew { time: u32, max: u64 },
    #[error("parent block {0} is unknown")]
    UnknownParent(Hash256),
    #[error("block of {size} bytes exceeds the limit of {max}")]
    BlockTooLarge { size: usize, max: usize },
    #[error("block has {count} transactions, more than the limit of {max}")]
    TooManyTxs { count: usize, max: usize },
    #[error("the genesis block cannot be replaced")]
    GenesisMismatch,
    #[error("block's branch is {behind} blocks of work behind the tip, past the {reach} a side chain may be: it cannot become the best chain")]
    ForkTooFarBehind { behind: u64, reach: u64 },
    #[error("our best chain has less work than the minimum chain work: side-chain blocks are not stored until it has")]
    BelowMinChainWork,
    #[error("side-chain storage is full: {used} bytes of side blocks within reach of the tip, this block of {size} would pass the budget of {max}")]
    SideChainFull { used: u64, size: u64, max: u64 },
}

impl Reject {
    /// A stable snake_case code for APIs (`{"error": code}`).
    pub fn code(&self) -> &'static str {
        use Reject::*;
        match self {
            Decode(_) => "malformed",
            NoInputs => "no_inputs",
            NoOutputs => "no_outputs",
            ZeroOutput(_) => "zero_output",
            DuplicateInput(..) => "duplicate_input",
            OutputOverflow => "output_overflow",
            InputOverflow => "input_overflow",
            TxTooLarge { .. } => "tx_too_large",
            UnexpectedCoinbase => "unexpected_coinbase",
            BadSignature(_) => "bad_signature",
            BadPublicKey(_) => "bad_public_key",
            MissingInput(..) => "missing_input",
            InputSpent(..) => "input_spent",
            DoubleSpend(..) => "double_spend",
            KeyMismatch(_) => "key_mismatch",
            ImmatureCoinbase { .. } => "immature_coinbase",
            SpendsMoreThanInputs { .. } => "spends_more_than_inputs",
            FeeTooLow { .. } => "fee_too_low",
            MempoolFull => "mempool_full",
            NoTransactions => "no_transactions",
            FirstNotCoinbase => "first_not_coinbase",
            MultipleCoinbase => "multiple_coinbase",
            BadCoinbaseHeight { .. } => "bad_coinbase_height",
            ExtraNonceTooLong(_) => "extra_nonce_too_long",
            CoinbaseTooLarge { .. } => "coinbase_too_large",
            BadMerkleRoot => "bad_merkle_root",
            DuplicateTx(_) => "duplicate_tx",
            HighHash => "high_hash",
            InvalidBits(_) => "invalid_bits",
            BadBits { .. } => "bad_bits",
            TimeTooOld { .. } => "time_too_old",
            TimeTooNew { .. } => "time_too_new",
            UnknownParent(_) => "unknown_parent",
            BlockTooLarge { .. } => "block_too_large",
            TooManyTxs { .. } => "too_many_txs",
            GenesisMismatch => "genesis_mismatch",
            ForkTooFarBehind { .. } => "fork_too_far_behind",
            BelowMinChainWork => "below_min_chain_work",
            SideChainFull { .. } => "side_chain_full",
        }
    }

    /// Which kind of refusal this is. Exhaustive on purpose: a new variant must be
    /// classified here, and every caller (HTTP statuses, peer scoring, what may be
    /// remembered as bad) follows from the class.
    pub fn class(&self) -> RejectClass {
        use Reject::*;
        use RejectClass::*;
        match self {
            Decode(_)
            | NoInputs
            | NoOutputs
            | ZeroOutput(_)
            | DuplicateInput(..)
            | OutputOverflow
            | InputOverflow
            | TxTooLarge { .. }
            | UnexpectedCoinbase
            | BadSignature(_)
            | BadPublicKey(_)
            | NoTransactions
            | FirstNotCoinbase
            | MultipleCoinbase
            | ExtraNonceTooLong(_)
            | BadMerkleRoot
            | DuplicateTx(_)
            | HighHash
            | InvalidBits(_)
            | BlockTooLarge { .. }
            | TooManyTxs { .. } => Malformed,
            KeyMismatch(_)
            | ImmatureCoinbase { .. }
            | SpendsMoreThanInputs { .. }
            | BadCoinbaseHeight { .. }
            | CoinbaseTooLarge { .. }
            | BadBits { .. }
            | TimeTooOld { .. }
            | GenesisMismatch => Invalid,
            MissingInput(..)
            | InputSpent(..)
            | DoubleSpend(..)
            | UnknownParent(_)
            | TimeTooNew { .. } => Conflict,
            // Not invalid: this node keeps no body whose chain cannot become the best.
            FeeTooLow { .. } | ForkTooFarBehind { .. } | BelowMinChainWork => PolicyRule,
            MempoolFull | SideChainFull { .. } => PolicyCapacity,
        }
    }

    /// A consensus rule was broken (the data is invalid for every node), as opposed to
    /// this node's local policy (fees, mempool room), which other nodes may not share.
    pub fn is_consensus(&self) -> bool {
        self.class().is_consensus()
    }

    /// Whether the same data may become valid later (so it must not be remembered as bad).
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Reject::TimeTooNew { .. }
                | Reject::UnknownParent(_)
                | Reject::MissingInput(..)
                | Reject::MempoolFull
                | Reject::BelowMinChainWork
                | Reject::SideChainFull { .. }
        )
    }
}

/// The classes of [`Reject`]: what kind of wrong the data is. The HTTP API maps each class
/// to one status (`api/src/error.rs`), the peer service decides from it whether a peer
/// misbehaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectClass {
    /// Consensus, context-free: malformed or breaking a rule no chain state can satisfy
    /// (shape, amounts, signatures, merkle root, proof of work, size limits).
    Malformed,
    /// Consensus, contextual: well-formed but invalid against the chain it builds on
    /// (keys, maturity, amounts spent, coinbase, bits, time, genesis).
    Invalid,
    /// Consensus, state-dependent: conflicts with the current state, which may change as
    /// the chain moves (an unknown or spent input, a double spend, an unknown parent, a
    /// time ahead of our clock).
    Conflict,
    /// Local policy: a rule of this node's mempool the data does not meet (fee rate).
    PolicyRule,
    /// Local policy: no room right now (the mempool is full).
    PolicyCapacity,
}

impl RejectClass {
    /// Consensus classes are the same on every node; policy ones are this node's choice.
    pub fn is_consensus(self) -> bool {
        !matches!(self, RejectClass::PolicyRule | RejectClass::PolicyCapacity)
    }
}

/// Largest transaction accepted (bytes of full encoding).
pub const MAX_TX_BYTES: usize = 1_000_000;

/// Shape rules for any transaction: inputs, outputs, amounts, duplicate inputs.
pub fn check_tx_shape(tx: &Transaction) -> Result<(), Reject> {
    if tx.outputs.is_empty() {
        return Err(Reject::NoOutputs);
    }
    if let Some(i) = tx.outputs.iter().position(|o| o.amount == 0) {
        return Err(Reject::ZeroOutput(i));
    }
    tx.output_total().ok_or(Reject::OutputOverflow)?;
    if let crate::tx::TxInputs::Coinbase { extra_nonce, .. } = &tx.inputs {
        if extra_nonce.len() > MAX_EXTRA_NONCE {
            return Err(Reject::ExtraNonceTooLong(extra_nonce.len()));
        }
        return Ok(());
    }
    let ins = tx.spends();
    if ins.is_empty() {
        return Err(Reject::NoInputs);
    }
    let mut seen = HashSet::with_capacity(ins.len());
    for i in ins {
        if !seen.insert(i.prevout) {
            return Err(Reject::DuplicateInput(i.prevout.txid, i.prevout.vout));
        }
    }
    Ok(())
}

/// Shape rules plus size for a transaction submitted to the mempool (no coinbase).
pub fn check_loose_tx(tx: &Transaction) -> Result<(), Reject> {
    if tx.is_coinbase() {
        return Err(Reject::UnexpectedCoinbase);
    }
    check_tx_shape(tx)?;
    let size = tx.size();
    if size > MAX_TX_BYTES {
        return Err(Reject::TxTooLarge {
            size,
            max: MAX_TX_BYTES,
        });
    }
    Ok(())
}

/// Verifies every input's signature (strict ed25519) over the txid.
pub fn verify_signatures(tx: &Transaction) -> Result<(), Reject> {
    verify_signatures_over(tx, &tx.txid())
}

/// [`verify_signatures`] for a caller that has the txid (the message) already.
fn verify_signatures_over(tx: &Transaction, txid: &Hash256) -> Result<(), Reject> {
    for (i, input) in tx.spends().iter().enumerate() {
        let key = crate::keycache::verifying_key(&input.public_key)
            .map_err(|_| Reject::BadPublicKey(i))?;
        let sig = Signature::from_bytes(&input.signature);
        key.verify_strict(&txid.0, &sig)
            .map_err(|_| Reject::BadSignature(i))?;
    }
    Ok(())
}

/// Transactions per batch. Consensus: every node cuts a block at the same positions.
const CHUNK: usize = 256;

/// Strict verification of one signature costs about this many signatures' share of a
/// batch (ed25519-dalek, 256 per batch: ~56,000 against ~170,000 per second on the
/// benchmark VM's two cores): the break-even for [`cached_chunk_verifies`].
const STRICT_COST: usize = 3;

/// Verifies all signatures of a block's transactions with ed25519 batch verification, in
/// parallel chunks over all cores. A failing chunk is re-checked one signature at a time
/// so the error names the culprit. Returns the index of the bad transaction with it.
///
/// Consensus: chunk boundaries depend only on positions in the block, so every node
/// reaches the same verdict for the same block (see [`verify_tx`] for why the
/// mempool uses strict single verification instead).
pub fn verify_signatures_batch(txs: &[Transaction]) -> Result<(), (usize, Reject)> {
    let ids: Vec<Hash256> = txs.par_iter().map(Transaction::txid).collect();
    verify_in_chunks(txs, &ids, None)
}

/// [`verify_signatures_batch`] for a block, skipping what the mempool verified strictly
/// (`cache`, see [`crate::sigcache`]). Same verdict and same error for every block
/// whatever the cache holds:
///
/// dalek's batch coefficients are derived from the whole batch, so a signature with a
/// torsion component passes or fails depending on which others share its batch. Leaving
/// the cached transactions out of a chunk (or re-cutting the chunks) could turn a
/// refused block into an accepted one, or the reverse, and split nodes by their
/// mempools. So chunks stay where they are, and one is skipped only when every
/// transaction in it is known to pass `verify_strict` (cached, or verified strictly now):
/// such a chunk passes the batch check too (each strictly valid signature adds exactly
/// zero to the batch equation), so skipping it cannot change its verdict. Any other chunk
/// is checked exactly as without a cache.
///
/// `ids` are the transactions' txids (the signed message), in order: a checked block
/// carries them ([`CheckedBlock::spend_txids`]), so they are not hashed again here.
pub fn verify_block_signatures(
    txs: &[Transaction],
    ids: &[Hash256],
    cache: &SigCache,
) -> Result<(), (usize, Reject)> {
    verify_in_chunks(txs, ids, Some(cache))
}

fn verify_in_chunks(
    txs: &[Transaction],
    ids: &[Hash256],
    cache: Option<&SigCache>,
) -> Result<(), (usize, Reject)> {
    assert_eq!(txs.len(), ids.len(), "one txid per transaction");
    txs.par_chunks(CHUNK)
        .zip(ids.par_chunks(CHUNK))
        .enumerate()
        .try_for_each(|(c, (chunk, ids))| {
            if cache.is_some_and(|cache| cached_chunk_verifies(chunk, ids, cache)) {
                return Ok(());
            }
            verify_chunk_uncached(chunk, ids).map_err(|(j, e)| (c * CHUNK + j, e))
        })
}

/// A chunk's verdict without a cache: the batch, then one by one if it fails.
fn verify_chunk_uncached(chunk: &[Transaction], ids: &[Hash256]) -> Result<(), (usize, Reject)> {
    if verify_chunk(chunk, ids) {
        return Ok(());
    }
    for (j, (tx, id)) in chunk.iter().zip(ids).enumerate() {
        verify_signatures_over(tx, id).map_err(|e| (j, e))?;
    }
    Ok(())
}

/// True when every transaction of `chunk` provably passes `verify_strict`: found in the
/// cache or, when the ones missing are few enough that checking them strictly costs less
/// than the chunk's batch, verified strictly now. False says nothing about the chunk: it
/// is then checked as without a cache ([`verify_chunk_uncached`]), whose verdict alone
/// counts (a strict failure here may still pass that chunk's batch, as it would have).
fn cached_chunk_verifies(chunk: &[Transaction], ids: &[Hash256], cache: &SigCache) -> bool {
    let mut missing = Vec::new();
    let (mut sigs, mut missing_sigs) = (0, 0);
    for (tx, id) in chunk.iter().zip(ids) {
        let n = tx.spends().len();
        sigs += n;
        if !cache.contains(&SigKey::new(id, tx)) {
            missing.push((tx, id));
            missing_sigs += n;
        }
    }
    if missing.is_empty() {
        return true;
    }
    missing_sigs * STRICT_COST < sigs
        && missing
            .iter()
            .all(|(tx, id)| verify_signatures_over(tx, id).is_ok())
}

/// A transaction whose every signature passed strict verification. Only [`verify_tx`]
/// makes one and the writer admits nothing else to the mempool, so no path (submission,
/// peers, re-admission after a reorganisation) can skip the check.
#[derive(Clone, Debug)]
pub struct VerifiedTx {
    tx: Transaction,
    key: SigKey,
}

impl VerifiedTx {
    pub fn tx(&self) -> &Transaction {
        &self.tx
    }

    pub fn into_tx(self) -> Transaction {
        self.tx
    }

    /// The signature cache's key for it: once admitted, a block holding these exact
    /// bytes need not verify them again ([`crate::sigcache`]).
    pub fn sig_key(&self) -> SigKey {
        self.key
    }
}

/// Verifies every signature of a transaction bound for the mempool, one by one with
/// strict verification. Submitters call this before queueing, so signature checks run on
/// their threads, overlapped with the writer's storage work and fsyncs.
///
/// Why not batch verification here, as for blocks: dalek's batch equation is
/// cofactorless with random coefficients, so a signature whose residual is a small torsion
/// point can pass a batch while `verify_strict` refuses it, and whether it passes depends on
/// which other signatures share the batch. Blocks are safe with it (every node chunks a
/// block's transactions identically, so every node reaches the same verdict, and anything
/// `verify_strict` accepts passes any batch); the mempool is not (its batches are whatever
/// arrived together). The strict rule admits only what every block accepts, so a template
/// built from the mempool is never refused for its signatures. It is also what makes the
/// signature cache sound: an entry means `verify_strict` accepted these exact bytes.
pub fn verify_tx(tx: Transaction) -> Result<VerifiedTx, Reject> {
    let txid = tx.txid();
    verify_signatures_over(&tx, &txid)?;
    let key = SigKey::new(&txid, &tx);
    Ok(VerifiedTx { tx, key })
}

/// Batch-verifies a chunk whose txids are `ids`; false if anything is wrong (then checked
/// singly). Batch verification is not "strict", so weak keys are refused here first.
fn verify_chunk(chunk: &[Transaction], ids: &[Hash256]) -> bool {
    let mut msgs: Vec<[u8; 32]> = Vec::new();
    let mut sigs = Vec::new();
    let mut keys = Vec::new();
    for (tx, id) in chunk.iter().zip(ids) {
        for input in tx.spends() {
            let Ok(key) = crate::keycache::verifying_key(&input.public_key) else {
                return false;
            };
            if key.is_weak() {
                return false;
            }
            msgs.push(id.0);
            sigs.push(Signature::from_bytes(&input.signature));
            keys.push(key);
        }
    }
    if sigs.is_empty() {
        return true;
    }
    let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_ok()
}

/// A block that passed the context-free rules of [`check_block`]: it has transactions, the
/// first is its only coinbase, every transaction has a valid shape, the merkle root commits
/// to them and the header meets its own target. Only a `CheckedBlock` can be queued for the
/// writer (as only a [`VerifiedTx`] can for transactions), so the writer's use of
/// [`CheckedBlock::coinbase`] rests on a check that provably ran. Signatures are verified
/// separately, batched, while the writer works ([`verify_signatures_batch`]).
///
/// It carries its txids, worked out once by the merkle check: verification signs over
/// them, the writer's checks and fold key rows by them, and hashing a 10k-transaction
/// block's again at each step was ~3 ms each time (four times per block).
#[derive(Clone, Debug)]
pub struct CheckedBlock {
    block: Arc<Block>,
    txids: Arc<[Hash256]>,
}

impl CheckedBlock {
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// The shared block, as the log's `BlockAccepted` event holds it.
    pub fn shared(&self) -> &Arc<Block> {
        &self.block
    }

    pub fn hash(&self) -> Hash256 {
        self.block.hash()
    }

    /// The coinbase: present, by the check.
    pub fn coinbase(&self) -> &Transaction {
        &self.block.txs[0]
    }

    /// The transactions after the coinbase, whose signatures a block must carry.
    pub fn spends(&self) -> &[Transaction] {
        &self.block.txs[1..]
    }

    /// Every transaction's txid, in block order.
    pub fn txids(&self) -> &[Hash256] {
        &self.txids
    }

    /// The txids of [`CheckedBlock::spends`].
    pub fn spend_txids(&self) -> &[Hash256] {
        &self.txids[1..]
    }
}

/// Context-free block rules: structure, limits, merkle root (no mutation), proof of work.
/// Signatures are checked separately ([`verify_signatures_batch`]).
///
/// The header's `version` is deliberately not a rule: any value is valid, so Stratum
/// miners may roll its bits 13–28 as extra nonce space (BIP 310 / BIP 320) and the
/// block is still accepted (engine/tests/version_rolling.rs).
pub fn check_block(block: Block, params: &ChainParams) -> Result<CheckedBlock, Reject> {
    let txids = check_block_rules(&block, params)?;
    Ok(CheckedBlock {
        block: Arc::new(block),
        txids: txids.into(),
    })
}

/// Returns the block's txids (the merkle check works them out).
fn check_block_rules(block: &Block, params: &ChainParams) -> Result<Vec<Hash256>, Reject> {
    // First, before any other work: a block claiming an easier target than the network
    // ever allows (0x207fffff on main, met by every other hash) is refused, so a pushed
    // orphan cannot pass its proof-of-work check for free.
    check_bits_within_limit(&block.header, params)?;
    let count = block.txs.len();
    if count == 0 {
        return Err(Reject::NoTransactions);
    }
    if count > params.max_block_txs {
        return Err(Reject::TooManyTxs {
            count,
            max: params.max_block_txs,
        });
    }
    let size = block.size();
    if size > params.max_block_bytes {
        return Err(Reject::BlockTooLarge {
            size,
            max: params.max_block_bytes,
        });
    }
    let target = block.header.bits.to_target().map_err(Reject::InvalidBits)?;
    if !target.is_met_by(&block.hash()) {
        return Err(Reject::HighHash);
    }
    if !block.txs[0].is_coinbase() {
        return Err(Reject::FirstNotCoinbase);
    }
    if block.txs[1..].iter().any(Transaction::is_coinbase) {
        return Err(Reject::MultipleCoinbase);
    }
    for tx in &block.txs {
        check_tx_shape(tx)?;
    }
    check_merkle(block)
}

/// A header's own proof of work, all that can be checked of a header alone: its target
/// is no easier than the network's easiest and its hash meets it. What sync checks of a
/// peer's headers before it fetches any body ([`crate::headers`]).
pub fn check_header_pow(header: &BlockHeader, params: &ChainParams) -> Result<(), Reject> {
    check_bits_within_limit(header, params)?;
    let target = header.bits.to_target().map_err(Reject::InvalidBits)?;
    if !target.is_met_by(&header.hash()) {
        return Err(Reject::HighHash);
    }
    Ok(())
}

/// The header's target is no easier than the network's easiest (`pow_limit`).
fn check_bits_within_limit(header: &BlockHeader, params: &ChainParams) -> Result<(), Reject> {
    let got = header.bits;
    let target = got.to_target().map_err(Reject::InvalidBits)?;
    let limit = params.pow_limit.to_target().map_err(Reject::InvalidBits)?;
    if target > limit {
        return Err(Reject::BadBits {
            expected: params.pow_limit,
            got,
        });
    }
    Ok(())
}

/// Returns the txids the root commits to.
fn check_merkle(block: &Block) -> Result<Vec<Hash256>, Reject> {
    let txids = txids_of(block);
    let mut seen = foldhash::HashSet::with_capacity_and_hasher(txids.len(), Default::default());
    for id in &txids {
        if !seen.insert(*id) {
            return Err(Reject::DuplicateTx(*id));
        }
    }
    let (root, mutated) = crate::merkle::merkle_root(&txids);
    if mutated || root != block.header.merkle_root {
        return Err(Reject::BadMerkleRoot);
    }
    Ok(txids)
}

/// Transactions past which a block's txids are hashed on the rayon pool.
const PARALLEL_TXIDS: usize = 256;

/// The block's txids, in order. Why in parallel: hashing them is most of a large block's
/// context-free checks, which run before the writer can start on it (the pool is idle
/// then: signature verification starts after these checks).
fn txids_of(block: &Block) -> Vec<Hash256> {
    if block.txs.len() < PARALLEL_TXIDS {
        return block.txids();
    }
    block.txs.par_iter().map(Transaction::txid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::tx::{TxIn, TxInputs, TxOut, TX_VERSION};
    use ed25519_dalek::SigningKey;

    fn ids_of(txs: &[Transaction]) -> Vec<Hash256> {
        txs.iter().map(Transaction::txid).collect()
    }

    /// A large block's txids, hashed in parallel, keep the transactions' order.
    #[test]
    fn parallel_txids_are_in_block_order() {
        let txs: Vec<Transaction> = (0..PARALLEL_TXIDS as u64 * 3)
            .map(|h| Transaction::coinbase(h, vec![], vec![]))
            .collect();
        let header = ChainParams::dev().genesis().header;
        let block = Block { header, txs };
        assert_eq!(txids_of(&block), ids_of(&block.txs));
    }

    fn signed(n: u8) -> Transaction {
        let key = SigningKey::from_bytes(&[n; 32]);
        let mut tx = Transaction {
            version: TX_VERSION,
            inputs: TxInputs::Transfer(vec![TxIn {
                prevout: OutPoint {
                    txid: Hash256([n; 32]),
                    vout: 0,
                },
                public_key: key.verifying_key().to_bytes(),
                signature: [0; 64],
            }]),
            outputs: vec![TxOut {
                amount: 1,
                address: Address([n; 20]),
            }],
        };
        tx.sign_inputs(&[&key]);
        tx
    }

    #[test]
    fn batch_verification_names_the_bad_transaction() {
        let mut txs: Vec<Transaction> = (1..=50).map(signed).collect();
        assert!(verify_signatures_batch(&txs).is_ok());
        if let TxInputs::Transfer(ins) = &mut txs[37].inputs {
            ins[0].signature[5] ^= 1;
        }
        assert_eq!(
            verify_signatures_batch(&txs),
            Err((37, Reject::BadSignature(0)))
        );
    }

    #[test]
    fn cached_block_verification_gives_the_uncached_verdict() {
        let mut txs: Vec<Transaction> = (1..=60).map(signed).collect();
        let cache = SigCache::new(1000);
        for tx in &txs[..50] {
            cache.insert(SigKey::of(tx));
        }
        assert_eq!(verify_block_signatures(&txs, &ids_of(&txs), &cache), Ok(()));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses), (50, 10));
        // A cached txid with other signature bytes misses, and fails as without a cache.
        if let TxInputs::Transfer(ins) = &mut txs[37].inputs {
            ins[0].signature[5] ^= 1;
        }
        let uncached = verify_signatures_batch(&txs);
        assert_eq!(uncached, Err((37, Reject::BadSignature(0))));
        assert_eq!(
            verify_block_signatures(&txs, &ids_of(&txs), &cache),
            uncached
        );
        // Too many missing for strict checks to pay: the chunk's batch, as before.
        assert_eq!(
            verify_block_signatures(&txs, &ids_of(&txs), &SigCache::new(0)),
            uncached
        );
    }

    #[test]
    fn a_fully_cached_chunk_is_not_verified_again() {
        // Break the cache's contract on purpose (an entry for bytes that never verified)
        // to see that a chunk whose every key hits is skipped.
        let mut txs: Vec<Transaction> = (1..=3).map(signed).collect();
        if let TxInputs::Transfer(ins) = &mut txs[1].inputs {
            ins[0].signature[0] ^= 1;
        }
        let cache = SigCache::new(100);
        for tx in &txs {
            cache.insert(SigKey::of(tx));
        }
        assert_eq!(verify_block_signatures(&txs, &ids_of(&txs), &cache), Ok(()));
        assert!(verify_signatures_batch(&txs).is_err());
    }

    #[test]
    fn verified_tx_carries_the_key_of_its_exact_bytes() {
        let tx = signed(9);
        let key = SigKey::of(&tx);
        assert_eq!(verify_tx(tx).map(|v| v.sig_key()), Ok(key));
    }

    #[test]
    fn shape_rules() {
        let mut tx = signed(1);
        tx.outputs.clear();
        assert_eq!(check_loose_tx(&tx), Err(Reject::NoOutputs));
        let mut tx = signed(1);
        tx.outputs.push(TxOut {
            amount: u64::MAX,
            address: Address([0; 20]),
        });
        assert_eq!(check_loose_tx(&tx), Err(Reject::OutputOverflow));
    }
}
