import { randomUUID } from 'node:crypto';
import { createCa, writePacket } from '@router-fleet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allRoutes } from '../src/routes/index.js';
import type { ResourceKind, RouteSpec } from '../src/routes/route.js';
import { type AppWorld, appWorld } from './helpers/http.js';
import { removeTempDirs, T0, type Tenant } from './helpers/setup.js';

/**
 * Tenant isolation, driven from the route table: every route that names a resource is called with
 * account A's token and account B's ids (→ 404, nothing of B in the answer, B's data unchanged);
 * every list is called with A's token (→ nothing of B). A new route that fits neither pattern
 * must be classified below, or this test fails.
 */
/** A CA certificate per tenant (made in beforeAll). */
let CERTS: string[] = [];

/** Valid bodies, so a request reaches the ownership check instead of stopping at validation. */
const BODIES: Record<string, unknown> = {
  'PATCH /api/users/{uuid}': { role: 'viewer' },
  'POST /api/licences/{uuid}/activate': {},
  'PATCH /api/inventory/managed-devices/{uuid}': { name: 'stolen' },
  'PATCH /api/inventory/device-groups/{uuid}': { name: 'stolen' },
  'POST /api/inventory/device-groups/{uuid}/devices': { deviceUuids: ['00000000-0000-4000-8000-000000000000'] },
  'PATCH /api/configuration-templates/{uuid}': { name: 'stolen' },
  'POST /api/configuration-templates/{uuid}/preview': { deviceUuid: '00000000-0000-4000-8000-000000000000' },
  'PUT /api/inventory/device-groups/{uuid}/template-values': { values: { apn: 'stolen' } },
};

/** Routes that name no resource and are not lists: what each does with another account's ids. */
const OWN_ACCOUNT_ROUTES: Record<string, string> = {
  'POST /api/auth/login': 'public',
  'POST /api/auth/logout': 'own session only',
  'POST /api/console/session': 'public (login)',
  'GET /api/console/session': 'own session only (the cookie\'s)',
  'DELETE /api/console/session': 'own session only (the cookie\'s)',
  'PATCH /api/me': 'own user only',
  'POST /api/me/password': 'own user only',
  'GET /api/me': 'own user only',
  'GET /api/account': 'own account only',
  'PATCH /api/account': 'own account only',
  'GET /api/account/plan': 'own account only',
  'POST /api/users': 'creates in own account',
  'POST /api/api-tokens': 'creates in own account',
  'POST /api/licences/redeem': 'a code redeemed by B is refused as redeemed (checked below)',
  'POST /api/licences/import': 'same as redeem',
  'POST /api/licences/activate': 'B\'s licence ids in the body are unknown; nothing is activated (licences-bulk.test.ts)',
  'POST /api/inventory/managed-devices': 'B\'s group in the body is an unknown group (checked below)',
  'POST /api/inventory/managed-devices/import': 'creates in own account',
  'POST /api/inventory/device-groups': 'creates in own account',
  'POST /api/configuration-templates': 'creates in own account',
  'POST /api/certificates': 'creates in own account',
  'POST /api/packets': 'creates in own account',
  'POST /api/packets/build': 'creates in own account',
  'PUT /api/packets/policy': 'own account only',
  'PUT /api/account/analytics-consent': 'own account only',
  'PUT /api/account/smart-updates': 'own account only',
  'POST /api/jobs': 'B\'s packet, devices or groups in the body are unknown (checked below)',
  'POST /api/inventory/connection-profiles': 'B\'s device ids in the body are unknown (checked below)',
  'GET /healthz': 'public',
  'GET /metrics': 'public, aggregate counts only',
  'GET /openapi.json': 'public',
  'GET /api/test/clock': 'server-wide test clock',
  'POST /api/test/clock': 'server-wide test clock',
};

const key = (r: RouteSpec) => `${r.method} ${r.url}`;

interface Owned {
  t: Tenant;
  token: string;
  ids: Record<ResourceKind, string>;
  secrets: string[];
}

let w: AppWorld;
let A: Owned;
let B: Owned;

