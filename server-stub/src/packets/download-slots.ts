/**
 * A counting semaphore with a bounded first-in-first-out queue, for packet downloads: at most
 * `max` served at once, at most `maxQueued` waiting, none waiting longer than `waitMs`. Timers are
 * real (wall-clock) timers: the queue bounds how long an HTTP request is held open, which is not
 * business time.
 */
interface Waiter {
  grant: (ok: boolean) => void;
  timer: NodeJS.Timeout;
}

export class DownloadSlots {
  #active = 0;
  readonly #queue: Waiter[] = [];
  /** No download starts while held: they wait in the queue (see `hold`). */
  #held = false;

  constructor(
    readonly max: number,
    readonly maxQueued: number,
    readonly waitMs: number,
  ) {}

  /** Downloads being served. */
  get active(): number {
    return this.#active;
  }

  /** Downloads waiting for a slot. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Takes a slot: at once when one is free, after waiting in the queue otherwise. Resolves false
   * when the queue is full, the wait ran out, or `signal` aborted (the client went away).
   * Every true must be matched by one `release()`.
   */
  acquire(signal?: AbortSignal): Promise<boolean> | boolean {
    if (!this.#held && this.#active < this.max && this.#queue.length === 0) {
      this.#active++;
      return true;
    }
    if (this.#queue.length >= this.maxQueued || signal?.aborted) return false;
    return new Promise<boolean>((resolve) => {
      const entry: Waiter = {
        grant: (ok: boolean) => {
          clearTimeout(entry.timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(ok);
        },
        timer: setTimeout(() => this.#drop(entry), this.waitMs),
      };
      const onAbort = () => this.#drop(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(entry);
    });
  }

  /** Gives a slot back; the longest-waiting download gets it (once resumed, while held). */
  release(): void {
    const next = this.#held ? undefined : this.#queue.shift();
    if (next) next.grant(true);
    else this.#active = Math.max(0, this.#active - 1);
  }

  /** Whether new downloads are held (see `hold`). */
  get held(): boolean {
    return this.#held;
  }

  /**
   * Holds new downloads while the process sends a burst of job offers: those that would start
   * wait in the queue instead, within the same bounds (`maxQueued`, `waitMs`, then the caller's
   * 503 + Retry-After); downloads already served go on. The offers of a job to every router come
   * first, and the downloads the first offers start do not take turns with the offers still to go.
   */
  hold(): void {
    this.#held = true;
  }

  /** Ends a hold: the longest-waiting downloads get the free slots. */
  resume(): void {
    if (!this.#held) return;
    this.#held = false;
    while (this.#active < this.max && this.#queue.length > 0) {
      this.#active++;
      this.#queue.shift()!.grant(true);
    }
  }

  #drop(entry: Waiter): void {
    const i = this.#queue.indexOf(entry);
    if (i === -1) return;
    this.#queue.splice(i, 1);
    entry.grant(false);
  }
}
