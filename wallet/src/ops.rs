//! Wallet operations over the node API: balance, history, spendable outputs, send.

use crate::client::{HistoryEntry, NodeClient, NodeError};
use crate::coinselect::{build_payment, Selection, SendError, Spendable};
use crate::keys::Keychain;
use consensus::{Address, Hash256, OutPoint};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("balance overflow while summing the wallet's addresses")]
    Overflow,
}

/// Balances summed over the wallet's addresses (field names as in `--json` output).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub confirmed: u64,
    /// Net change from mempool transactions; may be negative.
    pub unconfirmed: i64,
    pub immature: u64,
}

pub fn balance(client: &NodeClient, addresses: &[Address]) -> Result<Balance, WalletError> {
    let mut b = Balance::default();
    for a in addresses {
        let info = client.address(a)?;
        b.confirmed = b
            .confirmed
            .checked_add(info.confirmed)
            .ok_or(WalletError::Overflow)?;
        b.unconfirmed = b
            .unconfirmed
            .checked_add(info.unconfirmed)
            .ok_or(WalletError::Overflow)?;
        b.immature = b
            .immature
            .checked_add(info.immature)
            .ok_or(WalletError::Overflow)?;
    }
    Ok(b)
}

/// The wallet's history: one line per transaction, deltas summed over its addresses;
/// mempool transactions first, then newest block first.
pub fn history(
    client: &NodeClient,
    addresses: &[Address],
) -> Result<Vec<HistoryEntry>, WalletError> {
    let mut by_tx: BTreeMap<Hash256, HistoryEntry> = BTreeMap::new();
    for a in addresses {
        for h in client.address(a)?.history {
            let e = by_tx.entry(h.txid).or_insert(HistoryEntry {
                txid: h.txid,
                height: h.height,
                delta: 0,
            });
            e.delta = e.delta.checked_add(h.delta).ok_or(WalletError::Overflow)?;
            e.height = e.height.or(h.height);
        }
    }
    let mut v: Vec<HistoryEntry> = by_tx.into_values().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.height.unwrap_or(u64::MAX)));
    Ok(v)
}

/// Outputs the wallet may spend now (mempool outputs included, immature coinbases not).
pub fn spendable(
    client: &NodeClient,
    addresses: &[Address],
) -> Result<Vec<Spendable>, WalletError> {
    let mut out = Vec::new();
    for (index, a) in addresses.iter().enumerate() {
        for u in client.address(a)?.utxos {
            if u.spendable() {
                out.push(Spendable {
                    outpoint: OutPoint {
                        txid: u.txid,
                        vout: u.vout,
                    },
                    amount: u.amount,
                    key_index: index as u32,
                });
            }
        }
    }
    Ok(out)
}

/// Pays `amount` to `to`: selects among the outputs of `addresses` (index i = key i of
/// `keychain`), signs locally, submits, and returns the txid. Change goes to
/// `addresses[0]`.
pub fn send(
    client: &NodeClient,
    keychain: &Keychain,
    addresses: &[Address],
    to: Address,
    amount: u64,
    fee_rate: u64,
) -> Result<(Hash256, Selection), WalletError> {
    let available = spendable(client, addresses)?;
    let change_to = keychain.address(0).map_err(SendError::from)?;
    let (tx, selection) = build_payment(&available, to, amount, fee_rate, change_to, keychain)?;
    let txid = client.submit(&tx)?;
    Ok((txid, selection))
}
