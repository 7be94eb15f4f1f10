import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { createCa, issueCertificate, MQTT_BINDING, mqttBucket, mqttTopics } from '@router-fleet/protocol';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { assignBuckets, type BrokerFleet, fileLimitFor, MOSQUITTO_MISSING, startBrokerFleet } from '../src/brokers.js';
import { floorDevices, runMqttFloor } from '../src/mqtt-floor.js';

describe('bucket sharding', () => {
  it('balances buckets over brokers by device count, every bucket on exactly one broker', () => {
    const counts = Array.from({ length: MQTT_BINDING.buckets }, (_, b) => 100 + ((b * 37) % 50));
    const shards = assignBuckets(counts, 3);
    expect(shards.flat().sort((a, b) => a - b)).toEqual(counts.map((_, b) => b));
    const loads = shards.map((s) => s.reduce((n, b) => n + counts[b]!, 0));
    const total = counts.reduce((a, b) => a + b, 0);
    // Greedy largest-first: no broker more than one bucket's worth above an even share.
    for (const load of loads) expect(load).toBeLessThanOrEqual(total / 3 + Math.max(...counts));
    expect(assignBuckets(counts, 3)).toEqual(shards);
  });

  it('knows the open-file limit a broker gets', () => {
    const n = fileLimitFor(1000);
    expect(n).toBeGreaterThanOrEqual(1000);
  });
});

const connect = (url: string, o: mqtt.IClientOptions) => mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 15_000, ...o });

/** `$SYS/broker/clients/total` of one broker: connected clients plus the disconnected ones whose session it keeps. */
async function clientsTotal(fleet: BrokerFleet, shard: number): Promise<number> {
  const c = await connect(fleet.shards[shard]!.url, { ...fleet.admin, clientId: `probe-${Math.random().toString(36).slice(2)}` });
  try {
    return await new Promise<number>((resolve, reject) => {
      c.on('message', (_t, p) => resolve(Number(p.toString())));
      c.subscribe('$SYS/broker/clients/total', (err) => err && reject(err));
    });
  } finally {
    await c.endAsync(true);
  }
}

