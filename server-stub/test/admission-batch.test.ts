import { afterEach, describe, expect, it } from 'vitest';
import type { AdmissionChange, AdmitRequest, AdmitResult } from '../src/admission/types.js';
import { DAY, SECOND } from '../src/clock.js';
import { removeTempDirs, type World, world } from './helpers/setup.js';

const worlds: World[] = [];
afterEach(() => {
  for (const w of worlds.splice(0)) w.close();
  removeTempDirs();
});

interface Router {
  uuid: string;
  serialNumber: string;
  credential: string;
}

/**
 * The same history on a fresh store: tenants A (3 seats), B (1 seat), C (1 seat) and D (2
 * seats, one of which expires in the middle of the hellos, as does C's only one), devices seated, in their grace period
 * and held across a lost broker. Returns the hellos to admit, in arrival order, and a function that
 * describes results and store state without the store's own ids and uuids.
 */
async function scenario() {
  const w = world({ leaseGraceSec: 60, admissionRetryAfterSec: 300 });
  worlds.push(w);
  const [a, b, c, d] = [await w.newTenant('A'), await w.newTenant('B'), await w.newTenant('C'), await w.newTenant('D')];
  const [expiring] = w.licences(d, 'basic-1', 1);
  w.licences(c, 'basic-1', 1); // expires with D's first one
  w.advance(30 * DAY);
  w.licences(d, 'basic-1', 1);
  w.licences(a, 'basic-1', 3);
  w.licences(b, 'basic-1', 1);
  const devices = {
    a: w.devices(a, 5, 'A'),
    b: w.devices(b, 2, 'B'),
    c: w.devices(c, 1, 'C'),
    d: w.devices(d, 2, 'D'),
  };
  const admission = w.services.admission;
  const hello = (r: Router, at: number, by: 'uuid' | 'serial' = 'serial', credential = r.credential): AdmitRequest =>
    by === 'uuid' ? { deviceUuid: r.uuid, credential, connectedAt: at } : { serialNumber: r.serialNumber, credential, connectedAt: at };
  // The licence of D that expires at E; the hellos arrive from E - 20 s to E + 7 s.
  const E = expiring!.expiresAt!;
  w.clock.set(E - 130 * SECOND);
  const seat = (r: Router, at: number) => expect(admission.admit(hello(r, at)).outcome).toBe('managed');
  seat(devices.a[0]!, E - 120 * SECOND);
  seat(devices.a[1]!, E - 119 * SECOND);
  seat(devices.a[4]!, E - 118 * SECOND);
  seat(devices.b[0]!, E - 117 * SECOND);
  seat(devices.d[0]!, E - 116 * SECOND);
  seat(devices.d[1]!, E - 115 * SECOND);
  admission.release(devices.a[1]!.uuid, E - 75 * SECOND); // grace ends at E - 15 s: ends during the hellos
  admission.release(devices.a[4]!.uuid, E - 50 * SECOND); // grace ends at E + 10 s, after the hellos: reclaimed
  admission.releaseMany([devices.b[0]!.uuid], E - 60 * SECOND, 'server-outage'); // held
  w.clock.set(E + 10 * SECOND);
  // One process of several: kept leases are marked as served here.
  admission.instanceId = 'host-1';

  const hellos: AdmitRequest[] = [
    hello(devices.a[2]!, E - 20 * SECOND), // A full (a1, a4 in grace): rejected, retry when a1's grace ends
    hello(devices.a[2]!, E - 19 * SECOND, 'uuid'), // the same device again
    hello(devices.a[4]!, E - 18 * SECOND, 'uuid'), // reclaims its seat within the grace
    hello(devices.a[3]!, E - 12 * SECOND), // a1's grace is over: its seat is free
    hello(devices.a[2]!, E - 11 * SECOND), // full again; no grace left (a4 reclaimed its seat): the default retry
    hello(devices.b[0]!, E - 10 * SECOND, 'uuid'), // held device back
    hello(devices.b[1]!, E - 9 * SECOND), // B full; b0's hold no longer ends
    { deviceUuid: '00000000-0000-4000-8000-000000000000', credential: 'x', connectedAt: E - 7 * SECOND },
    hello(devices.a[0]!, E - 6 * SECOND, 'serial', 'wrong credential'),
    hello(devices.c[0]!, E + 4 * SECOND), // C's only licence expired
    hello(devices.d[1]!, E + 5 * SECOND, 'uuid'), // D's licence expired: the line is balanced first
    hello(devices.d[0]!, E + 6 * SECOND), // kept
    hello(devices.a[3]!, E + 7 * SECOND, 'uuid'), // new moments ago, kept now
  ];

  const serialOf = new Map<string, string>(Object.values(devices).flat().map((r) => [r.uuid, r.serialNumber]));
  const tenantOf = new Map([a, b, c, d].map((t, i) => [t.accountUuid, 'ABCD'[i]!]));
  const changes: string[] = [];
  const record = (kind: string) => (ch: AdmissionChange) =>
    changes.push(`${kind} ${tenantOf.get(ch.accountUuid)} ${ch.deviceUuids.map((u) => serialOf.get(u)).join(',')} ${ch.at - E} ${ch.cause}`);
  admission.events.on('managed', record('managed'));
  admission.events.on('unmanaged', record('unmanaged'));

  const describeResult = (r: AdmitResult) =>
    r.outcome === 'denied'
      ? r
      : { ...r, deviceUuid: serialOf.get(r.deviceUuid), deviceKey: undefined, accountUuid: tenantOf.get(r.accountUuid) };
  const state = () => {
    admission.presence.flush();
    const store = w.services.store;
    return {
      leases: store
        .stmt<Record<string, unknown>>(
          `SELECT d.serial_number, l.state, l.leased_at - ? AS leased_at, l.released_at - ? AS released_at,
             l.grace_until - ? AS grace_until, l.restart_hold, l.instance_id
           FROM leases l JOIN devices d ON d.id = l.device_id ORDER BY d.serial_number`,
        )
        .all(E, E, E),
      devices: store
        .stmt<Record<string, unknown>>(
          `SELECT serial_number, admission, admission_reason, admission_at - ? AS admission_at, online, connected_at - ? AS connected_at
           FROM devices ORDER BY serial_number`,
        )
        .all(E, E),
      hold: store.stmt<Record<string, unknown>>('SELECT last_return_at - ? AS last_return_at, held_at_start, ended_at FROM restart_hold').all(E),
      counts: store.stmt<Record<string, unknown>>('SELECT account_id, state, n FROM lease_counts WHERE n > 0 ORDER BY account_id, state').all(),
      events: store
        .stmt<{ type: string; data: string; at: number }>('SELECT type, data, at - ? AS at FROM account_events WHERE type LIKE \'devices.%\' ORDER BY id')
        .all(E)
        .map((e) => {
          const data = JSON.parse(e.data) as { count: number; devices: string[] };
          return { ...e, data: { count: data.count, devices: data.devices.map((u) => serialOf.get(u)) } };
        }),
      changes: [...changes],
    };
  };
  return { w, hellos, describeResult, state, E };
}

