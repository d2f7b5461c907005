// Bech32m (BIP-350) encoding and Bitplace addresses: hrp "bp", payload = the first 20
// bytes of SHA-256 of an ed25519 public key (engine/src/address.rs). Decoding verifies
// the checksum, so a mistyped address is an error before anything is sent.

import { sha256 } from "./bytes.js";

const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const BECH32M_CONST = 0x2bc830a3;
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

export const ADDRESS_HRP = "bp";
export const ADDRESS_LEN = 20;

/** A bad address or bech32m string, with a message fit for the user. */
export class AddressError extends Error {}

function polymod(values) {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATOR[i];
  }
  return chk >>> 0;
}

function hrpExpand(hrp) {
  const codes = [...hrp].map((c) => c.charCodeAt(0));
  return [...codes.map((c) => c >> 5), 0, ...codes.map((c) => c & 31)];
}

function createChecksum(hrp, data) {
  const mod = polymod([...hrpExpand(hrp), ...data, 0, 0, 0, 0, 0, 0]) ^ BECH32M_CONST;
  return Array.from({ length: 6 }, (_, i) => (mod >>> (5 * (5 - i))) & 31);
}

/** Regroups bits (8 -> 5 with padding, or 5 -> 8 strictly). */
export function convertBits(data, from, to, pad) {
  let acc = 0;
  let bits = 0;
  const out = [];
  const maxv = (1 << to) - 1;
  for (const v of data) {
    if (v < 0 || v >> from) throw new AddressError("invalid data value");
    acc = (acc << from) | v;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >> bits) & maxv);
    }
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & maxv);
  } else if (bits >= from || ((acc << (to - bits)) & maxv)) {
    throw new AddressError("invalid padding");
  }
  return out;
}

/** Encodes 5-bit words as bech32m with a human-readable part. */
export function encodeWords(hrp, words) {
  const all = [...words, ...createChecksum(hrp, words)];
  return hrp + "1" + all.map((d) => CHARSET[d]).join("");
}

/** Encodes bytes as bech32m. */
export function encode(hrp, bytes) {
  return encodeWords(hrp, convertBits(bytes, 8, 5, true));
}

/** Decodes a bech32m string to {hrp, words} (checksum removed); throws AddressError. */
export function decodeWords(str) {
  if (typeof str !== "string" || str.length < 8 || str.length > 90) {
    throw new AddressError("not a bech32m string (wrong length)");
  }
  if (str !== str.toLowerCase() && str !== str.toUpperCase()) {
    throw new AddressError("mixed upper and lower case");
  }
  const s = str.toLowerCase();
  const sep = s.lastIndexOf("1");
  if (sep < 1 || sep + 7 > s.length) throw new AddressError("missing separator or checksum");
  const hrp = s.slice(0, sep);
  if ([...hrp].some((c) => c.charCodeAt(0) < 33 || c.charCodeAt(0) > 126)) {
    throw new AddressError("invalid character in prefix");
  }
  const data = [];
  for (const c of s.slice(sep + 1)) {
    const d = CHARSET.indexOf(c);
    if (d < 0) throw new AddressError(`invalid character "${c}"`);
    data.push(d);
  }
  if (polymod([...hrpExpand(hrp), ...data]) !== BECH32M_CONST) {
    throw new AddressError("checksum mismatch (mistyped address?)");
  }
  return { hrp, words: data.slice(0, -6) };
}

/** Decodes a bech32m string to {hrp, bytes}; throws AddressError on any defect. */
export function decode(str) {
  const { hrp, words } = decodeWords(str);
  return { hrp, bytes: Uint8Array.from(convertBits(words, 5, 8, false)) };
}

/** The address string for a 20-byte payload. */
export function encodeAddress(payload) {
  if (payload.length !== ADDRESS_LEN) throw new AddressError("address payload must be 20 bytes");
  return encode(ADDRESS_HRP, payload);
}

/** The 20-byte payload of an address string; throws AddressError with a clear reason. */
export function decodeAddress(str) {
  const trimmed = String(str ?? "").trim();
  if (!trimmed) throw new AddressError("address is empty");
  let decoded;
  try {
    decoded = decode(trimmed);
  } catch (e) {
    throw new AddressError(`not a valid address: ${e.message}`);
  }
  if (decoded.hrp !== ADDRESS_HRP) {
    throw new AddressError(`address must start with "${ADDRESS_HRP}1", got "${decoded.hrp}1"`);
  }
  if (decoded.bytes.length !== ADDRESS_LEN) {
    throw new AddressError(`address payload must be 20 bytes, got ${decoded.bytes.length}`);
  }
  return decoded.bytes;
}

/** True when the string is a valid Bitplace address. */
export function isAddress(str) {
  try {
    decodeAddress(str);
    return true;
  } catch {
    return false;
  }
}

/** The address paying to an ed25519 public key. */
export async function addressFromPublicKey(publicKey) {
  return encodeAddress((await sha256(publicKey)).slice(0, ADDRESS_LEN));
}
