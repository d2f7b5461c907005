// Pure modules behind the explorer: chart series from block summaries and their SVG
// geometry, formatting (ago, durations, plurals), transaction facts (change, amount sent,
// fee rate, block reward) and the hashrate meter.

import { test } from "node:test";
import assert from "node:assert/strict";
import { difficultyOfBits, difficultySeries, intervalSeries, hashrateSeries, lineGeometry, mean, Samples } from "../js/charts.js";
import { ago, duration, plural } from "../js/format.js";
import { changeFlags, sentAmount, feeRate, blockReward } from "../js/txinfo.js";
import { RateMeter } from "../js/rate.js";
import { networkLabel } from "../js/views/status.js";
import { TxPages } from "../js/txpages.js";

const chain = [
  { height: 12, time: 1130, bits: 0x1f00ffff },
  { height: 10, time: 1000, bits: 0x1f00ffff },
  { height: 11, time: 1060, bits: "1f00ffff" },
  { height: 13, time: 1140, bits: 0x1e7fffff },
];

test("difficulty of bits as the node computes it (target of 0x1d00ffff / target)", () => {
  assert.equal(difficultyOfBits(0x1d00ffff), 1);
  assert.equal(difficultyOfBits(0x1c7fff80), 0xffff / 0x7fff80 * 256);
  assert.ok(Math.abs(difficultyOfBits(0x1f00ffff) - 2 ** -16) < 1e-12);
  assert.deepEqual(difficultySeries(chain).map((p) => p.x), [10, 11, 12, 13], "sorted by height");
  assert.ok(difficultySeries(chain)[3].y > difficultySeries(chain)[2].y, "a smaller target is harder");
});

test("block intervals: seconds since the parent, gaps skipped", () => {
  assert.deepEqual(intervalSeries(chain), [{ x: 11, y: 60 }, { x: 12, y: 70 }, { x: 13, y: 10 }]);
  assert.deepEqual(intervalSeries([chain[1], chain[0]]), [], "12 is not 10's child");
  assert.equal(mean(intervalSeries(chain)), 140 / 3);
  const young = [{ height: 0, time: 5, bits: 0x1f00ffff }, { height: 1, time: 1_000_000, bits: 0x1f00ffff }, { height: 2, time: 1_000_030, bits: 0x1f00ffff }];
  assert.deepEqual(intervalSeries(young), [{ x: 2, y: 30 }], "nothing measured from genesis's constant time");
  assert.equal(mean([]), 0);
});

test("hashrate series: the estimate over each window of blocks", () => {
  const s = hashrateSeries(chain, 2);
  assert.deepEqual(s.map((p) => p.x), [12, 13]);
  assert.ok(s.every((p) => p.y > 0));
  assert.deepEqual(hashrateSeries(chain.slice(0, 2), 2), []);
  assert.deepEqual(hashrateSeries(chain, 10).map((p) => p.x), [13], "a young chain: the window shrinks to what there is");
});

test("line geometry: scaled into the box, y from 0, flat series visible", () => {
  const g = lineGeometry([{ x: 0, y: 0 }, { x: 10, y: 5 }, { x: 20, y: 10 }], { width: 100, height: 50, pad: 0 });
  assert.equal(g.path, "M0 50 L50 25 L100 0");
  assert.deepEqual([g.xMin, g.xMax, g.yMin, g.yMax], [0, 20, 0, 10]);
  const flat = lineGeometry([{ x: 1, y: 3 }, { x: 2, y: 3 }], { width: 100, height: 50, pad: 0, zero: false });
  assert.ok(flat.yMax > flat.yMin);
  assert.ok(flat.dots.every((d) => d.cy >= 0 && d.cy <= 50));
  const one = lineGeometry([{ x: 7, y: 2 }], { width: 100, height: 50, pad: 0 });
  assert.equal(one.dots[0].cx, 50, "a single point sits in the middle");
  assert.equal(lineGeometry([]).path, "");
});

test("samples keep the newest, one per x", () => {
  const s = new Samples(3);
  for (const [x, y] of [[1, 1], [2, 2], [2, 5], [3, 3], [4, 4]]) s.add(x, y);
  assert.deepEqual(s.points, [{ x: 2, y: 5 }, { x: 3, y: 3 }, { x: 4, y: 4 }]);
});

