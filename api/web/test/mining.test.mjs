// The browser miner's precomputation (js/mining.js, a port of miner-gpu/src/sha256.rs
// `Prepared`): each of the 25 words the kernel reads (then the dispatch's 3) is checked against its meaning, by
// running the plain SHA-256 rounds and schedule over the real second block for several
// nonces; and the full candidate check against WebCrypto.

import { test } from "node:test";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { fromHex, sha256d, toHex } from "../js/bytes.js";
import { IV, K, beWords, bswap, checkCandidate, compress, expectedHashes, meets, prepare, round, schedule, ssig0, targetFromHex, withNonce, withTime } from "../js/mining.js";
import { jobFromTemplate, nextBatch, rollTime } from "../js/browserminer.js";
import { workgroupsFor, maxBatch, adapterName, kernelParams } from "../js/gpuminer.js";

const add = (...xs) => xs.reduce((s, x) => (s + x) >>> 0, 0);

function sampleHeader(seed = 11) {
  const h = new Uint8Array(80);
  for (let i = 0; i < 80; i++) h[i] = (i * 37 + seed) & 0xff;
  return h;
}

/** SHA-256d of a header through our compress (midstate path), internal byte order. */
function sha256dByRounds(header) {
  const mid = compress(IV, beWords(header.subarray(0, 64)));
  const tail = new Uint8Array(64);
  tail.set(header.subarray(64, 80));
  tail[16] = 0x80;
  tail[62] = 0x02;
  tail[63] = 0x80; // 640 bits
  const h1 = compress(mid, beWords(tail));
  const h2 = compress(IV, [...h1, 0x80000000, 0, 0, 0, 0, 0, 0, 256]);
  const out = new Uint8Array(32);
  const v = new DataView(out.buffer);
  h2.forEach((w, i) => v.setUint32(4 * i, w, false));
  return out;
}

test("our compress gives WebCrypto's SHA-256d of a header", async () => {
  for (const nonce of [0, 1, 0xdeadbeef, 0xffffffff]) {
    const h = withNonce(sampleHeader(), nonce);
    assert.equal(toHex(sha256dByRounds(h)), toHex(await sha256d(h)));
  }
});

test("prepare: every word is what the kernel assumes, for any nonce", () => {
  const header = sampleHeader(5);
  const target = new Uint8Array(32).fill(0xff);
  target[31] = 0x00;
  target[30] = 0x12;
  target[29] = 0x34;
  target[28] = 0x56;
  const p = prepare(header, target);
  assert.equal(p.length, 25);
  const mid = compress(IV, beWords(header.subarray(0, 64)));
  assert.deepEqual(Array.from(p.subarray(0, 8)), mid);
  for (const nonce of [0, 7, 0x01020304, 0xfffffffe]) {
    const tail = new Uint8Array(64);
    tail.set(withNonce(header, nonce).subarray(64, 80));
    tail[16] = 0x80;
    tail[63] = 0x80;
    tail[62] = 0x02;
    const w = schedule(beWords(tail));
    assert.equal(w[3], bswap(nonce));
    let s = mid;
    for (let t = 0; t < 4; t++) s = round(s, add(K[t], w[t]));
    // State before round 4: a and e carry + W3, the rest are as they are.
    const [a4, b4, c4, d4, e4, f4, g4, h4] = Array.from(p.subarray(8, 16));
    assert.deepEqual(s, [add(a4, w[3]), b4, c4, d4, add(e4, w[3]), f4, g4, h4]);
    assert.equal(p[16], add(K[16], w[16]));
    assert.equal(p[17], add(K[17], w[17]));
    assert.equal(p[18], w[16]);
    assert.equal(p[19], w[17]);
    assert.equal(add(p[20], ssig0(w[3])), w[18]); // W18 = c18 + σ0(W3)
    assert.equal(add(p[21], w[3]), w[19]); // W19 = c19 + W3
    assert.equal(p[22], add(ssig0(w[16]), w[15])); // W31 = σ1(W29) + W24 + c31
    assert.equal(p[23], add(ssig0(w[17]), w[16])); // W32 = σ1(W30) + W25 + c32
  }
  assert.equal(p[24], 0x00123456, "target's top word, little-endian number");
});

test("regression: the page's kernel parameters are the native miner's, word for word", () => {
  // The kernel's parameters moved (28 words, c30 a literal) and the page kept writing
  // the old layout: its miner hashed at full speed and never found a block.
  const v = JSON.parse(readFileSync(new URL("../../../shaders/vectors/kernel_params.json", import.meta.url)));
  const p = prepare(fromHex(v.header), fromHex(v.target));
  assert.deepEqual(Array.from(kernelParams(p, v.start, v.count, v.capacity)), v.words);
});

test("header edits, target order and the full check", async () => {
  const h = sampleHeader();
  assert.equal(new DataView(withTime(h, 0x01020304).buffer).getUint32(68, true), 0x01020304);
  assert.equal(new DataView(withNonce(h, 0xfffffffe).buffer).getUint32(76, true), 0xfffffffe);
  assert.equal(h[76], (76 * 37 + 11) & 0xff, "edits copy, the original stays");
  const t = targetFromHex("00000000ffff" + "0".repeat(52));
  assert.equal(t[31], 0);
  assert.equal(t[27], 0xff);
  assert.equal(expectedHashes(targetFromHex("00".repeat(31) + "ff")), Number((1n << 256n) / 256n));
  const hash = sha256dByRounds(withNonce(h, 42));
  assert.ok(meets(hash, hash));
  assert.ok((await checkCandidate(h, 42, new Uint8Array(32).fill(0xff))).ok);
  const c = await checkCandidate(h, 42, hash);
  assert.ok(c.ok, "a hash equal to the target meets it");
  const lower = Uint8Array.from(hash);
  let i = 31;
  while (lower[i] === 0) i--;
  lower[i] -= 1;
  assert.equal((await checkCandidate(h, 42, lower)).ok, false);
});

test("a template becomes a job; the nonce space rolls the time", () => {
  const header = sampleHeader();
  const tpl = { job_id: "j1", height: 3, time: 1000, header: toHex(withTime(header, 1000)), target: "00ffff" + "0".repeat(58), extra_nonce_size: 4 };
  const job = jobFromTemplate(tpl);
  assert.equal(job.extraNonce, "00000000");
  assert.equal(job.prepared[24], 0x00ffff00);
  const before = Array.from(job.prepared);
  job.next = 2 ** 32;
  rollTime(job);
  assert.equal(job.time, 1001);
  assert.equal(job.next, 0);
  assert.equal(new DataView(job.header.buffer).getUint32(68, true), 1001);
  assert.notDeepEqual(Array.from(job.prepared), before);
});

test("dispatch sizing follows miner-gpu (64 invocations x 32 nonces)", () => {
  assert.equal(workgroupsFor(1), 1);
  assert.equal(workgroupsFor(64 * 32), 1);
  assert.equal(workgroupsFor(64 * 32 + 1), 2);
  assert.equal(maxBatch(), 65535 * 64 * 32);
  assert.equal(nextBatch(100_000, 50), 200_000, "too fast: doubled");
  assert.equal(nextBatch(100_000, 1000), 25_000, "too slow: at most quartered");
  assert.equal(nextBatch(4096, 100_000), 2048, "never under one workgroup's worth");
  assert.equal(nextBatch(maxBatch(), 1), maxBatch());
  assert.equal(adapterName({ vendor: "google", architecture: "swiftshader", device: "", description: "" }), "google / swiftshader");
  assert.equal(adapterName(undefined), "unknown adapter");
});
