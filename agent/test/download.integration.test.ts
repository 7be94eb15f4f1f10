import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError } from '../src/errors.js';
import type { Dispatcher } from 'undici';
import { createWsTransport } from '../src/connection/ws-transport.js';
import { downloadDispatcher, downloadPacket, httpDownloadSource } from '../src/jobs/download.js';
import { systemClock, systemRandom } from '../src/platform/clock.js';
import { createEmulatedPlatform } from '../src/platform/emulated.js';
import { faultyDownloadSource } from '../src/platform/fault-decorators.js';
import { FaultInjector, type Faults } from '../src/platform/faults.js';
import { createMemoryPlatform } from '../src/platform/memory.js';
import type { Staging } from '../src/platform/platform.js';
import { DOWNLOAD_TOKEN, FakeServer, type PacketFault } from './helpers/fake-server.js';
import { tempDir } from './helpers/device.js';
import { sha256 } from './helpers/packets.js';
import { type TestCerts, testCerts } from './helpers/pki.js';

/*
 * Downloads under a hostile network: link drops, wrong answers to a resume, flipped bytes, trickling servers,
 * endless data. Real HTTPS on port 0, real files in staging.
 */

let certs: TestCerts;
let server: FakeServer;
let staging: Staging;
let dir: string;
const data = Buffer.alloc(96 * 1024);
for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
let n = 0;

