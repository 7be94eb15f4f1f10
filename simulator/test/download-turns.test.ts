import { describe, expect, it } from 'vitest';
import { DownloadTurns } from '../src/download-turns.js';

/** Resolves with performance.now() when `p` settles. */
const settledAt = (p: Promise<void>) => p.then(() => performance.now());

describe('DownloadTurns: downloads start after a burst of offers', () => {
  it('lets a download start at once when no offer was taken lately', async () => {
    const turns = new DownloadTurns(50, 1000);
    let started = false;
    const p = turns.wait(new AbortController().signal).then(() => (started = true));
    await Promise.resolve();
    expect(started).toBe(true);
    await p;
    expect(turns.held).toBe(0);
  });

  it('holds downloads while offers keep coming, then lets them all go, in the order asked, once the offers stop', async () => {
    const turns = new DownloadTurns(40, 5000);
    turns.offered();
    const order: number[] = [];
    const waits = [0, 1, 2].map((i) => turns.wait(new AbortController().signal).then(() => order.push(i)));
    expect(turns.held).toBe(3);
    // Offers every 10 ms for 100 ms: shorter gaps than the quiet time.
    let lastOffer = performance.now();
    for (let k = 0; k < 10; k++) {
      await new Promise((r) => setTimeout(r, 10));
      turns.offered();
      lastOffer = performance.now();
    }
    const at = await settledAt(Promise.all(waits).then(() => undefined));
    expect(at - lastOffer).toBeGreaterThanOrEqual(39);
    expect(order).toEqual([0, 1, 2]);
    expect(turns.held).toBe(0);
  });

  it('holds a download no longer than the longest hold while offers never stop', async () => {
    const turns = new DownloadTurns(40, 120);
    turns.offered();
    const heldAt = performance.now();
    const offers = setInterval(() => turns.offered(), 5);
    try {
      const at = await settledAt(turns.wait(new AbortController().signal));
      expect(at - heldAt).toBeGreaterThanOrEqual(119);
    } finally {
      clearInterval(offers);
    }
  });

  it('lets a held download go when its agent stops', async () => {
    const turns = new DownloadTurns(60_000, 60_000);
    turns.offered();
    const stop = new AbortController();
    const other = turns.wait(new AbortController().signal);
    const p = turns.wait(stop.signal);
    stop.abort();
    await p;
    // An already stopped agent does not wait at all; the other held download still waits.
    await turns.wait(stop.signal);
    let otherStarted = false;
    void other.then(() => (otherStarted = true));
    await new Promise((r) => setImmediate(r));
    expect(otherStarted).toBe(false);
  });
});
