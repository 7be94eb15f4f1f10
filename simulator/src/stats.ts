import { Histogram, type SerializedHistogram } from './histogram.js';

/** Histograms every process keeps (all in ms). */
export const HISTOGRAMS = ['connect', 'admission', 'reconnect', 'jobOffer', 'jobComplete'] as const;
export type HistogramName = (typeof HISTOGRAMS)[number];

/** What one process reports (cumulative since its start), merged by the coordinator. */
export interface WorkerStats {
  process: number;
  pid: number;
  at: number;
  /** Routers of this process (assigned) and started so far. */
  devices: number;
  started: number;
  /**
   * Routers whose time in the ramp's schedule has come (started, or held back by the connect
   * window). `due === devices` with `started < devices` shows the window holding the ramp.
   */
  due: number;
  /** Session state → routers. */
  states: Record<string, number>;
  /** Last admission decision → routers (managed, unmanaged, rejected). */
  admission: { managed: number; unmanaged: number; rejected: number; authFailed: number };
  /** Routers managed now by an admission decided at or after the fleet's mark (0 without a mark). */
  managedSinceMark: number;
  /** The mark these figures were counted with (ms since the epoch; 0 = none). */
  markAt: number;
  counters: {
    connects: number;
    disconnects: number;
    reconnects: number;
    dialFailures: number;
    /** Dials that waited for a slot in the process's connect window (the simulator's own limit). */
    dialsQueued: number;
    restarts: number;
    jobsOffered: number;
    jobsActive: number;
    jobsDone: number;
    jobsRolledBack: number;
  };
  /** Error and close codes → occurrences. */
  errors: Record<string, number>;
  /** Reconnect times (time from losing the channel to managed again) in 1-s bins. */
  reconnectBins: Record<string, number>;
  histograms: Record<HistogramName, SerializedHistogram>;
  openSockets: number;
  memory: { rss: number; heapUsed: number; external: number };
  cpu: { userMs: number; systemMs: number };
}

/** Per-router detail (on request; for tests and reports). */
export interface DeviceDetail {
  index: number;
  serialNumber: string;
  deviceId: string;
  state: string;
  updateState: string | undefined;
  admission: 'managed' | 'unmanaged' | 'rejected' | 'auth-failed' | null;
  /** First hello sent and first admission decision (epoch ms, sub-ms resolution). */
  firstHelloAt: number;
  firstAdmissionAt: number;
  /**
   * When the hello that got the first admission decision was sent (epoch ms). It differs from
   * `firstHelloAt` when an earlier connection closed before its hello was decided (a hello
   * timeout on an overloaded server): the server orders by the hellos it decides.
   */
  decidedHelloAt: number;
  reconnects: number;
  /** Last reconnect time (ms from losing the channel to admitted again), 0 if none. */
  lastReconnectMs: number;
  /**
   * For the last reconnect: ms from losing the channel to starting the connection attempt that got
   * through (the agent's backoff alone decides it; the server's handshake time is not in it), 0 if none.
   */
  lastRedialMs: number;
  expect: 'failed' | 'succeeded';
  labels: string[];
  /** The results of the executions the router finished, as it recorded them itself (oldest first). */
  jobResults: Array<{ executionId: string; state: string }>;
}

/** The merged view over all processes. */
export interface FleetStats {
  at: number;
  processes: number;
  devices: number;
  started: number;
  /** See WorkerStats.due. */
  due: number;
  states: Record<string, number>;
  connected: number;
  managed: number;
  unmanaged: number;
  rejected: number;
  backingOff: number;
  /** Routers managed now by an admission decided at or after the fleet's mark (0 without a mark). */
  managedSinceMark: number;
  /**
   * The oldest mark any process counted with (0 when one has none yet): once it equals the mark
   * set, every process's figures, `managedSinceMark` included, were counted after the mark.
   */
  markAt: number;
  counters: WorkerStats['counters'];
  errors: Record<string, number>;
  reconnectBins: Record<string, number>;
  histograms: Record<HistogramName, Histogram>;
  openSockets: number;
  memory: { processes: Array<{ pid: number; rss: number; heapUsed: number }>; rss: number; heapUsed: number };
  cpu: { processes: Array<{ pid: number; userMs: number; systemMs: number }>; userMs: number; systemMs: number };
}

const add = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
};

