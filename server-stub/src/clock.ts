/**
 * All time in the server comes from a Clock (milliseconds since the Unix epoch), so tests and the
 * server's test mode can move time: licence terms, activation dates, grace periods and notices all
 * read it.
 */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export type ClockListener = (now: number, previous: number) => void;

/** A clock that only moves when told to. Used by tests and by `serve --test-clock`. */
export class TestClock implements Clock {
  #now: number;
  readonly #listeners = new Set<ClockListener>();

  constructor(start: number = Date.now()) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  set(ms: number): void {
    const previous = this.#now;
    this.#now = ms;
    for (const listener of this.#listeners) listener(ms, previous);
  }

  advance(ms: number): void {
    this.set(this.#now + ms);
  }

  onChange(listener: ClockListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

export function isTestClock(clock: Clock): clock is TestClock {
  return clock instanceof TestClock;
}

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** Adds calendar months in UTC, clamping the day (31 Jan + 1 month = 28/29 Feb). */
export function addMonthsUtc(ms: number, months: number): number {
  const d = new Date(ms);
  const day = d.getUTCDate();
  const target = new Date(ms);
  target.setUTCDate(1);
  target.setUTCMonth(target.getUTCMonth() + months);
  const lastDay = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
  target.setUTCDate(Math.min(day, lastDay));
  return target.getTime();
}
