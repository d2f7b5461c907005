//! The address and transaction indexes (`addr_utxo`, `balance`, `tx_index`,
//! `addr_history`): what a connected or disconnected block changes in them follows from
//! its transactions, their txids and the outputs their inputs spent, and from nothing
//! else the fold keeps. So the fold of a block is cut in two: the coin part
//! (`fold.rs`: the UTXO set, undo data, the chain) works out what was spent and hands an
//! [`IndexJob`] to [`Indexes::apply`].
//!
//! Why: the writer folds both parts in turn, in one thread; a replay folds the indexes
//! on a second thread, one job behind the coin part, because they are most of a
//! replay's staged rows and the fold thread was the whole of a rebuild's time on a
//! two-core machine while the other core idled (BENCHMARKS.md, session 11). Each table
//! still sees the same changes in the same order, so a replay rebuilds exactly what the
//! writer folded.

use super::codec::*;
use super::staged::{Staged, WriteBack};
use super::{Fixed, StoreError, StoreResult};
use super::{HISTORY_KEY_LEN, HISTORY_VALUE_LEN, TXID_LEN, TX_POSITION_LEN};
use super::{OUTPOINT_LEN, UTXO_LEN};
use crate::address::Address;
use crate::block::Block;
use crate::hash::Hash256;
use crate::notify::AddressSet;
use crate::tx::OutPoint;
use std::sync::Arc;

/// The UTXO set's table as the fold stages it.
pub(super) type UtxoTable<'t> = Staged<'t, Fixed<OUTPOINT_LEN>, Fixed<UTXO_LEN>>;

/// A block's change to the indexes, in log order.
pub(crate) enum IndexJob {
    /// `block` joined the main chain at `height`; `spent` holds the outputs its inputs
    /// spent, in input order over the whole block.
    Connect(BlockChange),
    /// `block` left the main chain; `spent` as for [`IndexJob::Connect`] (its undo data).
    Disconnect(BlockChange),
    /// A reset: every index row goes.
    Clear,
}

/// What the indexes need to know of a block connected or disconnected.
pub(crate) struct BlockChange {
    pub block: Arc<Block>,
    pub txids: Vec<Hash256>,
    pub height: u64,
    pub spent: Vec<UtxoEntry>,
    /// Whether to answer the addresses touched (a replay publishes nothing).
    pub note_addresses: bool,
}

/// Per-transaction balance changes, summed per address in first-seen order.
type Deltas = Vec<(Address, i128)>;

fn add_delta(deltas: &mut Deltas, address: Address, amount: i128) {
    match deltas.iter_mut().find(|(a, _)| *a == address) {
        Some((_, d)) => *d += amount,
        None => deltas.push((address, amount)),
    }
}

/// Balance changes summed per address over a whole block, written once at its end.
#[derive(Default)]
struct BalanceChanges(foldhash::HashMap<Address, i128>);

impl BalanceChanges {
    fn add(&mut self, address: Address, delta: i128) {
        *self.0.entry(address).or_default() += delta;
    }
}

/// The index tables of one write transaction.
pub(crate) struct Indexes<'t> {
    pub(super) addr_utxo: Staged<'t, Fixed<ADDR_OUTPOINT_LEN>, ()>,
    pub(super) balance: Staged<'t, &'static [u8], u64>,
    pub(super) tx_index: Staged<'t, Fixed<TXID_LEN>, Fixed<TX_POSITION_LEN>>,
    pub(super) addr_history: Staged<'t, Fixed<HISTORY_KEY_LEN>, Fixed<HISTORY_VALUE_LEN>>,
    /// `addr_utxo` is left alone by the jobs, to be written once from the final UTXO
    /// set ([`Indexes::derive_coin_index`]): a rebuild into emptied tables.
    pub(super) coins_deferred: bool,
}

