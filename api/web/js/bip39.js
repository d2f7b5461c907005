// BIP39 mnemonics (English): generation from WebCrypto randomness, validation (word
// count, unknown words, checksum) and the seed (PBKDF2-HMAC-SHA512, 2048 rounds,
// salt "mnemonic" + passphrase, both NFKD-normalised).

import { WORDLIST } from "./wordlist.js";
import { randomBytes, sha256, utf8 } from "./bytes.js";

const WORD_COUNTS = [12, 15, 18, 21, 24];
const INDEX = new Map(WORDLIST.map((w, i) => [w, i]));

/** A mnemonic that is not valid; `word` names the unknown word when there is one. */
export class MnemonicError extends Error {
  constructor(message, word = null) {
    super(message);
    this.word = word;
  }
}

/** Splits and normalises a typed mnemonic into lowercase words. */
export function normalizeWords(mnemonic) {
  return String(mnemonic ?? "")
    .normalize("NFKD")
    .trim()
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean);
}

/** The canonical form: normalised words joined by single spaces. */
export function normalizeMnemonic(mnemonic) {
  return normalizeWords(mnemonic).join(" ");
}

function bitsOf(bytes) {
  return [...bytes].map((b) => b.toString(2).padStart(8, "0")).join("");
}

async function checksumBits(entropy) {
  return bitsOf(await sha256(entropy)).slice(0, (entropy.length * 8) / 32);
}

/** The words for 16..32 bytes of entropy (a multiple of 4). */
export async function entropyToMnemonic(entropy) {
  if (entropy.length < 16 || entropy.length > 32 || entropy.length % 4 !== 0) {
    throw new MnemonicError("entropy must be 16, 20, 24, 28 or 32 bytes");
  }
  const bits = bitsOf(entropy) + (await checksumBits(entropy));
  const words = [];
  for (let i = 0; i < bits.length; i += 11) words.push(WORDLIST[parseInt(bits.slice(i, i + 11), 2)]);
  return words.join(" ");
}

/** A fresh mnemonic of 12 or 24 words from WebCrypto's getRandomValues. */
export async function generateMnemonic(wordCount = 12) {
  if (![12, 24].includes(wordCount)) throw new MnemonicError("choose 12 or 24 words");
  return entropyToMnemonic(randomBytes((wordCount / 3) * 4));
}

/**
 * Validates a mnemonic and returns its entropy. Throws MnemonicError naming the first
 * unknown word, a wrong word count, or a failed checksum.
 */
export async function mnemonicToEntropy(mnemonic) {
  const words = normalizeWords(mnemonic);
  words.forEach((w, i) => {
    if (!INDEX.has(w)) throw new MnemonicError(`unknown word "${w}" (word ${i + 1})`, w);
  });
  if (!WORD_COUNTS.includes(words.length)) {
    throw new MnemonicError(`a mnemonic has 12, 15, 18, 21 or 24 words, got ${words.length}`);
  }
  const bits = words.map((w) => INDEX.get(w).toString(2).padStart(11, "0")).join("");
  const entBits = (bits.length * 32) / 33;
  const entropy = Uint8Array.from(bits.slice(0, entBits).match(/.{8}/g), (b) => parseInt(b, 2));
  if ((await checksumBits(entropy)) !== bits.slice(entBits)) {
    throw new MnemonicError("checksum does not match: a word is wrong or out of order");
  }
  return entropy;
}

/** True when the mnemonic is valid. */
export async function validateMnemonic(mnemonic) {
  try {
    await mnemonicToEntropy(mnemonic);
    return true;
  } catch {
    return false;
  }
}

/** The 64-byte BIP39 seed (does not validate the mnemonic; call mnemonicToEntropy first). */
export async function mnemonicToSeed(mnemonic, passphrase = "") {
  const subtle = globalThis.crypto.subtle;
  const password = utf8(normalizeMnemonic(mnemonic));
  const salt = utf8("mnemonic" + String(passphrase).normalize("NFKD"));
  const key = await subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
  const bits = await subtle.deriveBits({ name: "PBKDF2", hash: "SHA-512", salt, iterations: 2048 }, key, 512);
  return new Uint8Array(bits);
}
