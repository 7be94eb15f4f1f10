import { MQTT_BINDING, type MqttProtocolVersion, mqttTopics } from '@router-fleet/protocol';
import type { Logger } from 'pino';
import type { DynsecClient, DynsecRole } from '../../src/channel/mqtt/mosquitto-files.js';
import type { ConfigInput } from '../../src/config.js';
import { type ChannelWorld, channelWorld } from './channel-world.js';
import type { DeviceIdentity } from './fake-device.js';
import { type MosquittoBroker, startMosquitto } from './mosquitto.js';
import { type Tenant, tempDir, world } from './setup.js';

export const SERVER_PASSWORD = 'server-secret-for-tests';
const root = MQTT_BINDING.topicRoot;

/** The server's account and one client + role per device, as the dynamic-security plugin holds them. */
export function dynsecAccounts(ids: { uuid: string; credential: string }[]): { clients: DynsecClient[]; roles: DynsecRole[] } {
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

export type BrokerKind = 'embedded' | 'mosquitto';

export interface MqttWorld {
  w: ChannelWorld;
  /** The broker URL devices dial. */
  url: string;
  protocolVersion: MqttProtocolVersion;
  t: Tenant;
  ids: DeviceIdentity[];
  broker: MosquittoBroker | undefined;
  stop(): Promise<void>;
}

/**
 * A server serving the control channel over MQTT with a tenant, `licences` Basic-1 seats and
 * `devices` registered routers: with the embedded broker (MQTT 3.1.1), or with a real Mosquitto
 * (MQTT 5, dynamic security) whose file lists the server's account and the devices before it starts.
 */
export async function mqttWorld(kind: BrokerKind, opts: { licences: number; devices: number; flags?: ConfigInput; logger?: Logger }): Promise<MqttWorld> {
  const dataDir = tempDir();
  if (kind === 'embedded') {
    const w = await channelWorld({ mqtt: 'embedded', mqttPort: 0, ...opts.flags }, dataDir, opts.logger);
    const t = await w.newTenant();
    if (opts.licences > 0) w.licences(t, 'basic-1', opts.licences);
    const ids = w.devices(t, opts.devices);
    const url = w.server.mqtt?.broker?.url;
    if (!url) throw new Error('no embedded broker');
    return { w, url, protocolVersion: 4, t, ids, broker: undefined, stop: () => w.stop() };
  }
  const setup = world({}, dataDir);
  const t = await setup.newTenant();
  if (opts.licences > 0) setup.licences(t, 'basic-1', opts.licences);
  const ids = setup.devices(t, opts.devices);
  setup.close();
  const broker = await startMosquitto({ dynsec: { admin: { username: 'admin', password: 'admin-secret' }, ...dynsecAccounts(ids) } });
  try {
    const w = await channelWorld({ mqttUrl: broker.url, mqttPassword: SERVER_PASSWORD, ...opts.flags }, dataDir, opts.logger);
    return {
      w,
      url: broker.url,
      protocolVersion: 5,
      t,
      ids,
      broker,
      async stop() {
        await w.stop();
        await broker.close();
      },
    };
  } catch (err) {
    await broker.close();
    throw err;
  }
}
