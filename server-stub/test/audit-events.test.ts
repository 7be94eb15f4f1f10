import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allRoutes } from '../src/routes/index.js';
import { dialects } from '../src/store/database.js';
import { AccountEvents } from '../src/store/events.js';
import { type AppWorld, appWorld } from './helpers/http.js';
import { removeTempDirs, type Tenant } from './helpers/setup.js';

let w: AppWorld;
let t: Tenant;
let token: string;

beforeAll(async () => {
  w = await appWorld({ testClock: true });
  t = await w.newTenant();
  w.licences(t, 'basic-25', 1);
  token = await w.login(t);
});
afterAll(async () => {
  await w.app.close();
  removeTempDirs();
});

const audit = async (query = '') => (await w.req('GET', `/api/audit-log${query}`, { token })).json();

describe('audit log', () => {
  it('a mutating call writes exactly one record: who, when, what, before and after', async () => {
    const dev = (await w.req('POST', '/api/inventory/managed-devices', { token, body: { serialNumber: 'AUD-1', name: 'old' } })).json();
    const n0 = (await audit('?limit=500')).items.length;
    const r = await w.req('PATCH', `/api/inventory/managed-devices/${dev.uuid}`, { token, body: { name: 'new', location: 'Hall 2' } });
    expect(r.statusCode).toBe(200);
    const page = await audit('?limit=500');
    expect(page.items.length).toBe(n0 + 1);
    const rec = page.items[0];
    expect(rec).toMatchObject({
      action: 'PATCH /api/inventory/managed-devices/{uuid}',
      actor: { type: 'user', username: t.username, via: 'session' },
      resourceKind: 'device',
      resourceUuid: dev.uuid,
      status: 200,
      request: { params: { uuid: dev.uuid }, body: { name: 'new', location: 'Hall 2' } },
      before: { name: 'old', location: '', serialNumber: 'AUD-1' },
      after: { name: 'new', location: 'Hall 2' },
      at: new Date(w.clock.now()).toISOString(),
    });
    expect(rec.prevHash).toBe(page.items[1].hash);
    // The create before it: after is the answer, by uuid.
    expect(page.items[1]).toMatchObject({ action: 'POST /api/inventory/managed-devices', resourceUuid: dev.uuid, before: null });
    expect((await audit(`?resourceUuid=${dev.uuid}`)).items).toHaveLength(2);
  });

  it('never stores secrets; refused calls keep only the error code', async () => {
    await w.req('POST', '/api/users', { token, body: { username: `aud-${t.accountId}`, password: 'a very secret pw', role: 'viewer' } });
    await w.req('POST', '/api/me/password', { token, body: { currentPassword: 'wrong one', newPassword: 'another secret pw' } });
    const missing = await w.req('DELETE', '/api/inventory/managed-devices/00000000-0000-4000-8000-000000000000', { token });
    expect(missing.statusCode).toBe(404);
    const text = JSON.stringify(await audit('?limit=500'));
    expect(text).not.toContain('a very secret pw');
    expect(text).not.toContain('another secret pw');
    expect(text).not.toContain('00000000-0000-4000-8000-000000000000');
    const last = (await audit()).items[0];
    expect(last).toMatchObject({ status: 404, request: null, before: null, after: { error: 'SERVER_NOT_FOUND' }, resourceUuid: null });
  });

  it('no route can change or delete a record; the store refuses it; the hash chain detects edits behind its back', async () => {
    const auditRoutes = allRoutes.filter((r) => r.url.startsWith('/api/audit'));
    expect(auditRoutes.length).toBeGreaterThan(0);
    expect(auditRoutes.every((r) => r.method === 'GET')).toBe(true);
    for (const method of ['PATCH', 'PUT', 'DELETE', 'POST'] as const) {
      expect((await w.req(method, '/api/audit-log', { token, body: {} })).statusCode).toBe(405);
    }
    const store = w.services.store;
    expect(() => store.stmt('UPDATE audit_records SET action = ? WHERE account_id = ?').run('x', t.accountId)).toThrow(/append-only/);
    expect(() => store.stmt('DELETE FROM audit_records WHERE account_id = ?').run(t.accountId)).toThrow(/append-only/);
    expect((await w.req('GET', '/api/audit-log/verify', { token })).json()).toMatchObject({ ok: true, brokenAtSeq: null });
    // Someone with the database drops the trigger and edits a record: the chain shows where.
    store.stmt(dialects({ sqlite: 'DROP TRIGGER audit_records_no_update', postgres: 'DROP TRIGGER audit_records_no_update ON audit_records' })).run();
    try {
      store.stmt('UPDATE audit_records SET status = 299 WHERE account_id = ? AND seq = 2').run(t.accountId);
      expect((await w.req('GET', '/api/audit-log/verify', { token })).json()).toMatchObject({ ok: false, brokenAtSeq: 2 });
    } finally {
      store
        .stmt(
          dialects({
            sqlite: `CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
              BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END`,
            postgres: `CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
              FOR EACH ROW EXECUTE FUNCTION audit_records_append_only()`,
          }),
        )
        .run();
    }
  });

  it('consent changes are recorded with before and after', async () => {
    await w.req('PUT', '/api/account/analytics-consent', { token, body: { consent: true } });
    await w.req('PUT', '/api/account/analytics-consent', { token, body: { consent: false } });
    const rec = (await audit()).items[0];
    expect(rec).toMatchObject({
      action: 'PUT /api/account/analytics-consent',
      resourceKind: 'account',
      before: { analyticsConsent: true },
      after: { analyticsConsent: false },
    });
  });
});

