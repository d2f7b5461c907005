// A block's transactions a page at a time: GET /v1/blocks/{id} answers one page
// (`txs`, `tx_offset`, `next_offset`), so a block of 20,000 transactions never arrives
// (or is drawn) whole. Pure: the fetch is passed in, so node's test runner drives it.

/** Pages of one block's transactions; `fetchPage(offset)` returns the block view. */
export class TxPages {
  constructor(first, fetchPage) {
    this.hash = first.hash;
    this.total = first.tx_count ?? first.txs.length;
    this.txs = [...first.txs];
    this.next = first.next_offset ?? null;
    this.fetchPage = fetchPage;
    this.loading = null;
  }

  /** Whether more transactions follow the ones loaded. */
  get more() {
    return this.next !== null && this.next !== undefined;
  }

  /** Loads the next page; returns its transactions with their indices in the block
   *  ([] when there is none). Concurrent calls share one request. */
  async loadMore() {
    if (!this.more) return [];
    if (!this.loading) this.loading = this.#load().finally(() => { this.loading = null; });
    return this.loading;
  }

  async #load() {
    const page = await this.fetchPage(this.next);
    if (page.hash !== this.hash) throw new Error(`asked for block ${this.hash}, got ${page.hash}`);
    const start = page.tx_offset ?? this.next;
    if (start !== this.txs.length) throw new Error(`page starts at ${start}, ${this.txs.length} loaded`);
    this.txs.push(...page.txs);
    this.next = page.next_offset ?? null;
    return page.txs.map((tx, i) => ({ tx, index: start + i }));
  }
}
