// Explorer views: home (charts, latest blocks, mempool), a page of the block list, block,
// transaction, mempool. Each is an async function that fills a container; the app re-runs
// it when the push feed says the chain or the mempool changed.

import { h, dl, table, testid } from "../dom.js";
import { api } from "../api.js";
import { link, short, units, time, bits, ago, plural, difficulty, hashrate, duration } from "../format.js";
import { verifyProof } from "../merkle.js";
import { withCopy } from "../copy.js";
import { changeFlags, sentAmount, feeRate, blockReward } from "../txinfo.js";
import { difficultySeries, intervalSeries, hashrateSeries, mean, Samples } from "../charts.js";
import { chartCard } from "./charts.js";
import { TxPages } from "../txpages.js";

const PAGE = 15; // blocks per page of the list
const CHART_BLOCKS = 120; // blocks the charts are drawn from
const HOME_MEMPOOL = 15;

/** The newest `count` block summaries, newest first. */
export async function latestBlocks(height, count = PAGE) {
  const from = Math.max(0, height - count + 1);
  const blocks = await api.blocks(from, count);
  return [...blocks].sort((a, b) => b.height - a.height);
}

const when = (secs) => h("time", { datetime: new Date(secs * 1000).toISOString(), title: time(secs) }, ago(secs));

function blockTable(blocks) {
  const rows = blocks.map((b) => [link.height(b.height), link.block(b.hash), when(b.time), String(b.tx_count), units(b.size)]);
  return testid(table(["Height", "Hash", "Mined", "Txs", "Bytes"], rows), "block-list");
}

/** Links to the newer and older pages around a page ending at `top`. */
function pager(top, tip) {
  const newer = Math.min(tip, top + PAGE);
  const older = top - PAGE;
  return h("nav", { class: "pager", "aria-label": "Block list pages" },
    top < tip ? h("a", { href: newer >= tip ? "#/" : `#/blocks/${newer}`, "data-testid": "blocks-newer" }, "← Newer") : h("span", {}),
    older >= 0 ? h("a", { href: `#/blocks/${older}`, "data-testid": "blocks-older" }, "Older blocks →") : h("span", {}));
}

// ------------------------------------------------------------------ mempool rows

const pageOpened = Date.now() / 1000;
const firstSeen = new Map(); // txid -> unix seconds this page first saw it (0: before it opened)
let firstListing = true;
const txCache = new Map(); // txid -> tx view (a transaction's content never changes)

function noteSeen(entries) {
  const now = Date.now() / 1000;
  for (const e of entries) if (!firstSeen.has(e.txid)) firstSeen.set(e.txid, firstListing ? 0 : now);
  firstListing = false;
}

function age(txid) {
  const seen = firstSeen.get(txid);
  if (!seen) return h("span", { class: "muted", title: "in the mempool before this page was opened" }, `> ${duration(Date.now() / 1000 - pageOpened)}`);
  return ago(seen);
}

async function txViews(txids) {
  await Promise.all(txids.filter((t) => !txCache.has(t)).map(async (t) => {
    try {
      txCache.set(t, await api.tx(t));
    } catch {
      /* shown as "—" */
    }
  }));
  if (txCache.size > 5000) txCache.clear();
  return txids.map((t) => txCache.get(t));
}

async function mempoolTable(entries, limit = entries.length) {
  noteSeen(entries);
  if (!entries.length) return testid(h("p", { class: "muted" }, "The mempool is empty."), "mempool-list");
  const shown = [...entries].sort((a, b) => b.fee_rate - a.fee_rate).slice(0, limit);
  const views = await txViews(shown.map((e) => e.txid));
  const rows = shown.map((t, i) => [
    link.tx(t.txid), views[i] ? units(sentAmount(views[i])) : "—", units(t.fee), units(Math.round(t.fee_rate)), units(t.size), age(t.txid),
  ]);
  return testid(table(["Txid", "Amount", "Fee", "Fee rate (per kB)", "Bytes", "Age"], rows), "mempool-list");
}

/** Fee rates of the mempool as "min – median – max". */
function feeRates(entries) {
  if (!entries.length) return "no transactions waiting";
  const r = entries.map((e) => e.fee_rate).sort((a, b) => a - b);
  return `fee rates ${units(r[0])} – ${units(r[r.length >> 1])} – ${units(r.at(-1))} per kB (min – median – max)`;
}

// ------------------------------------------------------------------ home

const mempoolSamples = new Samples(120);

