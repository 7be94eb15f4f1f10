import { CloseCodes, createMessage, encode, WS_SUBPROTOCOL } from '@router-fleet/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAgent } from '../src/agent.js';
import { resolveConfig } from '../src/config.js';
import { Backoff } from '../src/connection/backoff.js';
import { Keepalive } from '../src/connection/keepalive.js';
import { MemoryNetwork, type MemoryServerConnection } from '../src/connection/memory-transport.js';
import type { ChannelConnection, Transport } from '../src/connection/transport.js';
import { createWsTransport } from '../src/connection/ws-transport.js';
import { createLogger } from '../src/logger.js';
import { createManualClock, seededRandom } from '../src/platform/clock.js';
import { createMemoryPlatform } from '../src/platform/memory.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { FakeServer } from './helpers/fake-server.js';
import { TEST_CONFIG, TestDevice, tempDir } from './helpers/device.js';
import { testProfile } from './helpers/packets.js';
import { type TestCerts, testCerts } from './helpers/pki.js';

let certs: TestCerts;
let server: FakeServer;
const devices: TestDevice[] = [];

beforeAll(async () => {
  certs = await testCerts();
  server = await new FakeServer({ certPem: certs.tlsServer.certPem, keyPem: certs.tlsServer.keyPem }).start();
});
afterAll(async () => {
  await server.close();
});
afterEach(async () => {
  for (const d of devices.splice(0)) await d.dispose();
  server.options.admission = undefined;
  server.options.analyticsConsent = false;
});

async function device(deviceId: string, config = {}, caPem?: string, faults = {}): Promise<TestDevice> {
  const profile = testProfile({
    serverUrl: server.url,
    caCertPem: caPem ?? certs.tlsCa.certPem,
    trustAnchorsPem: [certs.pki.root.certPem],
    deviceId,
    serialNumber: `SN-${deviceId}`,
  });
  const d = new TestDevice('emulated', await tempDir(), profile, config, faults);
  devices.push(d);
  await d.start();
  return d;
}

