// Pure mining arithmetic for the browser miner: the per-header precomputation the WGSL
// kernel (shaders/sha256d.wgsl) starts from, header edits (time, nonce), the target, and
// the full re-check of a candidate. Port of miner-gpu/src/sha256.rs (`Prepared`): the
// kernel reads exactly the 28 words `prepare` returns, in that order.

import { fromHex, reversed, sha256d } from "./bytes.js";

export const HEADER_SIZE = 80;
const TIME_AT = 68;
const NONCE_AT = 76;

/** SHA-256 round constants (FIPS 180-4 §4.2.2). */
export const K = Uint32Array.of(
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
);

/** SHA-256 initial hash value (FIPS 180-4 §5.3.3). */
export const IV = Uint32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);

// u32 arithmetic: `>>> 0` keeps every value an unsigned 32-bit integer.
const add = (...xs) => xs.reduce((s, x) => (s + x) >>> 0, 0);
const rotr = (x, n) => ((x >>> n) | (x << (32 - n))) >>> 0;
const bsig0 = (x) => (rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22)) >>> 0;
const bsig1 = (x) => (rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25)) >>> 0;
export const ssig0 = (x) => (rotr(x, 7) ^ rotr(x, 18) ^ (x >>> 3)) >>> 0;
export const ssig1 = (x) => (rotr(x, 17) ^ rotr(x, 19) ^ (x >>> 10)) >>> 0;
const ch = (e, f, g) => ((e & f) ^ (~e & g)) >>> 0;
const maj = (a, b, c) => ((a & b) ^ (a & c) ^ (b & c)) >>> 0;
/** The header stores the nonce little-endian; SHA-256 reads big-endian words. */
export const bswap = (x) => (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;

/** One SHA-256 round on state [a..h] with kw = K[t] + W[t]. */
export function round(s, kw) {
  const t1 = add(s[7], bsig1(s[4]), ch(s[4], s[5], s[6]), kw);
  const t2 = add(bsig0(s[0]), maj(s[0], s[1], s[2]));
  return [add(t1, t2), s[0], s[1], s[2], add(s[3], t1), s[4], s[5], s[6]];
}

/** The SHA-256 message schedule W[0..64] of 16 words. */
export function schedule(block) {
  const w = Array.from(block);
  for (let t = 16; t < 64; t++) w[t] = add(ssig1(w[t - 2]), w[t - 7], ssig0(w[t - 15]), w[t - 16]);
  return w;
}

/** The SHA-256 compression function on 16 big-endian words. */
export function compress(state, block) {
  const w = schedule(block);
  let s = Array.from(state);
  for (let t = 0; t < 64; t++) s = round(s, add(K[t], w[t]));
  return s.map((x, i) => add(x, state[i]));
}

/** Big-endian words of 64 bytes. */
export function beWords(bytes) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, 64);
  return Array.from({ length: 16 }, (_, i) => v.getUint32(4 * i, false));
}

/**
 * The 25 words the kernel's `params[0..25]` hold for one header (nonce ignored) and
 * target (internal order, a little-endian 256-bit number), in the order of
 * miner_gpu::gpu::kernel_params: the midstate of the first 64 bytes, the state before
 * round 4 of the second block minus the nonce word, the nonce-independent schedule terms
 * (c30 is a literal in the kernel), and the target's top word for the early reject. The
 * dispatch adds first nonce, count and capacity (`gpuminer.js`). Pinned with the native
 * miner by shaders/vectors/kernel_params.json.
 */
export function prepare(header, target) {
  if (header.length !== HEADER_SIZE) throw new Error(`a header is ${HEADER_SIZE} bytes`);
  const mid = compress(IV, beWords(header.subarray(0, 64)));
  const tailBytes = new Uint8Array(64);
  tailBytes.set(header.subarray(64, 80));
  const [w0, w1, w2] = beWords(tailBytes);
  let s = mid;
  s = round(s, add(K[0], w0));
  s = round(s, add(K[1], w1));
  s = round(s, add(K[2], w2));
  // Round 3 = T1 (everything but W3) + W3; T2 does not involve W3.
  const t1 = add(s[7], bsig1(s[4]), ch(s[4], s[5], s[6]), K[3]);
  const t2 = add(bsig0(s[0]), maj(s[0], s[1], s[2]));
  const w16 = add(ssig0(w1), w0);
  const w17 = add(ssig1(640), ssig0(w2), w1);
  const targetTop = new DataView(target.buffer, target.byteOffset, 32).getUint32(28, true);
  return Uint32Array.of(
    ...mid,
    add(t1, t2), s[0], s[1], s[2], add(s[3], t1), s[4], s[5], s[6],
    add(K[16], w16), add(K[17], w17), w16, w17,
    add(ssig1(w16), w2), add(ssig1(w17), ssig0(0x80000000)),
    add(ssig0(w16), 640), add(ssig0(w17), w16),
    targetTop,
  );
}

/** A copy of the header with `time` (u32 LE at byte 68). */
export function withTime(header, time) {
  const out = Uint8Array.from(header);
  new DataView(out.buffer).setUint32(TIME_AT, time >>> 0, true);
  return out;
}

/** A copy of the header with `nonce` (u32 LE at byte 76). */
export function withNonce(header, nonce) {
  const out = Uint8Array.from(header);
  new DataView(out.buffer).setUint32(NONCE_AT, nonce >>> 0, true);
  return out;
}

/** Internal-order (little-endian) target bytes of the template's 64-hex `target`. */
export function targetFromHex(hex) {
  return reversed(fromHex(hex));
}

/** Whether an internal-order hash, read as a little-endian number, is ≤ the target. */
export function meets(hash, target) {
  for (let i = 31; i >= 0; i--) {
    if (hash[i] !== target[i]) return hash[i] < target[i];
  }
  return true;
}

/**
 * The full re-check of a kernel's candidate before it is submitted: SHA-256d of the whole
 * header with that nonce through WebCrypto (not our own rounds), compared with the target.
 * Returns {ok, hash} with the hash in internal order.
 */
export async function checkCandidate(header, nonce, target) {
  const hash = await sha256d(withNonce(header, nonce));
  return { ok: meets(hash, target), hash };
}

/** Expected hashes per block at a target: 2^256 / (target + 1), as a Number. */
export function expectedHashes(target) {
  let t = 0n;
  for (let i = 31; i >= 0; i--) t = (t << 8n) | BigInt(target[i]);
  return Number((1n << 256n) / (t + 1n));
}
