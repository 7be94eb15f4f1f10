import { type Static, Type } from '@sinclair/typebox';
import { Count, EpochMs, Percent, VersionString } from './common.js';

/**
 * The only metrics analytics may carry (the product's published list): operating hours,
 * disconnections, network quality, firmware version, restarts, CPU load, memory usage, data
 * throughput and function usage. Nothing else — no addresses, ports, URLs, names, credentials,
 * certificates or locations. Receivers drop any other key (see `filterAnalyticsMetrics`).
 */
export const ANALYTICS_METRICS = [
  'operatingHours',
  'disconnections',
  'networkQuality',
  'firmwareVersion',
  'restarts',
  'cpuLoadPercent',
  'memoryUsagePercent',
  'throughputBytesIn',
  'throughputBytesOut',
  'functionUsage',
] as const;
export type AnalyticsMetric = (typeof ANALYTICS_METRICS)[number];

export const AnalyticsMetrics = Type.Object(
  {
    operatingHours: Type.Optional(Type.Number({ minimum: 0, description: 'Total operating hours (h).' })),
    disconnections: Type.Optional(Count('Control-channel disconnections in the sample period.')),
    networkQuality: Type.Optional(Percent('Average uplink quality in the sample period')),
    firmwareVersion: Type.Optional(VersionString('Firmware version.')),
    restarts: Type.Optional(Count('Device restarts in the sample period.')),
    cpuLoadPercent: Type.Optional(Percent('Average CPU load')),
    memoryUsagePercent: Type.Optional(Percent('Average memory usage')),
    throughputBytesIn: Type.Optional(Count('Bytes received on all interfaces in the sample period.')),
    throughputBytesOut: Type.Optional(Count('Bytes sent on all interfaces in the sample period.')),
    functionUsage: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_.-]{0,47}$' }), Type.Boolean(), {
        maxProperties: 64,
        description: 'Which router functions are in use, by function name (e.g. `vpn.openvpn`: true).',
      }),
    ),
  },
  { description: 'Allowed metrics only; any other key is dropped by the receiver.' },
);
export type AnalyticsMetrics = Static<typeof AnalyticsMetrics>;

export const AnalyticsBody = Type.Object(
  {
    samples: Type.Array(
      Type.Object(
        {
          at: EpochMs('End of the sample period'),
          periodSec: Type.Integer({
            minimum: 1,
            maximum: 604_800,
            description: 'Length of the sample period (s).',
          }),
          metrics: AnalyticsMetrics,
        },
        { description: 'One sample.' },
      ),
      { minItems: 1, maxItems: 100, description: 'Batched samples, oldest first.' },
    ),
  },
  { description: 'Device analytics; sent only while the account has consented.' },
);
export type AnalyticsBody = Static<typeof AnalyticsBody>;

const ALLOWED = new Set<string>(ANALYTICS_METRICS);

/**
 * Keeps only the allowed metrics of a sample. Returns the filtered metrics and the number of keys
 * dropped. Both the agent (before sending) and the server (on receipt) apply it.
 */
export function filterAnalyticsMetrics(metrics: Record<string, unknown>): {
  metrics: AnalyticsMetrics;
  dropped: number;
} {
  const out: Record<string, unknown> = {};
  let dropped = 0;
  for (const key of Object.keys(metrics)) {
    if (ALLOWED.has(key)) out[key] = metrics[key];
    else dropped++;
  }
  return { metrics: out as AnalyticsMetrics, dropped };
}
