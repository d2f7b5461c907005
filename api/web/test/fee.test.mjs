// The fee policy shared with the Rust side (consensus/src/fee.rs, wallet/src/coinselect.rs):
// every vector in consensus/tests/vectors/fee_policy.json, which consensus/tests/golden.rs
// and the wallet's tests assert too.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { keyPairFromSeed } from "../js/ed25519.js";
import { encodeAddress } from "../js/bech32m.js";
import { toHex } from "../js/bytes.js";
import { signTransfer, transferSize } from "../js/tx.js";
import { DEFAULT_FEE_RATE, MIN_RELAY_FEE_RATE, feeForSize, feeRate, policyFee } from "../js/fee.js";
import { InsufficientFunds, selectCoins, sweepCoins } from "../js/coinselect.js";

const v = JSON.parse(
  readFileSync(new URL("../../../consensus/tests/vectors/fee_policy.json", import.meta.url), "utf8"),
);

/** A signed transfer with n inputs and m outputs, by the page's real encoder and signer. */
async function signedSize(n, m) {
  const { privateKey, publicKey } = await keyPairFromSeed(new Uint8Array(32).fill(2));
  const tx = {
    inputs: Array.from({ length: n }, (_, i) => ({ txid: "01".repeat(32), vout: i, publicKey })),
    outputs: Array.from({ length: m }, () => ({ amount: 1n, address: encodeAddress(new Uint8Array(20).fill(4)) })),
  };
  return (await signTransfer(tx, tx.inputs.map(() => privateKey))).size;
}

// As the Rust tests build them: output i has txid [i; 32] and vout i, so ties go by index.
const utxosOf = (c) =>
  c.utxos.map((amount, i) => ({ txid: toHex(new Uint8Array(32).fill(i)), vout: i, amount, height: 1, mature: true }));

test("the policy's constants are the Rust ones", () => {
  assert.equal(MIN_RELAY_FEE_RATE, BigInt(v.min_relay_fee_rate));
  assert.equal(DEFAULT_FEE_RATE, BigInt(v.default_fee_rate));
});

test("fee vectors: the signed size of n inputs / m outputs and the fee at each rate", async () => {
  const sizes = new Map();
  for (const c of v.fees) {
    const key = `${c.inputs}/${c.outputs}`;
    if (!sizes.has(key)) sizes.set(key, await signedSize(c.inputs, c.outputs));
    assert.equal(sizes.get(key), c.size, `signed ${key}`);
    assert.equal(transferSize(c.inputs, c.outputs), c.size, `transferSize ${key}`);
    const fee = policyFee(c.size, c.rate);
    assert.equal(fee, BigInt(c.fee), JSON.stringify(c));
    // The smallest fee the mempool admits at that rate: one unit less falls below it.
    assert.ok(feeRate(fee, c.size) >= BigInt(c.rate));
    if (fee > 0n) assert.ok(feeRate(fee - 1n, c.size) < BigInt(c.rate));
  }
  assert.ok(v.fees.length >= 40 && sizes.size >= 6, "the whole file was read");
});

test("selection vectors: inputs, fee, change and size as the CLI picks them", () => {
  for (const c of v.selections) {
    const utxos = utxosOf(c);
    const run = () => selectCoins(utxos, BigInt(c.amount), BigInt(c.rate));
    if (c.error) {
      assert.equal(c.error, "insufficient_funds");
      assert.throws(run, (e) => e instanceof InsufficientFunds && e.available === BigInt(c.utxos.reduce((a, b) => a + b, 0)), JSON.stringify(c));
      continue;
    }
    const s = run();
    assert.deepEqual(s.selected.map((u) => utxos.indexOf(u)), c.inputs, JSON.stringify(c));
    assert.equal(s.fee, BigInt(c.fee), JSON.stringify(c));
    assert.equal(s.change, BigInt(c.change), JSON.stringify(c));
    assert.equal(s.size, c.size, JSON.stringify(c));
    assert.equal(s.amount + s.fee + s.change, s.selected.reduce((a, u) => a + BigInt(u.amount), 0n), "inputs = outputs + fee");
  }
});

