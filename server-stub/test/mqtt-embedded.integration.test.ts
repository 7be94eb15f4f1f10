import { CloseCodes, createMessage, mqttTopics } from '@router-fleet/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { SECOND } from '../src/clock.js';
import { type ChannelWorld, channelWorld } from './helpers/channel-world.js';
import { MqttDevice } from './helpers/mqtt-device.js';
import { generateLocalTls } from '../src/pki/local-tls.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';

let worlds: ChannelWorld[] = [];
let devices: MqttDevice[] = [];
afterEach(async () => {
  for (const d of devices) await d.end().catch(() => undefined);
  devices = [];
  for (const w of worlds) await w.stop();
  worlds = [];
  removeTempDirs();
});

async function open(flags = {}): Promise<{ w: ChannelWorld; url: string }> {
  const w = await channelWorld({ mqtt: 'embedded', mqttPort: 0, ...flags });
  worlds.push(w);
  const url = w.server.mqtt?.broker?.url;
  if (!url) throw new Error('no embedded broker');
  return { w, url };
}

async function device(url: string, id: { uuid: string; serialNumber: string; credential: string }, options = {}): Promise<MqttDevice> {
  const d = new MqttDevice(id);
  devices.push(d);
  await d.connect(url, options);
  return d;
}

const leases = (w: ChannelWorld) =>
  w.services.store.stmt('SELECT COUNT(*) AS n FROM leases WHERE released_at IS NOT NULL').get() as { n: number };

describe('MQTT control channel with the embedded broker (MQTT 3.1.1)', () => {
  it('hello → welcome managed; status is stored and shown by the REST API; ping is answered', async () => {
    const { w, url } = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [r] = w.devices(t, 1);
    const d = await device(url, r!);
    const welcome = await d.admit();
    expect(welcome.body).toMatchObject({ admission: 'managed', deviceId: r!.uuid });
    await d.status('10.4.0');
    await d.roundTrip();
    expect(w.server.app.channel.isConnected(r!.uuid)).toBe(true);
    w.server.app.channel.flush();
    w.services.admission.presence.flush();
    const token = await w.login(t);
    const st = await w.req('GET', `/api/inventory/managed-devices/${r!.uuid}/status`, { token });
    expect(st.json()).toMatchObject({ hello: { model: 'MRX5 LTE' }, status: { firmwareVersion: '10.4.0' } });
    const dev = await w.req('GET', `/api/inventory/managed-devices/${r!.uuid}`, { token });
    expect(dev.json()).toMatchObject({ status: 'online', firmware: '10.4.0' });
  });

  it('a wrong credential, an unknown device and a client id other than the device id are refused at CONNECT', async () => {
    const { w, url } = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [r, other] = w.devices(t, 2);
    await expect(device(url, r!, { password: 'x'.repeat(43) })).rejects.toThrow(/Bad username or password|Not authorized/i);
    await expect(device(url, { ...r!, uuid: 'no-such-device' })).rejects.toThrow(/Bad username or password|Not authorized/i);
    await expect(device(url, r!, { clientId: other!.uuid })).rejects.toThrow(/Not authorized|Bad username/i);
    // The server's own account with a guessed password is refused too.
    await expect(
      new MqttDevice({ uuid: 'rf-server', serialNumber: 'x', credential: 'guess' }).connect(url, { clientId: 'rf-server-b0', subscribe: false }),
    ).rejects.toThrow(/Bad username or password/i);
  });

  it('a device gets nothing through on another device\'s topics: its publish is dropped with its connection, `#` and another down topic are not granted', async () => {
    const { w, url } = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 2);
    const [a, b] = w.devices(t, 2);
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
    expect(granted).toEqual([128, 128, 128]);
    // a's pong goes to a's down topic; b's own round trip after it proves b would have had it by then.
    const ping = createMessage('ping', {});
    await da.publish(ping);
    await da.next('pong', (m) => m.correlationId === ping.id);
    await db.roundTrip();
    expect(db.received.filter((m) => m.correlationId === ping.id)).toEqual([]);
    // b publishes a status on a's up topic: the broker drops it and disconnects b.
    const closed = new Promise<void>((resolve) => db.client.once('close', () => resolve()));
    void db.client.publishAsync(mqttTopics(a!.uuid).up, JSON.stringify(createMessage('status', {
      uptimeSec: 1, link: { type: 'ethernet', up: true }, firmwareVersion: '6.6.6', certificates: [], containers: [],
    })), { qos: 1 }).catch(() => undefined);
    await closed;
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
    const { w, url } = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [a, b] = w.devices(t, 2);
    await (await device(url, a!)).admit();
    const db = await device(url, b!);
    const welcome = await db.admit();
    expect(welcome.body).toMatchObject({ admission: 'rejected', reason: 'LICENCE_UNAVAILABLE' });
    expect((await db.nextClose()).code).toBe(CloseCodes.REJECTED);
  });

  it('the will (offline) ends the session and starts the lease grace; a waiting device gets the seat after the grace', async () => {
    const { w, url } = await open({ leaseGraceSec: 300 });
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [a, b] = w.devices(t, 2);
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
    const { w, url } = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [r] = w.devices(t, 1);
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
    const { w, url } = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [r] = w.devices(t, 1);
    const d = await device(url, r!);
    await d.publish(createMessage('ping', {}));
    expect((await d.nextClose()).code).toBe(CloseCodes.HELLO_REQUIRED);
    expect((await d.admit()).body.admission).toBe('managed');
  });

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
});
