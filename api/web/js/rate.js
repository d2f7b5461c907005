// A sliding-window rate: amounts added over time, per second over the last `windowMs`.

export class RateMeter {
  constructor(windowMs = 3000, now = () => performance.now()) {
    this.windowMs = windowMs;
    this.now = now;
    this.reset();
  }

  reset() {
    this.samples = []; // [time ms, amount]
    this.since = this.now();
  }

  add(amount) {
    const t = this.now();
    this.samples.push([t, amount]);
    while (this.samples.length > 1 && t - this.samples[0][0] > this.windowMs) this.samples.shift();
  }

  /** Per second: amounts in the window divided by the time they took (0 before any). */
  rate() {
    const t = this.now();
    const from = Math.max(this.since, t - this.windowMs);
    const sum = this.samples.filter(([ts]) => ts > from).reduce((s, [, a]) => s + a, 0);
    const span = t - from;
    return span > 0 ? (sum * 1000) / span : 0;
  }
}
