import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32 } from '@router-fleet/protocol/random';
import { afterAll, describe, expect, it } from 'vitest';
import { Histogram } from '../src/histogram.js';
import { buildReport, type FleetReport } from '../src/metrics.js';
import { mergeReports } from '../src/report-merge.js';
import { validateScenario } from '../src/scenario.js';
import { parseShard, scanFleet, shardOfRouter, validateShard } from '../src/shard.js';
import { HISTOGRAMS, mergeStats, type WorkerStats } from '../src/stats.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A profiles file of `n` routers (only what slicing reads: serial number and device id), in the given order. */
function profilesFile(serials: string[]): string {
  const d = mkdtempSync(join(tmpdir(), 'fleet-sim-shard-'));
  dirs.push(d);
  const file = join(d, 'profiles.ndjson');
  const lines = serials.map((serial) => JSON.stringify({ profile: { serialNumber: serial, deviceId: `dev-${serial}`, serverUrl: 'wss://127.0.0.1:1/ws' }, sim: {} }));
  // Blank lines and a missing final newline are not routers.
  writeFileSync(file, `${lines.slice(0, 3).join('\n')}\n\n${lines.slice(3).join('\n')}`);
  return file;
}

const serials = (n: number) => Array.from({ length: n }, (_, i) => `RTR-${String(i + 1).padStart(6, '0')}`);

function shuffled<T>(items: T[], seed: number): T[] {
  const random = mulberry32(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('shards: deterministic slices of a fleet file', () => {
  it('puts every router in exactly one slice, whatever N', async () => {
    const all = serials(1000);
    const file = profilesFile(all);
    for (const n of [1, 2, 3, 5, 7, 16, 64]) {
      const seen = new Map<number, number>();
      let fleetId: string | undefined;
      for (let k = 1; k <= n; k++) {
        const scan = await scanFleet(file, { index: k, count: n });
        expect(scan.available).toBe(1000);
        expect(scan.fleet.routers).toBe(1000);
        fleetId ??= scan.fleet.id;
        expect(scan.fleet.id).toBe(fleetId); // every slice names the same fleet
        for (const i of scan.selected) {
          expect(seen.has(i), `router ${i} in slice ${seen.get(i)} and ${k} of ${n}`).toBe(false);
          seen.set(i, k);
          expect(shardOfRouter(all[i]!, n)).toBe(k);
        }
      }
      expect(seen.size, `N = ${n}`).toBe(1000);
    }
  });

  it('slices by the router, not by its place in the file: another order, the same slices and the same fleet', async () => {
    const all = serials(300);
    const other = shuffled(all, 42);
    expect(other).not.toEqual(all);
    const a = profilesFile(all);
    const b = profilesFile(other);
    for (const k of [1, 2, 3]) {
      const sa = await scanFleet(a, { index: k, count: 3 });
      const sb = await scanFleet(b, { index: k, count: 3 });
      expect(sb.fleet.id).toBe(sa.fleet.id);
      expect(new Set(sb.selected.map((i) => other[i]))).toEqual(new Set(sa.selected.map((i) => all[i])));
      // Even in size only statistically: 100 ± a few dozen.
      expect(sa.selected.length).toBeGreaterThan(60);
      expect(sa.selected.length).toBeLessThan(140);
    }
    // A prefix of the file (--devices) is another fleet, sliced the same way router by router.
    const prefix = await scanFleet(a, { index: 2, count: 3 }, 100);
    expect(prefix.fleet.routers).toBe(100);
    expect(prefix.fleet.id).not.toBe((await scanFleet(a)).fleet.id);
    expect(prefix.selected.every((i) => i < 100 && shardOfRouter(all[i]!, 3) === 2)).toBe(true);
  });

  it('refuses bad shards with SIM_SHARD_INVALID', () => {
    expect(parseShard('2/3')).toEqual({ index: 2, count: 3 });
    expect(parseShard(' 1 / 1 ')).toEqual({ index: 1, count: 1 });
    for (const bad of ['0/2', '3/2', 'x', '1/0', '1/', '/2', '-1/2', '1.5/2', '']) {
      expect(() => parseShard(bad), bad).toThrow(expect.objectContaining({ code: 'SIM_SHARD_INVALID' }));
    }
    for (const bad of [null, 3, { index: 0, count: 2 }, { index: 3, count: 2 }, { index: 1 }, { index: '1', count: 2 }, { index: 1, count: 0.5 }]) {
      expect(() => validateShard(bad), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'SIM_SHARD_INVALID' }));
    }
    const scenario = { server: 'https://127.0.0.1:1', profiles: '/x', steps: [{ step: 'ramp' }] };
    expect(validateScenario({ ...scenario, shard: { index: 2, count: 2 } }).shard).toEqual({ index: 2, count: 2 });
    expect(() => validateScenario({ ...scenario, shard: { index: 3, count: 2 } })).toThrow(expect.objectContaining({ code: 'SIM_SHARD_INVALID' }));
  });
});

