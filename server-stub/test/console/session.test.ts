import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { TestClock } from '../../src/clock.js';
import { CONSOLE_CSP } from '../../src/console/plugin.js';
import { csrfToken, sessionSetCookie } from '../../src/console/session.js';
import { removeTempDirs, T0, type Tenant, tempDir, testConfig, worldOf } from '../helpers/setup.js';

const TTL_SEC = 600;

let app: FastifyInstance;
let clock: TestClock;
let tenant: Tenant;

beforeAll(async () => {
  // A stand-in for the built console: the plugin serves whatever the build wrote.
  const consoleDir = tempDir();
  mkdirSync(join(consoleDir, 'assets'));
  writeFileSync(join(consoleDir, 'index.html'), '<!doctype html><title>console</title><script type="module" src="/app-ABCD1234.js"></script>');
  writeFileSync(join(consoleDir, 'app-ABCD1234.js'), 'console.log(1);');
  writeFileSync(join(consoleDir, 'assets', 'logo-WXYZ9876.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  const dataDir = tempDir();
  clock = new TestClock(T0);
  app = await buildApp(testConfig(dataDir, { sessionTtlSec: TTL_SEC }), { clock, consoleDir });
  await app.ready();
  tenant = await worldOf(app.services, clock, dataDir).newTenant('Console');
});

afterAll(async () => {
  await app.close();
  removeTempDirs();
});

function setCookie(res: LightMyRequestResponse): string {
  const value = res.headers['set-cookie'];
  return Array.isArray(value) ? value.join('\n') : (value ?? '');
}

async function consoleLogin(): Promise<{ cookie: string; csrf: string; res: LightMyRequestResponse }> {
  const res = await app.inject({ method: 'POST', url: '/api/console/session', payload: { username: tenant.username, password: tenant.password } });
  expect(res.statusCode).toBe(201);
  const token = /rf_session=([^;]+)/.exec(setCookie(res))?.[1];
  expect(token).toMatch(/^rfs_/);
  return { cookie: `rf_session=${token}`, csrf: res.json().csrfToken, res };
}

describe('console session (cookie login)', () => {
  it('login sets an HttpOnly, SameSite=Strict session cookie whose Max-Age is the session lifetime', async () => {
    const { res, csrf, cookie } = await consoleLogin();
    const header = setCookie(res);
    expect(header).toMatch(/HttpOnly/i);
    expect(header).toMatch(/SameSite=Strict/i);
    expect(header).toMatch(/Path=\//);
    expect(header).toMatch(new RegExp(`Max-Age=${TTL_SEC}`));
    expect(header).not.toMatch(/Secure/i); // plain HTTP: a Secure cookie would never come back
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json();
    expect(body.user.username).toBe(tenant.username);
    expect(body.expiresInSec).toBe(TTL_SEC);
    expect(csrf).toBe(csrfToken(cookie.slice('rf_session='.length)));
    expect(body).not.toHaveProperty('token');
  });

  it('the cookie gets Secure when the server speaks TLS', () => {
    expect(sessionSetCookie('rfs_x', { maxAgeSec: 60, secure: true })).toMatch(/; Secure/);
  });

  it('a wrong password sets no cookie', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/console/session', payload: { username: tenant.username, password: 'not the password' } });
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('SERVER_UNAUTHORIZED');
    expect(res.headers['set-cookie']).toBeUndefined();
  });

  it('who am I: the session of the cookie, or 401 without one', async () => {
    const { cookie, csrf } = await consoleLogin();
    const me = await app.inject({ method: 'GET', url: '/api/console/session', headers: { cookie } });
    expect(me.statusCode).toBe(200);
    expect(me.json()).toMatchObject({ user: { username: tenant.username }, csrfToken: csrf });
    expect((await app.inject({ method: 'GET', url: '/api/console/session' })).statusCode).toBe(401);
    const bogus = await app.inject({ method: 'GET', url: '/api/console/session', headers: { cookie: 'rf_session=rfs_AAAAAAAAAAAAAAAAAAAA' } });
    expect(bogus.statusCode).toBe(401);
    // A bearer login session answers too (the API's own clients).
    const bearer = (await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: tenant.username, password: tenant.password } })).json().token;
    const viaBearer = await app.inject({ method: 'GET', url: '/api/console/session', headers: { authorization: `Bearer ${bearer}` } });
    expect(viaBearer.json().user.username).toBe(tenant.username);
  });

  it('the REST API accepts the cookie; changes need the CSRF token in x-csrf-token', async () => {
    const { cookie, csrf } = await consoleLogin();
    expect((await app.inject({ method: 'GET', url: '/api/me', headers: { cookie } })).statusCode).toBe(200);

    const without = await app.inject({ method: 'PATCH', url: '/api/me', headers: { cookie }, payload: { language: 'de' } });
    expect(without.statusCode).toBe(403);
    expect(without.json().code).toBe('SERVER_CSRF_TOKEN_INVALID');
    const wrong = await app.inject({ method: 'PATCH', url: '/api/me', headers: { cookie, 'x-csrf-token': csrf.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) }, payload: { language: 'de' } });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json().code).toBe('SERVER_CSRF_TOKEN_INVALID');
    // Nothing changed by the refused calls.
    expect((await app.inject({ method: 'GET', url: '/api/me', headers: { cookie } })).json().language).toBe('en');

    const ok = await app.inject({ method: 'PATCH', url: '/api/me', headers: { cookie, 'x-csrf-token': csrf }, payload: { language: 'de' } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().language).toBe('de');
    // The CSRF token of another session does not fit this one.
    const other = await consoleLogin();
    const crossed = await app.inject({ method: 'PATCH', url: '/api/me', headers: { cookie, 'x-csrf-token': other.csrf }, payload: { language: 'en' } });
    expect(crossed.statusCode).toBe(403);
    // A bearer token needs no CSRF token (no browser sends it on its own).
    const bearer = (await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: tenant.username, password: tenant.password } })).json().token;
    const viaBearer = await app.inject({ method: 'PATCH', url: '/api/me', headers: { authorization: `Bearer ${bearer}` }, payload: { language: 'en' } });
    expect(viaBearer.statusCode).toBe(200);
  });

  it('an expired session is refused, by the session check and by the REST API', async () => {
    const { cookie } = await consoleLogin();
    clock.advance((TTL_SEC - 1) * 1000);
    expect((await app.inject({ method: 'GET', url: '/api/me', headers: { cookie } })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/api/console/session', headers: { cookie } })).json().expiresInSec).toBe(1);
    clock.advance(2000);
    const me = await app.inject({ method: 'GET', url: '/api/me', headers: { cookie } });
    expect(me.statusCode).toBe(401);
    expect(me.json().code).toBe('SERVER_UNAUTHORIZED');
    expect((await app.inject({ method: 'GET', url: '/api/console/session', headers: { cookie } })).statusCode).toBe(401);
  });

  it('logout needs the CSRF token, ends the session and removes the cookie', async () => {
    const { cookie, csrf } = await consoleLogin();
    const refused = await app.inject({ method: 'DELETE', url: '/api/console/session', headers: { cookie } });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().code).toBe('SERVER_CSRF_TOKEN_INVALID');
    expect((await app.inject({ method: 'GET', url: '/api/me', headers: { cookie } })).statusCode).toBe(200);

    const out = await app.inject({ method: 'DELETE', url: '/api/console/session', headers: { cookie, 'x-csrf-token': csrf } });
    expect(out.statusCode).toBe(204);
    expect(setCookie(out)).toMatch(/rf_session=;.*Max-Age=0/);
    expect((await app.inject({ method: 'GET', url: '/api/me', headers: { cookie } })).statusCode).toBe(401);
    // Logging out again (an ended session) only removes the cookie.
    expect((await app.inject({ method: 'DELETE', url: '/api/console/session', headers: { cookie } })).statusCode).toBe(204);
  });
});

