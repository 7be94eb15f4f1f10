import { describe, expect, it } from 'vitest';
import { DownloadSlots } from '../src/packets/download-slots.js';

describe('DownloadSlots', () => {
  it('grants up to max at once, then queues first in first out, and refuses beyond the queue', async () => {
    const slots = new DownloadSlots(2, 2, 10_000);
    expect(slots.acquire()).toBe(true);
    expect(slots.acquire()).toBe(true);
    const order: string[] = [];
    const first = Promise.resolve(slots.acquire()).then((ok) => order.push(`first:${ok}`));
    const second = Promise.resolve(slots.acquire()).then((ok) => order.push(`second:${ok}`));
    expect(slots.acquire()).toBe(false); // queue full
    expect(slots.queued).toBe(2);
    slots.release();
    slots.release();
    await Promise.all([first, second]);
    expect(order).toEqual(['first:true', 'second:true']);
    expect(slots.active).toBe(2);
    slots.release();
    slots.release();
    expect(slots.active).toBe(0);
    expect(slots.acquire()).toBe(true); // free again, no queue
  });

  it('gives up after the longest wait, and when the caller aborts', async () => {
    const slots = new DownloadSlots(1, 5, 50);
    expect(slots.acquire()).toBe(true);
    await expect(slots.acquire()).resolves.toBe(false); // waited 50 ms
    const ctl = new AbortController();
    const waiting = slots.acquire(ctl.signal);
    expect(slots.queued).toBe(1);
    ctl.abort();
    await expect(waiting).resolves.toBe(false);
    expect(slots.queued).toBe(0);
    expect(slots.acquire(ctl.signal)).toBe(false); // already aborted: not queued
    slots.release();
    expect(slots.active).toBe(0);
  });

  it('while held, new downloads wait in the queue within the same bounds; resuming starts them in order', async () => {
    const slots = new DownloadSlots(2, 2, 10_000);
    expect(slots.acquire()).toBe(true);
    slots.hold();
    expect(slots.held).toBe(true);
    const order: string[] = [];
    const first = Promise.resolve(slots.acquire()).then((ok) => order.push(`first:${ok}`));
    const second = Promise.resolve(slots.acquire()).then((ok) => order.push(`second:${ok}`));
    expect(slots.acquire()).toBe(false); // the queue's bound holds while held too
    // A download that ends while held frees its slot without starting a held one.
    slots.release();
    expect(slots.active).toBe(0);
    expect(slots.queued).toBe(2);
    slots.resume();
    await Promise.all([first, second]);
    expect(order).toEqual(['first:true', 'second:true']);
    expect(slots.active).toBe(2);
    expect(slots.held).toBe(false);
    slots.release();
    expect(slots.acquire()).toBe(true); // not held: a free slot is taken at once
  });

  it('a held download still gives up after the longest wait', async () => {
    const slots = new DownloadSlots(4, 4, 50);
    slots.hold();
    await expect(slots.acquire()).resolves.toBe(false);
    expect(slots.active).toBe(0);
  });
});
