import { performance } from 'node:perf_hooks';
import type { AgentExit, SessionState, UpdateState } from '@router-fleet/agent';
import { Histogram } from './histogram.js';
import { RouterFlag, type RouterTable } from './router-table.js';
import { HISTOGRAMS, type HistogramName, type WorkerStats } from './stats.js';

/** Wall-clock time with sub-millisecond resolution, comparable across processes on one machine. */
export const now = (): number => performance.timeOrigin + performance.now();

/** The part of `WorkerStats` the metrics account for (the worker adds process, memory, CPU, sockets). */
export type MetricsSnapshot = Pick<WorkerStats, 'states' | 'admission' | 'managedSinceMark' | 'markAt' | 'counters' | 'errors' | 'reconnectBins' | 'histograms'>;

/**
 * One process's metrics: counters, error codes, reconnect bins and histograms, kept up to date
 * from the routers' lifecycle transitions, with the per-router times in the `RouterTable`.
 */
export class WorkerMetrics {
  /** The process's routers (the worker sizes its table once it has read their profiles). */
  readonly #routers: () => RouterTable;
  readonly #errors: Record<string, number> = {};
  readonly #reconnectBins: Record<string, number> = {};
  readonly #hist = Object.fromEntries(HISTOGRAMS.map((h) => [h, new Histogram()])) as Record<HistogramName, Histogram>;
  readonly #counters: WorkerStats['counters'] = {
    connects: 0,
    disconnects: 0,
    reconnects: 0,
    dialFailures: 0,
    dialsQueued: 0,
    restarts: 0,
    jobsOffered: 0,
    jobsActive: 0,
    jobsDone: 0,
    jobsRolledBack: 0,
  };

  /** When the fleet's current job was created (epoch ms); 0 = none. */
  #jobCreatedAt = 0;
  /** See `mark`: 0 = none. */
  #markAt = 0;

  constructor(routers: () => RouterTable) {
    this.#routers = routers;
  }

  error(code: string): void {
    this.#errors[code] = (this.#errors[code] ?? 0) + 1;
  }

  dialFailed(code: string): void {
    this.#counters.dialFailures++;
    this.error(`dial:${code}`);
  }

  closed(code: number): void {
    this.error(`close:${code}`);
  }

  /** A dial waited for a slot in the process's connect window. */
  dialQueued(): void {
    this.#counters.dialsQueued++;
  }

  jobCreated(at: number): void {
    this.#jobCreatedAt = at;
  }

  /** From now on `managedSinceMark` counts the routers managed on a session that said hello at or after `at`. */
  mark(at: number): void {
    this.#markAt = at;
  }

  /** Router j's update machine moved to `state`. */
  update(j: number, state: UpdateState): void {
    const table = this.#routers();
    const active = table.has(j, RouterFlag.UPDATE_ACTIVE);
    if (!active && state !== 'done') {
      table.set(j, RouterFlag.UPDATE_ACTIVE);
      table.clear(j, RouterFlag.ROLLED_BACK);
      this.#counters.jobsOffered++;
      this.#counters.jobsActive++;
      if (this.#jobCreatedAt > 0) this.#hist.jobOffer.record(Date.now() - this.#jobCreatedAt);
    } else if (state === 'rolling-back') table.set(j, RouterFlag.ROLLED_BACK);
    else if (state === 'done' && active) {
      table.clear(j, RouterFlag.UPDATE_ACTIVE);
      this.#counters.jobsActive--;
      this.#counters.jobsDone++;
      if (table.has(j, RouterFlag.ROLLED_BACK)) this.#counters.jobsRolledBack++;
      if (this.#jobCreatedAt > 0) this.#hist.jobComplete.record(Date.now() - this.#jobCreatedAt);
    }
  }

  /**
   * Router j's session moved to `state`. `stopping`: the fleet is stopping (its agents' `stopped`
   * is not a disconnect).
   */
  session(j: number, state: SessionState, stopping: boolean): void {
    const t = now();
    const table = this.#routers();
    const before = table.state(j);
    table.setState(j, state);
    switch (state) {
      case 'connecting':
        if (before !== 'connecting') table.dialAt[j] = t;
        break;
      case 'hello-sent':
        this.#counters.connects++;
        this.#hist.connect.record(t - table.dialAt[j]!);
        table.helloAt[j] = t;
        if (table.firstHelloAt[j] === 0) table.firstHelloAt[j] = t;
        break;
      case 'managed':
      case 'unmanaged':
      case 'rejected-waiting': {
        if (before === 'hello-sent') {
          this.#hist.admission.record(t - table.helloAt[j]!);
          if (table.firstAdmissionAt[j] === 0) {
            table.firstAdmissionAt[j] = t;
            table.decidedHelloAt[j] = table.helloAt[j]!;
          }
        }
        // Rejected straight from `connecting`: the credential was refused before any hello.
        table.setAdmission(j, state === 'rejected-waiting' ? (before === 'connecting' ? 'auth-failed' : 'rejected') : state);
        if (state !== 'rejected-waiting' && table.downAt[j]! > 0) this.#reconnected(j, t);
        break;
      }
      case 'stopped':
        // A reboot, power cut or restart: the channel is gone until the router is back.
        if (!stopping && (before === 'managed' || before === 'unmanaged')) {
          this.#counters.disconnects++;
          table.downAt[j] = t;
        }
        break;
      case 'backing-off':
        if (before === 'managed' || before === 'unmanaged') {
          this.#counters.disconnects++;
          table.downAt[j] = t;
        } else if (before === 'hello-sent' && table.downAt[j] === 0 && table.firstAdmissionAt[j]! > 0) table.downAt[j] = t;
        break;
      default:
        break;
    }
  }

  /** Router j is admitted again after losing its channel at `downAt`. */
  #reconnected(j: number, t: number): void {
    const table = this.#routers();
    const ms = t - table.downAt[j]!;
    table.lastReconnectMs[j] = ms;
    table.lastRedialMs[j] = Math.max(0, table.attemptAt[j]! - table.downAt[j]!);
    table.downAt[j] = 0;
    table.reconnects[j]!++;
    this.#counters.reconnects++;
    this.#hist.reconnect.record(ms);
    const bin = String(Math.floor(ms / 1000));
    this.#reconnectBins[bin] = (this.#reconnectBins[bin] ?? 0) + 1;
  }

  /** Router j's agent exited and will be started again (reboot, power cut, restart, internal error). */
  restarting(j: number, exit: AgentExit): void {
    const table = this.#routers();
    if (exit.reason === 'error') this.error(`exit:${(exit.error as { code?: string } | undefined)?.code ?? 'ERROR'}`);
    if (exit.reason === 'power-cut') this.error('exit:power-cut');
    // The router goes down now (if the session did not say so): the channel is gone until it is back.
    const state = table.state(j);
    if (table.downAt[j] === 0 && (state === 'managed' || state === 'unmanaged')) table.downAt[j] = now();
    table.setState(j, 'stopped');
    this.#counters.restarts++;
  }

  /** The metrics over the first `started` routers (the others have not started yet). */
  snapshot(started: number): MetricsSnapshot {
    const table = this.#routers();
    const states: Record<string, number> = {};
    const admission = { managed: 0, unmanaged: 0, rejected: 0, authFailed: 0 };
    let managedSinceMark = 0;
    for (let j = 0; j < started; j++) {
      const s = table.state(j);
      states[s] = (states[s] ?? 0) + 1;
      // Managed now on a session whose hello was sent after the mark: its admission was decided after it.
      if (this.#markAt > 0 && s === 'managed' && table.helloAt[j]! >= this.#markAt) managedSinceMark++;
      switch (table.admission(j)) {
        case 'managed':
          admission.managed++;
          break;
        case 'unmanaged':
          admission.unmanaged++;
          break;
        case 'rejected':
          admission.rejected++;
          break;
        case 'auth-failed':
          admission.authFailed++;
          break;
        case 'none':
          break;
      }
    }
    return {
      states,
      admission,
      managedSinceMark,
      markAt: this.#markAt,
      counters: { ...this.#counters },
      errors: { ...this.#errors },
      reconnectBins: { ...this.#reconnectBins },
      histograms: Object.fromEntries(HISTOGRAMS.map((h) => [h, this.#hist[h].toJSON()])) as WorkerStats['histograms'],
    };
  }
}
