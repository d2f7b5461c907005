// Toasts in an aria-live region: info is announced politely, errors assertively. Each
// dismisses itself; the same message is never shown twice at once; a page change clears
// them (clearToasts), so a message does not follow the visitor to another page.

import { h } from "./dom.js";

export const LIFETIME_MS = 6000;

function region(kind) {
  return document.getElementById(kind === "error" ? "toasts-alert" : "toasts");
}

/** Shows a message for a few seconds; kind: "info" | "success" | "error". */
export function toast(message, kind = "info") {
  const box = region(kind);
  if (!box) return;
  for (const old of box.querySelectorAll(".toast")) {
    if (old.dataset.message === message) old.remove(); // shown again: one copy, timer restarted
  }
  const el = h("div", { class: `toast toast-${kind}`, "data-message": message }, h("span", {}, message));
  const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
  close.addEventListener("click", () => el.remove());
  el.append(close);
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 2 * LIFETIME_MS : LIFETIME_MS);
}

/** An error toast from any thrown value. */
export function toastError(err, prefix = "") {
  toast(`${prefix}${err?.message ?? String(err)}`, "error");
}

/** Removes every toast (on navigation). */
export function clearToasts() {
  for (const kind of ["info", "error"]) region(kind)?.replaceChildren();
}