describe('control channel over TLS (ws)', () => {
  it('logs connected, managed and lost at info level (the default level), never the credential', async () => {
    const lines: Array<Record<string, unknown>> = [];
    let raw = '';
    const profile = testProfile({ serverUrl: server.url, caCertPem: certs.tlsCa.certPem, trustAnchorsPem: [certs.pki.root.certPem], deviceId: 'dev-linklog', serialNumber: 'SN-dev-linklog' });
    const d = new TestDevice('emulated', await tempDir(), profile);
    d.logger = createLogger('info', {
      write: (s: string) => {
        raw += s;
        lines.push(JSON.parse(s) as Record<string, unknown>);
      },
    });
    devices.push(d);
    await d.start();
    const seen = (msg: string, n = 1) => server.waitFor(() => lines.filter((l) => l['msg'] === msg).length >= n, 20_000, msg);
    await seen('control channel connected');
    await seen('managed by the server');
    expect(lines.find((l) => l['msg'] === 'managed by the server')).toMatchObject({ level: 30, deviceId: 'dev-linklog' });
    server.dropAll();
    await seen('control channel lost');
    await seen('managed by the server', 2);
    expect(lines.find((l) => l['msg'] === 'control channel lost')).toMatchObject({ level: 30, code: expect.any(Number) });
    expect(raw).not.toContain(profile.credential);
  });

  it('says hello, is welcomed as managed, sends status and its boot event (acknowledged)', async () => {
    const d = await device('dev-hello');
    const hello = await server.waitFor(() => server.received('hello', 'dev-hello')[0]);
    expect(hello.body).toMatchObject({
      deviceId: 'dev-hello',
      serialNumber: 'SN-dev-hello',
      model: 'EMU-1',
      firmwareVersion: '1.0.0',
      inventory: { activeSlot: 'a', certificates: 0, containers: 0 },
    });
    expect(hello.body.credential).toBe('credential-0123456789abcdef');
    await server.waitFor(() => server.received('status', 'dev-hello')[0]);
    const boot = await server.waitFor(() => server.received('event', 'dev-hello').find((e) => e.body.kind === 'boot'));
    expect(boot.body.seq).toBe(1);
    expect(d.agent.sessionState()).toBe('managed');
  });

  it('answers server pings with a correlated pong', async () => {
    await device('dev-ping');
    await server.waitFor(() => server.connections.get('dev-ping'));
    await server.waitFor(() => server.received('status', 'dev-ping')[0]);
    const id = server.send('dev-ping', 'ping', {});
    const pong = await server.waitFor(() => server.received('pong', 'dev-ping').find((p) => p.correlationId === id));
    expect(pong).toBeDefined();
  });

  it('refuses a server whose certificate does not chain to the profile CA (keeps backing off)', async () => {
    const before = server.handshakes;
    const refused = server.tlsFailures;
    const d = await device('dev-wrong-ca', {}, certs.otherCa.certPem);
    // It dialled and refused the certificate, twice (it keeps trying): only then look for what did not happen.
    await waitFor(() => server.tlsFailures >= refused + 2, { what: 'two refused TLS handshakes' });
    expect(server.received('hello', 'dev-wrong-ca')).toHaveLength(0);
    expect(server.handshakes).toBe(before);
    expect(d.agent.sessionState()).toBe('connecting');
  });

  it('reconnects after a server restart and resends unacknowledged events', async () => {
    server.options.autoAck = false;
    try {
      const d = await device('dev-restart');
      await server.waitFor(() => server.received('event', 'dev-restart')[0]);
      await d.agent.event('link.down', 'warning', { durationSec: 3 });
      await server.waitFor(() => server.received('event', 'dev-restart').find((e) => e.body.kind === 'link.down'));
      const welcomes = server.frames.length;
      server.dropAll(CloseCodes.SERVICE_RESTART);
      await server.waitForWelcome('dev-restart', welcomes);
      // Both events arrive again after the reconnect (never acknowledged), with the same seqs.
      await server.waitFor(() => server.received('event', 'dev-restart').filter((e) => e.body.seq === 2).length >= 2);
      server.options.autoAck = true;
      server.send('dev-restart', 'ack', { seqs: [1, 2] });
    } finally {
      server.options.autoAck = true;
    }
  });

  it('waits retryAfterSec when rejected, then is admitted', async () => {
    let calls = 0;
    server.options.admission = () => (++calls === 1 ? { kind: 'rejected', retryAfterSec: 1 } : { kind: 'managed' });
    const started = Date.now();
    const d = await device('dev-rejected');
    await server.waitFor(() => server.received('hello', 'dev-rejected').length >= 2, 5000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    await server.waitFor(() => d.agent.sessionState() === 'managed' || undefined, 3000);
  });

  it('backs off for long when the credential is refused (close 4003): no hot loop', async () => {
    server.options.admission = () => ({ kind: 'auth-failed' });
    const d = await device('dev-auth', { authBackoffMinSec: 2, authBackoffMaxSec: 4 });
    await server.waitFor(() => server.received('hello', 'dev-auth')[0]);
    await waitFor(() => d.agent.sessionState() === 'rejected-waiting', { what: 'rejected-waiting after the refusal' });
    // No hot loop: the next hello comes, but only after the lower bound of the credential backoff.
    const hellos = () => server.frames.filter((f) => f.dir === 'in' && f.deviceId === 'dev-auth' && f.message?.type === 'hello');
    const [first, second] = await waitFor(() => hellos().length >= 2 && hellos(), { what: 'the second hello' });
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(2000);
  });

  it('survives a flapping link: reconnects every time, events delivered once each', async () => {
    const d = await device('dev-flap', {}, undefined, { connection: { dropAfterMs: 250 } });
    await server.waitFor(() => server.received('hello', 'dev-flap').length >= 4 || undefined, 8000, 'four sessions');
    await d.agent.event('link.flap', 'warning');
    await server.waitFor(() => server.received('event', 'dev-flap').find((e) => e.body.kind === 'link.flap'), 8000);
    expect(server.closes.filter((c) => c.deviceId === 'dev-flap').every((c) => c.code === 1001)).toBe(true);
  });

  it('answers a bad frame with an error and keeps the channel', async () => {
    await device('dev-bad');
    const ws = await server.waitFor(() => server.connections.get('dev-bad'));
    await server.waitFor(() => server.received('status', 'dev-bad')[0]);
    ws.send('{"v":"1.0","type":"no-such-type","id":"x1","sentAt":1,"body":{}}');
    const error = await server.waitFor(() => server.received('error', 'dev-bad')[0]);
    expect(error.body.code).toBe('PROTO_UNKNOWN_TYPE');
    expect(error.correlationId).toBe('x1');
    ws.send(encode(createMessage('ping', {})));
    await server.waitFor(() => server.received('pong', 'dev-bad')[0]);
  });

  it('refuses a server that does not accept the subprotocol', async () => {
    const transport = createWsTransport();
    await expect(
      transport.dial({ url: `wss://127.0.0.1:${server.port}/wrong-path`, caPem: certs.tlsCa.certPem, timeoutMs: 2000 }),
    ).rejects.toThrow();
    expect(WS_SUBPROTOCOL).toBe('router-fleet.v1');
  });
});

describe('keep-alive and backoff (injected clock)', () => {
  it('detects a half-open link within ping interval + pong timeout and reconnects', async () => {
    const clock = createManualClock();
    const network = new MemoryNetwork();
    let pings = 0;
    let connections = 0;
    network.listen('wss://memory/channel', (conn) => {
      connections++;
      conn.onMessage = (text) => {
        const m = JSON.parse(text) as { type: string; id: string; body: { deviceId?: string } };
        if (m.type === 'hello') {
          conn.send(
            encode(
              createMessage(
                'welcome',
                {
                  admission: 'managed',
                  deviceId: m.body.deviceId!,
                  session: { pingIntervalSec: 10, pongTimeoutSec: 5, sessionTimeoutSec: 5 },
                  analyticsConsent: false,
                  serverTime: clock.now(),
                },
                { correlationId: m.id },
              ),
            ),
          );
        }
        if (m.type === 'ping') pings++; // the peer "vanished": never answers
      };
    });
    const platform = await createMemoryPlatform({ clock, random: seededRandom(1) });
    const profile = testProfile({ serverUrl: 'wss://memory/channel', caCertPem: (await testCerts()).tlsCa.certPem, trustAnchorsPem: [(await testCerts()).pki.root.certPem] });
    const states: string[] = [];
    const agent = createAgent(resolveConfig({ ...TEST_CONFIG, dataDir: '' }), platform, {
      transport: network.transport,
      profile,
      onTransition: (machine, state) => machine === 'session' && states.push(state),
    });
    await agent.start();
    for (let i = 0; i < 20 && agent.sessionState() !== 'managed'; i++) await clock.advance(1);
    expect(agent.sessionState()).toBe('managed');
    await clock.advance(10_000);
    expect(pings).toBe(1);
    expect(states).not.toContain('backing-off');
    await clock.advance(5_000);
    expect(states).toContain('backing-off');
    for (let i = 0; i < 50 && connections < 2; i++) await clock.advance(100);
    expect(connections).toBe(2);
    await agent.stop();
  });

  it('a rejected connection that closes late does not end the next connection\'s hello wait', async () => {
    const clock = createManualClock();
    const network = new MemoryNetwork();
    const hellos: Array<{ conn: MemoryServerConnection; id: string; deviceId: string }> = [];
    network.listen('wss://memory/channel', (conn) => {
      conn.onMessage = (text) => {
        const m = JSON.parse(text) as { type: string; id: string; body: { deviceId?: string } };
        if (m.type === 'hello') hellos.push({ conn, id: m.id, deviceId: m.body.deviceId! });
      };
    });
    const welcome = (h: (typeof hellos)[number], admission: 'managed' | 'rejected') =>
      h.conn.send(
        encode(
          createMessage(
            'welcome',
            {
              admission,
              deviceId: h.deviceId,
              session: { pingIntervalSec: 600, pongTimeoutSec: 60, sessionTimeoutSec: 60 },
              analyticsConsent: false,
              serverTime: clock.now(),
              ...(admission === 'rejected' ? { reason: 'SERVER_NO_LICENCE', retryAfterSec: 1 } : {}),
            },
            { correlationId: h.id },
          ),
        ),
      );
    // The first connection's end reaches the agent only when the test releases it (a slow close).
    const heldCloses: Array<() => void> = [];
    let dials = 0;
    const transport: Transport = {
      dial: async (options) => {
        const conn: ChannelConnection = await network.transport.dial(options);
        if (++dials !== 1) return conn;
        let handler: ChannelConnection['onClose'];
        Object.defineProperty(conn, 'onClose', {
          get: () => (code: number, reason: string) => heldCloses.push(() => handler?.(code, reason)),
          set: (h: ChannelConnection['onClose']) => {
            handler = h;
          },
        });
        return conn;
      },
    };
    const platform = await createMemoryPlatform({ clock, random: seededRandom(3) });
    const certs = await testCerts();
    const profile = testProfile({ serverUrl: 'wss://memory/channel', caCertPem: certs.tlsCa.certPem, trustAnchorsPem: [certs.pki.root.certPem] });
    const states: string[] = [];
    const agent = createAgent(resolveConfig({ ...TEST_CONFIG, dataDir: '' }), platform, {
      transport,
      profile,
      onTransition: (machine, state) => machine === 'session' && states.push(state),
    });
    await agent.start();
    for (let i = 0; i < 20 && hellos.length < 1; i++) await clock.advance(1);
    welcome(hellos[0]!, 'rejected');
    // Rejected for 1 s: the agent closes the first connection, waits, dials again and says hello.
    for (let i = 0; i < 100 && hellos.length < 2; i++) await clock.advance(50);
    expect(hellos).toHaveLength(2);
    expect(heldCloses.length).toBeGreaterThan(0);
    const before = states.length;
    for (const release of heldCloses) release();
    await clock.advance(1);
    welcome(hellos[1]!, 'managed');
    for (let i = 0; i < 20 && agent.sessionState() !== 'managed'; i++) await clock.advance(1);
    expect(agent.sessionState()).toBe('managed');
    expect(states.slice(before)).toEqual(['managed']);
    expect(dials).toBe(2);
    await agent.stop();
  });

  it('takes only the welcome that answers this hello: a stale one (queued by a broker for an earlier link) is ignored', async () => {
    const clock = createManualClock();
    const network = new MemoryNetwork();
    const hellos: Array<{ conn: MemoryServerConnection; id: string; deviceId: string }> = [];
    network.listen('wss://memory/channel', (conn) => {
      conn.onMessage = (text) => {
        const m = JSON.parse(text) as { type: string; id: string; body: { deviceId?: string } };
        if (m.type === 'hello') hellos.push({ conn, id: m.id, deviceId: m.body.deviceId! });
      };
    });
    const welcome = (conn: MemoryServerConnection, deviceId: string, correlationId: string, admission: 'managed' | 'rejected') =>
      conn.send(
        encode(
          createMessage(
            'welcome',
            {
              admission,
              deviceId,
              session: { pingIntervalSec: 600, pongTimeoutSec: 60, sessionTimeoutSec: 60 },
              analyticsConsent: false,
              serverTime: clock.now(),
              ...(admission === 'rejected' ? { reason: 'SERVER_NO_LICENCE', retryAfterSec: 3600 } : {}),
            },
            { correlationId },
          ),
        ),
      );
    const platform = await createMemoryPlatform({ clock, random: seededRandom(5) });
    const certs = await testCerts();
    const profile = testProfile({ serverUrl: 'wss://memory/channel', caCertPem: certs.tlsCa.certPem, trustAnchorsPem: [certs.pki.root.certPem] });
    const states: string[] = [];
    const agent = createAgent(resolveConfig({ ...TEST_CONFIG, dataDir: '' }), platform, {
      transport: network.transport,
      profile,
      onTransition: (machine, state) => machine === 'session' && states.push(state),
    });
    await agent.start();
    for (let i = 0; i < 20 && hellos.length < 1; i++) await clock.advance(1);
    const hello = hellos[0]!;
    // A rejection that answered an earlier hello, then the answer to this one.
    welcome(hello.conn, hello.deviceId, 'an-earlier-hello', 'rejected');
    await clock.advance(1);
    expect(states).toEqual(['connecting', 'hello-sent']);
    welcome(hello.conn, hello.deviceId, hello.id, 'managed');
    for (let i = 0; i < 20 && agent.sessionState() !== 'managed'; i++) await clock.advance(1);
    expect(agent.sessionState()).toBe('managed');
    expect(states).toEqual(['connecting', 'hello-sent', 'managed']);
    await agent.stop();
  });

  it('keep-alive: any frame counts as life; silence triggers one ping, then death', async () => {
    const clock = createManualClock();
    let pings = 0;
    let dead = 0;
    const k = new Keepalive(clock, { pingIntervalSec: 10, pongTimeoutSec: 3 }, () => pings++, () => dead++);
    await clock.advance(6000);
    k.heard();
    await clock.advance(6000);
    expect(pings).toBe(0);
    await clock.advance(4000);
    expect(pings).toBe(1);
    k.heard();
    await clock.advance(9000);
    expect(dead).toBe(0);
    await clock.advance(1000 + 3000);
    expect(pings).toBe(2);
    expect(dead).toBe(1);
    k.stop();
  });

  it('backoff: capped exponential with full jitter, spread over the whole window', () => {
    const b = new Backoff(1000, 60_000, seededRandom(7));
    const ceilings: number[] = [];
    for (let i = 0; i < 10; i++) {
      ceilings.push(b.ceiling());
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(ceilings[i]!);
    }
    expect(ceilings).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000]);
    b.reset();
    expect(b.ceiling()).toBe(1000);
    // 10,000 routers reconnecting after a server restart: no synchronized wave.
    const random = seededRandom(42);
    const buckets = new Array(10).fill(0) as number[];
    for (let i = 0; i < 10_000; i++) {
      const r = new Backoff(1000, 60_000, random);
      r.next();
      r.next();
      buckets[Math.min(9, Math.floor(r.next() / 400))]!++;
    }
    for (const n of buckets) expect(n).toBeGreaterThan(700);
    for (const n of buckets) expect(n).toBeLessThan(1300);
    const floor = new Backoff(1000, 8000, seededRandom(3), 1000);
    for (let i = 0; i < 20; i++) expect(floor.next()).toBeGreaterThanOrEqual(1000);
  });
});
