import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import type { Notice } from '../src/channel/notices.js';
import { HostMembership, mqttConsumerRole } from '../src/hosts/membership.js';
import { isAppError } from '../src/errors.js';
import { adoptSharedFiles, publishSharedFiles } from '../src/hosts/shared-files.js';
import { asAccountUuid, asDeviceUuid } from '../src/ids.js';
import { PACKET_CHUNK_BYTES, PacketStorage } from '../src/packets/storage.js';
import { PacketBlobs } from '../src/store/packet-blobs.js';
import { PostgresNoticeBus } from '../src/store/postgres/notices.js';
import { freshPostgresStore, psqlTest } from './helpers/postgres.js';
import { removeTempDirs, tempDir, world, type World } from './helpers/setup.js';

/*
 * The parts that let independent hosts share one PostgreSQL store, each against a real database
 * (helpers/postgres.ts; these tests always run on PostgreSQL: it is the store several hosts share).
 * hosts.integration.test.ts runs them together in three real server processes.
 */

const silent = pino({ level: 'silent' });
const worlds: World[] = [];
afterAll(() => {
  for (const w of worlds) w.close();
  removeTempDirs();
});

function host(store: string, exclusiveRoles?: readonly string[]): { w: World; m: HostMembership } {
  const w = world({ store, leaseGraceSec: 60 });
  worlds.push(w);
  return {
    w,
    m: new HostMembership({
      store: w.services.store,
      admission: w.services.admission,
      log: silent,
      timeoutMs: 5000,
      ...(exclusiveRoles ? { exclusiveRoles } : {}),
    }),
  };
}

const leaseOf = (w: World, uuid: string) =>
  w.services.store
    .stmt<{ instance_id: string | null; released_at: number | null; grace_until: number | null }>(
      'SELECT l.instance_id, l.released_at, l.grace_until FROM leases l JOIN devices d ON d.id = l.device_id WHERE d.uuid = ?',
    )
    .get(uuid);

