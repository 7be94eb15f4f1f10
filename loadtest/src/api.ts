import autocannon from 'autocannon';
import { withRest } from './local-server.js';
import { API_SCENARIOS, type ApiContext, type ApiScenario } from './scenarios/api.js';

export interface ApiResult {
  scenario: string;
  description: string;
  skipped?: string;
  requests?: number;
  rps?: number;
  p50Ms?: number;
  p99Ms?: number;
  errors?: number;
  non2xx?: number;
  errorRate?: number;
  thresholds?: ApiScenario['thresholds'];
  pass: boolean;
  failures?: string[];
}

interface DevicePage {
  items: { uuid: string; model: string | null; firmware: string | null }[];
  nextCursor: string | null;
}

/** Reads what the scenarios need from the account: a sample of devices, models, firmware, a job. */
export function apiContext(url: string, token: string): Promise<ApiContext> {
  return withRest(url, token, async (rest) => {
    const uuids: string[] = [];
    const models = new Set<string>();
    const firmware = new Set<string>();
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const res: DevicePage = await rest.json<DevicePage>('GET', `/api/inventory/managed-devices?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      for (const d of res.items) {
        uuids.push(d.uuid);
        if (d.model) models.add(d.model);
        if (d.firmware) firmware.add(d.firmware);
      }
      cursor = res.nextCursor;
      if (!cursor) break;
    }
    const jobs = await rest.json<{ items: { uuid: string }[] }>('GET', '/api/jobs?limit=1');
    return {
      deviceUuids: uuids,
      models: models.size ? [...models] : ['none'],
      firmware: firmware.size ? [...firmware] : ['none'],
      ...(jobs.items[0] ? { jobUuid: jobs.items[0].uuid } : {}),
    };
  });
}

/** Runs one scenario with autocannon and judges it against its thresholds. */
export async function runApiScenario(
  url: string,
  token: string,
  scenario: ApiScenario,
  ctx: ApiContext,
  overrides: { durationSec?: number; connections?: number } = {},
): Promise<ApiResult> {
  const skipped = scenario.skip?.(ctx);
  if (skipped) return { scenario: scenario.name, description: scenario.description, skipped, pass: true };
  let i = 0;
  const result = await autocannon({
    url,
    connections: overrides.connections ?? scenario.connections,
    duration: overrides.durationSec ?? scenario.durationSec,
    headers: { authorization: `Bearer ${token}` },
    requests: [
      {
        setupRequest: (req) => {
          const r = scenario.request(i++, ctx);
          return {
            ...req,
            method: r.method,
            path: r.path,
            ...(r.body !== undefined ? { body: r.body } : {}),
            headers: { ...req.headers, authorization: `Bearer ${token}`, ...(r.contentType ? { 'content-type': r.contentType } : {}) },
          };
        },
      },
    ],
  });
  const total = result.requests.total;
  const bad = result.errors + result.timeouts + result.non2xx;
  const errorRate = total ? bad / total : 1;
  const rps = Math.round(result.requests.average);
  const t = scenario.thresholds;
  const failures: string[] = [];
  if (rps < t.minRps) failures.push(`${rps} req/s < ${t.minRps}`);
  if (result.latency.p99 > t.maxP99Ms) failures.push(`p99 ${result.latency.p99} ms > ${t.maxP99Ms} ms`);
  if (errorRate > t.maxErrorRate) failures.push(`error rate ${(errorRate * 100).toFixed(2)} % > ${t.maxErrorRate * 100} %`);
  return {
    scenario: scenario.name,
    description: scenario.description,
    requests: total,
    rps,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    errorRate,
    thresholds: t,
    pass: failures.length === 0,
    ...(failures.length ? { failures } : {}),
  };
}

/** Runs the named scenarios (all by default); the verdict is every scenario's. */
export async function runApi(url: string, token: string, names?: readonly string[], overrides: { durationSec?: number } = {}) {
  const unknown = (names ?? []).filter((n) => !API_SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown scenario(s): ${unknown.join(', ')}; known: ${API_SCENARIOS.map((s) => s.name).join(', ')}`);
  const ctx = await apiContext(url, token);
  const results: ApiResult[] = [];
  for (const scenario of API_SCENARIOS.filter((s) => !names?.length || names.includes(s.name))) {
    results.push(await runApiScenario(url, token, scenario, ctx, overrides));
  }
  return { pass: results.every((r) => r.pass), results };
}
