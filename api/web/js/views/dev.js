// The dev panel, shown only when /v1/status says dev: true: mine a block to an address
// (POST /api/mine_block {address, txAmount}) and reset with demo data (/api/reset_system).

import { h, field, testid, replace } from "../dom.js";
import { api } from "../api.js";
import { decodeAddress } from "../bech32m.js";
import { toast, toastError } from "../toast.js";

async function busy(button, action) {
  button.disabled = true;
  try {
    await action();
  } catch (e) {
    toastError(e);
  } finally {
    button.disabled = false;
  }
}

/** Shows or hides the panel; fills it once. `defaultAddress()` gives the wallet's address. */
export function renderDevPanel(dev, defaultAddress) {
  const panel = document.getElementById("dev-panel");
  panel.hidden = !dev;
  if (!dev || panel.dataset.ready) return;
  panel.dataset.ready = "1";
  const address = testid(h("input", { type: "text", spellcheck: "false", placeholder: "bp1… (your wallet's if empty)" }), "dev-mine-address");
  const count = testid(h("input", { type: "number", min: "1", value: "5", inputmode: "numeric" }), "dev-mine-txamount");
  const mine = testid(h("button", { type: "button" }, "Mine a block"), "dev-mine-button");
  const reset = testid(h("button", { type: "button", class: "danger" }, "Reset with demo data"), "dev-reset-button");
  mine.addEventListener("click", () => busy(mine, async () => {
    const to = address.value.trim() || defaultAddress();
    if (!to) throw new Error("enter an address to pay the reward to (or create a wallet)");
    decodeAddress(to);
    const n = Number(count.value || 5);
    // The node (like Pocket) refuses fewer than one: it is the most the block takes.
    if (!Number.isInteger(n) || n < 1) throw new Error("transactions per block must be a whole number, at least 1");
    const msg = await api.mineBlock(to, n);
    toast(typeof msg === "string" ? msg : "Block mined", "success");
  }));
  reset.addEventListener("click", () => busy(reset, async () => {
    if (!confirm("Wipe the node's chain and load the demo data?")) return;
    const msg = await api.resetSystem();
    toast(typeof msg === "string" ? msg : "System reset", "success");
  }));
  // Collapsed on a phone (it would push the page down a screen), open on a wide screen.
  const wide = globalThis.matchMedia?.("(min-width: 721px)").matches ?? true;
  replace(panel,
    h("details", { open: wide },
      h("summary", { "data-testid": "dev-panel-toggle" }, h("h2", {}, "Dev mode")),
      h("p", { class: "muted small" }, "This node runs with --dev: these buttons change its chain."),
      h("div", { class: "dev-row" },
        h("div", { class: "field grow" }, h("label", { htmlFor: "dev-mine-address" }, "Reward address"), address),
        field("Max pool transactions", count),
        mine, reset)));
}
