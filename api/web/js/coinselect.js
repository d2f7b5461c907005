// Coin selection for the browser wallet: spend mature outputs, confirmed first and
// largest first, until amount + fee is covered; the rest returns as change.

/** Not enough spendable units; `available` says how many there are. */
export class InsufficientFunds extends Error {
  constructor(needed, available) {
    super(`insufficient funds: need ${needed} units (amount + fee), only ${available} spendable`);
    this.needed = needed;
    this.available = available;
  }
}

/** The outputs that may be spent now (immature coinbase outputs are excluded). */
export function spendable(utxos) {
  return utxos.filter((u) => u.mature !== false);
}

function byPreference(a, b) {
  const confA = a.height != null ? 0 : 1;
  const confB = b.height != null ? 0 : 1;
  if (confA !== confB) return confA - confB;
  const diff = BigInt(b.amount) - BigInt(a.amount);
  return diff > 0n ? 1 : diff < 0n ? -1 : 0;
}

/**
 * Picks UTXOs ({txid, vout, amount, height, mature}) covering amount + fee (BigInts).
 * Returns { selected, total, change } or throws InsufficientFunds.
 */
export function selectCoins(utxos, amount, fee = 0n) {
  const needed = BigInt(amount) + BigInt(fee);
  const candidates = spendable(utxos).sort(byPreference);
  const selected = [];
  let total = 0n;
  for (const u of candidates) {
    if (total >= needed) break;
    selected.push(u);
    total += BigInt(u.amount);
  }
  if (total < needed) {
    const available = candidates.reduce((s, u) => s + BigInt(u.amount), 0n);
    throw new InsufficientFunds(needed, available);
  }
  return { selected, total, change: total - needed };
}