describe('cluster membership (server_instances, server_roles)', () => {
  it('the first member is a cold start, the next joins; one leads; a crashed member\'s devices are released with the grace by the next heartbeat of another, which takes the role', async () => {
    const store = freshPostgresStore();
    const a = host(store);
    const t = await a.w.newTenant();
    a.w.licences(t, 'basic-1', 2);
    const [d1, d2] = a.w.devices(t, 2);
    let held = -1;
    expect(a.m.start(() => (held = a.w.services.admission.startRestartHold().held))).toEqual({ coldStart: true });
    expect(held).toBe(0);
    const b = host(store);
    expect(b.m.start(() => expect.unreachable('a member joining a running cluster holds nothing'))).toEqual({ coldStart: false });
    expect([a.m.leads(), b.m.leads()]).toEqual([true, false]);

    // Each host admits one device: its lease names the host.
    expect(a.w.services.admission.admit({ serialNumber: d1!.serialNumber, credential: d1!.credential }).outcome).toBe('managed');
    expect(b.w.services.admission.admit({ serialNumber: d2!.serialNumber, credential: d2!.credential }).outcome).toBe('managed');
    expect(leaseOf(b.w, d1!.uuid)).toMatchObject({ instance_id: a.m.instanceId, released_at: null });
    expect(leaseOf(b.w, d2!.uuid)).toMatchObject({ instance_id: b.m.instanceId, released_at: null });

    // A dies without a word: its store connection goes, and with it its liveness lock.
    a.w.services.store.close();
    b.m.tick();
    const now = b.w.clock.now();
    expect(leaseOf(b.w, d1!.uuid)).toEqual({ instance_id: a.m.instanceId, released_at: now, grace_until: now + 60_000 });
    expect(leaseOf(b.w, d2!.uuid)).toMatchObject({ instance_id: b.m.instanceId, released_at: null });
    expect(b.w.services.store.stmt<{ stopped_at: number | null }>('SELECT stopped_at FROM server_instances WHERE id = ?').get(a.m.instanceId)?.stopped_at).not.toBeNull();
    expect(b.m.leads()).toBe(true);
    // The device comes back through B: it reclaims its seat, now held by B.
    expect(b.w.services.admission.admit({ serialNumber: d1!.serialNumber, credential: d1!.credential }).outcome).toBe('managed');
    expect(leaseOf(b.w, d1!.uuid)).toMatchObject({ instance_id: b.m.instanceId, released_at: null });
    b.m.stop();
    expect(b.w.services.store.stmt('SELECT holder FROM server_roles').all()).toEqual([]);
  }, 120_000);

  it('one host alone consumes an external MQTT broker: a second one for the same broker is refused at start, one for another broker is not, and a crashed holder does not keep its replacement out', () => {
    const store = freshPostgresStore();
    const broker = mqttConsumerRole('mqtts://user:secret@broker.example:8883');
    expect(broker).toBe('mqtt-consumer mqtts://broker.example:8883');
    const a = host(store, [broker]);
    a.m.start(() => {});
    const b = host(store, [broker]);
    let refused: unknown;
    try {
      b.m.start(() => {});
    } catch (err) {
      refused = err;
    }
    expect(isAppError(refused) && refused.code).toBe('SERVER_HOST_ROLE_TAKEN');
    expect((refused as Error).message).toContain(broker);
    const live = () => b.w.services.store.stmt<{ id: string }>('SELECT id FROM server_instances WHERE stopped_at IS NULL').all().map((r) => r.id);
    // Nothing of the refused process was recorded.
    expect(live()).toEqual([a.m.instanceId]);
    const other = host(store, [mqttConsumerRole('mqtts://other.example:8883')]);
    expect(other.m.start(() => {})).toEqual({ coldStart: false });

    // The holder crashes (its store connection, and with it its liveness lock, goes): its
    // replacement for the same broker starts at once, without waiting for the role to expire.
    a.w.services.store.close();
    const c = host(store, [broker]);
    expect(c.m.start(() => {})).toEqual({ coldStart: false });
    expect(c.w.services.store.stmt<{ holder: string }>('SELECT holder FROM server_roles WHERE name = ?').get(broker)?.holder).toBe(c.m.instanceId);
    // A clean stop gives it up.
    c.m.stop();
    expect(c.w.services.store.stmt('SELECT holder FROM server_roles WHERE name = ?').get(broker)).toBeUndefined();
    other.m.stop();
  }, 120_000);

  it('a member whose heartbeat is late is found dead although its connection lives; it registers again at its next heartbeat', () => {
    const store = freshPostgresStore();
    const a = host(store);
    const b = host(store);
    a.m.start(() => {});
    b.m.start(() => {});
    a.w.services.store.write(() => a.w.services.store.stmt('UPDATE server_instances SET heartbeat_at = heartbeat_at - 60000 WHERE id = ?').run(a.m.instanceId));
    b.m.tick();
    const stopped = () => b.w.services.store.stmt<{ stopped_at: number | null }>('SELECT stopped_at FROM server_instances WHERE id = ?').get(a.m.instanceId)!.stopped_at;
    expect(stopped()).not.toBeNull();
    expect(b.m.leads()).toBe(true);
    a.m.tick();
    expect(stopped()).toBeNull();
    expect(a.m.leads()).toBe(false);
  }, 120_000);

  it('a member found dead that came back before its devices were released keeps them', async () => {
    const store = freshPostgresStore();
    const a = host(store);
    const b = host(store);
    const t = await a.w.newTenant();
    a.w.licences(t, 'basic-1', 1);
    const [d] = a.w.devices(t, 1);
    a.m.start(() => {});
    b.m.start(() => {});
    expect(a.w.services.admission.admit({ serialNumber: d!.serialNumber, credential: d!.credential }).outcome).toBe('managed');
    // B found A late a moment ago, but A has heartbeated since: the release finds it alive and does nothing.
    expect(b.w.services.admission.releaseInstance(a.m.instanceId, { ifDeadFor: 5000 })).toBe(0);
    expect(leaseOf(b.w, d!.uuid)).toMatchObject({ instance_id: a.m.instanceId, released_at: null });
    // Late for real: released.
    a.w.services.store.write(() => a.w.services.store.stmt('UPDATE server_instances SET heartbeat_at = heartbeat_at - 60000 WHERE id = ?').run(a.m.instanceId));
    expect(b.w.services.admission.releaseInstance(a.m.instanceId, { ifDeadFor: 5000 })).toBe(1);
    expect(leaseOf(b.w, d!.uuid)?.released_at).not.toBeNull();
  }, 120_000);

  it('a member whose store connection was cut connects again, takes its liveness lock again and is not found dead once more', () => {
    const store = freshPostgresStore();
    const a = host(store);
    const b = host(store);
    let declaredDead = 0;
    const aStore = a.w.services.store;
    const membership = new HostMembership({
      store: aStore,
      admission: a.w.services.admission,
      log: silent,
      timeoutMs: 5000,
      onDeclaredDead: () => declaredDead++,
    });
    membership.start(() => {});
    b.m.start(() => {});
    const pid = aStore.stmt<{ pid: number }>('SELECT pg_backend_pid() AS pid').get()!.pid;
    // The database ends A's connection (as a restart of PostgreSQL, or a broken network, would).
    expect(psqlTest(`SELECT pg_terminate_backend(${pid}, 10000)`).trim()).toBe('t');
    const stopped = () => b.w.services.store.stmt<{ stopped_at: number | null }>('SELECT stopped_at FROM server_instances WHERE id = ?').get(membership.instanceId)!.stopped_at;
    b.m.tick();
    expect(stopped()).not.toBeNull();
    // A's next heartbeat runs on a new connection: it registers again and holds its lock again.
    membership.tick();
    expect(declaredDead).toBe(1);
    expect(stopped()).toBeNull();
    expect(aStore.stmt<{ pid: number }>('SELECT pg_backend_pid() AS pid').get()!.pid).not.toBe(pid);
    b.m.tick();
    expect(stopped()).toBeNull();
    membership.tick();
    expect(declaredDead).toBe(1);
    membership.stop();
  }, 120_000);

  it('a connection closing on one host leaves alone the lease of a device that reconnected to another', async () => {
    const store = freshPostgresStore();
    const a = host(store);
    const b = host(store);
    a.m.start(() => {});
    b.m.start(() => {});
    const t = await a.w.newTenant();
    a.w.licences(t, 'basic-1', 1);
    const [d] = a.w.devices(t, 1);
    a.w.services.admission.admit({ serialNumber: d!.serialNumber, credential: d!.credential });
    // The device's link to A died half-open; it said hello to B; then A notices and closes.
    b.w.services.admission.admit({ serialNumber: d!.serialNumber, credential: d!.credential });
    a.w.services.admission.releaseMany([d!.uuid]);
    expect(leaseOf(a.w, d!.uuid)).toMatchObject({ instance_id: b.m.instanceId, released_at: null });
    // B's own close releases it.
    b.w.services.admission.releaseMany([d!.uuid]);
    expect(leaseOf(a.w, d!.uuid)?.released_at).not.toBeNull();
  }, 120_000);
});

