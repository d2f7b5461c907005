//! Wallet operations over the node API: address discovery, balance, history, spendable
//! outputs, send.

use crate::client::{AddressInfo, HistoryEntry, NodeClient, NodeError, TxView};
use crate::coinselect::{
    build_payment, select_amount, sign, Amount, Selection, SendError, Spendable,
};
use crate::keys::Keychain;
use crate::slip10::DerivationError;
use consensus::{Address, Hash256, OutPoint};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// BIP44's address gap limit: a restore looks at addresses in index order and stops after
/// this many consecutive unused ones.
pub const GAP_LIMIT: u32 = 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("balance overflow while summing the wallet's addresses")]
    Overflow,
    #[error(transparent)]
    Derivation(#[from] DerivationError),
}

/// Whether an address was ever used: any history on the node, confirmed or in the mempool
/// (an address whose funds were all spent again is used too), or anything it holds.
pub fn is_used(info: &AddressInfo) -> bool {
    !info.history.is_empty()
        || !info.utxos.is_empty()
        || info.confirmed > 0
        || info.immature > 0
        || info.unconfirmed != 0
}

/// Gap-limit discovery over any lookup: `used(i)` says whether address `i` was used.
/// Indexes are probed in order until `gap` consecutive unused ones follow the last used
/// one; returns how many addresses the wallet holds — the last used index + 1, and at least
/// `at_least`. The wallet has one chain (change goes back to address 0), so this one scan
/// covers both what it received and its change.
pub fn discover_with<E>(
    gap: u32,
    at_least: u32,
    mut used: impl FnMut(u32) -> Result<bool, E>,
) -> Result<u32, E> {
    let mut count = 0u32;
    let mut index = 0u32;
    while index < count.saturating_add(gap) && index < crate::slip10::HARDENED {
        if used(index)? {
            count = index + 1;
        }
        index += 1;
    }
    Ok(count.max(at_least))
}

/// [`discover_with`] against the node: how many of `keychain`'s addresses (in index order)
/// the wallet must hold to see all its funds, at least `at_least`.
pub fn discover(
    client: &NodeClient,
    keychain: &Keychain,
    at_least: u32,
) -> Result<u32, WalletError> {
    discover_with(GAP_LIMIT, at_least, |i| {
        let a = keychain.address(i)?;
        Ok(is_used(&client.address(&a)?))
    })
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

/// Which way a transaction moved the wallet's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Nothing of the wallet's was spent: it received (or mined) units.
    In,
    /// The wallet spent, and paid someone else.
    Out,
    /// The wallet spent, only to its own addresses (it paid only the fee).
    #[serde(rename = "self")]
    SelfTransfer,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::SelfTransfer => "self",
        }
    }
}

/// One line of the wallet's history as a person reads it (and `history --json` prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    pub txid: Hash256,
    /// None while in the mempool.
    pub height: Option<u64>,
    /// Net change of the wallet's balance (received − spent).
    pub delta: i64,
    /// The block's time (Unix seconds); None while in the mempool.
    pub time: Option<u64>,
    pub direction: Direction,
    /// In: the first sender's address (`coinbase` for mined units); out: the first
    /// recipient that is not the wallet; self: None.
    pub counterparty: Option<String>,
    /// In: units received; out: units paid to others; self: units moved.
    pub amount: u64,
    /// What the wallet paid in fees (0 for incoming transactions).
    pub fee: u64,
    pub confirmations: u64,
}

/// Classifies one transaction from the point of view of the wallet owning `own`.
pub fn history_row(
    entry: &HistoryEntry,
    tx: &TxView,
    own: &BTreeSet<Address>,
    time: Option<u64>,
) -> HistoryRow {
    let spent_own = !tx.coinbase && tx.inputs.iter().any(|i| own.contains(&i.address));
    let to_own: u64 = tx
        .outputs
        .iter()
        .filter(|o| own.contains(&o.address))
        .fold(0u64, |s, o| s.saturating_add(o.amount));
    let to_others: u64 = tx
        .outputs
        .iter()
        .filter(|o| !own.contains(&o.address))
        .fold(0u64, |s, o| s.saturating_add(o.amount));
    let (direction, counterparty, amount, fee) = if !spent_own {
        let from = if tx.coinbase {
            Some("coinbase".to_string())
        } else {
            tx.inputs.first().map(|i| i.address.to_string())
        };
        (Direction::In, from, to_own, 0)
    } else if to_others > 0 {
        let to = tx
            .outputs
            .iter()
            .find(|o| !own.contains(&o.address))
            .map(|o| o.address.to_string());
        (Direction::Out, to, to_others, tx.fee.unwrap_or(0))
    } else {
        (Direction::SelfTransfer, None, to_own, tx.fee.unwrap_or(0))
    };
    HistoryRow {
        txid: entry.txid,
        height: tx.height.or(entry.height),
        delta: entry.delta,
        time,
        direction,
        counterparty,
        amount,
        fee,
        confirmations: tx.confirmations,
    }
}

