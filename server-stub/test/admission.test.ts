import { afterEach, describe, expect, it } from 'vitest';
import { AdmissionService } from '../src/admission/service.js';
import { addMonthsUtc, DAY, SECOND } from '../src/clock.js';
import type { AccountScope } from '../src/store/scope.js';
import { FakeChannel } from './helpers/fake-channel.js';
import { removeTempDirs, T0, type World, world } from './helpers/setup.js';
import { spyStatements } from './helpers/statement-spy.js';

const worlds: World[] = [];
function open(flags = {}): World {
  const w = world({ leaseGraceSec: 60, admissionRetryAfterSec: 300, ...flags });
  worlds.push(w);
  return w;
}
afterEach(() => {
  for (const w of worlds.splice(0)) w.close();
  removeTempDirs();
});

function statusCounts(w: World, accountScope: AccountScope) {
  w.services.admission.presence.flush();
  const count = (status: 'online' | 'offline' | 'unmanaged') =>
    accountScope.devices.list({ filter: { status }, sort: 'name', desc: false, limit: 10_000 }).map((d) => d.serial_number);
  return { online: count('online'), offline: count('offline'), unmanaged: count('unmanaged') };
}

describe('floating admission (reference example and rules)', () => {
  it('10 Basic-1 licences, 2 expired, 10 routers: the first 8 to connect are online, the last 2 rejected and offline', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 2);
    w.advance(30 * DAY);
    w.licences(t, 'basic-1', 8);
    const routers = w.devices(t, 10);
    w.clock.set(addMonthsUtc(T0, 12) + DAY); // the first two licences have expired
    expect(w.services.licensing.entitlement(t.scope).seats).toBe(8);
    const ch = new FakeChannel(w.services.admission);
    const results = routers.map((r) => ch.connect(r));
    expect(results.map((r) => r.outcome)).toEqual([...Array(8).fill('managed'), 'rejected', 'rejected']);
    for (const r of results.slice(8)) {
      expect(r).toMatchObject({ outcome: 'rejected', reason: 'no-free-licence' });
      if (r.outcome === 'rejected') expect(r.retryAfterSec).toBeGreaterThan(0);
    }
    const s = statusCounts(w, t.scope);
    expect(s.online).toEqual(routers.slice(0, 8).map((r) => r.serialNumber));
    expect(s.offline).toEqual(routers.slice(8).map((r) => r.serialNumber));
    const rejected = t.scope.devices.byUuid(routers[9]!.uuid)!;
    expect(rejected).toMatchObject({ admission: 'rejected', admission_reason: 'no-free-licence', online: 0 });
  });

  it('when 2 of 10 licences expire while all 10 are online, the 2 that connected last become unmanaged and are told', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 2);
    w.advance(30 * DAY);
    w.licences(t, 'basic-1', 8);
    const routers = w.devices(t, 10);
    const ch = new FakeChannel(w.services.admission);
    routers.forEach((r, i) => {
      w.advance(SECOND); // distinct connection times, in this order
      expect(ch.connect(r).outcome, `router ${i}`).toBe('managed');
    });
    w.clock.set(addMonthsUtc(T0, 12) + DAY);
    const report = w.services.admission.sweep();
    expect(report.unmanaged).toBe(2);
    expect(ch.told).toEqual([
      { deviceUuid: routers[9]!.uuid, state: 'unmanaged' },
      { deviceUuid: routers[8]!.uuid, state: 'unmanaged' },
    ]);
    expect(routers.map((r) => ch.state(r))).toEqual([...Array(8).fill('managed'), 'unmanaged', 'unmanaged']);
    const s = statusCounts(w, t.scope);
    expect(s.online).toHaveLength(8);
    expect(s.unmanaged).toEqual([routers[8]!.serialNumber, routers[9]!.serialNumber]);
    // Visible in the account's events.
    expect(t.scope.events.list({ limit: 50, type: 'devices.unmanaged' })[0]?.data).toMatchObject({ count: 2 });
    // A reconnect of an unmanaged device (replacing its connection) stays unmanaged, in line.
    expect(ch.connect(routers[9]!).outcome).toBe('unmanaged');
    // A new licence gives the earliest waiting device its seat back, and it is told.
    ch.told.length = 0;
    w.licences(t, 'basic-1', 1);
    expect(ch.told).toEqual([{ deviceUuid: routers[8]!.uuid, state: 'managed' }]);
  });

  it('a rejected device is admitted on a later attempt once a licence frees up', async () => {
    const w = open({ leaseGraceSec: 0 });
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [a, b] = w.devices(t, 2);
    const ch = new FakeChannel(w.services.admission);
    expect(ch.connect(a!).outcome).toBe('managed');
    expect(ch.connect(b!)).toMatchObject({ outcome: 'rejected', retryAfterSec: 300 });
    ch.disconnect(a!);
    expect(ch.connect(b!).outcome).toBe('managed');
    expect(ch.connect(a!).outcome).toBe('rejected');
  });

  it('a lease survives a disconnect for the grace period and is reclaimed by the same device only', async () => {
    const w = open({ leaseGraceSec: 60 });
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [a, b] = w.devices(t, 2);
    const ch = new FakeChannel(w.services.admission);
    expect(ch.connect(a!)).toMatchObject({ outcome: 'managed', lease: 'new' });
    ch.disconnect(a!);
    w.advance(20 * SECOND);
    // Someone else finds the seat held; the retry-after points at the end of the grace period.
    expect(ch.connect(b!)).toMatchObject({ outcome: 'rejected', reason: 'no-free-licence', retryAfterSec: 40 });
    expect(ch.connect(a!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
    ch.disconnect(a!);
    w.advance(61 * SECOND);
    // Grace over: the sweep reclaims the seat and the next device gets it.
    expect(w.services.admission.sweep().dropped).toBe(1);
    expect(ch.connect(b!)).toMatchObject({ outcome: 'managed', lease: 'new' });
    expect(ch.connect(a!).outcome).toBe('rejected');
  });

  it('an expired grace lease is reclaimed by admission itself, without waiting for a sweep', async () => {
    const w = open({ leaseGraceSec: 60 });
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [a, b] = w.devices(t, 2);
    const ch = new FakeChannel(w.services.admission);
    ch.connect(a!);
    ch.disconnect(a!);
    w.advance(60 * SECOND);
    expect(ch.connect(b!).outcome).toBe('managed');
  });

  it('scheduled activation: rejected before the date (no active licence), admitted after', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1); // to be able to register devices now
    const [a] = w.devices(t, 1);
    w.clock.set(addMonthsUtc(T0, 12)); // that licence has expired
    const [scheduled] = w.redeem(t, 'basic-25', 1);
    const ch = new FakeChannel(w.services.admission);
    w.services.licensing.activate(t.scope, scheduled!.uuid, w.clock.now() + 10 * DAY);
    expect(ch.connect(a!)).toMatchObject({ outcome: 'rejected', reason: 'no-active-licence' });
    w.advance(10 * DAY);
    expect(ch.connect(a!).outcome).toBe('managed');
  });

  it('activating a paid licence invalidates Free: the account drops to the paid seats', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'free', 1);
    const routers = w.devices(t, 3);
    const ch = new FakeChannel(w.services.admission);
    for (const r of routers) {
      w.advance(SECOND);
      expect(ch.connect(r).outcome).toBe('managed');
    }
    w.licences(t, 'basic-1', 1);
    const list = w.services.licensing.list(t.scope);
    expect(list.map((l) => [l.kind, l.status])).toEqual([
      ['free', 'invalidated'],
      ['basic-1', 'active'],
    ]);
    expect(routers.map((r) => ch.state(r))).toEqual(['managed', 'unmanaged', 'unmanaged']);
    expect(t.scope.events.list({ limit: 20, type: 'licence.invalidated' })).toHaveLength(1);
  });

  it('after every licence expired, devices are rejected (no active licence)', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [a] = w.devices(t, 1);
    const ch = new FakeChannel(w.services.admission);
    expect(ch.connect(a!).outcome).toBe('managed');
    w.clock.set(addMonthsUtc(T0, 12));
    w.services.admission.sweep();
    expect(ch.state(a!)).toBe('unmanaged');
    ch.disconnect(a!);
    expect(ch.connect(a!)).toMatchObject({ outcome: 'rejected', reason: 'no-active-licence' });
  });

  it('unknown devices and wrong credentials are denied', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [a] = w.devices(t, 1);
    const ch = new FakeChannel(w.services.admission);
    expect(ch.connect({ ...a!, serialNumber: 'NOPE' })).toMatchObject({ outcome: 'denied', reason: 'unknown-device' });
    expect(ch.connect(a!, undefined, 'x'.repeat(43))).toMatchObject({ outcome: 'denied', reason: 'bad-credential' });
    expect(w.services.admission.admit({ deviceUuid: a!.uuid, credential: a!.credential }).outcome).toBe('managed');
  });

  it('expiry notices are recorded 30 days before expiry, then weekly, each once', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const expiry = addMonthsUtc(T0, 12);
    const notices = () => t.scope.events.list({ limit: 50, type: 'licence.expiry-notice' }).length;
    w.clock.set(expiry - 31 * DAY);
    w.services.admission.sweep();
    expect(notices()).toBe(0);
    for (let day = 30; day >= 1; day--) {
      w.clock.set(expiry - day * DAY);
      w.services.admission.sweep();
      w.services.admission.sweep();
    }
    expect(notices()).toBe(5); // 30, 23, 16, 9 and 2 days before
    w.clock.set(expiry);
    w.services.admission.sweep();
    expect(t.scope.events.list({ limit: 50, type: 'licence.expired' })).toHaveLength(1);
  });

  it('tenants do not share seats', async () => {
    const w = open();
    const a = await w.newTenant();
    const b = await w.newTenant();
    w.licences(a, 'basic-1', 1);
    w.licences(b, 'basic-1', 1);
    const [da1, da2] = w.devices(a, 2);
    const [db1] = w.devices(b, 1);
    const ch = new FakeChannel(w.services.admission);
    expect(ch.connect(da1!).outcome).toBe('managed');
    expect(ch.connect(db1!).outcome).toBe('managed');
    expect(ch.connect(da2!).outcome).toBe('rejected');
  });
});

