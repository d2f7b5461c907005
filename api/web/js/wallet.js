// The browser wallet's state: one address (m/44'/8080'/0'/0') derived from a BIP39
// mnemonic. The mnemonic is kept only encrypted (keystore.js); once unlocked, the page
// holds a non-extractable WebCrypto signing key in memory until it is locked or closed.

import { normalizeMnemonic } from "./bip39.js";
import { seedFromMnemonic, deriveKey } from "./hdwallet.js";
import { encryptSecret, decryptSecret, saveRecord, loadRecord, clearRecord } from "./keystore.js";

export const MIN_PASSWORD = 8;
const ACCOUNT = 0;
const INDEX = 0;

/** Checks a new password and its confirmation; throws with a message for the user. */
export function checkNewPassword(password, confirm) {
  if (!password || password.length < MIN_PASSWORD) throw new Error(`the password needs at least ${MIN_PASSWORD} characters`);
  if (password !== confirm) throw new Error("the two passwords differ");
}

async function keyFor(secret) {
  const seed = await seedFromMnemonic(secret.mnemonic, secret.passphrase);
  return deriveKey(seed, ACCOUNT, INDEX);
}

/** Fires "change" whenever the wallet is created, unlocked, locked or forgotten. */
export class BrowserWallet extends EventTarget {
  constructor(storage) {
    super();
    this.storage = storage;
    this.record = loadRecord(storage);
    this.key = null;
  }

  get exists() {
    return !!this.record;
  }

  get address() {
    return this.record?.pub?.address ?? null;
  }

  get path() {
    return this.record?.pub?.path ?? null;
  }

  get unlocked() {
    return !!this.key;
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  /** Stores a (validated) mnemonic under a password and unlocks it. */
  async setMnemonic(mnemonic, passphrase, password) {
    const secret = { mnemonic: normalizeMnemonic(mnemonic), passphrase: passphrase ?? "" };
    const key = await keyFor(secret); // validates the mnemonic (MnemonicError)
    const record = await encryptSecret(secret, password, { address: key.address, path: key.path });
    saveRecord(record, this.storage);
    this.record = record;
    this.key = key;
    this.changed();
    return key.address;
  }

  /** Decrypts with the password and derives the signing key. */
  async unlock(password) {
    if (!this.record) throw new Error("there is no wallet in this browser");
    const key = await keyFor(await decryptSecret(this.record, password));
    if (key.address !== this.address) throw new Error("the stored wallet is inconsistent (address mismatch)");
    this.key = key;
    this.changed();
  }

  lock() {
    this.key = null;
    this.changed();
  }

  /** Removes the wallet from this browser (the mnemonic is the only backup). */
  forget() {
    clearRecord(this.storage);
    this.record = null;
    this.key = null;
    this.changed();
  }
}
