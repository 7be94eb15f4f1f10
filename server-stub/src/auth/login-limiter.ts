/**
 * Login attempts per client address in fixed one-minute windows, in memory (per process). The
 * per-user lockout (in the store) stops guessing one password; this stops one client from trying
 * many users. The map is bounded: when it grows large, windows that ended are dropped.
 */
const WINDOW_MS = 60_000;
const MAX_ENTRIES = 10_000;

export class LoginLimiter {
  readonly #windows = new Map<string, { start: number; count: number }>();

  constructor(private readonly perMinute: number) {}

  /** Counts an attempt; returns seconds to wait when over the limit, else 0. */
  attempt(key: string, now: number): number {
    let w = this.#windows.get(key);
    if (!w || now - w.start >= WINDOW_MS) {
      if (this.#windows.size >= MAX_ENTRIES) this.#prune(now);
      w = { start: now, count: 0 };
      this.#windows.set(key, w);
    }
    w.count++;
    return w.count > this.perMinute ? Math.ceil((w.start + WINDOW_MS - now) / 1000) : 0;
  }

  #prune(now: number): void {
    for (const [k, w] of this.#windows) if (now - w.start >= WINDOW_MS) this.#windows.delete(k);
    if (this.#windows.size >= MAX_ENTRIES) this.#windows.clear();
  }
}
