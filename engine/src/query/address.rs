//! Reads by address: balance, history and unspent outputs.

use super::*;
use crate::store::coin_cache::Direction::{Backward, Forward};

impl Engine {
    /// Balances, spendable outputs and history of an address.
    pub fn address(
        &self,
        address: &Address,
        history_limit: usize,
    ) -> Result<AddressInfo, EngineError> {
        let s = self.snapshot()?;
        let tip = s.tip()?;
        let next_height = tip.height + 1;
        let maturity = self.params().coinbase_maturity;
        let utxo = s.table(UTXO)?;
        let spends = s.table(MEMPOOL_SPENDS)?;
        let mempool = s.table(MEMPOOL)?;
        let (mut confirmed, mut immature) = (0u64, 0u64);
        let mut utxos = Vec::new();
        let prefix = address.0;
        let first = address_outpoint_key(address, &[0; OUTPOINT_LEN]);
        let last = address_outpoint_key(address, &[0xff; OUTPOINT_LEN]);
        let coin_index = s.table(ADDR_UTXO)?;
        let bounds = (first.as_slice(), Some(last.as_slice()));
        coin_cache::walk::<_, _, EngineError>(
            &s.coins.addr_utxo,
            &coin_index,
            bounds,
            Forward,
            |k, _| {
                let op = OutPoint::from_key(&k[20..])
                    .ok_or_else(|| StoreError::corrupt("addr utxo key"))?;
                let e = s
                    .utxo_in(&utxo, &op)?
                    .ok_or_else(|| StoreError::corrupt("addr utxo without utxo"))?;
                let mature = !e.coinbase || next_height >= e.height + maturity;
                if mature {
                    confirmed = confirmed.saturating_add(e.amount);
                } else {
                    immature = immature.saturating_add(e.amount);
                }
                if mature && spends.get(op.key().as_slice())?.is_none() {
                    utxos.push(utxo_info(op, &e, Some(e.height), true));
                }
                Ok(true)
            },
        )?;
        if cfg!(debug_assertions) {
            // Invariant: the balance projection is the sum of the address's outputs
            // (it is folded per block, the outputs per transaction).
            let balance = coin_cache::get(&s.coins.balance, &s.table(BALANCE)?, &prefix)?
                .map_or(0, u64::from_le_bytes);
            assert_eq!(
                balance,
                confirmed + immature,
                "balance projection of {address} disagrees with its outputs"
            );
        }
        let mut unconfirmed: i128 = 0;
        let mut history = Vec::new();
        for row in s.table(MEMPOOL_ADDR)?.range(prefix.as_slice()..)? {
            let (k, _) = row?;
            let k = k.value();
            if k[..20] != prefix {
                break;
            }
            let txid = Hash256(
                k[20..52]
                    .try_into()
                    .map_err(|_| StoreError::corrupt("mempool addr key"))?,
            );
            let Some((tx, _)) = read::mempool_tx(&mempool, &txid)? else {
                continue;
            };
            let mut delta: i128 = 0;
            for input in tx.spends() {
                if Address::from_public_key(&input.public_key) == *address {
                    let amount =
                        s.utxo_in(&utxo, &input.prevout)?
                            .map(|e| e.amount)
                            .or(read::mempool_tx(&mempool, &input.prevout.txid)?.and_then(
                                |(p, _)| {
                                    p.outputs.get(input.prevout.vout as usize).map(|o| o.amount)
                                },
                            ));
                    delta -= amount.unwrap_or(0) as i128;
                }
            }
            for (vout, out) in tx.outputs.iter().enumerate() {
                if out.address != *address {
                    continue;
                }
                delta += out.amount as i128;
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                if spends.get(op.key().as_slice())?.is_none() {
                    let e = UtxoEntry {
                        amount: out.amount,
                        address: out.address,
                        height: 0,
                        coinbase: false,
                    };
                    utxos.push(utxo_info(op, &e, None, true));
                }
            }
            unconfirmed += delta;
            history.push(HistoryItem {
                txid,
                height: None,
                delta: clamp_i64(delta),
            });
        }
        let hist = s.table(ADDR_HISTORY)?;
        let (start, end) = (
            history_key(address, 0, 0),
            history_key(address, u64::from(u32::MAX), u32::MAX),
        );
        let bounds = (start.as_slice(), Some(end.as_slice()));
        coin_cache::walk::<_, _, EngineError>(
            &s.coins.addr_history,
            &hist,
            bounds,
            Backward,
            |k, v| {
                if history.len() >= history_limit {
                    return Ok(false);
                }
                let k: &[u8; HISTORY_KEY_LEN] = k
                    .try_into()
                    .map_err(|_| StoreError::corrupt("history key"))?;
                let (txid, delta) =
                    decode_history_value(v).ok_or_else(|| StoreError::corrupt("history row"))?;
                history.push(HistoryItem {
                    txid,
                    height: Some(history_key_height(k)),
                    delta,
                });
                Ok(true)
            },
        )?;
        history.truncate(history_limit);
        Ok(AddressInfo {
            address: *address,
            confirmed,
            unconfirmed: clamp_i64(unconfirmed),
            immature,
            utxos,
            history,
        })
    }

    /// A page of the UTXO set in key order, starting after `after`.
    pub fn utxos(
        &self,
        after: Option<OutPoint>,
        limit: usize,
    ) -> Result<Vec<UtxoInfo>, EngineError> {
        let s = self.snapshot()?;
        let tip = s.tip()?;
        let t = s.table(UTXO)?;
        let start = after.map(|o| o.key()).unwrap_or([0; OUTPOINT_LEN]);
        let mut out = Vec::new();
        coin_cache::walk::<_, _, EngineError>(
            &s.coins.utxo,
            &t,
            (&start, None),
            Forward,
            |k, v| {
                let op = OutPoint::from_key(k).ok_or_else(|| StoreError::corrupt("utxo key"))?;
                if Some(op) == after {
                    return Ok(true);
                }
                let e = UtxoEntry::decode(v).ok_or_else(|| StoreError::corrupt("utxo row"))?;
                let mature =
                    !e.coinbase || tip.height + 1 >= e.height + self.params().coinbase_maturity;
                out.push(utxo_info(op, &e, Some(e.height), mature));
                Ok(out.len() < limit)
            },
        )?;
        Ok(out)
    }
}
