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

/** "1 transaction", "2 transactions" (English plural, `many` when it isn't just +s). */
export function plural(n, one, many = `${one}s`) {
  return `${units(n)} ${Number(n) === 1 ? one : many}`;
}

/** A duration in seconds, coarsely: "45 s", "12 min", "3.5 h", "2.1 days". */
export function duration(secs) {
  if (secs == null || !Number.isFinite(secs) || secs < 0) return "—";
  if (secs === 0) return "0 s";
  if (secs < 1) return "< 1 s";
  if (secs < 90) return `${Math.round(secs)} s`;
  if (secs < 90 * 60) return `${Math.round(secs / 60)} min`;
  if (secs < 36 * 3600) return `${(secs / 3600).toFixed(1)} h`;
  if (secs < 3 * 365 * 86400) return `${(secs / 86400).toFixed(1)} days`;
  return `${(secs / (365 * 86400)).toExponential(1)} years`;
}

/** How long ago unix time `secs` was: "just now", "5 s ago", "12 min ago", "3 h ago", "2 days ago". */
export function ago(secs, now = Date.now() / 1000) {
  if (secs == null) return "—";
  const d = Math.round(now - secs);
  if (d < 2) return "just now"; // also a block stamped a little ahead of this clock
  if (d < 60) return `${d} s ago`;
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  const days = Math.floor(d / 86400);
  return `${days} ${days === 1 ? "day" : "days"} ago`;
}
