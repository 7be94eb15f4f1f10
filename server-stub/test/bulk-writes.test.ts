// Bulk writes on both stores (the SQLite file and PostgreSQL, whatever FLEET_TEST_STORE says): the
// multi-row repository statements (events, licence activations, device inserts, serial number
// lookups) across more than one chunk, and the services built on them (bulk activation, the
// licence sweep, the CSV registration) giving the same per-line answers as row-by-row writes did.
import { afterEach, describe, expect, it } from 'vitest';
import { TestClock } from '../src/clock.js';
import { loadConfig } from '../src/config.js';
import { isAppError } from '../src/errors.js';
import { createServices } from '../src/services.js';
import { Store, type Store as StoreType } from '../src/store/database.js';
import { serialNumbersTaken, type NewDevice } from '../src/store/devices.js';
import { BULK_CHUNK_ROWS } from '../src/store/events.js';
import { freshPostgresStore } from './helpers/postgres.js';
import { removeTempDirs, T0, tempDir, type World, worldOf } from './helpers/setup.js';

const worlds: { w: World; store: StoreType }[] = [];
afterEach(() => {
  for (const { w, store } of worlds.splice(0)) {
    w.close();
    store.close();
  }
  removeTempDirs();
});

const STORES = ['sqlite', 'postgres'] as const;

/** Services on a new, empty store of the given kind. */
function open(kind: (typeof STORES)[number]): World {
  const dataDir = tempDir();
  const clock = new TestClock(T0);
  const config = loadConfig({ flags: { dataDir, logLevel: 'silent', scryptCost: 1024 }, env: {} });
  const store = kind === 'sqlite' ? Store.open(dataDir) : Store.connect(freshPostgresStore());
  const w = worldOf(createServices(config, { clock, store }), clock, dataDir);
  worlds.push({ w, store });
  return w;
}

function newDevice(serialNumber: string, i: number, groupId: number | null): NewDevice {
  return {
    uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    serialNumber,
    name: i % 2 ? `Router "${i}", hall \\${i}` : '',
    location: i % 3 ? 'Hall {1}' : '',
    groupId,
    model: i % 4 ? null : 'RUT-X',
    firmware: i % 5 ? null : '7.1',
    pingInterval: 120,
    pongTimeout: 104,
    sessionTimeout: 16 + (i % 7),
    customFields: i % 6 ? {} : { site: `s,${i}` },
    latitude: i % 2 ? 48.1 + i / 1e6 : null,
    longitude: i % 2 ? 11.5 : null,
    credentialHash: Buffer.from([i & 0xff, 0, 0xff, 0x5c]),
    credentialSealed: Buffer.from(`sealed-${i}`),
  };
}

