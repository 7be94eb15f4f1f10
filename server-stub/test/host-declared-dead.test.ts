import { CloseCodes } from '@router-fleet/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { channelWorld, type ChannelWorld } from './helpers/channel-world.js';
import { allowConnections, freshPostgresStore } from './helpers/postgres.js';
import { removeTempDirs } from './helpers/setup.js';

/*
 * A server process on a PostgreSQL store that another host declared dead while it was only late
 * (hosts/membership.ts): its devices' leases went into their grace period, so it must not keep
 * serving them as if nothing happened. Always on PostgreSQL: it is the store several hosts share.
 */

const worlds: ChannelWorld[] = [];
afterAll(async () => {
  // A world whose store connection a test ended cannot write on its way out: its stop may fail.
  for (const w of worlds) await w.stop().catch(() => undefined);
  removeTempDirs();
});

describe('a server process declared dead by another host', () => {
  it('closes its sessions (SERVICE_RESTART) once it has registered again, and its devices reclaim their seats with a new hello', async () => {
    const w = await channelWorld({ store: freshPostgresStore(), hostTimeoutSec: 1, leaseGraceSec: 600 });
    worlds.push(w);
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [id] = w.devices(t, 1);
    const device = await w.admitted(id!);
    const store = w.services.store;
    const lease = () =>
      store
        .stmt<{ instance_id: string | null; released_at: number | null }>(
          'SELECT l.instance_id, l.released_at FROM leases l JOIN devices d ON d.id = l.device_id WHERE d.uuid = ?',
        )
        .get(id!.uuid);
    const self = lease()!.instance_id!;
    expect(self).toMatch(/^[0-9a-f-]{36}$/);

    // What another member does when it finds this one's heartbeat late: mark it stopped and release
    // the leases it holds into their grace period.
    expect(w.services.admission.releaseInstance(self)).toBe(1);
    expect(lease()?.released_at).not.toBeNull();

    // At its next heartbeat the process finds itself stopped, registers again and lets its devices go.
    expect(await device.waitClosed(10_000)).toMatchObject({ code: CloseCodes.SERVICE_RESTART });
    expect(store.stmt<{ stopped_at: number | null }>('SELECT stopped_at FROM server_instances WHERE id = ?').get(self)?.stopped_at).toBeNull();

    // The device says hello again: its seat, still in its grace period, is its own again.
    const welcome = await (await w.connect(id!)).admit();
    expect(welcome.body.admission).toBe('managed');
    expect(lease()).toEqual({ instance_id: self, released_at: null });
  }, 120_000);

  it('closes its sessions once its heartbeats have failed for longer than the timeout (its store cannot be reached, so the others release its devices)', async () => {
    const w = await channelWorld({ store: freshPostgresStore(), hostTimeoutSec: 1 });
    worlds.push(w);
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [id] = w.devices(t, 1);
    const device = await w.admitted(id!);
    const pid = w.services.store.stmt<{ pid: number }>('SELECT pg_backend_pid() AS pid').get()!.pid;
    // The connection ends and no new one is let in: the store cannot be reached until allowed again.
    const other = w.openStore();
    allowConnections(false);
    try {
      other.stmt('SELECT pg_terminate_backend(?)').get(pid);
      expect(await device.waitClosed(10_000)).toMatchObject({ code: CloseCodes.SERVICE_RESTART });
    } finally {
      allowConnections(true);
      other.close();
    }
  }, 120_000);
});
