// Toasts in an aria-live region: info is announced politely, errors assertively.

import { h } from "./dom.js";

const LIFETIME_MS = 6000;

function region(kind) {
  return document.getElementById(kind === "error" ? "toasts-alert" : "toasts");
}

/** Shows a message for a few seconds; kind: "info" | "success" | "error". */
export function toast(message, kind = "info") {
  const el = h("div", { class: `toast toast-${kind}` }, message);
  const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
  close.addEventListener("click", () => el.remove());
  el.append(close);
  region(kind)?.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 2 * LIFETIME_MS : LIFETIME_MS);
}

/** An error toast from any thrown value. */
export function toastError(err, prefix = "") {
  toast(`${prefix}${err?.message ?? String(err)}`, "error");
}