describe.each(STORES)('bulk writes on %s', (kind) => {
  it('records many events in order, once per dedupe key (within the batch and against the store), across chunks', async () => {
    const w = open(kind);
    const t = await w.newTenant();
    expect(t.scope.events.record({ type: 'x', at: 1, dedupeKey: 'k-5' })).toBe(true);
    const n = BULK_CHUNK_ROWS + 500;
    const events = Array.from({ length: n }, (_, i) => ({
      type: `t-${i}`,
      subject: i % 2 ? null : `s-${i}`,
      data: { i, text: 'quote " and \\ backslash, {brace}' },
      at: 1000 + i,
      // Every tenth has no key; key k-5 is taken already; k-7 is offered twice.
      ...(i % 10 === 0 ? {} : { dedupeKey: `k-${i === n - 1 ? 7 : i}` }),
    }));
    expect(t.scope.events.recordMany(events)).toBe(n - 2);
    const listed = t.scope.events.list({ limit: n + 10 }).reverse();
    expect(listed).toHaveLength(n - 1);
    expect(listed[0]).toMatchObject({ type: 'x' });
    const expected = events.filter((_, i) => i !== 5 && i !== n - 1);
    expect(listed.slice(1).map((e) => [e.type, e.subject, e.data, e.at])).toEqual(
      expected.map((e) => [e.type, e.subject, e.data, e.at]),
    );
    // Offered again: nothing new except the events without a key.
    expect(t.scope.events.recordMany(events)).toBe(events.filter((e) => e.dedupeKey === undefined).length);
    expect(t.scope.events.recordMany([])).toBe(0);
  });

  it('inserts many devices with every field, and finds which serial numbers are taken, across chunks', async () => {
    const w = open(kind);
    const t = await w.newTenant();
    const other = await w.newTenant();
    w.licences(t, 'pro', 1);
    const groupUuid = '00000000-0000-4000-8000-00000000abcd';
    t.scope.groups.insert({ uuid: groupUuid, name: 'g', description: '' }, T0);
    const group = t.scope.groups.byUuid(groupUuid)!.id;
    const n = BULK_CHUNK_ROWS + 300;
    const devices = Array.from({ length: n }, (_, i) => newDevice(`BULK-${i}`, i, i % 2 ? group : null));
    w.services.store.write(() => t.scope.devices.insertMany(devices, T0 + 5));
    expect(t.scope.devices.count()).toBe(n);
    expect(other.scope.devices.count()).toBe(0);
    const rows = t.scope.devices.list({ filter: {}, sort: 'createdAt', desc: false, limit: n + 1 });
    expect(rows.map((r) => r.serial_number)).toEqual(devices.map((d) => d.serialNumber));
    for (const [i, d] of devices.entries()) {
      const r = rows[i]!;
      const got = [r.uuid, r.name, r.location, r.group_id, r.model, r.firmware, r.session_timeout, JSON.parse(r.custom_fields)];
      expect([...got, r.latitude, r.longitude, r.created_at]).toEqual([
        d.uuid, d.name, d.location, d.groupId, d.model, d.firmware, d.sessionTimeout, d.customFields, d.latitude, d.longitude, T0 + 5,
      ]);
      expect(t.scope.devices.sealedCredential(r.id)).toEqual(d.credentialSealed);
    }
    const asked = [...devices.map((d) => d.serialNumber).filter((_, i) => i % 3 === 0), 'NOT-THERE', 'bulk-1'];
    expect([...serialNumbersTaken(w.services.store, asked)].sort()).toEqual(asked.filter((s) => s.startsWith('BULK-')).sort());
    expect(serialNumbersTaken(w.services.store, []).size).toBe(0);
  });

  it('activates many licences at once, the rules applied as if one by one, with one event each and the sweep\'s events once', async () => {
    const w = open(kind);
    const t = await w.newTenant();
    const n = BULK_CHUNK_ROWS + 100;
    // Redeemed in one import: one at a time, each redemption reads the account's licences again.
    const codes = w.services.licensing.issue('basic-1', n);
    const imported = w.services.licensing.importCsv(t.scope, ['code', ...codes].join('\n'), false, n).accepted.map((a) => a.uuid);
    const licences = w.services.licensing.list(t.scope).filter((l) => l.status === 'available');
    expect(licences.map((l) => l.uuid)).toEqual(imported);
    const activated = w.services.licensing.activateMany(t.scope, undefined, undefined);
    expect(activated.map((l) => l.uuid)).toEqual(licences.map((l) => l.uuid));
    expect(activated.every((l) => l.status === 'active')).toBe(true);
    const events = t.scope.events.list({ limit: 3 * n + 10 }).reverse();
    const requested = events.filter((e) => e.type === 'licence.activation-requested');
    expect(requested.map((e) => e.subject)).toEqual(licences.map((l) => l.uuid));
    expect(requested[0]!.data).toEqual({ licence: licences[0]!.uuid, kind: 'basic-1', activationAt: new Date(T0).toISOString() });
    // The activation's sweep recorded each licence's activation; another sweep records nothing new.
    expect(events.filter((e) => e.type === 'licence.activated')).toHaveLength(n);
    expect(w.services.admission.sweepAccount(t.scope.accountId)).toMatchObject({ events: 0 });
    expect(w.services.licensing.entitlement(t.scope)).toMatchObject({ plan: 'basic', seats: n });
  });

  it('judges each licence against the ones activated before it in the same call, and activates none when one is refused', async () => {
    const w = open(kind);
    const t = await w.newTenant();
    const [paid] = w.redeem(t, 'basic-1', 1);
    const [free] = w.redeem(t, 'free', 1);
    let refused: unknown;
    try {
      w.services.licensing.activateMany(t.scope, [paid!.uuid, free!.uuid, paid!.uuid], undefined);
    } catch (err) {
      refused = err;
    }
    expect(isAppError(refused) && refused.code).toBe('SERVER_LICENCE_BULK_ACTIVATION');
    expect((refused as { details: unknown }).details).toMatchObject({
      // Available when the call began, invalidated by the paid licence activated before it.
      errors: [{ licence: free!.uuid, code: 'SERVER_LICENCE_NOT_ACTIVATABLE' }],
    });
    expect(w.services.licensing.list(t.scope).map((l) => l.status)).toEqual(['available', 'available']);
    expect(t.scope.events.list({ limit: 10, type: 'licence.activation-requested' })).toEqual([]);
  });

  it('redeems many codes in one call, each judged against the ones redeemed before it', async () => {
    const w = open(kind);
    const t = await w.newTenant();
    const [basic] = w.services.licensing.issue('basic-1', 1);
    const [pro] = w.services.licensing.issue('pro', 1);
    let refused: unknown;
    try {
      w.services.licensing.redeemAndActivate(t.scope, [basic!, pro!], undefined);
    } catch (err) {
      refused = err;
    }
    expect(isAppError(refused) && refused.code).toBe('SERVER_LICENCE_PLAN_MIX');
    expect(w.services.licensing.list(t.scope)).toEqual([]);
    const report = w.services.licensing.importCsv(t.scope, `code\n${basic}\n${pro}\n${basic}\n`, true, 10);
    expect(report.errors.map((e) => [e.line, e.code])).toEqual([
      [3, 'SERVER_LICENCE_PLAN_MIX'],
      [4, 'SERVER_LICENCE_CODE_DUPLICATE'],
    ]);
    const codes = w.services.licensing.issue('basic-25', 3);
    const views = w.services.licensing.redeemAndActivate(t.scope, codes, undefined);
    expect(views.map((l) => [l.code, l.status])).toEqual(codes.map((c) => [c, 'active']));
  });

  it('registers a CSV file with the same verdict per line as one row at a time, all or nothing unless partial', async () => {
    const w = open(kind);
    const t = await w.newTenant();
    const other = await w.newTenant();
    w.licences(t, 'pro', 1);
    w.licences(other, 'pro', 1);
    w.services.devices.create(other.scope, { serialNumber: 'TAKEN-1' });
    t.scope.groups.insert({ uuid: '00000000-0000-4000-8000-00000000beef', name: 'north', description: '' }, T0);
    const n = BULK_CHUNK_ROWS + 200;
    const lines = ['serialNumber,name,group,latitude,longitude'];
    for (let i = 0; i < n; i++) lines.push(`CSV-${i},Router ${i},${i % 2 ? 'north' : ''},,`);
    lines.push(
      'TAKEN-1,taken in another account,,,', // line n+2
      'CSV-3,twice in the file,,,', // n+3
      'bad serial!,invalid serial,,,', // n+4
      'bad serial!,invalid and then twice,,,', // n+5: a serial "seen" even when its row failed later
      'GROUPLESS,x,south,,', // n+6
      'FAR-AWAY,x,,91,0', // n+7
      'TOO,MANY,CELLS,,,', // n+8
      'TAKEN-1,again in the file,,,', // n+9
    );
    const body = `${lines.join('\n')}\n`;
    const expectedErrors = [
      [n + 2, 'SERVER_DEVICE_SERIAL_TAKEN'],
      [n + 3, 'SERVER_DEVICE_SERIAL_TAKEN'],
      [n + 4, 'SERVER_VALIDATION'],
      [n + 5, 'SERVER_DEVICE_SERIAL_TAKEN'],
      [n + 6, 'SERVER_VALIDATION'],
      [n + 7, 'SERVER_VALIDATION'],
      [n + 8, 'SERVER_CSV_INVALID'],
      [n + 9, 'SERVER_DEVICE_SERIAL_TAKEN'],
    ];
    let rolledBack: unknown;
    try {
      w.services.devices.importCsv(t.scope, body, false, 100_000);
    } catch (err) {
      rolledBack = err;
    }
    expect(isAppError(rolledBack) && rolledBack.code).toBe('SERVER_CSV_ROWS_INVALID');
    const report = (rolledBack as { details: { errors: { line: number; code: string; message: string }[] } }).details;
    expect(report).toMatchObject({ rows: n + 8, imported: 0, failed: 8, partial: false, accepted: [] });
    expect(report.errors.map((e) => [e.line, e.code])).toEqual(expectedErrors);
    expect(report.errors.map((e) => e.message)).toEqual([
      'A device with this serial number is already registered.',
      'The serial number occurs twice in this file.',
      'serialNumber must be 1-64 letters, digits, ".", "_" or "-".',
      'The serial number occurs twice in this file.',
      'Unknown device group "south".',
      'latitude must be a number from -90 to 90 (degrees).',
      'Wrong number of cells.',
      'The serial number occurs twice in this file.',
    ]);
    expect(t.scope.devices.count()).toBe(0);

    const done = w.services.devices.importCsv(t.scope, body, true, 100_000);
    expect(done).toMatchObject({ rows: n + 8, imported: n, failed: 8, partial: true });
    expect(done.errors.map((e) => [e.line, e.code])).toEqual(expectedErrors);
    expect(done.accepted).toHaveLength(1000);
    expect(done.accepted[999]).toMatchObject({ line: 1001, serialNumber: 'CSV-999' });
    expect(t.scope.devices.count()).toBe(n);
    const row = t.scope.devices.byUuid(done.accepted[1]!.uuid)!;
    expect(row).toMatchObject({ serial_number: 'CSV-1', name: 'Router 1', group_uuid: '00000000-0000-4000-8000-00000000beef' });
    // Each registered device has its own working credential.
    expect(w.services.devices.credential(t.scope, row.uuid)).toMatch(/\S/);
    // The same file again: every row's serial number is taken now.
    const again = w.services.devices.importCsv(t.scope, body, true, 100_000);
    expect(again).toMatchObject({ imported: 0, failed: n + 8 });
  });
});
