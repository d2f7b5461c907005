// A small QR Code encoder (ISO/IEC 18004): byte mode, error correction level M,
// versions 1 to 6 (up to 106 bytes: plenty for an address). Returns a boolean matrix
// (true = dark) and renders it as SVG. Structure follows the standard step by step:
// data bits -> Reed-Solomon blocks -> interleave -> place in the matrix -> best mask.

// Per version (index = version): total codewords, EC codewords per block, block count,
// alignment pattern centres. Level M only.
const VERSIONS = [
  null,
  { total: 26, ecPerBlock: 10, blocks: 1, align: [] },
  { total: 44, ecPerBlock: 16, blocks: 1, align: [6, 18] },
  { total: 70, ecPerBlock: 26, blocks: 1, align: [6, 22] },
  { total: 100, ecPerBlock: 18, blocks: 2, align: [6, 26] },
  { total: 134, ecPerBlock: 24, blocks: 2, align: [6, 30] },
  { total: 172, ecPerBlock: 16, blocks: 4, align: [6, 34] },
];
const MAX_VERSION = VERSIONS.length - 1;
const ECL_M_BITS = 0b00; // format bits of level M
const MODE_BYTE = 0b0100;

// ---------------------------------------------------------------- GF(256), Reed-Solomon

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
(function buildTables() {
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d; // primitive polynomial x^8 + x^4 + x^3 + x^2 + 1
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];
})();

/** Product in GF(256). */
export function gfMul(a, b) {
  return a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]];
}

/** Coefficients (highest degree first, leading 1 omitted) of prod_{i<degree} (x - a^i). */
export function rsGenerator(degree) {
  let poly = [1];
  for (let i = 0; i < degree; i++) {
    const next = new Array(poly.length + 1).fill(0);
    for (let j = 0; j < poly.length; j++) {
      next[j] ^= poly[j];
      next[j + 1] ^= gfMul(poly[j], EXP[i]);
    }
    poly = next;
  }
  return poly.slice(1);
}

/** The `degree` Reed-Solomon check codewords of `data`. */
export function rsRemainder(data, degree) {
  const gen = rsGenerator(degree);
  const rem = new Array(degree).fill(0);
  for (const byte of data) {
    const factor = byte ^ rem.shift();
    rem.push(0);
    for (let i = 0; i < degree; i++) rem[i] ^= gfMul(gen[i], factor);
  }
  return rem;
}

// ---------------------------------------------------------------- data codewords

function dataCapacity(version) {
  const v = VERSIONS[version];
  return v.total - v.ecPerBlock * v.blocks;
}

/** The smallest version whose level-M byte-mode capacity fits `length` bytes. */
export function chooseVersion(length) {
  for (let v = 1; v <= MAX_VERSION; v++) if (4 + 8 + 8 * length <= 8 * dataCapacity(v)) return v;
  throw new Error(`too long for a QR code up to version ${MAX_VERSION}: ${length} bytes`);
}

/** Mode, count, data, terminator and padding, as data codewords. */
export function encodeData(bytes, version) {
  const bits = [];
  const put = (value, len) => {
    for (let i = len - 1; i >= 0; i--) bits.push((value >>> i) & 1);
  };
  put(MODE_BYTE, 4);
  put(bytes.length, 8); // 8-bit count in byte mode for versions 1-9
  for (const b of bytes) put(b, 8);
  const capacityBits = 8 * dataCapacity(version);
  put(0, Math.min(4, capacityBits - bits.length));
  while (bits.length % 8) bits.push(0);
  const words = [];
  for (let i = 0; i < bits.length; i += 8) words.push(parseInt(bits.slice(i, i + 8).join(""), 2));
  for (let pad = 0xec; words.length < capacityBits / 8; pad ^= 0xec ^ 0x11) words.push(pad);
  return words;
}