describe('events (activity log)', () => {
  it('device events and system changes, filtered by device, source, kind, severity and time, cursor-paged', async () => {
    const other = await w.newTenant();
    w.licences(other, 'basic-1', 1);
    const [d1, d2] = w.devices(t, 2, `EV${t.accountId}`);
    const [foreign] = w.devices(other, 1, `EVX${other.accountId}`);
    const events = new AccountEvents(w.services.store, t.accountId);
    const now = w.clock.now();
    const dev = (uuid: string, seq: number, kind: string, severity: string, at: number) =>
      events.record({ type: 'device.event', subject: uuid, data: { seq, kind, severity, at: at - 5 }, at });
    dev(d1!.uuid, 1, 'link.down', 'error', now + 1000);
    dev(d1!.uuid, 2, 'link.up', 'info', now + 2000);
    dev(d2!.uuid, 1, 'boot', 'info', now + 3000);
    new AccountEvents(w.services.store, other.accountId).record({
      type: 'device.event',
      subject: foreign!.uuid,
      data: { seq: 1, kind: 'link.down', severity: 'error', at: now },
      at: now + 1000,
    });
    const get = async (q: string) => (await w.req('GET', `/api/events?${q}`, { token })).json();
    const byDevice = await get(`deviceUuid=${d1!.uuid}`);
    expect(byDevice.items.map((e: { kind: string }) => e.kind)).toEqual(['link.up', 'link.down']);
    expect(byDevice.items[1]).toMatchObject({ source: 'device', severity: 'error', deviceUuid: d1!.uuid });
    expect((await get('source=device&severity=error')).items).toHaveLength(1);
    expect((await get('source=device&minSeverity=warning')).items).toHaveLength(1);
    expect((await get('kind=boot')).items.map((e: { deviceUuid: string }) => e.deviceUuid)).toEqual([d2!.uuid]);
    const from = new Date(now + 1500).toISOString();
    const to = new Date(now + 2500).toISOString();
    expect((await get(`source=device&from=${from}&to=${to}`)).items.map((e: { kind: string }) => e.kind)).toEqual(['link.up']);
    // System changes (licences, the API changes above) are in the same log.
    const system = await get('source=system&limit=500');
    expect(system.items.some((e: { type: string }) => e.type === 'licence.activated')).toBe(true);
    expect(system.items.some((e: { type: string; data: { action?: string } }) => e.type === 'change' && e.data.action === 'PATCH /api/inventory/managed-devices/{uuid}')).toBe(true);
    // Paging: one at a time, newest first, no repeats, nothing of the other account.
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { items: { id: number; deviceUuid: string | null }[]; nextCursor: string | null } = await get(
        `source=device&limit=1${cursor ? `&cursor=${cursor}` : ''}`,
      );
      seen.push(...page.items.map((e) => e.id));
      expect(page.items.every((e) => e.deviceUuid !== foreign!.uuid)).toBe(true);
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toHaveLength(3);
    expect([...seen].sort((a, b) => b - a)).toEqual(seen);
  });
});

describe('device coordinates', () => {
  it('are set on create/update (together, in range), cleared with null, imported from CSV and shown on the map', async () => {
    const c = await w.req('POST', '/api/inventory/managed-devices', {
      token,
      body: { serialNumber: 'GEO-1', latitude: 48.137, longitude: 11.575 },
    });
    expect(c.json()).toMatchObject({ latitude: 48.137, longitude: 11.575 });
    const uuid = c.json().uuid;
    const half = await w.req('PATCH', `/api/inventory/managed-devices/${uuid}`, { token, body: { latitude: 10 } });
    expect(half.json().code).toBe('SERVER_VALIDATION');
    const range = await w.req('PATCH', `/api/inventory/managed-devices/${uuid}`, { token, body: { latitude: 91, longitude: 0 } });
    expect(range.json().code).toBe('SERVER_VALIDATION');
    const moved = await w.req('PATCH', `/api/inventory/managed-devices/${uuid}`, { token, body: { latitude: -33.9, longitude: 151.2 } });
    expect(moved.json()).toMatchObject({ latitude: -33.9, longitude: 151.2 });
    const csv = 'serialNumber,latitude,longitude\nGEO-2,52.52,13.405\nGEO-3,,\n';
    const imp = await w.req('POST', '/api/inventory/managed-devices/import', { token, payload: csv, headers: { 'content-type': 'text/csv' } });
    expect(imp.json()).toMatchObject({ imported: 2, failed: 0 });
    const bad = 'serialNumber,latitude,longitude\nGEO-4,100,13\nGEO-5,52.5,\nGEO-6,north,13\n';
    const badImp = await w.req('POST', '/api/inventory/managed-devices/import', { token, payload: bad, headers: { 'content-type': 'text/csv' } });
    expect(badImp.json()).toMatchObject({ code: 'SERVER_CSV_ROWS_INVALID', details: { failed: 3 } });
    const map = (await w.req('GET', '/api/dashboard/locations', { token })).json();
    const coords = map.features.map((f: { geometry: { coordinates: number[] } }) => f.geometry.coordinates);
    expect(coords).toContainEqual([151.2, -33.9]);
    expect(coords).toContainEqual([13.405, 52.52]);
    const cleared = await w.req('PATCH', `/api/inventory/managed-devices/${uuid}`, { token, body: { latitude: null, longitude: null } });
    expect(cleared.json()).toMatchObject({ latitude: null, longitude: null });
  });
});
