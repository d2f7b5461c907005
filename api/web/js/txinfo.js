// Facts about a transaction view (GET /v1/tx, docs/API.md) that the explorer shows:
// which outputs are change, the amount sent, the fee rate. Pure functions.

/**
 * Per output: true when it pays back an address the transaction spends from (change).
 * A coinbase has no change.
 */
export function changeFlags(tx) {
  if (tx.coinbase) return tx.outputs.map(() => false);
  const from = new Set(tx.inputs.map((i) => i.address));
  const flags = tx.outputs.map((o) => from.has(o.address));
  // Everything paid back to the sender (a self-transfer) is not "change": it is the payment.
  return flags.every(Boolean) ? flags.map(() => false) : flags;
}

/** Units leaving the sender: the outputs that are not change (all outputs of a coinbase). */
export function sentAmount(tx) {
  const change = changeFlags(tx);
  return tx.outputs.reduce((s, o, i) => (change[i] ? s : s + BigInt(o.amount)), 0n);
}

/** Units per 1000 bytes, as the node's fee_rate (integer division). */
export function feeRate(fee, size) {
  return size > 0 ? (BigInt(fee) * 1000n) / BigInt(size) : 0n;
}

/** Reward facts of a block view: {fees, coinbaseTotal, subsidy, miner}. */
export function blockReward(block) {
  const cb = block.txs.find((t) => t.coinbase);
  const fees = block.txs.filter((t) => !t.coinbase).reduce((s, t) => s + BigInt(t.fee ?? 0), 0n);
  const coinbaseTotal = cb ? cb.outputs.reduce((s, o) => s + BigInt(o.amount), 0n) : 0n;
  return { fees, coinbaseTotal, subsidy: coinbaseTotal - fees, miner: cb?.outputs[0]?.address ?? null };
}
