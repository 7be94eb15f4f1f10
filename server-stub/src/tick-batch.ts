/**
 * Group commit by event-loop tick: items pushed during one tick are handed to `flush` together
 * on the next `setImmediate` (after the I/O poll), or at once when `max` are waiting. Used for
 * everything the control channel writes per message (hellos, events, lease releases, job
 * progress): one transaction, one fsync, for a whole tick of messages.
 */
export class TickBatch<T> {
  #items: T[] = [];
  #scheduled = false;

  constructor(
    private readonly flush: (items: T[]) => void,
    private readonly max = Number.POSITIVE_INFINITY,
  ) {}

  get size(): number {
    return this.#items.length;
  }

  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length >= this.max) this.drain();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  /** Hands what is waiting to `flush` now (a no-op when nothing waits). */
  drain(): void {
    this.#scheduled = false;
    const items = this.#items;
    if (items.length === 0) return;
    this.#items = [];
    this.flush(items);
  }
}
