import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type FleetHandle, startFleet } from '../src/fleet.js';
import { fleetToCsv, generateFleet } from '../src/fleet-generator.js';
import { PROFILES_FILE, provisionFleet } from '../src/provision.js';
import { startTestServer, type TestServer } from './helpers/server.js';

/**
 * Seats across server restarts and crashes, with real server processes and simulated fleets
 * (docs/licensing.md, "Seats across server restarts and crashes"): a crashed server does not keep
 * seats of routers that never come back, and a restart does not move seats to routers that were
 * waiting for one, however long the fleet takes to come back.
 */

/** Routers of the restart test: the acceptance size is 2,000. */
const N = Number(process.env['FLEET_SIM_RESTART_DEVICES'] ?? 2000);

const dirs: string[] = [];
const servers: TestServer[] = [];
const fleets: FleetHandle[] = [];
afterAll(async () => {
  for (const f of fleets) await f.stop({ graceMs: 2000 }).catch(() => undefined);
  for (const s of servers) await s.dispose().catch(() => undefined);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function provisioned(server: TestServer, devices: number, seed: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-sim-seats-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'fleet.csv'), fleetToCsv(generateFleet({ devices, seed })));
  const result = await provisionFleet({ server: server.url, token: server.token, caPem: server.caPem, fleetCsv: join(dir, 'fleet.csv'), outDir: dir });
  expect(result).toMatchObject({ imported: devices, failed: 0, profiles: devices });
  return dir;
}

/** Splits a provisioned profiles file: the first `first` routers, and the rest. */
function split(dir: string, first: number): [string, string] {
  const lines = readFileSync(join(dir, PROFILES_FILE), 'utf8').split('\n').filter((l) => l.trim() !== '');
  const a = join(dir, 'first.ndjson');
  const b = join(dir, 'rest.ndjson');
  writeFileSync(a, `${lines.slice(0, first).join('\n')}\n`);
  writeFileSync(b, `${lines.slice(first).join('\n')}\n`);
  return [a, b];
}

const managedIds = async (fleet: FleetHandle) =>
  new Set((await fleet.details()).filter((d) => d.admission === 'managed').map((d) => d.deviceId));

describe('seats across server restarts and crashes (real server processes, simulated fleets)', () => {
  it('kill -9 with a managed fleet: after restart, hold and grace the seats of routers that never return go to waiting routers', async () => {
    const SEATS = 30;
    const GONE = 5; // managed before the crash, never come back
    const REST = 35; // 25 managed before the crash, 10 waiting for a seat
    const server = await startTestServer({
      plan: 'basic-1',
      count: SEATS,
      extraArgs: ['--leaseGraceSec', '3', '--restartQuietSec', '6', '--restartHoldMaxSec', '120', '--sweepIntervalSec', '1', '--admissionRetryAfterSec', '2'],
    });
    servers.push(server);
    const dir = await provisioned(server, GONE + REST, 21);
    const [goneFile, restFile] = split(dir, GONE);
    const agent = { backoffMaxMs: 3000 };
    const gone = await startFleet({ profiles: goneFile, rate: 100, processes: 0, seed: 21, agent });
    fleets.push(gone);
    await gone.waitFor((s) => s.managed === GONE, 60_000);
    const rest = await startFleet({ profiles: restFile, rate: 100, processes: 0, seed: 22, agent });
    fleets.push(rest);
    await rest.waitFor((s) => s.managed === SEATS - GONE && s.started === REST, 60_000);
    const before = await managedIds(rest);
    expect(before.size).toBe(SEATS - GONE);
    const goneIds = [...(await managedIds(gone))];
    expect(goneIds).toHaveLength(GONE);

    // The crash: nothing is released. The five routers of `gone` are switched off meanwhile.
    await server.kill();
    await gone.stop({ graceMs: 1000 });
    await server.start();

    // While held, the seats of the previous life show in /metrics.
    const held = Number(/^fleet_devices_held (\d+)$/m.exec(await (await server.rest.raw('GET', '/metrics')).body.text())?.[1]);
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(SEATS);
    // Every router managed before the crash is managed again, and the 5 freed seats (hold, then
    // grace from the catch-up) go to routers that were waiting.
    const after = await rest.waitFor((s) => s.managed === SEATS, 90_000);
    expect(after.managed).toBe(SEATS);
    const now = await managedIds(rest);
    for (const id of before) expect(now.has(id), `router ${id} managed before the crash`).toBe(true);
    // The routers that never came back: offline, and their lease ended.
    for (const id of goneIds) {
      const d = await server.rest.json<{ status: string; admission: string | null; admissionReason: string | null }>(
        'GET',
        `/api/inventory/managed-devices/${id}`,
      );
      expect(d).toMatchObject({ status: 'offline', admission: null, admissionReason: 'lease-ended' });
    }
  }, 240_000);

  it(`a fleet of ${N} restarted with a grace shorter than its reconnect time keeps every seat with its router`, async () => {
    const SEATS = Math.round(N * 0.9);
    const server = await startTestServer({
      plan: 'basic-25',
      count: Math.ceil(SEATS / 25),
      // Grace 2 s; the fleet takes far longer to come back after 3 s down. Waiting routers retry
      // every 5 s (they would take any seat that frees; without the hold about 30 of 1,800 seats
      // moved in this test).
      extraArgs: ['--leaseGraceSec', '2', '--restartQuietSec', '30', '--restartHoldMaxSec', '300', '--admissionRetryAfterSec', '5'],
    });
    servers.push(server);
    const seats = Math.ceil(SEATS / 25) * 25;
    const t0 = Date.now();
    const dir = await provisioned(server, N, 31);
    const provisionedMs = Date.now() - t0;
    const fleet = await startFleet({ profiles: dir, rate: 250, processes: 2, seed: 31, agent: { backoffMaxMs: 5000 } });
    fleets.push(fleet);
    await fleet.waitFor((s) => s.managed === seats && s.started === N, 120_000);
    const before = await managedIds(fleet);
    expect(before.size).toBe(seats);
    const rampMs = Date.now() - t0 - provisionedMs;

    fleet.mark();
    const down = Date.now();
    await server.stop();
    const stopMs = Date.now() - down;
    // Paces the scenario only: the server stays down 3 s (longer than the 2 s grace); nothing is asserted absent.
    await new Promise((r) => setTimeout(r, 3000));
    await server.start();
    const listeningMs = Date.now() - down;
    const back = await fleet.waitFor((s) => s.managedSinceMark === seats, 120_000);
    const backMs = Date.now() - down;
    expect(back.managed).toBe(seats);
    const after = await managedIds(fleet);
    const moved = [...before].filter((id) => !after.has(id)).length;
    console.log(
      `[restart seats] ${N} routers, ${seats} seats: provisioned in ${provisionedMs} ms, admitted in ${rampMs} ms; `
      + `graceful stop ${stopMs} ms, listening again ${listeningMs} ms and all back ${backMs} ms after the stop began (grace 2 s); seats moved: ${moved}`,
    );
    expect(moved).toBe(0);
  }, 300_000);
});