/** Splits into blocks, adds RS codewords and interleaves: the final codeword sequence. */
export function addEccAndInterleave(data, version) {
  const { blocks: n, ecPerBlock } = VERSIONS[version];
  const shortLen = Math.floor(data.length / n);
  const longCount = data.length % n; // the last `longCount` blocks hold one more byte
  const blocks = [];
  for (let i = 0, at = 0; i < n; i++) {
    const len = shortLen + (i >= n - longCount ? 1 : 0);
    const d = data.slice(at, at + len);
    at += len;
    blocks.push({ d, ec: rsRemainder(d, ecPerBlock) });
  }
  const out = [];
  for (let i = 0; i <= shortLen; i++) for (const b of blocks) if (i < b.d.length) out.push(b.d[i]);
  for (let i = 0; i < ecPerBlock; i++) for (const b of blocks) out.push(b.ec[i]);
  return out;
}

// ---------------------------------------------------------------- the matrix

function newGrid(size) {
  return Array.from({ length: size }, () => new Array(size).fill(false));
}

class Matrix {
  constructor(version) {
    this.version = version;
    this.size = 17 + 4 * version;
    this.dark = newGrid(this.size);
    this.isFunction = newGrid(this.size);
  }

  setFunction(x, y, dark) {
    this.dark[y][x] = dark;
    this.isFunction[y][x] = true;
  }

  drawFunctionPatterns() {
    const s = this.size;
    for (let i = 0; i < s; i++) {
      this.setFunction(6, i, i % 2 === 0);
      this.setFunction(i, 6, i % 2 === 0);
    }
    this.drawFinder(3, 3);
    this.drawFinder(s - 4, 3);
    this.drawFinder(3, s - 4);
    const align = VERSIONS[this.version].align;
    for (const cx of align) {
      for (const cy of align) {
        const nearFinder = (cx === 6 && cy === 6) || (cx === 6 && cy === s - 7) || (cx === s - 7 && cy === 6);
        if (!nearFinder) this.drawAlignment(cx, cy);
      }
    }
    this.drawFormatBits(0); // reserve the format areas (real bits drawn per mask)
  }

  drawFinder(cx, cy) {
    for (let dy = -4; dy <= 4; dy++) {
      for (let dx = -4; dx <= 4; dx++) {
        const x = cx + dx;
        const y = cy + dy;
        const dist = Math.max(Math.abs(dx), Math.abs(dy));
        if (x >= 0 && x < this.size && y >= 0 && y < this.size) this.setFunction(x, y, dist !== 2 && dist !== 4);
      }
    }
  }

