// Known-answer tests for the page's crypto and encodings. Run: node --test api/web/test/
// Expected values come from published vectors (BIP39/Trezor, SLIP-0010, BIP-350) or were
// computed with independent implementations (Python hashlib/hmac + pyca/cryptography for
// derivation and signatures, @scure/base for bech32m, python-qrcode for QR matrices).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

import { toHex, fromHex, sha256 } from "../js/bytes.js";
import { WORDLIST } from "../js/wordlist.js";
import * as bip39 from "../js/bip39.js";
import { masterFromSeed, derivePath, parsePath } from "../js/slip10.js";
import { keyPairFromSeed, verify } from "../js/ed25519.js";
import * as bech32m from "../js/bech32m.js";
import { seedFromMnemonic, deriveKey } from "../js/hdwallet.js";

const here = dirname(fileURLToPath(import.meta.url));
const ABANDON = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
// m/44'/8080'/0'/0' of ABANDON (empty passphrase), computed independently in Python.
const ABANDON_ADDRESS_0 = "bp1s53gfleaqdwfaxyas5xhzsytz56arptawkt7rh";
const ABANDON_PUBKEY_0 = "536d5feb764a094e7ac4fe773f6a262fdcd1972248a46c0285fb4985e4a2ec33";

test("BIP39 English wordlist is the published one", async () => {
  assert.equal(WORDLIST.length, 2048);
  const digest = toHex(await sha256(new TextEncoder().encode(WORDLIST.join("\n") + "\n")));
  assert.equal(digest, "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda");
});

test("BIP39 Trezor vector 1: entropy, words and seed with passphrase TREZOR", async () => {
  assert.equal(await bip39.entropyToMnemonic(new Uint8Array(16)), ABANDON);
  assert.equal(toHex(await bip39.mnemonicToEntropy(ABANDON)), "00000000000000000000000000000000");
  const seed = await bip39.mnemonicToSeed(ABANDON, "TREZOR");
  assert.equal(
    toHex(seed),
    "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
  );
});

test("BIP39 Trezor vector: 24 words of 0x7f entropy", async () => {
  const words = await bip39.entropyToMnemonic(new Uint8Array(32).fill(0x7f));
  assert.equal(
    words,
    "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title",
  );
});

test("BIP39 validation names the unknown word and rejects a bad checksum", async () => {
  await assert.rejects(bip39.mnemonicToEntropy(ABANDON.replace("about", "abuot")), (e) => {
    assert.ok(e instanceof bip39.MnemonicError);
    assert.equal(e.word, "abuot");
    assert.match(e.message, /unknown word "abuot" \(word 12\)/);
    return true;
  });
  await assert.rejects(bip39.mnemonicToEntropy(ABANDON.replace("about", "abandon")), /checksum/);
  await assert.rejects(bip39.mnemonicToEntropy("abandon abandon"), /12, 15, 18, 21 or 24 words/);
  // Extra spaces and capitals are tolerated.
  assert.equal(await bip39.validateMnemonic("  " + ABANDON.toUpperCase().replace(/ /g, "   ") + "\n"), true);
});

test("BIP39 generation gives valid, distinct mnemonics of 12 and 24 words", async () => {
  const a = await bip39.generateMnemonic(12);
  const b = await bip39.generateMnemonic(24);
  assert.equal(a.split(" ").length, 12);
  assert.equal(b.split(" ").length, 24);
  assert.ok(await bip39.validateMnemonic(a));
  assert.ok(await bip39.validateMnemonic(b));
  assert.notEqual(a, await bip39.generateMnemonic(12));
});

test("SLIP-0010 ed25519 test vector 1", async () => {
  const seed = fromHex("000102030405060708090a0b0c0d0e0f");
  const master = await masterFromSeed(seed);
  assert.equal(toHex(master.key), "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7");
  assert.equal(toHex(master.chainCode), "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb");
  const child = await derivePath(seed, "m/0'");
  assert.equal(toHex(child.key), "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3");
  const pub = (await keyPairFromSeed(master.key)).publicKey;
  assert.equal(toHex(pub), "a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed");
  assert.throws(() => parsePath("m/44'/0"), /hardened only/);
});

test("Ed25519 via WebCrypto PKCS#8: public key and a verifiable signature", async () => {
  const { privateKey, publicKey } = await keyPairFromSeed(new Uint8Array(32).fill(3));
  assert.equal(toHex(publicKey), "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1");
  const msg = new Uint8Array(32).fill(9);
  const sig = new Uint8Array(await globalThis.crypto.subtle.sign({ name: "Ed25519" }, privateKey, msg));
  assert.ok(await verify(publicKey, sig, msg));
});

