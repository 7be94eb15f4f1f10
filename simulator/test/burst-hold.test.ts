import { describe, expect, it } from 'vitest';
import { BurstHold } from '../src/burst-hold.js';

/** Resolves with performance.now() when `p` settles. */
const settledAt = (p: Promise<void>) => p.then(() => performance.now());

describe('BurstHold: downloads start after a burst of offers', () => {
  it('lets a download start at once when no offer was taken lately', async () => {
    const turns = new BurstHold(50, 1000);
    let started = false;
    const p = turns.wait(new AbortController().signal).then(() => (started = true));
    await Promise.resolve();
    expect(started).toBe(true);
    await p;
    expect(turns.held).toBe(0);
  });

  it('holds downloads while offers keep coming, then lets them all go, in the order asked, once the offers stop', async () => {
    // The quiet time is far longer than the gaps between offers, so that a loaded machine's timer
    // delays cannot make a gap look like the end of the burst.
    const turns = new BurstHold(400, 10_000);
    turns.offered();
    const order: number[] = [];
    const waits = [0, 1, 2].map((i) => turns.wait(new AbortController().signal).then(() => order.push(i)));
    expect(turns.held).toBe(3);
    // Offers every 10 ms for about 100 ms: much shorter gaps than the quiet time.
    let lastOffer = performance.now();
    for (let k = 0; k < 10; k++) {
      await new Promise((r) => setTimeout(r, 10));
      turns.offered();
      lastOffer = performance.now();
    }
    const at = await settledAt(Promise.all(waits).then(() => undefined));
    expect(at - lastOffer).toBeGreaterThanOrEqual(399);
    expect(order).toEqual([0, 1, 2]);
    expect(turns.held).toBe(0);
  });

  it('holds a download no longer than the longest hold while offers never stop', async () => {
    // Offers every 10 ms, a quiet time of 2 s: only the longest hold (300 ms) can let it go.
    const turns = new BurstHold(2000, 300);
    turns.offered();
    const heldAt = performance.now();
    const offers = setInterval(() => turns.offered(), 10);
    try {
      const at = await settledAt(turns.wait(new AbortController().signal));
      expect(at - heldAt).toBeGreaterThanOrEqual(299);
      expect(at - heldAt).toBeLessThan(2000);
    } finally {
      clearInterval(offers);
    }
  });

  it('lets a held download go when its agent stops', async () => {
    const turns = new BurstHold(60_000, 60_000);
    turns.offered();
    const stop = new AbortController();
    void turns.wait(new AbortController().signal);
    const p = turns.wait(stop.signal);
    expect(turns.held).toBe(2);
    stop.abort();
    await p;
    // The stopped agent's download is no longer held; the other one still is.
    expect(turns.held).toBe(1);
    // An already stopped agent does not wait at all.
    await turns.wait(stop.signal);
    expect(turns.held).toBe(1);
  });
});
