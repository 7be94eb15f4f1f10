import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createCa, issueCertificate } from '@router-fleet/protocol';
import { Agent, request } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { CODE_PATTERN } from '../src/licensing/codes.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { freshPostgresStore, psqlTest } from './helpers/postgres.js';
import { removeTempDirs, TS_REGISTER, tempDir, testConfig } from './helpers/setup.js';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const run = promisify(execFile);
const cli = (...args: string[]) => run(process.execPath, ['--import', TS_REGISTER, CLI, ...args], { timeout: 20_000 });

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  removeTempDirs();
});

beforeAll(async () => {
  // Loads (and caches the transpiled) modules once, so the tests below measure the CLI, not that.
  await cli('--help').catch(() => undefined);
});

/** A self-signed 2048-bit certificate (OpenSSL 3 on Node 24 refuses keys below 2048 bits). */
async function selfSigned(): Promise<{ cert: string; key: string }> {
  const { certPem, keyPem } = await issueCertificate({ commonName: 'localhost', subjectAltNames: { ip: ['127.0.0.1'] } });
  return { cert: certPem, key: keyPem };
}

describe('fleet-server CLI', () => {
  it('issues codes into the data directory (plain and CSV) and creates accounts that can use them', async () => {
    const data = tempDir();
    const plain = await cli('licences', 'issue', '--data', data, '--plan', 'basic-1', '--count', '3');
    const codes = plain.stdout.trim().split('\n');
    expect(codes).toHaveLength(3);
    for (const c of codes) expect(c).toMatch(CODE_PATTERN);
    const csv = await cli('licences', 'issue', '--data', data, '--plan', 'basic-1', '--count', '2', '--csv');
    expect(csv.stdout.split('\n')[0]).toBe('code,plan,issuedAt');
    const created = JSON.parse(
      (await cli('account', 'create', '--data', data, '--name', 'ACME', '--user', 'admin', '--password', 'a long secret'))
        .stdout,
    );
    expect(created.account).toMatch(/^[0-9a-f-]{36}$/);
    const bad = await cli('licences', 'issue', '--data', data, '--plan', 'gold').catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).not.toBe(0);

    const app = await buildApp(testConfig(data));
    try {
      const login = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'admin', password: 'a long secret' } });
      const token = login.json().token;
      const auth = { authorization: `Bearer ${token}` };
      const redeem = await app.inject({ method: 'POST', url: '/api/licences/redeem', headers: auth, payload: { code: codes[0] } });
      expect(redeem.statusCode).toBe(201);
      const imp = await app.inject({
        method: 'POST',
        url: '/api/licences/import',
        headers: { ...auth, 'content-type': 'text/csv' },
        payload: csv.stdout,
      });
      expect(imp.json()).toMatchObject({ rows: 2, imported: 2 });
    } finally {
      await app.close();
    }
  });

  it('serve --store postgres://… keeps the store in that database; one it cannot reach is a start-up error', async () => {
    const url = freshPostgresStore();
    const schema = decodeURIComponent(new URL(url).searchParams.get('options')!).split('=')[1]!;
    const child = spawn(process.execPath, ['--import', TS_REGISTER, CLI, 'serve', '--data', tempDir(), '--port', '0', '--store', url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const base = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const entry = JSON.parse(line);
          if (entry.msg === 'fleet-server listening') resolve(entry.url);
        } catch {
          // not a log line
        }
      });
      void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
    });
    const res = await request(`${base}/healthz`);
    expect(res.statusCode).toBe(200);
    await res.body.json();
    // The server created its schema in that database (and nothing in the data directory's SQLite file).
    expect(psqlTest('SELECT MAX(version) FROM schema_migrations', schema).trim()).toMatch(/^\d+$/);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);

    const refused = await cli('serve', '--data', tempDir(), '--port', '0', '--store', 'postgres://postgres:secret@127.0.0.1:1/none').then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(refused?.code).toBe(1);
    expect(refused?.stderr).toMatch(/SERVER_STORE_UNREACHABLE/);
    expect(refused?.stderr).not.toContain('secret');
  });

  it('serves HTTPS with the given certificate, answers /healthz and shuts down gracefully on SIGTERM', async () => {
    const data = tempDir();
    const { cert, key } = await selfSigned();
    writeFileSync(join(data, 'cert.pem'), cert);
    writeFileSync(join(data, 'key.pem'), key);
    const child = spawn(
      process.execPath,
      [
        '--import',
        TS_REGISTER,
        CLI,
        'serve',
        '--data',
        data,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
        '--tls-cert',
        join(data, 'cert.pem'),
        '--tls-key',
        join(data, 'key.pem'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const entry = JSON.parse(line);
          if (entry.msg === 'fleet-server listening') resolve(entry.url);
        } catch {
          // not a log line
        }
      });
      void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
    });
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const dispatcher = new Agent({ connect: { ca: cert } });
    const res = await request(`${url}/healthz`, { dispatcher });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toMatchObject({ status: 'ok' });
    await dispatcher.close();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('signing list | rotate | retire and firmware add-anchor change what a running server sends routers', async () => {
    const data = tempDir();
    type Listed = { anchors: { scope: string; fingerprint: string; current: boolean }[] };
    const list = async () => (JSON.parse((await cli('signing', 'list', '--data', data)).stdout) as Listed).anchors;
    const first = await list();
    expect(first.map((a) => [a.scope, a.current])).toEqual([['server', true]]);
    const app = await buildApp(testConfig(data, { trustAnchorReloadSec: 1 }));
    await app.ready();
    try {
      const digest = app.services.trust.forAccount(0).digest;
      const rotated = (JSON.parse((await cli('signing', 'rotate', '--data', data)).stdout) as Listed).anchors;
      expect(rotated.map((a) => [a.fingerprint === first[0]!.fingerprint, a.current])).toEqual([[true, false], [false, true]]);
      // The running server re-reads the roots and would send routers the overlapping set.
      await waitFor(() => app.services.trust.forAccount(0).anchors.length === 2, { timeout: 30_000, what: 'the rotated set' });
      expect(app.services.trust.forAccount(0).digest).not.toBe(digest);
      const inUse = await cli('signing', 'retire', rotated[1]!.fingerprint, '--data', data).catch((e: { code: number; stderr: string }) => e);
      expect((inUse as { stderr: string }).stderr).toContain('SERVER_ANCHOR_IN_USE');
      await cli('signing', 'retire', first[0]!.fingerprint, '--data', data);
      expect((await list()).map((a) => a.fingerprint)).toEqual([rotated[1]!.fingerprint]);
      const vendor = await createCa({ commonName: 'CLI Vendor Root' });
      const pem = join(data, 'vendor.pem');
      writeFileSync(pem, vendor.certPem);
      expect(JSON.parse((await cli('firmware', 'add-anchor', pem, '--data', data)).stdout)).toMatchObject({ added: 1 });
      await waitFor(() => JSON.stringify(app.services.trust.forAccount(0).anchors.map((a) => a.scope)) === '["server","vendor"]', {
        timeout: 30_000,
        what: 'the vendor root and no retired root',
      });
    } finally {
      await app.close();
    }
  }, 120_000);
});
