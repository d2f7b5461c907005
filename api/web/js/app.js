// The page: wires the push feed, the status bar, the routed views, the dev panel and
// the browser wallet together. Nothing here polls: every refresh follows a pushed event
// (or a user action).

import { api, subscribe, ApiError } from "./api.js";
import { h, replace } from "./dom.js";
import { units } from "./format.js";
import { AddressError } from "./bech32m.js";
import { ed25519Supported } from "./ed25519.js";
import { parseRoute, searchTarget } from "./router.js";
import { toast, clearToasts } from "./toast.js";
import { BrowserWallet } from "./wallet.js";
import * as explorer from "./views/explorer.js";
import { address } from "./views/address.js";
import { chainstate } from "./views/chainstate.js";
import { walletView, showBalance, refreshHistory } from "./views/wallet.js";
import { renderStatus, renderConnection } from "./views/status.js";
import { renderDevPanel } from "./views/dev.js";
import { mining } from "./views/mining.js";

const VIEWS = {
  home: { render: explorer.home, live: true, title: "Explorer" },
  blocks: { render: explorer.blocks, live: true, title: "Blocks" },
  block: { render: explorer.block, live: true, title: "Block" },
  tx: { render: explorer.tx, live: true, title: "Transaction" },
  address: { render: address, live: true, title: "Address" },
  mempool: { render: explorer.mempool, live: true, title: "Mempool" },
  chainstate: { render: chainstate, live: true, title: "Chainstate" },
  mining: { render: mining, live: true, title: "Mining" },
  wallet: { render: walletView, live: false, title: "Wallet" },
  search: { render: search, live: false, title: "Search" },
  notfound: { render: notFound, live: false, title: "Not found" },
};

const REFRESH_DELAY_MS = 250; // coalesces bursts of pushed events into one refresh

const ctx = {
  status: null,
  wallet: new BrowserWallet(),
  ed25519: false,
  mnemonicOnScreen: false, // a just-created mnemonic is being shown (once)
};

let renderSeq = 0;
let refreshTimer = null;
let stopWalletFeed = null;

// ------------------------------------------------------------------ views

