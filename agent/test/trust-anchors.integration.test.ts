import { rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { type CertificateAndKey, createCa, createSigner, issueCertificate, type PacketSigner, trustAnchorsDigest } from '@router-fleet/protocol';
// The server's sources (not its package): one declaration of its types in the test program.
import { buildApp, loadConfig } from '../../server-stub/src/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadProfile } from '../src/connection/profile-store.js';
import { tempDir, TestDevice } from './helpers/device.js';
import { firmwareImage, makePacket } from './helpers/packets.js';

/*
 * Trust anchors end to end: the real server (in this process, HTTPS/WSS on port 0 with a CA made
 * here) and real agent cores (memory platforms) over real sockets. Packets signed under roots the
 * server does not own — an account's own signing root — are installed by routers because the
 * server delivers every root that signs what a router will be sent.
 */

type App = Awaited<ReturnType<typeof buildApp>>;
const MODEL = 'TA-100';
const dirs: string[] = [];
const devices: TestDevice[] = [];
let app: App;
let token: string;
let accountKey: number;

async function api<T = unknown>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown, contentType?: string): Promise<{ status: number; json: T }> {
  const res = await app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, ...(contentType ? { 'content-type': contentType } : {}) },
    ...(body === undefined ? {} : { payload: body as string }),
  });
  return { status: res.statusCode, json: (res.body ? JSON.parse(res.body) : undefined) as T };
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Registers `n` routers of MODEL and starts an agent for each with its connection profile. */
async function routers(n: number, prefix: string): Promise<TestDevice[]> {
  const scope = app.services.auth.scope(accountKey);
  const out: TestDevice[] = [];
  for (let i = 0; i < n; i++) {
    const row = app.services.devices.create(scope, { serialNumber: `${prefix}-${i}`, name: `${prefix}-${i}` });
    const profile = app.services.profiles.profile(scope, row.uuid);
    const dir = await tempDir('trust-agent-');
    const device = new TestDevice('memory', dir, profile, {}, {}, { model: MODEL, firmwareVersion: '1.0.0' });
    await device.start();
    devices.push(device);
    out.push(device);
  }
  for (const d of out) await until(`${d.profile.serialNumber} managed`, () => (d.agent.sessionState() === 'managed' ? true : undefined));
  return out;
}

async function firmware(signer: PacketSigner, version: string): Promise<Buffer> {
  return makePacket(signer, [{ name: `autoupdate-${version}-full.arm64.tar`, fileType: 'FirmwareFull', data: firmwareImage(version, 8 * 1024), version }], {
    targetModels: [MODEL],
  });
}

/** Uploads a packet and runs a job on the routers; returns the per-router results. */
async function runJob(packet: Buffer | string, targets: TestDevice[]): Promise<{ results: Record<string, number>; errors: (string | null)[] }> {
  let packetUuid = typeof packet === 'string' ? packet : '';
  if (typeof packet !== 'string') {
    const uploaded = await api<{ uuid: string; code?: string; message?: string }>('POST', '/api/packets', packet, 'application/x-tar');
    expect(uploaded.status, JSON.stringify(uploaded.json)).toBe(201);
    packetUuid = uploaded.json.uuid;
  }
  const job = await api<{ uuid: string }>('POST', '/api/jobs', {
    name: `job ${packetUuid}`,
    packetUuid,
    target: { deviceUuids: targets.map((d) => d.profile.deviceId) },
    options: { timeoutSec: 120, retries: { max: 0 } },
  });
  expect(job.status, JSON.stringify(job.json)).toBe(201);
  const done = await until('the job to finish', async () => {
    const j = await api<{ state: string; progress: { results: Record<string, number>; devices: { total: number; done: number } } }>('GET', `/api/jobs/${job.json.uuid}`);
    return j.json.progress.devices.done === targets.length ? j.json : undefined;
  }, 90_000);
  const per = await api<{ items: { errorCode: string | null }[] }>('GET', `/api/jobs/${job.json.uuid}/devices`);
  return { results: done.progress.results, errors: per.json.items.map((i) => i.errorCode) };
}

beforeAll(async () => {
  const dataDir = await tempDir('trust-server-');
  dirs.push(dataDir);
  const tlsCa = await createCa({ commonName: 'Trust Test TLS CA' });
  const tls = await issueCertificate({
    commonName: '127.0.0.1',
    issuer: tlsCa,
    extKeyUsage: ['serverAuth'],
    subjectAltNames: { dns: ['localhost'], ip: ['127.0.0.1'] },
  });
  await writeFile(join(dataDir, 'tls.pem'), tls.certPem);
  await writeFile(join(dataDir, 'tls.key'), tls.keyPem);
  await writeFile(join(dataDir, 'tls-ca.pem'), tlsCa.certPem);
  const config = loadConfig({
    flags: {
      dataDir,
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      scryptCost: 1024,
      tlsCert: join(dataDir, 'tls.pem'),
      tlsKey: join(dataDir, 'tls.key'),
      tlsCa: join(dataDir, 'tls-ca.pem'),
      presenceFlushMs: 100,
      channelSweepMs: 200,
    },
    env: {},
  });
  app = await buildApp(config);
  await app.listen({ port: 0, host: '127.0.0.1' });
  app.services.profiles.setListenPort((app.server.address() as AddressInfo).port);
  app.services.jobs.publicBaseUrl = app.services.profiles.httpBaseUrl();
  const created = await app.services.auth.createAccount({ name: 'Trust Test', username: 'trust-admin', password: 'a long trust secret' });
  accountKey = created.accountId;
  const scope = app.services.auth.scope(accountKey);
  const now = app.services.clock.now();
  for (const code of app.services.licensing.issue('basic-25', 1, now)) {
    const l = app.services.licensing.redeem(scope, code, now);
    app.services.licensing.activate(scope, l.uuid, undefined, now);
  }
  const login = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'trust-admin', password: 'a long trust secret' } });
  token = login.json<{ token: string }>().token;
}, 60_000);

