import { afterEach, describe, expect, it } from 'vitest';
import { graceAfterCatchUp, type HoldFacts, holdGraceUntil, holdVerdict } from '../src/admission/seat-hold.js';
import { AdmissionService } from '../src/admission/service.js';
import { SECOND } from '../src/clock.js';
import { FakeChannel } from './helpers/fake-channel.js';
import { removeTempDirs, T0, type World, world } from './helpers/setup.js';

const rule = { quietSec: 300, holdMaxSec: 1800 };
const facts = (f: Partial<HoldFacts>): HoldFacts => ({
  startedAt: T0,
  servingSince: T0,
  lastReturnAt: null,
  heldLeft: 10,
  backlog: 0,
  now: T0,
  ...f,
});

describe('seat hold rule (pure)', () => {
  it('is caught up at once when every held device is back (or none was held)', () => {
    expect(holdVerdict(facts({ heldLeft: 0 }), rule)).toEqual({ caughtUp: true, reason: 'all-returned' });
  });

  it('waits while devices keep returning, however long the fleet takes (up to the cap)', () => {
    // Last return 299 s ago, 20 min after the start: still catching up.
    expect(holdVerdict(facts({ now: T0 + 1200 * SECOND, lastReturnAt: T0 + 901 * SECOND }), rule).caughtUp).toBe(false);
    // 300 s without a return and no backlog: caught up.
    expect(holdVerdict(facts({ now: T0 + 1201 * SECOND, lastReturnAt: T0 + 901 * SECOND }), rule)).toEqual({
      caughtUp: true,
      reason: 'quiet',
    });
  });

  it('counts the quiet period from the start when no held device has returned yet', () => {
    expect(holdVerdict(facts({ now: T0 + 299 * SECOND }), rule).caughtUp).toBe(false);
    expect(holdVerdict(facts({ now: T0 + 300 * SECOND }), rule)).toEqual({ caughtUp: true, reason: 'quiet' });
  });

  it('is not quiet while hellos wait for their decision', () => {
    expect(holdVerdict(facts({ now: T0 + 600 * SECOND, backlog: 3 }), rule).caughtUp).toBe(false);
  });

  it('is caught up at the hard cap even while devices keep returning or hellos wait', () => {
    const at = facts({ now: T0 + 1800 * SECOND, lastReturnAt: T0 + 1799 * SECOND, backlog: 50 });
    expect(holdVerdict(at, rule)).toEqual({ caughtUp: true, reason: 'cap' });
    expect(holdVerdict(facts({ now: T0 }), { quietSec: 300, holdMaxSec: 0 })).toEqual({ caughtUp: true, reason: 'cap' });
  });

  it('is never quiet while the devices cannot reach the server (a lost broker not back yet), however long', () => {
    expect(holdVerdict(facts({ servingSince: null, now: T0 + 1799 * SECOND }), rule).caughtUp).toBe(false);
    // The cap still holds: no seat waits for a broker for good.
    expect(holdVerdict(facts({ servingSince: null, now: T0 + 1800 * SECOND }), rule)).toEqual({ caughtUp: true, reason: 'cap' });
    // Every held device back ends it even so (they came back through another way in).
    expect(holdVerdict(facts({ servingSince: null, heldLeft: 0 }), rule)).toEqual({ caughtUp: true, reason: 'all-returned' });
  });

  it('counts the quiet period from the later of the return of service and the last return', () => {
    // Service back 400 s into the hold: quiet 300 s after that, not after the start.
    const back = T0 + 400 * SECOND;
    expect(holdVerdict(facts({ servingSince: back, now: back + 299 * SECOND }), rule).caughtUp).toBe(false);
    expect(holdVerdict(facts({ servingSince: back, now: back + 300 * SECOND }), rule)).toEqual({ caughtUp: true, reason: 'quiet' });
    // A device that returned before the broker went (a hold joined by a second outage) does not
    // shorten the wait after the broker is back ...
    expect(holdVerdict(facts({ servingSince: back, lastReturnAt: T0 + 100 * SECOND, now: back + 299 * SECOND }), rule).caughtUp).toBe(false);
    // ... and one returning after it pushes the end on.
    const last = back + 200 * SECOND;
    expect(holdVerdict(facts({ servingSince: back, lastReturnAt: last, now: back + 300 * SECOND }), rule).caughtUp).toBe(false);
    expect(holdVerdict(facts({ servingSince: back, lastReturnAt: last, now: last + 300 * SECOND }), rule).caughtUp).toBe(true);
  });

  it('bounds every held seat: cap plus one grace while held, catch-up plus one grace after', () => {
    expect(holdGraceUntil(T0, rule, 60)).toBe(T0 + 1860 * SECOND);
    expect(graceAfterCatchUp(T0 + 400 * SECOND, 60, holdGraceUntil(T0, rule, 60))).toBe(T0 + 460 * SECOND);
    expect(graceAfterCatchUp(T0 + 1800 * SECOND, 120, holdGraceUntil(T0, rule, 60))).toBe(T0 + 1860 * SECOND);
  });
});

