import { Socket } from 'node:net';
import { CloseCodes, createMessage, MQTT_MAX_PACKET_BYTES, mqttTopics } from '@router-fleet/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { SECOND } from '../src/clock.js';
import { generateLocalTls } from '../src/pki/local-tls.js';
import { type ChannelWorld, channelWorld } from './helpers/channel-world.js';
import { MOSQUITTO_MISSING } from './helpers/mosquitto.js';
import { type MqttDeviceOptions, MqttDevice } from './helpers/mqtt-device.js';
import { type BrokerKind, type MqttWorld, mqttWorld } from './helpers/mqtt-world.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';

let worlds: { stop(): Promise<void> }[] = [];
let devices: MqttDevice[] = [];
afterEach(async () => {
  for (const d of devices) await d.end().catch(() => undefined);
  devices = [];
  for (const w of worlds) await w.stop();
  worlds = [];
  removeTempDirs();
});

const leases = (w: ChannelWorld) =>
  w.services.store.stmt('SELECT COUNT(*) AS n FROM leases WHERE released_at IS NOT NULL').get() as { n: number };

/** The same suite against the embedded broker (MQTT 3.1.1) and a real Mosquitto (MQTT 5, dynamic security). */
const BROKERS: { kind: BrokerKind; name: string; skip: string | undefined }[] = [
  { kind: 'embedded', name: 'the embedded broker (MQTT 3.1.1)', skip: undefined },
  { kind: 'mosquitto', name: `a real Mosquitto (MQTT 5)${MOSQUITTO_MISSING ? `: ${MOSQUITTO_MISSING}` : ''}`, skip: MOSQUITTO_MISSING },
];