test("sweep vectors: every output, one output of total minus the fee", () => {
  for (const c of v.sweeps) {
    const run = () => sweepCoins(utxosOf(c), BigInt(c.rate));
    if (c.error) {
      assert.equal(c.error, "insufficient_funds");
      assert.throws(run, InsufficientFunds, JSON.stringify(c));
      continue;
    }
    const s = run();
    assert.equal(s.selected.length, c.utxos.length);
    assert.equal(s.amount, BigInt(c.amount), JSON.stringify(c));
    assert.equal(s.fee, BigInt(c.fee), JSON.stringify(c));
    assert.equal(s.size, c.size, JSON.stringify(c));
    assert.equal(s.change, 0n);
  }
});

test("fee arithmetic: rounds the fee up and the rate down, u64 bounds (as fee.rs's tests)", () => {
  assert.equal(feeForSize(250, 1000), 250n);
  assert.equal(feeForSize(250, 1), 1n);
  assert.equal(feeForSize(250, 0), 0n);
  assert.equal(feeForSize(1001, 1000), 1001n);
  assert.equal(feeForSize(999, 2), 2n);
  assert.equal(feeForSize(2 ** 53, 0xffffffffffffffffn), null);
  assert.equal(feeRate(1, 195), 5n);
  assert.equal(feeRate(0, 195), 0n);
  assert.equal(feeRate(0xffffffffffffffffn, 1), 0xffffffffffffffffn);
  assert.equal(feeRate(5, 0), 5000n, "a size of 0 counts as 1 byte");
  assert.equal(policyFee(195, 0), feeForSize(195, MIN_RELAY_FEE_RATE));
});

test("selection skips immature coinbases, prices an empty wallet's shortfall, refuses 0", () => {
  const utxos = [
    { txid: "aa".repeat(32), vout: 0, amount: 5, height: null, mature: true },
    { txid: "cc".repeat(32), vout: 1, amount: 5000, height: 4, coinbase: true, mature: false },
    { txid: "bb".repeat(32), vout: 0, amount: 10, height: 3, mature: true },
  ];
  const s = selectCoins(utxos, 3n, 10n);
  assert.deepEqual(s.selected.map((u) => u.txid.slice(0, 2)), ["bb"], "largest mature output, mempool or not");
  assert.deepEqual([s.fee, s.change, s.size], [2n, 5n, 195]);
  assert.throws(() => selectCoins(utxos, 16n, 0n), (e) => e instanceof InsufficientFunds && e.available === 15n);
  // As the CLI reports it: the fee of a transfer with no inputs yet (35 bytes).
  assert.throws(() => selectCoins([], 1n, 1000n), /need 36 units \(amount 1 \+ fee 35\), only 0 spendable/);
  assert.throws(() => selectCoins(utxos, 0n, 1n), /above zero/);
  assert.throws(() => sweepCoins([], 0n), /nothing to sweep/);
  assert.throws(() => sweepCoins([{ ...utxos[0], amount: 167 }], 1000n), /nothing to sweep/, "all of it would be fee");
  assert.equal(sweepCoins(utxos, 0n).amount, 15n);
});

test("equal amounts go by outpoint as the node orders it: txid in internal byte order, then vout", () => {
  // Display order is reversed: "01 00…" is internally "…00 01", below "02 00…" internally.
  const low = { txid: "01" + "00".repeat(31), vout: 9, amount: 5 };
  const high = { txid: "00".repeat(31) + "02", vout: 0, amount: 5 };
  assert.deepEqual(selectCoins([high, low], 1n, 0n).selected, [low]);
  const vout = (n) => ({ txid: "aa".repeat(32), vout: n, amount: 5 });
  assert.deepEqual(sweepCoins([vout(2), vout(1)], 0n).selected.map((u) => u.vout), [1, 2]);
});