test("formatting: ago, durations, plurals", () => {
  assert.equal(ago(1000, 1000), "just now");
  assert.equal(ago(1010, 1000), "just now", "a block stamped ahead of this clock");
  assert.equal(ago(1000, 1042), "42 s ago");
  assert.equal(ago(1000, 1000 + 5 * 60 + 59), "5 min ago");
  assert.equal(ago(0, 3 * 3600 + 1), "3 h ago");
  assert.equal(ago(0, 86400), "1 day ago");
  assert.equal(ago(0, 3 * 86400), "3 days ago");
  assert.equal(duration(0.2), "< 1 s");
  assert.equal(duration(0), "0 s");
  assert.equal(duration(45), "45 s");
  assert.equal(duration(600), "10 min");
  assert.equal(duration(5400), "1.5 h");
  assert.equal(duration(-1), "—");
  assert.equal(plural(1, "transaction"), "1 transaction");
  assert.equal(plural(0, "transaction"), "0 transactions");
  assert.equal(plural(1234, "block"), "1 234 blocks");
  assert.equal(plural(2, "tx", "txs"), "2 txs");
});

test("network label: no 'dev (dev)'", () => {
  assert.equal(networkLabel({ network: "dev", dev: true }), "dev");
  assert.equal(networkLabel({ network: "main", dev: false }), "main");
  assert.equal(networkLabel({ network: "main", dev: true }), "main (dev mode)");
});

const A = "bp1a";
const B = "bp1b";
const payment = {
  coinbase: false,
  inputs: [{ address: A, amount: 10 }, { address: A, amount: 5 }],
  outputs: [{ address: B, amount: 3 }, { address: A, amount: 11 }],
  fee: 1,
  size: 250,
};

test("transaction facts: change marked, amount sent, fee rate", () => {
  assert.deepEqual(changeFlags(payment), [false, true]);
  assert.equal(sentAmount(payment), 3n);
  const self = { ...payment, outputs: [{ address: A, amount: 14 }] };
  assert.deepEqual(changeFlags(self), [false], "all back to the sender is the payment itself");
  assert.equal(sentAmount(self), 14n);
  const cb = { coinbase: true, inputs: [], outputs: [{ address: A, amount: 12 }] };
  assert.deepEqual(changeFlags(cb), [false]);
  assert.equal(sentAmount(cb), 12n);
  assert.equal(feeRate(1, 250), 4n);
  assert.equal(feeRate(7, 0), 0n);
});

test("block reward: subsidy + fees, miner = the coinbase's first output", () => {
  const block = { txs: [{ coinbase: true, outputs: [{ address: A, amount: 12 }] }, { coinbase: false, fee: 2, outputs: [] }] };
  assert.deepEqual(blockReward(block), { fees: 2n, coinbaseTotal: 12n, subsidy: 10n, miner: A });
});

test("rate meter: amounts per second over the window", () => {
  let now = 0;
  const m = new RateMeter(1000, () => now);
  assert.equal(m.rate(), 0);
  now = 500;
  m.add(1000);
  assert.equal(m.rate(), 2000);
  now = 1000;
  m.add(1000);
  assert.equal(m.rate(), 2000);
  now = 2600;
  assert.equal(m.rate(), 0, "nothing in the last second");
  m.reset();
  assert.equal(m.rate(), 0);
});

test("a block's transactions a page at a time: pages follow next_offset and add up to the block", async () => {
  const all = Array.from({ length: 7 }, (_, i) => ({ txid: `t${i}` }));
  const pageOf = (offset) => ({
    hash: "bb", tx_count: all.length, tx_offset: offset, txs: all.slice(offset, offset + 3),
    ...(offset + 3 < all.length ? { next_offset: offset + 3 } : {}),
  });
  const asked = [];
  const pages = new TxPages(pageOf(0), async (offset) => { asked.push(offset); return pageOf(offset); });
  assert.equal(pages.total, 7);
  assert.ok(pages.more);
  const [second, again] = await Promise.all([pages.loadMore(), pages.loadMore()]);
  assert.deepEqual(second.map((r) => r.index), [3, 4, 5], "indices in the block");
  assert.equal(again, second, "concurrent clicks share one request");
  assert.deepEqual(await pages.loadMore(), [{ tx: all[6], index: 6 }]);
  assert.equal(pages.more, false, "the last page has no next_offset");
  assert.deepEqual(await pages.loadMore(), [], "nothing fetched past the end");
  assert.deepEqual(asked, [3, 6]);
  assert.deepEqual(pages.txs, all);
  const single = new TxPages({ hash: "cc", tx_count: 1, tx_offset: 0, txs: [all[0]] }, () => assert.fail("no fetch"));
  assert.equal(single.more, false);
  const wrong = new TxPages(pageOf(0), async () => ({ ...pageOf(3), hash: "other" }));
  await assert.rejects(wrong.loadMore(), /asked for block bb/);
});
