import { ANALYTICS_METRICS } from '@router-fleet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFunctionName, looksSensitive, sanitizeAnalytics } from '../src/reporting/privacy.js';
import { FakeServer } from './helpers/fake-server.js';
import { TestDevice, tempDir } from './helpers/device.js';
import { testProfile } from './helpers/packets.js';
import { type TestCerts, testCerts } from './helpers/pki.js';

/** What must never leave the router in analytics: addresses, names, credentials, certificates, positions. */
const SECRETS = {
  ipv4: '203.0.113.77',
  ipv6: '2001:db8:85a3::8a2e:370:7334',
  ipv6Short: 'fe80::1ff:fe23:4567:890a',
  mac: '00:1a:2b:3c:4d:5e',
  macDash: 'AA-BB-CC-DD-EE-FF',
  url: 'https://gw.example.net:58443/admin/login',
  host: 'vpn.customer-plant.example.org',
  user: 'operator-jdoe',
  password: 'hunter2-Secret!',
  email: 'jane.doe@customer.example',
  pem: '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2V4YW1wbGVDZXJ0aWZpY2F0ZQ==\n-----END CERTIFICATE-----',
  coordinates: '48.77583, 9.18293',
  latitude: 48.77583,
  longitude: 9.18293,
};

function seededMetrics(): Record<string, unknown> {
  return {
    cpuLoadPercent: 12.5,
    memoryUsagePercent: 41,
    throughputBytesIn: 10_485_760,
    throughputBytesOut: 2_097_152,
    networkQuality: 81,
    wanAddress: SECRETS.ipv4,
    lanAddresses: [SECRETS.ipv6, SECRETS.ipv6Short],
    interfaces: { eth0: { mac: SECRETS.mac }, wwan0: { mac: SECRETS.macDash } },
    managementUrl: SECRETS.url,
    vpnPeer: SECRETS.host,
    username: SECRETS.user,
    password: SECRETS.password,
    contact: SECRETS.email,
    certificate: SECRETS.pem,
    position: SECRETS.coordinates,
    lat: SECRETS.latitude,
    lon: SECRETS.longitude,
    // Allowed keys carrying what must not leave either:
    firmwareVersion: SECRETS.ipv4,
    functionUsage: {
      'vpn.openvpn': true,
      container: true,
      [SECRETS.host]: true,
      'user=operator-jdoe': true,
      'peer.203.0.113.77': true,
      gnss: SECRETS.coordinates,
    },
  };
}

describe('analytics privacy filter', () => {
  it('flags addresses, URLs, user names, passwords, certificates and locations', () => {
    for (const value of [
      SECRETS.ipv4,
      SECRETS.ipv6,
      SECRETS.ipv6Short,
      SECRETS.mac,
      SECRETS.macDash,
      SECRETS.url,
      `${SECRETS.host}/x`,
      'gw.local:8080',
      `user=${SECRETS.user}`,
      `password: ${SECRETS.password}`,
      SECRETS.email,
      SECRETS.pem,
      SECRETS.coordinates,
      '48°46′N',
      'lat 48.7',
    ]) {
      expect(looksSensitive(value), value).toBe(true);
    }
    for (const value of ['10.3.2', '2.4.1-rc.1', 'vpn.openvpn', 'container', 'modbus-bridge']) {
      expect(looksSensitive(value), value).toBe(false);
    }
    for (const name of ['vpn.openvpn', 'container', 'dhcp.server', 'routing.ospf']) expect(isFunctionName(name), name).toBe(true);
    for (const name of ['vpn.customer-plant.example.org', 'plant.example', 'customer.de', 'gw.local', 'a.b.c']) {
      expect(isFunctionName(name), name).toBe(false);
    }
  });

  it('keeps only allowed metrics with plausible values', () => {
    const { metrics, dropped } = sanitizeAnalytics(seededMetrics());
    expect(Object.keys(metrics).every((k) => (ANALYTICS_METRICS as readonly string[]).includes(k))).toBe(true);
    expect(metrics).toEqual({
      cpuLoadPercent: 12.5,
      memoryUsagePercent: 41,
      throughputBytesIn: 10_485_760,
      throughputBytesOut: 2_097_152,
      networkQuality: 81,
      functionUsage: { 'vpn.openvpn': true, container: true },
    });
    expect(dropped).toBeGreaterThanOrEqual(16);
    expect(sanitizeAnalytics({ cpuLoadPercent: 250, restarts: -1, operatingHours: Number.NaN, firmwareVersion: '10.3.2' }).metrics).toEqual({
      firmwareVersion: '10.3.2',
    });
  });
});

