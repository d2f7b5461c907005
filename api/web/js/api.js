// The node's HTTP API (docs/API.md) and its push feed (server-sent events). Same origin
// only: the page is served by the node itself.

/** A failed request: `code` is the node's snake_case error (or node_unreachable). */
export class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

async function request(path, options = {}) {
  let res;
  try {
    res = await fetch(path, { ...options, headers: { Accept: "application/json", ...options.headers } });
  } catch (e) {
    throw new ApiError("node_unreachable", `node unreachable (${e.message})`);
  }
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    if (res.ok) throw new ApiError("bad_response", `the node sent non-JSON for ${path}`, res.status);
  }
  if (!res.ok) {
    const code = body?.error ?? `http_${res.status}`;
    throw new ApiError(code, body?.message ?? (typeof body?.error === "string" ? body.error : `HTTP ${res.status} for ${path}`), res.status);
  }
  return body;
}

const get = (path) => request(path);
const post = (path, body) =>
  request(path, body === undefined ? { method: "POST" } : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

/** The seed-style envelope {data, error}: error must be null on success. */
async function envelope(path, body) {
  // Outside dev mode these routes answer 403 {data: null, error: "dev mode only: ..."},
  // which request() already turns into an ApiError carrying that text.
  const res = await post(path, body);
  if (res?.error !== null && res?.error !== undefined) throw new ApiError("rejected", String(res.error));
  return res?.data;
}

const seg = (s) => encodeURIComponent(String(s));

export const api = {
  status: () => get("/v1/status"),
  /** Blocks with heights from..from+limit-1 (ascending from `from`). */
  blocks: (from, limit) => get(`/v1/blocks?from=${from}&limit=${limit}`),
  /** A block and the first page of its transactions (`next_offset` says if more follow). */
  block: (hashOrHeight) => get(`/v1/blocks/${seg(hashOrHeight)}`),
  /** The page of a block's transactions starting at index `offset`. */
  blockPage: (hashOrHeight, offset) => get(`/v1/blocks/${seg(hashOrHeight)}?offset=${offset}`),
  tx: (txid) => get(`/v1/tx/${seg(txid)}`),
  address: (addr) => get(`/v1/addresses/${seg(addr)}`),
  /** The newest `limit` block summaries (oldest first). */
  recentBlocks: (limit) => get(`/v1/blocks?limit=${limit}`),
  mempool: () => get("/v1/mempool"),
  template: (address) => get(`/v1/mining/template?address=${seg(address)}`),
  submitWork: (body) => post("/v1/mining/submit", body),
  /** Stratum workers; null when this node has no Stratum server (404). */
  workers: async () => {
    try {
      return await get("/v1/mining/workers");
    } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  },
  chainstate: () => get("/api/get_chainstate"),
  submitTx: (hex) => post("/v1/tx", { hex }),
  mineBlock: (address, txAmount) => envelope("/api/mine_block", { address, txAmount }),
  resetSystem: () => envelope("/api/reset_system"),
};

const RETRY_MS = 3000;

/**
 * Subscribes to push topics. handlers: {eventName: (data, event) => ...}.
 * status(state) is told "open", "reconnecting" or "closed". EventSource reconnects by
 * itself (sending Last-Event-ID); if the node refuses the stream outright, we reopen it
 * after a pause. Returns a function that closes the subscription.
 */
export function subscribe(topics, handlers, status = () => {}) {
  let es = null;
  let stopped = false;
  let retry = null;
  const open = () => {
    es = new EventSource(`/v1/events?topics=${topics.join(",")}`);
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (ev) => {
        let data = null;
        try {
          data = JSON.parse(ev.data);
        } catch {
          return;
        }
        fn(data, ev);
      });
    }
    es.onopen = () => status("open");
    es.onerror = () => {
      if (stopped) return;
      if (es.readyState === EventSource.CLOSED) {
        status("closed");
        retry = setTimeout(open, RETRY_MS);
      } else {
        status("reconnecting");
      }
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(retry);
    es?.close();
  };
}