describe('presence and metrics', () => {
  it('holds presence in memory and writes it in one batch; counts admissions by outcome', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [a, b] = w.devices(t, 2);
    const ch = new FakeChannel(w.services.admission);
    const managed = ch.connect(a!);
    ch.connect(b!);
    const { presence } = w.services.admission;
    expect(presence.onlineCount).toBe(1);
    expect(t.scope.devices.byUuid(a!.uuid)!.online).toBe(0); // not written yet
    if (managed.outcome !== 'managed') throw new Error('expected managed');
    w.advance(5 * SECOND);
    presence.seen(managed.deviceKey, w.clock.now());
    expect(presence.flush()).toBe(2);
    expect(t.scope.devices.byUuid(a!.uuid)).toMatchObject({
      online: 1,
      connected_at: T0,
      last_seen_at: T0 + 5 * SECOND,
    });
    expect(presence.flush()).toBe(0);
    ch.disconnect(a!);
    presence.flush();
    expect(t.scope.devices.byUuid(a!.uuid)!.online).toBe(0);
    expect(presence.onlineCount).toBe(0);
    const m = w.services.metrics;
    expect(m.value('fleet_admissions_total', { outcome: 'managed' })).toBe(1);
    expect(m.value('fleet_admissions_total', { outcome: 'rejected' })).toBe(1);
  });
});

