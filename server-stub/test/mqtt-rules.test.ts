import { MQTT_BINDING, mqttBucket, mqttBucketFilters, mqttTopics } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import {
  allBuckets,
  bucketsOfWorker,
  deviceMayPublish,
  deviceMaySubscribe,
  serverClientId,
  serverMayPublish,
  serverMaySubscribe,
} from '../src/channel/mqtt/topic-rules.js';
import { loadConfig } from '../src/config.js';
import { isAppError } from '../src/errors.js';

const A = 'dev-a-0001';
const B = 'dev-b-0002';

function configError(flags: Record<string, unknown>): string {
  try {
    loadConfig({ flags: { dataDir: '/d', ...flags }, env: {} });
  } catch (err) {
    if (isAppError(err) && err.code === 'SERVER_CONFIG_INVALID') return err.message;
    throw err;
  }
  return 'no error';
}

describe('MQTT topic rules of the embedded broker', () => {
  it('a device publishes only on its own up and presence, subscribes only to its own down, literally', () => {
    const a = mqttTopics(A);
    const b = mqttTopics(B);
    expect(deviceMayPublish(A, a.up)).toBe(true);
    expect(deviceMayPublish(A, a.presence)).toBe(true);
    expect(deviceMayPublish(A, a.down)).toBe(false);
    expect(deviceMayPublish(A, b.up)).toBe(false);
    expect(deviceMayPublish(A, b.presence)).toBe(false);
    // The right device id in the wrong bucket is not its topic.
    const wrongBucket = a.up.replace(`/${mqttBucket(A)}/`, `/${(mqttBucket(A) + 1) % MQTT_BINDING.buckets}/`);
    expect(deviceMayPublish(A, wrongBucket)).toBe(false);
    expect(deviceMayPublish(A, '$SYS/broker/clients')).toBe(false);
    expect(deviceMaySubscribe(A, a.down)).toBe(true);
    for (const f of ['#', '+/+/+/+/down', b.down, a.up, `rf/v1/${mqttBucket(A)}/+/down`, `rf/v1/${mqttBucket(A)}/${A}/#`]) {
      expect(deviceMaySubscribe(A, f), f).toBe(false);
    }
  });

  it('the server subscribes to bucket filters and publishes on down topics only', () => {
    expect(serverMaySubscribe(mqttBucketFilters(0).up)).toBe(true);
    expect(serverMaySubscribe(mqttBucketFilters(63).presence)).toBe(true);
    for (const f of ['#', 'rf/v1/+/+/up', 'rf/v1/64/+/up', 'rf/v1/1/+/down', 'rf/v1/01/+/up']) expect(serverMaySubscribe(f), f).toBe(false);
    expect(serverMayPublish(mqttTopics(A).down)).toBe(true);
    expect(serverMayPublish(mqttTopics(A).up)).toBe(false);
    expect(serverMayPublish(mqttTopics(A).presence)).toBe(false);
    expect(serverClientId(7)).toBe('rf-server-b7');
  });

  it('buckets are split among workers: worker i takes b % workers === i, every bucket exactly once', () => {
    for (const workers of [1, 2, 3, 5, 64]) {
      const all = Array.from({ length: workers }, (_, i) => bucketsOfWorker(i, workers)).flat().sort((x, y) => x - y);
      expect(all).toEqual(allBuckets());
    }
    expect(bucketsOfWorker(1, 3).every((b) => b % 3 === 1)).toBe(true);
    expect(() => bucketsOfWorker(3, 3)).toThrow(RangeError);
  });
});

describe('MQTT configuration', () => {
  it('is off by default; embedded and an external URL exclude each other', () => {
    const c = loadConfig({ flags: { dataDir: '/d' }, env: {} });
    expect(c).toMatchObject({ mqtt: 'off', mqttUrl: null, deviceTransport: 'ws', mqttPort: 8883, mqttUsername: 'rf-server' });
    expect(configError({ mqtt: 'embedded', mqttUrl: 'mqtt://127.0.0.1:1883' })).toMatch(/exclude each other/);
    expect(configError({ mqtt: 'yes' })).toMatch(/expected one of off, embedded/);
  });

  it('an external broker URL is mqtt(s); plain MQTT only to loopback unless allowed', () => {
    expect(configError({ mqttUrl: 'https://broker:8883' })).toMatch(/mqttUrl must be an mqtt/);
    expect(configError({ mqttUrl: 'mqtt://broker.example:1883' })).toMatch(/refusing plain MQTT/);
    expect(configError({ mqttUrl: 'mqtt://broker.example:1883', allowPlainHttp: true })).toBe('no error');
    expect(configError({ mqttUrl: 'mqtts://broker.example:8883' })).toBe('no error');
    expect(configError({ mqttPublicUrl: 'wss://x' })).toMatch(/mqttPublicUrl/);
  });

  it('deviceTransport mqtt needs a broker; the dynsec admin needs an external one and both credentials', () => {
    expect(configError({ deviceTransport: 'mqtt' })).toMatch(/needs a broker/);
    expect(configError({ deviceTransport: 'mqtt', mqtt: 'embedded' })).toBe('no error');
    expect(configError({ mqttUrl: 'mqtts://b:8883', mqttAdminUsername: 'admin' })).toMatch(/given together/);
    expect(configError({ mqtt: 'embedded', mqttAdminUsername: 'admin', mqttAdminPassword: 'x' })).toMatch(/needs mqttUrl/);
  });
});
