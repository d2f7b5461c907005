//! Replaying the log as notifications, for push subscribers that reconnect (`Last-Event-ID`).

use super::*;

/// Re-derives the notification of one log record (for Last-Event-ID replays). Removals
/// carry no addresses here (the removed transaction is not in the record).
pub(super) fn note_for(
    s: &Snapshot,
    index: &impl ReadableTable<&'static [u8], &'static [u8]>,
    record: Record,
) -> Result<Notification, EngineError> {
    let seq = record.seq;
    let height_of = |h: &Hash256| -> Result<u64, EngineError> {
        Ok(read::block_meta(index, h)?.map(|m| m.height).unwrap_or(0))
    };
    let block_addresses = |h: &Hash256| -> Result<(Vec<Address>, Vec<Hash256>), EngineError> {
        let Some(m) = read::block_meta(index, h)? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let b = s.block(&m)?;
        Ok((addresses_of(&b.txs), b.txids()))
    };
    let (kind, addresses) = match record.event {
        Event::BlockAccepted(b) => {
            let hash = b.hash();
            (
                NotificationKind::BlockStored {
                    hash,
                    height: height_of(&hash)?,
                },
                Vec::new(),
            )
        }
        Event::TipConnected(hash) => {
            let (a, txids) = block_addresses(&hash)?;
            (
                NotificationKind::BlockConnected {
                    hash,
                    height: height_of(&hash)?,
                    txids,
                },
                a,
            )
        }
        Event::TipDisconnected(hash) => {
            let (a, _) = block_addresses(&hash)?;
            (
                NotificationKind::BlockDisconnected {
                    hash,
                    height: height_of(&hash)?,
                },
                a,
            )
        }
        Event::TxAdmitted(tx) => {
            let a = addresses_of([&tx]);
            // The fee it had when admitted, as the live event said, even when it has
            // since been confirmed or evicted (its inputs' amounts never change).
            let fee = match read::mempool_tx(&s.table(MEMPOOL)?, &tx.txid())? {
                Some((_, fee)) => fee,
                None => super::txs::fee_paid(s, &tx)?.unwrap_or(0),
            };
            (
                NotificationKind::TxAdded {
                    txid: tx.txid(),
                    fee,
                },
                a,
            )
        }
        Event::TxRemoved { txid, reason } => {
            (NotificationKind::TxRemoved { txid, reason }, Vec::new())
        }
        Event::Reset => (NotificationKind::Reset, Vec::new()),
    };
    Ok(Notification {
        seq,
        kind,
        addresses,
    })
}

impl Engine {
    /// Notifications for every record after `after_seq` (for clients reconnecting with
    /// Last-Event-ID), at most `limit`.
    pub fn notifications_since(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Notification>, EngineError> {
        let s = self.snapshot()?;
        let log = s.table(LOG)?;
        let chunks = s.log_chunks()?;
        let index = s.table(BLOCK_INDEX)?;
        let mut out = Vec::new();
        for row in log.range(after_seq.saturating_add(1)..)?.take(limit) {
            let (seq, v) = row?;
            let bytes = logtable::record_bytes(chunks.as_ref(), seq.value(), v.value())?;
            let record = Record::decode(&bytes).map_err(|e| StoreError::corrupt(e.to_string()))?;
            out.push(note_for(&s, &index, record)?);
        }
        Ok(out)
    }
}

/// Every address `txs` spend from or pay to, once each, in first-seen order.
fn addresses_of<'a>(txs: impl IntoIterator<Item = &'a Transaction>) -> Vec<Address> {
    unique_addresses(txs.into_iter().flat_map(|tx| {
        let spenders = tx
            .spends()
            .iter()
            .map(|i| Address::from_public_key(&i.public_key));
        spenders.chain(tx.outputs.iter().map(|o| o.address))
    }))
}
