import { CloseCodes, createMessage, MQTT_BINDING, mqttTopics } from '@router-fleet/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import type { DynsecClient, DynsecRole } from '../src/channel/mqtt/mosquitto-files.js';
import { type ChannelWorld, channelWorld } from './helpers/channel-world.js';
import { type MosquittoBroker, MOSQUITTO_MISSING, startMosquitto } from './helpers/mosquitto.js';
import { MqttDevice } from './helpers/mqtt-device.js';
import { removeTempDirs, tempDir, world } from './helpers/setup.js';

let worlds: ChannelWorld[] = [];
let devices: MqttDevice[] = [];
let brokers: MosquittoBroker[] = [];
afterEach(async () => {
  for (const d of devices) await d.end().catch(() => undefined);
  devices = [];
  for (const w of worlds) await w.stop().catch(() => undefined);
  worlds = [];
  for (const b of brokers) await b.close();
  brokers = [];
  removeTempDirs();
});

const SERVER_PASSWORD = 'server-secret-for-tests';
const root = MQTT_BINDING.topicRoot;

/** The server's account and one client + role per device, as the dynamic-security plugin holds them. */
function accounts(ids: { uuid: string; credential: string }[]): { clients: DynsecClient[]; roles: DynsecRole[] } {
  const clients: DynsecClient[] = [{ username: 'rf-server', password: SERVER_PASSWORD, roles: ['rf-server'] }];
  const roles: DynsecRole[] = [
    {
      rolename: 'rf-server',
      acls: [
        { acltype: 'subscribePattern', topic: `${root}/+/+/up`, allow: true },
        { acltype: 'subscribePattern', topic: `${root}/+/+/presence`, allow: true },
        { acltype: 'publishClientReceive', topic: `${root}/+/+/up`, allow: true },
        { acltype: 'publishClientReceive', topic: `${root}/+/+/presence`, allow: true },
        { acltype: 'publishClientSend', topic: `${root}/+/+/down`, allow: true },
      ],
    },
  ];
  for (const id of ids) {
    const t = mqttTopics(id.uuid);
    clients.push({ username: id.uuid, clientid: id.uuid, password: id.credential, roles: [`rf-device-${id.uuid}`] });
    roles.push({
      rolename: `rf-device-${id.uuid}`,
      acls: [
        { acltype: 'publishClientSend', topic: t.up, allow: true },
        { acltype: 'publishClientSend', topic: t.presence, allow: true },
        { acltype: 'subscribeLiteral', topic: t.down, allow: true },
        { acltype: 'publishClientReceive', topic: t.down, allow: true },
      ],
    });
  }
  return { clients, roles };
}

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
    worlds = worlds.filter((w) => w !== first);
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

  it('the server\'s account is refused with a wrong password: the start fails with a clear error', async () => {
    const broker = await startMosquitto({ dynsec: { admin: { username: 'admin', password: 'admin-secret' }, ...accounts([]) } });
    brokers.push(broker);
    await expect(channelWorld({ mqttUrl: broker.url, mqttPassword: 'wrong' })).rejects.toThrow(/refused the server's credential/);
  });
});
