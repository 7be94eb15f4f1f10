import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { createCa, createMessage, createTestPki, type MessageOf, type TestPki, writePacket } from '@router-fleet/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { type JobsWorld, jobsWorld } from './helpers/jobs-world.js';
import { removeTempDirs, T0, tempDir } from './helpers/setup.js';

const worlds: JobsWorld[] = [];
async function open(opts: Parameters<typeof jobsWorld>[0] = {}): Promise<JobsWorld> {
  const w = await jobsWorld(opts);
  worlds.push(w);
  return w;
}
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.shutdown();
});
afterAll(() => removeTempDirs());

let pki: TestPki;
beforeAll(async () => {
  pki = await createTestPki({ now: new Date(T0), name: 'Account' });
});

async function upload(w: JobsWorld, body: Buffer, name = 'up') {
  const res = await w.app.inject({
    method: 'POST',
    url: `/api/packets?name=${name}`,
    headers: { authorization: `Bearer ${w.token}`, 'content-type': 'application/x-tar' },
    payload: body,
  });
  return { status: res.statusCode, json: res.json() };
}

const payload = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 13) & 0xff));

describe('packets per account', () => {
  it('accepts a signed upload chaining to an account anchor; unsigned only when the policy allows it', async () => {
    const w = await open();
    const files = [{ name: 'cfg.txt', fileType: 'AsciiConfiguration', source: { data: payload(100) } }] as const;
    const signed = await writePacket({ files, signer: pki.signer, createdAt: new Date(T0) });
    const refused = await upload(w, signed);
    expect(refused.status).toBe(422);
    expect(refused.json).toMatchObject({ code: 'SERVER_PACKET_INVALID', details: { code: 'PROTO_PACKET_SIGNER_UNTRUSTED' } });
    expect((await w.api('PUT', '/api/packets/policy', { allowUnsigned: false, trustAnchors: [pki.root.certPem] })).status).toBe(200);
    const ok = await upload(w, signed);
    expect(ok.status).toBe(201);
    expect(ok.json).toMatchObject({ signed: true, origin: 'upload', sections: [{ fileName: 'cfg.txt', size: 100 }] });
    expect(ok.json.signer.subject).toContain('Account');
    expect(existsSync(join(w.dataDir, 'packets', 'sha256', ok.json.sha256))).toBe(true);
    expect(ok.json.sha256).toBe(createHash('sha256').update(signed).digest('hex'));

    const unsigned = await writePacket({ files, createdAt: new Date(T0) });
    const noSig = await upload(w, unsigned);
    expect(noSig.json).toMatchObject({ details: { code: 'PROTO_PACKET_SIGNATURE_MISSING', entry: 'MANIFEST.sig' } });
    await w.api('PUT', '/api/packets/policy', { allowUnsigned: true, trustAnchors: [pki.root.certPem] });
    const allowed = await upload(w, unsigned);
    expect(allowed.status).toBe(201);
    expect(allowed.json.signed).toBe(false);

    // A flipped payload byte: the report names the entry.
    const bad = Buffer.from(signed);
    const at = bad.indexOf(payload(100).subarray(0, 16));
    bad[at + 5]! ^= 0xff;
    const flipped = await upload(w, bad);
    expect(flipped.status).toBe(422);
    expect(flipped.json.details).toMatchObject({ entry: 'cfg.txt' });
    expect(flipped.json.details.code).toMatch(/PROTO_PACKET_(SHA256|MD5)_MISMATCH/);

    // The MANIFEST as signed: the exact first member of the packet.
    const manifest = (await w.api('GET', `/api/packets/${ok.json.uuid}/manifest`)).json.text as string;
    const at0 = signed.indexOf(Buffer.from(manifest));
    expect(at0).toBe(512);
    expect(manifest).toMatch(/^FILENAME=cfg\.txt$/m);
    expect(manifest).toContain(`SHA256SUM=${ok.json.sections[0].sha256}`);

    const list = (await w.api('GET', '/api/packets')).json.items;
    expect(list).toHaveLength(2);
    expect((await w.api('DELETE', `/api/packets/${allowed.json.uuid}`)).status).toBe(204);
    expect((await w.api('GET', `/api/packets/${allowed.json.uuid}`)).status).toBe(404);
    expect((await w.api('GET', `/api/packets/${allowed.json.uuid}/manifest`)).status).toBe(404);
  });

  it('refuses a packet no router could extract (a name and its staging name), as the agent does', async () => {
    const w = await open();
    expect((await w.api('PUT', '/api/packets/policy', { allowUnsigned: true, trustAnchors: [pki.root.certPem] })).status).toBe(200);
    // A real tar from the packet writer: MANIFEST lists x.cfg and x.cfg.partial, both present.
    const tar = await writePacket({
      files: [
        { name: 'x.cfg', fileType: 'AsciiConfiguration', source: { data: payload(10) } },
        { name: 'x.cfg.partial', fileType: 'AsciiConfiguration', source: { data: payload(20) } },
      ],
      createdAt: new Date(T0),
    });
    const refused = await upload(w, tar);
    expect(refused.status).toBe(422);
    expect(refused.json).toMatchObject({
      code: 'SERVER_PACKET_INVALID',
      details: { code: 'PROTO_PACKET_DUPLICATE_ENTRY', entry: 'x.cfg.partial' },
    });
    expect((await w.api('GET', '/api/packets')).json.items).toHaveLength(0);
  });

  it('takes only CA certificates as the account\'s roots, and no more than a router can hold', async () => {
    const w = await open();
    const leaf = await w.api('PUT', '/api/packets/policy', { allowUnsigned: false, trustAnchors: [pki.signer.certPem] });
    expect(leaf).toMatchObject({ status: 400, json: { code: 'SERVER_VALIDATION' } });
    const roots = await Promise.all(Array.from({ length: 16 }, (_, i) => createCa({ commonName: `Root ${i}` })));
    const many = await w.api('PUT', '/api/packets/policy', { allowUnsigned: false, trustAnchors: roots.map((r) => r.certPem) });
    expect(many).toMatchObject({ status: 422, json: { code: 'SERVER_TOO_MANY_ANCHORS' } });
    expect((await w.api('GET', '/api/packets/policy')).json.trustAnchors).toEqual([]);
    const fifteen = await w.api('PUT', '/api/packets/policy', { allowUnsigned: false, trustAnchors: roots.slice(1).map((r) => r.certPem) });
    expect(fifteen.status).toBe(200);
    expect(w.services.trust.forAccount(w.tenant.accountId).anchors).toHaveLength(16);
  });

  it('caps the upload size while streaming', async () => {
    const w = await open({ packetOptions: { maxPacketBytes: 4096 } });
    const big = await writePacket({
      files: [{ name: 'c.bin', fileType: 'Container', source: { data: payload(10_000) } }],
      signer: pki.signer,
      createdAt: new Date(T0),
    });
    const res = await upload(w, big);
    expect(res.status).toBe(413);
    expect(res.json.code).toBe('SERVER_BODY_TOO_LARGE');
  });

  it('builds a packet from components, signed by the server; bad PEM is refused', async () => {
    const w = await open();
    const res = await w.api('POST', '/api/packets/build', {
      name: 'bundle',
      targetModels: ['RT-100'],
      components: [
        { kind: 'container', fileName: 'app.tar.xz', data: payload(300).toString('base64'), version: '1.0.0' },
        { kind: 'container-configuration', fileName: 'app.json', text: '{"name":"app"}' },
        { kind: 'ascii-configuration', fileName: 'cli.txt', text: 'set hostname r1\n' },
        { kind: 'ca-certificate', fileName: 'ca.pem', text: pki.root.certPem },
      ],
    });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    expect(res.json.signed).toBe(true);
    expect(res.json.header.targetModels).toEqual(['RT-100']);
    expect(res.json.sections.map((s: { fileType: string }) => s.fileType)).toEqual([
      'Container',
      'ContainerConfiguration',
      'AsciiConfiguration',
      'CaCertificate',
    ]);
    const bad = await w.api('POST', '/api/packets/build', {
      name: 'x',
      components: [{ kind: 'ca-certificate', fileName: 'ca.pem', text: pki.root.keyPem }],
    });
    expect(bad.status).toBe(400);
  });
});

interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function get(url: string, headers: Record<string, string>): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    // A connection per request (agent: false), as separate routers have: a kept-alive socket the
    // server closes while idle would fail the next request that reuses it.
    const req = httpRequest(url, { headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('packet downloads (real HTTP)', () => {
  async function offered(w: JobsWorld, bytes = 20_000, count = 2) {
    const packet = await w.packet(bytes);
    const devices = w.fakeDevices(count);
    for (const d of devices) await d.connect(w.channel.port);
    await w.api('POST', '/api/jobs', { packetUuid: packet.uuid, target: { all: true } });
    const offers = (await Promise.all(devices.map((d) => d.next((m) => m.type === 'job-offer')))) as MessageOf<'job-offer'>[];
    return { packet, offers, devices };
  }

  it('serves Range with ETag and If-Range; invalid or unsatisfiable ranges get 416', async () => {
    const w = await open();
    const { packet, offers } = await offered(w);
    const o = offers[0]!.body;
    const auth = { authorization: `Bearer ${o.download.token}` };
    const full = await get(o.packet.url, auth);
    expect(full.status).toBe(200);
    expect(full.headers['etag']).toBe(`"${packet.sha256}"`);
    expect(full.headers['accept-ranges']).toBe('bytes');
    expect(createHash('sha256').update(full.body).digest('hex')).toBe(packet.sha256);
    const part = await get(o.packet.url, { ...auth, range: 'bytes=100-199', 'if-range': `"${packet.sha256}"` });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 100-199/${packet.size}`);
    expect(part.body.equals(full.body.subarray(100, 200))).toBe(true);
    const tail = await get(o.packet.url, { ...auth, range: 'bytes=-10' });
    expect(tail.body.equals(full.body.subarray(packet.size - 10))).toBe(true);
    const open_ = await get(o.packet.url, { ...auth, range: `bytes=${packet.size - 5}-` });
    expect(open_.headers['content-range']).toBe(`bytes ${packet.size - 5}-${packet.size - 1}/${packet.size}`);
    // If-Range with another ETag: the whole file (never splice mismatched bytes).
    const changed = await get(o.packet.url, { ...auth, range: 'bytes=100-199', 'if-range': '"other"' });
    expect(changed.status).toBe(200);
    expect(changed.body.length).toBe(packet.size);
    // Multi-range is answered with the whole file.
    expect((await get(o.packet.url, { ...auth, range: 'bytes=0-1,5-6' })).status).toBe(200);
    for (const range of [`bytes=${packet.size}-`, 'bytes=50-10', 'bytes=abc', 'items=0-1', 'bytes=-0']) {
      const r = await get(o.packet.url, { ...auth, range });
      expect(r.status, range).toBe(416);
      expect(r.headers['content-range'], range).toBe(`bytes */${packet.size}`);
      expect(JSON.parse(r.body.toString()).code).toBe('SERVER_RANGE_NOT_SATISFIABLE');
    }
  });

  it('refuses the credential of another device or execution, a finished execution, and an expired credential, with 403 and a code', async () => {
    const w = await open();
    const { offers, devices } = await offered(w);
    const [a, b] = offers.map((o) => o.body);
    expect((await get(b!.packet.url, { authorization: `Bearer ${b!.download.token}` })).status).toBe(200);
    // A finished execution serves nothing more, even with its own valid credential.
    const failed = createMessage('job-progress', { executionId: b!.executionId, state: 'failed', errorCode: 'AGENT_INSTALL_FAILED', errorMessage: 'no' });
    devices[1]!.send(failed);
    await devices[1]!.next((m) => m.type === 'ack' && m.correlationId === failed.id);
    const finished = await get(b!.packet.url, { authorization: `Bearer ${b!.download.token}` });
    expect(finished.status).toBe(403);
    expect(JSON.parse(finished.body.toString()).code).toBe('SERVER_DOWNLOAD_FORBIDDEN');
    const other = await get(a!.packet.url, { authorization: `Bearer ${b!.download.token}` });
    expect(other.status).toBe(403);
    expect(JSON.parse(other.body.toString()).code).toBe('SERVER_DOWNLOAD_FORBIDDEN');
    const forged = await get(a!.packet.url, { authorization: `Bearer ${a!.download.token.slice(0, -2)}xx` });
    expect(JSON.parse(forged.body.toString()).code).toBe('SERVER_DOWNLOAD_FORBIDDEN');
    expect((await get(a!.packet.url, {})).status).toBe(401);
    w.advance(a!.download.expiresAt - w.clock.now());
    const expired = await get(a!.packet.url, { authorization: `Bearer ${a!.download.token}` });
    expect(expired.status).toBe(403);
    expect(JSON.parse(expired.body.toString()).code).toBe('SERVER_DOWNLOAD_EXPIRED');
  });

  it('caps concurrent downloads: 503 with Retry-After beyond the cap (no queue)', async () => {
    const w = await open({ packetOptions: { maxConcurrentDownloads: 1, maxQueuedDownloads: 0, downloadRetryAfterSec: 7 } });
    const { offers } = await offered(w, 8 * 1024 * 1024);
    const [a, b] = offers.map((o) => o.body);
    // A reader that does not read: the first download stays open.
    const slow = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = httpRequest(a!.packet.url, { headers: { authorization: `Bearer ${a!.download.token}` }, agent: false }, resolve);
      req.on('error', reject);
      req.end();
    });
    slow.pause();
    expect(slow.statusCode).toBe(200);
    const busy = await get(b!.packet.url, { authorization: `Bearer ${b!.download.token}` });
    expect(busy.status).toBe(503);
    expect(busy.headers['retry-after']).toBe('7');
    expect(JSON.parse(busy.body.toString()).code).toBe('SERVER_DOWNLOADS_BUSY');
    slow.resume();
    await new Promise((r) => slow.on('end', r));
    // The slot is freed when the server sees the finished response, shortly after the client does.
    await waitFor(async () => (await get(b!.packet.url, { authorization: `Bearer ${b!.download.token}`, range: 'bytes=0-9' })).status === 206, {
      what: 'a download slot free again',
    });
  });

  it('queues downloads beyond the cap (first in, first out) up to the queue length and wait, then 503', async () => {
    const w = await open({ packetOptions: { maxConcurrentDownloads: 1, maxQueuedDownloads: 1, downloadQueueWaitSec: 30, downloadRetryAfterSec: 7 } });
    const { offers } = await offered(w, 8 * 1024 * 1024, 4);
    const [a, b, c, d] = offers.map((o) => o.body);
    const open1 = (o: typeof a) =>
      new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
        const req = httpRequest(o!.packet.url, { headers: { authorization: `Bearer ${o!.download.token}` }, agent: false }, resolve);
        req.on('error', reject);
        req.end();
      });
    const slow = await open1(a);
    slow.pause();
    expect(slow.statusCode).toBe(200);
    // b waits in the queue (no answer yet); c finds the queue full.
    let bAnswered = false;
    const queued = open1(b).then((res) => ((bAnswered = true), res));
    // Polled, not slept: on a loaded machine the request may take a while to reach the queue.
    await expect.poll(() => w.services.packets.downloads.queued, { timeout: 20_000 }).toBe(1);
    const full = await get(c!.packet.url, { authorization: `Bearer ${c!.download.token}` });
    expect(full.status).toBe(503);
    expect(full.headers['retry-after']).toBe('7');
    expect(bAnswered).toBe(false);
    // The slot frees: b is served in full.
    slow.resume();
    await new Promise((r) => slow.on('end', r));
    const res = await queued;
    expect(res.statusCode).toBe(200);
    let bytes = 0;
    for await (const chunk of res) bytes += (chunk as Buffer).length;
    expect(bytes).toBe(Number(res.headers['content-length']));
    // A client that gives up while queued leaves the queue.
    const hold = await open1(c);
    hold.pause();
    const ctl = new AbortController();
    const gaveUp = new Promise<void>((resolve) => {
      const req = httpRequest(d!.packet.url, { headers: { authorization: `Bearer ${d!.download.token}` }, signal: ctl.signal, agent: false }, () => resolve());
      req.on('error', () => resolve());
      req.end();
    });
    await expect.poll(() => w.services.packets.downloads.queued, { timeout: 20_000 }).toBe(1);
    ctl.abort();
    await gaveUp;
    await expect.poll(() => w.services.packets.downloads.queued, { timeout: 20_000 }).toBe(0);
    hold.destroy();
    await expect.poll(() => w.services.packets.downloads.active, { timeout: 20_000 }).toBe(0);
  });
});

describe('vendor firmware catalogue', () => {
  it('imports signed firmware per model and version, lists it for every account, and firmware jobs pick the model\'s packet', async () => {
    const w = await open();
    const dir = join(tempDir(), 'vendor');
    mkdirSync(dir);
    const fw = (version: string, models: string[]) =>
      writePacket({
        files: [{ name: `autoupdate-${version}-full.arm64.tar`, fileType: 'FirmwareFull', source: { data: payload(500) }, version }],
        targetModels: models,
        signer: pki.signer,
        createdAt: new Date(T0),
      });
    writeFileSync(join(dir, 'a.tar'), await fw('2.1.0', ['RT-100', 'RT-200']));
    writeFileSync(join(dir, 'b.tar'), await fw('2.2.0', ['RT-100']));
    writeFileSync(join(dir, 'unsigned.tar'), await writePacket({
      files: [{ name: 'x.tar', fileType: 'FirmwareFull', source: { data: payload(10) }, version: '9.0.0' }],
      targetModels: ['RT-100'],
    }));
    const report = await w.services.packets.importVendorFirmware(dir, { trustAnchorsPem: [pki.root.certPem] });
    expect(report.imported.map((r) => `${r.model}@${r.version}`).sort()).toEqual(['RT-100@2.1.0', 'RT-100@2.2.0', 'RT-200@2.1.0']);
    expect(report.skipped).toMatchObject([{ file: 'unsigned.tar', code: 'PROTO_PACKET_SIGNATURE_MISSING' }]);
    const again = await w.services.packets.importVendorFirmware(dir, { trustAnchorsPem: [pki.root.certPem] });
    expect(again.imported).toEqual([]);
    const list = (await w.api('GET', '/api/firmware?model=RT-100')).json.items;
    expect(list.map((p: { version: string }) => p.version)).toEqual(['2.1.0', '2.2.0']);
    expect(w.services.packets.latestFirmware('RT-100')?.version).toBe('2.2.0');

    const [rt100] = w.fakeDevices(1, { model: 'RT-100' });
    const [rt300] = w.fakeDevices(1, { model: 'RT-300' });
    await rt100!.connect(w.channel.port);
    await rt300!.connect(w.channel.port);
    expect((await w.api('POST', '/api/jobs', { firmwareVersion: '7.7.7', target: { all: true } })).json.code).toBe('SERVER_FIRMWARE_UNKNOWN');
    const job = (await w.api('POST', '/api/jobs', { firmwareVersion: '2.1.0', target: { all: true } })).json;
    const offer = (await rt100!.next((m) => m.type === 'job-offer')) as MessageOf<'job-offer'>;
    expect(offer.body.packet.sha256).toBe(list[0].sha256);
    await w.quiet([rt300!]);
    expect(rt300!.offers()).toHaveLength(0);
    const rows = (await w.api('GET', `/api/jobs/${job.uuid}/devices`)).json.items;
    expect(rows.find((r: { deviceUuid: string }) => r.deviceUuid === rt300!.uuid)).toMatchObject({
      result: 'rejected',
      errorCode: 'SERVER_FIRMWARE_UNKNOWN',
    });
  });
});
