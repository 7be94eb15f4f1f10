import { beforeAll, describe, expect, it } from 'vitest';
import {
  CONNECTION_PROFILE_FORMAT,
  parseConnectionProfile,
  sharedTestPki,
  trustAnchorsDigest,
  validateConnectionProfile,
} from '../src/index.js';

describe('connection profile', () => {
  let good: Record<string, unknown>;
  beforeAll(async () => {
    const pki = await sharedTestPki();
    good = {
      format: CONNECTION_PROFILE_FORMAT,
      serverUrl: 'wss://fleet.example.net/api/channel',
      caCertPem: pki.root.certPem,
      trustAnchorsPem: [pki.root.certPem],
      deviceId: '2f1c7e5a-3b7d-4c1e-9a55-0d3c5e7b9a10',
      serialNumber: 'M5L240000001',
      credential: 'c2VjcmV0LWRldmljZS1jcmVkZW50aWFs',
      keepAlive: { pingIntervalSec: 120, pongTimeoutSec: 104, sessionTimeoutSec: 16 },
      future: 'ignored',
    };
  });

  it('accepts a complete profile and drops unknown fields', () => {
    const result = parseConnectionProfile(Buffer.from(JSON.stringify(good)));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.profile).not.toHaveProperty('future');
  });

  it.each([
    ['plain ws:// without allowInsecure', { serverUrl: 'ws://fleet.example.net/api/channel' }, 'serverUrl must be a wss:// or mqtts:// URL'],
    ['plain mqtt:// without allowInsecure', { serverUrl: 'mqtt://broker.example.net:1883' }, 'serverUrl must be a wss:// or mqtts:// URL'],
    ['another scheme', { serverUrl: 'https://fleet.example.net/api/channel' }, 'serverUrl must be a wss:// or mqtts:// URL'],
    ['an MQTT version other than 4 or 5', { serverUrl: 'mqtts://broker.example.net:8883', mqttVersion: 3 }, 'mqttVersion must be 4 (MQTT 3.1.1) or 5'],
    ['an MQTT version as a string', { serverUrl: 'mqtts://broker.example.net:8883', mqttVersion: '5' }, 'mqttVersion must be 4 (MQTT 3.1.1) or 5'],
    ['no trust anchor', { trustAnchorsPem: [] }, 'trustAnchorsPem must be 1–16 PEM certificates'],
    ['garbage CA', { caCertPem: 'not a certificate' }, 'caCertPem must hold PEM certificates'],
    ['short credential', { credential: 'short' }, 'credential must be 16–256 characters'],
    ['an anchor of an unknown scope', { trustAnchors: [{ scope: 'device', certPem: 'x' }] }, 'trustAnchors must be'],
    ['bad keep-alive', { keepAlive: { pingIntervalSec: 1, pongTimeoutSec: 1, sessionTimeoutSec: 1 } }, 'keepAlive'],
  ])('rejects %s', (_name, patch, message) => {
    const result = validateConnectionProfile({ ...good, ...patch });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors.join('; ')).toContain(message);
  });

  it('keeps the anchors by scope (1.1)', async () => {
    const pki = await sharedTestPki();
    const trustAnchors = [{ scope: 'server', certPem: pki.root.certPem }, { scope: 'vendor', certPem: pki.foreignCa.certPem }];
    const result = validateConnectionProfile({ ...good, trustAnchorsPem: [pki.root.certPem, pki.foreignCa.certPem], trustAnchors });
    expect(result.ok && result.profile.trustAnchors).toEqual(trustAnchors);
  });

  it('digests an anchor set independently of order, duplicates and line breaks', async () => {
    const pki = await sharedTestPki();
    const a = pki.root.certPem;
    const b = pki.foreignCa.certPem;
    const digest = trustAnchorsDigest([a, b]);
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    expect(trustAnchorsDigest([b, a, a])).toBe(digest);
    expect(trustAnchorsDigest([a.replace(/\n/g, '\r\n')])).toBe(trustAnchorsDigest([a]));
    expect(trustAnchorsDigest([a])).not.toBe(digest);
    expect(trustAnchorsDigest([`${a}${b}`])).toBe(digest);
  });

  it('accepts an mqtts:// URL with or without an MQTT version, and keeps the version', () => {
    const plain = validateConnectionProfile({ ...good, serverUrl: 'mqtts://broker.example.net:8883' });
    expect(plain.ok && plain.profile).toMatchObject({ serverUrl: 'mqtts://broker.example.net:8883' });
    expect(plain.ok && plain.profile).not.toHaveProperty('mqttVersion');
    for (const mqttVersion of [4, 5]) {
      const result = validateConnectionProfile({ ...good, serverUrl: 'mqtts://broker.example.net:8883', mqttVersion });
      expect(result.ok && result.profile.mqttVersion).toBe(mqttVersion);
    }
  });

  it('admits mqtt:// only when asked', () => {
    expect(validateConnectionProfile({ ...good, serverUrl: 'mqtt://127.0.0.1:1883' }).ok).toBe(false);
    expect(validateConnectionProfile({ ...good, serverUrl: 'mqtt://127.0.0.1:1883', mqttVersion: 4 }, { allowInsecure: true }).ok).toBe(true);
  });

  it('admits ws:// only when asked, and never throws on bad bytes', () => {
    expect(validateConnectionProfile({ ...good, serverUrl: 'ws://127.0.0.1:8080/api/channel' }, { allowInsecure: true }).ok).toBe(true);
    expect(parseConnectionProfile(Buffer.from([0xff, 0xfe]))).toEqual({ ok: false, errors: ['not UTF-8 JSON'] });
  });
});