describe('nothing sensitive in any frame the agent sends', () => {
  let certs: TestCerts;
  let server: FakeServer;
  let device: TestDevice;

  beforeAll(async () => {
    certs = await testCerts();
    server = await new FakeServer({ certPem: certs.tlsServer.certPem, keyPem: certs.tlsServer.keyPem, analyticsConsent: true }).start();
  });
  afterAll(async () => {
    await device?.dispose();
    await server.close();
  });

  it('sends analytics batches of allowed metrics only, and stops when consent is withdrawn', async () => {
    const profile = testProfile({
      serverUrl: server.url,
      caCertPem: certs.tlsCa.certPem,
      trustAnchorsPem: [certs.pki.root.certPem],
      deviceId: 'dev-privacy',
    });
    device = new TestDevice('memory', await tempDir(), profile, { analyticsSampleSec: 1, analyticsBatchSize: 2 }, {}, {
      metrics: seededMetrics,
      link: { type: 'lte', up: true, signalQuality: 64 },
    });
    await device.start();
    const batch = await server.waitFor(() => server.received('analytics', 'dev-privacy')[0], 8000, 'analytics');
    expect(batch.body.samples).toHaveLength(2);
    for (const sample of batch.body.samples) {
      expect(Object.keys(sample.metrics).every((k) => (ANALYTICS_METRICS as readonly string[]).includes(k))).toBe(true);
      expect(sample.metrics.cpuLoadPercent).toBe(12.5);
      expect(sample.metrics.firmwareVersion).toBe('1.0.0');
    }
    // Every frame the device sent: hello, status, events, analytics, pongs.
    const sent = server.frames.filter((f) => f.dir === 'in' && f.deviceId === 'dev-privacy');
    expect(sent.length).toBeGreaterThan(3);
    const all = sent.map((f) => f.text).join('\n');
    for (const [name, value] of Object.entries(SECRETS)) {
      const needles = typeof value === 'number' ? [String(value)] : [value, ...value.split(/[\s,]+/).filter((p) => p.length >= 6)];
      for (const needle of needles) expect(all.includes(needle), `${name}: ${needle}`).toBe(false);
    }
    expect(all).not.toMatch(/BEGIN [A-Z ]+-----/);

    server.send('dev-privacy', 'settings', { analyticsConsent: false });
    // The agent handles messages in order: once it answered a later ping, consent is withdrawn.
    const ping = server.send('dev-privacy', 'ping', {});
    await server.waitFor(() => server.received('pong', 'dev-privacy').find((p) => p.correlationId === ping), 8000, 'the pong after the settings');
    const withdrawnAt = Date.now();
    // Paces the scenario only: a window of two batch periods (2 samples of 1 s) without consent.
    await new Promise((r) => setTimeout(r, 2000));
    const consentedAt = Date.now();
    server.send('dev-privacy', 'settings', { analyticsConsent: true });
    // The first batch sampled after consent came back: anything sampled in the window would have been sent before it.
    const samples = () => server.received('analytics', 'dev-privacy').flatMap((b) => b.body.samples);
    await server.waitFor(() => samples().some((s) => s.at >= consentedAt) || undefined, 8000, 'a batch sampled after consent came back');
    expect(samples().filter((s) => s.at > withdrawnAt && s.at < consentedAt)).toEqual([]);
  });
});
