import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONNECTION_PROFILE_FORMAT, createMessage, decode, encode, ProtocolError, WS_SUBPROTOCOL } from '@router-fleet/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { loadBehaviour } from '../src/behaviour.js';
import { startFleet } from '../src/fleet.js';
import { createSimTransport, type SimTransport } from '../src/transport.js';
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

/** A server that admits every hello at once (managed). */
async function welcomingServer(): Promise<{ port: number }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => WS_SUBPROTOCOL });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const m = decode(data.toString());
      if (m instanceof ProtocolError || m.type !== 'hello') return;
      const welcome = createMessage(
        'welcome',
        {
          admission: 'managed',
          deviceId: m.body.deviceId,
          session: { pingIntervalSec: 60, pongTimeoutSec: 30, sessionTimeoutSec: 30 },
          analyticsConsent: false,
          serverTime: Date.now(),
        },
        { correlationId: m.id },
      );
      ws.send(encode(welcome));
    });
  });
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  );
  return { port: (wss.address() as { port: number }).port };
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
    // The ramp has reached every router of its schedule (all 40 due within 40 ms) and still
    // started only the window's 5: no one answered, so no slot came free.
    await expect.poll(() => windowed.stats().due, { timeout: 10_000 }).toBe(40);
    expect(server.hellos()).toBe(5);
    expect(windowed.stats().started).toBe(5);
    await windowed.stop();

    const before = server.hellos();
    const open = await startFleet({ profiles: dir, rate: 1000, window: 0, processes: 0, seed: 1 });
    cleanups.push(async () => void (await open.stop()));
    await expect.poll(() => server.hellos() - before, { timeout: 10_000 }).toBe(40);
  });

  it('bounds every dial by the window: a reconnect storm after a cut queues in the process, not in the handshakes', async () => {
    const server = await welcomingServer();
    const dir = profiles(server.port, 12);
    // The simulator's real transport, each dial held 30 ms longer, counting dials in flight.
    const real = createSimTransport();
    let inFlight = 0;
    let most = 0;
    let dials = 0;
    const counted: SimTransport = {
      ...real,
      dial: async (options) => {
        dials++;
        most = Math.max(most, ++inFlight);
        try {
          await new Promise((r) => setTimeout(r, 30)); // the slower dial itself (pacing)
          return await real.dial(options);
        } finally {
          inFlight--;
        }
      },
    };
    const worker = new FleetWorker(
      {
        profilesFile: join(dir, PROFILES_FILE),
        devices: 12,
        rate: 1000,
        window: 3,
        behaviour: loadBehaviour('ideal'),
        seed: 1,
        localAddresses: [],
        // Redial at once after the cut: every router's backoff ceiling is 1 ms.
        agent: { allowInsecureTransport: true, backoffBaseMs: 1, backoffMaxMs: 1 },
        statsIntervalMs: 60_000,
        process: 0,
        processes: 1,
      },
      () => {},
      counted,
    );
    cleanups.push(async () => void (await worker.stop(500)));
    await worker.load();
    worker.start(Date.now());
    await expect.poll(() => worker.stats().states['managed'] ?? 0, { timeout: 10_000 }).toBe(12);
    expect(most).toBeLessThanOrEqual(3);

    most = 0;
    const before = dials;
    expect(worker.cut(1, 1)).toBe(12);
    await expect.poll(() => dials - before, { timeout: 10_000 }).toBe(12);
    await expect.poll(() => worker.stats().states['managed'] ?? 0, { timeout: 10_000 }).toBe(12);
    // All 12 wanted to redial at once; the window let 3 handshake at a time, the rest waited.
    expect(most).toBe(3);
    expect(worker.stats().counters.dialsQueued).toBeGreaterThan(0);
  }, 20_000);

  it('refuses a window that is not an integer ≥ 0', async () => {
    const server = await silentServer();
    const dir = profiles(server.port, 1);
    await expect(startFleet({ profiles: dir, window: -1, processes: 0 })).rejects.toMatchObject({ code: 'SIM_FLEET_INVALID' });
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
