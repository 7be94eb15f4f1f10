import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// The agent as a router runs it (its built package): the server's tests never use its sources.
import {
  type Agent,
  type ConnectionProfile,
  createAgent,
  createMemoryPlatform,
  loadProfile,
  type MemoryPlatform,
  resolveConfig,
  saveProfile,
} from '@router-fleet/agent';
import {
  type CertificateAndKey,
  createCa,
  createSigner,
  issueCertificate,
  type PacketSigner,
  trustAnchorsDigest,
  writePacket,
} from '@router-fleet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';

/*
 * Trust anchors end to end: the real server (in this process, HTTPS/WSS on port 0 with a CA made
 * here) and real agent cores (memory platforms) over real sockets. Packets signed under roots the
 * server does not own — an account's own signing root — are installed by routers because the
 * server delivers every root that signs what a router will be sent.
 */

type App = Awaited<ReturnType<typeof buildApp>>;

const tempDir = (prefix: string) => mkdtemp(join(tmpdir(), prefix));

/**
 * One router: the agent core on a memory platform with its connection profile, started again on
 * the same platform after every reboot (as the agent's supervisor does).
 */
class TestDevice {
  platform!: MemoryPlatform;
  agent!: Agent;
  #stopped = false;
  #loop: Promise<void> | undefined;

  constructor(
    readonly dir: string,
    readonly profile: ConnectionProfile,
    readonly device: { model: string; firmwareVersion: string },
  ) {}

  async start(): Promise<void> {
    this.platform = await createMemoryPlatform(this.device);
    await saveProfile(this.platform.storage, this.profile);
    await this.#boot();
    this.#loop = (async () => {
      for (;;) {
        const exit = await this.agent.done;
        if (this.#stopped || exit.reason !== 'reboot') return;
        await this.platform.powerOn();
        await this.#boot();
      }
    })();
  }

  async #boot(): Promise<void> {
    const config = resolveConfig({
      dataDir: this.dir,
      bootDelayMaxSec: 0,
      backoffBaseMs: 50,
      backoffMaxMs: 500,
      healthCheckTimeoutSec: 15,
      reportResendSec: 1,
      stagingReserveBytes: 0,
    });
    this.agent = createAgent(config, this.platform);
    await this.agent.start();
  }

  async dispose(): Promise<void> {
    this.#stopped = true;
    await this.agent?.stop();
    await this.#loop;
    await rm(this.dir, { recursive: true, force: true });
  }
}

function makeFirmware(signer: PacketSigner, version: string, model: string): Promise<Buffer> {
  const head = Buffer.from(`emulated firmware ${version}\n`);
  const image = Buffer.concat([head, Buffer.alloc(8 * 1024 - head.length, version.charCodeAt(0))]);
  return writePacket({
    files: [{ name: `autoupdate-${version}-full.arm64.tar`, fileType: 'FirmwareFull', source: { data: image }, version }],
    signer,
    targetModels: [model],
  });
}
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

function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> {
  return waitFor(probe, { what, timeout: timeoutMs, interval: 100 });
}

/** Registers `n` routers of MODEL and starts an agent for each with its connection profile. */
async function routers(n: number, prefix: string, typedModel?: string): Promise<TestDevice[]> {
  const scope = app.services.auth.scope(accountKey);
  const out: TestDevice[] = [];
  for (let i = 0; i < n; i++) {
    const row = app.services.devices.create(scope, { serialNumber: `${prefix}-${i}`, name: `${prefix}-${i}`, ...(typedModel ? { model: typedModel } : {}) });
    const profile = app.services.profiles.profile(scope, row.uuid);
    const dir = await tempDir('trust-agent-');
    const device = new TestDevice(dir, profile, { model: MODEL, firmwareVersion: '1.0.0' });
    await device.start();
    devices.push(device);
    out.push(device);
  }
  for (const d of out) await until(`${d.profile.serialNumber} managed`, () => (d.agent.sessionState() === 'managed' ? true : undefined));
  return out;
}

