/**
 * A counting gate with a FIFO queue: at most `limit` holders at once (0: no limit). Waiting is
 * abortable; an aborted waiter leaves the queue and never holds a slot.
 */
export class Gate {
  #held = 0;
  readonly #queue: Array<{ grant: () => void }> = [];

  constructor(readonly limit: number) {}

  /** Slots held now. */
  get held(): number {
    return this.#held;
  }

  /** Waiters in the queue now. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Takes a slot: at once (returns true) when one is free, otherwise resolves true once granted.
   * Rejects with the signal's reason when it aborts while waiting.
   */
  acquire(signal?: AbortSignal): true | Promise<boolean> {
    if (this.limit === 0 || (this.#held < this.limit && this.#queue.length === 0)) {
      this.#held++;
      return true;
    }
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<boolean>((resolve, reject) => {
      const onAbort = () => {
        const i = this.#queue.indexOf(entry);
        if (i !== -1) this.#queue.splice(i, 1);
        reject(signal!.reason as Error);
      };
      const entry = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          this.#held++;
          resolve(false);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(entry);
    });
  }

  /** Gives a slot back; the longest waiter gets it. */
  release(): void {
    this.#held = Math.max(0, this.#held - 1);
    this.#queue.shift()?.grant();
  }
}
