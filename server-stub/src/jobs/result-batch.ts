import type { JobExecutionState } from '@router-fleet/protocol';
import type { Store } from '../store/database.js';
import type { ExecutionWithDevice, JobExecutions } from '../store/job-executions.js';
import type { JobDevices } from '../store/job-devices.js';
import { type ExecutionRow, type JobDeviceStatus, type JobHead, jobById, jobsByIds } from '../store/jobs.js';

interface Settle {
  jobId: number;
  deviceId: number;
  status: JobDeviceStatus;
  result: JobExecutionState;
  nextAttemptAt: number;
}

/**
 * What a batch of job reports, results and reconnects changes, decided in memory in arrival order
 * inside one write transaction and written set-based (`flush`): the executions the batch is about
 * are read at once (`load`), each report is judged against the row as the reports before it left
 * it, and every changed row is written once, as it ends. On PostgreSQL each statement is a round
 * trip under the one write lock, so a wave of N reports costs a handful of statements instead of
 * several per report; SQLite writes the same rows with its prepared single-row statements.
 *
 * Whatever reads what the batch changed through the store (the job's counts, before an abort or
 * finish verdict) flushes first, so it reads what one report at a time would have read. Whether a
 * job may be finished is asked after every result; the batch keeps a lower bound of the job's
 * unfinished devices (read once, less one per device settled since, since a settle finishes at most
 * one device) and reads the counts only when the bound allows the job to be done.
 */
export class ResultBatch {
  readonly #rows = new Map<number, ExecutionRow>();
  readonly #byUuid = new Map<string, ExecutionWithDevice>();
  readonly #open = new Map<number, ExecutionRow[]>();
  readonly #dirty = new Set<number>();
  readonly #settles = new Map<string, Settle>();
  readonly #jobs = new Map<number, JobHead>();
  readonly #options = new Map<number, unknown>();
  /** Per job: its unfinished devices are at least this many. */
  readonly #unfinished = new Map<number, number>();

  constructor(
    private readonly store: Store,
    private readonly executions: JobExecutions,
    private readonly devices: JobDevices,
  ) {}

  /** Reads the executions with these uuids, those open of these devices, and their jobs (three statements). */
  load(executionUuids: readonly string[], deviceIds: readonly number[]): void {
    for (const e of this.executions.withDeviceMany(executionUuids)) this.#adoptRow(e);
    for (const e of this.executions.openForDevices(deviceIds)) {
      const row = this.#adoptRow(e);
      const list = this.#open.get(row.device_id);
      if (list) list.push(row);
      else this.#open.set(row.device_id, [row]);
    }
    const jobIds = [...new Set([...this.#rows.values()].map((e) => e.job_id))].filter((id) => !this.#jobs.has(id));
    for (const j of jobsByIds(this.store, jobIds)) this.#jobs.set(j.id, j);
  }

  #adoptRow(e: ExecutionWithDevice): ExecutionWithDevice {
    const known = this.#rows.get(e.id) as ExecutionWithDevice | undefined;
    if (known) return known;
    this.#rows.set(e.id, e);
    this.#byUuid.set(e.uuid, e);
    return e;
  }

  /** An execution (and its job) read by the caller, taken as it is (a batch of one). */
  adopt(exec: ExecutionRow, job?: JobHead): ExecutionRow {
    if (!this.#rows.has(exec.id)) this.#rows.set(exec.id, exec);
    if (job && !this.#jobs.has(job.id)) this.#jobs.set(job.id, job);
    return this.#rows.get(exec.id)!;
  }

  /** The execution with this uuid, as the batch left it (loaded by `load`). */
  byUuid(uuid: string): ExecutionWithDevice | undefined {
    return this.#byUuid.get(uuid);
  }

  /** The device's executions not finished, oldest first, as the batch left them (loaded by `load`). */
  openOf(deviceId: number): ExecutionRow[] {
    return (this.#open.get(deviceId) ?? []).filter((e) => e.finished_at === null);
  }

  /** The job as the batch left it. */
  job(id: number): JobHead {
    let job = this.#jobs.get(id);
    if (!job) {
      job = jobById(this.store, id)!;
      this.#jobs.set(id, job);
    }
    return job;
  }

  /** The job's options, parsed once per batch. */
  options<T>(job: JobHead): T {
    let o = this.#options.get(job.id);
    if (o === undefined) this.#options.set(job.id, (o = JSON.parse(job.options)));
    return o as T;
  }

  /** The job moved (its state as stored now). */
  moved(job: JobHead): void {
    this.#jobs.set(job.id, job);
  }

  /** The caller changed this execution's row (written at the next flush). */
  changed(exec: ExecutionRow): void {
    this.#dirty.add(exec.id);
  }

  /** The device's status and result in its job after a result (written at the next flush, the last one per device). */
  settle(s: Settle): void {
    const key = `${s.jobId}:${s.deviceId}`;
    this.#settles.delete(key);
    this.#settles.set(key, s);
    const bound = this.#unfinished.get(s.jobId);
    if (bound !== undefined) this.#unfinished.set(s.jobId, bound - 1);
  }

  /** False when the job certainly still has unfinished devices (no need to read its counts). */
  mayBeDone(jobId: number): boolean {
    const bound = this.#unfinished.get(jobId);
    return bound === undefined || bound <= 0;
  }

  /** The job's unfinished devices as just read from the store (after a flush). */
  unfinishedRead(jobId: number, n: number): void {
    this.#unfinished.set(jobId, n);
  }

  /** Writes what changed since the last flush: executions, then the devices' places in their jobs. */
  flush(): void {
    if (this.#dirty.size > 0) {
      // Cleared once written: a failed write leaves them pending (its transaction fails as a whole).
      this.executions.writeRows([...this.#dirty].map((id) => this.#rows.get(id)!));
      this.#dirty.clear();
    }
    if (this.#settles.size > 0) {
      this.devices.settleMany([...this.#settles.values()]);
      this.#settles.clear();
    }
  }
}
