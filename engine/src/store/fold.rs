//! Folding events into projections. Each function here is the *only* writer of the
//! projection rows it touches, and it runs in the same write transaction that appended
//! the event, so replaying the log through [`Tables::fold`] rebuilds exactly the same
//! state. Folding trusts the log (it holds validated facts): it checks consistency
//! (a spent output must exist) but never signatures or consensus rules.

use super::codec::*;
use super::indexes::{BlockChange, IndexJob};
use super::{read, StoreError, StoreResult, Tables};
use crate::address::Address;
use crate::block::Block;
use crate::encoding::{Decode, Encode};
use crate::events::Event;
use crate::hash::{sha256, Hash256};
use crate::notify::{unique_addresses, AddressSet, Notification, NotificationKind};
use crate::tx::{OutPoint, Transaction};
use primitive_types::U256;
use std::sync::Arc;

/// A block's transactions leave the mempool by a scan of its tables once the block holds
/// at least a quarter as many transactions as the mempool: a scan visits every row, so
/// past that share it costs less than the point deletes (about five B-tree descents per
/// transaction) it replaces.
const MEMPOOL_SCAN_SHARE: u64 = 4;

pub(crate) fn utxo_digest(key: &[u8; 36], entry: &UtxoEntry) -> U256 {
    let mut buf = [0u8; 36 + 37];
    buf[..36].copy_from_slice(key);
    buf[36..].copy_from_slice(&entry.digest_bytes());
    U256::from_big_endian(&sha256(&buf))
}

/// The UTXO-set hash's term for a `utxo` row (key and stored value).
pub(crate) fn utxo_row_digest(key: &[u8], value: &[u8]) -> U256 {
    match (<[u8; 36]>::try_from(key), UtxoEntry::decode(value)) {
        (Ok(key), Some(entry)) => utxo_digest(&key, &entry),
        // Not a row the fold writes (a damaged one): digested all the same, so `verify`
        // reports the mismatch instead of this panicking.
        _ => U256::from_big_endian(&sha256(&[key, value].concat())),
    }
}

