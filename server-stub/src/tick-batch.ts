/**
 * Group commit by event-loop tick: items pushed during one tick are handed to `flush` together
 * on the next `setImmediate` (after the I/O poll), or at once when `max` are waiting. Used for
 * everything the control channel writes per message (hellos, events, lease releases, job
 * progress): one transaction, one fsync, for a whole tick of messages.
 *
 * `gapMs` (optional) paces the flushes: the next flush starts no sooner than `gapMs()` after the
 * previous one ended (ms, read when it ends; 0 = the next tick). Items pushed meanwhile wait and
 * go together. The admission gate sets it to what its last commit cost (at most 25 ms), so while
 * commits take no longer than that a process spends at most half its time in commits and the lock
 * waits behind them, whatever the arrival rate: under a ramp, hellos no longer arrive one per
 * tick, each paying a whole fsync of its own.
 */
export class TickBatch<T> {
  #items: T[] = [];
  #scheduled = false;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  /** performance.now() before which the next flush does not start (pacing). */
  #notBefore = 0;

  constructor(
    private readonly flush: (items: T[]) => void,
    private readonly max = Number.POSITIVE_INFINITY,
    private readonly gapMs?: () => number,
  ) {}

  get size(): number {
    return this.#items.length;
  }

  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length >= this.max) this.drain();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      const wait = this.#notBefore - performance.now();
      // setTimeout's resolution is 1 ms: below that, the next tick is as good.
      if (wait >= 1) this.#timer = setTimeout(() => this.drain(), wait);
      else this.#immediate = setImmediate(() => this.drain());
    }
  }

  /** Hands what is waiting to `flush` now (a no-op when nothing waits). */
  drain(): void {
    this.#scheduled = false;
    // Drained early (max reached, or by hand): what was scheduled has nothing left to do.
    clearTimeout(this.#timer);
    clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    const items = this.#items;
    if (items.length === 0) return;
    this.#items = [];
    try {
      this.flush(items);
    } finally {
      if (this.gapMs) this.#notBefore = performance.now() + Math.max(0, this.gapMs());
    }
  }
}