impl Indexes<'_> {
    /// Folds one block's change; returns the addresses it touched (for notifications).
    pub(crate) fn apply(&mut self, job: IndexJob) -> StoreResult<AddressSet> {
        match job {
            IndexJob::Connect(change) => self.connect(&change),
            IndexJob::Disconnect(change) => self.disconnect(&change),
            IndexJob::Clear => {
                self.addr_utxo.clear()?;
                self.balance.clear()?;
                self.tx_index.clear()?;
                self.addr_history.clear()?;
                Ok(AddressSet::default())
            }
        }
    }

    /// From now on the jobs leave `addr_utxo` alone; [`Indexes::derive_coin_index`]
    /// writes it at the end. Why: in a rebuild the coin index is a function of the final
    /// UTXO set alone (one row per unspent output), while folding it change by change
    /// costs a put per output and a delete per input (three changes per transaction in
    /// the 1M-tx rebuild, staged, sorted and settled, against one final row). Only over
    /// emptied, staged tables, where nothing else is in either.
    pub(super) fn defer_coin_index(&mut self, utxo: &UtxoTable<'_>) -> StoreResult<()> {
        if !(utxo.is_staged_and_empty() && self.addr_utxo.is_staged_and_empty()) {
            return Err(StoreError::corrupt(
                "the coin index is derived only over emptied, staged tables",
            ));
        }
        self.coins_deferred = true;
        Ok(())
    }

    /// Writes the deferred coin index from `utxo`, the final UTXO set: one row per
    /// unspent output, keyed by its address (about `rows` of them). Nothing when it was
    /// not deferred.
    pub(super) fn derive_coin_index(
        &mut self,
        utxo: &mut UtxoTable<'_>,
        rows: usize,
    ) -> StoreResult<()> {
        if !std::mem::take(&mut self.coins_deferred) {
            return Ok(());
        }
        let addr_utxo = &mut self.addr_utxo;
        addr_utxo.reserve(rows);
        utxo.for_each_row(|key, value| {
            let outpoint: &[u8; OUTPOINT_LEN] = key
                .try_into()
                .map_err(|_| StoreError::corrupt("utxo key"))?;
            let entry = UtxoEntry::decode(value).ok_or_else(|| StoreError::corrupt("utxo row"))?;
            addr_utxo.put(&address_outpoint_key(&entry.address, outpoint), ())
        })
    }

    pub(super) fn stage(&mut self) -> StoreResult<()> {
        // Only `balance` is read while a replay folds the indexes.
        self.addr_utxo.stage_blind()?;
        self.balance.stage()?;
        self.tx_index.stage_blind()?;
        self.addr_history.stage_blind()
    }

    /// The staged tables, for a write-back ([`staged::write_back_all`]).
    pub(super) fn staged_tables(&mut self) -> [&mut dyn WriteBack; 4] {
        [
            &mut self.addr_utxo,
            &mut self.balance,
            &mut self.tx_index,
            &mut self.addr_history,
        ]
    }

    /// A connected block's rows: the coin index on a second thread while this one writes
    /// the history, transaction and balance rows, when the tables are written through
    /// (the live writer). Why: the two halves touch disjoint tables and cost about the
    /// same (a delete and a put or two per transaction each), and a block whose
    /// signatures the cache answered leaves a core idle while the writer folds. A
    /// replay stages these tables in memory and folds them on its own thread already,
    /// so it keeps to one. Each table sees its changes in the same order either way.
    fn connect(&mut self, change: &BlockChange) -> StoreResult<AddressSet> {
        let Indexes {
            addr_utxo,
            balance,
            tx_index,
            addr_history,
            coins_deferred,
        } = self;
        if addr_utxo.is_staged() {
            if !*coins_deferred {
                connect_coins(addr_utxo, change)?;
            }
            return connect_history(tx_index, addr_history, balance, change);
        }
        std::thread::scope(|s| {
            let coins = s.spawn(|| connect_coins(addr_utxo, change));
            let touched = connect_history(tx_index, addr_history, balance, change);
            let coins = coins
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            coins.and(touched)
        })
    }

    fn disconnect(&mut self, change: &BlockChange) -> StoreResult<AddressSet> {
        let mut spent_end = change.spent.len();
        let mut touched = AddressSet::default();
        let mut balances = BalanceChanges::default();
        let txs = change.block.txs.iter().zip(&change.txids).enumerate();
        for (pos, (tx, txid)) in txs.rev() {
            let mut deltas = Deltas::new();
            for (vout, out) in tx.outputs.iter().enumerate() {
                let op = OutPoint {
                    txid: *txid,
                    vout: vout as u32,
                };
                if !self.coins_deferred {
                    self.addr_utxo
                        .delete(&address_outpoint_key(&out.address, &op.key()))?;
                }
                balances.add(out.address, -(out.amount as i128));
                add_delta(&mut deltas, out.address, out.amount as i128);
            }
            let start = spent_end
                .checked_sub(tx.spends().len())
                .ok_or_else(|| short(change))?;
            let restored = tx.spends().iter().zip(&change.spent[start..spent_end]);
            for (input, entry) in restored.rev() {
                if !self.coins_deferred {
                    let key = address_outpoint_key(&entry.address, &input.prevout.key());
                    self.addr_utxo.put(&key, ())?;
                }
                balances.add(entry.address, entry.amount as i128);
                add_delta(&mut deltas, entry.address, -(entry.amount as i128));
            }
            spent_end = start;
            self.tx_index.delete(&txid.0)?;
            for (address, _) in &deltas {
                let key = history_key(address, change.height, pos as u32);
                self.addr_history.delete(&key)?;
                if change.note_addresses {
                    touched.insert(*address);
                }
            }
        }
        apply_balances(&mut self.balance, balances)?;
        Ok(touched)
    }
}