describe('histogram merge', () => {
  it('is exact: merged buckets give the percentiles of one histogram that recorded every sample', () => {
    const random = mulberry32(7);
    const one = new Histogram();
    const parts = [new Histogram(), new Histogram(), new Histogram(), new Histogram()];
    for (let i = 0; i < 50_000; i++) {
      // Log-normal-ish latencies from 0.05 ms to minutes, and a few exact zeros.
      const ms = i % 997 === 0 ? 0 : Math.exp(random() * 14 - 3);
      one.record(ms);
      parts[Math.floor(random() * 3)]!.record(ms); // the fourth part stays empty
    }
    // Through JSON, as reports carry them (an empty histogram included).
    const merged = new Histogram();
    for (const p of parts) merged.merge(JSON.parse(JSON.stringify(p.toJSON())));
    expect(merged.count).toBe(one.count);
    expect(merged.min).toBe(one.min);
    expect(merged.max).toBe(one.max);
    expect(merged.toJSON().buckets).toEqual(one.toJSON().buckets);
    for (const p of [1, 10, 25, 50, 75, 90, 99, 99.9, 100]) expect(merged.percentile(p), `p${p}`).toBe(one.percentile(p));
    expect(merged.summary()).toEqual(one.summary());
  });

  it('an empty histogram from another process does not make the min 0', () => {
    const h = new Histogram();
    h.record(12);
    h.merge(JSON.parse(JSON.stringify(new Histogram().toJSON())));
    expect(h.summary()).toMatchObject({ count: 1, min: 12, max: 12 });
  });
});

/** A report of shard `index`/`count` whose routers recorded these connect times. */
function shardReport(index: number, count: number, connects: number[], fleetId = 'sha256:f1'): FleetReport {
  const h = new Histogram();
  for (const ms of connects) h.record(ms);
  const empty = new Histogram().toJSON();
  const n = connects.length;
  const part: WorkerStats = {
    process: 0, pid: 1000 + index, at: 1000, devices: n, started: n, due: n,
    states: { managed: n - 1, 'rejected-waiting': 1 },
    admission: { managed: n - 1, unmanaged: 0, rejected: 1, authFailed: 0 },
    managedSinceMark: 0, markAt: 0,
    counters: {
      connects: n, disconnects: 0, reconnects: 0, dialFailures: index, dialsQueued: 0,
      restarts: 0, jobsOffered: 0, jobsActive: 0, jobsDone: 0, jobsRolledBack: 0,
    },
    errors: { 'dial:ECONNRESET': index },
    reconnectBins: {},
    histograms: Object.fromEntries(HISTOGRAMS.map((k) => [k, k === 'connect' ? h.toJSON() : empty])) as WorkerStats['histograms'],
    openSockets: n,
    memory: { rss: 100_000 * n, heapUsed: 40_000 * n, external: 0 },
    cpu: { userMs: 1000, systemMs: 500 },
  };
  const fleet = { id: fleetId, routers: 99 };
  const report = buildReport(mergeStats([part]), Date.now() - 10_000, { shard: { index, count }, fleet, steps: [{ step: 'ramp' }] });
  return JSON.parse(JSON.stringify(report)) as FleetReport;
}