for (const { kind, name, skip } of BROKERS) {
  describe.skipIf(skip)(`MQTT control channel with ${name}`, () => {
    let m: MqttWorld;
    const open = async (licences: number, count: number, flags = {}) => {
      m = await mqttWorld(kind, { licences, devices: count, flags });
      worlds.push(m);
      return { w: m.w, url: m.url, t: m.t, ids: m.ids };
    };
    const device = async (_url: string, id: { uuid: string; serialNumber: string; credential: string }, options: MqttDeviceOptions = {}) => {
      const d = new MqttDevice(id);
      devices.push(d);
      await d.connect(m.url, { protocolVersion: m.protocolVersion, ...options });
      return d;
    };

    it('hello → welcome managed; status is stored and shown by the REST API; ping is answered', async () => {
      const { w, url, t, ids: [r] } = await open(1, 1);
      const d = await device(url, r!);
      const welcome = await d.admit();
      expect(welcome.body).toMatchObject({ admission: 'managed', deviceId: r!.uuid });
      await d.status('10.4.0');
      await d.roundTrip();
      expect(w.server.app.channel.isConnected(r!.uuid)).toBe(true);
      // MQTT 5: downlinks expire by type (a welcome after 300 s, a pong after 120 s); 3.1.1 has no expiry.
      const pong = d.received.find((x) => x.type === 'pong')!;
      if (m.protocolVersion === 5) {
        expect(d.expiries.get(welcome.id)).toBeGreaterThan(250);
        expect(d.expiries.get(welcome.id)).toBeLessThanOrEqual(300);
        expect(d.expiries.get(pong.id)).toBeLessThanOrEqual(120);
      } else {
        expect(d.expiries.get(welcome.id)).toBeUndefined();
      }
      w.server.app.channel.flush();
      w.services.admission.presence.flush();
      const token = await w.login(t);
      const st = await w.req('GET', `/api/inventory/managed-devices/${r!.uuid}/status`, { token });
      expect(st.json()).toMatchObject({ hello: { model: 'MRX5 LTE' }, status: { firmwareVersion: '10.4.0' } });
      const dev = await w.req('GET', `/api/inventory/managed-devices/${r!.uuid}`, { token });
      expect(dev.json()).toMatchObject({ status: 'online', firmware: '10.4.0' });
    });

    it('a wrong credential, an unknown device and a client id other than the device id are refused at CONNECT', async () => {
      const { url, ids: [r, other] } = await open(1, 2);
      await expect(device(url, r!, { password: 'x'.repeat(43) })).rejects.toThrow(/bad user ?name or password|not authorized/i);
      await expect(device(url, { ...r!, uuid: 'no-such-device' })).rejects.toThrow(/bad user ?name or password|not authorized/i);
      await expect(device(url, r!, { clientId: other!.uuid })).rejects.toThrow(/bad user ?name or password|not authorized/i);
      // The server's own account with a guessed password is refused too.
      await expect(
        new MqttDevice({ uuid: 'rf-server', serialNumber: 'x', credential: 'guess' }).connect(url, { clientId: 'rf-server-b0', subscribe: false }),
      ).rejects.toThrow(/bad user ?name or password|not authorized/i);
    });

    it('a device gets nothing through on another device\'s topics: its publish is dropped, `#` and another down topic are not granted', async () => {
      const { w, url, t, ids: [a, b] } = await open(2, 2);
      const da = await device(url, a!);
      await da.admit();
      const db = await device(url, b!);
      await db.admit();
      // b subscribes to everything, to a's down topic and to all uplinks: none is granted (0x80).
      const granted = await new Promise<unknown>((resolve) => {
        // The SUBACK itself (the library reports a refusal as an error with the requested grants).
        const onPacket = (p: { cmd: string; granted?: unknown }) => {
          if (p.cmd !== 'suback') return;
          db.client.off('packetreceive', onPacket);
          resolve(p.granted);
        };
        db.client.on('packetreceive', onPacket);
        db.client.subscribe(['#', mqttTopics(a!.uuid).down, 'rf/v1/+/+/up'], { qos: 1 }, () => undefined);
      });
      // Refused grants: 0x80 (MQTT 3.1.1) or 0x87 not authorized (MQTT 5).
      expect((granted as number[]).map((g) => g >= 0x80)).toEqual([true, true, true]);
      // a's pong goes to a's down topic; b's own round trip after it proves b would have had it by then.
      const ping = createMessage('ping', {});
      await da.publish(ping);
      await da.next('pong', (m) => m.correlationId === ping.id);
      await db.roundTrip();
      expect(db.received.filter((m) => m.correlationId === ping.id)).toEqual([]);
      // b publishes a status on a's up topic: the broker drops it (the embedded one with b's
      // connection, MQTT 3.1.1 having no refusal; Mosquitto answers the PUBACK with 0x87).
      const closed = new Promise<void>((resolve) => db.client.once('close', () => resolve()));
      const published = db.client.publishAsync(mqttTopics(a!.uuid).up, JSON.stringify(createMessage('status', {
        uptimeSec: 1, link: { type: 'ethernet', up: true }, firmwareVersion: '6.6.6', certificates: [], containers: [],
      })), { qos: 1 }).catch(() => undefined);
      await Promise.race([closed, published]);
      // a's own traffic still flows, and b's status never became a's.
      await da.status('10.4.0');
      await da.roundTrip();
      w.server.app.channel.flush();
      const token = await w.login(t);
      const st = await w.req('GET', `/api/inventory/managed-devices/${a!.uuid}/status`, { token });
      expect(st.json()).toMatchObject({ status: { firmwareVersion: '10.4.0' } });
      expect(w.services.store.stmt('SELECT COUNT(*) AS n FROM device_status WHERE status LIKE \'%6.6.6%\'').get()).toEqual({ n: 0 });
    });

    it('licences run out: the hello gets welcome rejected and close frame 4004', async () => {
      const { url, ids: [a, b] } = await open(1, 2);
      await (await device(url, a!)).admit();
      const db = await device(url, b!);
      const welcome = await db.admit();
      expect(welcome.body).toMatchObject({ admission: 'rejected', reason: 'LICENCE_UNAVAILABLE' });
      expect((await db.nextClose()).code).toBe(CloseCodes.REJECTED);
    });

    it('the will (offline) ends the session and starts the lease grace; a waiting device gets the seat after the grace', async () => {
      const { w, url, ids: [a, b] } = await open(1, 2, { leaseGraceSec: 300 });
      const da = await device(url, a!);
      await da.admit();
      da.drop();
      await waitFor(() => !w.server.app.channel.isConnected(a!.uuid), { what: 'the session of a ended by its will', timeout: 10_000 });
      await waitFor(() => leases(w).n === 1, { what: 'a\'s lease released into its grace period', timeout: 10_000 });
      const db = await device(url, b!);
      const rejected = await db.admit();
      expect(rejected.body).toMatchObject({ admission: 'rejected' });
      expect(rejected.body.retryAfterSec).toBeLessThanOrEqual(300);
      w.advance(301 * SECOND);
      await w.services.admission.sweep();
      const again = await device(url, b!);
      expect((await again.admit()).body.admission).toBe('managed');
    });

    it('a second hello (a new MQTT connection of the device) replaces the first link; the device keeps its seat and gets no 4009', async () => {
      const { w, url, ids: [r] } = await open(1, 1);
      const first = await device(url, r!);
      await first.admit();
      // A new connection with the same client id takes the session over (the broker ends the first).
      const second = new MqttDevice(r!);
      devices.push(second);
      await second.connect(url);
      expect((await second.admit()).body.admission).toBe('managed');
      await second.roundTrip();
      expect(w.server.mqtt?.consumer.links).toBe(1);
      expect(w.server.app.channel.size).toBe(1);
      expect(second.closes).toEqual([]);
      // The first connection's late will (another link id) does not end the second's session.
      await waitFor(() => first.client.disconnected || !first.client.connected, { what: 'the first connection taken over' });
      await second.roundTrip();
      expect(w.server.app.channel.isConnected(r!.uuid)).toBe(true);
    });

    it('an uplink other than hello on a link the server does not know: HELLO_REQUIRED close frame (4001)', async () => {
      const { url, ids: [r] } = await open(1, 1);
      const d = await device(url, r!);
      await d.publish(createMessage('ping', {}));
      expect((await d.nextClose()).code).toBe(CloseCodes.HELLO_REQUIRED);
      expect((await d.admit()).body.admission).toBe('managed');
    });

    it('deleting a device over the REST API ends its MQTT connection and its session; it cannot connect again', async () => {
      // Mosquitto: the server keeps its device accounts (dynamic security) and deletes the device's.
      const admin = kind === 'mosquitto' ? { mqttAdminUsername: 'admin', mqttAdminPassword: 'admin-secret' } : {};
      const { w, url, t, ids: [r, other] } = await open(2, 2, admin);
      const d = await device(url, r!);
      expect((await d.admit()).body.admission).toBe('managed');
      const o = await device(url, other!);
      expect((await o.admit()).body.admission).toBe('managed');
      const closed = new Promise<void>((resolve) => d.client.once('close', () => resolve()));
      const token = await w.login(t);
      expect((await w.req('DELETE', `/api/inventory/managed-devices/${r!.uuid}`, { token })).statusCode).toBe(204);
      await closed;
      await waitFor(() => !w.server.app.channel.isConnected(r!.uuid), { what: 'the deleted device\'s session ended', timeout: 10_000 });
      await expect(device(url, r!)).rejects.toThrow(/bad user ?name or password|not authorized/i);
      // The other device is served on.
      await o.roundTrip();
      expect(w.server.app.channel.isConnected(other!.uuid)).toBe(true);
    });
  });
}

