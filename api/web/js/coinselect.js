// Coin selection for the browser wallet, exactly as the CLI's (wallet/src/coinselect.rs), so
// the same outputs give the same inputs, fee and change (test/fee.test.mjs asserts the shared
// vectors). Largest first, ties by outpoint: few inputs keep the fee low. Each candidate set
// is priced by the fee policy (fee.js) from its exact signed size, first without and then
// with a change output; a remainder that would not stay above zero after paying for the
// change output goes to the fee, so inputs = outputs + fee always.

import { hashFromDisplay, toHex } from "./bytes.js";
import { policyFee } from "./fee.js";
import { transferSize } from "./tx.js";

/** The most inputs a transaction may have (consensus::tx::MAX_TX_ITEMS). */
const MAX_INPUTS = 10_000;

/** Not enough spendable units; `available` says how many there are. */
export class InsufficientFunds extends Error {
  constructor(message, available) {
    super(message);
    this.available = available;
  }
}

/** The outputs that may be spent now (immature coinbase outputs are excluded). */
export function spendable(utxos) {
  return utxos.filter((u) => u.mature !== false);
}

// The node orders outpoints by txid bytes in internal order, then vout.
const internalTxid = (u) => toHex(hashFromDisplay(u.txid));

function largestFirst(a, b) {
  const diff = BigInt(b.amount) - BigInt(a.amount);
  if (diff !== 0n) return diff > 0n ? 1 : -1;
  const [x, y] = [internalTxid(a), internalTxid(b)];
  return x !== y ? (x < y ? -1 : 1) : a.vout - b.vout;
}

const candidates = (utxos) => spendable(utxos).sort(largestFirst).slice(0, MAX_INPUTS);
const sum = (utxos) => utxos.reduce((s, u) => s + BigInt(u.amount), 0n);

/** Size and policy fee of a transfer with `inputs` inputs and `outputs` outputs. */
function priced(inputs, outputs, rate) {
  const size = transferSize(inputs, outputs);
  const fee = policyFee(size, rate);
  if (fee === null) throw new Error("the fee does not fit in 64 bits: lower the fee rate");
  return { size, fee };
}

/**
 * Picks UTXOs ({txid, vout, amount, mature}) paying `amount` at `rate` units per 1,000
 * bytes (BigInts). Returns { selected, amount, fee, change, size } or throws InsufficientFunds.
 */
export function selectCoins(utxos, amount, rate) {
  const want = BigInt(amount);
  if (want <= 0n) throw new Error("the amount must be above zero");
  const selected = [];
  let total = 0n;
  let fee = priced(0, 1, rate).fee;
  for (const u of candidates(utxos)) {
    selected.push(u);
    total += BigInt(u.amount);
    const plain = priced(selected.length, 1, rate);
    fee = plain.fee;
    if (total < want + plain.fee) continue;
    const withChange = priced(selected.length, 2, rate);
    const change = total - want - withChange.fee;
    if (change > 0n) return { selected, amount: want, fee: withChange.fee, change, size: withChange.size };
    return { selected, amount: want, fee: total - want, change: 0n, size: plain.size };
  }
  throw new InsufficientFunds(
    `insufficient funds: need ${want + fee} units (amount ${want} + fee ${fee}), only ${total} spendable`, total);
}

/**
 * The sweep ("all"): every spendable output into one output of their total minus the fee of
 * that transaction. Returns { selected, amount, fee, change: 0n, size }.
 */
export function sweepCoins(utxos, rate) {
  const selected = candidates(utxos);
  const total = sum(selected);
  const { size, fee } = priced(selected.length, 1, rate);
  if (!selected.length || total <= fee) {
    throw new InsufficientFunds(`nothing to sweep: ${total} units spendable do not exceed the fee ${fee}`, total);
  }
  return { selected, amount: total - fee, fee, change: 0n, size };
}