async function populate(label: string): Promise<Owned> {
  const t = await w.newTenant(`Company ${label}`);
  w.licences(t, 'basic-25', 1);
  const [licence] = w.licences(t, 'api', 1);
  const token = await w.login(t);
  const post = async (url: string, body: unknown) => {
    const r = await w.req('POST', url, { token, body });
    if (r.statusCode !== 201) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
    return r.json();
  };
  const group = await post('/api/inventory/device-groups', { name: `group-${label}` });
  const device = await post('/api/inventory/managed-devices', {
    serialNumber: `SN-${label}`,
    name: `device-${label}`,
    groupUuid: group.uuid,
    model: `model-${label}`,
    latitude: 48.1,
    longitude: 11.5,
  });
  await w.req('PUT', `/api/inventory/device-groups/${group.uuid}/template-values`, { token, body: { values: { apn: `apn-${label}` } } });
  await w.req('PUT', '/api/account/analytics-consent', { token, body: { consent: true } });
  w.services.analytics.ingest(device.uuid, t.accountUuid, {
    samples: [{ at: w.clock.now(), periodSec: 3600, metrics: { cpuLoadPercent: 5, firmwareVersion: `9.9.9-${label}` } }],
  });
  const user = await post('/api/users', { username: `user-${label}-${t.accountId}`, password: 'long enough pw', role: 'viewer' });
  const apiToken = await post('/api/api-tokens', { name: `token-${label}` });
  const template = await post('/api/configuration-templates', { name: `template-${label}`, body: 'x' });
  const certificate = await post('/api/certificates', { name: `cert-${label}`, kind: 'ca', pem: CERTS[label === 'A' ? 0 : 1] });
  await w.req('PUT', '/api/packets/policy', { token, body: { allowUnsigned: true } });
  const tar = await writePacket({
    files: [{ name: 'cfg.txt', fileType: 'AsciiConfiguration', source: { data: Buffer.from(`cfg ${label}`) } }],
  });
  const up = await w.req('POST', `/api/packets?name=packet-${label}`, {
    token,
    payload: tar,
    headers: { 'content-type': 'application/x-tar' },
  });
  if (up.statusCode !== 201) throw new Error(`packet upload: ${up.statusCode} ${up.body}`);
  const packet = up.json();
  const job = await post('/api/jobs', { name: `job-${label}`, packetUuid: packet.uuid, target: { deviceUuids: [device.uuid] } });
  return {
    t,
    token,
    ids: {
      device: device.uuid,
      group: group.uuid,
      licence: licence!.uuid,
      user: user.uuid,
      apiToken: apiToken.uuid,
      template: template.uuid,
      certificate: certificate.uuid,
      packet: packet.uuid,
      job: job.uuid,
      execution: randomUUID(),
    },
    secrets: [
      ...Object.values({
        device: device.uuid,
        group: group.uuid,
        licence: licence!.uuid,
        user: user.uuid,
        apiToken: apiToken.uuid,
        template: template.uuid,
        certificate: certificate.uuid,
        packet: packet.uuid,
        job: job.uuid,
        execution: randomUUID(),
      }),
      `SN-${label}`,
      `device-${label}`,
      `group-${label}`,
      `template-${label}`,
      `cert-${label}`,
      `apn-${label}`,
      `model-${label}`,
      `9.9.9-${label}`,
      `packet-${label}`,
      `job-${label}`,
      t.accountUuid,
      apiToken.token,
      licence!.code,
    ],
  };
}

beforeAll(async () => {
  const now = new Date(T0);
  CERTS = [
    (await createCa({ commonName: 'Isolation CA A', now, keyBits: 1024 })).certPem,
    (await createCa({ commonName: 'Isolation CA B', now, keyBits: 1024 })).certPem,
  ];
  w = await appWorld({ testClock: true });
  A = await populate('A');
  B = await populate('B');
});
afterAll(async () => {
  await w.app.close();
  removeTempDirs();
});

function leaks(body: string): string[] {
  return B.secrets.filter((s) => body.includes(s));
}

