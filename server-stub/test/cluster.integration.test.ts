import { createMessage } from '@router-fleet/protocol';
import { request } from 'undici';
import { Store } from '../src/store/database.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedSigningPki } from './helpers/channel-world.js';
import { FakeDevice } from './helpers/fake-device.js';
import { parsePrometheusText, sampleValue } from './helpers/prometheus-text.js';
import { ensureServerBuilt } from './helpers/built.js';
import { alive, killServes, LOG_DEADLINE_MS, login, seedFleet, serve, workersListening } from './helpers/cluster.js';
import { removeTempDirs, tempDir, testConfig, world } from './helpers/setup.js';

beforeAll(() => ensureServerBuilt(), 180_000);
afterAll(() => {
  killServes();
  removeTempDirs();
});

describe('serve --workers 2 (real CLI, node:cluster)', () => {
  it('admits first come first served across workers; a SIGKILLed worker\'s devices go offline, the others stay, it is replaced', async () => {
    const { dataDir, t, ids } = await seedFleet({ licences: 6, devices: 10 });
    const server = serve(dataDir, ['--workers', '2', '--presenceFlushMs', '100']);
    const logs = server.logs;
    // Both workers listen on the same port (node:cluster shares it); wait for both, or the primary
    // hands every connection to the first one (seen on Node 24, whose workers start slower).
    const url = (await logs.waitFor((l) => l['msg'] === 'fleet-server listening')).url as string;
    await workersListening(logs, 2);
    // Paces the scenario only (nothing is asserted absent here): a moment for the primary's
    // round-robin to take both workers before the devices connect.
    await new Promise((r) => setTimeout(r, 300));
    const channelUrl = `${url.replace('http', 'ws')}/api/channel`;

    const devices: FakeDevice[] = [];
    const outcomes: string[] = [];
    for (const id of ids) {
      const d = await FakeDevice.open(channelUrl, id);
      outcomes.push((await d.admit()).body.admission);
      devices.push(d);
    }
    expect(outcomes).toEqual([...Array(6).fill('managed'), ...Array(4).fill('rejected')]);
    const workerOf = devices.map((d) => String(d.headers['x-fleet-worker']));
    const managedWorkers = new Set(workerOf.slice(0, 6));
    expect(managedWorkers.size).toBe(2);

    const token = await login(url, t);
    // Requests time out and are retried by the polls: node:cluster's primary may hand a new
    // connection to the worker just killed (before it has seen the exit), and that one never answers.
    const statuses = async () => {
      const res = await request(`${url}/api/inventory/managed-devices?limit=100&sort=serialNumber`, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(3000),
      });
      const items = ((await res.body.json()) as { items: { serialNumber: string; status: string }[] }).items;
      return Object.fromEntries(items.map((i) => [i.serialNumber, i.status]));
    };
    const metric = async (name: string) => {
      const text = await (await request(`${url}/metrics`, { signal: AbortSignal.timeout(3000) })).body.text();
      return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1]);
    };
    await expect.poll(() => metric('fleet_devices_connected'), { timeout: 30_000 }).toBe(6);
    expect(await metric('fleet_workers')).toBe(2);
    // One view of all processes: the admission histogram holds the hellos of both workers, and the
    // merged text is valid Prometheus text (parsePrometheusText throws otherwise).
    const merged = async () =>
      parsePrometheusText(await (await request(`${url}/metrics`, { signal: AbortSignal.timeout(3000) })).body.text());
    await expect
      .poll(async () => sampleValue(await merged(), 'fleet_admission_duration_seconds_count', { outcome: 'managed' }), { timeout: 30_000 })
      .toBe(6);
    const families = await merged();
    expect(sampleValue(families, 'fleet_admission_duration_seconds_count', { outcome: 'rejected' })).toBe(4);
    expect(sampleValue(families, 'process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
    // Several processes have no one start time: prom-client's aggregation leaves it out.
    expect(families.has('process_start_time_seconds')).toBe(false);

    // Presence is written in batches (--presenceFlushMs): wait until the store shows all six online.
    await expect
      .poll(async () => {
        const now = await statuses();
        return ids.slice(0, 6).every((id) => now[id.serialNumber] === 'online');
      }, { timeout: 30_000 })
      .toBe(true);

    // Kill the worker of the first device.
    const victimTag = workerOf[0]!;
    const victimPid = Number(victimTag.split('/')[1]);
    process.kill(victimPid, 'SIGKILL');
    const onVictim = ids.slice(0, 6).filter((_, i) => workerOf[i] === victimTag);
    const survivors = devices.slice(0, 6).filter((_, i) => workerOf[i] !== victimTag);
    for (const d of devices.slice(0, 6)) if (workerOf[devices.indexOf(d)] === victimTag) await d.waitClosed(30_000);
    let s: Record<string, string> = {};
    await expect
      .poll(async () => {
        s = await statuses();
        return onVictim.every((id) => s[id.serialNumber] === 'offline');
      }, { timeout: 30_000 })
      .toBe(true);
    for (const [i, id] of ids.slice(0, 6).entries()) {
      if (workerOf[i] !== victimTag) expect(s[id.serialNumber], id.serialNumber).toBe('online');
    }
    for (const d of survivors) {
      const ping = createMessage('ping', {});
      d.send(ping);
      await d.next('pong', (m) => m.correlationId === ping.id);
      expect(d.closed).toBeUndefined();
    }
    // The dead worker's devices keep their seats for the grace period (they may come back).
    const db = Store.select(testConfig(dataDir).store ?? undefined, dataDir);
    try {
      const graced = db.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM leases WHERE released_at IS NOT NULL').get()!;
      expect(graced.n).toBe(onVictim.length);
    } finally {
      db.close();
    }
    // A replacement is forked.
    await logs.waitFor((l) => l['msg'] === 'worker online' && l['workerId'] === 3);
    await expect.poll(() => metric('fleet_workers'), { timeout: 30_000 }).toBe(2);
    for (const d of devices) d.terminate();
    await server.stop();
  }, 300_000);

  it('workers exit when their primary is gone (SIGKILL: it cannot stop them), even with devices connected', async () => {
    const { dataDir, ids } = await seedFleet({ licences: 4, devices: 4 });
    const { child, logs } = serve(dataDir, ['--workers', '2']);
    const url = (await logs.waitFor((l) => l['msg'] === 'fleet-server listening')).url as string;
    const workerPids = await workersListening(logs, 2);
    const devices: FakeDevice[] = [];
    try {
      // Open channels on the workers: a graceful close must not wait for them forever.
      for (const id of ids) {
        const d = await FakeDevice.open(`${url.replace('http', 'ws')}/api/channel`, id);
        await d.admit();
        devices.push(d);
      }
      expect(workerPids.every(alive)).toBe(true);
      process.kill(child.pid!, 'SIGKILL');
      await new Promise((r) => child.once('exit', r));
      // Positive signal: every worker process is gone (the IPC channel closed; they shut down).
      await expect.poll(() => workerPids.filter(alive), { timeout: LOG_DEADLINE_MS, interval: 100 }).toEqual([]);
      for (const d of devices) await d.waitClosed(LOG_DEADLINE_MS);
    } finally {
      for (const d of devices) d.terminate();
      for (const pid of workerPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  }, 300_000);

  it('workers exit when their primary dies while they are still starting (before they listen)', async () => {
    const dataDir = tempDir();
    await seedSigningPki(dataDir);
    world({}, dataDir).close();
    const { child, logs } = serve(dataDir, ['--workers', '2']);
    // 'worker online' is the primary's: the worker process runs, its server is not up yet.
    await logs.waitFor(() => logs.lines.filter((l) => l['msg'] === 'worker online').length === 2);
    process.kill(child.pid!, 'SIGKILL');
    const workerPids = logs.lines.filter((l) => l['msg'] === 'worker online').map((l) => Number(l['workerPid']));
    try {
      await new Promise((r) => child.once('exit', r));
      await expect.poll(() => workerPids.filter(alive), { timeout: LOG_DEADLINE_MS, interval: 100 }).toEqual([]);
    } finally {
      for (const pid of workerPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  }, 300_000);

  it('after a crash the primary holds the previous life\'s seats until the cluster caught up, then frees those not back', async () => {
    const dataDir = tempDir();
    await seedSigningPki(dataDir);
    const w = world({}, dataDir);
    w.clock.set(Date.now());
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 2);
    const ids = w.devices(t, 3);
    // The previous process life admitted two devices and died without releasing anything.
    for (const id of ids.slice(0, 2)) {
      expect(w.services.admission.admit({ serialNumber: id.serialNumber, credential: id.credential }).outcome).toBe('managed');
    }
    w.close();

    const server = serve(dataDir, [
      '--workers', '2', '--presenceFlushMs', '100', '--leaseGraceSec', '1', '--restartQuietSec', '15',
      '--restartHoldMaxSec', '300', '--sweepIntervalSec', '1', '--admissionRetryAfterSec', '1',
    ]);
    const logs = server.logs;
    const held = await logs.waitFor((l) => l['msg'] === 'restart hold: seats of the previous process life held for their devices');
    expect(held['held']).toBe(2);
    const url = (await logs.waitFor((l) => l['msg'] === 'fleet-server listening')).url as string;
    const channelUrl = `${url.replace('http', 'ws')}/api/channel`;
    // A held device that returns reclaims its seat; the waiting device does not get the other one.
    const back = await FakeDevice.open(channelUrl, ids[0]!);
    expect((await back.admit()).body).toMatchObject({ admission: 'managed' });
    const early = await FakeDevice.open(channelUrl, ids[2]!);
    expect((await early.admit()).body).toMatchObject({ admission: 'rejected', reason: 'LICENCE_UNAVAILABLE' });
    early.terminate();
    // The second held device never returns: the primary sees the quiet period pass, and after the
    // grace counted from then its seat goes to the waiting device.
    const end = await logs.waitFor((l) => l['msg'] === 'seat hold: caught up with the reconnecting fleet; grace starts for devices not back', 60_000);
    expect(end).toMatchObject({ reason: 'quiet', notReturned: 1 });
    await expect
      .poll(
        async () => {
          const d = await FakeDevice.open(channelUrl, ids[2]!);
          const admission = (await d.admit()).body.admission;
          if (admission !== 'managed') d.terminate();
          return admission;
        },
        { timeout: 20_000, interval: 500 },
      )
      .toBe('managed');
    back.terminate();
    await server.stop();
  }, 300_000);
});
