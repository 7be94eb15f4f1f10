import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { type CertificateAndKey, createCa, issueCertificate } from '@router-fleet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppWorld, appWorld } from './helpers/http.js';
import { DAY, removeTempDirs, T0, type Tenant } from './helpers/setup.js';

let w: AppWorld;
let t: Tenant;
let token: string;
let ca: CertificateAndKey;
let leaf: CertificateAndKey;
let expired: CertificateAndKey;

beforeAll(async () => {
  const now = new Date(T0);
  ca = await createCa({ commonName: 'Store Test CA', now, keyBits: 1024 });
  leaf = await issueCertificate({ commonName: 'vpn.example', issuer: ca, now, keyBits: 1024 });
  expired = await issueCertificate({
    commonName: 'old.example',
    now,
    keyBits: 1024,
    notBefore: new Date(T0 - 400 * DAY),
    notAfter: new Date(T0 - DAY),
  });
  w = await appWorld({ testClock: true });
  t = await w.newTenant();
  w.licences(t, 'basic-25', 1);
  token = await w.login(t);
});
afterAll(async () => {
  await w.app.close();
  removeTempDirs();
});

const derOf = (pem: string) => new X509Certificate(pem).raw;

describe('certificate store', () => {
  it('accepts a PEM CA and a DER certificate, with subject, issuer, validity, fingerprint and CA flag', async () => {
    const a = await w.req('POST', '/api/certificates', { token, body: { pem: ca.certPem } });
    expect(a.statusCode, a.body).toBe(201);
    expect(a.json()).toMatchObject({
      name: 'Store Test CA',
      kind: 'ca',
      isCa: true,
      selfSigned: true,
      status: 'valid',
      fingerprintSha256: createHash('sha256').update(derOf(ca.certPem)).digest('hex'),
    });
    expect(a.json().subject).toContain('CN=Store Test CA');
    const der = derOf(leaf.certPem).toString('base64');
    const b = await w.req('POST', '/api/certificates', { token, body: { name: 'vpn leaf', der } });
    expect(b.statusCode, b.body).toBe(201);
    expect(b.json()).toMatchObject({ name: 'vpn leaf', kind: 'certificate', isCa: false, selfSigned: false });
    expect(b.json().issuer).toContain('CN=Store Test CA');
    expect(b.json().pem).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    const got = await w.req('GET', `/api/certificates/${b.json().uuid}`, { token });
    expect(got.json().fingerprintSha256).toBe(b.json().fingerprintSha256);
    const again = await w.req('POST', '/api/certificates', { token, body: { name: 'again', der } });
    expect(again.json().code).toBe('SERVER_CERTIFICATE_DUPLICATE');
    // Another certificate under a name already in the store.
    const taken = await w.req('POST', '/api/certificates', { token, body: { name: 'vpn leaf', pem: expired.certPem } });
    expect(taken.statusCode, taken.body).toBe(409);
    expect(taken.json().code).toBe('SERVER_NAME_TAKEN');
    const notCa = await w.req('POST', '/api/certificates', { token, body: { name: 'x', kind: 'ca', pem: leaf.certPem } });
    expect(notCa.json().code).toBe('SERVER_CERTIFICATE_INVALID');
  });

  it('refuses private keys (PEM, DER, next to a certificate) and garbage with stable codes', async () => {
    const keyDer = createPrivateKey(leaf.keyPem).export({ format: 'der', type: 'pkcs8' }).toString('base64');
    const cases: [unknown, string][] = [
      [{ pem: leaf.keyPem }, 'SERVER_CERTIFICATE_PRIVATE_KEY'],
      [{ pem: `${leaf.certPem}${leaf.keyPem}` }, 'SERVER_CERTIFICATE_PRIVATE_KEY'],
      [{ der: keyDer }, 'SERVER_CERTIFICATE_PRIVATE_KEY'],
      [{ pem: 'hello world' }, 'SERVER_CERTIFICATE_INVALID'],
      [{ pem: '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUW3Z0\n-----END CERTIFICATE-----\n' }, 'SERVER_CERTIFICATE_INVALID'],
      [{ der: Buffer.from('not a certificate at all').toString('base64') }, 'SERVER_CERTIFICATE_INVALID'],
      [{ der: '%%%' }, 'SERVER_CERTIFICATE_INVALID'],
      [{ pem: `${ca.certPem}${leaf.certPem}` }, 'SERVER_CERTIFICATE_INVALID'],
      [{}, 'SERVER_VALIDATION'],
    ];
    for (const [body, code] of cases) {
      const r = await w.req('POST', '/api/certificates', { token, body: { name: `bad-${code}`, ...(body as object) } });
      expect(r.json().code, JSON.stringify(body).slice(0, 60)).toBe(code);
      expect(r.body).not.toContain('PRIVATE KEY');
    }
  });

  it('expiring-soon lists expired certificates and those ending within `days`', async () => {
    const old = await w.req('POST', '/api/certificates', { token, body: { pem: expired.certPem } });
    expect(old.statusCode, old.body).toBe(201);
    expect(old.json().status).toBe('expired');
    const soon = await w.req('GET', '/api/certificates/expiring-soon?days=30', { token });
    expect(soon.json().items.map((c: { uuid: string }) => c.uuid)).toEqual([old.json().uuid]);
    // The leaf (and the CA) run a year from T0: inside 400 days, soonest first.
    const later = await w.req('GET', '/api/certificates/expiring-soon?days=400', { token });
    expect(later.json().items[0].uuid).toBe(old.json().uuid);
    expect(later.json().items.length).toBeGreaterThanOrEqual(2);
  });

  it('a stored certificate is a packet component by uuid; expired, non-CA for ca-certificate and unknown are refused', async () => {
    const list = (await w.req('GET', '/api/certificates?kind=ca', { token })).json().items as { uuid: string }[];
    const caUuid = list[0]!.uuid;
    const leafUuid = (await w.req('GET', '/api/certificates?kind=certificate', { token })).json().items
      .find((c: { name: string }) => c.name === 'vpn leaf').uuid as string;
    const build = (components: unknown[]) =>
      w.req('POST', '/api/packets/build', { token, body: { name: 'certs', components } });
    const ok = await build([
      { kind: 'ca-certificate', fileName: 'ca.pem', certificateUuid: caUuid },
      { kind: 'certificate', fileName: 'vpn.pem', certificateUuid: leafUuid },
    ]);
    expect(ok.statusCode, ok.body).toBe(201);
    expect(ok.json().sections.map((s: { fileType: string }) => s.fileType)).toEqual(['CaCertificate', 'Certificate']);
    const wrong = await build([{ kind: 'ca-certificate', fileName: 'ca.pem', certificateUuid: leafUuid }]);
    expect(wrong.json().code).toBe('SERVER_CERTIFICATE_INVALID');
    const oldUuid = (await w.req('GET', '/api/certificates/expiring-soon', { token })).json().items[0].uuid;
    const old = await build([{ kind: 'certificate', fileName: 'old.pem', certificateUuid: oldUuid }]);
    expect(old.json().code).toBe('SERVER_CERTIFICATE_INVALID');
    const unknown = await build([{ kind: 'certificate', fileName: 'x.pem', certificateUuid: '00000000-0000-4000-8000-000000000000' }]);
    expect(unknown.statusCode).toBe(400);
  });

  it('delete removes a certificate', async () => {
    const c = (await w.req('GET', '/api/certificates/expiring-soon', { token })).json().items[0];
    expect((await w.req('DELETE', `/api/certificates/${c.uuid}`, { token })).statusCode).toBe(204);
    expect((await w.req('GET', `/api/certificates/${c.uuid}`, { token })).statusCode).toBe(404);
  });
});

