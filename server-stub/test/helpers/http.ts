import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.js';
import { TestClock } from '../../src/clock.js';
import type { ConfigInput } from '../../src/config.js';
import { T0, type Tenant, tempDir, testConfig, type World, worldOf } from './setup.js';

export interface AppWorld extends World {
  app: FastifyInstance;
  /** Logs the tenant's admin in and returns the bearer token. */
  login(t: Tenant): Promise<string>;
  req(
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
    url: string,
    opts?: { token?: string; body?: unknown; payload?: string | Buffer; headers?: Record<string, string> },
  ): Promise<LightMyRequestResponse>;
}

export async function appWorld(flags: ConfigInput = {}): Promise<AppWorld> {
  const dataDir = tempDir();
  const clock = new TestClock(T0);
  const app = await buildApp(testConfig(dataDir, flags), { clock });
  await app.ready();
  const base = worldOf(app.services, clock, dataDir);
  const aw: AppWorld = {
    ...base,
    app,
    close() {
      void app.close();
    },
    async login(t) {
      const res = await aw.req('POST', '/api/auth/login', { body: { username: t.username, password: t.password } });
      if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
      return res.json().token as string;
    },
    req(method, url, opts = {}) {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
      return app.inject({
        method,
        url,
        headers,
        ...(opts.payload !== undefined
          ? { payload: opts.payload }
          : opts.body !== undefined
            ? { payload: opts.body as object }
            : {}),
      });
    },
  };
  return aw;
}