describe('console files', () => {
  it('serves index.html at / with a strict Content-Security-Policy', async () => {
    const res = await app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    const csp = String(res.headers['content-security-policy']);
    expect(csp).toBe(CONSOLE_CSP);
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).toMatch(/style-src 'self'(;|$)/);
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(csp).toMatch(/frame-ancestors 'none'/);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['cache-control']).toBe('no-cache');
  });

  it('client-side routes get index.html; hashed files are cached for good; revalidation answers 304', async () => {
    const route = await app.inject({ method: 'GET', url: '/devices/0b6c7a3e-0000-4000-8000-000000000000?tab=events' });
    expect(route.statusCode).toBe(200);
    expect(route.body).toContain('<title>console</title>');
    const js = await app.inject({ method: 'GET', url: '/app-ABCD1234.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    expect(js.headers['cache-control']).toContain('immutable');
    expect((await app.inject({ method: 'GET', url: '/assets/logo-WXYZ9876.svg' })).headers['content-type']).toBe('image/svg+xml');
    const etag = String((await app.inject({ method: 'GET', url: '/' })).headers.etag);
    expect((await app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': etag } })).statusCode).toBe(304);
    expect((await app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': '"other"' } })).statusCode).toBe(200);
  });

  it('unknown API paths and file names stay 404s of the API', async () => {
    for (const url of ['/api/no-such-thing', '/api', '/app-00000000.js', '/assets/missing.png']) {
      const res = await app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(404);
      expect(res.json().code, url).toBe('SERVER_NOT_FOUND');
    }
    // A path of the API with another method keeps its 405.
    expect((await app.inject({ method: 'GET', url: '/api/auth/login' })).statusCode).toBe(405);
  });
});
