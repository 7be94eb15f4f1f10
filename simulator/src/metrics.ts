import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HistogramSummary } from './histogram.js';
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

/** The figures in the Prometheus text format. */
export function prometheusText(s: FleetStats): string {
  const lines: string[] = [];
  const gauge = (name: string, help: string, value: number, labels = '') => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name}${labels} ${value}`);
  };
  const counter = (name: string, help: string, value: number) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${value}`);
  };
  gauge('fleetsim_routers', 'Virtual routers of the run.', s.devices);
  gauge('fleetsim_routers_started', 'Virtual routers started so far.', s.started);
  lines.push('# HELP fleetsim_routers_by_state Virtual routers by session state.', '# TYPE fleetsim_routers_by_state gauge');
  for (const [state, n] of Object.entries(s.states)) lines.push(`fleetsim_routers_by_state{state="${state}"} ${n}`);
  gauge('fleetsim_open_sockets', 'Open control-channel sockets.', s.openSockets);
  counter('fleetsim_connects_total', 'Channels opened (hello sent).', s.counters.connects);
  counter('fleetsim_disconnects_total', 'Admitted channels lost.', s.counters.disconnects);
  counter('fleetsim_reconnects_total', 'Routers admitted again after losing the channel.', s.counters.reconnects);
  counter('fleetsim_dial_failures_total', 'Failed dials.', s.counters.dialFailures);
  counter('fleetsim_dials_queued_total', 'Dials that waited for a slot in the connect window.', s.counters.dialsQueued);
  counter('fleetsim_router_restarts_total', 'Router reboots and power cycles.', s.counters.restarts);
  gauge('fleetsim_jobs_in_progress', 'Routers working on a job.', s.counters.jobsActive);
  counter('fleetsim_jobs_done_total', 'Job executions finished on the routers.', s.counters.jobsDone);
  lines.push('# HELP fleetsim_errors_total Errors and close codes.', '# TYPE fleetsim_errors_total counter');
  for (const [code, n] of Object.entries(s.errors)) lines.push(`fleetsim_errors_total{code="${code}"} ${n}`);
  for (const h of HISTOGRAMS) {
    const sum = s.histograms[h].summary();
    const name = `fleetsim_${h.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_ms`;
    lines.push(`# HELP ${name} ${h} time (ms).`, `# TYPE ${name} summary`);
    for (const q of ['p50', 'p90', 'p99'] as const) lines.push(`${name}{quantile="0.${q.slice(1)}"} ${sum[q]}`);
    lines.push(`${name}_sum ${s.histograms[h].sum}`, `${name}_count ${sum.count}`);
  }
  gauge('fleetsim_process_resident_memory_bytes', 'RSS of all simulator processes.', s.memory.rss);
  counter('fleetsim_process_cpu_seconds_total', 'CPU time of all simulator processes.', (s.cpu.userMs + s.cpu.systemMs) / 1000);
  return `${lines.join('\n')}\n`;
}

/** Serves `/metrics` on 127.0.0.1:port. */
export async function servePrometheus(port: number, stats: () => FleetStats): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(prometheusText(stats()));
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

/** The final JSON report of a run. */
export interface FleetReport {
  startedAt: string;
  finishedAt: string;
  durationSec: number;
  devices: number;
  processes: number;
  states: Record<string, number>;
  managed: number;
  unmanaged: number;
  rejected: number;
  backingOff: number;
  histograms: Record<string, HistogramSummary>;
  reconnects: number;
  reconnectBins: Record<string, number>;
  counters: FleetStats['counters'];
  errors: Record<string, number>;
  memory: {
    processes: FleetStats['memory']['processes'];
    rssBytes: number;
    rssPerRouterBytes: number;
    heapPerRouterBytes: number;
  };
  cpu: { processes: FleetStats['cpu']['processes']; seconds: number; percentOfOneCore: number };
  jobs?: unknown[];
  steps?: unknown[];
}

export function buildReport(s: FleetStats, startedAt: number, extra: { jobs?: unknown[]; steps?: unknown[] } = {}): FleetReport {
  const finishedAt = Date.now();
  const seconds = (s.cpu.userMs + s.cpu.systemMs) / 1000;
  const routers = Math.max(1, s.started);
  return {
    startedAt: new Date(startedAt).toISOString(),
    finishedAt: new Date(finishedAt).toISOString(),
    durationSec: Math.round((finishedAt - startedAt) / 100) / 10,
    devices: s.devices,
    processes: s.processes,
    states: s.states,
    managed: s.managed,
    unmanaged: s.unmanaged,
    rejected: s.rejected,
    backingOff: s.backingOff,
    histograms: Object.fromEntries(HISTOGRAMS.map((h) => [h, s.histograms[h].summary()])),
    reconnects: s.counters.reconnects,
    reconnectBins: s.reconnectBins,
    counters: s.counters,
    errors: s.errors,
    memory: {
      processes: s.memory.processes,
      rssBytes: s.memory.rss,
      rssPerRouterBytes: Math.round(s.memory.rss / routers),
      heapPerRouterBytes: Math.round(s.memory.heapUsed / routers),
    },
    cpu: {
      processes: s.cpu.processes,
      seconds: Math.round(seconds * 10) / 10,
      percentOfOneCore: Math.round((seconds / Math.max(0.001, (finishedAt - startedAt) / 1000)) * 1000) / 10,
    },
    ...extra,
  };
}
