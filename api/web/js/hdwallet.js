// Mnemonic -> addresses, exactly as bitplace-wallet derives them:
// BIP39 seed -> SLIP-0010 ed25519 -> m/44'/8080'/account'/index' -> public key -> address.

import { mnemonicToEntropy, mnemonicToSeed } from "./bip39.js";
import { bitplacePath, derivePath } from "./slip10.js";
import { keyPairFromSeed } from "./ed25519.js";
import { addressFromPublicKey } from "./bech32m.js";

/** The BIP39 seed of a validated mnemonic (throws MnemonicError if invalid). */
export async function seedFromMnemonic(mnemonic, passphrase = "") {
  await mnemonicToEntropy(mnemonic);
  return mnemonicToSeed(mnemonic, passphrase);
}

/** {path, address, publicKey, privateKey} for one address of a BIP39 seed. */
export async function deriveKey(seed, account = 0, index = 0) {
  const path = bitplacePath(account, index);
  const node = await derivePath(seed, path);
  const { privateKey, publicKey } = await keyPairFromSeed(node.key);
  return { path, address: await addressFromPublicKey(publicKey), publicKey, privateKey };
}
