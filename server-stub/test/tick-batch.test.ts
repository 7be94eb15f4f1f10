import { describe, expect, it } from 'vitest';
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
});