describe('mergeReports', () => {
  const a = [5, 7.5, 12, 250, 3000];
  const b = [1, 6, 6, 90];
  const c = [40, 41, 42];

  it('adds counts, merges histograms exactly and combines memory', () => {
    const merged = mergeReports([{ report: shardReport(2, 3, b), file: 'b.json' }, { report: shardReport(1, 3, a) }, { report: shardReport(3, 3, c) }]);
    const whole = new Histogram();
    for (const ms of [...a, ...b, ...c]) whole.record(ms);
    expect(merged.shard).toEqual({ count: 3, indices: [1, 2, 3] });
    expect(merged.devices).toBe(12);
    expect(merged.started).toBe(12);
    expect(merged.managed).toBe(9);
    expect(merged.rejected).toBe(3);
    expect(merged.states).toEqual({ managed: 9, 'rejected-waiting': 3 });
    expect(merged.counters.connects).toBe(12);
    expect(merged.errors).toEqual({ 'dial:ECONNRESET': 6 });
    expect(merged.histograms['connect']).toEqual(whole.summary());
    expect(merged.raw.histograms['connect']).toEqual(JSON.parse(JSON.stringify(whole.toJSON())));
    expect(merged.histograms['jobOffer']).toMatchObject({ count: 0 });
    expect(merged.memory.rssBytes).toBe(1_200_000);
    expect(merged.memory.rssPerRouterBytes).toBe(100_000);
    expect(merged.memory.heapPerRouterBytes).toBe(40_000);
    expect(merged.memory.processes.map((p) => p.shard).sort()).toEqual([1, 2, 3]);
    expect(merged.processes).toBe(3);
    expect(merged.cpu.seconds).toBe(4.5);
    expect(merged.merged).toMatchObject({ missing: [] });
    expect(merged.merged!.runs.map((r) => r.indices)).toEqual([[2], [1], [3]]);
    expect(merged.merged!.runs[0]).toMatchObject({ file: 'b.json', devices: 4, steps: [{ step: 'ramp' }] });
    // A merged report merges again: (1 + 2) + 3 is 1 + 2 + 3.
    const oneTwo = mergeReports([{ report: shardReport(1, 3, a) }, { report: shardReport(2, 3, b) }], { allowMissing: true });
    const twoStep = mergeReports([{ report: oneTwo }, { report: shardReport(3, 3, c) }]);
    expect(twoStep.histograms).toEqual(merged.histograms);
    expect(twoStep.devices).toBe(12);
    expect(twoStep.merged!.runs).toHaveLength(3);
  });

  it('refuses other fleets, other cuts, duplicate and missing shards, and files that are not reports', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return (err as { code: string; message: string }).code;
      }
      return 'merged';
    };
    expect(code(() => mergeReports([{ report: shardReport(1, 2, a) }, { report: shardReport(2, 2, b, 'sha256:other') }]))).toBe('SIM_MERGE_FLEETS_DIFFER');
    expect(code(() => mergeReports([{ report: shardReport(1, 2, a) }, { report: shardReport(2, 3, b) }]))).toBe('SIM_MERGE_FLEETS_DIFFER');
    expect(code(() => mergeReports([{ report: shardReport(1, 2, a) }, { report: shardReport(1, 2, a) }]))).toBe('SIM_MERGE_SHARD_DUPLICATE');
    expect(code(() => mergeReports([{ report: shardReport(1, 3, a) }, { report: shardReport(3, 3, c) }]))).toBe('SIM_MERGE_SHARDS_MISSING');
    expect(code(() => mergeReports([]))).toBe('SIM_USAGE');
    const partial = mergeReports([{ report: shardReport(1, 3, a) }, { report: shardReport(3, 3, c) }], { allowMissing: true });
    expect(partial.merged!.missing).toEqual([2]);
    expect(partial.devices).toBe(8);
    // Overlap through an earlier merge is a duplicate too.
    const oneTwo = mergeReports([{ report: shardReport(1, 3, a) }, { report: shardReport(2, 3, b) }], { allowMissing: true });
    expect(code(() => mergeReports([{ report: oneTwo }, { report: shardReport(2, 3, b) }, { report: shardReport(3, 3, c) }]))).toBe('SIM_MERGE_SHARD_DUPLICATE');
    const good = shardReport(1, 1, a) as unknown as Record<string, unknown>;
    const without = (key: string) => Object.fromEntries(Object.entries(good).filter(([k]) => k !== key));
    for (const bad of [null, [], 'text', without('raw'), without('fleet'), without('shard'), without('counters'), { ...good, shard: { count: 2, indices: [3] } }]) {
      expect(code(() => mergeReports([{ report: bad }])), JSON.stringify(bad)?.slice(0, 40)).toBe('SIM_REPORT_INVALID');
    }
  });
});
