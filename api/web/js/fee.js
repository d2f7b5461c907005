// The fee policy, exactly as consensus/src/fee.rs (one rule for the CLI wallet, dev custody,
// the node's mempool check and this page), checked against the shared vectors in
// consensus/tests/vectors/fee_policy.json by test/fee.test.mjs.
//
// Rates are units per 1,000 bytes of a transaction's full encoding (signatures included).
// BigInt throughout: amounts and fees are u64 on the node.

/** The mempool's minimum fee rate (units per 1,000 bytes): the node relays zero-fee txs. */
export const MIN_RELAY_FEE_RATE = 0n;

/** The rate wallets pay unless told otherwise (units per 1,000 bytes). */
export const DEFAULT_FEE_RATE = 1n;

const U64_MAX = 0xffffffffffffffffn;

/** The rate a fee pays, as the mempool computes it: floor(fee × 1000 / size), saturating. */
export function feeRate(fee, size) {
  const bytes = BigInt(size) > 0n ? BigInt(size) : 1n;
  const rate = (BigInt(fee) * 1000n) / bytes;
  return rate > U64_MAX ? U64_MAX : rate;
}

/** ceil(size × rate / 1000): the smallest fee whose feeRate is at least `rate`; null past u64. */
export function feeForSize(size, rate) {
  const fee = (BigInt(size) * BigInt(rate) + 999n) / 1000n;
  return fee > U64_MAX ? null : fee;
}

/** What a transaction of `size` bytes pays at `rate`, raised to the relay floor so the node
 * always relays it; null past u64. */
export function policyFee(size, rate) {
  const r = BigInt(rate);
  return feeForSize(size, r > MIN_RELAY_FEE_RATE ? r : MIN_RELAY_FEE_RATE);
}