describe('admission of a batch of hellos', () => {
  it('decides exactly as one hello after the other: same results, same leases, devices, hold and events', async () => {
    const batch = await scenario();
    const batchResults = batch.w.services.admission.admitMany(batch.hellos).map(batch.describeResult);
    const batchState = batch.state();

    const single = await scenario();
    const singleResults = single.hellos.map((h) => single.w.services.admission.admit(h)).map(single.describeResult);
    const singleState = single.state();

    expect(batchResults).toEqual(singleResults);
    // Anchored, so that both paths cannot agree on something wrong.
    expect(batchResults.map((r) => [r.outcome, 'reason' in r ? r.reason : 'lease' in r ? r.lease : '', 'retryAfterSec' in r ? r.retryAfterSec : ''])).toEqual([
      ['rejected', 'no-free-licence', 5],
      ['rejected', 'no-free-licence', 4],
      ['managed', 'reclaimed', ''],
      ['managed', 'new', ''],
      ['rejected', 'no-free-licence', 300],
      ['managed', 'reclaimed', ''],
      ['rejected', 'no-free-licence', 300],
      ['denied', 'unknown-device', 3600],
      ['denied', 'bad-credential', 3600],
      ['rejected', 'no-active-licence', 300],
      ['unmanaged', 'licence-limit', ''],
      ['managed', 'kept', ''],
      ['managed', 'kept', ''],
    ]);
    expect(batchState).toEqual(singleState);
    expect(batchState.changes).toEqual([`unmanaged D D-0001 ${5 * SECOND} licences-changed`]);
    expect(batchState.events).toEqual([{ type: 'devices.unmanaged', data: { count: 1, devices: ['D-0001'] }, at: 5 * SECOND }]);
    expect(batchState.hold).toEqual([{ last_return_at: -10 * SECOND, held_at_start: 1, ended_at: null }]);
    const lease = (serial: string) => batchState.leases.find((l) => l.serial_number === serial);
    expect(lease('A-0001')).toBeUndefined(); // its grace ended during the batch
    expect(lease('A-0003')).toMatchObject({ state: 'managed', leased_at: -12 * SECOND, instance_id: 'host-1' });
    expect(lease('A-0004')).toMatchObject({ state: 'managed', leased_at: -118 * SECOND, released_at: null, instance_id: 'host-1' });
    expect(lease('D-0001')).toMatchObject({ state: 'unmanaged', instance_id: 'host-1' });
    const device = (serial: string) => batchState.devices.find((x) => x.serial_number === serial);
    expect(device('A-0001')).toMatchObject({ admission: null, admission_reason: 'lease-ended', admission_at: -12 * SECOND });
    expect(device('A-0002')).toMatchObject({ admission: 'rejected', admission_at: -11 * SECOND, online: 0 });
  });

  it('gives the one free seat to the first of many hellos of one batch, also when the same device says hello twice', async () => {
    const w = world({ leaseGraceSec: 60 });
    worlds.push(w);
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const routers = w.devices(t, 5);
    const hellos = [routers[3]!, routers[3]!, ...routers].map((r) => ({ deviceUuid: r.uuid, credential: r.credential }));
    const results = w.services.admission.admitMany(hellos);
    expect(results.map((r) => r.outcome)).toEqual(['managed', 'managed', 'rejected', 'rejected', 'rejected', 'managed', 'rejected']);
    expect(results.map((r) => ('lease' in r ? r.lease : undefined))).toEqual(['new', 'kept', undefined, undefined, undefined, 'kept', undefined]);
  });
});
