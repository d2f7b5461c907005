// Proof-of-work arithmetic with BigInt: compact "bits" -> target -> expected work, and a
// hashrate estimate from recent blocks (work done / time taken).

/** The 256-bit target of compact bits (number or 8-hex string), Bitcoin's rules. */
export function bitsToTarget(bits) {
  const n = typeof bits === "string" ? parseInt(bits, 16) : bits;
  const exponent = n >>> 24;
  const mantissa = BigInt(n & 0x007fffff);
  if (exponent <= 3) return mantissa >> BigInt(8 * (3 - exponent));
  return mantissa << BigInt(8 * (exponent - 3));
}

/** Expected hashes to meet a target: 2^256 / (target + 1). */
export function workOfBits(bits) {
  const target = bitsToTarget(bits);
  return target === 0n ? 0n : (1n << 256n) / (target + 1n);
}

/**
 * Hashes per second over blocks [{time, bits}] (any order): work of all but the oldest
 * block divided by the time between the oldest and newest. Null when it can't be told.
 */
export function estimateHashrate(blocks) {
  if (blocks.length < 2) return null;
  const sorted = [...blocks].sort((a, b) => a.time - b.time);
  const span = sorted.at(-1).time - sorted[0].time;
  if (span <= 0) return null;
  const work = sorted.slice(1).reduce((sum, b) => sum + workOfBits(b.bits), 0n);
  return Number(work) / span;
}
