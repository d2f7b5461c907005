// The status bar at the top of every page: height, best hash, difficulty, hashrate
// estimate and mempool size, refreshed when the push feed announces a change.

import { h, replace, testid } from "../dom.js";
import { link, difficulty, hashrate, short } from "../format.js";
import { estimateHashrate } from "../pow.js";

function stat(label, id, value) {
  return h("div", { class: "stat" }, h("span", { class: "stat-label", id: `${id}-label` }, label),
    testid(h("span", { class: "stat-value", "aria-labelledby": `${id}-label` }, value), id));
}

/** Fills #status-bar from /v1/status and the latest block summaries. */
export function renderStatus(status, latest) {
  const bar = document.getElementById("status-bar");
  const rate = estimateHashrate(latest.map((b) => ({ time: b.time, bits: b.bits })));
  replace(bar,
    stat("Height", "status-height", link.height(status.height)),
    stat("Best block", "status-best-hash", link.block(status.best_hash, short(status.best_hash, 6))),
    stat("Difficulty", "status-difficulty", difficulty(status.difficulty)),
    stat("Hashrate (est.)", "status-hashrate", hashrate(rate)),
    stat("Mempool", "status-mempool", `${status.mempool_size} tx`),
    stat("Network", "status-network", `${status.network}${status.dev ? " (dev)" : ""}`));
}

/** Shows the connection state of the push feed. */
export function renderConnection(state) {
  const el = document.getElementById("connection-status");
  const text = { open: "Live", reconnecting: "Node unreachable: reconnecting…", closed: "Node unreachable: retrying…", connecting: "Connecting…" }[state] ?? state;
  el.textContent = text;
  el.dataset.state = state;
  document.getElementById("offline-banner").hidden = state === "open" || state === "connecting";
}