function firmware(signer: PacketSigner, version: string): Promise<Buffer> {
  return makeFirmware(signer, version, MODEL);
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
      trustAnchorReloadSec: 1,
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

  it('a Smart Update signed by a separate vendor key (not held by the server) reaches every router of the reported model and succeeds', async () => {
    // Typed in wrong (or not at all): the model the routers report is what counts.
    await routers(2, 'TA-VENDOR', 'TYPED-IN-WRONG');
    const fleet = devices.filter((d) => d.profile.serialNumber.startsWith('TA-'));
    const vendorRoot = await createCa({ commonName: 'Router Vendor Firmware Root' });
    const vendorSigner = await createSigner({ issuer: vendorRoot, commonName: 'Router Vendor Firmware Signer' });
    const catalogue = await tempDir('trust-vendor-');
    dirs.push(catalogue);
    await writeFile(join(catalogue, 'fw-9.0.0.tar'), await firmware(vendorSigner, '9.0.0'));
    const report = await app.services.packets.importVendorFirmware(catalogue, { trustAnchorsPem: [vendorRoot.certPem] });
    expect(report.imported).toEqual([expect.objectContaining({ model: MODEL, version: '9.0.0' })]);
    expect(report.vendorAnchorsAdded).toBe(1);

    // The running server picks the stored vendor root up (as after `fleet-server firmware import`
    // in another process) and every router gets it.
    await until('the vendor root in the set', () =>
      app.services.trust.forAccount(accountKey).anchors.some((a) => a.scope === 'vendor' && a.certPem.trim() === vendorRoot.certPem.trim()) ? true : undefined);
    const want = app.services.trust.forAccount(accountKey).digest;
    for (const d of fleet) {
      await until(`${d.profile.serialNumber} to store the vendor root`, async () => {
        const stored = await loadProfile(d.platform.storage, false);
        return stored && trustAnchorsDigest(stored.trustAnchorsPem) === want ? true : undefined;
      });
    }
    // The reported model is stored beside the typed-in one, and the dashboard counts reported models.
    const vendorDevice = fleet.find((d) => d.profile.serialNumber === 'TA-VENDOR-0')!;
    const view = await until('the reported model', async () => {
      const v = await api<{ model: string | null; reported: { model: string | null; firmware: string | null } }>(
        'GET', `/api/inventory/managed-devices/${vendorDevice.profile.deviceId}`);
      return v.json.reported.model ? v.json : undefined;
    });
    expect(view).toMatchObject({ model: 'TYPED-IN-WRONG', reported: { model: MODEL, firmware: '1.0.0' } });
    const types = await api<{ items: { model: string | null; count: number }[] }>('GET', '/api/dashboard/device-types');
    expect(types.json.items).toEqual([{ model: MODEL, count: fleet.length }]);

    expect((await api('PUT', '/api/account/smart-updates', { enabled: true })).status).toBe(200);
    const jobs = await until('the smart update job', async () => {
      const list = await api<{ items: { uuid: string; system: boolean; firmwareVersion: string }[] }>('GET', '/api/jobs');
      const found = list.json.items.filter((j) => j.system && j.firmwareVersion === '9.0.0');
      return found.length > 0 ? found : undefined;
    });
    // The job resource is a summary: the devices its target names are paged apart (one page holds them all).
    const targeted: string[] = [];
    for (const j of jobs) {
      const page = await api<{ items: { deviceUuid: string }[] }>('GET', `/api/jobs/${j.uuid}/target/devices`);
      targeted.push(...page.json.items.map((d) => d.deviceUuid));
    }
    expect(targeted.sort()).toEqual(fleet.map((d) => d.profile.deviceId).sort());
    const done = await until('every router on 9.0.0', async () => {
      const per = await api<{ items: { deviceUuid: string; result: string | null; errorCode: string | null }[] }>('GET', `/api/jobs/${jobs[0]!.uuid}/devices`);
      return per.json.items.every((i) => i.result !== null) ? per.json.items : undefined;
    }, 120_000);
    expect(done.map((i) => [i.result, i.errorCode])).toEqual(fleet.map(() => ['succeeded', null]));
  }, 240_000);
});
