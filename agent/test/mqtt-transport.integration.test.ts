/**
 * The agent's MQTT transport and its real session over a real Mosquitto (started by the test: own
 * config, free port, dynamic-security accounts written before start). The server's part is played
 * by a plain `mqtt` client subscribed to the device's bucket filters, as the server's bucket
 * clients are: it answers hello with welcome and publishes on the device's down topic.
 */
import {
  type CertificateAndKey,
  createCa,
  createMessage,
  decode,
  encode,
  encodeCloseFrame,
  issueCertificate,
  isMessage,
  type Message,
  mqttBucket,
  mqttBucketFilters,
  type MqttProtocolVersion,
  mqttTopics,
  parsePresence,
  type Presence,
} from '@router-fleet/protocol';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Agent, createAgent } from '../src/agent.js';
import { resolveConfig } from '../src/config.js';
import type { ConnectionProfile } from '../src/connection-profile.js';
import { createTransport } from '../src/connection/create-transport.js';
import type { DialOptions, OpenLink, Transport } from '../src/connection/transport.js';
import { DialError } from '../src/connection/transport.js';
import type { SessionState } from '../src/lifecycle/session-table.js';
import { createMemoryPlatform } from '../src/platform/memory.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { type MosquittoBroker, MOSQUITTO_MISSING, type MosquittoOptions, startMosquitto } from '../../server-stub/test/helpers/mosquitto.js';
import { TEST_CONFIG } from './helpers/device.js';
import { testProfile } from './helpers/packets.js';
import { ensureBuilt, ROOT } from './helpers/process.js';

const NET = { timeout: 20_000 };
const SERVER = { username: 'rf-server', password: 'server-password-0123456789' };
const ADMIN = { username: 'admin', password: 'admin-password-0123456789' };
const CREDENTIAL = (deviceId: string) => `credential-${deviceId}-0123456789`;

type DynsecRole = NonNullable<NonNullable<MosquittoOptions['dynsec']>['roles']>[number];

/** The broker role of one device: its own topics, literally (Mosquitto 2.0.11 has no %u/%c patterns). */
function deviceRole(deviceId: string): DynsecRole {
  const t = mqttTopics(deviceId);
  return {
    rolename: `rf-device-${deviceId}`,
    acls: [
      { acltype: 'publishClientSend', topic: t.up, allow: true },
      { acltype: 'publishClientSend', topic: t.presence, allow: true },
      { acltype: 'subscribeLiteral', topic: t.down, allow: true },
      { acltype: 'publishClientReceive', topic: t.down, allow: true },
    ],
  };
}

const SERVER_ROLE: DynsecRole = {
  rolename: 'rf-server',
  acls: [
    { acltype: 'subscribePattern', topic: 'rf/v1/+/+/up', allow: true },
    { acltype: 'subscribePattern', topic: 'rf/v1/+/+/presence', allow: true },
    { acltype: 'publishClientReceive', topic: 'rf/v1/+/+/up', allow: true },
    { acltype: 'publishClientReceive', topic: 'rf/v1/+/+/presence', allow: true },
    { acltype: 'publishClientSend', topic: 'rf/v1/+/+/down', allow: true },
  ],
};

function dynsec(deviceIds: string[]) {
  return {
    admin: ADMIN,
    clients: [
      { username: SERVER.username, password: SERVER.password, roles: ['rf-server'] },
      ...deviceIds.map((id) => ({ username: id, password: CREDENTIAL(id), clientid: id, roles: [`rf-device-${id}`] })),
    ],
    roles: [SERVER_ROLE, ...deviceIds.map(deviceRole)],
  };
}

/** What the test server saw from one device. */
interface Uplink {
  deviceId: string;
  text: string;
  message: Message | undefined;
}

