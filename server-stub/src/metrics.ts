import { AggregatorRegistry, type Aggregator, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The server's Prometheus metrics, exposed through prom-client (text format, escaping, histograms,
 * the process's own metrics and the merge of cluster processes).
 *
 * Counters and gauges keep their values here, synchronously readable (`value`, `snapshot`), and
 * accept label names at first use: the code that increments them declares only a name and a help
 * text. Their prom-client counterparts are brought up to date when the registry is read.
 * Histograms are prom-client's own, with label names and buckets declared up front.
 */
type Labels = Readonly<Record<string, string>>;

interface LabelledValue {
  readonly labels: Labels;
  value: number;
}

interface Series {
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  /** Label key (sorted `k="v"` pairs) → labels and value. */
  readonly values: Map<string, LabelledValue>;
  readonly read?: () => number;
  /** How cluster mode combines the workers' values: `sum` (per-process figures) or `max` (store-wide ones). */
  readonly aggregate: 'sum' | 'max';
  /** The prom-client metric and the label names it was created with (sorted). */
  prom?: { metric: Counter | Gauge; labelNames: string };
}

/** A registry's counters and gauges at one moment (no histograms), as plain data. */
export type MetricsSnapshot = Record<
  string,
  { help: string; type: 'counter' | 'gauge'; aggregate: 'sum' | 'max'; values: [string, number][] }
>;

/** One process's metrics in prom-client's JSON form (what cluster workers send the primary). */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** Histogram buckets (seconds). */
const ADMISSION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// Offers to a whole fleet take seconds to tens of seconds today; a device offline when its job was
// created is offered on its return, hours later: the upper buckets keep those apart.
const JOB_OFFER_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300, 900, 3600, 21_600, 86_400];
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

