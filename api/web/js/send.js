// Building, signing and submitting a payment from the browser wallet.

import { api } from "./api.js";
import { decodeAddress } from "./bech32m.js";
import { selectCoins } from "./coinselect.js";
import { signTransfer } from "./tx.js";

/** Parses a whole number of units; throws with a clear message. */
export function parseUnits(text, what, { allowZero = false } = {}) {
  const s = String(text ?? "").trim();
  if (!/^\d+$/.test(s)) throw new Error(`${what} must be a whole number of units`);
  const n = BigInt(s);
  if (!allowZero && n === 0n) throw new Error(`${what} must be at least 1`);
  if (n > 0xffffffffffffffffn) throw new Error(`${what} is too large`);
  return n;
}

/**
 * Pays `amount` to `to` from the unlocked wallet key, with an absolute `fee`, change back
 * to the wallet's own address. Returns {txid, size, fee, change}.
 */
export async function sendPayment(key, to, amount, fee) {
  decodeAddress(to); // bad address -> AddressError
  const { utxos } = await api.address(key.address);
  const { selected, change } = selectCoins(utxos, amount, fee);
  const outputs = [{ amount, address: to }];
  if (change > 0n) outputs.push({ amount: change, address: key.address });
  const tx = {
    inputs: selected.map((u) => ({ txid: u.txid, vout: u.vout, publicKey: key.publicKey })),
    outputs,
  };
  const signed = await signTransfer(tx, selected.map(() => key.privateKey));
  const res = await api.submitTx(signed.hex);
  return { txid: res?.txid ?? signed.txid, size: signed.size, fee, change };
}
