/**
 * How long no router of the process may have taken an offer before held downloads start (ms). The
 * offers of a job to a whole fleet arrive in one burst, a few per millisecond; a pause this long
 * means the burst is over. Not shorter: on a loaded machine a server worker can go 100 ms without
 * the processor between two slices of offers, and downloads released in such a pause (all of the
 * process's at once) delayed the offers still to come by seconds (a 4,000-router run: p90 2.9 s,
 * last 5.7 s).
 */
export const DOWNLOAD_QUIET_MS = 300;
/**
 * The longest a download is held (ms, from the first one held): a burst longer than this (a very
 * large fleet, a slow server) lets the downloads go anyway. The server holds the downloads of a
 * burst as long (DOWNLOAD_HOLD_MAX_MS of its dispatcher), so a download held here no longer waits
 * there.
 */
export const DOWNLOAD_HOLD_MAX_MS = 3000;

/**
 * Holds work of the routers of one simulator process until a burst of offers is over: at once,
 * unless a router of the process took an offer within the last `quietMs`; then once the offers have
 * stopped coming for that long, or after `maxHoldMs`. One instance times the routers' packet
 * downloads (the agent's `Transport.downloadTurn`, `wait`), another their channel writes
 * (`heldSends`, `hold`), with a longer longest hold.
 *
 * Thousands of routers share this process's event loop, where each has a processor of its own in
 * the field: a download set up while offers are still arriving (abort signals, request, TLS
 * connection, packet checks as bytes come) delays the next router's offer by that much. Measured on
 * a 4,000-router run, download work was a tenth to a fifth of a process's time during the burst of
 * offers. Held here, the downloads go in the order they were asked for, paced by the server's
 * download limits as before.
 */
export class BurstHold {
  readonly #quietMs: number;
  readonly #maxHoldMs: number;
  /** performance.now() of the last offer taken; -Infinity before the first. */
  #lastOfferAt = Number.NEGATIVE_INFINITY;
  /** performance.now() of the first download held now. */
  #heldSince = 0;
  #held: Array<() => void> = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(quietMs = DOWNLOAD_QUIET_MS, maxHoldMs = DOWNLOAD_HOLD_MAX_MS) {
    this.#quietMs = quietMs;
    this.#maxHoldMs = maxHoldMs;
  }

  /** A router of this process took an offer. */
  offered(): void {
    this.#lastOfferAt = performance.now();
  }

  /** Downloads waiting for their turn. */
  get held(): number {
    return this.#held.length;
  }

  /** Whether a router of this process took an offer within the quiet time, or something is held. */
  holding(): boolean {
    return this.#held.length > 0 || performance.now() - this.#lastOfferAt < this.#quietMs;
  }

  /**
   * Runs `go` when held downloads would start (in the order held, with them): how the routers'
   * channel writes wait for the end of a burst of offers (`heldSends`). Call only while `holding()`.
   */
  hold(go: () => void): void {
    const now = performance.now();
    if (this.#held.length === 0) this.#heldSince = now;
    this.#held.push(go);
    this.#schedule(now);
  }

  /** Resolves when the download may start, or when `signal` aborts (the agent stops). */
  wait(signal: AbortSignal): Promise<void> {
    const now = performance.now();
    if (signal.aborted || (this.#held.length === 0 && now - this.#lastOfferAt >= this.#quietMs)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const go = () => {
        signal.removeEventListener('abort', go);
        // An agent that stopped no longer waits (released ones were taken off the list before).
        const i = this.#held.indexOf(go);
        if (i >= 0) this.#held.splice(i, 1);
        resolve();
      };
      signal.addEventListener('abort', go, { once: true });
      if (this.#held.length === 0) this.#heldSince = now;
      this.#held.push(go);
      this.#schedule(now);
    });
  }

  #schedule(now: number): void {
    if (this.#timer) return;
    const at = Math.min(this.#lastOfferAt + this.#quietMs, this.#heldSince + this.#maxHoldMs);
    this.#timer = setTimeout(() => this.#check(), Math.max(1, Math.ceil(at - now)));
    this.#timer.unref();
  }

  #check(): void {
    const now = performance.now();
    if (now - this.#lastOfferAt < this.#quietMs && now - this.#heldSince < this.#maxHoldMs) {
      this.#timer = undefined;
      this.#schedule(now);
      return;
    }
    // Timers run before the sockets are read: after this process itself went without the
    // processor, offers that arrived meanwhile are taken in the poll phase of this turn of the
    // event loop. Look again once it is over (setImmediate), so they count.
    setImmediate(() => {
      this.#timer = undefined;
      const later = performance.now();
      if (later - this.#lastOfferAt < this.#quietMs && later - this.#heldSince < this.#maxHoldMs) {
        this.#schedule(later);
        return;
      }
      const held = this.#held;
      this.#held = [];
      for (const go of held) go();
    });
  }
}
