import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetToCsv, generateFleet } from '../src/fleet-generator.js';
import { Histogram } from '../src/histogram.js';
import type { FleetReport } from '../src/metrics.js';
import { PROFILES_FILE, provisionFleet } from '../src/provision.js';
import { scanFleet } from '../src/shard.js';
import { ensureSimulatorBuilt, runSim, startSim } from './helpers/cli.js';
import { startTestServer, type TestServer } from './helpers/server.js';

let server: TestServer | undefined;
const dirs: string[] = [];
beforeAll(() => ensureSimulatorBuilt(), 180_000);
afterAll(async () => {
  await server?.dispose().catch(() => undefined);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as FleetReport;

describe('two shards of one fleet against one server (real processes)', () => {
  it('merge to the counts of one run of the whole fleet, and refuse what does not merge', async () => {
    const routers = 12;
    server = await startTestServer({ plan: 'basic-25', count: 1 });
    const d = mkdtempSync(join(tmpdir(), 'fleet-sim-shards-'));
    dirs.push(d);
    writeFileSync(join(d, 'fleet.csv'), fleetToCsv(generateFleet({ devices: routers, seed: 21 })));
    await provisionFleet({ server: server.url, token: server.token, caPem: server.caPem, fleetCsv: join(d, 'fleet.csv'), outDir: d });
    const sizes = await Promise.all([1, 2].map(async (k) => (await scanFleet(join(d, PROFILES_FILE), { index: k, count: 2 })).selected.length));
    expect(sizes[0]! + sizes[1]!).toBe(routers);
    expect(Math.min(...sizes)).toBeGreaterThan(0); // the seed gives both slices routers

    // A scenario ends by itself once its routers are admitted: the whole fleet, then shard 2/2.
    const scenario = (report: string, count: number, shard?: { index: number; count: number }) => {
      const file = join(d, `${report}.scenario.json`);
      writeFileSync(file, JSON.stringify({
        server: server!.url, ca: server!.caFile, profiles: d, processes: 1, seed: 5, report: join(d, report),
        ...(shard ? { shard } : {}),
        steps: [{ step: 'ramp', rate: 40 }, { step: 'wait-until-admitted', count, timeoutSec: 120 }, { step: 'stop' }],
      }));
      return file;
    };
    const whole = await runSim(['scenario', scenario('whole.json', routers)]);
    expect(whole.stderr).not.toContain('fleet-sim:');
    expect(whole.code).toBe(0);

    // The two shards at once, as on two machines: 1/2 from the command line (stopped with Ctrl-C
    // once its routers are admitted), 2/2 from a scenario file.
    const prometheus = await freePort();
    const first = startSim([
      'run', '--server', server.url, '--ca', server.caFile, '--profiles', d, '--shard', '1/2', '--processes', '1', '--seed', '5',
      '--rate', '40', '--duration', '10m', '--prometheus', String(prometheus), '--report', join(d, 'shard1.json'),
    ]);
    try {
      const second = runSim(['scenario', scenario('shard2.json', sizes[1]!, { index: 2, count: 2 })]);
      await expect
        .poll(async () => {
          if (first.child.exitCode !== null) throw new Error(`fleet-sim exited ${first.child.exitCode}: ${first.stderr()}`);
          try {
            const text = await (await request(`http://127.0.0.1:${prometheus}/metrics`)).body.text();
            return Number(/^fleetsim_routers_by_state\{state="managed"\} (\d+)$/m.exec(text)?.[1] ?? 0);
          } catch {
            return 0;
          }
        }, { timeout: 120_000, interval: 250 })
        .toBe(sizes[0]);
      const s2 = await second;
      expect(s2.stderr).not.toContain('fleet-sim:');
      expect(s2.code).toBe(0);
      first.child.kill('SIGINT');
      expect(await first.exit).toBe(0);
      expect(first.stderr()).toContain(`shard 1/2 (${sizes[0]} of the fleet's ${routers} routers)`);
    } finally {
      if (first.child.exitCode === null) first.child.kill('SIGKILL');
    }

    const merge = await runSim(['report', 'merge', join(d, 'shard1.json'), join(d, 'shard2.json'), '--out', join(d, 'merged.json')]);
    expect(merge.stderr).not.toContain('fleet-sim:');
    expect(merge.code).toBe(0);
    const one = readJson(join(d, 'whole.json'));
    const s1 = readJson(join(d, 'shard1.json'));
    const s2 = readJson(join(d, 'shard2.json'));
    const merged = readJson(join(d, 'merged.json'));
    expect(s1.shard).toEqual({ count: 2, indices: [1] });
    expect(s2.shard).toEqual({ count: 2, indices: [2] });
    expect([s1.devices, s2.devices]).toEqual(sizes);
    expect(s1.fleet).toEqual(one.fleet);
    expect(merged.fleet).toEqual({ id: one.fleet.id, routers });
    expect(merged.shard).toEqual({ count: 2, indices: [1, 2] });
    expect(merged.merged!.missing).toEqual([]);
    // The counts of one run of the whole fleet.
    for (const key of ['devices', 'started', 'managed', 'unmanaged', 'rejected', 'reconnects'] as const) expect(merged[key], key).toBe(one[key]);
    expect(merged.devices).toBe(routers);
    expect(merged.managed).toBe(routers);
    expect(merged.states).toEqual(one.states);
    expect(merged.counters.connects).toBe(one.counters.connects);
    expect(merged.errors).toEqual(one.errors);
    for (const h of ['connect', 'admission']) {
      expect(merged.histograms[h]!.count, h).toBe(one.histograms[h]!.count);
      expect(merged.histograms[h]!.count, h).toBe(routers);
      // The percentiles are those of the merged buckets, which are the two shards' buckets added.
      const added = Histogram.from(s1.raw.histograms[h]!);
      added.merge(s2.raw.histograms[h]!);
      expect(merged.histograms[h], h).toEqual(added.summary());
      expect(merged.raw.histograms[h], h).toEqual(added.toJSON());
    }
    expect(merged.memory.rssBytes).toBe(s1.memory.rssBytes + s2.memory.rssBytes);
    expect(merged.memory.rssPerRouterBytes).toBe(Math.round((s1.memory.rssBytes + s2.memory.rssBytes) / routers));
    expect(merged.memory.processes.map((p) => p.shard)).toEqual([1, 2]);
    // Without --out: the merged report on standard output.
    const printed = await runSim(['report', 'merge', join(d, 'shard2.json'), join(d, 'shard1.json')]);
    expect(printed.code).toBe(0);
    expect((JSON.parse(printed.stdout) as FleetReport).histograms).toEqual(merged.histograms);

    // What does not merge: one line with a stable code, exit 2.
    const refused = async (args: string[], code: string) => {
      const r = await runSim(['report', 'merge', ...args]);
      expect(r.stderr, code).toContain(`fleet-sim: ${code}: `);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.code).toBe(2);
      return r.stderr;
    };
    expect(await refused([join(d, 'shard1.json'), join(d, 'shard1.json')], 'SIM_MERGE_SHARD_DUPLICATE')).toContain('shard 1/2');
    expect(await refused([join(d, 'shard1.json')], 'SIM_MERGE_SHARDS_MISSING')).toContain('2/2');
    await refused([join(d, 'whole.json'), join(d, 'shard2.json')], 'SIM_MERGE_FLEETS_DIFFER');
    writeFileSync(join(d, 'other-fleet.json'), JSON.stringify({ ...s2, fleet: { id: 'sha256:0000', routers } }));
    await refused([join(d, 'shard1.json'), join(d, 'other-fleet.json')], 'SIM_MERGE_FLEETS_DIFFER');
    writeFileSync(join(d, 'not-json.json'), '{ "devices": ');
    await refused([join(d, 'shard1.json'), join(d, 'not-json.json')], 'SIM_REPORT_INVALID');
    await refused([join(d, 'shard1.json'), join(d, 'fleet.csv')], 'SIM_REPORT_INVALID');
    const partial = await runSim(['report', 'merge', join(d, 'shard2.json'), '--allow-missing']);
    expect(partial.code).toBe(0);
    expect(partial.stderr).toContain('warning: no report of shard 1/2');
    expect((JSON.parse(partial.stdout) as FleetReport).merged!.missing).toEqual([1]);

    // Bad shards: refused before anything dials.
    for (const shard of ['0/2', '3/2', 'x']) {
      const r = await runSim(['run', '--server', server.url, '--ca', server.caFile, '--profiles', d, '--shard', shard, '--duration', '1s']);
      expect(r.stderr, shard).toContain('fleet-sim: SIM_SHARD_INVALID: ');
      expect(r.code).toBe(2);
    }
    // More shards than routers: a slice without routers is an error, not an empty run.
    const emptyShard = (await scanFleet(join(d, PROFILES_FILE), { index: 1, count: 2 }, 1)).selected.length === 1 ? 2 : 1;
    const empty = await runSim(['run', '--server', server.url, '--ca', server.caFile, '--profiles', d, '--devices', '1', '--shard', `${emptyShard}/2`, '--duration', '1s']);
    expect(empty.stderr).toContain(`fleet-sim: SIM_FLEET_INVALID: shard ${emptyShard}/2`);
    expect(empty.code).toBe(2);
  }, 400_000);
});
