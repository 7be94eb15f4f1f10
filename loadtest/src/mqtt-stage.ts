import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PROFILES_FILE, type ProvisionedDevice } from '@router-fleet/simulator';
import type { BrokerDevice, BrokerFleet } from './brokers.js';

/** Profiles file of the MQTT routers, next to the provisioned one. */
export const MQTT_PROFILES_FILE = 'profiles-mqtt.ndjson';

async function* provisioned(profilesDir: string): AsyncGenerator<ProvisionedDevice> {
  const lines = createInterface({ input: createReadStream(join(profilesDir, PROFILES_FILE)), crlfDelay: Infinity });
  for await (const line of lines) if (line.trim() !== '') yield JSON.parse(line) as ProvisionedDevice;
}

/** Device ids and credentials of a provisioned fleet: the brokers' device accounts. */
export async function profileDevices(profilesDir: string): Promise<BrokerDevice[]> {
  const out: BrokerDevice[] = [];
  for await (const d of provisioned(profilesDir)) {
    const credential = d.profile['credential'];
    if (typeof credential !== 'string') throw new Error(`profile of ${d.profile.deviceId} has no credential`);
    out.push({ deviceId: d.profile.deviceId, credential });
  }
  return out;
}

/**
 * The provisioned profiles with each router's broker as its server URL (`mqtts://` on the shard
 * that holds its bucket; in a real deployment the shard's DNS name) and MQTT 5. Written beside the
 * provisioned file; returns its path.
 */
export async function writeMqttProfiles(profilesDir: string, brokers: BrokerFleet): Promise<string> {
  const file = join(profilesDir, MQTT_PROFILES_FILE);
  const out = createWriteStream(file);
  for await (const d of provisioned(profilesDir)) {
    const line = `${JSON.stringify({ ...d, profile: { ...d.profile, serverUrl: brokers.shardOf(d.profile.deviceId).deviceUrl, mqttVersion: 5 } })}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return file;
}

/** `fleet-server serve` flags that make the server consume the brokers and name MQTT in new profiles. */
export function mqttServerArgs(brokers: BrokerFleet): string[] {
  return [
    '--mqtt-url', brokers.serverUrl,
    '--mqtt-username', brokers.server.username,
    '--mqtt-password', brokers.server.password,
    '--mqtt-public-url', brokers.shards[0]!.deviceUrl,
    '--device-transport', 'mqtt',
  ];
}
