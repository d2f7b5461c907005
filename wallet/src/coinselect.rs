//! Coin selection, fee, change and local signing.
//!
//! **Strategy: largest-first.** Spendable outputs (confirmed, or unconfirmed from the
//! mempool — a wallet may spend its unconfirmed change at once) are sorted by amount,
//! largest first, and taken one at a time until they pay `amount + fee`. Largest-first
//! keeps transactions small (few inputs, so low fees) and is simple to reason about;
//! branch-and-bound would save the change output in rare exact matches, not worth the
//! complexity here.
//!
//! **Fee.** The shared fee policy ([`consensus::fee::policy_fee`]): `fee = ceil(size ×
//! fee_rate / 1000)` with the rate raised to the node's minimum relay rate, where `size` is
//! the length in bytes of the transaction's full consensus encoding (signatures included —
//! they are fixed-size, so an unsigned draft has the final size). The size depends on the number of inputs and
//! on whether there is a change output, and the inputs depend on the fee; so for each
//! candidate input set the fee is recomputed from the exact encoded size of the draft,
//! first without change, then with it, until the selection covers amount + fee — a fixed
//! point: the fee of the chosen transaction is the fee of its own size.
//!
//! **Change.** If what is left after amount and fee (computed *with* a change output) is
//! above zero, it goes back to the wallet's change address; if adding a change output
//! would not leave anything, the remainder (smaller than a change output's cost) is left to
//! the fee. So `inputs = outputs + fee` exactly, always.
//!
//! **Sweep** ([`select_all`], `send --amount all`): every spendable output (largest first,
//! at most [`consensus::tx::MAX_TX_ITEMS`]), one output, `amount = total − fee` for the
//! fee of that exact transaction; no change.

use crate::keys::Keychain;
use crate::slip10::DerivationError;
use consensus::encoding::Encode;
use consensus::tx::{TxIn, TxInputs, TxOut, TX_VERSION};
use consensus::{Address, OutPoint, Transaction};

/// An output the wallet can spend, and which of its keys owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spendable {
    pub outpoint: OutPoint,
    pub amount: u64,
    /// Receive-address index of the owning key (m/44'/8080'/account'/index').
    pub key_index: u32,
}

/// The chosen inputs and the resulting amounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub inputs: Vec<Spendable>,
    pub amount: u64,
    pub fee: u64,
    /// 0 when there is no change output.
    pub change: u64,
    /// Size in bytes of the signed transaction.
    pub size: usize,
}

impl Selection {
    pub fn input_total(&self) -> u64 {
        self.inputs.iter().map(|i| i.amount).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error(
        "insufficient funds: need {needed} (amount {amount} + fee {fee}), spendable {available}"
    )]
    InsufficientFunds {
        amount: u64,
        fee: u64,
        needed: u64,
        available: u64,
    },
    #[error("the amount must be above zero")]
    ZeroAmount,
    #[error("nothing to sweep: spendable {available} does not exceed the fee {fee}")]
    NothingToSweep { available: u64, fee: u64 },
    #[error("amounts overflow")]
    Overflow,
    #[error(transparent)]
    Derivation(#[from] DerivationError),
}

/// `ceil(size × rate / 1000)`, or None if it does not fit in u64 (the shared policy's
/// arithmetic, re-exported under its old path).
pub use consensus::fee::fee_for_size;

/// What the selection prices every candidate with: the shared fee policy.
fn fee_of(size: usize, fee_rate: u64) -> Result<u64, SendError> {
    consensus::fee::policy_fee(size, fee_rate).ok_or(SendError::Overflow)
}

/// How much to pay: an exact amount, or everything spendable minus the fee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    Exact(u64),
    All,
}

/// Selects for `amount`: [`select`] for an exact amount, [`select_all`] for a sweep.
pub fn select_amount(
    available: &[Spendable],
    amount: Amount,
    fee_rate: u64,
) -> Result<Selection, SendError> {
    match amount {
        Amount::Exact(a) => select(available, a, fee_rate),
        Amount::All => select_all(available, fee_rate),
    }
}

