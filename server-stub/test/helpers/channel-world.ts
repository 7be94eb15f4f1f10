import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import type { Logger } from 'pino';
import { loadOrCreateSigningPki, SIGNING_DIR } from '../../src/pki/signing.js';
import { TestClock } from '../../src/clock.js';
import type { ConfigInput } from '../../src/config.js';
import { main, type RunningServer } from '../../src/main.js';
import { type DeviceIdentity, FakeDevice } from './fake-device.js';
import { T0, type Tenant, tempDir, testConfig, type World, worldOf } from './setup.js';

export interface ChannelWorld extends World {
  server: RunningServer;
  /** ws(s)://…/api/channel */
  channelUrl: string;
  /** Moves the channel's monotonic clock (keep-alive timing) and runs one sweep. */
  tick(ms: number): void;
  connect(id: DeviceIdentity): Promise<FakeDevice>;
  /** Connects, sends hello and waits for the welcome. */
  admitted(id: DeviceIdentity): Promise<FakeDevice>;
  req(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    url: string,
    opts?: { token?: string; body?: unknown },
  ): Promise<LightMyRequestResponse>;
  login(t: Tenant): Promise<string>;
  stop(): Promise<void>;
}

let pkiTemplate: Promise<string> | undefined;

/** One signing PKI per test file, copied into each data directory (RSA key generation is slow). */
export async function seedSigningPki(dataDir: string): Promise<void> {
  pkiTemplate ??= (async () => {
    // Outside tempDir(): it must outlive each test's clean-up.
    const dir = mkdtempSync(join(tmpdir(), 'fleet-server-pki-'));
    await loadOrCreateSigningPki(dir);
    return join(dir, SIGNING_DIR);
  })();
  cpSync(await pkiTemplate, join(dataDir, SIGNING_DIR), { recursive: true });
}

/** A real server on 127.0.0.1:0 with a test clock and a movable keep-alive clock (`logger`: where it logs instead of stdout). */
export async function channelWorld(flags: ConfigInput = {}, dataDir: string = tempDir(), logger?: Logger): Promise<ChannelWorld> {
  await seedSigningPki(dataDir);
  const clock = new TestClock(T0);
  let mono = 1_000_000;
  const server = await main(testConfig(dataDir, flags), {
    clock,
    handleSignals: false,
    channel: { monotonic: () => mono },
    ...(logger ? { logger } : {}),
  });
  const base = worldOf(server.app.services, clock, dataDir);
  const devices: FakeDevice[] = [];
  const channelUrl = server.app.services.profiles.channelUrl();
  const cw: ChannelWorld = {
    ...base,
    server,
    channelUrl,
    tick(ms) {
      mono += ms;
      server.app.channel.sweep();
    },
    async connect(id) {
      const d = await FakeDevice.open(channelUrl, id, flags.tlsCert ? { ca: server.app.services.profiles.caCertPem } : {});
      devices.push(d);
      return d;
    },
    async admitted(id) {
      const d = await cw.connect(id);
      await d.admit();
      return d;
    },
    req(method, url, opts = {}) {
      return server.app.inject({
        method,
        url,
        headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
        ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
      });
    },
    async login(t) {
      const res = await cw.req('POST', '/api/auth/login', { body: { username: t.username, password: t.password } });
      return res.json().token as string;
    },
    async stop() {
      await server.close();
      for (const d of devices) d.terminate();
    },
  };
  return cw;
}
