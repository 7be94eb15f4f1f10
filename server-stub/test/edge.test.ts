import { statSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { textViolation } from '../src/validation.js';
import { type AppWorld, appWorld } from './helpers/http.js';
import { buildApp } from '../src/app.js';
import { TestClock } from '../src/clock.js';
import { isStorageFull, StorageGuard } from '../src/storage-guard.js';
import { StoreBusyError, StoreFullError } from '../src/store/errors.js';
import { removeTempDirs, T0, tempDir, testConfig } from './helpers/setup.js';

const worlds: AppWorld[] = [];
async function open(flags: Parameters<typeof appWorld>[0] = {}): Promise<AppWorld> {
  const w = await appWorld(flags);
  worlds.push(w);
  return w;
}
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.app.close();
});
afterAll(() => removeTempDirs());

const GROUPS = '/api/inventory/device-groups';

describe('request bodies', () => {
  it('refuses a JSON null body (400 with a code) instead of reading it as {}', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    const token = await w.login(t);
    const r = await w.req('POST', GROUPS, {
      token,
      payload: 'null',
      headers: { 'content-type': 'application/json' },
    });
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'SERVER_VALIDATION' });
  });

  it('takes JSON and CSV in UTF-8 only: another charset is 415, invalid UTF-8 bytes are 400', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    const token = await w.login(t);
    const latin1 = await w.req('POST', GROUPS, {
      token,
      payload: Buffer.from('{"name":"Gr\xfcn"}', 'latin1'),
      headers: { 'content-type': 'application/json; charset=iso-8859-1' },
    });
    expect(latin1.statusCode).toBe(415);
    expect(latin1.json()).toMatchObject({ code: 'SERVER_UNSUPPORTED_MEDIA_TYPE' });
    const csv = await w.req('POST', '/api/inventory/managed-devices/import', {
      token,
      payload: Buffer.from('serialNumber\nS1\n', 'latin1'),
      headers: { 'content-type': 'text/csv; charset=windows-1252' },
    });
    expect(csv.statusCode).toBe(415);
    expect(csv.json()).toMatchObject({ code: 'SERVER_UNSUPPORTED_MEDIA_TYPE' });
    // An encoded surrogate (CESU-8) was silently replaced by U+FFFD before.
    const bad = Buffer.concat([Buffer.from('{"name":"a'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]);
    const invalid = await w.req('POST', GROUPS, { token, payload: bad, headers: { 'content-type': 'application/json' } });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.json()).toMatchObject({ code: 'SERVER_BAD_ENCODING' });
    const utf8 = await w.req('POST', GROUPS, {
      token,
      payload: Buffer.from('{"name":"Grün"}', 'utf8'),
      headers: { 'content-type': 'application/json; charset=UTF-8' },
    });
    expect(utf8.statusCode).toBe(201);
    expect(utf8.json().name).toBe('Grün');
  });
});

