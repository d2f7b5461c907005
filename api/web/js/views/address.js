// #/address/<addr>: balances, spendable outputs and history. The address is checked
// (bech32m checksum, "bp" prefix) in the browser before the node is asked.

import { h, dl, table } from "../dom.js";
import { api } from "../api.js";
import { decodeAddress } from "../bech32m.js";
import { link, short, units, delta } from "../format.js";

/** The balance facts of an address view {confirmed, unconfirmed, immature}. */
export function balanceFacts(a) {
  return dl([
    ["Confirmed (spendable)", `${units(a.confirmed)} units`],
    ["Unconfirmed (mempool)", `${delta(a.unconfirmed)} units`],
    ["Immature (coinbase)", `${units(a.immature)} units`],
  ]);
}

/** A history table [{txid, height, delta}], newest first. */
export function historyTable(history) {
  if (!history.length) return h("p", { class: "muted" }, "No transactions yet.");
  const rows = [...history].reverse().map((e) => [
    link.tx(e.txid), e.height == null ? h("span", { class: "pending" }, "mempool") : link.height(e.height), delta(e.delta),
  ]);
  return table(["Txid", "Height", "Change"], rows);
}

function utxoTable(utxos) {
  if (!utxos.length) return h("p", { class: "muted" }, "No spendable outputs.");
  return table(["Output", "Amount", "Height", "Kind"], utxos.map((u) => [
    link.tx(u.txid, `${short(u.txid)}:${u.vout}`), units(u.amount),
    u.height == null ? "mempool" : String(u.height),
    u.coinbase ? (u.mature ? "coinbase" : "coinbase (immature)") : "transfer",
  ]));
}

export async function address(root, [addr]) {
  decodeAddress(addr); // throws AddressError with a clear message
  const a = await api.address(addr);
  root.append(
    h("section", { class: "card" },
      h("h2", {}, "Address"),
      h("p", { class: "mono break" }, a.address),
      balanceFacts(a),
      h("h3", {}, `Spendable outputs (${a.utxos.length})`),
      utxoTable(a.utxos),
      h("h3", {}, `History (${a.history.length})`),
      historyTable(a.history)));
}
