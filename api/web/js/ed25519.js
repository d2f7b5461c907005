// Ed25519 keys and signatures through WebCrypto. A 32-byte private seed is imported as
// PKCS#8 (fixed DER prefix + seed); the public key is read back from the JWK export.

import { concat, fromHex } from "./bytes.js";

const PKCS8_PREFIX = fromHex("302e020100300506032b657004220420");
const ALG = { name: "Ed25519" };

function b64urlToBytes(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/**
 * A key pair from a 32-byte seed: {privateKey (non-extractable CryptoKey), publicKey (32 bytes)}.
 */
export async function keyPairFromSeed(seed) {
  if (seed.length !== 32) throw new Error("an ed25519 seed is 32 bytes");
  const subtle = globalThis.crypto.subtle;
  const pkcs8 = concat(PKCS8_PREFIX, seed);
  // Extractable once, only to read the public key out of the JWK.
  const exportable = await subtle.importKey("pkcs8", pkcs8, ALG, true, ["sign"]);
  const jwk = await subtle.exportKey("jwk", exportable);
  const privateKey = await subtle.importKey("pkcs8", pkcs8, ALG, false, ["sign"]);
  return { privateKey, publicKey: b64urlToBytes(jwk.x) };
}

/** The 64-byte ed25519 signature of `message` by a private CryptoKey. */
export async function sign(privateKey, message) {
  return new Uint8Array(await globalThis.crypto.subtle.sign(ALG, privateKey, message));
}

/** Verifies an ed25519 signature with a raw 32-byte public key. */
export async function verify(publicKey, signature, message) {
  const subtle = globalThis.crypto.subtle;
  const key = await subtle.importKey("raw", publicKey, ALG, false, ["verify"]);
  return subtle.verify(ALG, key, signature, message);
}

/** True when this browser's WebCrypto implements Ed25519. */
export async function ed25519Supported() {
  try {
    await keyPairFromSeed(new Uint8Array(32));
    return true;
  } catch {
    return false;
  }
}
