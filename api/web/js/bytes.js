// Byte helpers shared by the crypto and encoding modules: hex, concatenation,
// little-endian integers, Bitcoin's CompactSize and SHA-256 / SHA-256d via WebCrypto.

const subtle = () => globalThis.crypto.subtle;

/** Lowercase hex of a Uint8Array. */
export function toHex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Bytes of a hex string; throws on odd length or a non-hex digit. */
export function fromHex(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new Error("expected an even number of hex digits");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A reversed copy (display order <-> internal order of hashes). */
export function reversed(bytes) {
  return Uint8Array.from(bytes).reverse();
}

/** Internal-order bytes of a display-order (reversed) 64-digit hash. */
export function hashFromDisplay(hex) {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error("a hash is 64 hex digits");
  return reversed(fromHex(hex));
}

/** Display-order hex of internal-order hash bytes. */
export function hashToDisplay(bytes) {
  return toHex(reversed(bytes));
}

/** Concatenates Uint8Arrays. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** UTF-8 bytes of a string. */
export function utf8(s) {
  return new TextEncoder().encode(s);
}

/** Constant-size equality of two byte arrays. */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** u32 little-endian. */
export function u32le(n) {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`not a u32: ${n}`);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

/** u64 little-endian from a BigInt or safe integer Number. */
export function u64le(value) {
  const n = BigInt(value);
  if (n < 0n || n > 0xffffffffffffffffn) throw new Error(`not a u64: ${value}`);
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return b;
}

/** Bitcoin CompactSize, minimally encoded (1, 3, 5 or 9 bytes). */
export function compactSize(value) {
  const n = BigInt(value);
  if (n < 0xfdn) return Uint8Array.of(Number(n));
  if (n <= 0xffffn) return concat(Uint8Array.of(0xfd), u32le(Number(n)).slice(0, 2));
  if (n <= 0xffffffffn) return concat(Uint8Array.of(0xfe), u32le(Number(n)));
  return concat(Uint8Array.of(0xff), u64le(n));
}

/** Cryptographically random bytes (WebCrypto). */
export function randomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

/** SHA-256 of bytes. */
export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest("SHA-256", bytes));
}

/** SHA-256 applied twice (block ids, txids, merkle nodes). */
export async function sha256d(bytes) {
  return sha256(await sha256(bytes));
}

/** HMAC-SHA512(key, data). */
export async function hmacSha512(key, data) {
  const k = await subtle().importKey("raw", key, { name: "HMAC", hash: "SHA-512" }, false, ["sign"]);
  return new Uint8Array(await subtle().sign("HMAC", k, data));
}