  drawAlignment(cx, cy) {
    for (let dy = -2; dy <= 2; dy++) {
      for (let dx = -2; dx <= 2; dx++) this.setFunction(cx + dx, cy + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
    }
  }

  drawFormatBits(mask) {
    const bits = formatBits(mask);
    const bit = (i) => ((bits >>> i) & 1) === 1;
    const s = this.size;
    for (let i = 0; i <= 5; i++) this.setFunction(8, i, bit(i));
    this.setFunction(8, 7, bit(6));
    this.setFunction(8, 8, bit(7));
    this.setFunction(7, 8, bit(8));
    for (let i = 9; i < 15; i++) this.setFunction(14 - i, 8, bit(i));
    for (let i = 0; i < 8; i++) this.setFunction(s - 1 - i, 8, bit(i));
    for (let i = 8; i < 15; i++) this.setFunction(8, s - 15 + i, bit(i));
    this.setFunction(8, s - 8, true); // the dark module
  }

  /** Zigzag placement of the codewords, right to left in two-column strips. */
  drawCodewords(codewords) {
    const s = this.size;
    let i = 0;
    for (let right = s - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5; // skip the vertical timing pattern
      for (let vert = 0; vert < s; vert++) {
        for (let j = 0; j < 2; j++) {
          const x = right - j;
          const upward = ((right + 1) & 2) === 0;
          const y = upward ? s - 1 - vert : vert;
          if (this.isFunction[y][x]) continue;
          if (i < codewords.length * 8) this.dark[y][x] = ((codewords[i >>> 3] >>> (7 - (i & 7))) & 1) === 1;
          i++;
        }
      }
    }
  }

  applyMask(mask) {
    for (let y = 0; y < this.size; y++) {
      for (let x = 0; x < this.size; x++) {
        if (!this.isFunction[y][x] && MASKS[mask](y, x)) this.dark[y][x] = !this.dark[y][x];
      }
    }
  }
}

// Mask conditions, (row i, column j): the module is inverted where true.
const MASKS = [
  (i, j) => (i + j) % 2 === 0,
  (i) => i % 2 === 0,
  (i, j) => j % 3 === 0,
  (i, j) => (i + j) % 3 === 0,
  (i, j) => (Math.floor(i / 2) + Math.floor(j / 3)) % 2 === 0,
  (i, j) => ((i * j) % 2) + ((i * j) % 3) === 0,
  (i, j) => (((i * j) % 2) + ((i * j) % 3)) % 2 === 0,
  (i, j) => (((i + j) % 2) + ((i * j) % 3)) % 2 === 0,
];

/** The 15 format bits for level M and a mask: BCH(15,5) code, XOR 0x5412. */
export function formatBits(mask) {
  const data = (ECL_M_BITS << 3) | mask;
  let rem = data;
  for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
  return ((data << 10) | rem) ^ 0x5412;
}

// ---------------------------------------------------------------- mask penalty

function runPenalty(line) {
  let score = 0;
  let run = 1;
  for (let i = 1; i <= line.length; i++) {
    if (i < line.length && line[i] === line[i - 1]) {
      run++;
    } else {
      if (run >= 5) score += 3 + (run - 5);
      run = 1;
    }
  }
  return score;
}

const FINDER_LIKE = [
  [1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0],
  [0, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1],
];

function finderPenalty(line) {
  let score = 0;
  for (let i = 0; i + 11 <= line.length; i++) {
    for (const p of FINDER_LIKE) if (p.every((v, k) => (line[i + k] ? 1 : 0) === v)) score += 40;
  }
  return score;
}

/** The standard mask penalty (rules N1..N4) of a finished grid. */
export function penalty(grid) {
  const s = grid.length;
  const cols = Array.from({ length: s }, (_, x) => grid.map((row) => row[x]));
  let score = 0;
  for (const line of [...grid, ...cols]) score += runPenalty(line) + finderPenalty(line);
  let dark = 0;
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      if (grid[y][x]) dark++;
      if (y + 1 < s && x + 1 < s) {
        const c = grid[y][x];
        if (grid[y][x + 1] === c && grid[y + 1][x] === c && grid[y + 1][x + 1] === c) score += 3;
      }
    }
  }
  score += Math.floor((Math.abs(dark * 2 - s * s) * 10) / (s * s)) * 10;
  return score;
}

// ---------------------------------------------------------------- public API

/**
 * Encodes bytes (or a string as UTF-8) into a QR matrix at level M.
 * Returns { version, mask, size, modules: boolean[][] } (modules[y][x], true = dark).
 * `mask` may be forced (0..7); otherwise the lowest-penalty mask is chosen.
 */
export function encodeQr(input, { mask = null } = {}) {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  const version = chooseVersion(bytes.length);
  const codewords = addEccAndInterleave(encodeData(bytes, version), version);
  const build = (m) => {
    const mx = new Matrix(version);
    mx.drawFunctionPatterns();
    mx.drawCodewords(codewords);
    mx.applyMask(m);
    mx.drawFormatBits(m);
    return mx;
  };
  let best = null;
  for (const m of mask === null ? [0, 1, 2, 3, 4, 5, 6, 7] : [mask]) {
    const mx = build(m);
    const p = penalty(mx.dark);
    if (!best || p < best.p) best = { p, m, mx };
  }
  return { version, mask: best.m, size: best.mx.size, modules: best.mx.dark };
}

/** An SVG document (string) of a QR matrix with a 4-module quiet zone. */
export function qrToSvg(qr, { moduleSize = 6, margin = 4 } = {}) {
  const dim = qr.size + 2 * margin;
  let path = "";
  qr.modules.forEach((row, y) =>
    row.forEach((dark, x) => {
      if (dark) path += `M${x + margin} ${y + margin}h1v1h-1z`;
    }),
  );
  const px = dim * moduleSize;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${dim} ${dim}" width="${px}" height="${px}" ` +
    `shape-rendering="crispEdges"><rect width="${dim}" height="${dim}" fill="#fff"/>` +
    `<path d="${path}" fill="#000"/></svg>`
  );
}