/// `addr_utxo` for a connected block: its inputs' rows go, its outputs' come.
fn connect_coins(
    addr_utxo: &mut Staged<'_, Fixed<ADDR_OUTPOINT_LEN>, ()>,
    change: &BlockChange,
) -> StoreResult<()> {
    let mut spent = change.spent.iter();
    for (tx, txid) in change.block.txs.iter().zip(&change.txids) {
        for input in tx.spends() {
            let entry = spent.next().ok_or_else(|| short(change))?;
            addr_utxo.delete(&address_outpoint_key(&entry.address, &input.prevout.key()))?;
        }
        for (vout, out) in tx.outputs.iter().enumerate() {
            let op = OutPoint {
                txid: *txid,
                vout: vout as u32,
            };
            addr_utxo.put(&address_outpoint_key(&out.address, &op.key()), ())?;
        }
    }
    Ok(())
}

/// `tx_index`, `addr_history` and `balance` for a connected block; returns the
/// addresses it touched (when the change asks for them).
fn connect_history(
    tx_index: &mut Staged<'_, Fixed<TXID_LEN>, Fixed<TX_POSITION_LEN>>,
    addr_history: &mut Staged<'_, Fixed<HISTORY_KEY_LEN>, Fixed<HISTORY_VALUE_LEN>>,
    balance: &mut Staged<'_, &'static [u8], u64>,
    change: &BlockChange,
) -> StoreResult<AddressSet> {
    let mut spent = change.spent.iter();
    let mut touched = AddressSet::default();
    let mut balances = BalanceChanges::default();
    for (pos, (tx, txid)) in change.block.txs.iter().zip(&change.txids).enumerate() {
        let mut deltas = Deltas::new();
        for _ in tx.spends() {
            let entry = spent.next().ok_or_else(|| short(change))?;
            balances.add(entry.address, -(entry.amount as i128));
            add_delta(&mut deltas, entry.address, -(entry.amount as i128));
        }
        for out in &tx.outputs {
            balances.add(out.address, out.amount as i128);
            add_delta(&mut deltas, out.address, out.amount as i128);
        }
        let at = TxPosition {
            height: change.height,
            position: pos as u32,
        };
        tx_index.put(&txid.0, &at.encode())?;
        for (address, delta) in &deltas {
            let key = history_key(address, change.height, pos as u32);
            let d = (*delta).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
            addr_history.put(&key, &history_value(txid, d))?;
            if change.note_addresses {
                touched.insert(*address);
            }
        }
    }
    apply_balances(balance, balances)?;
    Ok(touched)
}

/// Writes a block's summed balance changes: one read and one write per address,
/// however many of its outputs the block created or spent.
fn apply_balances(
    balance: &mut Staged<'_, &'static [u8], u64>,
    balances: BalanceChanges,
) -> StoreResult<()> {
    for (address, delta) in balances.0 {
        let a = address.0;
        let old = balance.get(a.as_slice())?.map(|v| v.value()).unwrap_or(0);
        let new = u64::try_from(old as i128 + delta)
            .map_err(|_| StoreError::corrupt("balance out of range"))?;
        if new == 0 {
            balance.delete(a.as_slice())?;
        } else {
            balance.put(a.as_slice(), new)?;
        }
    }
    Ok(())
}

fn short(change: &BlockChange) -> StoreError {
    let hash = change.block.hash();
    StoreError::corrupt(format!("undo data of block {hash} is short"))
}