describe('presence flush', () => {
  it('writes a flush of many devices as it would one by one, in a few statements on PostgreSQL whatever their number', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 2);
    const routers = w.devices(t, 30);
    const ch = new FakeChannel(w.services.admission);
    const { presence } = w.services.admission;
    const store = w.services.store;
    let writes = 0;
    const restore = spyStatements(store, (_, call) => call === 'write' && writes++);
    const flush = (): number => {
      const before = writes;
      presence.flush();
      return writes - before;
    };
    try {
      ch.connect(routers[0]!);
      const one = flush();
      w.advance(5 * SECOND);
      const results = routers.slice(1).map((r) => ch.connect(r));
      for (const r of results.slice(0, 10)) if (r.outcome === 'managed') presence.seen(r.deviceKey, w.clock.now() + SECOND);
      ch.disconnect(routers[29]!, w.clock.now() + 2 * SECOND);
      const many = flush();
      if (store.dialect === 'postgres') expect(many).toBe(one);
      else expect([one, many]).toEqual([1, 29]);
    } finally {
      restore();
    }
    const rows = routers.map((r) => t.scope.devices.byUuid(r.uuid)!);
    expect(rows.map((d) => [d.online, d.connected_at, d.last_seen_at])).toEqual([
      [1, T0, T0],
      ...Array.from({ length: 10 }, () => [1, T0 + 5 * SECOND, T0 + 6 * SECOND]),
      ...Array.from({ length: 18 }, () => [1, T0 + 5 * SECOND, T0 + 5 * SECOND]),
      [0, T0 + 5 * SECOND, T0 + 7 * SECOND],
    ]);
  });
});

describe('races for the last licence', () => {
  it('200 concurrent admissions over 4 connections for one free licence: exactly one wins', async () => {
    const w = open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const routers = w.devices(t, 200);
    const stores = Array.from({ length: 4 }, () => w.openStore());
    const services = stores.map(
      (s) => new AdmissionService(s, w.clock, { leaseGraceSec: 60, admissionRetryAfterSec: 300 }),
    );
    const results = await Promise.all(
      routers.map(
        (r, i) =>
          new Promise<string>((resolve) =>
            setImmediate(() =>
              resolve(services[i % 4]!.admit({ serialNumber: r.serialNumber, credential: r.credential }).outcome),
            ),
          ),
      ),
    );
    expect(results.filter((o) => o === 'managed')).toHaveLength(1);
    expect(results.filter((o) => o === 'rejected')).toHaveLength(199);
    expect(t.scope.leases.managedCount()).toBe(1);
    for (const s of stores) s.close();
    // 200 store transactions in a row: on PostgreSQL three round trips each, slow on a loaded machine.
  }, 120_000);
});
