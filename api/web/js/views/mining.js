// #/mining: the browser miner panel (WebGPU, the native kernel) and the node's Stratum
// workers, live. The panel is built once and kept: the miner goes on while the visitor
// moves between pages, and a live re-render of this view re-attaches the same panel.

import { h, dl, table, testid, replace } from "../dom.js";
import { api, subscribe } from "../api.js";
import { decodeAddress } from "../bech32m.js";
import { BrowserMiner } from "../browserminer.js";
import { expectedHashes } from "../mining.js";
import { hashrate, link, ago, duration, units, plural } from "../format.js";

const miner = new BrowserMiner();
let panel = null;

function minerState(m) {
  if (m.unavailable) return m.unavailable;
  if (m.error) return m.error;
  if (!m.running) return "Stopped.";
  return m.height == null ? "Starting…" : `Mining block ${m.height}.`;
}

/** Expected time to a block at this rate, "—" when it cannot be told. */
function expectedTime(m) {
  const rate = m.hashrate;
  if (!m.job || !(rate > 0)) return "—";
  return duration(expectedHashes(m.job.target) / rate);
}

function buildPanel(ctx) {
  const address = testid(h("input", { type: "text", spellcheck: "false", autocomplete: "off", placeholder: "bp1… reward address" }), "browser-miner-address");
  const start = testid(h("button", { type: "button" }, "Start mining"), "browser-miner-start");
  const rate = testid(h("span", { class: "mono" }, hashrate(0)), "browser-miner-rate");
  const blocks = testid(h("span", {}, "0"), "browser-miner-blocks");
  const adapter = testid(h("span", {}, "—"), "browser-miner-adapter");
  const eta = h("span", {}, "—");
  const last = h("span", {}, "—");
  const state = testid(h("p", { class: "muted", role: "status" }), "browser-miner-status");
  const noGpu = !globalThis.navigator?.gpu;
  if (noGpu) {
    miner.unavailable = "This browser has no WebGPU, so it cannot mine here. Use a current Chrome, Edge or Safari (or Firefox with WebGPU enabled), or the native miner: bitplace-miner.";
    start.disabled = true;
  }
  const update = () => {
    start.textContent = miner.running ? "Stop mining" : "Start mining";
    start.setAttribute("aria-pressed", String(miner.running));
    rate.textContent = hashrate(miner.hashrate);
    blocks.textContent = String(miner.blocksFound);
    adapter.textContent = miner.adapter ?? "—";
    eta.textContent = expectedTime(miner);
    if (miner.lastBlock) replace(last, link.block(miner.lastBlock.hash), ` at height ${miner.lastBlock.height}`);
    state.textContent = minerState(miner);
    state.className = miner.error || miner.unavailable ? "form-error" : "muted";
    address.disabled = miner.running;
  };
  miner.addEventListener("change", update);
  start.addEventListener("click", () => {
    if (miner.running) return miner.stop();
    const to = address.value.trim() || ctx.wallet.address;
    try {
      if (!to) throw new Error("enter a reward address (or create a wallet first)");
      decodeAddress(to);
    } catch (e) {
      miner.error = e.message;
      update();
      return;
    }
    address.value = to;
    miner.start(to);
  });
  update();
  const el = h("section", { class: "card", "aria-labelledby": "browser-miner-title" },
    h("h2", { id: "browser-miner-title" }, "Mine in this browser"),
    h("p", { class: "muted small" }, "Your GPU searches nonces through WebGPU with the native miner's own kernel (", h("a", { href: "/shaders/sha256d.wgsl" }, "sha256d.wgsl"), "); every hit is re-checked here before it is sent to the node."),
    h("div", { class: "dev-row" }, h("div", { class: "field grow" }, h("label", { htmlFor: "browser-miner-address" }, "Reward address"), address), start),
    dl([
      ["Hashrate", rate],
      ["Blocks found", blocks],
      ["Adapter", adapter],
      ["Expected time to a block", eta],
      ["Last block found", last],
    ]),
    state);
  el.prefill = () => {
    if (!address.value && ctx.wallet.address && !miner.running) address.value = ctx.wallet.address;
  };
  return el;
}

// ------------------------------------------------------------------ Stratum workers

let workersFeed = null;
let workersBox = null;

/** Rows of the workers table from the /v1/mining/workers array. */
export function workerRows(workers, now = Date.now() / 1000) {
  return [...workers]
    .sort((a, b) => (b.hashrate ?? 0) - (a.hashrate ?? 0))
    .map((w) => [
      h("span", { class: "mono" }, String(w.worker ?? "—")),
      link.address(w.address),
      String(w.difficulty ?? "—"),
      hashrate(w.hashrate),
      `${units(w.shares_accepted ?? 0)} / ${units(w.shares_rejected ?? 0)} / ${units(w.shares_stale ?? 0)}`,
      String(w.blocks ?? 0),
      w.last_share_time ? ago(w.last_share_time, now) : "—",
      w.connected_since ? ago(w.connected_since, now) : "—",
    ]);
}

function workersTable(workers) {
  if (!workers.length) return h("p", { class: "muted" }, "No Stratum workers connected.");
  return table(["Worker", "Address", "Difficulty", "Hashrate", "Shares ok / rejected / stale", "Blocks", "Last share", "Connected"], workerRows(workers));
}

function showWorkers(workers) {
  if (!workersBox) return;
  replace(workersBox,
    h("p", { class: "muted small" }, `${plural(workers.length, "worker")} · pushed live by the node`),
    workersTable(workers));
}

async function workersCard() {
  workersBox = testid(h("div", {}), "stratum-workers");
  const workers = await api.workers().catch((e) => e);
  if (workers === null) {
    replace(workersBox, h("p", { class: "muted" }, "This node runs no Stratum server (GET /v1/mining/workers is not there)."));
  } else if (workers instanceof Error) {
    replace(workersBox, h("p", { class: "form-error" }, workers.message));
  } else {
    showWorkers(workers);
    workersFeed ??= subscribe(["workers"], { workers: (list) => Array.isArray(list) && showWorkers(list) });
  }
  return h("section", { class: "card", "aria-labelledby": "workers-title" }, h("h2", { id: "workers-title" }, "Stratum workers"), workersBox);
}

/** #/mining */
export async function mining(root, _params, ctx) {
  panel ??= buildPanel(ctx);
  panel.prefill();
  root.append(panel, await workersCard());
}

export { miner };