/// Largest first, each outpoint once.
fn largest_first(available: &[Spendable]) -> Vec<Spendable> {
    let mut sorted: Vec<Spendable> = available.to_vec();
    sorted.sort_by(|a, b| b.amount.cmp(&a.amount).then(a.outpoint.cmp(&b.outpoint)));
    let mut seen = std::collections::BTreeSet::new();
    sorted.retain(|s| seen.insert(s.outpoint));
    sorted
}

/// The sweep: every spendable output (largest first, at most `MAX_TX_ITEMS`) to one
/// output of `total − fee`, the fee being the policy's for that transaction's own size.
pub fn select_all(available: &[Spendable], fee_rate: u64) -> Result<Selection, SendError> {
    let mut inputs = largest_first(available);
    inputs.truncate(consensus::tx::MAX_TX_ITEMS as usize);
    let mut total: u64 = 0;
    for s in &inputs {
        total = total.checked_add(s.amount).ok_or(SendError::Overflow)?;
    }
    let size = encoded_size(&inputs, false);
    let fee = fee_of(size, fee_rate)?;
    if inputs.is_empty() || total <= fee {
        return Err(SendError::NothingToSweep {
            available: total,
            fee,
        });
    }
    Ok(Selection {
        inputs,
        amount: total - fee,
        fee,
        change: 0,
        size,
    })
}

/// An unsigned transaction paying `amount` to `to`, plus `change` to `change_to` if above
/// zero. Public keys are filled in by [`sign`]; they do not change the size.
fn draft(
    inputs: &[Spendable],
    to: Address,
    amount: u64,
    change: u64,
    change_to: Address,
) -> Transaction {
    let mut outputs = vec![TxOut {
        amount,
        address: to,
    }];
    if change > 0 {
        outputs.push(TxOut {
            amount: change,
            address: change_to,
        });
    }
    Transaction {
        version: TX_VERSION,
        inputs: TxInputs::Transfer(
            inputs
                .iter()
                .map(|s| TxIn {
                    prevout: s.outpoint,
                    public_key: [0; 32],
                    signature: [0; 64],
                })
                .collect(),
        ),
        outputs,
    }
}

/// Encoded size with `n_inputs` inputs and one or two outputs.
fn encoded_size(inputs: &[Spendable], with_change: bool) -> usize {
    let dummy = Address([0; 20]);
    draft(inputs, dummy, 1, u64::from(with_change), dummy)
        .encode()
        .len()
}

/// Largest-first selection (see the module doc). `available` may hold duplicates; each
/// outpoint is used at most once.
pub fn select(available: &[Spendable], amount: u64, fee_rate: u64) -> Result<Selection, SendError> {
    if amount == 0 {
        return Err(SendError::ZeroAmount);
    }
    let sorted = largest_first(available);
    let mut chosen: Vec<Spendable> = Vec::new();
    let mut total: u64 = 0;
    let mut last_fee = 0;
    for s in sorted {
        if chosen.len() as u64 >= consensus::tx::MAX_TX_ITEMS {
            break;
        }
        chosen.push(s);
        total = total.checked_add(s.amount).ok_or(SendError::Overflow)?;
        let size_plain = encoded_size(&chosen, false);
        let fee_plain = fee_of(size_plain, fee_rate)?;
        last_fee = fee_plain;
        let needed = amount.checked_add(fee_plain).ok_or(SendError::Overflow)?;
        if total < needed {
            continue;
        }
        let size_change = encoded_size(&chosen, true);
        let fee_change = fee_of(size_change, fee_rate)?;
        let (fee, change, size) = match total
            .checked_sub(amount)
            .and_then(|r| r.checked_sub(fee_change))
        {
            Some(change) if change > 0 => (fee_change, change, size_change),
            _ => (total - amount, 0, size_plain),
        };
        return Ok(Selection {
            inputs: chosen,
            amount,
            fee,
            change,
            size,
        });
    }
    let fee = if chosen.is_empty() {
        fee_of(encoded_size(&[], false), fee_rate)?
    } else {
        last_fee
    };
    Err(SendError::InsufficientFunds {
        amount,
        fee,
        needed: amount.saturating_add(fee),
        available: total,
    })
}