describe('MQTT control channel with the embedded broker: TLS and limits', () => {
  async function open(flags = {}): Promise<{ w: ChannelWorld; url: string }> {
    const w = await channelWorld({ mqtt: 'embedded', mqttPort: 0, ...flags });
    worlds.push(w);
    const url = w.server.mqtt?.broker?.url;
    if (!url) throw new Error('no embedded broker');
    return { w, url };
  }
  async function device(url: string, id: { uuid: string; serialNumber: string; credential: string }, options: MqttDeviceOptions = {}): Promise<MqttDevice> {
    const d = new MqttDevice(id);
    devices.push(d);
    await d.connect(url, options);
    return d;
  }

  it('TLS with the server\'s certificate: profiles name the broker (mqtts, MQTT 3.1.1), packet URLs stay on the HTTPS base', async () => {
    const dataDir = tempDir();
    const tls = await generateLocalTls(dataDir, { hosts: ['localhost'], ips: ['127.0.0.1'] });
    const w = await channelWorld({ tlsCert: tls.cert, tlsKey: tls.key, mqtt: 'embedded', mqttPort: 0, deviceTransport: 'mqtt' }, dataDir);
    worlds.push(w);
    const broker = w.server.mqtt!.broker!;
    expect(broker.tls).toBe(true);
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [r] = w.devices(t, 1);
    const token = await w.login(t);
    const profile = (await w.req('GET', `/api/inventory/managed-devices/${r!.uuid}/connection-profile?format=json`, { token })).json() as {
      serverUrl: string;
      mqttVersion?: number;
      caCertPem: string;
    };
    expect(profile.serverUrl).toBe(`mqtts://127.0.0.1:${broker.port}`);
    expect(profile.mqttVersion).toBe(4);
    const httpPort = new URL(w.server.url).port;
    expect(w.services.profiles.httpBaseUrl()).toBe(`https://127.0.0.1:${httpPort}`);
    expect(w.services.jobs.publicBaseUrl).toBe(`https://127.0.0.1:${httpPort}`);
    // The device verifies the broker with the profile's CA; without it the handshake fails.
    await expect(device(profile.serverUrl, r!)).rejects.toThrow();
    const d = await device(profile.serverUrl, r!, { ca: profile.caCertPem });
    expect((await d.admit()).body.admission).toBe('managed');
  });

  it('a deleted device cannot connect: the broker asks the store at every CONNECT', async () => {
    const { w, url } = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [r] = w.devices(t, 1);
    const d = await device(url, r!);
    expect((await d.admit()).body.admission).toBe('managed');
    await d.end();
    const token = await w.login(t);
    expect((await w.req('DELETE', `/api/inventory/managed-devices/${r!.uuid}`, { token })).statusCode).toBe(204);
    await expect(device(url, r!)).rejects.toThrow(/bad user ?name or password|not authorized/i);
  });

  it('a packet larger than the binding allows ends its connection at its header (before CONNECT and after)', async () => {
    const { w, url } = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [r] = w.devices(t, 1);
    const port = Number(new URL(url).port);
    // A CONNECT declaring 256 MiB: the connection is closed without waiting for the body.
    const raw = new Socket();
    const rawClosed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.on('error', () => undefined);
    raw.connect(port, '127.0.0.1', () => raw.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f])));
    await rawClosed;
    // An authenticated device publishing one byte too many is disconnected; its next connection works.
    const d = await device(url, r!);
    const closed = new Promise<void>((resolve) => d.client.once('close', () => resolve()));
    void d.client.publishAsync(d.topics.up, Buffer.alloc(MQTT_MAX_PACKET_BYTES, 0x20), { qos: 1 }).catch(() => undefined);
    await closed;
    const again = await device(url, r!);
    expect((await again.admit()).body.admission).toBe('managed');
  });
});
