// Merkle proofs (engine/src/merkle.rs rules) and proof-of-work arithmetic (engine/src/pow.rs).

import { test } from "node:test";
import assert from "node:assert/strict";
import { concat, hashFromDisplay, hashToDisplay, sha256d, toHex } from "../js/bytes.js";
import { rootFromProof, verifyProof } from "../js/merkle.js";
import { bitsToTarget, workOfBits, estimateHashrate } from "../js/pow.js";

const pair = async (a, b) => sha256d(concat(a, b));

test("merkle proofs of a 3-leaf tree (odd node paired with itself)", async () => {
  const ids = ["11", "22", "33"].map((b) => hashToDisplay(new Uint8Array(32).fill(parseInt(b, 16))));
  const [a, b, c] = ids.map(hashFromDisplay);
  const ab = await pair(a, b);
  const cc = await pair(c, c);
  const root = hashToDisplay(await pair(ab, cc));
  const proofs = [
    { index: 0, branch: [toHex(b), toHex(cc)] },
    { index: 1, branch: [toHex(a), toHex(cc)] },
    { index: 2, branch: [toHex(c), toHex(ab)] },
  ];
  for (let i = 0; i < 3; i++) {
    assert.equal(await rootFromProof(ids[i], proofs[i]), root);
    assert.ok(await verifyProof(ids[i], proofs[i], root.toUpperCase()));
  }
  assert.equal(await verifyProof(ids[0], proofs[1], root), false);
  assert.equal(await rootFromProof(ids[0], { index: 0, branch: [] }), ids[0]); // a lone coinbase
});

test("compact bits: target and work as in engine/src/pow.rs", () => {
  assert.equal(bitsToTarget(0x1d00ffff), 0xffffn << 208n);
  assert.equal(bitsToTarget("1d00ffff"), 0xffffn << 208n);
  assert.equal(workOfBits(0x1d00ffff), 0x100010001n); // Bitcoin difficulty 1
  assert.equal(bitsToTarget(0x207fffff), 0x7fffffn << 232n);
});

test("hashrate estimate: work of the newer blocks over the time span", () => {
  const blocks = [
    { time: 100, bits: 0x1d00ffff },
    { time: 110, bits: 0x1d00ffff },
    { time: 120, bits: "1d00ffff" },
  ];
  assert.equal(estimateHashrate(blocks), (2 * 0x100010001) / 20);
  assert.equal(estimateHashrate(blocks.slice(0, 1)), null);
  assert.equal(estimateHashrate([{ time: 5, bits: 0x1d00ffff }, { time: 5, bits: 0x1d00ffff }]), null);
});
