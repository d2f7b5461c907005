//! Validation against chain state: inputs against the UTXO set (and the mempool's
//! unconfirmed outputs), header context against the block index.

use super::codec::UtxoEntry;
use super::{read, StoreError, StoreResult, Tables};
use crate::address::Address;
use crate::block::Block;
use crate::difficulty::{median_time_past, required_bits, RetargetInput, MEDIAN_TIME_SPAN};
use crate::error::EngineError;
use crate::hash::Hash256;
use crate::params::ChainParams;
use crate::pow::CompactTarget;
use crate::store::codec::BlockMeta;
use crate::tx::{OutPoint, Transaction, TxInputs};
use crate::validation::Reject;
use redb::ReadableTable;

/// The outputs a block's earlier transactions created, and those they spent. Hashed with
/// foldhash (randomly seeded, like the standard hasher) and sized for the whole block up
/// front: with SipHash and growing by doubling, hashing every outpoint and rehashing the
/// growing sets were most of the samples of a 10,000-transaction block's input checks
/// (BENCHMARKS.md, session 30).
pub type BlockOutputs = foldhash::HashMap<OutPoint, UtxoEntry>;
/// See [`BlockOutputs`].
pub type BlockSpends = foldhash::HashSet<OutPoint>;

/// Against what a transaction's inputs are checked.
pub enum InputContext<'a> {
    /// For the mempool: confirmed outputs plus outputs of mempool transactions; an output
    /// already spent by another mempool transaction is a double spend. `replacing` names
    /// a transaction already in the mempool being re-checked (its own spends are fine).
    Mempool {
        next_height: u64,
        replacing: Option<Hash256>,
    },
    /// For a block at `height`: confirmed outputs plus those created earlier in the same
    /// block (`created`), minus those spent earlier in it (`spent`).
    Block {
        height: u64,
        created: &'a BlockOutputs,
        spent: &'a BlockSpends,
    },
}

impl InputContext<'_> {
    fn spend_height(&self) -> u64 {
        match self {
            InputContext::Mempool { next_height, .. } => *next_height,
            InputContext::Block { height, .. } => *height,
        }
    }
}

