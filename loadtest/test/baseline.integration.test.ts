import { describe, expect, it } from 'vitest';
import { runBaseline } from '../src/baseline.js';
import { loopbackSources, percentiles } from '../src/stats.js';

describe('raw ws baseline', () => {
  it('opens every connection over several source addresses and reports per-connection costs', async () => {
    const result = await runBaseline({ connections: 300, processes: 2, sourceAddresses: 3 });
    expect(result.connections).toBe(300);
    expect(result.failed).toBe(0);
    expect(result.connectsPerSec).toBeGreaterThan(0);
    // 300 connections are ~1–10 MB of RSS, inside the allocator's noise (CI once measured −3.9 KB/connection);
    // the heap after a full GC is what reliably grows with every open socket.
    expect(result.serverHeapBytesPerConnection).toBeGreaterThan(500);
    expect(Number.isFinite(result.serverBytesPerConnection)).toBe(true);
    expect(result.connectMs.count).toBe(300);
  });
});

describe('stats', () => {
  it('computes nearest-rank percentiles and loopback sources', () => {
    expect(percentiles([5, 1, 4, 2, 3])).toEqual({ count: 5, p50: 3, p90: 5, p99: 5, max: 5 });
    expect(percentiles([])).toEqual({ count: 0, p50: 0, p90: 0, p99: 0, max: 0 });
    expect(loopbackSources(3)).toEqual(['127.0.0.1', '127.0.0.2', '127.0.0.3']);
    expect(() => loopbackSources(0)).toThrow(RangeError);
  });
});
