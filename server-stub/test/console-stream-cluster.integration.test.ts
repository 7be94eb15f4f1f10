import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { ensureServerBuilt, SERVER_CLI_DIST } from './helpers/built.js';
import { seedSigningPki } from './helpers/channel-world.js';
import { FakeDevice } from './helpers/fake-device.js';
import { openSse, type SseClient } from './helpers/sse.js';
import { removeTempDirs, tempDir, world } from './helpers/setup.js';

const children: ChildProcess[] = [];
const clients: SseClient[] = [];
const devices: FakeDevice[] = [];
beforeAll(() => ensureServerBuilt(), 180_000);
afterAll(() => {
  for (const c of clients) c.close();
  for (const d of devices) d.terminate();
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  removeTempDirs();
});

describe('console stream under serve --workers 2 (real CLI, node:cluster)', () => {
  it('every stream shows the devices of every worker: the counts come from the shared store', async () => {
    const dataDir = tempDir();
    await seedSigningPki(dataDir);
    const w = world({}, dataDir);
    w.clock.set(Date.now());
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    const ids = w.devices(t, 4);
    w.close();

    const child = spawn(
      process.execPath,
      [SERVER_CLI_DIST, 'serve', '--data', dataDir, '--workers', '2', '--port', '0', '--host', '127.0.0.1', '--presenceFlushMs', '100', '--scryptCost', '1024'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(child);
    const lines: Array<Record<string, unknown>> = [];
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    });
    const listening = () => lines.filter((l) => l['msg'] === 'fleet-server listening');
    await waitFor(() => new Set(listening().map((l) => l['pid'])).size === 2, { timeout: 60_000, what: 'both workers listening' });
    const url = listening()[0]!['url'] as string;

    const login = await fetch(`${url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: t.username, password: t.password }),
    });
    const { token } = (await login.json()) as { token: string };
    // Connections go round-robin to the workers: four streams and four devices land on both.
    for (let i = 0; i < 4; i++) clients.push(await openSse(url, '/api/console/stream', { authorization: `Bearer ${token}` }));
    for (const c of clients) await c.next('counts', (x) => x.total === 4 && x.online === 0, { timeout: 30_000 });
    for (const id of ids) {
      const d = await FakeDevice.open(`${url.replace('http', 'ws')}/api/channel`, id);
      devices.push(d);
      expect((await d.admit()).body.admission).toBe('managed');
    }
    for (const c of clients) await c.next('counts', (x) => x.online === 4, { timeout: 30_000 });
    const workers = new Set(devices.map((d) => d.headers['x-fleet-worker']));
    expect(workers.size, 'devices on both workers').toBe(2);
  }, 120_000);
});
