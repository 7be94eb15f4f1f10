import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterEach, expect } from 'vitest';
import { buildApp } from '../../src/app.js';
import { TestClock } from '../../src/clock.js';
import type { ConfigInput } from '../../src/config.js';
import type { PacketOptions } from '../../src/packets/service.js';
import { loadOrCreateSigningPki } from '../../src/pki/signing.js';
import type { PacketRow } from '../../src/store/packets.js';
import { FakeDevice } from './fake-device.js';
import { removeTempDirs, T0, type Tenant, tempDir, testConfig, type World, worldOf } from './setup.js';

export interface JobsWorld extends World {
  app: FastifyInstance;
  /** The server's port: fake devices dial its control channel. */
  channel: { port: number; close(): Promise<void> };
  baseUrl: string;
  tenant: Tenant;
  token: string;
  /** Registers `n` devices (optionally into a group) and returns connected-or-not fake devices. */
  fakeDevices(n: number, opts?: { prefix?: string; groupUuid?: string; model?: string }): FakeDevice[];
  /** A small signed packet built by the server. */
  packet(bytes?: number): Promise<PacketRow>;
  api(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH',
    url: string,
    body?: unknown,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test answers are checked field by field
  ): Promise<{ status: number; json: any }>;
  /**
   * Waits until the server has handled what reached it so far and what it sent reached `devices`
   * (connected ones): twice, an event-loop turn (the channel's group commit and a dispatch pass it
   * schedules run on setImmediate, in this process), the dispatcher's inputs applied, and then a
   * ping → pong on each device. Wait for
   * this (not for a time) before asserting that a device was NOT offered or cancelled something.
   */
  quiet(devices: FakeDevice[]): Promise<void>;
  /** Logs in again (after moving the clock beyond the session lifetime). */
  relogin(): Promise<void>;
  shutdown(): Promise<void>;
}

let seq = 0;

/** What the job tests' devices say in their hello (the smart-update rules read it). */
export const JOB_DEVICE_HELLO = { model: 'RT-100', firmwareVersion: '1.0.0' } as const;

/** A listening server (real sockets on port 0, test clock); fake devices use its real control channel. */
export async function jobsWorld(
  opts: { flags?: ConfigInput; packetOptions?: Partial<PacketOptions>; plan?: 'basic-25' | 'basic-1' | 'free'; licences?: number } = {},
): Promise<JobsWorld> {
  const dataDir = tempDir();
  const clock = new TestClock(T0);
  // The signing PKI must be valid at the test clock's time (the profile service, which shares the
  // directory, would otherwise create it at wall-clock time, after T0).
  await loadOrCreateSigningPki(dataDir, new Date(T0 - 86_400_000));
  const app = await buildApp(testConfig(dataDir, opts.flags ?? {}), {
    clock,
    ...(opts.packetOptions ? { packetOptions: opts.packetOptions } : {}),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  const baseUrl = `http://127.0.0.1:${port}`;
  app.services.jobs.publicBaseUrl = baseUrl;
  // Fake devices speak to the server's real control channel (/api/channel) on the same port.
  const channel = { port, close: async () => {} };
  const base = worldOf(app.services, clock, dataDir);
  const tenant = await base.newTenant();
  base.licences(tenant, opts.plan ?? 'basic-25', opts.licences ?? 1);
  const login = await app.inject({
    method: 'POST',
    url: '/api/auth/login',
    payload: { username: tenant.username, password: tenant.password },
  });
  const token = login.json().token as string;
  const w: JobsWorld = {
    ...base,
    app,
    channel,
    baseUrl,
    tenant,
    token,
    fakeDevices(n, o = {}) {
      const prefix = o.prefix ?? `D${++seq}`;
      const out: FakeDevice[] = [];
      for (let i = 0; i < n; i++) {
        const serialNumber = `${prefix}-${i}`;
        const row = app.services.devices.create(tenant.scope, {
          serialNumber,
          name: serialNumber,
          model: o.model ?? 'RT-100',
          ...(o.groupUuid ? { groupUuid: o.groupUuid } : {}),
        });
        const credential = app.services.devices.credential(tenant.scope, row.uuid);
        out.push(new FakeDevice({ uuid: row.uuid, serialNumber, credential }, JOB_DEVICE_HELLO));
      }
      return out;
    },
    async packet(bytes = 4096) {
      const data = Buffer.alloc(bytes);
      for (let i = 0; i < bytes; i++) data[i] = (i * 31 + 7) & 0xff;
      return app.services.packets.build(tenant.scope, {
        name: `fw-${++seq}`,
        components: [{ kind: 'firmware', fileName: 'autoupdate-2.0.0-full.arm64.tar', data: data.toString('base64'), version: '2.0.0' }],
      });
    },
    async api(method, url, body) {
      const res = await app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${w.token}` },
        ...(body === undefined ? {} : { payload: body as object }),
      });
      return { status: res.statusCode, json: res.body ? JSON.parse(res.body) : undefined };
    },
    async quiet(devices) {
      const connected = devices.filter((d) => d.welcomed);
      for (let round = 0; round < 2; round++) {
        await new Promise((r) => setImmediate(r));
        // The dispatcher paces its batches by their cost: wait until it has applied what it received.
        while (app.services.jobs.pendingInputs > 0) await new Promise((r) => setTimeout(r, 1));
        await Promise.all(connected.map((d) => d.roundTrip()));
      }
    },
    async relogin() {
      const res = await app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { username: tenant.username, password: tenant.password },
      });
      w.token = res.json().token as string;
    },
    async shutdown() {
      await channel.close();
      await app.close();
    },
  };
  return w;
}

/**
 * Per-test worlds for a test file: the returned `open` starts one, and every world opened in a test
 * is shut down (and the temporary directories removed) after it.
 */
export function jobsWorlds(): (opts?: Parameters<typeof jobsWorld>[0]) => Promise<JobsWorld> {
  const worlds: JobsWorld[] = [];
  afterEach(async () => {
    for (const w of worlds.splice(0)) await w.shutdown();
    removeTempDirs();
  });
  return async (opts = {}) => {
    const w = await jobsWorld(opts);
    worlds.push(w);
    return w;
  };
}

/** Creates a job through the API and expects it created. */
export async function createJob(w: JobsWorld, body: Record<string, unknown>): Promise<{ uuid: string; state: string }> {
  const res = await w.api('POST', '/api/jobs', body);
  expect(res.status, JSON.stringify(res.json)).toBe(201);
  return res.json as { uuid: string; state: string };
}