function labelKey(labels: Labels | undefined): string {
  if (!labels) return '';
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

let processRegistry: Registry | undefined;

/**
 * The process's own metrics (CPU, memory, heap, event-loop delay, GC, handles), collected once per
 * process: they describe the process, not one server instance, and each collector keeps timers and
 * observers running (tests build many servers in one process).
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export class Metrics {
  readonly #series = new Map<string, Series>();
  readonly #histograms = new Map<string, Histogram>();
  readonly #registry = new Registry();
  readonly #process: Registry;

  constructor(options: { processMetrics?: boolean } = {}) {
    this.#process = options.processMetrics === false ? new Registry() : processMetrics();
    this.counter('fleet_admissions_total', 'Device admissions by outcome.');
    this.counter('fleet_messages_in_total', 'Control-channel messages received from devices.');
    this.counter('fleet_messages_out_total', 'Control-channel messages sent to devices.');
    this.counter('fleet_errors_total', 'Errors answered by the API, by code.');
    this.counter('fleet_http_requests_total', 'HTTP requests answered.');
    this.counter('fleet_licence_sweeps_total', 'Licence sweeps completed (grace periods ended, seats given to waiting devices, licence events).');
    this.histogram(
      'fleet_admission_duration_seconds',
      'Time from a device\'s hello frame to the welcome sent (admission, measured on the server), by outcome.',
      { labelNames: ['outcome'], buckets: ADMISSION_BUCKETS },
    );
    this.histogram(
      'fleet_admission_transaction_seconds',
      'Admission transactions (one group commit of hellos): lock wait, decisions and durable commit.',
      { buckets: ADMISSION_BUCKETS },
    );
    this.histogram(
      'fleet_job_offer_latency_seconds',
      'Time from a job\'s creation to its offer sent to a device (includes time the device was offline or held back by the job\'s limits).',
      { buckets: JOB_OFFER_BUCKETS },
    );
    this.histogram(
      'fleet_http_request_duration_seconds',
      'REST request duration, by method, route pattern and status class.',
      { labelNames: ['method', 'route', 'status_class'], buckets: HTTP_BUCKETS },
    );
  }

  counter(name: string, help: string): void {
    if (!this.#series.has(name)) this.#series.set(name, { help, type: 'counter', values: new Map(), aggregate: 'sum' });
  }

  /** A gauge whose value is read at scrape time. */
  gauge(name: string, help: string, read: () => number, options: { aggregate?: 'sum' | 'max' } = {}): void {
    const previous = this.#series.get(name);
    if (previous?.prom) this.#registry.removeSingleMetric(name);
    this.#series.set(name, { help, type: 'gauge', values: new Map(), read, aggregate: options.aggregate ?? 'sum' });
  }

  /** A histogram (values in seconds, the Prometheus base unit). Declaring it again keeps the first. */
  histogram(name: string, help: string, options: { buckets: readonly number[]; labelNames?: readonly string[] }): void {
    if (this.#histograms.has(name)) return;
    const metric = new Histogram({
      name,
      help,
      buckets: [...options.buckets],
      labelNames: [...(options.labelNames ?? [])],
      registers: [this.#registry],
    });
    this.#histograms.set(name, metric);
  }

  /** Records one observation (seconds). Negative values (a clock moved back) count as 0. */
  observe(name: string, labels: Labels | undefined, seconds: number): void {
    const h = this.#histograms.get(name);
    if (!h) throw new Error(`unknown metric ${name}`);
    const value = Number.isFinite(seconds) ? Math.max(0, seconds) : 0;
    if (labels) h.observe(labels, value);
    else h.observe(value);
  }

  snapshot(): MetricsSnapshot {
    const out: MetricsSnapshot = {};
    for (const [name, s] of this.#series) {
      out[name] = {
        help: s.help,
        type: s.type,
        aggregate: s.aggregate,
        values: s.read ? [['', s.read()]] : [...s.values].map(([k, v]) => [k, v.value]),
      };
    }
    return out;
  }

  inc(name: string, labels?: Labels, by = 1): void {
    const s = this.#series.get(name);
    if (!s) throw new Error(`unknown metric ${name}`);
    const key = labelKey(labels);
    const cur = s.values.get(key);
    if (cur) cur.value += by;
    else s.values.set(key, { labels: { ...labels }, value: by });
  }

  value(name: string, labels?: Labels): number {
    const s = this.#series.get(name);
    if (!s) return 0;
    if (s.read) return s.read();
    return s.values.get(labelKey(labels))?.value ?? 0;
  }

  /** This process's metrics in prom-client's JSON form (for the cluster primary to merge). */
  async json(): Promise<MetricsJson> {
    this.#publish();
    const [own, proc] = await Promise.all([this.#registry.getMetricsAsJSON(), this.#process.getMetricsAsJSON()]);
    return [...own, ...proc];
  }

  /** This process's metrics in the Prometheus text format. */
  async render(): Promise<string> {
    this.#publish();
    return Registry.merge([this.#registry, this.#process]).metrics();
  }

  /** Brings the prom-client counters and gauges up to date with the values kept here. */
  #publish(): void {
    for (const [name, s] of this.#series) {
      const labelNames = new Set<string>();
      for (const v of s.values.values()) for (const k of Object.keys(v.labels)) labelNames.add(k);
      const names = [...labelNames].sort();
      if (!s.prom || s.prom.labelNames !== names.join(',')) {
        if (s.prom) this.#registry.removeSingleMetric(name);
        const config = { name, help: s.help, labelNames: names, registers: [this.#registry], aggregator: s.aggregate satisfies Aggregator };
        s.prom = { metric: s.type === 'counter' ? new Counter(config) : new Gauge(config), labelNames: names.join(',') };
      }
      const m = s.prom.metric;
      if (s.read) {
        (m as Gauge).set(s.read());
        continue;
      }
      m.reset();
      for (const v of s.values.values()) {
        if (m instanceof Counter) m.inc(v.labels, v.value);
        else m.set(v.labels, v.value);
      }
    }
  }
}

/**
 * Renders the metrics of several processes (cluster mode) as one view, with prom-client's
 * aggregation: sums by default (histogram buckets too), the maximum for store-wide gauges (the
 * same figure in every worker), the first for version info; the process start time is left out
 * (there is no one start time).
 */
export function renderMerged(parts: readonly MetricsJson[]): Promise<string> {
  return AggregatorRegistry.aggregate(parts.map(sanitize)).metrics();
}

/** Node's IPC carries JSON: NaN and infinities arrive as null; prom-client would print `+Inf`. */
function sanitize(part: MetricsJson): MetricsJson {
  for (const metric of part) {
    for (const v of metric.values) if (typeof v.value !== 'number') v.value = Number.NaN;
  }
  return part;
}
