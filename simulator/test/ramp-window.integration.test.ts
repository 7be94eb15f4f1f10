import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONNECTION_PROFILE_FORMAT, WS_SUBPROTOCOL } from '@router-fleet/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { loadBehaviour } from '../src/behaviour.js';
import { startFleet } from '../src/fleet.js';
import type { SimTransport } from '../src/transport.js';
import { FleetWorker } from '../src/worker.js';
import { PROFILES_FILE } from '../src/provision.js';

// A server that accepts the channel and never answers a hello: every router's first connect stays
// in flight (hello sent, no welcome) for the agent's hello timeout (30 s), far beyond the test.
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function silentServer(): Promise<{ port: number; hellos: () => number }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => WS_SUBPROTOCOL });
  await new Promise((r) => wss.once('listening', r));
  let hellos = 0;
  wss.on('connection', (ws) => ws.once('message', () => hellos++));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  );
  return { port: (wss.address() as { port: number }).port, hellos: () => hellos };
}

function profiles(port: number, n: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'ramp-window-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const lines = Array.from({ length: n }, (_, i) => {
    const profile = {
      format: CONNECTION_PROFILE_FORMAT,
      serverUrl: `ws://127.0.0.1:${port}/api/channel`,
      caCertPem: '',
      trustAnchorsPem: [],
      deviceId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      serialNumber: `WIN${String(i).padStart(5, '0')}`,
      credential: 'x'.repeat(32),
    };
    return JSON.stringify({ profile, sim: { model: 'M3', firmware: '1.0.0' } });
  });
  writeFileSync(join(dir, PROFILES_FILE), `${lines.join('\n')}\n`);
  return dir;
}

describe('ramp window (first connects in flight per process)', () => {
  it('starts no more routers than the window while none is answered; 0 is open loop', async () => {
    const server = await silentServer();
    const dir = profiles(server.port, 40);
    const windowed = await startFleet({ profiles: dir, rate: 1000, window: 5, processes: 0, seed: 1 });
    cleanups.push(async () => void (await windowed.stop()));
    await expect.poll(() => server.hellos(), { timeout: 10_000 }).toBe(5);
    await new Promise((r) => setTimeout(r, 500)); // the ramp asked for all 40 within 40 ms
    expect(server.hellos()).toBe(5);
    expect(windowed.stats().started).toBe(5);
    await windowed.stop();

    const before = server.hellos();
    const open = await startFleet({ profiles: dir, rate: 1000, window: 0, processes: 0, seed: 1 });
    cleanups.push(async () => void (await open.stop()));
    await expect.poll(() => server.hellos() - before, { timeout: 10_000 }).toBe(40);
  });

  it('refuses a window that is not an integer ≥ 0', async () => {
    const server = await silentServer();
    const dir = profiles(server.port, 1);
    await expect(startFleet({ profiles: dir, window: -1, processes: 0 })).rejects.toThrow(RangeError);
  });

  it('bounds a stop: routers that have not stopped within the grace period are cut and left behind', async () => {
    // A transport whose dial never settles and ignores the abort: an agent's stop waits forever.
    let cuts = 0;
    let dials = 0;
    const hanging: SimTransport = {
      dial: () => {
        dials++;
        return new Promise(() => {});
      },
      downloadDispatcher: () => {
        throw new Error('no downloads here');
      },
      open: () => 0,
      cut: () => {
        cuts++;
        return 0;
      },
    };
    const dir = profiles(1, 3);
    const worker = new FleetWorker(
      {
        profilesFile: join(dir, PROFILES_FILE),
        devices: 3,
        rate: 1000,
        window: 0,
        behaviour: loadBehaviour('ideal'),
        seed: 1,
        localAddresses: [],
        agent: { allowInsecureTransport: true },
        statsIntervalMs: 60_000,
        process: 0,
        processes: 1,
      },
      () => {},
      hanging,
    );
    await worker.load();
    worker.start(Date.now());
    await expect.poll(() => dials, { timeout: 5000 }).toBe(3);
    const t = Date.now();
    const stats = await worker.stop(200);
    expect(cuts).toBe(1);
    expect(Date.now() - t).toBeGreaterThanOrEqual(200);
    expect(Date.now() - t).toBeLessThan(200 + 5000 + 1000);
    expect(stats.started).toBe(3);
  }, 15_000);
});
