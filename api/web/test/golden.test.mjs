// The golden transaction vector shared with the Rust tests (consensus/tests/golden.rs):
// the page's encoder, txid and signer must give exactly the bytes the node does.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fromHex, toHex } from "../js/bytes.js";
import { keyPairFromSeed } from "../js/ed25519.js";
import { encodeBody, txid, signTransfer } from "../js/tx.js";

const vector = JSON.parse(
  readFileSync(new URL("../../../consensus/tests/vectors/golden_tx.json", import.meta.url), "utf8"),
);

test("golden vector: body, txid, signature and signed hex match the Rust side", async () => {
  const { privateKey, publicKey } = await keyPairFromSeed(fromHex(vector.signing_key_seed));
  assert.equal(toHex(publicKey), vector.public_key);
  const tx = {
    inputs: vector.inputs.map((i) => ({ txid: i.txid, vout: i.vout, publicKey })),
    outputs: vector.outputs.map((o) => ({ amount: BigInt(o.amount), address: o.address })),
  };
  assert.equal(toHex(encodeBody(tx)), vector.body_hex);
  assert.equal(await txid(tx), vector.txid);
  const signed = await signTransfer(tx, [privateKey]);
  assert.equal(signed.txid, vector.txid);
  assert.equal(signed.hex, vector.hex);
  assert.equal(signed.hex.slice(-128), vector.signature);
});