impl Tables<'_> {
    /// Checks every input and the amounts; returns the fee. Signatures are checked
    /// elsewhere (they need no state); here the key must match the spent address.
    pub fn check_inputs(
        &self,
        tx: &Transaction,
        ctx: &InputContext<'_>,
        params: &ChainParams,
    ) -> Result<u64, EngineError> {
        self.check_inputs_noting(tx, ctx, params, &mut |_| {})
    }

    /// [`Tables::check_inputs`], handing `found` each output spent, in input order.
    fn check_inputs_noting(
        &self,
        tx: &Transaction,
        ctx: &InputContext<'_>,
        params: &ChainParams,
        found: &mut impl FnMut(UtxoEntry),
    ) -> Result<u64, EngineError> {
        let mut total: u64 = 0;
        for (i, input) in tx.spends().iter().enumerate() {
            let entry = self.find_input(i, &input.prevout, ctx)?;
            found(entry);
            if entry.coinbase && ctx.spend_height() < entry.height + params.coinbase_maturity {
                return Err(Reject::ImmatureCoinbase {
                    input: i,
                    coinbase_height: entry.height,
                    mature_at: entry.height + params.coinbase_maturity,
                }
                .into());
            }
            if Address::from_public_key(&input.public_key) != entry.address {
                return Err(Reject::KeyMismatch(i).into());
            }
            total = total
                .checked_add(entry.amount)
                .ok_or(Reject::InputOverflow)?;
        }
        let outputs = tx.output_total().ok_or(Reject::OutputOverflow)?;
        total.checked_sub(outputs).ok_or_else(|| {
            Reject::SpendsMoreThanInputs {
                inputs: total,
                outputs,
            }
            .into()
        })
    }

    fn find_input(
        &self,
        i: usize,
        op: &OutPoint,
        ctx: &InputContext<'_>,
    ) -> Result<UtxoEntry, EngineError> {
        let missing = |known: bool| -> EngineError {
            if known {
                Reject::InputSpent(i, op.txid, op.vout).into()
            } else {
                Reject::MissingInput(i, op.txid, op.vout).into()
            }
        };
        match ctx {
            InputContext::Block { created, spent, .. } => {
                if spent.contains(op) {
                    return Err(missing(true));
                }
                if let Some(e) = created.get(op) {
                    return Ok(*e);
                }
                match self.utxo_entry(op)? {
                    Some(e) => Ok(e),
                    None => Err(missing(
                        self.tx_known(&op.txid)? || created.keys().any(|k| k.txid == op.txid),
                    )),
                }
            }
            InputContext::Mempool { replacing, .. } => {
                if let Some(by) = self.mempool_spender(op)? {
                    if Some(by) != *replacing {
                        return Err(Reject::DoubleSpend(i, *op, by).into());
                    }
                }
                if let Some(e) = self.utxo_entry(op)? {
                    return Ok(e);
                }
                if let Some((parent, _)) = self.mempool_tx(&op.txid)? {
                    let out = parent
                        .outputs
                        .get(op.vout as usize)
                        .ok_or_else(|| missing(false))?;
                    return Ok(UtxoEntry {
                        amount: out.amount,
                        address: out.address,
                        height: u64::MAX,
                        coinbase: false,
                    });
                }
                Err(missing(self.tx_known(&op.txid)?))
            }
        }
    }

    /// The unspent output `op` on the best chain, if any.
    pub fn utxo_entry(&self, op: &OutPoint) -> StoreResult<Option<UtxoEntry>> {
        match self.utxo.get(&op.key())? {
            None => Ok(None),
            Some(v) => UtxoEntry::decode(v.value())
                .map(Some)
                .ok_or_else(|| StoreError::corrupt("utxo row")),
        }
    }

    /// A mempool transaction and its fee.
    pub fn mempool_tx(&self, txid: &Hash256) -> StoreResult<Option<(Transaction, u64)>> {
        match self.mempool.get(txid.0.as_slice())? {
            None => Ok(None),
            Some(v) => read::parse_mempool_row(v.value()).map(Some),
        }
    }

    /// The mempool transaction spending `op`, if any. An empty mempool answers without a
    /// lookup: a block that took the whole mempool asks this for each of its inputs.
    pub fn mempool_spender(&self, op: &OutPoint) -> StoreResult<Option<Hash256>> {
        if self.meta.mempool_count == 0 {
            return Ok(None);
        }
        Ok(self
            .mempool_spends
            .get(op.key().as_slice())?
            .and_then(|v| v.value().try_into().ok().map(Hash256)))
    }

    /// Whether the transaction is confirmed on the best chain.
    pub fn tx_known(&self, txid: &Hash256) -> StoreResult<bool> {
        let indexes = self.indexes.as_ref();
        let indexes = indexes.ok_or_else(|| StoreError::corrupt("the indexes are away"))?;
        Ok(indexes.tx_index.get(&txid.0)?.is_some())
    }

    /// Validates every transaction of `block` (whose txids are `txids`) in order against
    /// the chain at its parent; returns the outputs its inputs spend, in input order
    /// over the block. The block must extend the current tip.
    pub fn check_block_txs(
        &self,
        block: &Block,
        txids: &[Hash256],
        height: u64,
        params: &ChainParams,
    ) -> Result<Vec<UtxoEntry>, EngineError> {
        let mut spent_entries = Vec::with_capacity(block.txs.len());
        assert_eq!(txids.len(), block.txs.len(), "one txid per transaction");
        let outputs = block.txs.iter().map(|tx| tx.outputs.len()).sum();
        let inputs = block.txs.iter().map(|tx| tx.spends().len()).sum();
        let mut created = BlockOutputs::with_capacity_and_hasher(outputs, Default::default());
        let mut spent = BlockSpends::with_capacity_and_hasher(inputs, Default::default());
        let mut fees: u64 = 0;
        for (tx, txid) in block.txs.iter().zip(txids).skip(1) {
            let ctx = InputContext::Block {
                height,
                created: &created,
                spent: &spent,
            };
            let fee = self.check_inputs_noting(tx, &ctx, params, &mut |e| spent_entries.push(e))?;
            fees = fees.checked_add(fee).ok_or(Reject::InputOverflow)?;
            spent.extend(tx.spends().iter().map(|i| i.prevout));
            for (vout, out) in tx.outputs.iter().enumerate() {
                created.insert(
                    OutPoint {
                        txid: *txid,
                        vout: vout as u32,
                    },
                    UtxoEntry {
                        amount: out.amount,
                        address: out.address,
                        height,
                        coinbase: false,
                    },
                );
            }
        }
        check_coinbase(&block.txs[0], height, fees, params)?;
        Ok(spent_entries)
    }

    /// Header rules that need the parent: bits, median time past, future limit.
    pub fn check_header_context(
        &self,
        block: &Block,
        parent: &BlockMeta,
        params: &ChainParams,
        now: u64,
    ) -> Result<(), EngineError> {
        let header = &block.header;
        let expected = self.required_bits_after(parent, params)?;
        if header.bits != expected {
            return Err(Reject::BadBits {
                expected,
                got: header.bits,
            }
            .into());
        }
        let median = self.median_time_past(parent)?;
        if header.time <= median {
            return Err(Reject::TimeTooOld {
                time: header.time,
                median,
            }
            .into());
        }
        let max = now + params.max_future_secs as u64;
        if header.time as u64 > max {
            return Err(Reject::TimeTooNew {
                time: header.time,
                max,
            }
            .into());
        }
        Ok(())
    }

    /// The bits a child of `parent` must carry.
    pub fn required_bits_after(
        &self,
        parent: &BlockMeta,
        params: &ChainParams,
    ) -> StoreResult<CompactTarget> {
        ancestor_bits(&self.block_index, parent, params)
    }

    pub fn median_time_past(&self, parent: &BlockMeta) -> StoreResult<u32> {
        median_after(&self.block_index, parent)
    }
}

