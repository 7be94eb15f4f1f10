import { join } from 'node:path';
import {
  CONNECTION_PROFILE_FILENAME,
  parseConnectionProfile,
  readPacket,
} from '@router-fleet/protocol';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { generateLocalTls } from '../src/pki/local-tls.js';
import { type ChannelWorld, channelWorld } from './helpers/channel-world.js';
import { FakeDevice } from './helpers/fake-device.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';

let worlds: ChannelWorld[] = [];
afterEach(async () => {
  for (const w of worlds) await w.stop();
  worlds = [];
  removeTempDirs();
});

describe('connection profiles', () => {
  it('over TLS made in the test: the packet verifies against its own trust anchors, and the device dials with its CA', async () => {
    const dataDir = tempDir();
    const tls = await generateLocalTls(dataDir, { hosts: ['localhost'], ips: ['127.0.0.1'] });
    const w = await channelWorld({ tlsCert: tls.cert, tlsKey: tls.key, publicUrl: 'https://127.0.0.1:1' }, dataDir);
    worlds.push(w);
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [r] = w.devices(t, 1);
    const token = await w.login(t);

    const res = await w.req('GET', `/api/inventory/managed-devices/${r!.uuid}/connection-profile?format=update-packet`, { token });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/x-tar');
    const packet = res.rawPayload;
    // The anchors travel inside the profile: the packet must verify against them.
    const unverified = await readPacket(packet, { requireSignature: false });
    const section = unverified.manifest.sections[0]!;
    expect(section).toMatchObject({ fileName: CONNECTION_PROFILE_FILENAME, fileType: 'ConnectionProfile' });
    const staging = join(tempDir(), 'staging');
    const head = await readPacket(packet, { trustAnchors: w.services.profiles.trustAnchorsPem, extractTo: staging });
    expect(head.signed).toBe(true);
    const { readFileSync } = await import('node:fs');
    const parsed = parseConnectionProfile(readFileSync(join(staging, CONNECTION_PROFILE_FILENAME)));
    if (!parsed.ok) throw new Error(parsed.errors.join('; '));
    const profile = parsed.profile;
    const again = await readPacket(packet, { trustAnchors: profile.trustAnchorsPem });
    expect(again.signed).toBe(true);
    expect(profile).toMatchObject({
      deviceId: r!.uuid,
      serialNumber: r!.serialNumber,
      credential: r!.credential,
      keepAlive: { pingIntervalSec: 120, pongTimeoutSec: 104, sessionTimeoutSec: 16 },
    });
    expect(profile.serverUrl).toBe('wss://127.0.0.1:1/api/channel'); // --public-url
    expect(profile.caCertPem).toBe(readFileSync(tls.caCert, 'utf8'));

    // The device verifies the server certificate with the profile's CA only.
    const port = new URL(w.server.url).port;
    const d = await FakeDevice.open(`wss://127.0.0.1:${port}/api/channel`, r!, { ca: profile.caCertPem });
    expect((await d.admit()).body.admission).toBe('managed');
    d.close();
    // Without the CA the handshake fails (the certificate is not publicly trusted).
    await expect(FakeDevice.open(`wss://127.0.0.1:${port}/api/channel`, r!)).rejects.toThrow();
    // HTTPS answers with the same certificate.
    const health = await request(`https://127.0.0.1:${port}/healthz`, {
      dispatcher: new Agent({ connect: { ca: profile.caCertPem } }),
    });
    expect(health.statusCode).toBe(200);
    await health.body.dump();
  });

  it('JSON form, bulk NDJSON for many devices, and access rules', async () => {
    const w = await channelWorld();
    worlds.push(w);
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const devices = w.devices(t, 1203);
    const token = await w.login(t);
    const one = await w.req('GET', `/api/inventory/managed-devices/${devices[0]!.uuid}/connection-profile?format=json`, { token });
    expect(one.json()).toMatchObject({ format: 'router-fleet.connection-profile/1', serverUrl: w.channelUrl });
    expect(parseConnectionProfile(one.rawPayload, { allowInsecure: true }).ok).toBe(true);

    const all = await w.req('POST', '/api/inventory/connection-profiles', { token, body: { all: true } });
    expect(all.statusCode).toBe(200);
    expect(all.headers['content-type']).toContain('application/x-ndjson');
    const lines = all.body.trim().split('\n').map((l) => JSON.parse(l) as { deviceId: string; credential: string });
    expect(lines).toHaveLength(1203);
    expect(new Set(lines.map((l) => l.deviceId)).size).toBe(1203);
    expect(lines[5]!.credential).toBe(devices[5]!.credential);

    const some = await w.req('POST', '/api/inventory/connection-profiles', {
      token,
      body: { deviceUuids: [devices[1]!.uuid, devices[2]!.uuid], format: 'update-packet' },
    });
    const packets = some.body.trim().split('\n').map((l) => JSON.parse(l) as { deviceId: string; packet: string });
    expect(packets.map((p) => p.deviceId)).toEqual([devices[1]!.uuid, devices[2]!.uuid]);
    const verified = await readPacket(Buffer.from(packets[0]!.packet, 'base64'), {
      trustAnchors: w.services.profiles.trustAnchorsPem,
    });
    expect(verified.signed).toBe(true);

    const unknown = await w.req('POST', '/api/inventory/connection-profiles', {
      token,
      body: { deviceUuids: ['00000000-0000-4000-8000-000000000000'] },
    });
    expect(unknown.statusCode).toBe(404);
    const neither = await w.req('POST', '/api/inventory/connection-profiles', { token, body: {} });
    expect(neither.statusCode).toBe(400);
    const anonymous = await w.req('GET', `/api/inventory/managed-devices/${devices[0]!.uuid}/connection-profile`);
    expect(anonymous.statusCode).toBe(401);
  });

  it('an unknown method on a known path is 405 with Allow; an unknown path is 404', async () => {
    const w = await channelWorld();
    worlds.push(w);
    const res = await w.req('DELETE', '/healthz');
    expect(res.statusCode).toBe(405);
    expect(res.json().code).toBe('SERVER_METHOD_NOT_ALLOWED');
    expect(res.headers['allow']).toBe('GET');
    const dev = await w.req('PATCH', '/api/inventory/managed-devices/00000000-0000-4000-8000-000000000000/connection-profile');
    expect(dev.statusCode).toBe(405);
    expect((await w.req('GET', '/api/nope')).statusCode).toBe(404);
    // (A GET of another path outside /api/ is a route of the operator console: its index.html.)
    expect((await w.req('POST', '/nope')).statusCode).toBe(404);
  });
});
