import type { RandomSource } from '../platform/platform.js';

/**
 * Capped exponential backoff with full jitter: the n-th delay is uniform in [0, min(max, base·2ⁿ)].
 * Full jitter spreads thousands of routers that lost the same server over the whole window, so a
 * server restart does not turn into synchronized reconnect waves.
 */
export class Backoff {
  #attempt = 0;
  readonly #base: number;
  readonly #max: number;
  readonly #random: RandomSource;
  readonly #floor: number;

  /** `floor` (default 0) is a lower bound added below the jittered range: [floor, max(floor, ceiling)]. */
  constructor(base: number, max: number, random: RandomSource, floor = 0) {
    this.#base = base;
    this.#max = max;
    this.#random = random;
    this.#floor = floor;
  }

  get attempt(): number {
    return this.#attempt;
  }

  /** The ceiling of the next delay. */
  ceiling(): number {
    return Math.min(this.#max, this.#base * 2 ** Math.min(this.#attempt, 52));
  }

  next(): number {
    const ceiling = this.ceiling();
    this.#attempt++;
    if (this.#floor > 0) return this.#floor + this.#random.next() * Math.max(0, ceiling - this.#floor);
    return this.#random.next() * ceiling;
  }

  reset(): void {
    this.#attempt = 0;
  }
}
