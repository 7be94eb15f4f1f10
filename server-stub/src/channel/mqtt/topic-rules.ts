import { isIdentifier, MQTT_BINDING, mqttBucketFilters, mqttTopics, parseMqttTopic } from '@router-fleet/protocol';

/**
 * Who may publish and subscribe where, as the embedded broker enforces it (the external Mosquitto
 * enforces the same rules with per-device dynamic-security roles). A device publishes only on its
 * own `up` and `presence`, subscribes only to its own `down` (literally: no wildcard); the server's
 * bucket clients subscribe to whole buckets' `up` and `presence` and publish on `down` topics.
 */

/** Client id prefix of the server's bucket clients: `rf-server-b{bucket}`. */
export const SERVER_CLIENT_PREFIX = 'rf-server-b';

/** The client id of the server's client that consumes `bucket` (stable: a restart resumes its session). */
export function serverClientId(bucket: number): string {
  return `${SERVER_CLIENT_PREFIX}${bucket}`;
}

/** Every bucket number, 0 … buckets − 1. */
export function allBuckets(): number[] {
  return Array.from({ length: MQTT_BINDING.buckets }, (_, b) => b);
}

/** The buckets worker `index` of `workers` consumes: `b % workers === index`. */
export function bucketsOfWorker(index: number, workers: number): number[] {
  if (!Number.isInteger(workers) || workers < 1 || !Number.isInteger(index) || index < 0 || index >= workers) {
    throw new RangeError(`worker index ${index} is not one of 0–${workers - 1}`);
  }
  return allBuckets().filter((b) => b % workers === index);
}

export function deviceMayPublish(deviceId: string, topic: string): boolean {
  const t = parseMqttTopic(topic);
  return t !== undefined && t.deviceId === deviceId && (t.kind === 'up' || t.kind === 'presence');
}

export function deviceMaySubscribe(deviceId: string, filter: string): boolean {
  return isIdentifier(deviceId) && filter === mqttTopics(deviceId).down;
}

export function serverMayPublish(topic: string): boolean {
  return parseMqttTopic(topic)?.kind === 'down';
}

/** The server subscribes to bucket filters only (`rf/v1/{b}/+/up`, `…/presence`). */
export function serverMaySubscribe(filter: string): boolean {
  const m = /^rf\/v\d+\/(\d{1,2})\/\+\/(up|presence)$/.exec(filter);
  if (!m) return false;
  const bucket = Number(m[1]);
  if (bucket >= MQTT_BINDING.buckets) return false;
  const f = mqttBucketFilters(bucket);
  return filter === f.up || filter === f.presence;
}
