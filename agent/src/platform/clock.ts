import { randomUUID } from 'node:crypto';
import { mulberry32 } from '@router-fleet/protocol/random';
import type { Clock, RandomSource, Timer } from './platform.js';

/** The process clock: `Date.now()` plus an optional skew, Node timers. */
export function systemClock(skewMs = 0): Clock {
  return {
    now: () => Date.now() + skewMs,
    setTimer(ms, fn) {
      const handle = setTimeout(fn, Math.max(0, ms));
      return { cancel: () => clearTimeout(handle) };
    },
  };
}

interface Entry {
  at: number;
  seq: number;
  fn: (() => void) | undefined;
}

/** A binary min-heap of timer entries ordered by (at, seq). */
class TimerHeap {
  readonly items: Entry[] = [];
  push(e: Entry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  peek(): Entry | undefined {
    return this.items[0];
  }

  pop(): Entry | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && less(a[l]!, a[m]!)) m = l;
        if (r < a.length && less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
const less = (x: Entry, y: Entry) => x.at < y.at || (x.at === y.at && x.seq < y.seq);

/**
 * A clock that multiplexes any number of timers onto ONE Node timer (a min-heap of deadlines), so
 * thousands of simulated agents in one process do not each hold their own timers. Cancelled timers
 * are dropped lazily when they reach the top of the heap.
 */
export function createSharedClock(skewMs = 0): Clock & { pending(): number } {
  const heap = new TimerHeap();
  let seq = 0;
  let live = 0;
  let handle: NodeJS.Timeout | undefined;
  let armedAt = Number.POSITIVE_INFINITY;
  const arm = () => {
    let top = heap.peek();
    while (top && top.fn === undefined) {
      heap.pop();
      top = heap.peek();
    }
    if (!top) {
      if (handle) clearTimeout(handle);
      handle = undefined;
      armedAt = Number.POSITIVE_INFINITY;
      return;
    }
    if (handle && armedAt <= top.at) return;
    if (handle) clearTimeout(handle);
    armedAt = top.at;
    handle = setTimeout(fire, Math.max(0, top.at - Date.now()));
  };
  const fire = () => {
    handle = undefined;
    armedAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    for (let top = heap.peek(); top && top.at <= now; top = heap.peek()) {
      heap.pop();
      const fn = top.fn;
      if (fn) {
        top.fn = undefined;
        live--;
        fn();
      }
    }
    arm();
  };
  return {
    now: () => Date.now() + skewMs,
    setTimer(ms, fn) {
      const entry: Entry = { at: Date.now() + Math.max(0, ms), seq: seq++, fn };
      heap.push(entry);
      live++;
      arm();
      return {
        cancel() {
          if (entry.fn) {
            entry.fn = undefined;
            live--;
          }
        },
      };
    },
    pending: () => live,
  };
}

/** A clock for tests: time moves only when `advance` is called. */
export interface ManualClock extends Clock {
  /** Moves time forward, firing due timers in order. */
  advance(ms: number): Promise<void>;
  set(now: number): void;
  pending(): number;
}

export function createManualClock(start = Date.UTC(2030, 0, 1)): ManualClock {
  let now = start;
  let seq = 0;
  const heap = new TimerHeap();
  let live = 0;
  return {
    now: () => now,
    setTimer(ms, fn) {
      const entry: Entry = { at: now + Math.max(0, ms), seq: seq++, fn };
      heap.push(entry);
      live++;
      return {
        cancel() {
          if (entry.fn) {
            entry.fn = undefined;
            live--;
          }
        },
      };
    },
    async advance(ms) {
      const target = now + ms;
      for (let top = heap.peek(); top && top.at <= target; top = heap.peek()) {
        heap.pop();
        now = Math.max(now, top.at);
        const fn = top.fn;
        if (fn) {
          top.fn = undefined;
          live--;
          fn();
          // Let promise chains started by the timer run before the next one fires.
          for (let i = 0; i < 10; i++) await Promise.resolve();
        }
      }
      now = target;
    },
    set(value) {
      now = value;
    },
    pending: () => live,
  };
}

/** `clock` with its wall time moved by `skewMs` (fault `clockSkewMs`); timers are unaffected. */
export function skewedClock(clock: Clock, skewMs: number): Clock {
  if (!skewMs) return clock;
  return { now: () => clock.now() + skewMs, setTimer: (ms, fn) => clock.setTimer(ms, fn) };
}

/** Math.random-based randomness (not for secrets). */
export const systemRandom: RandomSource = {
  next: () => Math.random(),
  uuid: () => randomUUID(),
};

const HEX = '0123456789abcdef';

/** A seeded source (protocol's one generator, mulberry32) for reproducible simulations. */
export function seededRandom(seed: number): RandomSource {
  const next = mulberry32(seed);
  return {
    next,
    // 32 draws, one hex digit each (digit 12 is drawn and replaced by the version, digit 16 keeps
    // its low two bits under the variant), built without intermediate arrays: a simulator process
    // makes one for every message its routers send.
    uuid() {
      let out = '';
      for (let i = 0; i < 32; i++) {
        const digit = Math.floor(next() * 16);
        if (i === 8 || i === 12 || i === 16 || i === 20) out += '-';
        out += HEX[i === 12 ? 4 : i === 16 ? (digit & 3) | 8 : digit];
      }
      return out;
    },
  };
}

/** Resolves after `ms` on `clock`, or rejects with the signal's reason when aborted. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    if (ms <= 0 && !signal) {
      resolve();
      return;
    }
    const onAbort = () => {
      timer.cancel();
      reject(signal!.reason);
    };
    const timer: Timer = clock.setTimer(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