test("bech32m: BIP-350 vectors and known Bitplace payloads", () => {
  for (const s of ["A1LQFN3A", "a1lqfn3a", "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx", "?1v759aa"]) {
    assert.doesNotThrow(() => bech32m.decodeWords(s), s);
  }
  for (const s of ["A1G7SGD8", "abcdef1Qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw", "1p2gdwpf", "a1lqfn3A"]) {
    assert.throws(() => bech32m.decodeWords(s), s);
  }
  // BIP-350 segwit v1 vector: witness version word 1, then the 40-byte program.
  const program = fromHex("751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6");
  assert.equal(
    bech32m.encodeWords("bc", [1, ...bech32m.convertBits(program, 8, 5, true)]),
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
  );
  // Bitplace addresses (cross-checked with @scure/base).
  assert.equal(bech32m.encodeAddress(fromHex("000102030405060708090a0b0c0d0e0f10111213")), "bp1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnhwl8ag");
  assert.equal(bech32m.encodeAddress(new Uint8Array(20).fill(8)), "bp1pqyqszqgpqyqszqgpqyqszqgpqyqszqggnmngf");
  assert.equal(toHex(bech32m.decodeAddress("bp1pqyqszqgpqyqszqgpqyqszqgpqyqszqggnmngf")), "08".repeat(20));
});

test("bech32m: every single-character typo of an address is rejected, with a reason", () => {
  const alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
  const s = ABANDON_ADDRESS_0;
  for (let i = 3; i < s.length; i++) {
    for (const c of alphabet) {
      if (c === s[i]) continue;
      const typo = s.slice(0, i) + c + s.slice(i + 1);
      assert.equal(bech32m.isAddress(typo), false, typo);
    }
  }
  assert.throws(() => bech32m.decodeAddress(""), /empty/);
  assert.throws(() => bech32m.decodeAddress("tb1pqyqszqgpqyqszqgpqyqszqgpqyqszqgmlv3ec"), /bp1|checksum/);
  assert.throws(() => bech32m.decodeAddress(s.slice(0, -1) + "q"), /checksum/);
});

test("mnemonic -> m/44'/8080'/0'/0' address (independently computed)", async () => {
  const seed = await seedFromMnemonic(ABANDON);
  const key = await deriveKey(seed, 0, 0);
  assert.equal(key.path, "m/44'/8080'/0'/0'");
  assert.equal(toHex(key.publicKey), ABANDON_PUBKEY_0);
  assert.equal(key.address, ABANDON_ADDRESS_0);
  const second = await deriveKey(seed, 0, 1);
  assert.equal(second.address, "bp1s34c5a8ymvtzmt68ytxmfhjkaljjdhrnsrgqaa");
});

/**
 * The cross-check table in wallet/README.md ("| `m/44'/8080'/0'/0'` | `<pubkey hex>` | `bp1…` |"),
 * for the abandon mnemonic with an empty passphrase; [] while the file or table is absent.
 */
function rustWalletVectors() {
  const readme = join(here, "..", "..", "..", "wallet", "README.md");
  if (!existsSync(readme)) return [];
  const text = readFileSync(readme, "utf8");
  if (!text.includes(ABANDON)) return [];
  const row = /^\|\s*`(m\/44'\/8080'\/(\d+)'\/(\d+)')`\s*\|\s*`([0-9a-f]{64})`\s*\|\s*`(bp1[02-9ac-hj-np-z]{38})`\s*\|/gm;
  return [...text.matchAll(row)].map((m) => ({ path: m[1], account: +m[2], index: +m[3], publicKey: m[4], address: m[5] }));
}

test("cross-check with the Rust wallet's vectors in wallet/README.md", async (t) => {
  const vectors = rustWalletVectors();
  if (vectors.length === 0) {
    t.skip("wallet/README.md has no cross-check table for the abandon mnemonic yet");
    return;
  }
  const seed = await seedFromMnemonic(ABANDON);
  for (const v of vectors) {
    const key = await deriveKey(seed, v.account, v.index);
    assert.equal(key.path, v.path);
    assert.equal(toHex(key.publicKey), v.publicKey, `public key at ${v.path}`);
    assert.equal(key.address, v.address, `address at ${v.path}`);
  }
  assert.ok(vectors.some((v) => v.path === "m/44'/8080'/0'/0'"), "the table includes m/44'/8080'/0'/0'");
});
