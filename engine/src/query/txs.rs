//! Reads of transactions: confirmed ones through the tx index, unconfirmed ones in the mempool.

use super::*;

/// The amount of the output `op` names, wherever it is: unspent, paid by a mempool
/// transaction, or paid by a best-chain transaction (spent or not). `None` when none of
/// these holds it (a funding transaction that left the mempool unconfirmed).
pub(super) fn output_amount(s: &Snapshot, op: &OutPoint) -> Result<Option<u64>, EngineError> {
    if let Some(e) = s.utxo(op)? {
        return Ok(Some(e.amount));
    }
    let vout = op.vout as usize;
    if let Some((tx, _)) = read::mempool_tx(&s.table(MEMPOOL)?, &op.txid)? {
        return Ok(tx.outputs.get(vout).map(|o| o.amount));
    }
    let Some(loc) = s.tx_location(&op.txid)? else {
        return Ok(None);
    };
    let Some(m) = s.block_meta(&loc.block)? else {
        return Ok(None);
    };
    let block = s.block(&m)?;
    Ok(block
        .txs
        .get(loc.position as usize)
        .and_then(|tx| tx.outputs.get(vout))
        .map(|o| o.amount))
}

/// What `tx` paid in fees: inputs' amounts (found by [`output_amount`]) less outputs.
pub(super) fn fee_paid(s: &Snapshot, tx: &Transaction) -> Result<Option<u64>, EngineError> {
    let mut total = 0u64;
    for i in tx.spends() {
        let Some(a) = output_amount(s, &i.prevout)? else {
            return Ok(None);
        };
        let Some(t) = total.checked_add(a) else {
            return Ok(None);
        };
        total = t;
    }
    Ok(tx.output_total().and_then(|out| total.checked_sub(out)))
}

impl Engine {
    /// A transaction from the best chain or the mempool, with its merkle proof.
    pub fn transaction(&self, txid: &Hash256) -> Result<Option<TxInfo>, EngineError> {
        let s = self.snapshot()?;
        if let Some(loc) = s.tx_location(txid)? {
            return self.confirmed_tx(&s, txid, loc).map(Some);
        }
        let Some((tx, fee)) = read::mempool_tx(&s.table(MEMPOOL)?, txid)? else {
            return Ok(None);
        };
        let inputs = tx
            .spends()
            .iter()
            .map(|i| Ok(input_info(i, output_amount(&s, &i.prevout)?)))
            .collect::<Result<_, EngineError>>()?;
        Ok(Some(TxInfo {
            txid: *txid,
            coinbase: false,
            inputs,
            fee: Some(fee),
            size: tx.encode().len(),
            tx,
            block_hash: None,
            height: None,
            position: None,
            confirmations: 0,
            in_mempool: true,
            merkle_proof: None,
        }))
    }

    pub(super) fn confirmed_tx(
        &self,
        s: &Snapshot,
        txid: &Hash256,
        loc: TxLocation,
    ) -> Result<TxInfo, EngineError> {
        let m = s
            .block_meta(&loc.block)?
            .ok_or_else(|| StoreError::corrupt("tx block missing"))?;
        let block = s.block(&m)?;
        let pos = loc.position as usize;
        let tx = block
            .txs
            .get(pos)
            .cloned()
            .ok_or_else(|| StoreError::corrupt("tx position"))?;
        let skip: usize = block.txs[..pos].iter().map(|t| t.spends().len()).sum();
        let amounts = spent_amounts(&s.table(UNDO)?, &loc.block, skip, tx.spends().len())?;
        let inputs: Vec<InputInfo> = tx
            .spends()
            .iter()
            .zip(&amounts)
            .map(|(i, a)| input_info(i, *a))
            .collect();
        let fee = if tx.is_coinbase() {
            None
        } else {
            amounts
                .iter()
                .try_fold(0u64, |acc, a| acc.checked_add((*a)?))
                .and_then(|total| total.checked_sub(tx.output_total()?))
        };
        let tip = s.tip()?;
        Ok(TxInfo {
            txid: *txid,
            coinbase: tx.is_coinbase(),
            inputs,
            fee,
            size: tx.encode().len(),
            block_hash: Some(loc.block),
            height: Some(loc.height),
            position: Some(loc.position),
            confirmations: tip.height - loc.height + 1,
            in_mempool: false,
            merkle_proof: MerkleProof::build(&block.txids(), pos),
            tx,
        })
    }

    /// Mempool transactions, highest fee rate first.
    pub fn mempool(&self, limit: usize) -> Result<Vec<MempoolEntry>, EngineError> {
        let s = self.snapshot()?;
        let mut out = Vec::new();
        for row in s.table(MEMPOOL)?.iter()? {
            let (k, v) = row?;
            let (seq, fee, bytes) = decode_mempool_value(v.value())
                .ok_or_else(|| StoreError::corrupt("mempool row"))?;
            out.push(MempoolEntry {
                txid: Hash256(
                    k.value()
                        .try_into()
                        .map_err(|_| StoreError::corrupt("mempool key"))?,
                ),
                fee,
                size: bytes.len(),
                fee_rate: (fee as u128 * 1000 / bytes.len().max(1) as u128) as u64,
                seq,
                time: 0,
            });
        }
        out.sort_by(|a, b| b.fee_rate.cmp(&a.fee_rate).then(a.seq.cmp(&b.seq)));
        out.truncate(limit);
        // The admission time is the time of the log record that admitted it.
        let log = s.table(LOG)?;
        let chunks = s.log_chunks()?;
        for e in &mut out {
            if let Some(rec) = logtable::get(&log, chunks.as_ref(), e.seq)? {
                e.time = Record::time_of_bytes(&rec);
            }
        }
        Ok(out)
    }
}

/// The amounts of `n` outputs a block spent, from its `skip`-th spent output on, read
/// from only the undo rows that hold them (`None` for any missing).
fn spent_amounts(
    undo: &impl ReadableTable<Bytes, Bytes>,
    block: &Hash256,
    skip: usize,
    n: usize,
) -> Result<Vec<Option<u64>>, EngineError> {
    let mut amounts = Vec::with_capacity(n);
    let mut row: Option<(usize, Vec<u8>)> = None;
    for entry in skip..skip + n {
        let index = entry / UNDO_ROW_ENTRIES;
        if row.as_ref().is_none_or(|(i, _)| *i != index) {
            let bytes = undo
                .get(undo_key(block, index as u32).as_slice())?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            row = Some((index, bytes));
        }
        let bytes = &row.as_ref().expect("just read").1;
        let at = (entry % UNDO_ROW_ENTRIES) * UtxoEntry::LEN;
        amounts.push(
            bytes
                .get(at..at + UtxoEntry::LEN)
                .and_then(UtxoEntry::decode)
                .map(|e| e.amount),
        );
    }
    Ok(amounts)
}
