import { describe, expect, it, vi } from 'vitest';
import { TickBatch } from '../src/tick-batch.js';

describe('TickBatch', () => {
  it('hands the items of one tick to flush together, on the next setImmediate', async () => {
    const flushed: number[][] = [];
    const batch = new TickBatch<number>((items) => flushed.push(items));
    batch.push(1);
    batch.push(2);
    expect(flushed).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(flushed).toEqual([[1, 2]]);
    batch.push(3);
    await new Promise((r) => setImmediate(r));
    expect(flushed).toEqual([[1, 2], [3]]);
  });

  it('flushes at once when max are waiting, and drain() empties it now', async () => {
    const flushed: number[][] = [];
    const batch = new TickBatch<number>((items) => flushed.push(items), 2);
    batch.push(1);
    batch.push(2);
    expect(flushed).toEqual([[1, 2]]);
    batch.push(3);
    batch.drain();
    expect(flushed).toEqual([[1, 2], [3]]);
    batch.drain();
    await new Promise((r) => setImmediate(r));
    expect(flushed).toEqual([[1, 2], [3]]); // nothing waited: no empty flush
  });

  it('paces flushes by gapMs: what arrives within the gap after a flush goes together', () => {
    // The gap is measured on a fake clock: on real timers a loaded machine can stall a test longer
    // than the gap, and the flush it checks for "not yet" has then happened.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'performance'] });
    try {
      const flushed: { items: number[]; at: number }[] = [];
      const batch = new TickBatch<number>((items) => flushed.push({ items, at: performance.now() }), Infinity, () => 40);
      batch.push(1);
      vi.advanceTimersToNextTimer();
      expect(flushed.map((f) => f.items)).toEqual([[1]]);
      // Within the gap: no tick flushes; the timer at the gap's end does, both items together.
      batch.push(2);
      vi.advanceTimersByTime(20);
      batch.push(3);
      vi.advanceTimersByTime(19);
      expect(flushed).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(flushed.map((f) => f.items)).toEqual([[1], [2, 3]]);
      expect(flushed[1]!.at - flushed[0]!.at).toBe(40);
      // drain() empties it now, and what it drained is not flushed again by the gap's timer.
      batch.push(4);
      batch.drain();
      expect(flushed.map((f) => f.items)).toEqual([[1], [2, 3], [4]]);
      batch.push(5);
      batch.drain();
      expect(vi.getTimerCount()).toBe(0);
      expect(flushed.map((f) => f.items)).toEqual([[1], [2, 3], [4], [5]]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('without gapMs, a flush after a long one is still on the next tick', async () => {
    const flushed: number[][] = [];
    const batch = new TickBatch<number>((items) => {
      flushed.push(items);
      const until = performance.now() + 20;
      while (performance.now() < until);
    });
    batch.push(1);
    await new Promise((r) => setImmediate(r));
    batch.push(2);
    await new Promise((r) => setImmediate(r));
    expect(flushed).toEqual([[1], [2]]);
  });
});
