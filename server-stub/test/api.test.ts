import { afterEach, describe, expect, it } from 'vitest';
import { addMonthsUtc, DAY } from '../src/clock.js';
import { FakeChannel } from './helpers/fake-channel.js';
import { type AppWorld, appWorld } from './helpers/http.js';
import { removeTempDirs, T0 } from './helpers/setup.js';

const worlds: AppWorld[] = [];
async function open(flags = {}): Promise<AppWorld> {
  const w = await appWorld(flags);
  worlds.push(w);
  return w;
}
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.app.close();
  removeTempDirs();
});

describe('system routes', () => {
  it('serves /healthz, Prometheus /metrics, /openapi.json from the route schemas and Swagger UI at /docs', async () => {
    const w = await open();
    expect((await w.req('GET', '/healthz')).json()).toMatchObject({ status: 'ok' });
    const metrics = await w.req('GET', '/metrics');
    expect(metrics.headers['content-type']).toContain('text/plain');
    for (const name of [
      'fleet_devices_connected',
      'fleet_devices_managed',
      'fleet_devices_unmanaged',
      'fleet_devices_rejected',
      'fleet_devices_held',
      'fleet_admissions_total',
      'fleet_messages_in_total',
      'fleet_messages_out_total',
      'fleet_errors_total',
    ]) {
      expect(metrics.body).toMatch(new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'));
    }
    const doc = (await w.req('GET', '/openapi.json')).json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.paths['/api/inventory/managed-devices/{uuid}'].get.responses['200']).toBeDefined();
    expect(doc.paths['/api/inventory/managed-devices'].post.requestBody.content['application/json'].schema.properties)
      .toHaveProperty('connectionPingInterval');
    expect(doc.paths['/api/test/clock']).toBeUndefined(); // test mode only
    const ui = await w.req('GET', '/docs/');
    expect(ui.statusCode).toBe(200);
    expect(ui.body).toContain('swagger');
  });
});

