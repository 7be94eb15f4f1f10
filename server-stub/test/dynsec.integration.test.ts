/**
 * Device accounts on a real Mosquitto with the dynamic-security plugin: the server provisions and
 * removes them over `$CONTROL`, and the broker then lets each device reach its own topics only.
 * Devices are plain `mqtt` clients, the server's side a client with the server's account.
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueCertificate, mqttBucket, mqttBucketFilters, mqttTopics } from '@router-fleet/protocol';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { BrokerAccountsError, DynsecAccounts } from '../src/channel/mqtt/dynsec.js';
import { deviceClient, deviceRole, SERVER_ACCOUNT } from '../src/channel/mqtt/mosquitto-files.js';
import { BROKER_ACCOUNT_FAILURES, type BrokerAccountsHandle, startBrokerAccounts } from '../src/channel/mqtt/start-broker-accounts.js';
import { MOSQUITTO_MISSING, type MosquittoBroker, startMosquitto } from './helpers/mosquitto.js';
import { removeTempDirs, type Tenant, type World, world } from './helpers/setup.js';

const ADMIN = { username: 'rf-admin', password: randomBytes(12).toString('hex') };
const SERVER_PASSWORD = randomBytes(12).toString('hex');
const silent = pino({ level: 'silent' });

const open: MqttClient[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.endAsync(true).catch(() => {})));
});

/** A device or server client that does not reconnect by itself; rejects when the broker refuses it. */
async function connect(url: string, username: string, password: string, extra: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(
    url,
    { protocolVersion: 5, clientId: username, username, password, reconnectPeriod: 0, connectTimeout: 10_000, ...extra },
    false,
  );
  c.on('error', () => {});
  open.push(c);
  return c;
}

