/**
 * A small Prometheus text-format registry: counters the server increments and gauges read when
 * `/metrics` is scraped. No dependency: the format is simple and the set of series is fixed.
 */
type Labels = Readonly<Record<string, string>>;

interface Series {
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly values: Map<string, number>;
  readonly read?: () => number;
  /** How cluster mode combines the workers' values: `sum` (per-process figures) or `max` (store-wide ones). */
  readonly aggregate: 'sum' | 'max';
}

/** A registry's values at one moment, as sent between cluster processes. */
export type MetricsSnapshot = Record<
  string,
  { help: string; type: 'counter' | 'gauge'; aggregate: 'sum' | 'max'; values: [string, number][] }
>;

function labelKey(labels: Labels | undefined): string {
  if (!labels) return '';
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

export class Metrics {
  readonly #series = new Map<string, Series>();

  constructor() {
    this.counter('fleet_admissions_total', 'Device admissions by outcome.');
    this.counter('fleet_messages_in_total', 'Control-channel messages received from devices.');
    this.counter('fleet_messages_out_total', 'Control-channel messages sent to devices.');
    this.counter('fleet_errors_total', 'Errors answered by the API, by code.');
    this.counter('fleet_http_requests_total', 'HTTP requests answered.');
  }

  counter(name: string, help: string): void {
    if (!this.#series.has(name)) this.#series.set(name, { help, type: 'counter', values: new Map(), aggregate: 'sum' });
  }

  /** A gauge whose value is read at scrape time. */
  gauge(name: string, help: string, read: () => number, options: { aggregate?: 'sum' | 'max' } = {}): void {
    this.#series.set(name, { help, type: 'gauge', values: new Map(), read, aggregate: options.aggregate ?? 'sum' });
  }

  snapshot(): MetricsSnapshot {
    const out: MetricsSnapshot = {};
    for (const [name, s] of this.#series) {
      out[name] = {
        help: s.help,
        type: s.type,
        aggregate: s.aggregate,
        values: s.read ? [['', s.read()]] : [...s.values],
      };
    }
    return out;
  }

  inc(name: string, labels?: Labels, by = 1): void {
    const s = this.#series.get(name);
    if (!s) throw new Error(`unknown metric ${name}`);
    const key = labelKey(labels);
    s.values.set(key, (s.values.get(key) ?? 0) + by);
  }

  value(name: string, labels?: Labels): number {
    const s = this.#series.get(name);
    if (!s) return 0;
    if (s.read) return s.read();
    return s.values.get(labelKey(labels)) ?? 0;
  }

  render(): string {
    return renderSnapshot(this.snapshot());
  }
}

/** Combines the snapshots of several processes (cluster mode): sums, or the maximum for store-wide gauges. */
export function mergeSnapshots(snapshots: readonly MetricsSnapshot[]): MetricsSnapshot {
  const out: MetricsSnapshot = {};
  for (const snap of snapshots) {
    for (const [name, s] of Object.entries(snap)) {
      const cur = (out[name] ??= { help: s.help, type: s.type, aggregate: s.aggregate, values: [] });
      const map = new Map(cur.values);
      for (const [k, v] of s.values) {
        const prev = map.get(k);
        map.set(k, prev === undefined ? v : s.aggregate === 'max' ? Math.max(prev, v) : prev + v);
      }
      cur.values = [...map];
    }
  }
  return out;
}

export function renderSnapshot(snap: MetricsSnapshot): string {
  const lines: string[] = [];
  for (const [name, s] of Object.entries(snap)) {
    lines.push(`# HELP ${name} ${s.help}`, `# TYPE ${name} ${s.type}`);
    if (s.values.length === 0) lines.push(`${name} 0`);
    for (const [key, v] of s.values) lines.push(`${name}${key} ${v}`);
  }
  return `${lines.join('\n')}\n`;
}