describe('login and tokens', () => {
  it('logs in with name and password; a wrong password or token gives 401 without detail', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    const me = await w.req('GET', '/api/me', { token });
    expect(me.json()).toMatchObject({ username: t.username, role: 'admin', language: 'en' });
    expect(me.body).not.toContain('password');
    const bad = await w.req('POST', '/api/auth/login', { body: { username: t.username, password: 'wrong wrong' } });
    expect(bad.statusCode).toBe(401);
    expect(bad.json()).toEqual({ code: 'SERVER_UNAUTHORIZED', message: 'Authentication required.' });
    const unknown = await w.req('POST', '/api/auth/login', { body: { username: 'nobody', password: 'wrong wrong' } });
    expect(unknown.json()).toEqual(bad.json());
    for (const auth of ['', 'Bearer', 'Bearer rfs_nonsense-token-value', 'Basic abc', `Bearer ${token}x`]) {
      const r = await w.req('GET', '/api/me', { headers: { authorization: auth } });
      expect(r.statusCode, auth).toBe(401);
      expect(r.json().code).toBe('SERVER_UNAUTHORIZED');
    }
  });

  it('session tokens expire and end at logout', async () => {
    const w = await open({ sessionTtlSec: 3600 });
    const t = await w.newTenant();
    const token = await w.login(t);
    w.advance(3600 * 1000);
    expect((await w.req('GET', '/api/me', { token })).statusCode).toBe(401);
    const again = await w.login(t);
    expect((await w.req('POST', '/api/auth/logout', { token: again })).statusCode).toBe(204);
    expect((await w.req('GET', '/api/me', { token: again })).statusCode).toBe(401);
  });

  it('repeated failed logins lock the user for a while; the server keeps serving', async () => {
    const w = await open({ loginMaxFailures: 3, loginLockoutSec: 600 });
    const t = await w.newTenant();
    for (let i = 0; i < 3; i++) {
      const r = await w.req('POST', '/api/auth/login', { body: { username: t.username, password: 'not it at all' } });
      expect(r.statusCode).toBe(401);
    }
    const locked = await w.req('POST', '/api/auth/login', { body: { username: t.username, password: t.password } });
    expect(locked.statusCode).toBe(429);
    expect(locked.json().code).toBe('SERVER_LOGIN_LOCKED');
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
    w.advance(601 * 1000);
    expect((await w.login(t)).length).toBeGreaterThan(10);
  });

  it('rate-limits login attempts per client', async () => {
    const w = await open({ loginRateLimitPerMinute: 5 });
    const codes: number[] = [];
    for (let i = 0; i < 7; i++) {
      codes.push((await w.req('POST', '/api/auth/login', { body: { username: `u${i}`, password: 'whatever1' } })).statusCode);
    }
    expect(codes).toEqual([401, 401, 401, 401, 401, 429, 429]);
    expect((await w.req('GET', '/healthz')).statusCode).toBe(200);
  });

  it('API tokens need an active API licence, are shown once, hashed at rest, revocable', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    w.licences(t, 'basic-1', 1);
    const refused = await w.req('POST', '/api/api-tokens', { token, body: { name: 'ci' } });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().code).toBe('SERVER_API_LICENCE_REQUIRED');
    w.licences(t, 'api', 1);
    const created = await w.req('POST', '/api/api-tokens', { token, body: { name: 'ci' } });
    expect(created.statusCode).toBe(201);
    const { uuid, token: apiToken } = created.json();
    expect(apiToken).toMatch(/^rfa_/);
    const stored = w.services.store.stmt('SELECT token_hash FROM api_tokens WHERE uuid = ?').get(uuid) as {
      token_hash: string;
    };
    expect(stored.token_hash).not.toContain(apiToken.slice(4));
    const list = await w.req('GET', '/api/api-tokens', { token: apiToken });
    expect(list.statusCode).toBe(200);
    expect(list.body).not.toContain(apiToken);
    expect(list.body).not.toContain(stored.token_hash);
    expect((await w.req('DELETE', `/api/api-tokens/${uuid}`, { token })).statusCode).toBe(204);
    expect((await w.req('GET', '/api/me', { token: apiToken })).statusCode).toBe(401);
  });

  it('an API token stops working when the API licence expires', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    w.licences(t, 'api', 1);
    const apiToken = (await w.req('POST', '/api/api-tokens', { token, body: { name: 'x' } })).json().token;
    expect((await w.req('GET', '/api/me', { token: apiToken })).statusCode).toBe(200);
    w.clock.set(addMonthsUtc(T0, 12));
    const r = await w.req('GET', '/api/me', { token: apiToken });
    expect(r.statusCode).toBe(403);
    expect(r.json().code).toBe('SERVER_API_LICENCE_REQUIRED');
  });

  it('roles: viewers read, operators manage devices, only admins manage users and licences', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    const admin = await w.login(t);
    for (const role of ['viewer', 'operator'] as const) {
      const r = await w.req('POST', '/api/users', {
        token: admin,
        body: { username: `${role}-${t.accountId}`, password: 'long enough pw', role },
      });
      expect(r.statusCode).toBe(201);
    }
    const as = async (role: string) =>
      (await w.req('POST', '/api/auth/login', { body: { username: `${role}-${t.accountId}`, password: 'long enough pw' } })).json()
        .token as string;
    const viewer = await as('viewer');
    const operator = await as('operator');
    const create = (token: string, sn: string) =>
      w.req('POST', '/api/inventory/managed-devices', { token, body: { serialNumber: sn } });
    expect((await create(viewer, 'V1')).statusCode).toBe(403);
    expect((await create(operator, 'O1')).statusCode).toBe(201);
    expect((await w.req('GET', '/api/inventory/managed-devices', { token: viewer })).statusCode).toBe(200);
    expect((await w.req('GET', '/api/users', { token: operator })).json().code).toBe('SERVER_FORBIDDEN');
    expect((await w.req('POST', '/api/licences/redeem', { token: operator, body: { code: 'AAAA-BBBB-CCCC' } })).statusCode).toBe(
      403,
    );
    // Trying to make oneself admin through the profile is refused.
    const escalate = await w.req('PATCH', '/api/me', { token: viewer, body: { role: 'admin' } });
    expect(escalate.statusCode).toBe(400);
    expect((await w.req('GET', '/api/me', { token: viewer })).json().role).toBe('viewer');
  });
});