/// Builds the transaction for `selection` and signs every input with its owner's key.
pub fn sign(
    selection: &Selection,
    to: Address,
    change_to: Address,
    keychain: &Keychain,
) -> Result<Transaction, SendError> {
    let mut tx = draft(
        &selection.inputs,
        to,
        selection.amount,
        selection.change,
        change_to,
    );
    let keys = selection
        .inputs
        .iter()
        .map(|s| keychain.signing_key(s.key_index))
        .collect::<Result<Vec<_>, _>>()?;
    if let TxInputs::Transfer(ins) = &mut tx.inputs {
        for (input, key) in ins.iter_mut().zip(&keys) {
            input.public_key = key.verifying_key().to_bytes();
        }
    }
    let refs: Vec<&ed25519_dalek::SigningKey> = keys.iter().collect();
    tx.sign_inputs(&refs);
    Ok(tx)
}

/// Selects, builds and signs a payment of `amount` to `to` at `fee_rate` units per 1000
/// bytes, with change to `change_to`.
pub fn build_payment(
    available: &[Spendable],
    to: Address,
    amount: u64,
    fee_rate: u64,
    change_to: Address,
    keychain: &Keychain,
) -> Result<(Transaction, Selection), SendError> {
    let selection = select(available, amount, fee_rate)?;
    let tx = sign(&selection, to, change_to, keychain)?;
    debug_assert_eq!(tx.size(), selection.size);
    Ok((tx, selection))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mnemonic::Mnemonic;
    use consensus::Hash256;
    use ed25519_dalek::{Signature, VerifyingKey};
    use proptest::prelude::*;

    fn keychain() -> Keychain {
        let m = Mnemonic::parse(
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
        )
        .unwrap();
        Keychain::from_mnemonic(&m, "", 0).unwrap()
    }

    fn utxo(n: u8, amount: u64, key_index: u32) -> Spendable {
        Spendable {
            outpoint: OutPoint {
                txid: Hash256([n; 32]),
                vout: u32::from(n),
            },
            amount,
            key_index,
        }
    }

    #[test]
    fn fee_rounds_up() {
        assert_eq!(fee_for_size(250, 1000), Some(250));
        assert_eq!(fee_for_size(250, 1), Some(1));
        assert_eq!(fee_for_size(250, 0), Some(0));
        assert_eq!(fee_for_size(1001, 1000), Some(1001));
        assert_eq!(fee_for_size(999, 2), Some(2));
    }

    /// The vectors the browser wallet's tests assert too (api/web/test/fee.test.mjs): the
    /// same utxos give the same inputs, fee and change on both sides.
    #[test]
    fn selection_and_sweep_match_the_shared_fee_policy_vectors() {
        let v: serde_json::Value = serde_json::from_str(include_str!(
            "../../consensus/tests/vectors/fee_policy.json"
        ))
        .unwrap();
        assert_eq!(
            v["min_relay_fee_rate"].as_u64(),
            Some(consensus::fee::MIN_RELAY_FEE_RATE)
        );
        assert_eq!(
            v["default_fee_rate"].as_u64(),
            Some(consensus::fee::DEFAULT_FEE_RATE)
        );
        let utxos_of = |c: &serde_json::Value| -> Vec<Spendable> {
            c["utxos"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, a)| utxo(i as u8, a.as_u64().unwrap(), 0))
                .collect()
        };
        for c in v["selections"].as_array().unwrap() {
            let utxos = utxos_of(c);
            let got = select(
                &utxos,
                c["amount"].as_u64().unwrap(),
                c["rate"].as_u64().unwrap(),
            );
            match got {
                Ok(s) => {
                    let idx: Vec<u64> = s
                        .inputs
                        .iter()
                        .map(|i| utxos.iter().position(|u| u == i).unwrap() as u64)
                        .collect();
                    let want: Vec<u64> = c["inputs"]
                        .as_array()
                        .unwrap_or_else(|| panic!("{c}: expected {s:?} to fail"))
                        .iter()
                        .map(|x| x.as_u64().unwrap())
                        .collect();
                    assert_eq!(idx, want, "{c}");
                    assert_eq!(s.fee, c["fee"].as_u64().unwrap(), "{c}");
                    assert_eq!(s.change, c["change"].as_u64().unwrap(), "{c}");
                    assert_eq!(s.size as u64, c["size"].as_u64().unwrap(), "{c}");
                }
                Err(e) => {
                    assert!(matches!(e, SendError::InsufficientFunds { .. }), "{e}");
                    assert_eq!(c["error"], "insufficient_funds", "{c}");
                }
            }
        }
        for c in v["sweeps"].as_array().unwrap() {
            match select_all(&utxos_of(c), c["rate"].as_u64().unwrap()) {
                Ok(s) => {
                    assert_eq!(s.amount, c["amount"].as_u64().unwrap(), "{c}");
                    assert_eq!(s.fee, c["fee"].as_u64().unwrap(), "{c}");
                    assert_eq!(s.size as u64, c["size"].as_u64().unwrap(), "{c}");
                    assert_eq!(s.change, 0);
                }
                Err(e) => {
                    assert!(matches!(e, SendError::NothingToSweep { .. }), "{e}");
                    assert_eq!(c["error"], "insufficient_funds", "{c}");
                }
            }
        }
    }

    #[test]
    fn send_all_sweeps_everything_spendable_minus_the_fee() {
        let k = keychain();
        let utxos = [
            utxo(1, 700, 0),
            utxo(2, 800, 2),
            utxo(3, 900, 5),
            utxo(2, 800, 2),
        ];
        let s = select_amount(&utxos, Amount::All, 10).unwrap();
        assert_eq!(s.inputs.len(), 3, "each outpoint once");
        assert_eq!(s.input_total(), 2_400);
        assert_eq!(s.fee, fee_for_size(s.size, 10).unwrap());
        assert_eq!(s.amount + s.fee, 2_400);
        let tx = sign(&s, Address([9; 20]), k.address(0).unwrap(), &k).unwrap();
        assert_eq!(tx.outputs.len(), 1);
        assert_eq!(tx.outputs[0].amount, 2_400 - s.fee);
        assert_eq!(tx.size(), s.size);
        assert!(matches!(
            select_all(&[utxo(1, 1, 0)], 1000),
            Err(SendError::NothingToSweep { available: 1, .. })
        ));
        assert!(matches!(
            select_all(&[], 0),
            Err(SendError::NothingToSweep { available: 0, .. })
        ));
    }

    #[test]
    fn largest_first_with_change_and_exact_fee() {
        let utxos = [utxo(1, 100, 0), utxo(2, 5_000, 1), utxo(3, 3_000, 0)];
        let s = select(&utxos, 4_000, 1000).unwrap();
        assert_eq!(s.inputs, vec![utxos[1]]);
        // 1 input, 2 outputs: 4+1+1+68 + 1+2*28 + 64 = 195 bytes
        assert_eq!(s.size, 195);
        assert_eq!(s.fee, 195);
        assert_eq!(s.change, 5_000 - 4_000 - 195);
        let (tx, _) = build_payment(
            &utxos,
            Address([9; 20]),
            4_000,
            1000,
            Address([8; 20]),
            &keychain(),
        )
        .unwrap();
        assert_eq!(tx.size(), 195);
        assert_eq!(tx.outputs.len(), 2);
    }

    #[test]
    fn remainder_too_small_for_change_goes_to_fee() {
        // One input, no change: 4+1+1+68+1+28+64 = 167 bytes. With change it would be 195.
        let utxos = [utxo(1, 1_000 + 180, 0)];
        let s = select(&utxos, 1_000, 1000).unwrap();
        assert_eq!((s.change, s.fee, s.size), (0, 180, 167));
        // Exactly enough for amount + fee with change + 1 unit: change of 1.
        let utxos = [utxo(1, 1_000 + 196, 0)];
        let s = select(&utxos, 1_000, 1000).unwrap();
        assert_eq!((s.change, s.fee), (1, 195));
    }

    #[test]
    fn insufficient_funds_is_typed_and_zero_amount_refused() {
        let utxos = [utxo(1, 100, 0), utxo(2, 200, 0)];
        match select(&utxos, 300, 0) {
            Ok(s) => assert_eq!(s.fee, 0),
            Err(e) => panic!("{e}"),
        }
        let err = select(&utxos, 300, 1000).unwrap_err();
        assert!(
            matches!(
                err,
                SendError::InsufficientFunds {
                    available: 300,
                    amount: 300,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            select(&[], 1, 0),
            Err(SendError::InsufficientFunds { available: 0, .. })
        ));
        assert_eq!(select(&utxos, 0, 0), Err(SendError::ZeroAmount));
    }

    #[test]
    fn duplicates_are_spent_once() {
        let u = utxo(1, 1_000, 0);
        let err = select(&[u, u, u], 1_500, 0).unwrap_err();
        assert!(matches!(
            err,
            SendError::InsufficientFunds {
                available: 1_000,
                ..
            }
        ));
    }

    #[test]
    fn signatures_verify_with_the_owning_keys() {
        let k = keychain();
        let utxos = [utxo(1, 700, 0), utxo(2, 800, 2), utxo(3, 900, 5)];
        let (tx, s) = build_payment(
            &utxos,
            Address([9; 20]),
            2_000,
            10,
            k.address(0).unwrap(),
            &k,
        )
        .unwrap();
        assert_eq!(s.inputs.len(), 3);
        let txid = tx.txid();
        for (input, sp) in tx.spends().iter().zip(&s.inputs) {
            assert_eq!(input.public_key, k.public_key(sp.key_index).unwrap());
            let vk = VerifyingKey::from_bytes(&input.public_key).unwrap();
            vk.verify_strict(&txid.0, &Signature::from_bytes(&input.signature))
                .unwrap();
        }
        let decoded = <Transaction as consensus::encoding::Decode>::decode(&tx.encode()).unwrap();
        assert_eq!(decoded, tx);
    }

    fn arb_utxos() -> impl Strategy<Value = Vec<Spendable>> {
        prop::collection::vec((1u64..2_000_000_000u64, 0u32..4), 0..25).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (amount, key))| Spendable {
                    outpoint: OutPoint {
                        txid: Hash256([i as u8; 32]),
                        vout: i as u32,
                    },
                    amount,
                    key_index: key,
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn selection_balances_and_never_overspends(
            utxos in arb_utxos(),
            amount in 1u64..20_000_000_000u64,
            fee_rate in 0u64..50_000u64,
        ) {
            let owned: u64 = utxos.iter().map(|u| u.amount).sum();
            match select(&utxos, amount, fee_rate) {
                Ok(s) => {
                    // outputs + fee == inputs
                    prop_assert_eq!(s.input_total(), s.amount + s.change + s.fee);
                    prop_assert!(s.input_total() <= owned);
                    // only owned outpoints, each at most once
                    for (i, inp) in s.inputs.iter().enumerate() {
                        prop_assert!(utxos.contains(inp));
                        prop_assert!(!s.inputs[..i].iter().any(|o| o.outpoint == inp.outpoint));
                    }
                    // the fee pays for the transaction's own size
                    let draft = draft(&s.inputs, Address([1; 20]), s.amount, s.change, Address([2; 20]));
                    prop_assert_eq!(draft.encode().len(), s.size);
                    prop_assert!(s.fee >= fee_for_size(s.size, fee_rate).unwrap());
                    if s.change == 0 {
                        // leftover kept as fee is less than what a change output would cost
                        let with_change = fee_for_size(encoded_size(&s.inputs, true), fee_rate).unwrap();
                        prop_assert!(s.fee <= with_change);
                    } else {
                        prop_assert_eq!(s.fee, fee_for_size(s.size, fee_rate).unwrap());
                    }
                }
                Err(SendError::InsufficientFunds { available, .. }) => {
                    // even every output together does not cover amount + its fee
                    prop_assert_eq!(available, owned);
                    let all_fee = fee_for_size(encoded_size(&utxos, false), fee_rate).unwrap();
                    prop_assert!(owned < amount + all_fee);
                }
                Err(e) => prop_assert!(false, "unexpected error {}", e),
            }
        }
    }
}
