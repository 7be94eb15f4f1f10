import { CloseCodes, createMessage } from '@router-fleet/protocol';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { channelWorld } from './helpers/channel-world.js';
import { MOSQUITTO_MISSING, mosquittoTestParts, startMosquitto } from './helpers/mosquitto.js';
import { MqttDevice } from './helpers/mqtt-device.js';
import { dynsecAccounts as accounts, mqttWorld, SERVER_PASSWORD } from './helpers/mqtt-world.js';
import { readFileSync } from 'node:fs';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { generateLocalTls } from '../src/pki/local-tls.js';
import { tempDir, world } from './helpers/setup.js';

const { worlds, devices, brokers } = mosquittoTestParts();

describe.skipIf(MOSQUITTO_MISSING)(`MQTT control channel through a real Mosquitto (MQTT 5)${MOSQUITTO_MISSING ? `: ${MOSQUITTO_MISSING}` : ''}`, () => {
  it('server restart while the broker stays up: devices say hello again and are served; a hello queued meanwhile is processed', async () => {
    const dataDir = tempDir();
    // Devices registered before the broker starts (its dynamic-security file lists them).
    const setup = world({}, dataDir);
    const t = await setup.newTenant();
    setup.licences(t, 'basic-1', 3);
    const ids = setup.devices(t, 3);
    setup.close();
    const broker = await startMosquitto({ dynsec: { admin: { username: 'admin', password: 'admin-secret' }, ...accounts(ids) } });
    brokers.push(broker);
    const flags = { mqttUrl: broker.url, mqttPassword: SERVER_PASSWORD };
    const first = await channelWorld(flags, dataDir);
    worlds.push(first);
    expect(first.server.mqtt?.protocolVersion).toBe(5);

    const [a, b, c] = await Promise.all(ids.map(async (id) => {
      const d = new MqttDevice(id);
      devices.push(d);
      await d.connect(broker.url, { protocolVersion: 5 });
      return d;
    }));
    for (const d of [a!, b!, c!]) expect((await d.admit()).body.admission).toBe('managed');
    await a!.status('10.4.0');
    await a!.roundTrip();

    // The server goes away; the broker (and the devices' MQTT connections) stay.
    await first.stop();
    worlds.splice(worlds.indexOf(first), 1);
    for (const d of [a!, b!, c!]) expect((await d.nextClose()).code).toBe(CloseCodes.GOING_AWAY);
    // a says hello while no server consumes: the broker queues it in the server's bucket session.
    const queuedHello = a!.hello();

    const second = await channelWorld(flags, dataDir);
    worlds.push(second);
    const welcome = await a!.next('welcome', (m) => m.correlationId === queuedHello.id);
    expect(welcome.body.admission).toBe('managed');
    // b comes back with a new hello; c, which did not hear of the restart, talks on: told to say hello.
    expect((await b!.admit()).body.admission).toBe('managed');
    await c!.publish(createMessage('ping', {}));
    expect((await c!.nextClose()).code).toBe(CloseCodes.HELLO_REQUIRED);
    expect((await c!.admit()).body.admission).toBe('managed');
    await a!.status('10.5.0');
    await a!.roundTrip();
    second.server.app.channel.flush();
    const token = await second.login(t);
    const st = await second.req('GET', `/api/inventory/managed-devices/${ids[0]!.uuid}/status`, { token });
    expect(st.json()).toMatchObject({ status: { firmwareVersion: '10.5.0' } });
    expect(second.server.app.channel.size).toBe(3);
  });

  it('a broker restart is logged as one warning when lost and one line when back with the outage, not per bucket client per retry', async () => {
    // Every line the server logs, debug included (the retries show there: the positive signal).
    const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
    const m = await mqttWorld('mosquitto', { licences: 2, devices: 2, flags: { mqttAdminUsername: 'admin', mqttAdminPassword: 'admin-secret' }, logger });
    worlds.push(m.w);
    const broker = m.broker!;
    brokers.push(broker);
    const ids = m.ids;
    for (const id of ids) {
      const d = new MqttDevice(id);
      devices.push(d);
      await d.connect(broker.url, { protocolVersion: 5 });
      expect((await d.admit()).body.admission).toBe('managed');
    }
    const from = lines.length;
    const since = () => lines.slice(from);
    await broker.stop();
    await waitFor(() => since().find((l) => l.msg.startsWith('MQTT: lost the broker')), { what: 'the outage warning', timeout: 20_000 });
    // The bucket clients retry (each is refused at least twice) while the broker is away.
    await waitFor(() => since().filter((l) => l.msg === 'MQTT: bucket client error').length >= 128, { what: 'the bucket clients\' retries', timeout: 60_000 });
    await broker.restart();
    const back = await waitFor(() => since().find((l) => l.msg === 'MQTT: the broker is back; every bucket client subscribed'), { what: 'the broker back', timeout: 30_000 });
    expect(back['outageMs']).toBeGreaterThan(1000);
    // Info and above: one warning for the outage, and no line repeated per bucket client (64 of
    // them retried): each message at most twice (the admin link's reconcile may log its own).
    const told = since().filter((l) => l.level >= 30);
    expect(told.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual(['MQTT: lost the broker; the bucket clients reconnect and the links of their buckets end']);
    const times = new Map<string, number>();
    for (const l of told) times.set(l.msg, (times.get(l.msg) ?? 0) + 1);
    expect(Math.max(...times.values()), JSON.stringify(told.map((l) => l.msg))).toBeLessThanOrEqual(2);
  });

  it('the server provisions the broker: a device registered over the API connects with its profile\'s credential; a deleted one is refused', async () => {
    const broker = await startMosquitto({ dynsec: { admin: { username: 'admin', password: 'admin-secret' }, ...accounts([]) } });
    brokers.push(broker);
    const w = await channelWorld({
      mqttUrl: broker.url,
      mqttPassword: SERVER_PASSWORD,
      mqttAdminUsername: 'admin',
      mqttAdminPassword: 'admin-secret',
      deviceTransport: 'mqtt',
    });
    worlds.push(w);
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const token = await w.login(t);
    const created = await w.req('POST', '/api/inventory/managed-devices', { token, body: { serialNumber: 'MQTT-PROV-1' } });
    expect(created.statusCode).toBe(201);
    const uuid = (created.json() as { uuid: string }).uuid;
    const profile = (await w.req('GET', `/api/inventory/managed-devices/${uuid}/connection-profile?format=json`, { token })).json() as {
      serverUrl: string;
      credential: string;
      mqttVersion?: number;
    };
    expect(profile).toMatchObject({ serverUrl: broker.url, mqttVersion: 5 });
    const d = new MqttDevice({ uuid, serialNumber: 'MQTT-PROV-1', credential: profile.credential });
    devices.push(d);
    // Provisioning runs after the registration's commit: the device gets in once it is there.
    await waitFor(async () => {
      try {
        await d.connect(broker.url, { protocolVersion: 5 });
        return true;
      } catch {
        return false;
      }
    }, { what: 'the registered device accepted by the broker' });
    expect((await d.admit()).body.admission).toBe('managed');

    expect((await w.req('DELETE', `/api/inventory/managed-devices/${uuid}`, { token })).statusCode).toBe(204);
    // The broker drops the deleted device's connection and refuses it from then on.
    await waitFor(() => !d.client.connected, { what: 'the deleted device disconnected by the broker' });
    const again = new MqttDevice({ uuid, serialNumber: 'MQTT-PROV-1', credential: profile.credential });
    devices.push(again);
    await waitFor(async () => {
      try {
        await again.connect(broker.url, { protocolVersion: 5 });
        await again.end();
        return false;
      } catch {
        return true;
      }
    }, { what: 'the deleted device refused by the broker' });
  });

  it('the server\'s account is refused with a wrong password: the start fails with a clear error', async () => {
    const broker = await startMosquitto({ dynsec: { admin: { username: 'admin', password: 'admin-secret' }, ...accounts([]) } });
    brokers.push(broker);
    await expect(channelWorld({ mqttUrl: broker.url, mqttPassword: 'wrong' })).rejects.toThrow(/refused the server's credential/);
  });

  it('a server account without its role (no right to subscribe to the buckets): the start fails naming the role', async () => {
    const { clients } = accounts([]);
    const broker = await startMosquitto({ dynsec: { admin: { username: 'admin', password: 'admin-secret' }, clients, roles: [{ rolename: 'rf-server', acls: [] }] } });
    brokers.push(broker);
    await expect(channelWorld({ mqttUrl: broker.url, mqttPassword: SERVER_PASSWORD })).rejects.toThrow(/refused the server's subscription .*check the role/);
  });

  it('mqtts to the external broker: verified with mqttCa; a broker the CA does not vouch for is not used', async () => {
    const dataDir = tempDir();
    const setup = world({}, dataDir);
    const t = await setup.newTenant();
    setup.licences(t, 'basic-1', 1);
    const ids = setup.devices(t, 1);
    setup.close();
    const tls = await generateLocalTls(tempDir(), { hosts: ['localhost'], ips: ['127.0.0.1'] });
    const broker = await startMosquitto({
      dynsec: { admin: { username: 'admin', password: 'admin-secret' }, ...accounts(ids) },
      tls: { certPem: readFileSync(tls.cert, 'utf8'), keyPem: readFileSync(tls.key, 'utf8') },
    });
    brokers.push(broker);
    const w = await channelWorld({ mqttUrl: broker.tlsUrl!, mqttPassword: SERVER_PASSWORD, mqttCa: tls.caCert }, dataDir);
    worlds.push(w);
    const d = new MqttDevice(ids[0]!);
    devices.push(d);
    await d.connect(broker.tlsUrl!, { protocolVersion: 5, ca: readFileSync(tls.caCert, 'utf8') });
    expect((await d.admit()).body.admission).toBe('managed');
    // Without the CA the start fails with a clear error (the broker's certificate is a local CA's).
    await expect(channelWorld({ mqttUrl: broker.tlsUrl!, mqttPassword: SERVER_PASSWORD }, tempDir())).rejects.toThrow(/not trusted .*mqttCa/);
    // 64 bucket clients' TLS handshakes, twice: minutes on a loaded 2-core machine.
  }, 180_000);
});
