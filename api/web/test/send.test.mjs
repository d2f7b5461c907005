// The send flow against a stand-in node (fetch replaced): the plan the page shows before
// signing is what gets signed and submitted — same inputs, outputs, fee and size.

import { test } from "node:test";
import assert from "node:assert/strict";
import { keyPairFromSeed } from "../js/ed25519.js";
import { addressFromPublicKey, decodeAddress } from "../js/bech32m.js";
import { fromHex, toHex, u64le } from "../js/bytes.js";
import { policyFee } from "../js/fee.js";
import { ALL, parseAmount, planPayment, sendPayment } from "../js/send.js";

const TO = "bp1pqyqszqgpqyqszqgpqyqszqgpqyqszqggnmngf"; // payload 20 x 0x08

async function wallet() {
  const { privateKey, publicKey } = await keyPairFromSeed(new Uint8Array(32).fill(7));
  return { address: await addressFromPublicKey(publicKey), publicKey, privateKey };
}

/** Answers GET /v1/addresses/… with `utxos` and records what POST /v1/tx receives. */
function fakeNode(utxos) {
  const submitted = [];
  globalThis.fetch = async (path, options = {}) => {
    let body = { utxos };
    if (options.method === "POST") {
      submitted.push(JSON.parse(options.body).hex);
      body = { txid: "accepted" };
    }
    return { ok: true, status: 200, text: async () => JSON.stringify(body) };
  };
  return submitted;
}

const utxo = (n, amount) => ({ txid: n.repeat(32), vout: 0, amount, height: 5, coinbase: true, mature: true });

test("the amount field takes whole units or all", () => {
  assert.equal(parseAmount(" All "), ALL);
  assert.equal(parseAmount("12"), 12n);
  assert.throws(() => parseAmount("0"), /at least 1/);
  assert.throws(() => parseAmount("1.5"), /whole number/);
});

test("a payment is signed exactly as planned: fee by the policy, change back to the wallet", async () => {
  const key = await wallet();
  const submitted = fakeNode([utxo("aa", 10), utxo("bb", 4)]);
  const plan = await planPayment(key.address, TO, 3n, 1n);
  assert.deepEqual([plan.to, plan.amount, plan.fee, plan.change, plan.size], [TO, 3n, policyFee(195, 1n), 6n, 195]);
  const sent = await sendPayment(key, plan);
  assert.equal(sent.txid, "accepted");
  assert.equal(sent.size, plan.size);
  const tx = fromHex(submitted[0]);
  assert.equal(tx.length, 195, "one input, payment + change");
  // After the header (6 bytes) and the input (68): the output count, then amount | address.
  const outputs = toHex(tx.slice(6 + 68, 6 + 68 + 1 + 2 * 28));
  const out = (amount, address) => toHex(u64le(amount)) + toHex(decodeAddress(address));
  assert.equal(outputs, "02" + out(3n, TO) + out(6n, key.address), "3 paid, 10 - 3 - 1 back to the wallet");
});

test("all sweeps every spendable output into one, minus the fee", async () => {
  const key = await wallet();
  const submitted = fakeNode([utxo("aa", 10), utxo("bb", 4), { ...utxo("cc", 50), mature: false }]);
  const plan = await planPayment(key.address, TO, ALL, 1n);
  assert.deepEqual([plan.selected.length, plan.amount, plan.fee, plan.change, plan.size], [2, 13n, 1n, 0n, 299]);
  await sendPayment(key, plan);
  assert.equal(fromHex(submitted[0]).length, 299);
});

test("a bad recipient is refused before the node is asked", async () => {
  globalThis.fetch = () => assert.fail("no request for a bad address");
  await assert.rejects(planPayment((await wallet()).address, TO.slice(0, -1) + "q", 1n, 1n), /checksum/);
});