/** The server's part: a bucket client that answers hello with welcome (unless told otherwise). */
class BucketServer {
  readonly uplinks: Uplink[] = [];
  readonly presences: Array<{ deviceId: string } & Presence> = [];
  /** Whether hello is answered with a managed welcome. */
  welcomeHellos = true;
  readonly #client: MqttClient;

  private constructor(client: MqttClient) {
    this.#client = client;
    client.on('message', (topic, payload) => {
      const parts = topic.split('/');
      const deviceId = parts[3]!;
      const text = payload.toString();
      if (parts[4] === 'presence') {
        const p = parsePresence(payload);
        if (p) this.presences.push({ deviceId, ...p });
        return;
      }
      const decoded = decode(text);
      const message = isMessage(decoded) ? decoded : undefined;
      this.uplinks.push({ deviceId, text, message });
      if (message?.type === 'hello' && this.welcomeHellos) this.welcome(deviceId, message.id);
    });
  }

  static async start(url: string, deviceIds: string[]): Promise<BucketServer> {
    const client = await connectAsync(url, {
      ...SERVER,
      clientId: `rf-server-test-${process.pid}`,
      protocolVersion: 5,
      // Test infrastructure, not under test: it comes back by itself after a broker restart.
      reconnectPeriod: 200,
      connectTimeout: 10_000,
    });
    const server = new BucketServer(client);
    const buckets = [...new Set(deviceIds.map(mqttBucket))];
    const filters = buckets.flatMap((b) => Object.values(mqttBucketFilters(b)));
    const granted = await client.subscribeAsync(filters, { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual(filters.map(() => 1));
    return server;
  }

  publish(deviceId: string, text: string): Promise<unknown> {
    return this.#client.publishAsync(mqttTopics(deviceId).down, text, { qos: 1 });
  }

  welcome(deviceId: string, helloId: string, admission: 'managed' | 'rejected' = 'managed'): Promise<unknown> {
    const welcome = createMessage(
      'welcome',
      {
        admission,
        deviceId,
        session: { pingIntervalSec: 60, pongTimeoutSec: 30, sessionTimeoutSec: 30 },
        analyticsConsent: false,
        serverTime: Date.now(),
        ...(admission === 'rejected' ? { reason: 'SERVER_NO_LICENCE', retryAfterSec: 3600 } : {}),
      },
      { correlationId: helloId },
    );
    return this.publish(deviceId, encode(welcome));
  }

  received(deviceId: string, type?: string): Uplink[] {
    return this.uplinks.filter((u) => u.deviceId === deviceId && (type === undefined || u.message?.type === type));
  }

  close(): Promise<void> {
    return this.#client.endAsync(true);
  }
}

/** A transport that counts dials and keeps the open links (to cut them), around the agent's own. */
function countingTransport() {
  const links: OpenLink[] = [];
  const dials: number[] = [];
  const failures: string[] = [];
  const closes: number[] = [];
  const inner = createTransport({
    observer: { opened: (l) => links.push(l), dialFailed: (code) => failures.push(code), closed: (_l, code) => closes.push(code) },
  });
  const transport: Transport = {
    dial: (dial: DialOptions) => {
      dials.push(Date.now());
      return inner.dial(dial);
    },
    downloadDispatcher: (caPem) => inner.downloadDispatcher(caPem),
  };
  return { transport, links, dials, failures, closes };
}

function dialOptions(url: string, deviceId: string, version: MqttProtocolVersion, extra: Partial<DialOptions> = {}): DialOptions {
  return {
    url,
    caPem: '',
    timeoutMs: 10_000,
    allowInsecure: true,
    deviceId,
    credential: CREDENTIAL(deviceId),
    mqttVersion: version,
    keepAliveSec: 60,
    ...extra,
  };
}

/** A dialled connection with what it received and how it ended. */
async function open(transport: Transport, options: DialOptions) {
  const connection = await transport.dial(options);
  const got: string[] = [];
  const closes: Array<{ code: number; reason: string }> = [];
  connection.onMessage = (text) => got.push(text);
  connection.onClose = (code, reason) => closes.push({ code, reason });
  return { connection, got, closes };
}

let certs: { ca: CertificateAndKey; server: CertificateAndKey; otherCa: CertificateAndKey };
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function broker(deviceIds: string[], options: { tls?: boolean } = {}): Promise<MosquittoBroker> {
  const b = await startMosquitto({
    dynsec: dynsec(deviceIds),
    ...(options.tls ? { tls: { certPem: certs.server.certPem, keyPem: certs.server.keyPem } } : {}),
  });
  cleanups.push(() => b.close());
  return b;
}

async function server(b: MosquittoBroker, deviceIds: string[]): Promise<BucketServer> {
  const s = await BucketServer.start(b.url, deviceIds);
  cleanups.push(() => s.close());
  return s;
}

async function agentOn(url: string, deviceId: string, options: { version?: MqttProtocolVersion; credential?: string; caPem?: string; config?: object } = {}) {
  const counting = countingTransport();
  const states: SessionState[] = [];
  const profile: ConnectionProfile = testProfile({
    serverUrl: url,
    caCertPem: options.caPem ?? certs.ca.certPem,
    trustAnchorsPem: [certs.ca.certPem],
    deviceId,
    serialNumber: `SN-${deviceId}`,
    credential: options.credential ?? CREDENTIAL(deviceId),
    ...(options.version ? { mqttVersion: options.version } : {}),
  });
  const platform = await createMemoryPlatform();
  const agent: Agent = createAgent(resolveConfig({ ...TEST_CONFIG, allowInsecureTransport: true, dataDir: '', ...options.config }), platform, {
    transport: counting.transport,
    profile,
    onTransition: (machine, state) => {
      if (machine === 'session') states.push(state);
    },
  });
  cleanups.push(() => agent.stop());
  await agent.start();
  return { agent, states, ...counting };
}

beforeAll(async () => {
  const ca = await createCa({ commonName: 'Broker TLS CA', keyBits: 2048 });
  const otherCa = await createCa({ commonName: 'Other TLS CA', keyBits: 2048 });
  const serverCert = await issueCertificate({
    commonName: 'localhost',
    issuer: ca,
    keyBits: 2048,
    extKeyUsage: ['serverAuth'],
    subjectAltNames: { dns: ['localhost'], ip: ['127.0.0.1'] },
  });
  certs = { ca, server: serverCert, otherCa };
});

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

describe('MQTT transport: URL and options checks (no broker)', () => {
  it('refuses mqtt:// unless insecure transport is allowed, and needs the device id and credential', async () => {
    const transport = createTransport();
    const refused = await transport.dial({ url: 'mqtt://127.0.0.1:1', caPem: '', timeoutMs: 1000, deviceId: 'dev-x', credential: CREDENTIAL('dev-x') }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DialError);
    expect(refused).toMatchObject({ kind: 'protocol' });
    const anonymous = await transport.dial({ url: 'mqtts://127.0.0.1:1', caPem: '', timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(anonymous).toMatchObject({ kind: 'protocol', message: 'MQTT needs the device id and credential' });
    const wildcard = await transport.dial({ url: 'mqtts://127.0.0.1:1', caPem: '', timeoutMs: 1000, deviceId: 'dev/#', credential: 'x' }).catch((e: unknown) => e);
    expect(wildcard).toMatchObject({ kind: 'protocol' });
  });
});

describe('the mqtt package costs a WebSocket agent nothing', () => {
  it('is loaded on the first MQTT dial only (a fresh process on the built agent)', async () => {
    await ensureBuilt();
    const script = `
      import { createRequire } from 'node:module';
      const { createTransport } = await import(${JSON.stringify(join(ROOT, 'agent', 'dist', 'index.js'))});
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/node_modules/mqtt/'));
      const transport = createTransport();
      const atStart = loaded();
      const ws = await transport.dial({ url: 'wss://127.0.0.1:9/channel', caPem: '', timeoutMs: 5000 }).catch((e) => e.kind);
      const afterWs = loaded();
      const dial = { url: 'mqtt://127.0.0.1:9', caPem: '', timeoutMs: 5000, allowInsecure: true, deviceId: 'dev-1', credential: 'x'.repeat(16) };
      const mqtt = await transport.dial(dial).catch((e) => e.kind);
      console.log(JSON.stringify({ atStart, ws, afterWs, mqtt, afterMqtt: loaded() }));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({ atStart: false, ws: 'network', afterWs: false, mqtt: 'network', afterMqtt: true });
  });
});

describe.skipIf(MOSQUITTO_MISSING)(`MQTT transport over a real Mosquitto${MOSQUITTO_MISSING ? ` (skipped: ${MOSQUITTO_MISSING})` : ''}`, () => {
  describe.each([5, 4] as const)('MQTT protocol level %i', (version) => {
    it('the agent connects, says hello, is welcomed and sends its status, in order', async () => {
      const id = `dev-order-${version}`;
      const b = await broker([id]);
      const s = await server(b, [id]);
      const a = await agentOn(b.url, id, { version });
      await waitFor(() => a.agent.sessionState() === 'managed', { ...NET, what: 'managed' });
      await waitFor(() => s.received(id, 'status').length > 0, { ...NET, what: 'status after welcome' });
      const types = s.received(id).map((u) => u.message?.type);
      expect(types[0]).toBe('hello');
      expect(types.indexOf('status')).toBeGreaterThan(0);
      // Online presence came first, with the link id of the connection that said hello.
      expect(s.presences.filter((p) => p.deviceId === id)).toEqual([{ deviceId: id, state: 'online', link: expect.any(String) }]);
      expect(a.dials).toHaveLength(1);
      // Down and up again on the welcomed session: a server ping is answered with its pong.
      const ping = createMessage('ping', {});
      await s.publish(id, encode(ping));
      await waitFor(() => s.received(id, 'pong').some((u) => u.message?.correlationId === ping.id), { ...NET, what: 'pong' });
    });

    it('a welcome queued for an earlier hello while the device was away does not count', async () => {
      const id = `dev-stale-welcome-${version}`;
      const b = await broker([id]);
      const s = await server(b, [id]);
      s.welcomeHellos = false;
      // The device was away when the server rejected an earlier hello; the broker kept the answer.
      const transport = createTransport();
      const c = await open(transport, dialOptions(b.url, id, version));
      c.connection.close(1001, 'power cut');
      await waitFor(() => c.closes.length === 1, { ...NET, what: 'closed' });
      await s.welcome(id, 'an-earlier-hello', 'rejected');
      const a = await agentOn(b.url, id, { version });
      await waitFor(() => s.received(id, 'hello').length === 1, { ...NET, what: 'hello' });
      await s.welcome(id, s.received(id, 'hello')[0]!.message!.id);
      await waitFor(() => a.agent.sessionState() === 'managed', { ...NET, what: 'managed' });
      expect(a.states).toEqual(['connecting', 'hello-sent', 'managed']);
    });

    it('a wrong credential is a DialError(auth), and the agent backs off for long', async () => {
      const id = `dev-auth-${version}`;
      const b = await broker([id]);
      const transport = createTransport();
      const error = await transport.dial(dialOptions(b.url, id, version, { credential: 'not-the-credential-0000' })).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DialError);
      expect(error).toMatchObject({ kind: 'auth' });

      const a = await agentOn(b.url, id, { version, credential: 'not-the-credential-0000', config: { authBackoffMinSec: 2, authBackoffMaxSec: 3 } });
      await waitFor(() => a.dials.length >= 2, { ...NET, what: 'second dial' });
      expect(a.states).toContain('rejected-waiting');
      expect(a.states).not.toContain('backing-off');
      expect(a.dials[1]! - a.dials[0]!).toBeGreaterThanOrEqual(2000 - 50);
      // Mosquitto's dynamic-security plugin answers a bad password with "not authorized".
      expect(a.failures[0]).toBe(version === 5 ? 'CONNACK_135' : 'CONNACK_5');
    });

    it('a close frame ends the connection with its code; rejected (4004) sends the agent into its long wait', async () => {
      const id = `dev-close-${version}`;
      const b = await broker([id]);
      const s = await server(b, [id]);
      const c = await open(createTransport(), dialOptions(b.url, id, version));
      c.connection.send(encode(createMessage('ping', {})));
      await waitFor(() => s.received(id, 'ping').length === 1, { ...NET, what: 'ping at the server' });
      await s.publish(id, encodeCloseFrame(4009, 'replaced'));
      await waitFor(() => c.closes.length === 1, { ...NET, what: 'close' });
      expect(c.closes).toEqual([{ code: 4009, reason: 'replaced' }]);
      // It said goodbye: presence offline with its link id, and the connection is unusable.
      await waitFor(() => s.presences.some((p) => p.deviceId === id && p.state === 'offline'), { ...NET, what: 'offline presence' });
      expect(c.connection.send('{}')).toBe(false);

      s.welcomeHellos = false;
      const a = await agentOn(b.url, id, { version });
      await waitFor(() => s.received(id, 'hello').length === 1, { ...NET, what: 'hello' });
      await s.welcome(id, s.received(id, 'hello')[0]!.message!.id);
      await waitFor(() => a.agent.sessionState() === 'managed', { ...NET, what: 'managed' });
      await s.publish(id, encodeCloseFrame(4004, 'no licence'));
      await waitFor(() => a.agent.sessionState() === 'rejected-waiting', { ...NET, what: 'rejected-waiting' });
      expect(a.states.slice(-2)).toEqual(['managed', 'rejected-waiting']);
    });

    it('a close frame queued before the connection\'s first send is dropped; what follows it is delivered after that send', async () => {
      const id = `dev-stale-${version}`;
      const b = await broker([id]);
      const s = await server(b, [id]);
      const transport = createTransport();
      const first = await open(transport, dialOptions(b.url, id, version));
      first.connection.close(1000, 'bye');
      await waitFor(() => first.closes.length === 1, { ...NET, what: 'first connection closed' });
      // While the device is away: a close frame for the old link, then an ordinary downlink.
      await s.publish(id, encodeCloseFrame(4009, 'replaced'));
      const ping = createMessage('ping', {});
      await s.publish(id, encode(ping));
      const second = await open(transport, dialOptions(b.url, id, version));
      second.connection.send(encode(createMessage('ping', {})));
      await waitFor(() => second.got.length === 1, { ...NET, what: 'the queued ping' });
      expect(JSON.parse(second.got[0]!)).toMatchObject({ type: 'ping', id: ping.id });
      expect(second.closes).toEqual([]);
      expect(second.connection.send(encode(createMessage('pong', {}, { correlationId: ping.id })))).toBe(true);
      await waitFor(() => s.received(id, 'pong').length === 1, { ...NET, what: 'pong on the second connection' });
    });

    it('a job offer published while the device is away is delivered after it reconnects (persistent session)', async () => {
      const id = `dev-away-${version}`;
      const b = await broker([id]);
      const s = await server(b, [id]);
      const transport = createTransport();
      const c1 = await open(transport, dialOptions(b.url, id, version));
      c1.connection.close(1001, 'rebooting');
      await waitFor(() => c1.closes.length === 1, { ...NET, what: 'closed' });
      const offer = createMessage('job-offer', {
        executionId: 'exe-away',
        jobId: 'job-away',
        packet: { url: 'https://fleet.example.net/api/packets/download/exe-away', size: 1024, sha256: 'a'.repeat(64) },
        download: { token: 'dl.token-0123456789', expiresAt: Date.now() + 600_000 },
        deadline: Date.now() + 3_600_000,
        allowDowngrade: false,
      });
      await s.publish(id, encode(offer));
      const c2 = await open(transport, dialOptions(b.url, id, version));
      c2.connection.send(encode(createMessage('ping', {})));
      await waitFor(() => c2.got.length === 1, { ...NET, what: 'the queued job offer' });
      expect(JSON.parse(c2.got[0]!)).toMatchObject({ type: 'job-offer', id: offer.id, body: { executionId: 'exe-away' } });
    });

    it('the will (offline presence with the link id) is published when the connection dies without DISCONNECT', async () => {
      const id = `dev-will-${version}`;
      const b = await broker([id]);
      const s = await server(b, [id]);
      const a = await agentOn(b.url, id, { version });
      await waitFor(() => a.agent.sessionState() === 'managed', { ...NET, what: 'managed' });
      const online = s.presences.find((p) => p.deviceId === id && p.state === 'online')!;
      expect(a.links).toHaveLength(1);
      a.links[0]!.terminate();
      await waitFor(() => s.presences.some((p) => p.deviceId === id && p.state === 'offline'), { ...NET, what: 'the will' });
      expect(s.presences.find((p) => p.deviceId === id && p.state === 'offline')).toEqual({ deviceId: id, state: 'offline', link: online.link });
      // The agent comes back by itself with a new link.
      await waitFor(() => s.presences.filter((p) => p.deviceId === id && p.state === 'online').length === 2, { ...NET, what: 'a new link' });
      const links = s.presences.filter((p) => p.deviceId === id && p.state === 'online').map((p) => p.link);
      expect(new Set(links).size).toBe(2);
    });

    it('TLS with the profile\'s CA; a broker certificate from another CA is refused', async () => {
      const id = `dev-tls-${version}`;
      const b = await broker([id], { tls: true });
      const s = await server(b, [id]);
      const a = await agentOn(b.tlsUrl!, id, { version });
      await waitFor(() => a.agent.sessionState() === 'managed', { ...NET, what: 'managed over mqtts' });
      expect(s.received(id, 'hello')).toHaveLength(1);

      const failures: string[] = [];
      const transport = createTransport({ observer: { dialFailed: (code) => failures.push(code) } });
      const error = await transport.dial(dialOptions(b.tlsUrl!, id, version, { caPem: certs.otherCa.certPem, allowInsecure: false })).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DialError);
      expect(error).toMatchObject({ kind: 'network' });
      expect(failures[0]).toMatch(/CERT|SIGNATURE|VERIFY/);
    });
  });

  it('broker killed: the link ends (1006) and the agent reconnects with its own backoff, no library reconnect', async () => {
    const id = 'dev-broker-kill';
    const b = await broker([id]);
    const s = await server(b, [id]);
    const a = await agentOn(b.url, id);
    await waitFor(() => a.agent.sessionState() === 'managed', { ...NET, what: 'managed' });
    await b.kill();
    await waitFor(() => a.states.includes('backing-off'), { ...NET, what: 'backing off' });
    expect(a.closes).toEqual([1006]);
    // Dials fail while the broker is down (ECONNREFUSED), each after the agent's own backoff.
    await waitFor(() => a.failures.length >= 3, { ...NET, what: 'failed dials' });
    expect(a.failures.every((f) => f === 'ECONNREFUSED')).toBe(true);
    await b.restart();
    await waitFor(() => a.agent.sessionState() === 'managed' && s.received(id, 'hello').length >= 2, { timeout: 30_000, what: 'managed again' });
    // Every connection the broker saw from the device is one the agent dialled.
    const connects = b.log().split('\n').filter((l) => l.includes(`New client connected`) && l.includes(` as ${id} `)).length;
    expect(connects).toBe(a.links.length);
    expect(a.dials.length).toBe(a.links.length + a.failures.length);
  });
});