/** The reason the broker refused a connection (MQTT 5 CONNACK reason code), or 'connected'. */
async function refusal(url: string, username: string, password: string, extra: IClientOptions = {}): Promise<number | 'connected'> {
  try {
    await connect(url, username, password, extra);
    return 'connected';
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

/** Mosquitto's answer (MQTT 5 reason code) to a refused credential, client id, publish or subscription. */
const NOT_AUTHORIZED = 0x87;

/** The broker's reason codes for these subscriptions (granted QoS, or a refusal at 0x80 and above). */
async function subscribeCodes(client: MqttClient, filters: string[]): Promise<number[]> {
  try {
    return (await client.subscribeAsync(filters, { qos: 1 })).map((g) => g.qos);
  } catch (err) {
    const granted = (err as { packet?: { granted?: (number | { qos: number })[] } }).packet?.granted;
    if (!granted) throw err;
    return granted.map((g) => (typeof g === 'number' ? g : g.qos));
  }
}

/** The reason code of the PUBACK a QoS 1 publish gets (0 = accepted). */
async function publishCode(client: MqttClient, topic: string, payload: string): Promise<number> {
  try {
    const ack = (await client.publishAsync(topic, payload, { qos: 1 })) as { reasonCode?: number } | undefined;
    return ack?.reasonCode ?? 0;
  } catch (err) {
    const code = (err as { code?: number }).code;
    if (code === undefined) throw err;
    return code;
  }
}

/** The server's side: a bucket client with the server's account, collecting what arrives. */
interface Consumer {
  client: MqttClient;
  got: { topic: string; payload: string }[];
}

async function serverConsumer(url: string, bucket: number, extra: IClientOptions = {}): Promise<Consumer> {
  const client = await connect(url, SERVER_ACCOUNT, SERVER_PASSWORD, { clientId: `rf-server-b${bucket}`, ...extra });
  const got: { topic: string; payload: string }[] = [];
  client.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
  const f = mqttBucketFilters(bucket);
  const granted = await client.subscribeAsync([f.up, f.presence], { qos: 1 });
  expect(granted.map((g) => g.qos)).toEqual([1, 1]);
  return { client, got };
}

interface Setup {
  broker: MosquittoBroker;
  w: World;
  t: Tenant;
  handle: BrokerAccountsHandle;
}

interface SetupOptions {
  broker?: MosquittoBroker;
  beforeStart?: (w: World, t: Tenant) => void;
  reconcileAtStart?: boolean;
}

async function setup(options: SetupOptions = {}): Promise<Setup> {
  const broker = options.broker ?? (await startMosquitto({ dynsec: { admin: ADMIN } }));
  const w = world();
  const t = await w.newTenant();
  w.licences(t, 'basic-25', 1);
  options.beforeStart?.(w, t);
  const handle = await startBrokerAccounts({
    url: broker.url,
    adminUsername: ADMIN.username,
    adminPassword: ADMIN.password,
    serverAccount: { username: SERVER_ACCOUNT, password: SERVER_PASSWORD },
    devices: w.services.devices,
    metrics: w.services.metrics,
    logger: silent,
    retryDelayMs: 200,
    ...(options.reconcileAtStart === undefined ? {} : { reconcileAtStart: options.reconcileAtStart }),
    dynsec: { timeoutMs: 10_000 },
  });
  return { broker, w, t, handle };
}

async function teardown(s: Setup | undefined): Promise<void> {
  if (!s) return;
  await s.handle.close();
  s.w.close();
  await s.broker.close();
}

describe.skipIf(MOSQUITTO_MISSING)(`device accounts on Mosquitto (dynamic security)${MOSQUITTO_MISSING ? ` — skipped: ${MOSQUITTO_MISSING}` : ''}`, () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup();
  });
  afterAll(async () => {
    await teardown(s);
    removeTempDirs();
  });

  it('a registered device connects with its credential and client id; its uplink reaches the server account', async () => {
    const [d] = s.w.devices(s.t, 1, 'UP');
    await s.w.services.devices.brokerSettled();
    const bucket = mqttBucket(d!.uuid);
    const server = await serverConsumer(s.broker.url, bucket);
    const device = await connect(s.broker.url, d!.uuid, d!.credential);
    const topics = mqttTopics(d!.uuid);
    await device.publishAsync(topics.up, '{"type":"hello"}', { qos: 1 });
    await device.publishAsync(topics.presence, '{"presence":"online","link":"l1"}', { qos: 1, retain: true });
    await waitFor(() => server.got.length >= 2, { what: 'uplink and presence at the server' });
    expect(server.got).toEqual([
      { topic: topics.up, payload: '{"type":"hello"}' },
      { topic: topics.presence, payload: '{"presence":"online","link":"l1"}' },
    ]);
    // And the server's downlink reaches the device.
    const down: string[] = [];
    device.on('message', (topic, payload) => topic === topics.down && down.push(payload.toString()));
    expect((await device.subscribeAsync(topics.down, { qos: 1 }))[0]!.qos).toBe(1);
    await server.client.publishAsync(topics.down, '{"type":"welcome"}', { qos: 1 });
    await waitFor(() => down.length === 1, { what: 'downlink at the device' });
  });

  it('refuses a wrong credential, a wrong client id and an unknown user', async () => {
    const [d] = s.w.devices(s.t, 1, 'REFUSE');
    await s.w.services.devices.brokerSettled();
    expect(await refusal(s.broker.url, d!.uuid, 'not-the-credential')).toBe(NOT_AUTHORIZED);
    expect(await refusal(s.broker.url, d!.uuid, d!.credential, { clientId: 'someone-else' })).toBe(NOT_AUTHORIZED);
    expect(await refusal(s.broker.url, 'nobody', d!.credential)).toBe(NOT_AUTHORIZED);
    // The right ones still work (the refusals were about the wrong values, not the device).
    expect(await refusal(s.broker.url, d!.uuid, d!.credential)).toBe('connected');
  });

  it('a device\'s publish on another device\'s uplink gets nothing through', async () => {
    const [a, b] = s.w.devices(s.t, 2, 'XPUB');
    await s.w.services.devices.brokerSettled();
    const ta = mqttTopics(a!.uuid);
    const tb = mqttTopics(b!.uuid);
    const servers = await Promise.all([...new Set([mqttBucket(a!.uuid), mqttBucket(b!.uuid)])].map((bucket) => serverConsumer(s.broker.url, bucket)));
    // Only these two devices' topics: a bucket may also hold an earlier test's device, whose
    // retained presence the server's subscription receives.
    const mine = new Set([ta.up, ta.presence, tb.up, tb.presence]);
    const got = () => servers.flatMap((x) => x.got).filter((m) => mine.has(m.topic));
    const devA = await connect(s.broker.url, a!.uuid, a!.credential);
    // MQTT 5: the broker answers a refused QoS 1 publish with PUBACK reason 0x87 (not authorized).
    expect(await publishCode(devA, tb.up, '{"type":"forged"}')).toBe(NOT_AUTHORIZED);
    expect(await publishCode(devA, tb.presence, '{"presence":"offline","link":"x"}')).toBe(NOT_AUTHORIZED);
    expect(await publishCode(devA, ta.down, '{"type":"self-sent"}')).toBe(NOT_AUTHORIZED);
    expect(await publishCode(devA, 'rf/v1/other', '{"type":"elsewhere"}')).toBe(NOT_AUTHORIZED);
    // Its own uplink, sent after, is the signal that the broker has handled the forged ones.
    await devA.publishAsync(ta.up, '{"type":"own"}', { qos: 1 });
    await waitFor(() => got().some((m) => m.payload === '{"type":"own"}'), { what: 'the own uplink' });
    expect(got().map((m) => m.payload)).toEqual(['{"type":"own"}']);
  });

  it('subscribing to #, a pattern or another device\'s downlink is refused and receives nothing', async () => {
    const [a, b] = s.w.devices(s.t, 2, 'XSUB');
    await s.w.services.devices.brokerSettled();
    const ta = mqttTopics(a!.uuid);
    const tb = mqttTopics(b!.uuid);
    const devA = await connect(s.broker.url, a!.uuid, a!.credential);
    const devB = await connect(s.broker.url, b!.uuid, b!.credential);
    const seenByA: string[] = [];
    devA.on('message', (topic) => seenByA.push(topic));
    const seenByB: string[] = [];
    devB.on('message', (topic) => seenByB.push(topic));
    const forbidden = ['#', 'rf/v1/+/+/down', 'rf/v1/#', tb.down, tb.up, ta.up, '$CONTROL/dynamic-security/#', '$SYS/#'];
    expect(await subscribeCodes(devA, forbidden)).toEqual(forbidden.map(() => NOT_AUTHORIZED));
    expect(await subscribeCodes(devA, [ta.down])).toEqual([1]);
    expect(await subscribeCodes(devB, [tb.down])).toEqual([1]);
    const server = await connect(s.broker.url, SERVER_ACCOUNT, SERVER_PASSWORD, { clientId: 'rf-server-test-sender' });
    await server.publishAsync(tb.down, '{"type":"for-b"}', { qos: 1 });
    await devB.publishAsync(tb.up, '{"type":"b-up"}', { qos: 1 });
    // Then one for A: once it arrives, A would have had the earlier ones too.
    await server.publishAsync(ta.down, '{"type":"for-a"}', { qos: 1 });
    await waitFor(() => seenByB.length === 1 && seenByA.length === 1, { what: 'each device its own downlink' });
    expect(seenByA).toEqual([ta.down]);
    expect(seenByB).toEqual([tb.down]);
  });

  it('a deleted device is disconnected and cannot connect again', async () => {
    const [d] = s.w.devices(s.t, 1, 'DEL');
    await s.w.services.devices.brokerSettled();
    const device = await connect(s.broker.url, d!.uuid, d!.credential);
    let closed = false;
    device.on('close', () => (closed = true));
    s.w.services.devices.delete(s.t.scope, d!.uuid);
    await waitFor(() => closed, { what: 'the deleted device disconnected by the broker' });
    expect(await refusal(s.broker.url, d!.uuid, d!.credential)).toBe(NOT_AUTHORIZED);
    const roles = await s.handle.accounts.listRoles();
    expect(roles).not.toContain(deviceRole(d!.uuid).rolename);
  });

  it('CSV import provisions every imported device (and none of a rolled-back import)', async () => {
    const before = (await s.handle.accounts.listClients()).length;
    const rows = Array.from({ length: 30 }, (_, i) => `CSV-${i}`);
    const report = s.w.services.devices.importCsv(s.t.scope, `serialNumber\n${rows.join('\n')}\n`, false, 1000);
    expect(report.imported).toBe(30);
    const failed = () => s.w.services.devices.importCsv(s.t.scope, 'serialNumber\nCSV-NEW-1\nCSV-0\n', false, 1000);
    expect(failed).toThrow();
    await s.w.services.devices.brokerSettled();
    const list = await s.handle.accounts.listClients();
    expect(list.length - before).toBe(30);
    const clients = new Set(list);
    const page = s.t.scope.devices.list({ filter: {}, sort: 'serialNumber', desc: false, limit: 500 });
    const imported = page.filter((d) => d.serial_number.startsWith('CSV-'));
    expect(imported).toHaveLength(30);
    for (const d of imported) expect(clients.has(d.uuid)).toBe(true);
    const one = imported[7]!;
    expect(await refusal(s.broker.url, one.uuid, s.w.services.devices.credential(s.t.scope, one.uuid))).toBe('connected');
  });

  it('provisioning a client that exists gives it the new credential (the old one is refused)', async () => {
    const [d] = s.w.devices(s.t, 1, 'REKEY');
    await s.w.services.devices.brokerSettled();
    const fresh = randomBytes(32).toString('base64url');
    await s.handle.accounts.provision([{ deviceId: d!.uuid, credential: fresh }]);
    expect(await refusal(s.broker.url, d!.uuid, d!.credential)).toBe(NOT_AUTHORIZED);
    expect(await refusal(s.broker.url, d!.uuid, fresh)).toBe('connected');
  });

  it('devices registered or deleted while a reconcile runs end up provisioned or removed', async () => {
    const [gone] = s.w.devices(s.t, 1, 'RACE-GONE');
    await s.w.services.devices.brokerSettled();
    const running = s.handle.reconcile();
    const [fresh] = s.w.devices(s.t, 1, 'RACE-NEW');
    s.w.services.devices.delete(s.t.scope, gone!.uuid);
    await running;
    await s.w.services.devices.brokerSettled();
    expect(await refusal(s.broker.url, fresh!.uuid, fresh!.credential)).toBe('connected');
    expect(await refusal(s.broker.url, gone!.uuid, gone!.credential)).toBe(NOT_AUTHORIZED);
    expect(await s.handle.accounts.listRoles()).not.toContain(deviceRole(gone!.uuid).rolename);
  });

  it('answers many commands in few messages, each answer matched to its command', async () => {
    const ids = Array.from({ length: 250 }, (_, i) => `batch-${i}`);
    const answers = await s.handle.accounts.execute([
      ...ids.map((id) => ({ command: 'createRole', rolename: `rf-test-${id}` })),
      { command: 'deleteRole', rolename: 'rf-test-no-such-role' },
      ...ids.map((id) => ({ command: 'deleteRole', rolename: `rf-test-${id}` })),
    ]);
    expect(answers).toHaveLength(501);
    expect(answers.slice(0, 250).every((a) => a.command === 'createRole' && !a.error)).toBe(true);
    expect(answers[250]).toEqual({ command: 'deleteRole', error: 'Role not found' });
    expect(answers.slice(251).every((a) => a.command === 'deleteRole' && !a.error)).toBe(true);
  });

  it('keeps answers apart when another admin uses the control topic at the same time (answers go to every admin)', async () => {
    const other = await DynsecAccounts.connect({ url: s.broker.url, username: ADMIN.username, password: ADMIN.password, batchCommands: 3 });
    try {
      const mine = Array.from({ length: 12 }, (_, i) => ({ command: 'getRole', rolename: `rf-mine-${i}` }));
      const theirs = Array.from({ length: 12 }, (_, i) => ({ command: 'createRole', rolename: `rf-theirs-${i}` }));
      const [a, b] = await Promise.all([s.handle.accounts.execute(mine), other.execute(theirs)]);
      expect(a).toEqual(mine.map(() => ({ command: 'getRole', error: 'Role not found' })));
      expect(b).toEqual(theirs.map(() => ({ command: 'createRole' })));
    } finally {
      await other.close();
    }
  });

  it('reports the commands the plugin refused, per command', async () => {
    const err = await s.handle.accounts.remove(['has/slash']).catch((e: unknown) => e);
    // An id that is not an identifier is refused before anything is sent.
    expect(err).toBeInstanceOf(TypeError);
    const answers = await s.handle.accounts.execute([{ command: 'createClient' }, { command: 'noSuchCommand' }]);
    expect(answers).toEqual([
      { command: 'createClient', error: 'Invalid/missing username' },
      { command: 'noSuchCommand', error: 'Unknown command' },
    ]);
  });
});

