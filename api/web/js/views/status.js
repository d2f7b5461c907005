// The status bar at the top of every page: height, best hash, difficulty, hashrate
// estimate and mempool size, refreshed when the push feed announces a change.

import { h, replace, testid } from "../dom.js";
import { link, difficulty, hashrate, short, plural } from "../format.js";
import { estimateHashrate } from "../pow.js";

function stat(label, id, value) {
  return h("div", { class: "stat" }, h("span", { class: "stat-label", id: `${id}-label` }, label),
    testid(h("span", { class: "stat-value", "aria-labelledby": `${id}-label` }, value), id));
}

/** Fills #status-bar from /v1/status and the latest block summaries. */
export function renderStatus(status, latest) {
  const bar = document.getElementById("status-bar");
  // From the latest blocks the page already holds, genesis excluded (its time is a chain
  // constant, not when it was mined), so the figure follows each pushed block; the node's
  // hashrate_estimate (same rule over its last 20 blocks) as a fallback.
  const own = estimateHashrate(latest.filter((b) => b.height > 0).map((b) => ({ time: b.time, bits: b.bits })));
  const rate = own ?? (Number.isFinite(status.hashrate_estimate) ? status.hashrate_estimate : null);
  replace(bar,
    stat("Height", "status-height", link.height(status.height)),
    stat("Best block", "status-best-hash", link.block(status.best_hash, short(status.best_hash, 6))),
    stat("Difficulty", "status-difficulty", difficulty(status.difficulty)),
    stat("Hashrate (est.)", "status-hashrate", hashrate(rate)),
    stat("Mempool", "status-mempool", plural(status.mempool_size, "tx", "txs")),
    stat("Network", "status-network", networkLabel(status)));
}

/** "dev", "main", or "main (dev mode)": the dev flag is only news on a non-dev network. */
export function networkLabel(status) {
  return status.dev && status.network !== "dev" ? `${status.network} (dev mode)` : String(status.network);
}

/** Shows the connection state of the push feed. */
export function renderConnection(state) {
  const el = document.getElementById("connection-status");
  const text = { open: "Live", reconnecting: "Node unreachable: reconnecting…", closed: "Node unreachable: retrying…", connecting: "Connecting…" }[state] ?? state;
  el.textContent = text;
  el.dataset.state = state;
  document.getElementById("offline-banner").hidden = state === "open" || state === "connecting";
}
