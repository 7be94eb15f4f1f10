import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runApi } from '../src/api.js';
import { activateLicences, login, prepareTenant, type ServerProcess, startServer } from '../src/local-server.js';
import { API_SCENARIOS } from '../src/scenarios/api.js';
import { seedAccount } from '../src/seed.js';

describe('fleet-loadtest api against a real server', () => {
  let dataDir: string;
  let server: ServerProcess;
  let token: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'loadtest-api-'));
    const tenant = await prepareTenant(dataDir, { plan: 'pro', licences: 10 });
    server = await startServer({ dataDir });
    token = await login(server.url, tenant);
    await activateLicences(server.url, token, tenant.codes);
    const seeded = await seedAccount(server.url, token, { devices: 1000 });
    expect(seeded.jobUuid).toMatch(/^[0-9a-f-]{36}$/);
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs every scenario with no errors and reports rates and latencies', async () => {
    const { results } = await runApi(server.url, token, undefined, { durationSec: 1 });
    expect(results.map((r) => r.scenario)).toEqual(API_SCENARIOS.map((s) => s.name));
    for (const r of results) {
      expect(r.skipped, r.scenario).toBeUndefined();
      expect(r.requests, r.scenario).toBeGreaterThan(0);
      expect(r.rps, r.scenario).toBeGreaterThan(0);
      expect(r.errors! + r.non2xx!, r.scenario).toBe(0);
      expect(r.p99Ms, r.scenario).toBeGreaterThanOrEqual(r.p50Ms!);
    }
  }, 120_000);

  it('judges a scenario by its thresholds', async () => {
    const { results } = await runApi(server.url, token, ['device-details'], { durationSec: 1 });
    const r = results[0]!;
    expect(r.pass).toBe(r.rps! >= r.thresholds!.minRps && r.p99Ms! <= r.thresholds!.maxP99Ms);
    await expect(runApi(server.url, token, ['no-such-scenario'])).rejects.toThrow(/unknown scenario/);
  }, 60_000);
});