/// The wallet's history with each transaction looked up (`GET /v1/tx`, and the block's
/// time once per height): direction, counterparty, amount, fee, confirmations.
pub fn history_rows(
    client: &NodeClient,
    addresses: &[Address],
) -> Result<Vec<HistoryRow>, WalletError> {
    let own: BTreeSet<Address> = addresses.iter().copied().collect();
    let mut times: HashMap<u64, u64> = HashMap::new();
    let mut rows = Vec::new();
    for e in history(client, addresses)? {
        let tx = client.tx(&e.txid)?;
        let time = match tx.height {
            Some(h) => Some(match times.get(&h) {
                Some(t) => *t,
                None => {
                    let t = client.block_at(h)?.time;
                    times.insert(h, t);
                    t
                }
            }),
            None => None,
        };
        rows.push(history_row(&e, &tx, &own, time));
    }
    Ok(rows)
}

/// Selects the inputs paying `amount` to `to` at `fee_rate` among the outputs of
/// `addresses` (index i = key i), without any key: what the user confirms before anything
/// is signed.
pub fn prepare_send(
    client: &NodeClient,
    addresses: &[Address],
    amount: Amount,
    fee_rate: u64,
) -> Result<Selection, WalletError> {
    let available = spendable(client, addresses)?;
    Ok(select_amount(&available, amount, fee_rate)?)
}

/// Signs `selection` (change to the wallet's address 0) and submits it; returns the txid.
pub fn sign_and_submit(
    client: &NodeClient,
    keychain: &Keychain,
    selection: &Selection,
    to: Address,
) -> Result<Hash256, WalletError> {
    let change_to = keychain.address(0).map_err(SendError::from)?;
    let tx = sign(selection, to, change_to, keychain)?;
    Ok(client.submit(&tx)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The restore's scan: used addresses with gaps of up to 19 unused between them are all
    /// found; 20 unused in a row end it.
    #[test]
    fn restore_scans_until_twenty_consecutive_unused_addresses() {
        let used = [0u32, 1, 21, 42];
        let mut probed = Vec::new();
        let n = discover_with::<()>(GAP_LIMIT, 1, |i| {
            probed.push(i);
            Ok(used.contains(&i))
        })
        .unwrap();
        // 2..=20 is a gap of 19: 21 is found; 22..=41 is a gap of 20: 42 is not.
        assert_eq!(n, 22);
        assert_eq!(probed, (0..42).collect::<Vec<_>>());
        // Nothing used: 20 probes, one address kept.
        let mut count = 0;
        assert_eq!(
            discover_with::<()>(GAP_LIMIT, 1, |_| {
                count += 1;
                Ok(false)
            }),
            Ok(1)
        );
        assert_eq!(count, 20);
        // Never fewer than the wallet already holds.
        assert_eq!(discover_with::<()>(GAP_LIMIT, 5, |i| Ok(i == 2)), Ok(5));
        assert_eq!(discover_with(GAP_LIMIT, 1, |_| Err("down")), Err("down"));
    }

    fn addr(n: u8) -> Address {
        Address([n; 20])
    }

    fn view(coinbase: bool, inputs: &[(u8, u64)], outputs: &[(u8, u64)], fee: u64) -> TxView {
        TxView {
            txid: Hash256([7; 32]),
            coinbase,
            inputs: inputs
                .iter()
                .map(|&(a, amount)| crate::client::TxInputView {
                    address: addr(a),
                    amount: Some(amount),
                })
                .collect(),
            outputs: outputs
                .iter()
                .map(|&(a, amount)| crate::client::TxOutputView {
                    address: addr(a),
                    amount,
                })
                .collect(),
            fee: (!coinbase).then_some(fee),
            size: 195,
            height: Some(10),
            confirmations: 3,
        }
    }

    #[test]
    fn history_rows_say_direction_counterparty_amount_and_fee() {
        let own: BTreeSet<Address> = [addr(1), addr(2)].into_iter().collect();
        let e = |delta| HistoryEntry {
            txid: Hash256([7; 32]),
            height: Some(10),
            delta,
        };
        let r = history_row(&e(50), &view(true, &[], &[(1, 50)], 0), &own, Some(99));
        assert_eq!(
            (
                r.direction,
                r.counterparty.as_deref(),
                r.amount,
                r.fee,
                r.time,
                r.confirmations
            ),
            (Direction::In, Some("coinbase"), 50, 0, Some(99), 3)
        );
        let r = history_row(
            &e(30),
            &view(false, &[(9, 100)], &[(2, 30), (9, 69)], 1),
            &own,
            None,
        );
        assert_eq!((r.direction, r.amount, r.fee), (Direction::In, 30, 0));
        assert_eq!(r.counterparty, Some(addr(9).to_string()));
        let r = history_row(
            &e(-41),
            &view(false, &[(1, 100)], &[(8, 40), (1, 59)], 1),
            &own,
            None,
        );
        assert_eq!((r.direction, r.amount, r.fee), (Direction::Out, 40, 1));
        assert_eq!(r.counterparty, Some(addr(8).to_string()));
        let r = history_row(&e(-1), &view(false, &[(1, 100)], &[(2, 99)], 1), &own, None);
        assert_eq!(
            (r.direction, r.amount, r.fee, r.counterparty),
            (Direction::SelfTransfer, 99, 1, None)
        );
        assert_eq!(serde_json::to_value(r.direction).unwrap(), "self");
    }
}