describe('closing', () => {
  it('answers requests that arrive while the server closes with 503 SERVER_UNAVAILABLE', async () => {
    const app = await buildApp(testConfig(tempDir()), { clock: new TestClock(T0) });
    let seen: { status: number; body: unknown } | undefined;
    // Runs after the gate's own preClose hook, while the listener still accepts: the server is closing.
    app.addHook('preClose', async () => {
      const r = await request(`${url}/healthz`);
      seen = { status: r.statusCode, body: await r.body.json() };
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    await app.close();
    expect(seen).toMatchObject({ status: 503, body: { code: 'SERVER_UNAVAILABLE', retryable: true } });
  });
});

describe('text rules', () => {
  it('single-line names refuse control characters, bidi overrides/isolates and lone surrogates', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    const token = await w.login(t);
    for (const name of ['a\u0000b', 'a\nb', 'a\rb', 'a\tb', 'a\u0085b', 'evil\u202Etxt.exe', 'a\u2066b\u2069', 'a\u2028b']) {
      const r = await w.req('POST', GROUPS, { token, body: { name } });
      expect(r.statusCode, JSON.stringify(name)).toBe(400);
      expect(r.json().code).toBe('SERVER_VALIDATION');
      expect(r.json().message).toMatch(/^body\/name: contains/);
    }
    // A lone surrogate arrives as a JSON escape (the bytes are valid UTF-8).
    const lone = await w.req('POST', GROUPS, {
      token,
      payload: '{"name":"a\\ud800b"}',
      headers: { 'content-type': 'application/json' },
    });
    expect(lone.statusCode).toBe(400);
    expect(lone.json().message).toMatch(/lone surrogate/);
    // Query strings: percent-encoding must be UTF-8 (it used to be replaced silently) …
    for (const q of ['%ED%A0%80', '%FF', '%E0%A4%A']) {
      const r = await w.req('GET', `/api/inventory/managed-devices?text=${q}`, { token });
      expect(r.statusCode, q).toBe(400);
      expect(r.json().code).toBe('SERVER_BAD_ENCODING');
    }
    expect((await w.req('GET', `/api/inventory/managed-devices?text=${encodeURIComponent('Zürich')}`, { token })).statusCode).toBe(200);
    // … and the values follow the same text rules.
    const query = await w.req('GET', `/api/inventory/managed-devices?text=${encodeURIComponent('a\u202Eb')}`, { token });
    expect(query.statusCode).toBe(400);
    const ok = await w.req('POST', GROUPS, { token, body: { name: 'Zürich 東京 🚀 (north)' } });
    expect(ok.statusCode).toBe(201);
  });

  it('CSV device imports apply the single-line rule to every cell, in the per-row report', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    const token = await w.login(t);
    const csv = 'serialNumber,name\nS-1,"two\nlines"\nS-2,evil\u202Etxt\nS-3,fine name\n';
    const r = await w.req('POST', '/api/inventory/managed-devices/import', {
      token,
      payload: Buffer.from(csv, 'utf8'),
      headers: { 'content-type': 'text/csv; charset=utf-8' },
    });
    expect(r.statusCode).toBe(422);
    expect(r.json()).toMatchObject({
      code: 'SERVER_CSV_ROWS_INVALID',
      details: {
        failed: 2,
        errors: [
          { line: 2, code: 'SERVER_VALIDATION', message: expect.stringMatching(/^name: contains the control character U\+000A/) },
          { line: 4, code: 'SERVER_VALIDATION', message: expect.stringMatching(/^name: contains the bidi control U\+202E/) },
        ],
      },
    });
  });

  it('multi-line free text allows LF and TAB only; passwords take anything printable', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    const token = await w.login(t);
    const multi = await w.req('POST', GROUPS, { token, body: { name: 'g1', description: 'line 1\n\tline 2' } });
    expect(multi.statusCode).toBe(201);
    for (const description of ['a\r\nb', 'a\u0000', 'x\u202Dy']) {
      const r = await w.req('POST', GROUPS, { token, body: { name: 'g2', description } });
      expect(r.statusCode, JSON.stringify(description)).toBe(400);
    }
    expect(textViolation('pässwörd \u202E «»', 'password')).toBeUndefined();
    expect(textViolation('pass\nword', 'password')).toMatch(/U\+000A/);
    expect(textViolation('-----BEGIN X-----\r\nAAAA\r\n', 'document')).toBeUndefined();
    // A password with a bidi character is a password like any other.
    const login = await w.req('POST', '/api/auth/login', { body: { username: t.username, password: 'x\u202Ey' } });
    expect(login.statusCode).toBe(401);
  });
});

describe('login lockout', () => {
  const login = (w: AppWorld, username: string, password: string, ip: string) =>
    w.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username, password }, remoteAddress: ip });

  it('locks (user name, client address), so guessing from one address does not lock the admin out elsewhere', async () => {
    const w = await open({ loginMaxFailures: 3, loginLockoutSec: 600 });
    const t = await w.newTenant();
    for (let i = 0; i < 3; i++) expect((await login(w, t.username, 'wrong guess', '10.0.0.66')).statusCode).toBe(401);
    const locked = await login(w, t.username, t.password, '10.0.0.66');
    expect(locked.statusCode).toBe(429);
    expect(locked.json().code).toBe('SERVER_LOGIN_LOCKED');
    // The admin, from another address, still logs in.
    expect((await login(w, t.username, t.password, '10.0.0.1')).statusCode).toBe(200);
    w.advance(601 * 1000);
    expect((await login(w, t.username, t.password, '10.0.0.66')).statusCode).toBe(200);
  });

  it('answers unknown user names exactly like known ones (401, then 429 after the same count)', async () => {
    const w = await open({ loginMaxFailures: 3, loginLockoutSec: 600 });
    const t = await w.newTenant();
    const seen = async (username: string) => {
      const out: { status: number; body: unknown; retryAfter: unknown }[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await login(w, username, 'wrong guess', '10.0.0.7');
        out.push({ status: r.statusCode, body: r.json(), retryAfter: r.headers['retry-after'] });
      }
      return out;
    };
    const known = await seen(t.username);
    const unknown = await seen('nobody-by-this-name');
    expect(known.map((r) => r.status)).toEqual([401, 401, 401, 429, 429]);
    expect(unknown).toEqual(known);
  });
});

