// Hash routing: #/, #/blocks/<newest height> (a page of the block list), #/block/<hash|height>, #/tx/<txid>, #/address/<addr>, #/mempool, #/mining,
// #/chainstate, #/wallet, #/search/<64 hex> (txid or block hash). Returns {name, params}.

const ROUTES = {
  "": "home",
  block: "block",
  tx: "tx",
  address: "address",
  blocks: "blocks",
  mempool: "mempool",
  mining: "mining",
  chainstate: "chainstate",
  wallet: "wallet",
  search: "search",
};

export function parseRoute(hash = location.hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").map((p) => decodeURIComponent(p));
  const name = ROUTES[parts[0]] ?? "notfound";
  return { name, params: parts.slice(1) };
}

/** Where a search box entry leads: a height, a 64-hex hash/txid, or an address. */
export function searchTarget(text) {
  const q = text.trim();
  if (/^\d+$/.test(q)) return `#/block/${q}`;
  if (/^[0-9a-fA-F]{64}$/.test(q)) return `#/search/${q.toLowerCase()}`; // a txid or a block hash
  if (/^bp1/i.test(q)) return `#/address/${q.toLowerCase()}`;
  return null;
}
