// Chart data from the chain (pure: no DOM): series of {x, y} from block summaries
// [{height, time, bits}], and the geometry of a line chart as SVG path text.

import { bitsToTarget, estimateHashrate } from "./pow.js";

const DIFF1 = bitsToTarget(0x1d00ffff);

/** Difficulty of compact bits as the node reports it: target(0x1d00ffff) / target(bits). */
export function difficultyOfBits(bits) {
  const t = bitsToTarget(bits);
  return t === 0n ? 0 : Number(DIFF1) / Number(t);
}

const byHeight = (blocks) => [...blocks].sort((a, b) => a.height - b.height);

/** Difficulty per block height. */
export function difficultySeries(blocks) {
  return byHeight(blocks).map((b) => ({ x: b.height, y: difficultyOfBits(b.bits) }));
}

// The genesis block's time is a constant of the chain parameters, not when anyone mined:
// intervals and hashrates measured from it mean nothing, so those series start at block 1.
const mined = (blocks) => byHeight(blocks).filter((b) => b.height > 0);

/** Seconds since the parent, per block (the oldest block given has no parent here). */
export function intervalSeries(blocks) {
  const s = mined(blocks);
  const out = [];
  for (let i = 1; i < s.length; i++) {
    if (s[i].height === s[i - 1].height + 1) out.push({ x: s[i].height, y: s[i].time - s[i - 1].time });
  }
  return out;
}

/**
 * Estimated hashrate at each height over the `window` blocks ending there (a shorter
 * window while the chain is younger than that, down to 2 blocks).
 */
export function hashrateSeries(blocks, window = 10) {
  const s = mined(blocks);
  window = Math.min(window, s.length - 1);
  const out = [];
  if (window < 2) return out;
  for (let i = window; i < s.length; i++) {
    const rate = estimateHashrate(s.slice(i - window, i + 1));
    if (rate != null) out.push({ x: s[i].height, y: rate });
  }
  return out;
}

/** Mean of the y values (0 for none). */
export function mean(points) {
  return points.length ? points.reduce((s, p) => s + p.y, 0) / points.length : 0;
}

/** A fixed-length history of samples (the mempool over time, seen by this page). */
export class Samples {
  constructor(max = 120) {
    this.max = max;
    this.points = [];
  }

  /** Adds {x, y}; a sample at the same x as the last one replaces it. */
  add(x, y) {
    if (this.points.length && this.points.at(-1).x === x) this.points.pop();
    this.points.push({ x, y });
    if (this.points.length > this.max) this.points.shift();
  }
}

/**
 * Geometry of a line chart of `points` in a width x height box with `pad` around it:
 * {path: "M x y L …" (empty for no points), dots: [{cx, cy}], yMin, yMax, xMin, xMax}.
 * The y axis starts at 0 unless `zero` is false; a flat series gets a visible range.
 */
export function lineGeometry(points, { width = 300, height = 120, pad = 4, zero = true } = {}) {
  if (!points.length) return { path: "", dots: [], yMin: 0, yMax: 0, xMin: 0, xMax: 0 };
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  let yMin = zero ? Math.min(0, ...ys) : Math.min(...ys);
  let yMax = Math.max(...ys);
  if (yMax === yMin) {
    yMax = yMin === 0 ? 1 : yMax * 1.1;
    if (!zero) yMin = yMin * 0.9;
  }
  const sx = (x) => (xMax === xMin ? width / 2 : pad + ((x - xMin) / (xMax - xMin)) * (width - 2 * pad));
  const sy = (y) => height - pad - ((y - yMin) / (yMax - yMin)) * (height - 2 * pad);
  const dots = points.map((p) => ({ cx: round2(sx(p.x)), cy: round2(sy(p.y)) }));
  const path = dots.map((d, i) => `${i ? "L" : "M"}${d.cx} ${d.cy}`).join(" ");
  return { path, dots, yMin, yMax, xMin, xMax };
}

const round2 = (v) => Math.round(v * 100) / 100;
