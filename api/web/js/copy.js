// Copy-to-clipboard buttons next to hashes, txids and addresses.

import { h } from "./dom.js";
import { toast } from "./toast.js";

/** A small button that copies `text`; `what` names it for screen readers and the toast. */
export function copyButton(text, what = "value") {
  const b = h("button", { type: "button", class: "copy", title: `Copy ${what}`, "aria-label": `Copy ${what}`, "data-copy": text }, "Copy");
  b.addEventListener("click", async (ev) => {
    ev.preventDefault();
    try {
      await navigator.clipboard.writeText(text);
      toast(`Copied ${what}`, "success");
    } catch {
      toast("Copy failed: select the text and copy it by hand", "error");
    }
  });
  return b;
}

/** `node` followed by a copy button for `text`. */
export function withCopy(node, text, what) {
  return h("span", { class: "with-copy" }, node, copyButton(text, what));
}