afterAll(async () => {
  for (const d of devices) await d.dispose().catch(() => undefined);
  await app?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('trust anchors reach routers', () => {
  let accountRoot: CertificateAndKey;
  let accountSigner: PacketSigner;

  it('a job with packets signed under the account\'s own root succeeds on every router (set before and after they connected)', async () => {
    accountRoot = await createCa({ commonName: 'Account Own Signing Root' });
    accountSigner = await createSigner({ issuer: accountRoot, commonName: 'Account Own Signer' });
    const early = await routers(2, 'TA-EARLY');
    const serverOnly = trustAnchorsDigest(app.services.profiles.trustAnchorsPem);
    expect(trustAnchorsDigest(early[0]!.profile.trustAnchorsPem)).toBe(serverOnly);

    // The account sets its own root: connected routers are sent the new set at once.
    const policy = await api('PUT', '/api/packets/policy', { allowUnsigned: false, trustAnchors: [accountRoot.certPem] });
    expect(policy.status).toBe(200);
    const expected = app.services.trust.forAccount(accountKey);
    expect(expected.anchors.map((a) => a.scope)).toEqual(['server', 'account']);
    for (const d of early) {
      await until(`${d.profile.serialNumber} to store the account root`, async () => {
        const stored = await loadProfile(d.platform.storage, false);
        return stored && trustAnchorsDigest(stored.trustAnchorsPem) === expected.digest ? true : undefined;
      });
    }
    // Routers registered later get it in their connection profile.
    const late = await routers(1, 'TA-LATE');
    expect(late[0]!.profile.trustAnchors?.map((a) => a.scope)).toEqual(['server', 'account']);

    const { results, errors } = await runJob(await firmware(accountSigner, '2.0.0'), [...early, ...late]);
    expect(errors).toEqual([null, null, null]);
    expect(results).toMatchObject({ succeeded: 3 });
  }, 180_000);

  it('rotation overlaps: packets signed under the old and the new server root both install; after retiring the old root, old-signed ones are refused', async () => {
    const fleet = await routers(1, 'TA-ROT');
    const oldSigner = (await app.services.packets.pki()).signer;
    const oldRoot = (await app.services.trust.list()).find((a) => a.current)!;
    const listed = await app.services.trust.rotate();
    expect(listed.filter((a) => a.scope === 'server')).toHaveLength(2);
    const newSigner = (await app.services.packets.pki()).signer;
    expect(newSigner.certPem).not.toBe(oldSigner.certPem);
    const waitForSet = async () => {
      const want = app.services.trust.forAccount(accountKey).digest;
      for (const d of devices) {
        await until(`${d.profile.serialNumber} to store the rotated set`, async () => {
          const stored = await loadProfile(d.platform.storage, false);
          return stored && trustAnchorsDigest(stored.trustAnchorsPem) === want ? true : undefined;
        });
      }
    };
    await waitForSet();
    const both = await runJob(await firmware(oldSigner, '3.0.0'), fleet);
    expect(both.errors).toEqual([null]);
    const fresh = await runJob(await firmware(newSigner, '4.0.0'), fleet);
    expect(fresh.errors).toEqual([null]);

    // Uploaded during the overlap, run after the retirement: the router itself refuses it.
    const stalePacket = await api<{ uuid: string }>('POST', '/api/packets', await firmware(oldSigner, '5.0.0'), 'application/x-tar');
    expect(stalePacket.status).toBe(201);

    await expect(app.services.trust.retire(listed.find((a) => a.current)!.fingerprint)).rejects.toMatchObject({ code: 'SERVER_ANCHOR_IN_USE' });
    await app.services.trust.retire(oldRoot.fingerprint);
    await waitForSet();
    const refused = await api<{ code: string }>('POST', '/api/packets', await firmware(oldSigner, '5.1.0'), 'application/x-tar');
    expect(refused.status).toBe(422);
    expect(refused.json.code).toBe('SERVER_PACKET_INVALID');
    const stale = await runJob(stalePacket.json.uuid, fleet);
    expect(stale.errors).toEqual(['PROTO_PACKET_SIGNER_UNTRUSTED']);
  }, 240_000);
});