describe('licences over HTTP', () => {
  it('redeem, see Available, activate now or at a date, 12-month term; plan mixing refused', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    const [code1, code2] = w.services.licensing.issue('basic-25', 2);
    const r1 = await w.req('POST', '/api/licences/redeem', { token, body: { code: code1!.toLowerCase() } });
    expect(r1.statusCode).toBe(201);
    expect(r1.json()).toMatchObject({ kind: 'basic-25', seats: 25, status: 'available', activationAt: null });
    const again = await w.req('POST', '/api/licences/redeem', { token, body: { code: code1 } });
    expect(again.json().code).toBe('SERVER_LICENCE_CODE_REDEEMED');
    const act = await w.req('POST', `/api/licences/${r1.json().uuid}/activate`, { token });
    expect(act.json()).toMatchObject({ status: 'active', expiresAt: new Date(addMonthsUtc(T0, 12)).toISOString() });
    const r2 = (await w.req('POST', '/api/licences/redeem', { token, body: { code: code2 } })).json();
    const at = new Date(T0 + 10 * DAY).toISOString();
    const sched = await w.req('POST', `/api/licences/${r2.uuid}/activate`, { token, body: { at } });
    expect(sched.json()).toMatchObject({ status: 'scheduled', activationAt: at });
    expect((await w.req('GET', '/api/account/plan', { token })).json()).toMatchObject({ plan: 'basic', seats: 25 });
    const [pro] = w.services.licensing.issue('pro', 1);
    const mix = await w.req('POST', '/api/licences/redeem', { token, body: { code: pro } });
    expect(mix.statusCode).toBe(409);
    expect(mix.json().code).toBe('SERVER_LICENCE_PLAN_MIX');
    for (const [code, expected] of [
      ['nonsense', 'SERVER_LICENCE_CODE_MALFORMED'],
      ['0000-0000-0000', 'SERVER_LICENCE_CODE_UNKNOWN'],
    ] as const) {
      expect((await w.req('POST', '/api/licences/redeem', { token, body: { code } })).json().code).toBe(expected);
    }
  });

  it('codes not redeemed within 24 months of issue expire', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    const [old] = w.services.licensing.issue('basic-1', 1);
    w.clock.set(addMonthsUtc(T0, 24));
    const token2 = await w.login(t);
    const r = await w.req('POST', '/api/licences/redeem', { token: token2, body: { code: old } });
    expect(r.json().code).toBe('SERVER_LICENCE_CODE_EXPIRED');
    expect(token).not.toBe(token2);
  });

  it('bulk import from the vendor CSV: all or nothing, or partial on request', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    const codes = w.services.licensing.issue('basic-1', 3);
    const csv = (rows: string[]) => `code,plan,issuedAt\r\n${rows.map((c) => `${c},basic-1,x`).join('\r\n')}\r\n`;
    const post = (body: string, partial = false) =>
      w.req('POST', `/api/licences/import${partial ? '?partial=true' : ''}`, {
        token,
        payload: body,
        headers: { 'content-type': 'text/csv' },
      });
    const bad = await post(csv([codes[0]!, 'FFFF-FFFF-FFFF', codes[1]!]));
    expect(bad.statusCode).toBe(422);
    expect(bad.json()).toMatchObject({
      code: 'SERVER_CSV_ROWS_INVALID',
      details: { rows: 3, imported: 0, failed: 1, errors: [{ line: 3, code: 'SERVER_LICENCE_CODE_UNKNOWN' }] },
    });
    expect(w.services.licensing.list(t.scope)).toHaveLength(0);
    const partial = await post(csv([codes[0]!, 'FFFF-FFFF-FFFF', codes[1]!, codes[0]!]), true);
    expect(partial.json()).toMatchObject({ rows: 4, imported: 2, failed: 2 });
    expect(w.services.licensing.list(t.scope)).toHaveLength(2);
    const noColumn = await post('serial\r\nx\r\n');
    expect(noColumn.json().code).toBe('SERVER_CSV_INVALID');
  });

  it('plan gates: Free has one user, no audit log, templates, certificates or custom fields (403 + code)', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    w.licences(t, 'free', 1);
    const gated: [string, string, unknown?][] = [
      ['POST', '/api/users', { username: 'second', password: 'long enough pw', role: 'viewer' }],
      ['GET', '/api/audit-log'],
      ['GET', '/api/configuration-templates'],
      ['POST', '/api/configuration-templates', { name: 'x', body: 'y' }],
      ['GET', '/api/certificates'],
      ['POST', '/api/inventory/managed-devices', { serialNumber: 'F2', customFields: { site: 'a' } }],
    ];
    for (const [method, url, body] of gated) {
      const r = await w.req(method as 'GET', url, { token, body });
      expect(r.statusCode, url).toBe(403);
      expect(r.json().code, url).toBe('SERVER_PLAN_FEATURE_UNAVAILABLE');
    }
    expect((await w.req('POST', '/api/inventory/managed-devices', { token, body: { serialNumber: 'F1' } })).statusCode).toBe(201);
    // With a paid plan they open up (and Free is invalidated).
    w.licences(t, 'basic-1', 1);
    for (const [method, url, body] of gated) {
      const r = await w.req(method as 'GET', url, { token, body });
      expect(r.statusCode, url).toBeLessThan(300);
    }
    const audit = (await w.req('GET', '/api/audit-log', { token })).json();
    expect(audit.items[0]).toMatchObject({ action: 'POST /api/inventory/managed-devices', status: 201 });
  });

  it('Free manages 1,000 devices at once but registers more (the demo fleet of 1,200 on Free: 1,000 admitted; see docs/licensing.md)', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    w.licences(t, 'free', 1);
    const rows = Array.from({ length: 1000 }, (_, i) => `FREE-${i}`).join('\n');
    const imp = await w.req('POST', '/api/inventory/managed-devices/import', {
      token,
      payload: `serialNumber\n${rows}\n`,
      headers: { 'content-type': 'text/csv' },
    });
    expect(imp.json()).toMatchObject({ imported: 1000 });
    const more = await w.req('POST', '/api/inventory/managed-devices', { token, body: { serialNumber: 'FREE-1000' } });
    expect(more.statusCode).toBe(201);
    const plan = (await w.req('GET', '/api/account/plan', { token })).json();
    expect(plan).toMatchObject({ seats: 1000, registrationLimit: null });
  });

  it('after expiry users can still log in and see devices, but device management is refused', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    w.devices(t, 1);
    w.clock.set(addMonthsUtc(T0, 12));
    const token = await w.login(t);
    expect((await w.req('GET', '/api/inventory/managed-devices', { token })).json().items).toHaveLength(1);
    const r = await w.req('POST', '/api/inventory/managed-devices', { token, body: { serialNumber: 'late' } });
    expect(r.statusCode).toBe(403);
    expect(r.json().code).toBe('SERVER_NO_ACTIVE_LICENCE');
    expect((await w.req('POST', '/api/inventory/device-groups', { token, body: { name: 'g' } })).json().code).toBe(
      'SERVER_NO_ACTIVE_LICENCE',
    );
    // Moving a test clock runs the sweep, which recorded the expiry.
    const events = (await w.req('GET', '/api/account/events?type=licence.expired', { token })).json();
    expect(events.items).toHaveLength(1);
  });
});

describe('test clock', () => {
  it('admins move the server clock; licences expire and the sweep runs at once', async () => {
    const w = await open({ testClock: true });
    const t = await w.newTenant();
    const token = await w.login(t);
    w.licences(t, 'basic-1', 1);
    const [dev] = w.devices(t, 1);
    const ch = new FakeChannel(w.services.admission);
    expect(ch.connect(dev!).outcome).toBe('managed');
    const r = await w.req('POST', '/api/test/clock', { token, body: { advanceDays: 366 } });
    expect(r.statusCode).toBe(200);
    expect(Date.parse(r.json().now)).toBe(T0 + 366 * DAY);
    expect(ch.state(dev!)).toBe('unmanaged');
    const fresh = await w.login(t); // the session from a year ago has expired
    const events = (await w.req('GET', '/api/account/events?type=licence.expired', { token: fresh })).json();
    expect(events.items).toHaveLength(1);
    expect((await w.req('GET', '/api/test/clock', { token: fresh })).json().now).toBe(r.json().now);
  });

  it('is not there without --test-clock', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    expect((await w.req('POST', '/api/test/clock', { token, body: { advanceDays: 1 } })).statusCode).toBe(404);
  });
});
