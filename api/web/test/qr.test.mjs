// The QR encoder against matrices from an independent encoder, plus its Reed-Solomon part.

import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeQr, rsRemainder, formatBits, qrToSvg } from "../js/qr.js";
import { QR_FIXTURES } from "./qr-fixtures.mjs";

function packed(qr) {
  const bits = qr.modules.flat().map((d) => (d ? "1" : "0")).join("");
  const padded = bits + "0".repeat((4 - (bits.length % 4)) % 4);
  return padded.match(/.{4}/g).map((n) => parseInt(n, 2).toString(16)).join("");
}

test("Reed-Solomon: the ISO 18004 / thonky 'HELLO WORLD' 1-M check codewords", () => {
  const data = [32, 91, 11, 120, 209, 114, 220, 77, 67, 64, 236, 17, 236, 17, 236, 17];
  assert.deepEqual(rsRemainder(data, 10), [196, 35, 39, 119, 235, 215, 231, 226, 93, 23]);
});

test("format information bits (level M)", () => {
  assert.equal(formatBits(0), 0b101010000010010);
  assert.equal(formatBits(4), 0b100010111111001);
});

test("matrices equal python-qrcode's (versions 1, 4 with 2 blocks, 6 with 4 blocks)", () => {
  for (const f of QR_FIXTURES) {
    const qr = encodeQr(f.text, { mask: f.mask });
    assert.equal(packed(qr), f.bits, `${f.text.slice(0, 10)}… mask ${f.mask}`);
  }
});

test("automatic mask, version choice, SVG output, overflow", () => {
  const qr = encodeQr("bp1s53gfleaqdwfaxyas5xhzsytz56arptawkt7rh");
  assert.equal(qr.version, 3);
  assert.ok(qr.mask >= 0 && qr.mask < 8);
  assert.match(qrToSvg(qr), /^<svg [^>]*viewBox="0 0 37 37"/);
  assert.throws(() => encodeQr("x".repeat(107)), /too long/);
});
