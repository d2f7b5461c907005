// Paying from the browser wallet in two steps, so the user sees what is paid before anything
// is signed: planPayment selects and prices by the shared fee policy, sendPayment signs that
// exact plan and submits it.

import { api } from "./api.js";
import { decodeAddress } from "./bech32m.js";
import { selectCoins, sweepCoins } from "./coinselect.js";
import { signTransfer } from "./tx.js";

/** The amount that sweeps everything spendable minus the fee (as `send --amount all`). */
export const ALL = "all";

/** Parses a whole number of units; throws with a clear message. */
export function parseUnits(text, what, { allowZero = false } = {}) {
  const s = String(text ?? "").trim();
  if (!/^\d+$/.test(s)) throw new Error(`${what} must be a whole number of units`);
  const n = BigInt(s);
  if (!allowZero && n === 0n) throw new Error(`${what} must be at least 1`);
  if (n > 0xffffffffffffffffn) throw new Error(`${what} is too large`);
  return n;
}

/** The amount field: a whole number of units, or "all" (any case) for a sweep. */
export function parseAmount(text) {
  return String(text ?? "").trim().toLowerCase() === ALL ? ALL : parseUnits(text, "the amount");
}

/**
 * Selects the wallet's outputs (at `address`) paying `amount` (BigInt or ALL) to `to` at
 * `feeRate` units per 1,000 bytes. Returns the plan to confirm:
 * { to, amount, fee, change, size, selected }.
 */
export async function planPayment(address, to, amount, feeRate) {
  decodeAddress(to); // bad address -> AddressError, before asking the node
  const { utxos } = await api.address(address);
  const selection = amount === ALL ? sweepCoins(utxos, feeRate) : selectCoins(utxos, amount, feeRate);
  return { to, ...selection };
}

/** Signs a plan with the unlocked key (change back to its address) and submits it. */
export async function sendPayment(key, plan) {
  const outputs = [{ amount: plan.amount, address: plan.to }];
  if (plan.change > 0n) outputs.push({ amount: plan.change, address: key.address });
  const tx = {
    inputs: plan.selected.map((u) => ({ txid: u.txid, vout: u.vout, publicKey: key.publicKey })),
    outputs,
  };
  const signed = await signTransfer(tx, plan.selected.map(() => key.privateKey));
  // The fee was priced for the planned size; any other size would pay another rate than shown.
  if (signed.size !== plan.size) throw new Error(`the signed transaction is ${signed.size} bytes, ${plan.size} were priced`);
  const res = await api.submitTx(signed.hex);
  return { txid: res?.txid ?? signed.txid, size: signed.size, fee: plan.fee, change: plan.change };
}