impl Tables<'_> {
    /// Folds one event (already in the log at `seq`) into every projection.
    pub fn fold(&mut self, seq: u64, event: &Event) -> StoreResult<()> {
        match event {
            Event::BlockAccepted(block) => self.fold_block_accepted(seq, block)?,
            Event::TipConnected(hash) => self.fold_connect(seq, hash)?,
            Event::TipDisconnected(hash) => self.fold_disconnect(seq, hash)?,
            Event::TxAdmitted(tx) => self.fold_admit(seq, tx)?,
            Event::TxRemoved { txid, reason } => {
                let addresses = self.remove_mempool_entry(txid)?.ok_or_else(|| {
                    StoreError::corrupt(format!("removed tx {txid} is not in the mempool"))
                })?;
                self.note(
                    seq,
                    NotificationKind::TxRemoved {
                        txid: *txid,
                        reason: *reason,
                    },
                    addresses,
                );
            }
            Event::Reset => self.fold_reset(seq)?,
        }
        self.meta.cursor = seq + 1;
        Ok(())
    }

    fn note(&mut self, seq: u64, kind: NotificationKind, addresses: Vec<Address>) {
        if self.collect_notes {
            self.notes.push(Notification {
                seq,
                kind,
                addresses,
            });
        }
    }

    fn fold_block_accepted(&mut self, seq: u64, block: &Arc<Block>) -> StoreResult<()> {
        let hash = block.hash();
        let prev = block.header.prev_hash;
        let (height, parent_work) = if prev == Hash256::ZERO {
            (0, U256::zero())
        } else {
            let parent = read::block_meta(&self.block_index, &prev)?.ok_or_else(|| {
                StoreError::corrupt(format!("parent of stored block {hash} is unknown"))
            })?;
            (parent.height + 1, parent.chainwork)
        };
        let work =
            block.header.bits.work().map_err(|e| {
                StoreError::corrupt(format!("stored block {hash} has bad bits: {e}"))
            })?;
        let meta = BlockMeta {
            hash,
            height,
            chainwork: parent_work.saturating_add(work),
            prev,
            seq,
            time: block.header.time,
            bits: block.header.bits,
            tx_count: block.txs.len() as u32,
            size: block.size() as u32,
            version: block.header.version,
            merkle_root: block.header.merkle_root,
            nonce: block.header.nonce,
        };
        self.block_index
            .insert(hash.0.as_slice(), meta.encode().as_slice())?;
        // Every block is stored off the main chain until a TipConnected says otherwise.
        self.mark_side(&meta, true)?;
        self.blocks.insert(hash, block.clone());
        self.note(
            seq,
            NotificationKind::BlockStored { hash, height },
            Vec::new(),
        );
        Ok(())
    }

    fn fold_connect(&mut self, seq: u64, hash: &Hash256) -> StoreResult<()> {
        let meta = self.meta_of(hash)?;
        if meta.height > 0 && meta.prev != self.meta.tip {
            return Err(StoreError::corrupt(format!(
                "block {hash} connected off the tip"
            )));
        }
        let block = self.block(hash)?;
        let txids = self.txids_of(hash, &block);
        let note_txids = self.collect_notes.then(|| txids.clone());
        let checked = self.spent.remove(hash);
        let (spent, touched) = match checked {
            Some(checked) if self.indexes.is_some() => {
                self.fold_coins_beside_indexes(&block, txids, meta.height, checked)?
            }
            _ => {
                let spent = self.fold_coins(&block, &txids, meta.height)?;
                let change = self.block_change(block, txids, meta.height, spent.clone());
                (spent, self.fold_indexes(IndexJob::Connect(change))?)
            }
        };
        // The outpoints are the block's own inputs: undo keeps only what they spent.
        let undo: Vec<u8> = spent.iter().flat_map(UtxoEntry::encode).collect();
        self.put_undo(hash, &undo)?;
        self.main_chain.insert(meta.height, hash.0.as_slice())?;
        self.mark_side(&meta, false)?;
        self.meta.tip = *hash;
        if let Some(txids) = note_txids {
            let kind = NotificationKind::BlockConnected {
                hash: *hash,
                height: meta.height,
                txids,
            };
            self.note(seq, kind, touched.into_vec());
        }
        Ok(())
    }

    /// A connected block's coins: its inputs' outputs leave the UTXO set, its outputs
    /// join it, its transactions leave the mempool. Returns the outputs spent, in input
    /// order.
    fn fold_coins(
        &mut self,
        block: &Block,
        txids: &[Hash256],
        height: u64,
    ) -> StoreResult<Vec<UtxoEntry>> {
        let mut spent = Vec::new();
        for (tx, txid) in block.txs.iter().zip(txids) {
            for input in tx.spends() {
                spent.push(self.remove_utxo(&input.prevout.key())?);
            }
            for (vout, out) in tx.outputs.iter().enumerate() {
                let entry = UtxoEntry {
                    amount: out.amount,
                    address: out.address,
                    height,
                    coinbase: tx.is_coinbase(),
                };
                let op = OutPoint {
                    txid: *txid,
                    vout: vout as u32,
                };
                self.add_utxo(&op.key(), &entry)?;
            }
        }
        self.remove_mined(txids)?;
        Ok(spent)
    }

    /// [`Tables::fold_coins`] on this thread while a second folds the index rows from
    /// `checked`, the outputs the writer's input checks found the block spending (see
    /// [`Tables::hand_spent`]). Why: the index rows need only those, and the two halves
    /// write disjoint tables at about the same cost, so a block no longer waits for one
    /// and then the other. The fold still trusts nothing handed to it: the outputs it
    /// spends must be exactly those, or the transaction fails.
    fn fold_coins_beside_indexes(
        &mut self,
        block: &Arc<Block>,
        txids: Vec<Hash256>,
        height: u64,
        checked: Vec<UtxoEntry>,
    ) -> StoreResult<(Vec<UtxoEntry>, AddressSet)> {
        let mut indexes = self.indexes.take().expect("the caller saw them here");
        let change = self.block_change(block.clone(), txids.clone(), height, checked.clone());
        let (indexes, touched, spent) = std::thread::scope(|s| {
            let job = s.spawn(move || {
                let touched = indexes.apply(IndexJob::Connect(change));
                (indexes, touched)
            });
            let spent = self.fold_coins(block, &txids, height);
            let (indexes, touched) = job.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            (indexes, touched, spent)
        });
        self.indexes = Some(indexes);
        let (spent, touched) = (spent?, touched?);
        if spent != checked {
            return Err(StoreError::corrupt(format!(
                "block {} spent other outputs than its checks found",
                block.hash()
            )));
        }
        Ok((spent, touched))
    }

    fn fold_disconnect(&mut self, seq: u64, hash: &Hash256) -> StoreResult<()> {
        if *hash != self.meta.tip {
            return Err(StoreError::corrupt(format!(
                "block {hash} disconnected but is not the tip"
            )));
        }
        let meta = self.meta_of(hash)?;
        let block = self.block(hash)?;
        let txids = block.txids();
        let spent = parse_undo(&self.take_undo(hash)?)?;
        let mut spent_end = spent.len();
        for (tx, txid) in block.txs.iter().zip(&txids).rev() {
            for vout in 0..tx.outputs.len() {
                let op = OutPoint {
                    txid: *txid,
                    vout: vout as u32,
                };
                self.remove_utxo(&op.key())?;
            }
            let start = spent_end.checked_sub(tx.spends().len()).ok_or_else(|| {
                StoreError::corrupt(format!("undo data of block {hash} is short"))
            })?;
            let restored = tx.spends().iter().zip(&spent[start..spent_end]);
            for (input, entry) in restored.rev() {
                self.add_utxo(&input.prevout.key(), entry)?;
            }
            spent_end = start;
        }
        self.main_chain.remove(meta.height)?;
        self.mark_side(&meta, true)?;
        self.meta.tip = meta.prev;
        let change = self.block_change(block, txids, meta.height, spent);
        let touched = self.fold_indexes(IndexJob::Disconnect(change))?;
        self.note(
            seq,
            NotificationKind::BlockDisconnected {
                hash: *hash,
                height: meta.height,
            },
            touched.into_vec(),
        );
        Ok(())
    }

    /// What the indexes need of a block that joins or leaves the main chain.
    fn block_change(
        &self,
        block: Arc<Block>,
        txids: Vec<Hash256>,
        height: u64,
        spent: Vec<UtxoEntry>,
    ) -> BlockChange {
        BlockChange {
            block,
            txids,
            height,
            spent,
            note_addresses: self.collect_notes,
        }
    }

    fn fold_admit(&mut self, seq: u64, tx: &Transaction) -> StoreResult<()> {
        let txid = tx.txid();
        let mut input_total: u64 = 0;
        let mut spenders = Vec::new();
        for input in tx.spends() {
            let (amount, address) = self.spendable_output(&input.prevout)?.ok_or_else(|| {
                StoreError::corrupt(format!("admitted tx {txid} spends an unknown output"))
            })?;
            input_total = input_total
                .checked_add(amount)
                .ok_or_else(|| StoreError::corrupt("input overflow in the log"))?;
            spenders.push(address);
        }
        let fee = input_total
            .checked_sub(tx.output_total().unwrap_or(u64::MAX))
            .ok_or_else(|| {
                StoreError::corrupt(format!("admitted tx {txid} spends more than its inputs"))
            })?;
        let bytes = tx.encode();
        self.mempool.put(
            txid.0.as_slice(),
            mempool_value(seq, fee, &bytes).as_slice(),
        )?;
        for input in tx.spends() {
            self.mempool_spends
                .put(input.prevout.key().as_slice(), txid.0.as_slice())?;
        }
        let rate = fee_rate_micro(fee, bytes.len());
        self.mempool_rate
            .put(rate_key(rate, &txid).as_slice(), ())?;
        let addresses = tx_addresses(spenders, tx);
        for a in &addresses {
            self.mempool_addr
                .put(address_txid_key(a, &txid).as_slice(), ())?;
        }
        self.meta.mempool_count += 1;
        self.note(seq, NotificationKind::TxAdded { txid, fee }, addresses);
        Ok(())
    }

    fn fold_reset(&mut self, seq: u64) -> StoreResult<()> {
        self.block_index.retain(|_, _| false)?;
        self.main_chain.retain(|_, _| false)?;
        self.utxo.clear()?;
        self.fold_indexes(IndexJob::Clear)?;
        self.undo.retain(|_, _| false)?;
        self.mempool.clear()?;
        self.mempool_spends.clear()?;
        self.mempool_rate.clear()?;
        self.mempool_addr.clear()?;
        self.side_blocks.retain(|_, _| false)?;
        self.blocks.clear();
        self.txids.clear();
        self.meta = super::ProjMeta {
            cursor: seq,
            ..Default::default()
        };
        self.note(seq, NotificationKind::Reset, Vec::new());
        Ok(())
    }

    /// Adds a block to, or removes it from, the side-block rows.
    fn mark_side(&mut self, meta: &BlockMeta, side: bool) -> StoreResult<()> {
        let key = side_block_key(&meta.chainwork, &meta.hash);
        if side {
            self.side_blocks
                .insert(key.as_slice(), u64::from(meta.size))?;
        } else {
            self.side_blocks.remove(key.as_slice())?;
        }
        Ok(())
    }

    fn meta_of(&self, hash: &Hash256) -> StoreResult<BlockMeta> {
        read::block_meta(&self.block_index, hash)?
            .ok_or_else(|| StoreError::corrupt(format!("block {hash} is not in the index")))
    }

    fn add_utxo(&mut self, key: &[u8; 36], entry: &UtxoEntry) -> StoreResult<()> {
        if self.utxo.insert(key, &entry.encode())?.is_some() {
            return Err(StoreError::corrupt("an output was created twice"));
        }
        if !self.utxo.defers_digest() {
            self.meta.utxo_hash = self
                .meta
                .utxo_hash
                .overflowing_add(utxo_digest(key, entry))
                .0;
        }
        self.meta.utxo_count += 1;
        Ok(())
    }

    fn remove_utxo(&mut self, key: &[u8; 36]) -> StoreResult<UtxoEntry> {
        let entry = self
            .utxo
            .remove(key)?
            .and_then(|v| UtxoEntry::decode(v.value()))
            .ok_or_else(|| {
                let op = OutPoint::from_key(key).expect("36-byte key");
                StoreError::corrupt(format!("output {}:{} is not unspent", op.txid, op.vout))
            })?;
        if !self.utxo.defers_digest() {
            self.meta.utxo_hash = self
                .meta
                .utxo_hash
                .overflowing_sub(utxo_digest(key, &entry))
                .0;
        }
        self.meta.utxo_count -= 1;
        Ok(entry)
    }

    /// Writes a block's undo data in rows of [`UNDO_ROW_ENTRIES`] (one row, empty, for a
    /// block that spends nothing, so that every connected block has undo data).
    fn put_undo(&mut self, block: &Hash256, undo: &[u8]) -> StoreResult<()> {
        let row_bytes = UNDO_ROW_ENTRIES * UtxoEntry::LEN;
        if undo.is_empty() {
            self.undo.insert(undo_key(block, 0).as_slice(), undo)?;
        }
        for (row, part) in undo.chunks(row_bytes).enumerate() {
            self.undo
                .insert(undo_key(block, row as u32).as_slice(), part)?;
        }
        Ok(())
    }

    /// Removes a block's undo rows and returns their data, in order.
    fn take_undo(&mut self, block: &Hash256) -> StoreResult<Vec<u8>> {
        let (first, last) = (undo_key(block, 0), undo_key(block, u32::MAX));
        let mut undo = Vec::new();
        let mut rows = 0u32;
        for row in self
            .undo
            .extract_from_if(first.as_slice()..=last.as_slice(), |_, _| true)?
        {
            let (key, value) = row?;
            if key.value() != undo_key(block, rows).as_slice() {
                return Err(StoreError::corrupt(format!(
                    "undo data of block {block} has a gap"
                )));
            }
            undo.extend_from_slice(value.value());
            rows += 1;
        }
        if rows == 0 {
            return Err(StoreError::corrupt(format!(
                "no undo data for block {block}"
            )));
        }
        Ok(undo)
    }

    /// Amount and address of an output that is unspent on chain or created by a
    /// mempool transaction (whether or not something in the mempool spends it).
    pub fn spendable_output(&self, op: &OutPoint) -> StoreResult<Option<(u64, Address)>> {
        if let Some(v) = self.utxo.get(&op.key())? {
            let e = UtxoEntry::decode(v.value()).ok_or_else(|| StoreError::corrupt("utxo row"))?;
            return Ok(Some((e.amount, e.address)));
        }
        Ok(self.mempool_tx(&op.txid)?.and_then(|(tx, _)| {
            tx.outputs
                .get(op.vout as usize)
                .map(|o| (o.amount, o.address))
        }))
    }

    /// Removes a connected block's transactions from the mempool (those it holds): one
    /// point delete per row while the block is small next to the mempool, else one
    /// scan of each mempool table ([`Staged::retain`]). Why: a block of transactions
    /// relayed first takes most of the mempool, and deleting its ~5 rows per transaction
    /// one at a time was a third of such a block's connect. A replay stages the mempool
    /// in memory, where point deletes are cheap, so it keeps to them; either way the
    /// same rows go.
    ///
    /// [`Staged::retain`]: super::staged::Staged::retain
    fn remove_mined(&mut self, txids: &[Hash256]) -> StoreResult<()> {
        let mempool = self.meta.mempool_count;
        // Every block asks; with no mempool (a sync, a replay of mined blocks) the answer
        // needs no lookup. The count is checked by `verify`.
        if mempool == 0 {
            return Ok(());
        }
        let small = (txids.len() as u64).saturating_mul(MEMPOOL_SCAN_SHARE) < mempool;
        if small || self.mempool.is_staged() {
            for txid in txids {
                self.remove_mempool_entry(txid)?;
            }
            return Ok(());
        }
        let block: foldhash::HashSet<&[u8]> = txids.iter().map(|t| t.0.as_slice()).collect();
        let mut removed = foldhash::HashSet::<[u8; 32]>::default();
        self.mempool.retain(|txid, _| {
            let mined = block.contains(txid);
            if let (true, Ok(txid)) = (mined, <[u8; 32]>::try_from(txid)) {
                removed.insert(txid);
            }
            !mined
        })?;
        if removed.is_empty() {
            return Ok(());
        }
        if removed.len() as u64 == mempool
            && redb::ReadableTableMetadata::is_empty(self.mempool.flushed()?)?
        {
            // The block took the whole mempool (the table says so, not only the count):
            // every index row goes, none need asking.
            self.mempool_spends.clear()?;
            self.mempool_rate.clear()?;
            self.mempool_addr.clear()?;
            self.meta.mempool_count = 0;
            return Ok(());
        }
        // Each index row names its transaction: the spends row in its value, the rate and
        // address rows in their key's last 32 bytes (see `codec`).
        let gone = |txid: Option<&[u8]>| txid.is_some_and(|t| removed.contains(t));
        self.mempool_spends.retain(|_, txid| !gone(Some(txid)))?;
        self.mempool_rate.retain(|key, _| !gone(key.get(8..)))?;
        self.mempool_addr.retain(|key, _| !gone(key.get(20..)))?;
        self.meta.mempool_count = mempool
            .checked_sub(removed.len() as u64)
            .ok_or_else(|| StoreError::corrupt("the mempool count is below its rows"))?;
        Ok(())
    }

    /// Removes a transaction and its index rows from the mempool; returns the addresses
    /// it touched, or None if it was not there.
    pub fn remove_mempool_entry(&mut self, txid: &Hash256) -> StoreResult<Option<Vec<Address>>> {
        if self.meta.mempool_count == 0 {
            return Ok(None);
        }
        let Some(raw) = self
            .mempool
            .remove(txid.0.as_slice())?
            .map(|v| v.value().to_vec())
        else {
            return Ok(None);
        };
        let (_, fee, bytes) =
            decode_mempool_value(&raw).ok_or_else(|| StoreError::corrupt("mempool row"))?;
        let tx = Transaction::decode(bytes)
            .map_err(|e| StoreError::corrupt(format!("mempool tx: {e}")))?;
        let mut spenders = Vec::with_capacity(tx.spends().len());
        for input in tx.spends() {
            self.mempool_spends.delete(input.prevout.key().as_slice())?;
            spenders.push(Address::from_public_key(&input.public_key));
        }
        let addresses = tx_addresses(spenders, &tx);
        for a in &addresses {
            self.mempool_addr
                .delete(address_txid_key(a, txid).as_slice())?;
        }
        let rate = fee_rate_micro(fee, bytes.len());
        self.mempool_rate.delete(rate_key(rate, txid).as_slice())?;
        self.meta.mempool_count -= 1;
        Ok(Some(addresses))
    }
}

/// The addresses a transaction touches, once each: those it spends from (`spenders`, in
/// input order), then those it pays.
fn tx_addresses(spenders: Vec<Address>, tx: &Transaction) -> Vec<Address> {
    unique_addresses(
        spenders
            .into_iter()
            .chain(tx.outputs.iter().map(|o| o.address)),
    )
}

/// A block's undo row: the outputs its inputs spent, in input order (the outpoints are
/// the inputs' own, so they are not stored again).
fn parse_undo(bytes: &[u8]) -> StoreResult<Vec<UtxoEntry>> {
    if !bytes.len().is_multiple_of(UtxoEntry::LEN) {
        return Err(StoreError::corrupt("undo data has a partial row"));
    }
    bytes
        .chunks_exact(UtxoEntry::LEN)
        .map(|row| UtxoEntry::decode(row).ok_or_else(|| StoreError::corrupt("undo row")))
        .collect()
}