async function notFound(root) {
  root.append(h("section", { class: "card" }, h("h2", {}, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Back to the explorer"))));
}

/** #/search/<hex>: a txid or a block hash. */
async function search(root, [q]) {
  for (const [kind, fetcher] of [["tx", api.tx], ["block", api.block]]) {
    try {
      await fetcher(q);
      location.replace(`#/${kind}/${q}`);
      return;
    } catch (e) {
      if (e.status !== 404 && e.status !== 400) throw e;
    }
  }
  root.append(h("section", { class: "card" }, h("h2", {}, "Nothing found"), h("p", { class: "mono break" }, `No transaction or block ${q}.`)));
}

function errorCard(e) {
  let title = "Something went wrong";
  if (e instanceof AddressError) title = "Bad address";
  else if (e instanceof ApiError && e.code === "node_unreachable") title = "Node unreachable";
  else if (e instanceof ApiError && e.status === 404) title = "Not found";
  return h("section", { class: "card error", role: "alert" }, h("h2", {}, title), h("p", {}, e.message));
}

function markNav(name) {
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.route === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

/** Renders the current route into #main (off-DOM first, so live refreshes don't flicker). */
async function renderRoute({ quiet = false } = {}) {
  const seq = ++renderSeq;
  const route = parseRoute();
  const view = VIEWS[route.name];
  markNav(route.name);
  document.title = `${view.title} · Bitplace`;
  const main = document.getElementById("main");
  const next = h("div", { class: "view" });
  if (!quiet) main.setAttribute("aria-busy", "true");
  try {
    if (!ctx.status && route.name !== "wallet") await loadStatus();
    await view.render(next, route.params, ctx);
  } catch (e) {
    replace(next, errorCard(e));
  }
  if (seq !== renderSeq) return; // a newer render won
  main.removeAttribute("aria-busy");
  const scroll = window.scrollY;
  replace(main, next);
  if (quiet) window.scrollTo(0, scroll);
}

// ------------------------------------------------------------------ status + live feed

async function loadStatus() {
  const status = await api.status();
  ctx.status = status;
  let latest = [];
  try {
    latest = await explorer.latestBlocks(status.height, 20);
  } catch {
    /* the hashrate estimate is optional */
  }
  renderStatus(status, latest);
  renderDevPanel(status.dev, () => ctx.wallet.address);
  return status;
}

/** After pushed events: refresh the status bar and re-render a live view. */
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(async () => {
    try {
      await loadStatus();
    } catch (e) {
      return; // the connection banner already says the node is unreachable
    }
    if (VIEWS[parseRoute().name].live) renderRoute({ quiet: true });
  }, REFRESH_DELAY_MS);
}

function startChainFeed() {
  renderConnection("connecting");
  let wasDown = false;
  subscribe(
    ["blocks", "mempool"],
    {
      block_connected: (d) => {
        scheduleRefresh();
        announce(`New block ${d.height}`);
      },
      block_disconnected: (d) => {
        scheduleRefresh();
        announce(`Block ${d.height} disconnected (reorganisation)`);
      },
      mempool_added: scheduleRefresh,
      mempool_removed: scheduleRefresh,
    },
    (state) => {
      renderConnection(state);
      if (state === "open" && (wasDown || !ctx.status)) {
        wasDown = false;
        scheduleRefresh();
      } else if (state !== "open") {
        wasDown = true;
      }
    },
  );
}

/** Screen-reader announcement of chain events (polite, not a visible toast). */
function announce(text) {
  const el = document.getElementById("live-announcer");
  el.textContent = text;
}

// ------------------------------------------------------------------ wallet feed

function startWalletFeed() {
  stopWalletFeed?.();
  stopWalletFeed = null;
  const addr = ctx.wallet.address;
  updateWalletBadge(null);
  if (!addr) return;
  stopWalletFeed = subscribe([`address:${addr}`], {
    balance: (b) => {
      if (b.address && b.address !== addr) return;
      updateWalletBadge(b);
      showBalance(b);
      refreshHistory(addr);
    },
  });
  api.address(addr).then(updateWalletBadge, () => {});
}

function updateWalletBadge(b) {
  const badge = document.getElementById("wallet-badge");
  if (!ctx.wallet.address) {
    badge.textContent = "";
    return;
  }
  // Nothing until there is something to show: no "0 u" for a new or empty wallet.
  const total = b ? BigInt(b.confirmed) + BigInt(b.immature ?? 0) : 0n;
  badge.textContent = total > 0n ? `${units(b.confirmed)} u` : "";
}

// ------------------------------------------------------------------ boot

function wireSearch() {
  const form = document.getElementById("search-form");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("search-input");
    const target = searchTarget(input.value);
    if (!target) {
      toast("Search for a block height, a block hash, a txid or a bp1… address", "error");
      return;
    }
    input.value = "";
    location.hash = target;
  });
}

async function boot() {
  ctx.ed25519 = await ed25519Supported();
  wireSearch();
  window.addEventListener("hashchange", () => {
    clearToasts(); // a message belongs to the page it was about
    renderRoute();
  });
  document.getElementById("main").addEventListener("rerender", () => renderRoute());
  ctx.wallet.addEventListener("change", () => {
    startWalletFeed();
    renderDevPanel(ctx.status?.dev, () => ctx.wallet.address);
    if (parseRoute().name === "wallet" && !ctx.mnemonicOnScreen) renderRoute({ quiet: true });
  });
  startChainFeed();
  startWalletFeed();
  try {
    await loadStatus();
  } catch {
    /* the view's error card says it (once); the connection banner follows the feed */
  }
  renderRoute();
}

boot();
