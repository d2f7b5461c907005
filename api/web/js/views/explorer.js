// Explorer views: home (latest blocks + mempool), block, transaction, mempool. Each is
// an async function that fills a container; the app re-runs it when the push feed says
// the chain or the mempool changed.

import { h, dl, table, testid } from "../dom.js";
import { api } from "../api.js";
import { link, short, units, time, bits } from "../format.js";
import { verifyProof } from "../merkle.js";

const LATEST = 15;

/** The newest `count` block summaries, newest first. */
export async function latestBlocks(height, count = LATEST) {
  const from = Math.max(0, height - count + 1);
  const blocks = await api.blocks(from, count);
  return [...blocks].sort((a, b) => b.height - a.height);
}

function blockTable(blocks) {
  const rows = blocks.map((b) => [link.height(b.height), link.block(b.hash), time(b.time), String(b.tx_count), units(b.size)]);
  const t = table(["Height", "Hash", "Time", "Txs", "Bytes"], rows);
  return testid(t, "block-list");
}

function mempoolTable(entries) {
  if (!entries.length) return testid(h("p", { class: "muted" }, "The mempool is empty."), "mempool-list");
  const sorted = [...entries].sort((a, b) => b.fee_rate - a.fee_rate);
  const rows = sorted.map((t) => [link.tx(t.txid), units(t.fee), units(t.size), units(Math.round(t.fee_rate))]);
  return testid(table(["Txid", "Fee", "Bytes", "Fee rate (per kB)"], rows), "mempool-list");
}

/** #/ : latest blocks and the mempool side by side. */
export async function home(root, _params, ctx) {
  const [blocks, mempool] = await Promise.all([latestBlocks(ctx.status.height), api.mempool()]);
  root.append(
    h("div", { class: "columns" },
      h("section", { class: "card", "aria-labelledby": "blocks-title" }, h("h2", { id: "blocks-title" }, "Latest blocks"), blockTable(blocks)),
      h("section", { class: "card", "aria-labelledby": "mempool-title" },
        h("h2", { id: "mempool-title" }, `Mempool (${mempool.length})`), mempoolTable(mempool))));
}

/** #/mempool */
export async function mempool(root) {
  const entries = await api.mempool();
  const total = entries.reduce((s, e) => s + BigInt(e.fee), 0n);
  root.append(
    h("section", { class: "card" },
      h("h2", {}, "Mempool"),
      h("p", {}, `${entries.length} transactions waiting, ${units(total)} units of fees, ordered by fee rate.`),
      mempoolTable(entries)));
}

/** #/block/<hash|height> */
export async function block(root, [id]) {
  const b = await api.block(id);
  const hd = b.header;
  root.append(
    h("section", { class: "card" },
      h("h2", {}, `Block ${b.height}`),
      dl([
        ["Hash", h("span", { class: "mono break" }, b.hash)],
        ["Height", String(b.height)],
        ["Confirmations", String(b.confirmations)],
        ["Previous", b.height > 0 ? link.block(hd.prev_hash, hd.prev_hash) : "— (genesis)"],
        ["Merkle root", h("span", { class: "mono break" }, hd.merkle_root)],
        ["Time", time(hd.time)],
        ["Bits", bits(hd.bits)],
        ["Nonce", String(hd.nonce)],
        ["Version", String(hd.version)],
      ]),
      h("h3", {}, `Transactions (${b.txs.length})`),
      table(["#", "Txid", "Kind", "Outputs", "Fee"], b.txs.map((t, i) => [
        String(i), link.tx(t.txid), t.coinbase ? "coinbase" : "transfer",
        units(t.outputs.reduce((s, o) => s + BigInt(o.amount), 0n)), t.coinbase ? "—" : units(t.fee),
      ]))));
}

async function proofView(t) {
  if (!t.merkle_proof || !t.block_hash) return h("span", { class: "muted" }, "none (not in a block yet)");
  const { header } = await api.block(t.block_hash);
  const ok = await verifyProof(t.txid, t.merkle_proof, header.merkle_root);
  return h("div", {},
    h("p", { class: ok ? "ok" : "bad" }, ok ? "✓ Verified in this browser against the block's merkle root" : "✗ The proof does not match the block's merkle root"),
    dl([
      ["Leaf index", String(t.merkle_proof.index)],
      ["Branch", t.merkle_proof.branch.length ? h("ol", { class: "mono small" }, t.merkle_proof.branch.map((x) => h("li", {}, x))) : "— (only transaction)"],
    ]));
}

/** #/tx/<txid> */
export async function tx(root, [id]) {
  const t = await api.tx(id);
  const ins = t.coinbase
    ? h("p", {}, "Coinbase: new coins (reward + fees).")
    : table(["Spends", "Address", "Amount"], t.inputs.map((i) => [link.tx(i.txid, `${short(i.txid)}:${i.vout}`), link.address(i.address), units(i.amount)]));
  const outs = table(["#", "Address", "Amount"], t.outputs.map((o, n) => [String(n), link.address(o.address), units(o.amount)]));
  root.append(
    h("section", { class: "card" },
      h("h2", {}, t.coinbase ? "Coinbase transaction" : "Transaction"),
      dl([
        ["Txid", h("span", { class: "mono break" }, t.txid)],
        ["Status", t.block_hash ? h("span", {}, "in block ", link.block(t.block_hash), ` at height ${t.height}`) : h("span", { class: "pending" }, "unconfirmed (in the mempool)")],
        ["Confirmations", String(t.confirmations ?? 0)],
        ["Fee", t.coinbase ? "—" : `${units(t.fee)} units`],
        ["Size", `${units(t.size)} bytes`],
      ]),
      h("div", { class: "columns" }, h("div", {}, h("h3", {}, "Inputs"), ins), h("div", {}, h("h3", {}, "Outputs"), outs)),
      h("h3", {}, "Merkle proof"),
      await proofView(t),
      h("details", {}, h("summary", {}, "Raw transaction (hex)"), h("pre", { class: "mono break small" }, t.hex))));
}
