import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { HistogramSummary, SerializedHistogram } from './histogram.js';
import { type FleetIdentity, type Shard, WHOLE_FLEET } from './shard.js';
import { type FleetStats, HISTOGRAMS } from './stats.js';

/** Rates between two snapshots (per second). */
function rates(prev: FleetStats | undefined, cur: FleetStats) {
  const dt = prev ? (cur.at - prev.at) / 1000 : 0;
  const per = (a: number, b: number) => (dt > 0 ? Math.max(0, (a - b) / dt) : 0);
  return {
    connects: prev ? per(cur.counters.connects, prev.counters.connects) : 0,
    disconnects: prev ? per(cur.counters.disconnects, prev.counters.disconnects) : 0,
    jobsDone: prev ? per(cur.counters.jobsDone, prev.counters.jobsDone) : 0,
  };
}

/** One line of live figures. */
export function statusLine(s: FleetStats, prev?: FleetStats, jobs?: { succeeded: number; failed: number }): string {
  const r = rates(prev, s);
  const mb = (b: number) => `${Math.round(b / 1048576)} MB`;
  return [
    `started ${s.started}/${s.devices}`,
    `connected ${s.connected}`,
    `managed ${s.managed}`,
    `unmanaged ${s.unmanaged}`,
    `rejected ${s.rejected}`,
    `backing-off ${s.backingOff}`,
    `jobs ${s.counters.jobsActive} in progress, ${jobs ? `${jobs.succeeded} succeeded, ${jobs.failed} failed` : `${s.counters.jobsDone} done`}`,
    `${r.connects.toFixed(0)} connects/s`,
    `${r.disconnects.toFixed(0)} disconnects/s`,
    `rss ${mb(s.memory.rss)}`,
  ].join(' | ');
}

/**
 * Prints the live figures: one line rewritten in place on a terminal, plain lines every
 * `plainEveryMs` otherwise (logs, CI).
 */
export class LivePrinter {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #plainEveryMs: number;
  #prev: FleetStats | undefined;
  #lastPlain = 0;
  jobs: { succeeded: number; failed: number } | undefined;

  constructor(out: NodeJS.WriteStream = process.stderr, plainEveryMs = 10_000) {
    this.#out = out;
    this.#tty = out.isTTY === true;
    this.#plainEveryMs = plainEveryMs;
  }