describe.skipIf(MOSQUITTO_MISSING)('device accounts: reconcile, failures and TLS', () => {
  let s: Setup | undefined;
  afterEach(async () => {
    await teardown(s);
    s = undefined;
    removeTempDirs();
  });

  it('reconcile at start creates missing devices, removes stale ones and leaves other clients alone', async () => {
    const stale = '0b7c9d9e-0000-4000-8000-00000000dead';
    const broker = await startMosquitto({
      dynsec: {
        admin: ADMIN,
        clients: [deviceClient(stale, 'old-secret'), { username: 'ops-dashboard', password: 'dash', roles: [] }, { username: 'f4a1c2d3-0000-4000-8000-000000000001', password: 'x', roles: [] }],
        roles: [deviceRole(stale)],
      },
    });
    let registered: { uuid: string; credential: string }[] = [];
    s = await setup({ broker, beforeStart: (w, t) => (registered = w.devices(t, 5, 'RECON')) });
    const clients = await s.handle.accounts.listClients();
    for (const d of registered) expect(clients).toContain(d.uuid);
    expect(clients).not.toContain(stale);
    expect(clients).toEqual(expect.arrayContaining(['ops-dashboard', 'f4a1c2d3-0000-4000-8000-000000000001', ADMIN.username, SERVER_ACCOUNT]));
    expect(await s.handle.accounts.listRoles()).not.toContain(deviceRole(stale).rolename);
    expect(await refusal(broker.url, registered[3]!.uuid, registered[3]!.credential)).toBe('connected');
    expect(await refusal(broker.url, stale, 'old-secret')).toBe(NOT_AUTHORIZED);
    // A second reconcile finds nothing to do.
    expect(await s.handle.reconcile()).toEqual({ created: 0, removed: 0 });
  });

  it('a process started without reconcileAtStart (one of a cluster) leaves reconciling to another', async () => {
    const broker = await startMosquitto({ dynsec: { admin: ADMIN } });
    let registered: { uuid: string; credential: string }[] = [];
    s = await setup({ broker, reconcileAtStart: false, beforeStart: (w, t) => (registered = w.devices(t, 2, 'FOLLOWER')) });
    expect(await s.handle.accounts.listClients()).not.toContain(registered[0]!.uuid);
    // Its own registrations are provisioned all the same.
    const [own] = s.w.devices(s.t, 1, 'FOLLOWER-OWN');
    await s.w.services.devices.brokerSettled();
    expect(await refusal(broker.url, own!.uuid, own!.credential)).toBe('connected');
    expect(await s.handle.reconcile()).toEqual({ created: 2, removed: 0 });
  });

  it('a broker that is away never fails a registration; the change is counted and redone when it is back', async () => {
    const broker = await startMosquitto({ dynsec: { admin: ADMIN } });
    s = await setup({ broker });
    const failures = () => s!.w.services.metrics.value(BROKER_ACCOUNT_FAILURES, { op: 'provision' });
    await broker.stop();
    const [d] = s.w.devices(s.t, 1, 'AWAY');
    expect(d!.uuid).toBeTruthy();
    await waitFor(() => failures() >= 1, { what: 'the failed provisioning counted' });
    await broker.restart();
    await waitFor(async () => (await refusal(broker.url, d!.uuid, d!.credential)) === 'connected', {
      what: 'the device provisioned by a later reconcile',
      interval: 200,
    });
  });

  it('the admin connection fails clearly on a wrong admin credential', async () => {
    const broker = await startMosquitto({ dynsec: { admin: ADMIN } });
    try {
      const err = await DynsecAccounts.connect({ url: broker.url, username: ADMIN.username, password: 'wrong' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BrokerAccountsError);
      expect((err as BrokerAccountsError).code).toBe('SERVER_BROKER_UNREACHABLE');
    } finally {
      await broker.close();
    }
  });

  it('works over TLS (mqtts) with a CA made here and the broker certificate issued from it', async () => {
    const ca = await createCa({ commonName: 'dynsec test CA', organization: 'router-fleet tests' });
    const cert = await issueCertificate({
      commonName: 'localhost',
      organization: 'router-fleet tests',
      issuer: ca,
      extKeyUsage: ['serverAuth'],
      subjectAltNames: { dns: ['localhost'], ip: ['127.0.0.1'] },
    });
    const broker = await startMosquitto({ dynsec: { admin: ADMIN }, tls: { certPem: cert.certPem, keyPem: cert.keyPem } });
    const w = world();
    const t = await w.newTenant();
    w.licences(t, 'basic-25', 1);
    const handle = await startBrokerAccounts({
      url: broker.tlsUrl!,
      caPem: ca.certPem,
      adminUsername: ADMIN.username,
      adminPassword: ADMIN.password,
      serverAccount: { username: SERVER_ACCOUNT, password: SERVER_PASSWORD },
      devices: w.services.devices,
      metrics: w.services.metrics,
      logger: silent,
    });
    s = { broker, w, t, handle };
    const [d] = w.devices(t, 1, 'TLS');
    await w.services.devices.brokerSettled();
    const tls = { ca: ca.certPem, rejectUnauthorized: true };
    const server = await serverConsumer(broker.tlsUrl!, mqttBucket(d!.uuid), tls);
    const device = await connect(broker.tlsUrl!, d!.uuid, d!.credential, tls);
    await device.publishAsync(mqttTopics(d!.uuid).up, '{"type":"hello"}', { qos: 1 });
    await waitFor(() => server.got.length === 1, { what: 'the uplink over TLS' });
    // A client that does not trust this CA does not get a connection.
    const untrusted = await refusal(broker.tlsUrl!, d!.uuid, d!.credential, { rejectUnauthorized: true });
    expect(untrusted).not.toBe('connected');
  });
});