describe('plan gates (Free)', () => {
  it('certificate store, templates, audit log and custom fields answer 403 SERVER_PLAN_FEATURE_UNAVAILABLE', async () => {
    const free = await w.newTenant();
    w.licences(free, 'free', 1);
    const ft = await w.login(free);
    const group = (await w.req('POST', '/api/inventory/device-groups', { token: ft, body: { name: 'g' } })).json();
    const gated: [string, string, unknown?][] = [
      ['GET', '/api/certificates'],
      ['POST', '/api/certificates', { pem: ca.certPem }],
      ['GET', '/api/certificates/expiring-soon'],
      ['GET', '/api/configuration-templates'],
      ['POST', '/api/configuration-templates', { name: 't', body: 'x' }],
      ['PUT', `/api/inventory/device-groups/${group.uuid}/template-values`, { values: { a: 'b' } }],
      ['GET', '/api/audit-log'],
      ['GET', '/api/audit'],
      ['GET', '/api/audit-log/verify'],
      ['POST', '/api/inventory/managed-devices', { serialNumber: 'FREE-CF', customFields: { site: 'a' } }],
    ];
    for (const [method, url, body] of gated) {
      const r = await w.req(method as 'GET', url, { token: ft, body });
      expect(r.statusCode, url).toBe(403);
      expect(r.json().code, url).toBe('SERVER_PLAN_FEATURE_UNAVAILABLE');
    }
    // Building a packet from a stored certificate is gated too.
    const build = await w.req('POST', '/api/packets/build', {
      token: ft,
      body: { name: 'c', components: [{ kind: 'certificate', fileName: 'c.pem', certificateUuid: '00000000-0000-4000-8000-000000000000' }] },
    });
    expect(build.json().code).toBe('SERVER_PLAN_FEATURE_UNAVAILABLE');
  });
});
