import { describe, expect, it } from 'vitest';
import {
  createMessage,
  encode,
  encodeCloseFrame,
  encodePresence,
  isMqttUrl,
  MQTT_BINDING,
  MQTT_CLOSE_PREFIX,
  mqttBucket,
  mqttBucketFilters,
  mqttTopics,
  parseCloseFrame,
  parseMqttTopic,
  parsePresence,
} from '../src/index.js';

describe('MQTT binding', () => {
  it('spreads device ids evenly over the buckets', () => {
    const counts = new Array<number>(MQTT_BINDING.buckets).fill(0);
    for (let i = 0; i < 64_000; i++) counts[mqttBucket(`00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`)]!++;
    // 1,000 expected per bucket; a hash that used only part of the id would leave buckets empty.
    expect(Math.min(...counts)).toBeGreaterThan(800);
    expect(Math.max(...counts)).toBeLessThan(1200);
  });

  it('names the topics of a device and parses them back', () => {
    const t = mqttTopics('dev-1');
    const bucket = mqttBucket('dev-1');
    expect(t.up).toBe(`rf/v1/${bucket}/dev-1/up`);
    expect(parseMqttTopic(t.up)).toEqual({ bucket, deviceId: 'dev-1', kind: 'up' });
    expect(parseMqttTopic(t.down)?.kind).toBe('down');
    expect(parseMqttTopic(t.presence)?.kind).toBe('presence');
    const filters = mqttBucketFilters(bucket);
    expect(filters.up).toBe(`rf/v1/${bucket}/+/up`);
    expect(filters.presence).toBe(`rf/v1/${bucket}/+/presence`);
  });

  it('refuses topics that are not the binding or name the wrong bucket', () => {
    const wrong = (mqttBucket('dev-1') + 1) % MQTT_BINDING.buckets;
    for (const topic of [
      `rf/v1/${wrong}/dev-1/up`,
      'rf/v2/1/dev-1/up',
      'rf/v1/1/dev-1/sideways',
      'rf/v1/x/dev-1/up',
      'rf/v1/1/dev-1/up/extra',
      'rf/v1/1/#/up',
      '',
    ]) {
      expect(parseMqttTopic(topic), topic).toBeUndefined();
    }
    expect(() => mqttTopics('a/b')).toThrow(TypeError);
    expect(() => mqttTopics('+')).toThrow(TypeError);
    expect(() => mqttBucketFilters(MQTT_BINDING.buckets)).toThrow(RangeError);
  });

  it('round-trips presence and refuses anything else without throwing', () => {
    const online = encodePresence({ state: 'online', link: 'L-1' });
    expect(parsePresence(online)).toEqual({ state: 'online', link: 'L-1' });
    expect(parsePresence(Buffer.from(encodePresence({ state: 'offline', link: 'L-1' })))).toEqual({ state: 'offline', link: 'L-1' });
    for (const bad of ['', 'online', '{"presence":"maybe","link":"x"}', '{"presence":"online","link":"a/b"}', '{', 'x'.repeat(600)]) {
      expect(parsePresence(bad), bad).toBeUndefined();
    }
  });

  it('tells close frames from protocol messages', () => {
    const frame = encodeCloseFrame(4004, 'no licence "free"');
    expect(frame.startsWith(MQTT_CLOSE_PREFIX)).toBe(true);
    expect(parseCloseFrame(frame)).toEqual({ code: 4004, reason: 'no licence "free"' });
    expect(parseCloseFrame(Buffer.from(frame))?.code).toBe(4004);
    // Every protocol message is not a close frame.
    expect(parseCloseFrame(encode(createMessage('ping', {})))).toBeUndefined();
    for (const bad of ['{"close":99,"reason":""}', '{"close":"4004"}', '{"close":4004', '{"close":5000}']) {
      expect(parseCloseFrame(bad), bad).toBeUndefined();
    }
    expect(parseCloseFrame(encodeCloseFrame(1000, 'x'.repeat(500)))?.reason).toHaveLength(120);
  });

  it('recognises MQTT URLs', () => {
    expect(isMqttUrl('mqtts://broker:8883')).toBe(true);
    expect(isMqttUrl('mqtt://127.0.0.1:1883')).toBe(true);
    expect(isMqttUrl('wss://server/api/channel')).toBe(false);
  });
});