function clock(secs) {
  return new Date(secs * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function charts(blocks, mempool) {
  mempoolSamples.add(Math.round(Date.now() / 1000), mempool.length);
  const intervals = intervalSeries(blocks);
  const height = (x) => `#${x}`;
  return h("div", { class: "charts" },
    chartCard({ id: "chart-difficulty", title: "Difficulty", points: difficultySeries(blocks), format: difficulty, xLabel: height, zero: false }),
    chartCard({ id: "chart-block-interval", title: "Block interval", points: intervals, format: (s) => duration(s), xLabel: height, bars: true,
      note: intervals.length ? `mean ${duration(mean(intervals))} over the last ${plural(intervals.length, "block")}` : null }),
    chartCard({ id: "chart-hashrate", title: "Hashrate (est., 10 blocks)", points: hashrateSeries(blocks), format: hashrate, xLabel: height }),
    chartCard({ id: "chart-mempool", title: "Mempool (transactions)", points: mempoolSamples.points, format: (n) => units(Math.round(n)), xLabel: clock,
      note: `since this page opened · ${feeRates(mempool)}` }));
}

/** #/ : charts, then the latest blocks and the mempool side by side. */
export async function home(root, _params, ctx) {
  const [recent, mempool] = await Promise.all([api.recentBlocks(CHART_BLOCKS), api.mempool()]);
  const tip = ctx.status.height;
  const latest = [...recent].sort((a, b) => b.height - a.height).slice(0, PAGE);
  root.append(
    charts(recent, mempool),
    h("div", { class: "columns" },
      h("section", { class: "card", "aria-labelledby": "blocks-title" }, h("h2", { id: "blocks-title" }, "Latest blocks"), blockTable(latest), pager(tip, tip)),
      h("section", { class: "card", "aria-labelledby": "mempool-title" },
        h("h2", { id: "mempool-title" }, `Mempool (${plural(mempool.length, "transaction")})`),
        await mempoolTable(mempool, HOME_MEMPOOL),
        mempool.length > HOME_MEMPOOL ? h("p", {}, h("a", { href: "#/mempool" }, `All ${plural(mempool.length, "transaction")} →`)) : null)));
}

/** #/blocks/<top height>: a page of PAGE blocks ending at `top`. */
export async function blocks(root, [topParam], ctx) {
  const tip = ctx.status.height;
  const top = Math.min(tip, Math.max(0, Number.parseInt(topParam ?? tip, 10) || 0));
  const list = await latestBlocks(top, PAGE);
  root.append(
    h("section", { class: "card" },
      h("h2", {}, `Blocks ${Math.max(0, top - PAGE + 1)}–${top}`),
      blockTable(list),
      pager(top, tip)));
}

/** #/mempool */
export async function mempool(root) {
  const entries = await api.mempool();
  const total = entries.reduce((s, e) => s + BigInt(e.fee), 0n);
  root.append(
    h("section", { class: "card" },
      h("h2", {}, "Mempool"),
      h("p", {}, `${plural(entries.length, "transaction")} waiting, ${units(total)} units of fees, ordered by fee rate; ${feeRates(entries)}.`),
      await mempoolTable(entries)));
}

// ------------------------------------------------------------------ block

/** #/block/<hash|height> */
export async function block(root, [id], ctx) {
  const b = await api.block(id);
  const hd = b.header;
  const r = blockReward(b);
  const tip = ctx.status?.height ?? b.height;
  const next = b.main_chain !== false && b.height < tip ? h("a", { href: `#/block/${b.height + 1}`, "data-testid": "block-next" }, `Block ${b.height + 1} →`) : h("span", { class: "muted" }, "— (this is the tip)");
  root.append(
    h("section", { class: "card" },
      h("h2", {}, `Block ${b.height}`),
      h("nav", { class: "pager", "aria-label": "Neighbouring blocks" },
        b.height > 0 ? h("a", { href: `#/block/${hd.prev_hash}`, "data-testid": "block-prev" }, `← Block ${b.height - 1}`) : h("span", {}),
        next),
      dl([
        ["Hash", withCopy(h("span", { class: "mono break" }, b.hash), b.hash, "block hash")],
        ["Height", String(b.height)],
        ["Confirmations", String(b.confirmations)],
        ["Mined", h("span", {}, time(hd.time), " · ", ago(hd.time))],
        ["Miner", r.miner ? withCopy(link.address(r.miner, r.miner), r.miner, "address") : "—"],
        ["Reward", `${units(r.subsidy)} units + ${units(r.fees)} fees = ${units(r.coinbaseTotal)}`],
        ["Fees", `${units(r.fees)} units`],
        ["Previous", b.height > 0 ? link.block(hd.prev_hash, hd.prev_hash) : "— (genesis)"],
        ["Merkle root", h("span", { class: "mono break" }, hd.merkle_root)],
        ["Size", `${units(b.size)} bytes`],
        ["Bits", bits(hd.bits)],
        ["Nonce", String(hd.nonce)],
        ["Version", String(hd.version)],
      ]),
      h("h3", {}, plural(b.tx_count ?? b.txs.length, "transaction")),
      blockTxs(b)));
}

const txRow = (t, i) => [
  String(i), link.tx(t.txid), t.coinbase ? "coinbase" : "transfer",
  units(t.outputs.reduce((s, o) => s + BigInt(o.amount), 0n)), t.coinbase ? "—" : units(t.fee),
];

/** The block's transactions, a page at a time: a "more" control fetches the next page. */
function blockTxs(b) {
  const pages = new TxPages(b, (offset) => api.blockPage(b.hash, offset));
  const list = testid(table(["#", "Txid", "Kind", "Outputs", "Fee"], b.txs.map((t, i) => txRow(t, (b.tx_offset ?? 0) + i))), "block-txs");
  const shown = h("p", { class: "muted", "data-testid": "block-txs-shown" });
  const more = h("button", { type: "button", "data-testid": "block-txs-more" }, "Show more transactions");
  const update = () => {
    shown.textContent = `${plural(pages.txs.length, "transaction")} of ${pages.total} shown`;
    more.hidden = !pages.more;
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const rows = await pages.loadMore();
      const body = list.querySelector("tbody") ?? list;
      for (const { tx, index } of rows) body.append(h("tr", {}, txRow(tx, index).map((c) => h("td", {}, c))));
    } catch (e) {
      shown.textContent = `Could not load more: ${e.message}`;
      return;
    } finally {
      more.disabled = false;
    }
    update();
  });
  update();
  return h("div", {}, list, shown, more);
}

