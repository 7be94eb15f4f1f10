import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { addMonthsUtc, DAY } from '../src/clock.js';
import { type AppWorld, appWorld } from './helpers/http.js';
import { removeTempDirs, T0, tempDir, TS_REGISTER } from './helpers/setup.js';

const worlds: AppWorld[] = [];
async function open(): Promise<AppWorld> {
  const w = await appWorld();
  worlds.push(w);
  return w;
}
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.app.close();
  removeTempDirs();
});

describe('bulk activation over HTTP (POST /api/licences/activate)', () => {
  it('activates every Available licence in one call when none are named', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    const redeemed = w.redeem(t, 'basic-25', 60);
    const res = await w.req('POST', '/api/licences/activate', { token, body: {} });
    expect(res.statusCode).toBe(200);
    const items = res.json().items as { uuid: string; status: string; expiresAt: string }[];
    expect(items.map((l) => l.uuid).sort()).toEqual(redeemed.map((l) => l.uuid).sort());
    for (const l of items) expect(l).toMatchObject({ status: 'active', expiresAt: new Date(addMonthsUtc(T0, 12)).toISOString() });
    expect((await w.req('GET', '/api/account/plan', { token })).json()).toMatchObject({ plan: 'basic', seats: 25 * 60 });
    // Nothing left to activate: an empty answer, not an error.
    expect((await w.req('POST', '/api/licences/activate', { token, body: {} })).json()).toEqual({ items: [] });
  });

  it('activates the named licences at a chosen date and leaves the others Available', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    const [a, b, c] = w.redeem(t, 'basic-1', 3);
    const at = new Date(T0 + 5 * DAY).toISOString();
    const res = await w.req('POST', '/api/licences/activate', { token, body: { licences: [a!.uuid, b!.uuid], at } });
    expect(res.json().items.map((l: { status: string; activationAt: string }) => [l.status, l.activationAt])).toEqual([
      ['scheduled', at],
      ['scheduled', at],
    ]);
    expect((await w.req('GET', `/api/licences/${c!.uuid}`, { token })).json().status).toBe('available');
  });

  it('activates all or none: one refused licence (another account\'s, or already active) rolls the call back', async () => {
    const w = await open();
    const t = await w.newTenant();
    const other = await w.newTenant();
    const token = await w.login(t);
    const [a, b] = w.redeem(t, 'basic-1', 2);
    const [foreign] = w.redeem(other, 'basic-1', 1);
    w.services.licensing.activate(t.scope, b!.uuid, undefined);
    const res = await w.req('POST', '/api/licences/activate', { token, body: { licences: [a!.uuid, b!.uuid, foreign!.uuid] } });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({
      code: 'SERVER_LICENCE_BULK_ACTIVATION',
      details: {
        errors: [
          { licence: b!.uuid, code: 'SERVER_LICENCE_ALREADY_ACTIVATED' },
          { licence: foreign!.uuid, code: 'SERVER_NOT_FOUND' },
        ],
      },
    });
    expect((await w.req('GET', `/api/licences/${a!.uuid}`, { token })).json().status).toBe('available');
    expect(w.services.licensing.view(other.scope, foreign!.uuid)!.status).toBe('available');
    const bad = await w.req('POST', '/api/licences/activate', { token, body: { licences: ['not-a-uuid'] } });
    expect(bad.json().code).toBe('SERVER_VALIDATION');
  });
});

describe('CSV import over HTTP (POST /api/licences/import)', () => {
  it('reports every line: the codes redeemed, a code written twice, a line that cannot be read', async () => {
    const w = await open();
    const t = await w.newTenant();
    const token = await w.login(t);
    const [good, other] = w.services.licensing.issue('basic-25', 2);
    // The vendor's file as `licences issue --csv` writes it; the second code in lower case.
    const file = ['code,plan,issuedAt', `${good},basic-25,2026-01-01T00:00:00.000Z`, `${good!.toLowerCase()},basic-25,2026-01-01T00:00:00.000Z`, 'ZZZZ', ''].join('\r\n');
    const post = (body: string, partial: boolean) =>
      w.req('POST', `/api/licences/import${partial ? '?partial=true' : ''}`, { token, payload: body, headers: { 'content-type': 'text/csv' } });

    const refused = await post(file, false);
    expect(refused.statusCode).toBe(422);
    expect(refused.json()).toMatchObject({
      code: 'SERVER_CSV_ROWS_INVALID',
      details: {
        rows: 3,
        imported: 0,
        failed: 2,
        accepted: [],
        errors: [
          { line: 3, code: 'SERVER_LICENCE_CODE_DUPLICATE' },
          { line: 4, code: 'SERVER_CSV_INVALID' },
        ],
      },
    });
    expect(w.services.licensing.list(t.scope)).toEqual([]);

    const partial = await post(file, true);
    expect(partial.statusCode).toBe(200);
    const report = partial.json();
    expect(report).toMatchObject({ rows: 3, imported: 1, failed: 2, partial: true, accepted: [{ line: 2, code: good }] });
    expect(report.errors.map((e: { line: number; code: string }) => [e.line, e.code])).toEqual([
      [3, 'SERVER_LICENCE_CODE_DUPLICATE'],
      [4, 'SERVER_CSV_INVALID'],
    ]);
    expect(w.services.licensing.list(t.scope).map((l) => [l.uuid, l.code])).toEqual([[report.accepted[0].uuid, good]]);

    // The same file again: the code is now redeemed (by this account), the other one is new.
    const again = await post(`code\r\n${good}\r\n${other}\r\n`, true);
    expect(again.json()).toMatchObject({ imported: 1, accepted: [{ line: 3, code: other }], errors: [{ line: 2, code: 'SERVER_LICENCE_CODE_REDEEMED' }] });
  });
});

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const run = promisify(execFile);
const cli = (...args: string[]) => run(process.execPath, ['--import', TS_REGISTER, CLI, ...args], { timeout: 60_000 });

describe('fleet-server licences activate', () => {
  it('redeems and activates the codes that `licences issue` printed, in one command', async () => {
    const data = tempDir();
    await cli('account', 'create', '--data', data, '--name', 'ACME', '--user', 'admin', '--password', 'a long secret');
    const codes = (await cli('licences', 'issue', '--data', data, '--plan', 'basic-25', '--count', '3')).stdout;
    const file = join(data, 'codes.txt');
    writeFileSync(file, codes);
    const out = JSON.parse((await cli('licences', 'activate', '--data', data, '--user', 'admin', '--codes-file', file)).stdout);
    expect(out.activated).toBe(3);
    expect(out.licences.map((l: { code: string }) => l.code).sort()).toEqual(codes.trim().split('\n').sort());
    for (const l of out.licences) expect(l).toMatchObject({ kind: 'basic-25', status: 'active' });
    // Again: the codes are now redeemed, which is refused with the code's own error.
    const again = await cli('licences', 'activate', '--data', data, '--user', 'admin', '--codes-file', file).catch((e: { code: number; stderr: string }) => e);
    expect((again as { code: number }).code).toBe(1);
    expect((again as { stderr: string }).stderr).toContain('SERVER_LICENCE_CODE_REDEEMED');
    const nobody = await cli('licences', 'activate', '--data', data, '--user', 'nobody').catch((e: { code: number; stderr: string }) => e);
    expect((nobody as { stderr: string }).stderr).toContain('SERVER_NOT_FOUND');
  }, 120_000);
});
