// The browser miner: work from GET /v1/mining/template, nonces searched on the GPU by
// the native kernel (gpuminer.js), every candidate re-checked with WebCrypto SHA-256d
// before POST /v1/mining/submit, and new work fetched when the node pushes a `work`
// event (new tip or new mempool transactions). One instance per page; it keeps mining
// while the visitor moves between pages. Emits "change" whenever its state moves.

import { api, subscribe } from "./api.js";
import { fromHex, hashToDisplay } from "./bytes.js";
import { openGpu, maxBatch, NoWebGpu } from "./gpuminer.js";
import { prepare, withTime, targetFromHex, checkCandidate } from "./mining.js";
import { RateMeter } from "./rate.js";

const NONCE_SPACE = 2 ** 32;
const FIRST_BATCH = 64 * 32 * 16; // as miner-gpu: 16 workgroups' worth, then sized by time
const TARGET_DISPATCH_MS = 100; // short enough to switch work quickly, long enough to amortise
const RETRY_MS = 2000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A template turned into searchable work: header bytes, target, prepared words. */
export function jobFromTemplate(t) {
  const header = fromHex(t.header);
  const target = targetFromHex(t.target);
  return {
    id: t.job_id,
    height: t.height,
    extraNonce: "00".repeat(t.extra_nonce_size), // the template's header has zeros there
    time: t.time,
    header,
    target,
    prepared: prepare(header, target),
    next: 0,
  };
}

/** Moves a job whose 32-bit nonce space is exhausted to the next second (time roll). */
export function rollTime(job) {
  job.time += 1;
  job.header = withTime(job.header, job.time);
  job.prepared = prepare(job.header, job.target);
  job.next = 0;
}

/** The next batch size so one dispatch takes about TARGET_DISPATCH_MS. */
export function nextBatch(batch, elapsedMs, cap = maxBatch()) {
  if (!(elapsedMs > 0)) return Math.min(batch * 2, cap);
  const scaled = Math.round(batch * Math.min(4, Math.max(0.25, TARGET_DISPATCH_MS / elapsedMs)));
  return Math.max(64 * 32, Math.min(cap, scaled));
}

export class BrowserMiner extends EventTarget {
  constructor() {
    super();
    this.running = false;
    this.gpu = null;
    this.adapter = null;
    this.error = null; // the last problem, shown under the panel
    this.unavailable = null; // set when WebGPU is absent (a NoWebGpu message)
    this.blocksFound = 0;
    this.lastBlock = null; // {hash, height}
    this.hashes = 0;
    this.falseCandidates = 0; // kernel candidates that failed the full check (early-reject)
    this.height = null;
    this.meter = new RateMeter(3000);
    this.job = null;
    this.stale = true;
    this.loop = null;
    this.stopFeed = null;
  }

  get hashrate() {
    return this.running ? this.meter.rate() : 0;
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  /** Starts mining to `address` (a bp1… address, checked by the node's template route). */
  async start(address) {
    if (this.running) return;
    this.address = address;
    this.error = null;
    this.running = true;
    this.changed();
    try {
      if (!this.gpu) {
        const gpu = await openGpu();
        this.gpu = gpu;
        this.adapter = gpu.adapter;
        // A lost device (driver reset, a dispatch past the watchdog) ends this run; the
        // next start opens a new one.
        gpu.device.lost.then((info) => {
          if (this.gpu !== gpu) return;
          this.gpu = null;
          if (info.reason !== "destroyed") this.error = `the GPU device was lost: ${info.message || info.reason}`;
          this.stop();
        });
      }
    } catch (e) {
      this.running = false;
      if (e instanceof NoWebGpu) this.unavailable = e.message;
      this.error = e.message;
      this.changed();
      return;
    }
    this.stale = true;
    this.meter.reset(); // the rate counts from now, not from the kernel's compilation
    this.stopFeed = subscribe(["work"], { work: () => (this.stale = true), reset: () => (this.stale = true) });
    this.loop = this.run().catch((e) => {
      this.error = e.message;
      this.running = false;
      this.changed();
    });
  }

  stop() {
    this.running = false;
    this.stopFeed?.();
    this.stopFeed = null;
    this.meter.reset();
    this.changed();
  }

  async fetchJob() {
    const t = await api.template(this.address);
    this.job = jobFromTemplate(t);
    this.height = t.height;
    this.stale = false;
  }

  async run() {
    let batch = FIRST_BATCH;
    while (this.running) {
      if (this.stale || !this.job) {
        try {
          await this.fetchJob();
          this.error = null;
        } catch (e) {
          this.error = `no work from the node: ${e.message}`;
          this.changed();
          if (e.code === "invalid_address" || e.status === 400) return this.stop();
          await sleep(RETRY_MS);
          continue;
        }
      }
      const job = this.job;
      const start = job.next;
      const count = Math.min(batch, NONCE_SPACE - start);
      const t0 = performance.now();
      const gpu = this.gpu;
      if (!gpu) return; // lost: stop() was called
      const candidates = await gpu.search(job.prepared, start, count);
      const elapsed = performance.now() - t0;
      this.hashes += count;
      this.meter.add(count);
      batch = nextBatch(batch, elapsed);
      job.next = start + count;
      for (const nonce of candidates) {
        if (!this.running || job !== this.job || this.stale) break;
        await this.tryCandidate(job, nonce);
      }
      if (job.next >= NONCE_SPACE) rollTime(job); // after the checks: they need this header
      this.changed();
    }
  }

  /** Re-checks a candidate in full, then submits it; a found block means new work. */
  async tryCandidate(job, nonce) {
    const { ok, hash } = await checkCandidate(job.header, nonce, job.target);
    if (!ok) {
      this.falseCandidates++;
      return;
    }
    try {
      const r = await api.submitWork({ job_id: job.id, extra_nonce: job.extraNonce, time: job.time, nonce });
      if (r.accepted) {
        this.blocksFound++;
        this.lastBlock = { hash: r.hash ?? hashToDisplay(hash), height: r.height };
      }
    } catch (e) {
      if (e.code !== "stale_job") this.error = `the node refused the block: ${e.message}`;
    }
    this.stale = true;
  }
}
