// The wallet's secret at rest: AES-256-GCM with a key derived from the user's password by
// PBKDF2-HMAC-SHA256 (random salt, 600 000 rounds), kept in localStorage. The mnemonic
// never leaves the browser and is stored only in this encrypted form; the address (public)
// is stored beside it so balances can be shown before unlocking.

import { utf8 } from "./bytes.js";

export const STORAGE_KEY = "bitplace.wallet.v1";
const ITERATIONS = 600_000;

/** The password did not decrypt the stored wallet. */
export class WrongPassword extends Error {
  constructor() {
    super("wrong password: the wallet could not be decrypted");
  }
}

const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

async function aesKey(password, salt, iterations) {
  const subtle = globalThis.crypto.subtle;
  const base = await subtle.importKey("raw", utf8(password), "PBKDF2", false, ["deriveKey"]);
  return subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

/** Encrypts a JSON-serialisable secret; `pub` is stored in clear beside it. */
export async function encryptSecret(secret, password, pub = {}) {
  if (!password) throw new Error("a password is required to encrypt the wallet");
  const salt = globalThis.crypto.getRandomValues(new Uint8Array(16));
  const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
  const key = await aesKey(password, salt, ITERATIONS);
  const plain = utf8(JSON.stringify(secret));
  const ct = new Uint8Array(await globalThis.crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, plain));
  return { v: 1, kdf: "PBKDF2-SHA256", iterations: ITERATIONS, salt: b64(salt), iv: b64(iv), ciphertext: b64(ct), pub };
}

/** Decrypts a record made by encryptSecret; throws WrongPassword on a bad password. */
export async function decryptSecret(record, password) {
  const key = await aesKey(password, unb64(record.salt), record.iterations);
  let plain;
  try {
    plain = await globalThis.crypto.subtle.decrypt({ name: "AES-GCM", iv: unb64(record.iv) }, key, unb64(record.ciphertext));
  } catch {
    throw new WrongPassword();
  }
  return JSON.parse(new TextDecoder().decode(plain));
}

function store(storage) {
  return storage ?? globalThis.localStorage;
}

/** Saves the encrypted record. */
export function saveRecord(record, storage) {
  store(storage).setItem(STORAGE_KEY, JSON.stringify(record));
}

/** The stored record, or null when there is no wallet (or it is unreadable). */
export function loadRecord(storage) {
  try {
    const raw = store(storage).getItem(STORAGE_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

/** Forgets the wallet in this browser. */
export function clearRecord(storage) {
  store(storage).removeItem(STORAGE_KEY);
}