describe.skipIf(MOSQUITTO_MISSING)(`brokers of a load test's own and the raw MQTT floor${MOSQUITTO_MISSING ? ` (skipped: ${MOSQUITTO_MISSING})` : ''}`, () => {
  const fleets: BrokerFleet[] = [];
  const dirs: string[] = [];
  afterAll(async () => {
    for (const f of fleets) await f.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('shards the devices over brokers by bucket; a device gets in only at its own broker, with its own credential and topics', async () => {
    const devices = floorDevices(60);
    const fleet = await startBrokerFleet({ devices, devicesPerBroker: 40 });
    fleets.push(fleet);
    expect(fleet.shards.length).toBeGreaterThanOrEqual(2);
    expect(fleet.shards.reduce((n, s) => n + s.devices, 0)).toBe(60);
    for (const s of fleet.shards) expect(s.devices).toBeLessThanOrEqual(40);
    expect(fleet.shards.flatMap((s) => s.buckets).sort((a, b) => a - b)).toEqual(Array.from({ length: MQTT_BINDING.buckets }, (_, b) => b));

    const d = devices[0]!;
    const own = fleet.shardOf(d.deviceId);
    expect(own.buckets).toContain(mqttBucket(d.deviceId));
    const other = fleet.shards.find((s) => s !== own)!;
    await expect(connect(other.url, { clientId: d.deviceId, username: d.deviceId, password: d.credential })).rejects.toThrow(/authori[sz]ed/i);
    await expect(connect(own.url, { clientId: d.deviceId, username: d.deviceId, password: 'not-the-credential' })).rejects.toThrow(/authori[sz]ed/i);

    // The server account reads the device's uplink; the device cannot read past its own down topic.
    const server = await connect(own.url, { ...fleet.server, clientId: 'rf-floor-test-server' });
    await server.subscribeAsync(`${MQTT_BINDING.topicRoot}/${mqttBucket(d.deviceId)}/+/up`, { qos: 1 });
    const got = new Promise<string>((resolve) => server.on('message', (topic) => resolve(topic)));
    const device = await connect(own.url, { clientId: d.deviceId, username: d.deviceId, password: d.credential });
    await expect(device.subscribeAsync('#', { qos: 1 })).rejects.toThrow(/authori[sz]ed/i);
    await device.publishAsync(mqttTopics(d.deviceId).up, 'x', { qos: 1 });
    expect(await got).toBe(mqttTopics(d.deviceId).up);
    await device.endAsync();
    await server.endAsync();

    // Through the hub the shards bridge to: the server's one URL reaches the devices of every shard, both ways.
    expect(fleet.hub).toBeDefined();
    expect(fleet.serverUrl).toBe(fleet.hub!.url);
    const viaHub = await connect(fleet.serverUrl, { ...fleet.server, clientId: 'rf-floor-test-hub' });
    await viaHub.subscribeAsync(`${MQTT_BINDING.topicRoot}/+/+/up`, { qos: 1 });
    const e = devices.find((x) => fleet.shardOf(x.deviceId) === other)!;
    const onOther = mqtt.connect(other.url, { protocolVersion: 5, reconnectPeriod: 0, clientId: e.deviceId, username: e.deviceId, password: e.credential });
    const down = new Promise<string>((resolve) => onOther.on('message', (_t, p) => resolve(p.toString())));
    await new Promise((resolve) => onOther.once('connect', resolve));
    await onOther.subscribeAsync(mqttTopics(e.deviceId).down, { qos: 1 });
    const upAtHub = new Promise<string>((resolve) => viaHub.on('message', (topic) => resolve(topic)));
    // The bridge may still be subscribing at the hub right after start: publish until the uplink arrives.
    await waitFor(async () => {
      await onOther.publishAsync(mqttTopics(e.deviceId).up, 'hello via bridge', { qos: 1 });
      return Promise.race([upAtHub, new Promise<undefined>((r) => setTimeout(() => r(undefined), 500))]);
    }, { what: 'an uplink through the bridge at the hub' });
    expect(await upAtHub).toBe(mqttTopics(e.deviceId).up);
    await waitFor(async () => {
      await viaHub.publishAsync(mqttTopics(e.deviceId).down, 'welcome via bridge', { qos: 1 });
      return Promise.race([down, new Promise<undefined>((r) => setTimeout(() => r(undefined), 500))]);
    }, { what: 'a downlink through the bridge at the device' });
    expect(await down).toBe('welcome via bridge');
    await onOther.endAsync();
    await viaHub.endAsync();

    expect(fleet.rss()).toBeGreaterThan(1_000_000);
    expect(await fleet.heap()).toBeGreaterThan(100_000);
    const dir = fleet.dir;
    await fleet.close();
    fleets.pop();
    expect(existsSync(dir)).toBe(false);
  }, 60_000);

  it('keeps a persistent session across a broker restart: a QoS 1 message queued while the device was away arrives after it', async () => {
    const devices = floorDevices(3);
    const fleet = await startBrokerFleet({ devices });
    fleets.push(fleet);
    const d = devices[1]!;
    const url = fleet.shardOf(d.deviceId).url;
    const opts = { clientId: d.deviceId, username: d.deviceId, password: d.credential, clean: false, properties: { sessionExpiryInterval: 3600 } };
    const first = await connect(url, opts);
    await first.subscribeAsync(mqttTopics(d.deviceId).down, { qos: 1 });
    await first.endAsync();
    const server = await connect(url, { ...fleet.server, clientId: 'rf-floor-test-server' });
    await server.publishAsync(mqttTopics(d.deviceId).down, 'queued offer', { qos: 1 });
    await server.endAsync();
    await fleet.restart();
    // The handler is in place before CONNACK: the broker sends what it queued right after it.
    const again = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 15_000, ...opts });
    const payload = await new Promise<string>((resolve, reject) => {
      again.on('message', (_t, p) => resolve(p.toString()));
      again.on('error', reject);
    });
    expect(payload).toBe('queued offer');
    await again.endAsync();
  }, 60_000);

  it('the floor over TLS: every client connects, makes a hello round trip through the bucket consumer at the hub, and leaves no session behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rf-floor-tls-'));
    dirs.push(dir);
    const ca = await createCa({ commonName: 'Floor Test CA' });
    const cert = await issueCertificate({ commonName: '127.0.0.1', issuer: ca, extKeyUsage: ['serverAuth'], subjectAltNames: { ip: ['127.0.0.1'] } });
    writeFileSync(join(dir, 'broker.crt'), cert.certPem);
    writeFileSync(join(dir, 'broker.key'), cert.keyPem, { mode: 0o600 });
    const devices = floorDevices(200);
    const fleet = await startBrokerFleet({ devices, devicesPerBroker: 120, tls: { certPath: join(dir, 'broker.crt'), keyPath: join(dir, 'broker.key') } });
    fleets.push(fleet);
    expect(fleet.shards.length).toBe(2);
    expect(fleet.hub).toBeDefined();
    const before = await Promise.all(fleet.shards.map((_, i) => clientsTotal(fleet, i)));
    expect(fleet.shards[0]!.deviceUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    // A client that does not trust the CA gets nowhere.
    await expect(runMqttFloor({ brokers: fleet, devices: devices.slice(0, 1), processes: 1 })).resolves.toMatchObject({ clients: 0, failed: 1 });
    const result = await runMqttFloor({ brokers: fleet, devices, processes: 2, window: 20, sourceAddresses: 2, caPem: ca.certPem });
    expect(result.errors).toEqual([]);
    expect(result.transport).toBe('mqtts');
    expect(result.clients).toBe(200);
    expect(result.failed).toBe(0);
    expect(result.answered).toBe(200);
    expect(result.roundTripMs.count).toBe(200);
    expect(result.connectMs.count).toBe(200);
    expect(result.connectsPerSec).toBeGreaterThan(0);
    expect(result.brokers).toBe(2);
    // 200 persistent sessions with a subscription each: the brokers' heap grows with every one.
    expect(result.brokerHeapBytesPerClient).toBeGreaterThan(200);
    expect(result.brokerHeap.loaded).toBeGreaterThan(result.brokerHeap.idle);
    // The clients ended their sessions (MQTT 5 session expiry 0 at DISCONNECT): the brokers keep nothing of the floor.
    await waitFor(async () => {
      const after = await Promise.all(fleet.shards.map((_, i) => clientsTotal(fleet, i)));
      return after.every((n, i) => n <= before[i]!);
    }, { timeout: 20_000, what: 'the floor clients’ sessions gone from the brokers' });
  }, 120_000);
});
