// Display formatting: hashes, amounts, times, hashrates, and links to explorer routes.

import { h } from "./dom.js";

/** "0000ab…12cd" for long hashes. */
export function short(hash, keep = 8) {
  const s = String(hash ?? "");
  return s.length > 2 * keep + 1 ? `${s.slice(0, keep)}…${s.slice(-keep)}` : s;
}

/** Integer units with thousands separators (works for numbers and BigInts). */
export function units(n) {
  if (n == null) return "—";
  const neg = BigInt(n) < 0n;
  const digits = (neg ? -BigInt(n) : BigInt(n)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, " ");
  return `${neg ? "−" : ""}${digits}`;
}

/** Signed units, "+5" / "−3". */
export function delta(n) {
  return BigInt(n) > 0n ? `+${units(n)}` : units(n);
}

/** Local date-time of unix seconds. */
export function time(secs) {
  return secs == null ? "—" : new Date(secs * 1000).toLocaleString();
}

/** "12.3 kH/s". */
export function hashrate(hps) {
  if (hps == null || !Number.isFinite(hps)) return "—";
  const unitsList = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
  let v = hps;
  let i = 0;
  while (v >= 1000 && i < unitsList.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${unitsList[i]}`;
}

/** Compact target as 8 hex digits, whether the node sent a number or a hex string. */
export function bits(b) {
  return typeof b === "number" ? b.toString(16).padStart(8, "0") : String(b);
}

/** Difficulty with sensible precision. */
export function difficulty(d) {
  if (d == null) return "—";
  return d >= 1000 ? Math.round(d).toLocaleString() : Number(d).toPrecision(4);
}

/** Links to explorer pages. */
export const link = {
  block: (hash, text = short(hash)) => h("a", { href: `#/block/${hash}`, class: "mono" }, text),
  height: (height) => h("a", { href: `#/block/${height}` }, String(height)),
  tx: (txid, text = short(txid)) => h("a", { href: `#/tx/${txid}`, class: "mono" }, text),
  address: (addr, text = short(addr, 10)) =>
    addr ? h("a", { href: `#/address/${addr}`, class: "mono" }, text) : h("span", { class: "muted" }, "—"),
};
