// SLIP-0010 key derivation for ed25519: master key from HMAC-SHA512("ed25519 seed", seed),
// then hardened children only (ed25519 has no public derivation).

import { concat, hmacSha512, u32le, utf8 } from "./bytes.js";

export const HARDENED = 0x80000000;

/** Bitplace's path for address `index` of `account`: m/44'/8080'/account'/index'. */
export function bitplacePath(account = 0, index = 0) {
  return `m/44'/8080'/${account}'/${index}'`;
}

function split(i) {
  return { key: i.slice(0, 32), chainCode: i.slice(32) };
}

/** The master node {key, chainCode} of a seed. */
export async function masterFromSeed(seed) {
  return split(await hmacSha512(utf8("ed25519 seed"), seed));
}

/** The hardened child `index` (below 2^31; the hardened bit is added here). */
export async function deriveChild(node, index) {
  if (!Number.isInteger(index) || index < 0 || index >= HARDENED) throw new Error(`bad child index ${index}`);
  const data = concat(Uint8Array.of(0), node.key, be32(index + HARDENED));
  return split(await hmacSha512(node.chainCode, data));
}

function be32(n) {
  return u32le(n).reverse();
}

/** Parses "m/44'/8080'/0'/0'" into child indexes; every level must be hardened. */
export function parsePath(path) {
  const parts = String(path).split("/");
  if (parts.shift() !== "m") throw new Error(`path must start with m: ${path}`);
  return parts.map((p) => {
    const m = /^(\d+)['hH]$/.exec(p);
    if (!m) throw new Error(`ed25519 paths are hardened only: "${p}" in ${path}`);
    return Number(m[1]);
  });
}

/** The node at `path` below the seed's master. */
export async function derivePath(seed, path) {
  let node = await masterFromSeed(seed);
  for (const index of parsePath(path)) node = await deriveChild(node, index);
  return node;
}