  update(s: FleetStats): void {
    const line = statusLine(s, this.#prev, this.jobs);
    this.#prev = s;
    if (this.#tty) {
      this.#out.write(`\r\x1b[2K${line.slice(0, (this.#out.columns ?? 200) - 1)}`);
    } else if (s.at - this.#lastPlain >= this.#plainEveryMs) {
      this.#lastPlain = s.at;
      this.#out.write(`${new Date(s.at).toISOString()} ${line}\n`);
    }
  }

  done(): void {
    if (this.#tty) this.#out.write('\n');
  }
}

/**
 * Histogram bounds (ms) for the Prometheus export: connects and admissions take milliseconds to
 * seconds; offers, completions and reconnects of a large fleet take seconds to an hour.
 */
const PROMETHEUS_BOUNDS_MS = [
  1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000,
];

/**
 * The figures in the Prometheus text format, made by prom-client. Gauges and counters are
 * prom-client metrics set from the merged figures of all processes; the histograms are the
 * log-linear ones the processes merge, handed to prom-client as bucket counts (prom-client's JSON
 * form, which it renders as it renders other processes' figures).
 */
export async function prometheusText(s: FleetStats): Promise<string> {
  const registry = new Registry();
  const registers = [registry];
  const gauge = (name: string, help: string, value: number) => new Gauge({ name, help, registers }).set(value);
  const counter = (name: string, help: string, value: number) => new Counter({ name, help, registers }).inc(value);
  gauge('fleetsim_routers', 'Virtual routers of the run.', s.devices);
  gauge('fleetsim_routers_started', 'Virtual routers started so far.', s.started);
  const byState = new Gauge({ name: 'fleetsim_routers_by_state', help: 'Virtual routers by session state.', labelNames: ['state'], registers });
  for (const [state, n] of Object.entries(s.states)) byState.set({ state }, n);
  gauge('fleetsim_open_sockets', 'Open control-channel sockets.', s.openSockets);
  counter('fleetsim_connects_total', 'Channels opened (hello sent).', s.counters.connects);
  counter('fleetsim_disconnects_total', 'Admitted channels lost.', s.counters.disconnects);
  counter('fleetsim_reconnects_total', 'Routers admitted again after losing the channel.', s.counters.reconnects);
  counter('fleetsim_dial_failures_total', 'Failed dials.', s.counters.dialFailures);
  counter('fleetsim_dials_queued_total', 'Dials that waited for a slot in the connect window.', s.counters.dialsQueued);
  counter('fleetsim_router_restarts_total', 'Router reboots and power cycles.', s.counters.restarts);
  gauge('fleetsim_jobs_in_progress', 'Routers working on a job.', s.counters.jobsActive);
  counter('fleetsim_jobs_done_total', 'Job executions finished on the routers.', s.counters.jobsDone);
  const errors = new Counter({ name: 'fleetsim_errors_total', help: 'Errors and close codes.', labelNames: ['code'], registers });
  for (const [code, n] of Object.entries(s.errors)) errors.inc({ code }, n);
  gauge('fleetsim_process_resident_memory_bytes', 'RSS of all simulator processes.', s.memory.rss);
  counter('fleetsim_process_cpu_seconds_total', 'CPU time of all simulator processes.', (s.cpu.userMs + s.cpu.systemMs) / 1000);
  const histograms = HISTOGRAMS.map((h) => {
    const name = `fleetsim_${h.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_ms`;
    const hist = s.histograms[h];
    const cumulative = hist.cumulative(PROMETHEUS_BOUNDS_MS);
    return {
      name,
      help: `${h} time (ms; bucket counts to the simulator histogram's 3 % resolution).`,
      type: 'histogram',
      aggregator: 'sum',
      values: [
        ...PROMETHEUS_BOUNDS_MS.map((le, i) => ({ metricName: `${name}_bucket`, labels: { le }, value: cumulative[i]! })),
        { metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: hist.count },
        { metricName: `${name}_sum`, labels: {}, value: hist.sum },
        { metricName: `${name}_count`, labels: {}, value: hist.count },
      ],
    };
  });
  return AggregatorRegistry.aggregate([[...(await registry.getMetricsAsJSON()), ...histograms]]).metrics();
}

/** Serves `/metrics` on 127.0.0.1:port. */
export async function servePrometheus(port: number, stats: () => FleetStats): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    prometheusText(stats()).then(
      (text) => res.writeHead(200, { 'content-type': Registry.PROMETHEUS_CONTENT_TYPE }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** Which slices of the fleet a report covers. */
export interface ReportShards {
  /** Slices the fleet was cut into (N of `--shard K/N`; 1 for a run of the whole fleet). */
  count: number;
  /** The slices whose routers this report counts: [K] for a run of `--shard K/N`, several once merged. */
  indices: number[];
}

/** One run a merged report is made of. */
export interface MergedRun {
  /** The report file it came from (when merged from files). */
  file?: string;
  indices: number[];
  startedAt: string;
  durationSec: number;
  devices: number;
  started: number;
  rssBytes: number;
  rssPerRouterBytes: number;
  steps?: unknown[];
}

/** The final JSON report of a run. */
export interface FleetReport {
  startedAt: string;
  finishedAt: string;
  durationSec: number;
  /** The fleet the routers came from: reports merge only within one fleet. */
  fleet: FleetIdentity;
  shard: ReportShards;
  /** Routers of this run (of its shards). */
  devices: number;
  /** Routers started by the end (the ramp may not have finished). */
  started: number;
  processes: number;
  states: Record<string, number>;
  managed: number;
  unmanaged: number;
  rejected: number;
  backingOff: number;
  /** Percentiles (ms), from `raw.histograms`. */
  histograms: Record<string, HistogramSummary>;
  /**
   * What merging needs without loss: every histogram's buckets and exact count, sum, min and max.
   * Percentiles of merged buckets are what one run recording every sample would report.
   */
  raw: { histograms: Record<string, SerializedHistogram> };
  reconnects: number;
  reconnectBins: Record<string, number>;
  counters: FleetStats['counters'];
  errors: Record<string, number>;
  memory: {
    /** Each simulator process (`shard`: the slice it ran, in a merged report). */
    processes: Array<FleetStats['memory']['processes'][number] & { shard?: number }>;
    rssBytes: number;
    heapUsedBytes: number;
    /** All processes' RSS (heap) over the routers started, every shard's together once merged. */
    rssPerRouterBytes: number;
    heapPerRouterBytes: number;
  };
  cpu: {
    processes: Array<FleetStats['cpu']['processes'][number] & { shard?: number }>;
    seconds: number;
    /** CPU time over wall time; once merged, the sum over the runs (cores busy together). */
    percentOfOneCore: number;
  };
  jobs?: unknown[];
  steps?: unknown[];
  /** In a merged report: the runs it was made of, and the slices with no report (`--allow-missing`). */
  merged?: { runs: MergedRun[]; missing: number[] };
}

export interface ReportExtra {
  jobs?: unknown[];
  steps?: unknown[];
  /** The slice this run was (default: the whole fleet). */
  shard?: Shard;
  /** The fleet the run took its routers from (`FleetHandle.fleet`). */
  fleet: FleetIdentity;
}

export function buildReport(s: FleetStats, startedAt: number, extra: ReportExtra): FleetReport {
  const finishedAt = Date.now();
  const seconds = (s.cpu.userMs + s.cpu.systemMs) / 1000;
  const routers = Math.max(1, s.started);
  const { shard = WHOLE_FLEET, fleet, ...rest } = extra;
  return {
    startedAt: new Date(startedAt).toISOString(),
    finishedAt: new Date(finishedAt).toISOString(),
    durationSec: Math.round((finishedAt - startedAt) / 100) / 10,
    fleet,
    shard: { count: shard.count, indices: [shard.index] },
    devices: s.devices,
    started: s.started,
    processes: s.processes,
    states: s.states,
    managed: s.managed,
    unmanaged: s.unmanaged,
    rejected: s.rejected,
    backingOff: s.backingOff,
    histograms: Object.fromEntries(HISTOGRAMS.map((h) => [h, s.histograms[h].summary()])),
    raw: { histograms: Object.fromEntries(HISTOGRAMS.map((h) => [h, s.histograms[h].toJSON()])) },
    reconnects: s.counters.reconnects,
    reconnectBins: s.reconnectBins,
    counters: s.counters,
    errors: s.errors,
    memory: {
      processes: s.memory.processes,
      rssBytes: s.memory.rss,
      heapUsedBytes: s.memory.heapUsed,
      rssPerRouterBytes: Math.round(s.memory.rss / routers),
      heapPerRouterBytes: Math.round(s.memory.heapUsed / routers),
    },
    cpu: {
      processes: s.cpu.processes,
      seconds: Math.round(seconds * 10) / 10,
      percentOfOneCore: Math.round((seconds / Math.max(0.001, (finishedAt - startedAt) / 1000)) * 1000) / 10,
    },
    ...rest,
  };
}
