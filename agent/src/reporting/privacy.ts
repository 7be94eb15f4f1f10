import { type AnalyticsMetrics, filterAnalyticsMetrics } from '@router-fleet/protocol';

/*
 * The analytics privacy filter. Analytics may carry only the allowed metrics (ANALYTICS_METRICS);
 * `filterAnalyticsMetrics` drops every other key. Values are checked too: numbers must be finite
 * and in range, strings must look like what the metric is (a version) and must not look like an
 * address, a port, a URL, a user name, a password, a certificate or a location. When in doubt, the
 * value is dropped: nothing that could identify a network, a person or a place leaves the router.
 */

const PATTERNS: readonly RegExp[] = [
  // IPv4 (also inside longer text)
  /(^|[^\d])(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}($|[^\d])/,
  // IPv6: two or more colon-separated hex groups, or :: forms
  /([0-9a-f]{1,4}:){2,}[0-9a-f]{0,4}/i,
  /::([0-9a-f]{1,4}|$)/i,
  // MAC addresses (aa:bb:cc:dd:ee:ff, aa-bb-…, aabb.ccdd.eeff)
  /[0-9a-f]{2}([:-][0-9a-f]{2}){5}/i,
  /[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}/i,
  // URLs and host:port
  /[a-z][a-z0-9+.-]*:\/\//i,
  /(^|[^a-z0-9])www\./i,
  /[a-z0-9-]\.[a-z]{2,}(:\d+|\/)/i,
  /:\d{2,5}($|[^\d])/,
  // e-mail addresses and user@host
  /[^\s@]+@[^\s@]+/,
  // PEM blocks and base64 certificate bodies
  /-----BEGIN [A-Z0-9 ]+-----/,
  /MII[A-Za-z0-9+/]{20,}/,
  // credentials and user names written as key=value or key: value
  /(user(name)?|login|passw(or)?d|pwd|secret|token|api[-_]?key|credential)\s*[=:]/i,
  // coordinates: two decimal degrees with ≥ 3 decimals, or degree signs
  /[-+]?\d{1,3}\.\d{3,}\s*[,;/ ]\s*[-+]?\d{1,3}\.\d{3,}/,
  /\d+\s*°/,
  /\b(lat|lon|lng|latitude|longitude)\b/i,
];

/** True when a string looks like an address, URL, user name, password, certificate or location. */
export function looksSensitive(text: string): boolean {
  return PATTERNS.some((re) => re.test(text));
}

const VERSION = /^[A-Za-z0-9.+_~-]{1,64}$/;
const HOST_SUFFIXES = new Set([
  'com', 'net', 'org', 'info', 'biz', 'gov', 'edu', 'mil', 'int', 'io', 'app', 'dev', 'cloud', 'online', 'site',
  'local', 'lan', 'home', 'internal', 'corp', 'example', 'test', 'invalid', 'localhost', 'arpa',
]);

/**
 * Function names are `function` or `function.detail` (e.g. `vpn.openvpn`, `container`). Anything
 * with more labels, or ending like a host name (a country code or a common top-level domain), is
 * taken for a host name and dropped.
 */
export function isFunctionName(name: string): boolean {
  if (!FUNCTION_NAME.test(name) || looksSensitive(name)) return false;
  const labels = name.split('.');
  if (labels.length > 2 || labels.some((l) => l === '')) return false;
  const last = labels.at(-1)!;
  return labels.length === 1 || !(last.length === 2 || HOST_SUFFIXES.has(last));
}
const FUNCTION_NAME = /^[a-z][a-z0-9_.-]{0,47}$/;
const PERCENT_KEYS = new Set(['networkQuality', 'cpuLoadPercent', 'memoryUsagePercent']);
const COUNT_KEYS = new Set(['disconnections', 'restarts', 'throughputBytesIn', 'throughputBytesOut']);

/**
 * Keeps only allowed metrics with plausible, non-identifying values. Returns the metrics and how
 * many keys or values were dropped.
 */
export function sanitizeAnalytics(raw: Record<string, unknown>): { metrics: AnalyticsMetrics; dropped: number } {
  const filtered = filterAnalyticsMetrics(raw);
  let dropped = filtered.dropped;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(filtered.metrics as Record<string, unknown>)) {
    let keep: unknown;
    if (PERCENT_KEYS.has(key)) {
      if (typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 100) keep = value;
    } else if (COUNT_KEYS.has(key)) {
      if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) keep = value;
    } else if (key === 'operatingHours') {
      if (typeof value === 'number' && Number.isFinite(value) && value >= 0) keep = value;
    } else if (key === 'firmwareVersion') {
      if (typeof value === 'string' && VERSION.test(value) && !looksSensitive(value)) keep = value;
    } else if (key === 'functionUsage') {
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        const usage: Record<string, boolean> = {};
        let n = 0;
        for (const [name, used] of Object.entries(value as Record<string, unknown>)) {
          if (n < 64 && isFunctionName(name) && typeof used === 'boolean') {
            usage[name] = used;
            n++;
          } else dropped++;
        }
        keep = usage;
      }
    }
    if (keep === undefined) dropped++;
    else out[key] = keep;
  }
  return { metrics: out as AnalyticsMetrics, dropped };
}