describe('audit of logins, logouts and credential exports', () => {
  it('records logins, logouts and connection-profile downloads; failed logins as one summary per period', async () => {
    const w = await open({ loginAuditSummarySec: 60 });
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    for (let i = 0; i < 7; i++) {
      await w.app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { username: t.username, password: `guess ${i}` },
        remoteAddress: '192.0.2.9',
      });
    }
    const token = await w.login(t);
    const device = await w.req('POST', '/api/inventory/managed-devices', { token, body: { serialNumber: 'EDGE-1' } });
    expect(device.statusCode).toBe(201);
    const profile = await w.req('GET', `/api/inventory/managed-devices/${device.json().uuid}/connection-profile?format=json`, { token });
    expect(profile.statusCode).toBe(200);
    expect((await w.req('POST', '/api/auth/logout', { token })).statusCode).toBe(204);
    w.advance(61_000); // the summary period ends (the test clock's change runs the flush)

    const rows = w.services.audit.repo(t.accountId).list({ beforeSeq: Number.MAX_SAFE_INTEGER, limit: 100 });
    const actions = rows.map((r) => `${r.action} ${r.status}`);
    expect(actions).toContain('POST /api/auth/login 200');
    expect(actions).toContain('POST /api/auth/logout 204');
    expect(actions).toContain('GET /api/inventory/managed-devices/{uuid}/connection-profile 200');
    const failed = rows.filter((r) => r.action === 'POST /api/auth/login' && r.status === 401);
    expect(failed).toHaveLength(1);
    // Five failures lock the pair (the default loginMaxFailures); the two tries after it were refused unchecked.
    expect(JSON.parse(failed[0]!.after!)).toMatchObject({
      failures: 5,
      lockouts: 1,
      usernames: [t.username],
      clients: ['192.0.2.9'],
    });
    // The exported credential itself is never in the log.
    const exported = rows.find((r) => r.action.endsWith('/connection-profile'))!;
    expect(JSON.stringify(exported)).not.toContain(profile.json().credential ?? '\u0000');
  });
});

describe('storage guard', () => {
  it('keeps one reserve file, releases it, writes it again when there is room; a second guard leaves it alone', async () => {
    const dir = tempDir();
    const a = new StorageGuard(dir, 64 * 1024, 0);
    const b = new StorageGuard(dir, 64 * 1024, 0);
    a.replenish();
    expect(statSync(join(dir, 'storage-reserve')).size).toBe(64 * 1024);
    b.replenish(); // exists already: left alone
    expect(b.hasReserve).toBe(true);
    a.noteFull();
    expect(a.status()).toMatchObject({ status: 'degraded', full: true, reserve: true });
    expect(a.release()).toBe(true);
    expect(b.hasReserve).toBe(false);
    expect(a.release()).toBe(false);
    a.replenish();
    expect(a.status()).toMatchObject({ status: 'ok', full: false, reserve: true });
    expect(isStorageFull(new StoreFullError())).toBe(true);
    expect(isStorageFull(new Error('wrapped', { cause: new StoreFullError() }))).toBe(true);
    expect(isStorageFull(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'ENOSPC' }) }))).toBe(true);
    expect(isStorageFull(new StoreBusyError())).toBe(false);
    // A driver's own code is the store's to translate: outside store/ it means nothing.
    expect(isStorageFull(Object.assign(new Error('disk'), { code: 'SQLITE_FULL' }))).toBe(false);
  });
});