/** Zeroed totals that the merges below add into. */
function emptyTotals() {
  return {
    states: {} as Record<string, number>,
    errors: {} as Record<string, number>,
    reconnectBins: {} as Record<string, number>,
    counters: {
      connects: 0, disconnects: 0, reconnects: 0, dialFailures: 0, dialsQueued: 0,
      restarts: 0, jobsOffered: 0, jobsActive: 0, jobsDone: 0, jobsRolledBack: 0,
    },
    histograms: Object.fromEntries(HISTOGRAMS.map((h) => [h, new Histogram()])) as Record<HistogramName, Histogram>,
  };
}

/** Merges the latest stats of every process. */
export function mergeStats(parts: readonly WorkerStats[]): FleetStats {
  const { states, errors, reconnectBins, counters, histograms } = emptyTotals();
  let devices = 0;
  let started = 0;
  let due = 0;
  let openSockets = 0;
  let managed = 0;
  let unmanaged = 0;
  let managedSinceMark = 0;
  for (const p of parts) {
    managedSinceMark += p.managedSinceMark;
    devices += p.devices;
    started += p.started;
    due += p.due;
    openSockets += p.openSockets;
    add(states, p.states);
    add(errors, p.errors);
    add(reconnectBins, p.reconnectBins);
    add(counters, p.counters);
    for (const h of HISTOGRAMS) histograms[h].merge(p.histograms[h]);
    managed += p.states['managed'] ?? 0;
    unmanaged += p.states['unmanaged'] ?? 0;
  }
  const processes = parts.map((p) => ({ pid: p.pid, rss: p.memory.rss, heapUsed: p.memory.heapUsed }));
  const cpu = parts.map((p) => ({ pid: p.pid, userMs: p.cpu.userMs, systemMs: p.cpu.systemMs }));
  return {
    at: Math.max(0, ...parts.map((p) => p.at)),
    processes: parts.length,
    devices,
    started,
    due,
    states,
    connected: managed + unmanaged,
    managed,
    unmanaged,
    rejected: states['rejected-waiting'] ?? 0,
    backingOff: states['backing-off'] ?? 0,
    managedSinceMark,
    markAt: parts.length === 0 ? 0 : Math.min(...parts.map((p) => p.markAt)),
    counters,
    errors,
    reconnectBins,
    histograms,
    openSockets,
    memory: { processes, rss: processes.reduce((n, p) => n + p.rss, 0), heapUsed: processes.reduce((n, p) => n + p.heapUsed, 0) },
    cpu: { processes: cpu, userMs: cpu.reduce((n, p) => n + p.userMs, 0), systemMs: cpu.reduce((n, p) => n + p.systemMs, 0) },
  };
}

/**
 * Merges the figures of several fleets (the shards of one fleet run side by side): counts add,
 * histograms merge bucket by bucket, processes are listed.
 */
export function mergeFleetStats(fleets: readonly FleetStats[]): FleetStats {
  const sumOf = (f: (s: FleetStats) => number) => fleets.reduce((n, s) => n + f(s), 0);
  const { states, errors, reconnectBins, counters, histograms } = emptyTotals();
  for (const s of fleets) {
    add(states, s.states);
    add(errors, s.errors);
    add(reconnectBins, s.reconnectBins);
    add(counters, s.counters);
    for (const h of HISTOGRAMS) histograms[h].merge(s.histograms[h]);
  }
  const processes = fleets.flatMap((s) => s.memory.processes);
  const cpu = fleets.flatMap((s) => s.cpu.processes);
  return {
    at: Math.max(0, ...fleets.map((s) => s.at)),
    processes: sumOf((s) => s.processes),
    devices: sumOf((s) => s.devices),
    started: sumOf((s) => s.started),
    due: sumOf((s) => s.due),
    states,
    connected: sumOf((s) => s.connected),
    managed: sumOf((s) => s.managed),
    unmanaged: sumOf((s) => s.unmanaged),
    rejected: sumOf((s) => s.rejected),
    backingOff: sumOf((s) => s.backingOff),
    managedSinceMark: sumOf((s) => s.managedSinceMark),
    markAt: fleets.length === 0 ? 0 : Math.min(...fleets.map((s) => s.markAt)),
    counters,
    errors,
    reconnectBins,
    histograms,
    openSockets: sumOf((s) => s.openSockets),
    memory: { processes, rss: sumOf((s) => s.memory.rss), heapUsed: sumOf((s) => s.memory.heapUsed) },
    cpu: { processes: cpu, userMs: sumOf((s) => s.cpu.userMs), systemMs: sumOf((s) => s.cpu.systemMs) },
  };
}
