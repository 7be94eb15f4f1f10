import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Behaviour } from '../src/behaviour.js';
import { type FleetHandle, startFleet } from '../src/fleet.js';
import { fleetToCsv, generateFleet } from '../src/fleet-generator.js';
import { createJob, getJob, jobDeviceResults, waitJob } from '../src/jobs.js';
import { provisionFleet } from '../src/provision.js';
import type { DeviceDetail } from '../src/stats.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { startTestServer, type TestServer } from './helpers/server.js';

/** Routers in the fleet; the job runs at most IN_FLIGHT of them at once, so every phase is under way at each kill. */
const N = 100;
const IN_FLIGHT = 40;
const WAIT_MS = 120_000;

/**
 * Slow enough that a kill finds routers in every phase: a 96 KiB packet over a 48 KiB/s link
 * (2 s of download), 1.5 s per install, a reboot of 0.5–2 s.
 */
const behaviour: Behaviour = {
  name: 'crash-test',
  rules: [{ probability: 1, label: 'slow', faults: { download: { bytesPerSec: 48 * 1024 }, install: { delayMs: 1500 } } }],
  rebootMs: { min: 500, max: 2000 },
};

let server: TestServer | undefined;
let dir: string | undefined;
afterAll(async () => {
  await server?.dispose().catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Polls the routers' details until `check` holds (the routers' own view, not the server's). */
function detailsWhen(fleet: FleetHandle, check: (d: DeviceDetail[]) => boolean, what: string): Promise<DeviceDetail[]> {
  return waitFor(async () => {
    const d = await fleet.details();
    return check(d) && d;
  }, { timeout: WAIT_MS, interval: 100, what });
}

const tally = (d: DeviceDetail[]) => {
  const t: Record<string, number> = {};
  for (const x of d) {
    const k = x.updateState ?? 'idle';
    t[k] = (t[k] ?? 0) + 1;
  }
  return t;
};
const inState = (d: DeviceDetail[], states: string[]) => d.filter((x) => x.updateState !== undefined && states.includes(x.updateState)).length;

describe(`kill -9 of the server during a job to ${N} routers`, () => {
  it('records every router\'s result exactly once, and the job\'s counts equal the routers\' own results', async () => {
    server = await startTestServer({ plan: 'basic-25', count: N / 25 });
    dir = mkdtempSync(join(tmpdir(), 'fleet-crash-'));
    writeFileSync(join(dir, 'fleet.csv'), fleetToCsv(generateFleet({ devices: N, seed: 11 })));
    await provisionFleet({ server: server.url, token: server.token, caPem: server.caPem, fleetCsv: join(dir, 'fleet.csv'), outDir: dir });
    const fleet = await startFleet({
      profiles: dir,
      rate: 200,
      processes: 1,
      behaviour,
      seed: 11,
      agent: { downloadRetryBaseMs: 50, downloadRetries: 20, reportResendSec: 5, backoffMaxMs: 5000 },
    });
    try {
      await fleet.waitFor((s) => s.managed === N, WAIT_MS);
      const ids = (await fleet.details()).map((d) => d.deviceId);
      fleet.jobCreated();
      const job = await createJob(server.rest, { packet: { firmwareVersion: '99.0.0', sizeBytes: 96 * 1024 }, options: { rollout: { maxConcurrent: IN_FLIGHT } } }, async () => ids);

      const moments: Array<{ name: string; ready: (d: DeviceDetail[]) => boolean }> = [
        { name: 'right after the offers', ready: (d) => d.some((x) => x.updateState !== undefined) },
        // After the first restart: downloads under way again while others already moved past theirs.
        { name: 'during downloads', ready: (d) => inState(d, ['downloading']) >= 5 && d.some((x) => x.jobResults.length > 0 || inState([x], ['installing', 'rebooting', 'health-check', 'committing']) > 0) },
        { name: 'during installs and reboots', ready: (d) => inState(d, ['installing', 'rebooting', 'health-check']) >= 5 },
        { name: 'just before results', ready: (d) => d.filter((x) => x.jobResults.length > 0).length >= N / 2 && inState(d, ['health-check', 'committing', 'rebooting']) >= 1 },
      ];
      for (const m of moments) {
        const seen = await detailsWhen(fleet, m.ready, m.name);
        await server.kill();
        console.log(`kill -9 ${m.name}: routers by update state ${JSON.stringify(tally(seen))}, ${seen.filter((x) => x.jobResults.length > 0).length} finished`);
        await server.start();
      }

      const done = await waitJob(server.rest, job.uuid, 100, WAIT_MS, 500);
      expect(done.progress.devices).toMatchObject({ total: N, done: N });
      const rows = await jobDeviceResults(server.rest, job.uuid);
      expect(rows).toHaveLength(N);
      // Every router has recorded its own result (the server acknowledged it only after storing it).
      const details = await detailsWhen(fleet, (d) => d.every((x) => x.jobResults.length > 0), 'every router has a result');
      const own = new Map(details.map((d) => [d.deviceId, d.jobResults]));
      const mismatches = rows
        .map((r) => {
          const mine = own.get(r.deviceUuid) ?? [];
          return { device: r.serialNumber, server: r.result, attempts: r.attempts, router: mine.map((x) => x.state) };
        })
        .filter((m) => m.attempts !== 1 || m.router.length !== 1 || m.router[0] !== m.server);
      expect(mismatches).toEqual([]);
      // The job's counts are the routers' own results, each once.
      const byRouter: Record<string, number> = { succeeded: 0, failed: 0, rejected: 0, cancelled: 0, 'timed-out': 0 };
      for (const d of details) byRouter[d.jobResults[0]!.state] = (byRouter[d.jobResults[0]!.state] ?? 0) + 1;
      const final = await getJob(server.rest, job.uuid);
      expect(final.progress.results).toEqual(byRouter);
      const codes: Record<string, number> = {};
      for (const r of rows) if (r.errorCode) codes[r.errorCode] = (codes[r.errorCode] ?? 0) + 1;
      console.log(`after 4 kills: results ${JSON.stringify(final.progress.results)} (${JSON.stringify(codes)}), ignored progress ${final.progress.ignoredProgress}`);
    } finally {
      await fleet.stop();
    }
  }, 300_000);
});