describe('tenant isolation over the route table', () => {
  it('every route is covered by the matrix', () => {
    const unclassified = allRoutes.filter(
      (r) => !r.resources && r.method !== 'GET' && !(key(r) in OWN_ACCOUNT_ROUTES),
    );
    expect(unclassified.map(key)).toEqual([]);
    for (const r of allRoutes) {
      const params = [...r.url.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      expect(Object.keys(r.resources ?? {}).sort(), key(r)).toEqual(params.sort());
      if (r.resources && r.body && r.method !== 'DELETE') expect(BODIES, key(r)).toHaveProperty(key(r));
    }
  });

  // Public routes with resources (packet downloads) authenticate with a per-execution credential,
  // not an account token: their refusals are covered by packets.test.ts.
  const withResources = allRoutes.filter((r) => r.resources && r.access !== 'public');
  it.each(withResources.map((r) => [key(r), r] as const))('%s with A\'s token and B\'s ids → 404, no data', async (_, r) => {
    let url = r.url;
    for (const [param, kind] of Object.entries(r.resources!)) url = url.replace(`{${param}}`, B.ids[kind]);
    const res = await w.req(r.method, url, { token: A.token, body: BODIES[key(r)] ?? (r.body ? {} : undefined) });
    expect(res.statusCode, res.body).toBe(404);
    expect(res.json().code).toBe('SERVER_NOT_FOUND');
    expect(leaks(res.body)).toEqual([]);
  });

  const lists = allRoutes.filter((r) => r.method === 'GET' && !r.resources);
  it.each(lists.map((r) => [key(r), r] as const))('%s with A\'s token shows nothing of B', async (_, r) => {
    const res = await w.req('GET', r.url, { token: A.token });
    expect(res.statusCode).toBeLessThan(300);
    expect(leaks(res.body)).toEqual([]);
  });

  it('bulk connection profiles: B\'s devices in the body are unknown to A, and "all" lists only A\'s', async () => {
    const some = await w.req('POST', '/api/inventory/connection-profiles', { token: A.token, body: { deviceUuids: [B.ids.device] } });
    expect(some.statusCode).toBe(404);
    expect(leaks(some.body)).toEqual([]);
    const all = await w.req('POST', '/api/inventory/connection-profiles', { token: A.token, body: { all: true } });
    expect(all.statusCode).toBe(200);
    expect(leaks(all.body)).toEqual([]);
  });

  it('B\'s ids in query strings and bodies are unknown to A', async () => {
    const byGroup = await w.req('GET', `/api/inventory/managed-devices?groupUuid=${B.ids.group}`, { token: A.token });
    expect(byGroup.json().items).toEqual([]);
    const bySerial = await w.req('GET', '/api/inventory/managed-devices?serialNumber=SN-B', { token: A.token });
    expect(bySerial.json().items).toEqual([]);
    w.services.auth.scope(B.t.accountId).events.record({ type: 'test.b', subject: B.ids.device, at: w.clock.now() });
    const latest = await w.req('GET', `/api/events/latest?deviceUuids=${B.ids.device}`, { token: A.token });
    expect(latest.statusCode).toBe(200);
    expect(latest.json().items).toEqual([]);
    const create = await w.req('POST', '/api/inventory/managed-devices', {
      token: A.token,
      body: { serialNumber: 'SN-A2', groupUuid: B.ids.group },
    });
    expect(create.statusCode).toBe(400);
    const move = await w.req('POST', `/api/inventory/device-groups/${A.ids.group}/devices`, {
      token: A.token,
      body: { deviceUuids: [B.ids.device] },
    });
    expect(move.statusCode).toBe(404);
    const jobWithB = await w.req('POST', '/api/jobs', {
      token: A.token,
      body: { packetUuid: B.ids.packet, target: { deviceUuids: [A.ids.device] } },
    });
    expect(jobWithB.statusCode).toBe(400);
    const jobOnB = await w.req('POST', '/api/jobs', {
      token: A.token,
      body: { packetUuid: A.ids.packet, target: { deviceUuids: [B.ids.device] } },
    });
    expect(jobOnB.statusCode).toBe(400);
    expect(leaks(jobWithB.body + jobOnB.body).filter((x) => x !== B.ids.packet && x !== B.ids.device)).toEqual([]);
    const code = w.services.licensing.list(B.t.scope)[0]!.code;
    const redeem = await w.req('POST', '/api/licences/redeem', { token: A.token, body: { code } });
    expect(redeem.json().code).toBe('SERVER_LICENCE_CODE_REDEEMED');
    expect(leaks(redeem.body)).toEqual([]);
  });

  it('B\'s data is unchanged after all of A\'s attempts', async () => {
    const get = async (url: string) => (await w.req('GET', url, { token: B.token })).json();
    expect(await get(`/api/inventory/managed-devices/${B.ids.device}`)).toMatchObject({
      name: 'device-B',
      groupUuid: B.ids.group,
    });
    expect(await get(`/api/inventory/device-groups/${B.ids.group}`)).toMatchObject({ name: 'group-B', deviceCount: 1 });
    expect(await get(`/api/users/${B.ids.user}`)).toMatchObject({ role: 'viewer' });
    expect((await get('/api/api-tokens')).items.find((t: { uuid: string }) => t.uuid === B.ids.apiToken).revokedAt).toBe(null);
    expect(await get(`/api/licences/${B.ids.licence}`)).toMatchObject({ status: 'active' });
    expect(await get(`/api/configuration-templates/${B.ids.template}`)).toMatchObject({ name: 'template-B' });
    expect(await get(`/api/certificates/${B.ids.certificate}`)).toMatchObject({ name: 'cert-B' });
    expect(await get(`/api/inventory/device-groups/${B.ids.group}/template-values`)).toEqual({ values: { apn: 'apn-B' } });
    expect((await get('/api/audit-log/verify')).ok).toBe(true);
  });
});
