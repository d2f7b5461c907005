// Transaction encoding, txid and signatures against vectors computed independently
// (hand-built bytes hashed with Python hashlib, signed with pyca/cryptography).

import { test } from "node:test";
import assert from "node:assert/strict";
import { fromHex, toHex } from "../js/bytes.js";
import { keyPairFromSeed } from "../js/ed25519.js";
import { encodeBody, txid, signTransfer, transferSize } from "../js/tx.js";

const ADDR_8 = "bp1pqyqszqgpqyqszqgpqyqszqgpqyqszqggnmngf"; // payload 20 x 0x08
const ADDR_SEQ = "bp1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnhwl8ag"; // payload 00..13

async function key3() {
  return keyPairFromSeed(new Uint8Array(32).fill(3));
}

test("engine/src/tx.rs sample_transfer: body, txid and signed encoding", async () => {
  const { privateKey, publicKey } = await key3();
  const tx = {
    inputs: [{ txid: "05".repeat(32), vout: 1, publicKey }],
    outputs: [{ amount: 42n, address: ADDR_8 }],
  };
  assert.equal(
    toHex(encodeBody(tx)),
    "01000000" + "01" + "01" + "05".repeat(32) + "01000000" +
      "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1" +
      "01" + "2a00000000000000" + "08".repeat(20),
  );
  assert.equal(await txid(tx), "4e8417931290c87f96cc0aa46260c47f5cc690ce3b03ef2dd9aa1e9cec622fe1");
  const signed = await signTransfer(tx, [privateKey]);
  assert.equal(signed.txid, "4e8417931290c87f96cc0aa46260c47f5cc690ce3b03ef2dd9aa1e9cec622fe1");
  assert.equal(
    signed.hex,
    toHex(encodeBody(tx)) +
      "f5dd3de9a159b5b96f3cc9213745bca0e64c27e248c7783ffae8bde716bfe650" +
      "4e91624ae08b54a9cec4e99abf509641f028c19448c424b1222e50c4d78ddc01",
  );
  assert.equal(signed.size, transferSize(1, 1));
});

test("two inputs: display-order txids are reversed, u32/u64 little-endian", async () => {
  const { privateKey, publicKey } = await key3();
  const display = toHex(Uint8Array.from({ length: 32 }, (_, i) => i));
  const tx = {
    inputs: [
      { txid: display, vout: 258, publicKey },
      { txid: "05".repeat(32), vout: 0, publicKey },
    ],
    outputs: [
      { amount: 5_000_000_000, address: ADDR_SEQ },
      { amount: 1n, address: ADDR_8 },
    ],
  };
  const body =
    "0100000001021f1e1d1c1b1a191817161514131211100f0e0d0c0b0a0908070605040302010002010000" +
    "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1" +
    "0505050505050505050505050505050505050505050505050505050505050505" + "00000000" +
    "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1" +
    "02" + "00f2052a01000000" + "000102030405060708090a0b0c0d0e0f10111213" +
    "0100000000000000" + "0808080808080808080808080808080808080808";
  assert.equal(toHex(encodeBody(tx)), body);
  const signed = await signTransfer(tx, [privateKey, privateKey]);
  assert.equal(signed.txid, "2525df0c670112a5b3f62760b599a18164772e6f8d88700c92d779c28ed9fe71");
  const sig =
    "1cd7460ec5112dd7428e627b0cdc75bc441cab8c8c8649e5635243bc469a32f7" +
    "c3053bc75228ee64c0ef45cc61a65a791c9faf180cd825968663b8df01a0de07";
  assert.equal(signed.hex, body + sig + sig);
  assert.equal(signed.size, transferSize(2, 2));
});

test("bad transfers are refused before signing", async () => {
  const { publicKey } = await key3();
  const input = { txid: "05".repeat(32), vout: 0, publicKey };
  assert.throws(() => encodeBody({ inputs: [input], outputs: [{ amount: 1n, address: ADDR_8.slice(0, -1) + "q" }] }), /checksum/);
  assert.throws(() => encodeBody({ inputs: [input], outputs: [{ amount: 0n, address: ADDR_8 }] }), /positive/);
  assert.throws(() => encodeBody({ inputs: [], outputs: [{ amount: 1n, address: ADDR_8 }] }), /input/);
  assert.throws(() => encodeBody({ inputs: [{ ...input, txid: "xyz" }], outputs: [{ amount: 1n, address: ADDR_8 }] }), /64 hex/);
});