beforeAll(async () => {
  certs = await testCerts();
  server = await new FakeServer({ certPem: certs.tlsServer.certPem, keyPem: certs.tlsServer.keyPem }).start();
  dir = await tempDir('download-');
  staging = (await createEmulatedPlatform({ dataDir: dir })).staging;
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

interface Outcome {
  error?: AgentError;
  requests: { range: string | undefined; status: number }[];
  offsets: number[];
  content?: Buffer;
}

async function fetchPacket(
  fault: PacketFault | undefined,
  options: { retries?: number; stage?: Staging; offset?: number; name?: string; signal?: AbortSignal; faults?: Faults; dispatcher?: Dispatcher } = {},
): Promise<Outcome> {
  const name = options.name ?? `p${++n}.tar`;
  if (!server.packets.has(name)) server.addPacket(name, data, fault);
  const stage = options.stage ?? staging;
  const offsets: number[] = [];
  const before = server.downloads.length;
  let error: AgentError | undefined;
  try {
    await downloadPacket({
      url: server.packetUrl(name),
      token: DOWNLOAD_TOKEN,
      size: data.length,
      sha256: sha256(data),
      staging: stage,
      name: `job/${name}`,
      caPem: certs.tlsCa.certPem,
      allowInsecure: false,
      dispatcher: options.dispatcher,
      offset: options.offset ?? 0,
      persistOffset: async (o) => {
        offsets.push(o);
      },
      clock: systemClock(),
      random: systemRandom,
      source: faultyDownloadSource(
        httpDownloadSource,
        new FaultInjector(options.faults ?? {}, () => {
          throw new Error('no power cut here');
        }),
        systemClock(),
      ),
      retries: options.retries ?? 3,
      retryBaseMs: 10,
      stallWindowMs: 500,
      minBytesPerSec: 4096,
      syncBytes: 16 * 1024,
      signal: options.signal ?? new AbortController().signal,
    });
  } catch (e) {
    error = e as AgentError;
  }
  const requests = server.downloads.slice(before).map(({ range, status }) => ({ range, status }));
  const size = await stage.size(`job/${name}`);
  let content: Buffer | undefined;
  if (size !== undefined) {
    const parts: Buffer[] = [];
    for await (const c of stage.read(`job/${name}`)) parts.push(Buffer.from(c));
    content = Buffer.concat(parts);
  }
  return { ...(error ? { error } : {}), requests, offsets, ...(content ? { content } : {}) };
}

describe('packet download (undici, Range, SHA-256, watchdog)', () => {
  it('resumes with Range from the persisted offset after the link drops', async () => {
    const r = await fetchPacket({ cutAfterBytes: 40_000 });
    expect(r.error).toBeUndefined();
    expect(r.requests[0]).toEqual({ range: undefined, status: 200 });
    expect(r.requests[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(r.requests[1]!.status).toBe(206);
    const resumedAt = Number(r.requests[1]!.range!.slice(6, -1));
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(40_000);
    expect(r.offsets).toContain(resumedAt);
    expect(r.content!.equals(data)).toBe(true);
    expect(r.offsets.at(-1)).toBe(data.length);
  });

  it('resumes in a new attempt from a durable offset (restart after a power cut)', async () => {
    const first = await fetchPacket({ cutAfterBytes: 50_000, cutTimes: 5 }, { retries: 0, name: 'restart.tar' });
    expect(first.error?.code).toBe('AGENT_DOWNLOAD_INTERRUPTED');
    const offset = first.offsets.at(-1)!;
    expect(offset).toBeGreaterThan(0);
    server.packets.get('restart.tar')!.fault = {};
    const second = await fetchPacket(undefined, { name: 'restart.tar', offset });
    expect(second.error).toBeUndefined();
    expect(second.requests).toEqual([{ range: `bytes=${offset}-`, status: 206 }]);
    expect(second.content!.equals(data)).toBe(true);
  });

  it('an offer repeated once every byte is staged (the server host that sent it died) verifies what is there and asks for nothing', async () => {
    const first = await fetchPacket(undefined, { name: 'again.tar' });
    expect(first.error).toBeUndefined();
    const again = await fetchPacket(undefined, { name: 'again.tar', offset: data.length });
    expect(again.error).toBeUndefined();
    expect(again.requests).toEqual([]);
    expect(again.content!.equals(data)).toBe(true);
  });

  it('restarts from zero when a resume is answered with 200 (never splices)', async () => {
    const r = await fetchPacket({ cutAfterBytes: 30_000, ignoreRange: true });
    expect(r.error).toBeUndefined();
    expect(r.requests.map((q) => q.status)).toEqual([200, 200]);
    expect(r.requests[1]!.range).toMatch(/^bytes=/);
    expect(r.content!.equals(data)).toBe(true);
  });

  it('restarts from zero when Content-Range does not match the request', async () => {
    const r = await fetchPacket({ cutAfterBytes: 30_000, wrongRange: true });
    expect(r.error).toBeUndefined();
    expect(r.requests.map((q) => q.range === undefined)).toEqual([true, false, true]);
    expect(r.content!.equals(data)).toBe(true);
  });

  it('fails without retrying when the packet on the server changed size', async () => {
    const whole = await fetchPacket({ sizeChanged: true });
    expect(whole.error?.code).toBe('AGENT_DOWNLOAD_SIZE_MISMATCH');
    expect(whole.requests).toHaveLength(1);
    const first = await fetchPacket({ cutAfterBytes: 30_000, cutTimes: 5 }, { retries: 0, name: 'grown.tar' });
    const offset = first.offsets.at(-1)!;
    server.packets.get('grown.tar')!.fault = { sizeChanged: true };
    const resumed = await fetchPacket(undefined, { name: 'grown.tar', offset });
    expect(resumed.error?.code).toBe('AGENT_DOWNLOAD_SIZE_MISMATCH');
    expect(resumed.requests).toEqual([{ range: `bytes=${offset}-`, status: 206 }]);
  });

  it('detects a flipped byte by the SHA-256, removes the staged file, fails after bounded retries', async () => {
    const r = await fetchPacket({ flipAt: 5000 }, { retries: 2 });
    expect(r.error?.code).toBe('AGENT_DOWNLOAD_HASH_MISMATCH');
    expect(r.requests).toHaveLength(3);
    expect(r.requests.every((q) => q.range === undefined)).toBe(true);
    expect(r.content).toBeUndefined();
  });

  it('aborts a trickling server with the stall watchdog and retries, bounded', async () => {
    const r = await fetchPacket({ trickle: { bytesPerTick: 64, tickMs: 50 } }, { retries: 1 });
    expect(r.error?.code).toBe('AGENT_DOWNLOAD_STALLED');
    expect(r.requests).toHaveLength(2);
  });

  it('stops at the declared length when the server sends endless data', async () => {
    const r = await fetchPacket({ endless: true });
    expect(r.error?.code).toBe('AGENT_DOWNLOAD_TOO_LONG');
    expect(r.requests).toHaveLength(1);
    expect(r.content!.length).toBeLessThanOrEqual(data.length);
  });

  it('does not retry refused credentials or missing packets', async () => {
    for (const status of [401, 404]) {
      const r = await fetchPacket({ status });
      expect(r.error?.code).toBe('AGENT_DOWNLOAD_HTTP_STATUS');
      expect(r.requests).toHaveLength(1);
    }
    const busy = await fetchPacket({ status: 503 }, { retries: 1 });
    expect(busy.error?.code).toBe('AGENT_DOWNLOAD_FAILED');
    expect(busy.requests).toHaveLength(2);
  });

  it('refuses a server whose certificate the profile CA does not vouch for', async () => {
    const name = `tls${++n}.tar`;
    server.addPacket(name, data);
    const error = await downloadPacket({
      url: server.packetUrl(name),
      token: DOWNLOAD_TOKEN,
      size: data.length,
      sha256: sha256(data),
      staging,
      name: `job/${name}`,
      caPem: certs.otherCa.certPem,
      allowInsecure: false,
      offset: 0,
      persistOffset: async () => {},
      clock: systemClock(),
      random: systemRandom,
      retries: 0,
      retryBaseMs: 0,
      stallWindowMs: 1000,
      minBytesPerSec: 1,
      syncBytes: 1024,
      signal: new AbortController().signal,
    }).catch((e: AgentError) => e);
    expect((error as AgentError).code).toBe('AGENT_DOWNLOAD_FAILED');
    expect(server.packets.get(name)!.requests).toBe(0);
  });

  it('device-side link faults (simulator vocabulary): unreachable at first, cut, slow', async () => {
    const started = Date.now();
    const r = await fetchPacket(undefined, { faults: { download: { failAttempts: 2, cutAfterBytes: 10_000, bytesPerSec: 400_000 } } });
    expect(r.error).toBeUndefined();
    expect(r.requests.map((q) => q.range === undefined)).toEqual([true, false]);
    expect(r.content!.equals(data)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
  });

  it('works the same into memory staging', async () => {
    const memory = await createMemoryPlatform();
    const r = await fetchPacket({ cutAfterBytes: 20_000 }, { stage: memory.staging });
    expect(r.error).toBeUndefined();
    expect(r.content!.equals(data)).toBe(true);
  });

  it('downloads through a bounded pool: many at once share its few sockets (no port per download)', async () => {
    const pool = downloadDispatcher({ caPem: certs.tlsCa.certPem, connections: 2 });
    const before = server.downloads.length;
    const results = await Promise.all(Array.from({ length: 12 }, () => fetchPacket(undefined, { dispatcher: pool })));
    for (const r of results) expect(r.content!.equals(data)).toBe(true);
    const ports = new Set(server.downloads.slice(before).map((d) => d.port));
    expect(server.downloads.length - before).toBe(12);
    expect(ports.size).toBeLessThanOrEqual(2);
  });

  it('the ws transport\'s pools download from its source addresses, in turn', async () => {
    const transport = createWsTransport({ localAddresses: ['127.0.0.2', '127.0.0.3'] });
    const before = server.downloads.length;
    for (let i = 0; i < 4; i++) {
      const r = await fetchPacket(undefined, { dispatcher: transport.downloadDispatcher(certs.tlsCa.certPem) });
      expect(r.error).toBeUndefined();
    }
    expect(server.downloads.slice(before).map((d) => d.from)).toEqual(['127.0.0.2', '127.0.0.3', '127.0.0.2', '127.0.0.3']);
  });
});
