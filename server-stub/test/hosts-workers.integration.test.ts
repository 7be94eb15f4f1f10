import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from '../src/store/database.js';
import { ensureServerBuilt } from './helpers/built.js';
import { seedSigningPki } from './helpers/channel-world.js';
import { killServes, serve, type ServeProcess } from './helpers/cluster.js';
import { FakeDevice } from './helpers/fake-device.js';
import { freshPostgresStore } from './helpers/postgres.js';
import { removeTempDirs, tempDir, world } from './helpers/setup.js';

/*
 * A host that runs `serve --workers N` among independent hosts on one PostgreSQL store: its primary
 * is the cluster member for its workers (hosts/membership.ts), so another host joining does not
 * take it for a dead cluster (a cold start would put the seats of its connected devices into a
 * restart hold), and when it dies another host releases its devices. Always on PostgreSQL.
 */

const devices: FakeDevice[] = [];
beforeAll(() => ensureServerBuilt(), 180_000);
afterAll(() => {
  for (const d of devices) d.terminate();
  killServes();
  removeTempDirs();
});

async function listening(s: ServeProcess): Promise<number> {
  const line = await s.logs.waitFor((l) => l['msg'] === 'fleet-server listening', 90_000);
  return Number(new URL(line['url'] as string).port);
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('serve --workers N as one host of several on a PostgreSQL store', () => {
  it('its primary is the member its workers admit for; a host that joins holds nothing; when the host dies another releases its devices', async () => {
    const url = freshPostgresStore();
    const dirA = tempDir();
    await seedSigningPki(dirA);
    const w = world({ store: url }, dirA);
    w.clock.set(Date.now());
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 2);
    const [id] = w.devices(t, 1);
    w.close();
    const db = Store.select(url, tempDir());
    try {
      const lease = () =>
        db
          .stmt<{ instance_id: string | null; released_at: number | null; restart_hold: number | null }>(
            'SELECT l.instance_id, l.released_at, l.restart_hold FROM leases l JOIN devices d ON d.id = l.device_id WHERE d.uuid = ?',
          )
          .get(id!.uuid);

      const a = serve(dirA, ['--workers', '2', '--host-timeout-sec', '10'], { store: url });
      const portA = await listening(a);
      const member = await until('the primary registered', () =>
        db.stmt<{ id: string; label: string }>('SELECT id, label FROM server_instances WHERE stopped_at IS NULL').get(),
      );
      expect(member.label).toMatch(/primary of 2 workers/);
      const device = await FakeDevice.open(`ws://127.0.0.1:${portA}/api/channel`, id!);
      devices.push(device);
      expect((await device.admit()).body.admission).toBe('managed');
      expect(lease()).toEqual({ instance_id: member.id, released_at: null, restart_hold: null });

      // Another host joins: the cluster runs, so it holds nothing; the device keeps its open lease.
      const b = serve(tempDir(), ['--host-timeout-sec', '10'], { store: url });
      await b.logs.waitFor((l) => l['msg'] === 'cluster member: joined a running cluster', 90_000);
      await listening(b);
      expect(lease()).toEqual({ instance_id: member.id, released_at: null, restart_hold: null });

      // Host A dies at once (its primary SIGKILLed; its workers follow): B releases its device.
      a.child.kill('SIGKILL');
      const released = await until('the dead host\'s device released', () => lease()?.released_at ?? undefined);
      expect(released).toBeGreaterThan(0);
      await b.stop();
    } finally {
      db.close();
    }
  }, 240_000);
});