const worlds: World[] = [];
afterEach(() => {
  for (const w of worlds.splice(0)) w.close();
  removeTempDirs();
});

/**
 * A world whose tenant has `seats` Basic 1 licences and `devices` registered devices (lease grace
 * 60 s, retry after 300 s, as `nextLife` uses), closed after the test.
 */
async function seatedWorld(seats: number, devices: number) {
  const w = world({ leaseGraceSec: 60, admissionRetryAfterSec: 300 });
  worlds.push(w);
  const t = await w.newTenant();
  w.licences(t, 'basic-1', seats);
  return { w, t, devices: w.devices(t, devices) };
}

/** A second process life on the same store (the first one died without releasing anything). */
function nextLife(w: World, options: { quietSec?: number; holdMaxSec?: number } = {}): AdmissionService {
  return new AdmissionService(w.services.store, w.clock, {
    leaseGraceSec: 60,
    admissionRetryAfterSec: 300,
    restartQuietSec: options.quietSec ?? 120,
    restartHoldMaxSec: options.holdMaxSec ?? 1800,
  });
}

describe('seats across a crash (store + admission service)', () => {
  it('after a crash the open leases are held, returning devices keep their seats, the rest free them after catch-up + grace', async () => {
    const { w, t, devices: routers } = await seatedWorld(3, 4);
    const before = new FakeChannel(w.services.admission);
    for (const r of routers.slice(0, 3)) expect(before.connect(r).outcome).toBe('managed');
    expect(before.connect(routers[3]!).outcome).toBe('rejected');
    w.services.admission.presence.flush();
    // kill -9: nothing is released. The next life starts 10 minutes later (longer than the grace).
    w.advance(600 * SECOND);
    const life = nextLife(w);
    expect(life.startRestartHold().held).toBe(3);
    const byUuid = (u: string) => t.scope.devices.byUuid(u)!;
    expect(byUuid(routers[0]!.uuid)).toMatchObject({ online: 0, admission: 'managed' });
    const ch = new FakeChannel(life);
    // The waiting router does not get a held seat while the fleet comes back.
    w.advance(30 * SECOND);
    expect(ch.connect(routers[3]!)).toMatchObject({ outcome: 'rejected', reason: 'no-free-licence' });
    // Two of three come back, minutes apart (longer than the grace in total).
    expect(ch.connect(routers[0]!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
    w.advance(100 * SECOND);
    expect(life.checkHold(0)).toBeUndefined();
    expect(ch.connect(routers[1]!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
    w.advance(100 * SECOND);
    expect(life.checkHold(0)).toBeUndefined();
    // Not quiet while hellos wait.
    w.advance(100 * SECOND);
    expect(life.checkHold(5)).toBeUndefined();
    const caughtUpAt = w.clock.now();
    expect(life.checkHold(0)).toEqual({ reason: 'quiet', notReturned: 1, at: caughtUpAt });
    // Within the grace counted from the catch-up the seat is still held ...
    w.advance(59 * SECOND);
    expect(ch.connect(routers[3]!)).toMatchObject({ outcome: 'rejected', reason: 'no-free-licence' });
    // ... then it is free, and the waiting router gets it.
    w.advance(1 * SECOND);
    expect(ch.connect(routers[3]!)).toMatchObject({ outcome: 'managed', lease: 'new' });
    // The router that never came back shows no admission: its lease ended.
    expect(byUuid(routers[2]!.uuid)).toMatchObject({ admission: null, admission_reason: 'lease-ended' });
    expect(ch.connect(routers[2]!)).toMatchObject({ outcome: 'rejected', reason: 'no-free-licence' });
  });

  it('a held router that returns during the grace after catch-up reclaims its seat (place in line kept)', async () => {
    const { w, devices: [a, b] } = await seatedWorld(1, 2);
    expect(new FakeChannel(w.services.admission).connect(a!).outcome).toBe('managed');
    const life = nextLife(w, { quietSec: 10 });
    life.startRestartHold();
    const ch = new FakeChannel(life);
    w.advance(11 * SECOND);
    expect(life.checkHold(0)?.reason).toBe('quiet');
    expect(ch.connect(b!).outcome).toBe('rejected');
    w.advance(30 * SECOND);
    expect(ch.connect(a!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
  });

  it('every held router back ends the hold at once; leases in grace at a clean shutdown are held too', async () => {
    const { w, devices: routers } = await seatedWorld(2, 3);
    const before = new FakeChannel(w.services.admission);
    for (const r of routers.slice(0, 2)) before.connect(r);
    // A clean shutdown releases them with the grace period ...
    w.services.admission.releaseMany(routers.slice(0, 2).map((r) => r.uuid));
    // ... and the server is down for longer than it.
    w.advance(900 * SECOND);
    const life = nextLife(w);
    expect(life.startRestartHold().held).toBe(2);
    const ch = new FakeChannel(life);
    expect(ch.connect(routers[2]!).outcome).toBe('rejected');
    expect(ch.connect(routers[0]!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
    expect(life.checkHold(0)).toBeUndefined();
    expect(ch.connect(routers[1]!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
    expect(life.checkHold(0)).toMatchObject({ reason: 'all-returned', notReturned: 0 });
    expect(life.holding).toBe(false);
  });

  it('no seat is held for good: the cap plus one grace frees it even if the hold is never checked', async () => {
    const { w, devices: [a, b] } = await seatedWorld(1, 2);
    new FakeChannel(w.services.admission).connect(a!);
    const life = nextLife(w, { holdMaxSec: 600 });
    life.startRestartHold();
    const ch = new FakeChannel(life);
    w.advance(659 * SECOND);
    expect(ch.connect(b!).outcome).toBe('rejected');
    w.advance(1 * SECOND);
    expect(ch.connect(b!).outcome).toBe('managed');
  });

  it('connected devices beyond the limit (unmanaged) at the crash hold no seat afterwards', async () => {
    const w = world({ leaseGraceSec: 60, admissionRetryAfterSec: 300 });
    worlds.push(w);
    const t = await w.newTenant();
    const [lic] = w.licences(t, 'basic-1', 1);
    w.licences(t, 'basic-1', 1);
    const [a, b] = w.devices(t, 2);
    const ch0 = new FakeChannel(w.services.admission);
    ch0.connect(a!);
    w.advance(SECOND);
    ch0.connect(b!);
    w.services.store.stmt('UPDATE licences SET expires_at = ? WHERE uuid = ?').run(w.clock.now(), lic!.uuid);
    w.services.admission.sweep();
    expect(ch0.state(b!)).toBe('unmanaged');
    const life = nextLife(w);
    expect(life.startRestartHold().held).toBe(1);
    expect(t.scope.devices.byUuid(b!.uuid)).toMatchObject({ admission: null, admission_reason: 'lease-ended' });
  });
});

describe('a device rebooting into an update keeps its seat (rollout.rebootTimeoutSec)', () => {
  /** A running job with one execution of `device` in `state` (rows as the job service writes them). */
  function execution(w: World, accountId: number, deviceUuid: string, state: string, options: Record<string, unknown>): void {
    const db = w.services.store;
    const deviceId = (db.stmt('SELECT id FROM devices WHERE uuid = ?').get(deviceUuid) as { id: number }).id;
    const now = w.clock.now();
    const job = db
      .stmt(
        `INSERT INTO jobs (uuid, account_id, name, target, options, state, created_at)
         VALUES (?, ?, 'firmware', '{}', ?, 'running', ?) RETURNING id`,
      )
      .get(`job-${deviceUuid}`, accountId, JSON.stringify(options), now) as { id: number };
    db.stmt(
      `INSERT INTO job_executions (uuid, job_id, device_id, attempt, state, claimed_at, updated_at, deadline)
       VALUES (?, ?, ?, 1, ?, ?, ?, ?)`,
    ).run(`exec-${deviceUuid}`, job.id, deviceId, state, now, now, now + 3_600_000);
  }

  it('past the commit point the seat is kept until the reboot timeout, not just the grace; before it, the grace', async () => {
    const { w, t, devices: [rebooting, downloading, waiting] } = await seatedWorld(2, 3);
    const ch = new FakeChannel(w.services.admission);
    ch.connect(rebooting!);
    ch.connect(downloading!);
    execution(w, t.accountId, rebooting!.uuid, 'rebooting', { rebootTimeoutSec: 600 });
    execution(w, t.accountId, downloading!.uuid, 'downloading', { rebootTimeoutSec: 600 });
    ch.disconnect(rebooting!);
    ch.disconnect(downloading!);
    // After the grace the downloading device's seat is free; the rebooting one keeps its own.
    w.advance(60 * SECOND);
    expect(ch.connect(waiting!)).toMatchObject({ outcome: 'managed', lease: 'new' });
    w.advance(500 * SECOND);
    expect(ch.connect(rebooting!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
  });

  it('a job stored without the option keeps the seat for the default 600 s', async () => {
    const { w, t, devices: [rebooting, waiting] } = await seatedWorld(1, 2);
    const ch = new FakeChannel(w.services.admission);
    ch.connect(rebooting!);
    execution(w, t.accountId, rebooting!.uuid, 'verifying', {});
    ch.disconnect(rebooting!);
    w.advance(599 * SECOND);
    expect(ch.connect(waiting!).outcome).toBe('rejected');
    w.advance(1 * SECOND);
    expect(ch.connect(waiting!).outcome).toBe('managed');
  });
});

describe('seats across a lost MQTT broker (store + admission service)', () => {
  /** How a process out of touch with the MQTT broker is named (by the buckets it consumes). */
  const OWNER = 'mqtt buckets all';
  /** The row of the running or last seat hold. */
  const holdRow = (w: World) =>
    w.services.store.stmt<{ started_at: number; last_loss_at: number | null; held_at_start: number; serving_since: number | null; ended_at: number | null }>(
      'SELECT * FROM restart_hold WHERE id = 1',
    ).get();

  it('seats the server lost with the broker are held past the grace while it is away and until every device is back', async () => {
    const { w, devices: [a, b, waiting] } = await seatedWorld(2, 3);
    const svc = nextLife(w, { quietSec: 120 });
    const ch = new FakeChannel(svc);
    expect(ch.connect(a!).outcome).toBe('managed');
    expect(ch.connect(b!).outcome).toBe('managed');
    expect(ch.connect(waiting!).outcome).toBe('rejected');
    expect(svc.holding).toBe(false);
    const lostAt = w.clock.now();
    svc.outageBegan(OWNER);
    svc.releaseMany([a!.uuid, b!.uuid], lostAt, 'server-outage');
    expect(svc.holding).toBe(true);
    expect(holdRow(w)).toMatchObject({ started_at: lostAt, held_at_start: 2, serving_since: null, ended_at: null });
    // The broker stays away for longer than both the grace and the quiet period: nothing moves.
    w.advance(600 * SECOND);
    svc.sweep();
    expect(svc.checkHold(0)).toBeUndefined();
    expect(ch.connect(waiting!)).toMatchObject({ outcome: 'rejected', reason: 'no-free-licence' });
    // The broker is back; the devices return one after the other.
    expect(svc.outageOver(OWNER)).toBe(true);
    expect(holdRow(w)?.serving_since).toBe(w.clock.now());
    w.advance(100 * SECOND);
    expect(ch.connect(a!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
    expect(svc.checkHold(0)).toBeUndefined();
    expect(ch.connect(waiting!)).toMatchObject({ outcome: 'rejected', reason: 'no-free-licence' });
    w.advance(100 * SECOND);
    expect(ch.connect(b!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
    expect(svc.checkHold(0)).toMatchObject({ reason: 'all-returned', notReturned: 0 });
    expect(svc.holding).toBe(false);
    expect(ch.connect(waiting!)).toMatchObject({ outcome: 'rejected', reason: 'no-free-licence' });
  });

  it('a device that never returns: the quiet period counts from the broker\'s return, then the grace, then its seat moves', async () => {
    const { w, devices: [a, gone, waiting] } = await seatedWorld(2, 3);
    const svc = nextLife(w, { quietSec: 120 });
    const ch = new FakeChannel(svc);
    ch.connect(a!);
    ch.connect(gone!);
    svc.outageBegan(OWNER);
    svc.releaseMany([a!.uuid, gone!.uuid], w.clock.now(), 'server-outage');
    w.advance(300 * SECOND);
    svc.outageOver(OWNER);
    w.advance(30 * SECOND);
    expect(ch.connect(a!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
    w.advance(119 * SECOND);
    expect(svc.checkHold(0)).toBeUndefined();
    w.advance(1 * SECOND);
    expect(svc.checkHold(0)).toEqual({ reason: 'quiet', notReturned: 1, at: w.clock.now() });
    w.advance(59 * SECOND);
    expect(ch.connect(waiting!)).toMatchObject({ outcome: 'rejected', reason: 'no-free-licence' });
    w.advance(1 * SECOND);
    expect(ch.connect(waiting!)).toMatchObject({ outcome: 'managed', lease: 'new' });
  });

  it('a second loss joins the running hold and renews its cap; a seat whose will came just before the loss is held too; a plain disconnect still gets the grace', async () => {
    const { w, devices: [a, b, willed, plain] } = await seatedWorld(4, 4);
    const svc = nextLife(w);
    const ch = new FakeChannel(svc);
    for (const d of [a!, b!, willed!, plain!]) ch.connect(d);
    // The broker shutting down published this device's will a moment before the loss.
    const willAt = w.clock.now();
    ch.disconnect(willed!);
    w.advance(1 * SECOND);
    const first = w.clock.now();
    svc.outageBegan(OWNER);
    // The same device named twice (its will and the loss) is held once.
    expect(svc.releaseMany([a!.uuid, willed!.uuid, willed!.uuid], first, 'server-outage')).toBe(2);
    svc.outageOver(OWNER);
    w.advance(5 * SECOND);
    const second = w.clock.now();
    svc.outageBegan(OWNER);
    expect(svc.releaseMany([b!.uuid], second, 'server-outage')).toBe(1);
    // One hold, started by the first loss, not serving again until the broker is back once more.
    expect(holdRow(w)).toMatchObject({ started_at: first, last_loss_at: second, held_at_start: 3, serving_since: null });
    const held = w.services.store
      .stmt<{ uuid: string; released_at: number; grace_until: number }>(
        'SELECT d.uuid, l.released_at, l.grace_until FROM leases l JOIN devices d ON d.id = l.device_id WHERE l.restart_hold IS NOT NULL',
      )
      .all();
    expect(held.map((r) => r.uuid).sort()).toEqual([a!.uuid, b!.uuid, willed!.uuid].sort());
    // Each bounded by the cap plus one grace from the loss that took it; the willed one keeps its release time.
    for (const r of held) expect(r.grace_until).toBe((r.uuid === b!.uuid ? second : first) + (1800 + 60) * SECOND);
    expect(held.find((r) => r.uuid === willed!.uuid)?.released_at).toBe(willAt);
    expect(svc.releaseMany([plain!.uuid], w.clock.now())).toBe(0);
    expect(w.services.store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM leases WHERE restart_hold IS NOT NULL').get()?.n).toBe(3);
    expect(w.services.store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM leases WHERE grace_until IS NOT NULL').get()?.n).toBe(4);
    // The hard cap counts from the second loss: at the first loss's cap the hold still runs.
    w.advance(1800 * SECOND - 5 * SECOND);
    expect(svc.checkHold(0)).toBeUndefined();
    w.advance(5 * SECOND);
    expect(svc.checkHold(0)).toMatchObject({ reason: 'cap', notReturned: 3 });
  });

  it('with several processes out of touch with the broker, the quiet period waits for the last one back', async () => {
    const { w, devices: [a, b] } = await seatedWorld(2, 2);
    const one = nextLife(w, { quietSec: 120 });
    const two = nextLife(w, { quietSec: 120 });
    const primary = nextLife(w, { quietSec: 120 });
    new FakeChannel(one).connect(a!);
    new FakeChannel(two).connect(b!);
    one.outageBegan('mqtt buckets 0,2');
    two.outageBegan('mqtt buckets 1,3');
    one.releaseMany([a!.uuid], w.clock.now(), 'server-outage');
    two.releaseMany([b!.uuid], w.clock.now(), 'server-outage');
    w.advance(10 * SECOND);
    // The first process is back; the second's devices still cannot return.
    expect(one.outageOver('mqtt buckets 0,2')).toBe(true);
    expect(holdRow(w)?.serving_since).toBeNull();
    // The primary's start of service does not count either while a process is out.
    primary.holdServing();
    expect(holdRow(w)?.serving_since).toBeNull();
    w.advance(600 * SECOND);
    expect(primary.checkHold(0)).toBeUndefined();
    // A process that was not out changes nothing; the last one back starts the quiet period.
    expect(two.outageOver('mqtt buckets 9')).toBe(false);
    expect(holdRow(w)?.serving_since).toBeNull();
    expect(two.outageOver('mqtt buckets 1,3')).toBe(true);
    expect(holdRow(w)?.serving_since).toBe(w.clock.now());
    w.advance(120 * SECOND);
    expect(primary.checkHold(0)).toMatchObject({ reason: 'quiet', notReturned: 2 });
  });

  it('a release the store took only after the broker was back starts a hold that serves at once', async () => {
    const { w, devices: [a] } = await seatedWorld(1, 1);
    const svc = nextLife(w, { quietSec: 120 });
    new FakeChannel(svc).connect(a!);
    svc.outageBegan(OWNER);
    svc.outageOver(OWNER);
    const at = w.clock.now();
    svc.releaseMany([a!.uuid], at, 'server-outage');
    expect(holdRow(w)).toMatchObject({ started_at: at, serving_since: at });
    w.advance(120 * SECOND);
    expect(svc.checkHold(0)).toMatchObject({ reason: 'quiet', notReturned: 1 });
  });

  it('restartHoldMaxSec 0 switches the hold off: a lost broker starts the normal grace', async () => {
    const { w, devices: [a, waiting] } = await seatedWorld(1, 2);
    const svc = nextLife(w, { holdMaxSec: 0 });
    const ch = new FakeChannel(svc);
    ch.connect(a!);
    svc.releaseMany([a!.uuid], w.clock.now(), 'server-outage');
    expect(svc.holding).toBe(false);
    w.advance(60 * SECOND);
    expect(ch.connect(waiting!)).toMatchObject({ outcome: 'managed', lease: 'new' });
  });

  it('a hold one process starts (a cluster worker) is seen and ended by another (the primary)', async () => {
    const { w, devices: [a] } = await seatedWorld(1, 1);
    const worker = nextLife(w);
    const primary = nextLife(w);
    const ch = new FakeChannel(worker);
    ch.connect(a!);
    expect(primary.checkHold(0)).toBeUndefined();
    worker.outageBegan(OWNER);
    worker.releaseMany([a!.uuid], w.clock.now(), 'server-outage');
    expect(primary.holding).toBe(true);
    w.advance(10 * SECOND);
    worker.outageOver(OWNER);
    expect(ch.connect(a!)).toMatchObject({ outcome: 'managed', lease: 'reclaimed' });
    expect(primary.checkHold(0)).toMatchObject({ reason: 'all-returned', notReturned: 0 });
  });
});