describe('shared material', () => {
  it('a host\'s files become the cluster\'s; another host takes them, and later changes made by one host', () => {
    const store = freshPostgresStore();
    const w = world({ store });
    worlds.push(w);
    const one = tempDir();
    const two = tempDir();
    mkdirSync(join(one, 'signing'));
    writeFileSync(join(one, 'server.key'), Buffer.alloc(32, 1));
    writeFileSync(join(one, 'signing', 'signer.pem'), 'signer one');
    writeFileSync(join(one, 'signing', 'signer-chain.pem'), 'chain one');
    writeFileSync(join(two, 'server.key'), Buffer.alloc(32, 2));
    expect(publishSharedFiles(w.services.store, one, { replace: false })).toEqual(['server.key', 'signing/signer.pem', 'signing/signer-chain.pem']);
    // Two made a key of its own before it knew: the first published wins.
    expect(publishSharedFiles(w.services.store, two, { replace: false })).toEqual([]);
    expect(adoptSharedFiles(w.services.store, two).sort()).toEqual(['server.key', 'signing/signer-chain.pem', 'signing/signer.pem']);
    expect(readFileSync(join(two, 'server.key'))).toEqual(Buffer.alloc(32, 1));
    // A rotation on host one (a new signer, no chain) replaces the cluster's signing files.
    writeFileSync(join(one, 'signing', 'signer.pem'), 'signer two');
    rmSync(join(one, 'signing', 'signer-chain.pem'));
    expect(publishSharedFiles(w.services.store, one, { replace: true, prefix: 'signing/' }).sort()).toEqual(['signing/signer-chain.pem', 'signing/signer.pem']);
    expect(adoptSharedFiles(w.services.store, two, 'signing/').sort()).toEqual(['signing/signer-chain.pem', 'signing/signer.pem']);
    expect(readFileSync(join(two, 'signing', 'signer.pem'), 'utf8')).toBe('signer two');
    expect(existsSync(join(two, 'signing', 'signer-chain.pem'))).toBe(false);
  }, 120_000);

  it('packet bytes go into the store in chunks and are fetched by a host that lacks them, byte for byte', async () => {
    const store = freshPostgresStore();
    const w = world({ store });
    worlds.push(w);
    const blobs = new PacketBlobs(w.services.store);
    const here = new PacketStorage(tempDir(), blobs);
    const there = new PacketStorage(tempDir(), blobs);
    const bytes = randomBytes(2 * PACKET_CHUNK_BYTES + 12345);
    const tmp = here.tempPath();
    writeFileSync(tmp, bytes);
    const sha = createHash('sha256').update(bytes).digest('hex');
    await here.commit(tmp, sha);
    expect(blobs.complete(sha)).toEqual({ size: bytes.length, chunks: 3 });
    expect(existsSync(there.path(sha))).toBe(false);
    expect(there.has(sha)).toBe(true);
    // Compared by hash: a deep equality of two 2 MiB buffers takes vitest minutes.
    expect(createHash('sha256').update(readFileSync(await there.local(sha))).digest('hex')).toBe(sha);
    await here.remove(sha);
    expect(blobs.complete(sha)).toBeUndefined();
    expect(w.services.store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM packet_chunks WHERE sha256 = ?').get(sha)!.n).toBe(0);
  }, 120_000);
});

describe('notices between hosts (LISTEN/NOTIFY)', () => {
  const uuids = Array.from({ length: 400 }, (_, i) => asDeviceUuid(`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`));
  const admission: Notice = { kind: 'admission', state: 'unmanaged', accountUuid: asAccountUuid('a'), deviceUuids: uuids, cause: 'licences-changed' };
  const admitted = (at: Notice[]) => at.flatMap((n) => (n.kind === 'admission' ? n.deviceUuids : []));
  const kinds = (at: Notice[]) => at.map((n) => n.kind);

  /** Two started buses on one fresh store, each with what it delivered. */
  async function twoBuses() {
    const store = freshPostgresStore();
    const one = new PostgresNoticeBus(store);
    const two = new PostgresNoticeBus(store);
    buses.push(one, two);
    await one.start(silent);
    await two.start(silent);
    const atOne: Notice[] = [];
    const atTwo: Notice[] = [];
    one.subscribe((n) => atOne.push(n));
    two.subscribe((n) => atTwo.push(n));
    return { store, one, two, atOne, atTwo };
  }
  const buses: PostgresNoticeBus[] = [];
  afterEach(async () => {
    for (const bus of buses.splice(0)) await bus.close();
  });

  it('a notice published on one host reaches the others once, a long device list in pieces; none comes back to its sender', async () => {
    const { one, two, atOne, atTwo } = await twoBuses();
    one.publish(admission);
    await waitFor(() => admitted(atTwo).length === 400, { what: () => `400 device uuids at the other host (${admitted(atTwo).length})` });
    expect(new Set(admitted(atTwo))).toEqual(new Set(uuids));
    expect(atTwo.filter((n) => n.kind === 'admission').length).toBeGreaterThan(1);
    // PostgreSQL hands a listener the notifications in commit order, its own ones included: the
    // reply to a notice the other host received comes after anything of the notice that came back.
    two.publish({ kind: 'trust-anchors', accountUuid: null });
    await waitFor(() => atOne.some((n) => n.kind === 'trust-anchors'), { what: 'the other host\'s trust-anchors notice' });
    // Its own notice delivered to itself once (locally), the other's once.
    expect(kinds(atOne)).toEqual(['admission', 'trust-anchors']);
    one.publish({ kind: 'jobs-runnable' });
    await waitFor(() => atTwo.some((n) => n.kind === 'jobs-runnable'), { what: 'the jobs-runnable notice' });
    expect(kinds(atTwo).filter((k) => k !== 'admission')).toEqual(['trust-anchors', 'jobs-runnable']);
  }, 120_000);

  it('a notice published before its bus started reaches the others once the bus listens', async () => {
    const { store, atTwo } = await twoBuses();
    const late = new PostgresNoticeBus(store);
    buses.push(late);
    const atLate: Notice[] = [];
    late.subscribe((n) => atLate.push(n));
    late.publish(admission);
    late.publish({ kind: 'jobs-runnable' });
    expect(kinds(atLate)).toEqual(['admission', 'jobs-runnable']); // locally at once
    await late.start(silent);
    await waitFor(() => atTwo.some((n) => n.kind === 'jobs-runnable'), { what: 'the early jobs-runnable notice at another host' });
    expect(new Set(admitted(atTwo))).toEqual(new Set(uuids));
    expect(kinds(atTwo).filter((k) => k !== 'admission')).toEqual(['jobs-runnable']);
  }, 120_000);
});
