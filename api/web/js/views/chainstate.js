// #/chainstate: the UTXO set, from the seed-compatible /api/get_chainstate
// ({txid: {serializedUnspentOutputs: "[{outputID, val, publicKeyHash}]"}}).

import { h, table } from "../dom.js";
import { api } from "../api.js";
import { link, units } from "../format.js";

const MAX_ROWS = 1000;

/** Flattens the seed shape into rows {txid, vout, amount, owner}. */
export function chainstateRows(state) {
  const rows = [];
  for (const [txid, entry] of Object.entries(state ?? {})) {
    let outs = [];
    try {
      outs = JSON.parse(entry.serializedUnspentOutputs);
    } catch {
      continue;
    }
    for (const o of outs) rows.push({ txid, vout: o.outputID, amount: o.val, owner: o.publicKeyHash });
  }
  return rows;
}

export async function chainstate(root, _params, ctx) {
  const rows = chainstateRows(await api.chainstate());
  const total = rows.reduce((s, r) => s + BigInt(r.amount), 0n);
  const shown = rows.slice(0, MAX_ROWS);
  const owner = (o) => (typeof o === "string" && o.startsWith("bp1") ? link.address(o) : h("span", { class: "mono" }, String(o)));
  root.append(
    h("section", { class: "card" },
      h("h2", {}, "Chainstate (UTXO set)"),
      h("p", {}, `${rows.length} unspent outputs holding ${units(total)} units`,
        ctx.status?.utxo_set_hash ? h("span", {}, " · set hash ", h("span", { class: "mono small" }, ctx.status.utxo_set_hash)) : null),
      rows.length > MAX_ROWS ? h("p", { class: "muted" }, `Showing the first ${MAX_ROWS}.`) : null,
      table(["Output", "Amount", "Owner"], shown.map((r) => [link.tx(r.txid, `${r.txid.slice(0, 12)}…:${r.vout}`), units(r.amount), owner(r.owner)]))));
}
