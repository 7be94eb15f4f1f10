/**
 * REST API scenarios for autocannon. Each names its requests and the verdict thresholds; the
 * thresholds were set from runs on our 2-core machine against a 50,000-device store (see
 * BENCHMARKS.md) with head-room, so a regression fails the run.
 */
export interface ApiContext {
  /** Sample of device uuids of the account. */
  deviceUuids: string[];
  /** Models and firmware versions present (for filters). */
  models: string[];
  firmware: string[];
  /** A job to read progress from, if any. */
  jobUuid?: string;
}

export interface ApiRequest {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
  contentType?: string;
}

export interface ApiScenario {
  name: string;
  description: string;
  /** Concurrent connections and duration (s). */
  connections: number;
  durationSec: number;
  /** Request i of the run (cycled). */
  request(i: number, ctx: ApiContext): ApiRequest;
  /** Pass/fail: minimum requests/s, maximum p99 latency (ms), maximum error + non-2xx share. */
  thresholds: { minRps: number; maxP99Ms: number; maxErrorRate: number };
  /** Skip (with the reason) when the data needed is missing. */
  skip?(ctx: ApiContext): string | undefined;
}

const pick = <T>(list: readonly T[], i: number): T => list[i % list.length]!;

export const API_SCENARIOS: readonly ApiScenario[] = [
  {
    name: 'device-list',
    description: 'Device list pages of 50 with filters (status, model, firmware, text) and sorting',
    connections: 10,
    durationSec: 10,
    request: (i, ctx) => {
      const variants = [
        '?limit=50',
        '?limit=50&status=offline',
        `?limit=50&model=${encodeURIComponent(pick(ctx.models, i))}`,
        `?limit=50&firmware=${encodeURIComponent(pick(ctx.firmware, i))}&sort=name&order=desc`,
        '?limit=50&text=pump',
      ];
      return { method: 'GET', path: `/api/inventory/managed-devices${pick(variants, i)}` };
    },
    thresholds: { minRps: 150, maxP99Ms: 500, maxErrorRate: 0 },
  },
  {
    name: 'device-details',
    description: 'One device by uuid, spread over the fleet',
    connections: 10,
    durationSec: 10,
    request: (i, ctx) => ({ method: 'GET', path: `/api/inventory/managed-devices/${pick(ctx.deviceUuids, i * 7919)}` }),
    thresholds: { minRps: 300, maxP99Ms: 300, maxErrorRate: 0 },
    skip: (ctx) => (ctx.deviceUuids.length === 0 ? 'no devices' : undefined),
  },
  {
    name: 'dashboard',
    description: 'Dashboard calls: status counts, firmware distribution, device types, recent events',
    connections: 10,
    durationSec: 10,
    request: (i) => ({
      method: 'GET',
      path: pick(['/api/dashboard/status', '/api/dashboard/firmware', '/api/dashboard/device-types', '/api/dashboard/events'], i),
    }),
    thresholds: { minRps: 30, maxP99Ms: 1500, maxErrorRate: 0 },
  },
  {
    name: 'dashboard-map',
    description: 'Device locations as GeoJSON (every device with coordinates)',
    connections: 2,
    durationSec: 10,
    request: () => ({ method: 'GET', path: '/api/dashboard/locations' }),
    thresholds: { minRps: 1, maxP99Ms: 5000, maxErrorRate: 0 },
  },
  {
    name: 'job-progress',
    description: 'Job progress (the summary), the first page of per-device results and of the target\'s devices',
    connections: 10,
    durationSec: 10,
    request: (i, ctx) => ({
      method: 'GET',
      path: pick([`/api/jobs/${ctx.jobUuid}`, `/api/jobs/${ctx.jobUuid}/devices?limit=50`, `/api/jobs/${ctx.jobUuid}/target/devices?limit=50`], i),
    }),
    thresholds: { minRps: 50, maxP99Ms: 1000, maxErrorRate: 0 },
    skip: (ctx) => (ctx.jobUuid ? undefined : 'no job in the account (seed one with fleet-loadtest seed)'),
  },
  {
    name: 'csv-import',
    description: 'CSV mass registration of 100 new devices per request',
    connections: 2,
    durationSec: 5,
    request: (i) => {
      const run = `${process.pid.toString(36)}${Date.now().toString(36)}`.toUpperCase();
      const rows = Array.from({ length: 100 }, (_, r) => `LT${run}${String(i).padStart(6, '0')}${String(r).padStart(3, '0')},Load test ${i}-${r}`);
      return { method: 'POST', path: '/api/inventory/managed-devices/import', contentType: 'text/csv', body: `serialNumber,name\n${rows.join('\n')}\n` };
    },
    thresholds: { minRps: 2, maxP99Ms: 3000, maxErrorRate: 0 },
  },
];