/// Coinbase rules: height matches, pays at most reward + fees.
pub fn check_coinbase(
    coinbase: &Transaction,
    height: u64,
    fees: u64,
    params: &ChainParams,
) -> Result<(), Reject> {
    if let TxInputs::Coinbase { height: h, .. } = &coinbase.inputs {
        if *h != height {
            return Err(Reject::BadCoinbaseHeight {
                expected: height,
                got: *h,
            });
        }
    }
    let allowed = params.block_reward(height).saturating_add(fees);
    let paid = coinbase.output_total().ok_or(Reject::OutputOverflow)?;
    if paid > allowed {
        return Err(Reject::CoinbaseTooLarge { paid, allowed });
    }
    Ok(())
}

/// Walks `steps` parents back from `from`.
pub fn ancestor(
    index: &impl ReadableTable<&'static [u8], &'static [u8]>,
    from: &BlockMeta,
    steps: u64,
) -> StoreResult<BlockMeta> {
    let mut cur = *from;
    for _ in 0..steps {
        if cur.height == 0 {
            break;
        }
        cur = read::block_meta(index, &cur.prev)?
            .ok_or_else(|| super::StoreError::corrupt(format!("ancestor {} missing", cur.prev)))?;
    }
    Ok(cur)
}

pub fn ancestor_bits(
    index: &impl ReadableTable<&'static [u8], &'static [u8]>,
    parent: &BlockMeta,
    params: &ChainParams,
) -> StoreResult<CompactTarget> {
    let height = parent.height + 1;
    // How far back the rule looks: the parent's own parent for the per-block rule, the
    // start of the window at a window retarget, nothing otherwise.
    let back = match params.retarget_interval {
        0 => None,
        1 => Some(1),
        n if height.is_multiple_of(n) => Some(n - 1),
        _ => None,
    };
    let interval_start_time = match back {
        Some(steps) if height > 1 => ancestor(index, parent, steps)?.time,
        _ => 0,
    };
    Ok(required_bits(
        params,
        &RetargetInput {
            height,
            parent_bits: parent.bits,
            parent_time: parent.time,
            interval_start_time,
        },
    ))
}

pub fn median_after(
    index: &impl ReadableTable<&'static [u8], &'static [u8]>,
    parent: &BlockMeta,
) -> StoreResult<u32> {
    let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
    let mut cur = *parent;
    loop {
        times.push(cur.time);
        if times.len() == MEDIAN_TIME_SPAN || cur.height == 0 {
            break;
        }
        cur = read::block_meta(index, &cur.prev)?
            .ok_or_else(|| super::StoreError::corrupt(format!("ancestor {} missing", cur.prev)))?;
    }
    Ok(median_time_past(&mut times))
}