// ------------------------------------------------------------------ transaction

function proofView(t, header) {
  if (!t.merkle_proof || !header) return h("span", { class: "muted" }, "none (not in a block yet)");
  return verifyProof(t.txid, t.merkle_proof, header.merkle_root).then((ok) => h("div", {},
    h("p", { class: ok ? "ok" : "bad" }, ok ? "✓ Verified in this browser against the block's merkle root" : "✗ The proof does not match the block's merkle root"),
    dl([
      ["Leaf index", String(t.merkle_proof.index)],
      ["Branch", t.merkle_proof.branch.length ? h("ol", { class: "mono small" }, t.merkle_proof.branch.map((x) => h("li", {}, x))) : "— (only transaction)"],
    ])));
}

/** #/tx/<txid> */
export async function tx(root, [id]) {
  const t = await api.tx(id);
  const header = t.block_hash ? (await api.block(t.block_hash)).header : null;
  const change = changeFlags(t);
  const ins = t.coinbase
    ? h("p", {}, "Coinbase: new coins (reward + fees).")
    : table(["Spends", "Address", "Amount"], t.inputs.map((i) => [link.tx(i.txid, `${short(i.txid)}:${i.vout}`), link.address(i.address), units(i.amount)]));
  const outs = table(["#", "Address", "Amount", ""], t.outputs.map((o, n) => [
    String(n), link.address(o.address), units(o.amount),
    change[n] ? h("span", { class: "tag", title: "pays back an address this transaction spends from", "data-testid": "change-output" }, "change") : "",
  ]));
  root.append(
    h("section", { class: "card" },
      h("h2", {}, t.coinbase ? "Coinbase transaction" : "Transaction"),
      dl([
        ["Txid", withCopy(h("span", { class: "mono break" }, t.txid), t.txid, "txid")],
        ["Status", t.block_hash ? h("span", {}, "in block ", link.block(t.block_hash), ` at height ${t.height}`) : h("span", { class: "pending" }, "unconfirmed (in the mempool)")],
        ["Time", header ? h("span", {}, time(header.time), " · ", ago(header.time)) : h("span", { class: "muted" }, "not mined yet")],
        ["Confirmations", String(t.confirmations ?? 0)],
        ["Amount sent", `${units(sentAmount(t))} units`],
        ["Fee", t.coinbase ? "—" : `${units(t.fee)} units`],
        ["Fee rate", t.coinbase ? "—" : `${units(feeRate(t.fee, t.size))} units per kB`],
        ["Size", `${units(t.size)} bytes`],
      ]),
      h("div", { class: "columns" }, h("div", {}, h("h3", {}, "Inputs"), ins), h("div", {}, h("h3", {}, "Outputs"), outs)),
      h("h3", {}, "Merkle proof"),
      await proofView(t, header),
      h("details", {}, h("summary", {}, "Raw transaction (hex)"), h("pre", { class: "mono break small" }, t.hex))));
}
