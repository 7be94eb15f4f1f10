import type { JobExecutionState } from '@router-fleet/protocol';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import type { Store } from '../store/database.js';
import { AccountEvents } from '../store/events.js';
import { JobDevices } from '../store/job-devices.js';
import { ERROR_MESSAGE_MAX, JobExecutions } from '../store/job-executions.js';
import {
  type ExecutionRow,
  type JobHead,
  jobCountBuckets,
  setJobState,
  unfinishedJobDevices,
} from '../store/jobs.js';
import { canMove, type JobEvent, nextJobState } from './job-lifecycle.js';
import type { JobOptions, JobTarget } from './options.js';
import type { ResultSource } from './progress.js';
import { ResultBatch } from './result-batch.js';
import { abortVerdict, deviceAfterResult, FAILURES, isFailure, isJobDone } from './rollout.js';

/** How an execution ended: its terminal state at `now`, why (error code and message; null for none), and who decided it. */
export interface ExecutionEnd {
  state: JobExecutionState;
  now: number;
  errorCode: string | null;
  errorMessage: string | null;
  /** The device's report, or (the default) the server. */
  source?: ResultSource;
}

/**
 * What follows from an execution's result, for the API (cancel) and the dispatcher alike: the
 * execution is recorded, the device settles in its job (done, or pending for a retry), and the job
 * may abort or finish (rollout.ts decides, job-lifecycle.ts moves). Runs inside the caller's write
 * transaction.
 */
export class JobOutcomes {
  readonly executions: JobExecutions;
  readonly devices: JobDevices;
  readonly #log: Logger;

  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
    log: Logger,
  ) {
    this.executions = new JobExecutions(store);
    this.devices = new JobDevices(store);
    this.#log = log;
  }

  /**
   * Moves a job through the lifecycle table (IllegalJobTransition when the table has no such row)
   * and returns it in its new state; undefined when the store no longer holds it in `job.state`
   * (another process moved it first), and nothing changed.
   */
  move(job: JobHead, event: JobEvent, end?: { finishedAt: number; abortReason?: string }): JobHead | undefined {
    const state = nextJobState(job.state, event);
    return setJobState(this.store, job.id, job.state, state, end) ? { ...job, state } : undefined;
  }

  /** Pending writes of a batch of results (see ResultBatch), to pass to `finishIn`, `reviseIn`, then flush. */
  batch(): ResultBatch {
    return new ResultBatch(this.store, this.executions, this.devices);
  }

  /** An execution reached a terminal state (decided by the device or, by default, by the server): a batch of one. */
  finish(exec: ExecutionRow, job: JobHead, end: ExecutionEnd): void {
    const b = this.batch();
    this.finishIn(b, b.adopt({ ...exec }, job), end);
    b.flush();
  }

  /** `finish` within a batch: `exec` is the batch's row, changed in memory and written at its flush. */
  finishIn(b: ResultBatch, exec: ExecutionRow, { state, now, errorCode, errorMessage, source = 'server' }: ExecutionEnd): void {
    const job = b.job(exec.job_id);
    exec.state = state;
    exec.finished_at = now;
    exec.updated_at = now;
    exec.error_code = errorCode;
    exec.error_message = errorMessage?.slice(0, ERROR_MESSAGE_MAX) ?? null;
    exec.result_source = source;
    b.changed(exec);
    this.metrics.inc('fleet_job_executions_finished_total', { state });
    this.#settleDevice(b, exec, job, state, now);
    this.#settleJob(b, job.id, state, now);
  }

  /**
   * The device's own result of an execution the server had already ended without it (deadline,
   * cancel before the offer was known to be out). The execution takes the device's result; the
   * device's result in the job too, if this is its latest execution of the job (a retry started
   * since reports its own). An account event keeps what the server had decided (`previous`).
   * Within a batch: `exec` is the batch's row.
   */
  reviseIn(
    b: ResultBatch,
    exec: ExecutionRow,
    { state, now, errorCode, errorMessage }: Omit<ExecutionEnd, 'source'>,
    previous: JobExecutionState,
  ): void {
    const job = b.job(exec.job_id);
    exec.state = state;
    exec.result_source = 'device';
    exec.updated_at = now;
    exec.error_code = errorCode;
    exec.error_message = errorMessage?.slice(0, ERROR_MESSAGE_MAX) ?? null;
    b.changed(exec);
    this.metrics.inc('fleet_job_executions_finished_total', { state });
    if (this.executions.latestId(exec.job_id, exec.device_id) === exec.id) this.#settleDevice(b, exec, job, state, now);
    // Account events are written as they happen (their ids keep the order one report at a time gives).
    b.flush();
    new AccountEvents(this.store, job.account_id).record({
      type: 'job.execution-revised',
      subject: job.uuid,
      data: { executionId: exec.uuid, serverResult: previous, deviceResult: state },
      at: now,
    });
    this.#settleJob(b, job.id, state, now);
  }

  /** The device's result in the job after an execution ended: done, or pending again for a retry. */
  #settleDevice(b: ResultBatch, exec: ExecutionRow, job: JobHead, state: JobExecutionState, now: number): void {
    const next = deviceAfterResult(state, exec.attempt, b.options<JobOptions>(job), job.state === 'running', now);
    b.settle({ jobId: job.id, deviceId: exec.device_id, status: next.status, result: state, nextAttemptAt: next.nextAttemptAt });
  }

  /** After a result: a failure may abort the job, and the job may be finished. */
  #settleJob(b: ResultBatch, jobId: number, state: JobExecutionState, now: number): void {
    if (isFailure(state)) this.#maybeAbort(b, jobId, now);
    this.#maybeFinishIn(b, jobId, now);
  }

  #maybeAbort(b: ResultBatch, jobId: number, now: number): void {
    const job = b.job(jobId);
    const options = b.options<JobOptions>(job);
    if (!options.abort || !canMove(job.state, 'failure-threshold')) return;
    b.flush();
    const counts = this.devices.resultCounts(job.id, FAILURES);
    const verdict = abortVerdict(options.abort, counts);
    if (!verdict) return;
    const moved = this.move(job, 'failure-threshold', { finishedAt: now, abortReason: verdict.reason });
    if (!moved) return;
    b.moved(moved);
    this.#log.child({ job: job.uuid }).info({ reason: verdict.reason }, 'job aborted');
    new AccountEvents(this.store, job.account_id).record({
      type: 'job.aborted',
      subject: job.uuid,
      data: { reason: verdict.reason, failed: counts.failed, finished: counts.finished },
      at: now,
    });
  }

  /**
   * Finishes a job with every device done (read from job_counts: runs per finished execution,
   * under the write lock). The move is a compare and set on the stored state, so only a job still
   * running finishes.
   */
  maybeFinish(job: JobHead, now: number): void {
    const b = this.batch();
    b.moved(job);
    this.#maybeFinishIn(b, job.id, now);
  }

  #maybeFinishIn(b: ResultBatch, jobId: number, now: number): void {
    const job = b.job(jobId);
    const options = b.options<JobOptions>(job);
    if (options.dynamic || !canMove(job.state, 'all-done')) return;
    if (!b.mayBeDone(job.id)) return;
    b.flush();
    const unfinished = unfinishedJobDevices(this.store, job.id);
    b.unfinishedRead(job.id, unfinished.pending + unfinished.active);
    if (!isJobDone(options, unfinished)) return;
    const moved = this.move(job, 'all-done', { finishedAt: now });
    if (!moved) return;
    b.moved(moved);
    const results = this.results(job.id);
    this.#log.child({ job: job.uuid }).info({ results }, 'job finished');
    new AccountEvents(this.store, job.account_id).record({ type: 'job.finished', subject: job.uuid, data: { results }, at: now });
  }

  /** The job's devices by result (read from job_counts). */
  results(jobId: number): Record<string, number> {
    const results: Record<string, number> = { succeeded: 0, failed: 0, rejected: 0, cancelled: 0, 'timed-out': 0 };
    for (const [bucket, count] of this.countBuckets(jobId)) if (bucket.startsWith('result:')) results[bucket.slice(7)] = count;
    return results;
  }

  countBuckets(jobId: number): Map<string, number> {
    return jobCountBuckets(this.store, jobId);
  }

  /** Adds the devices the target covers now (devices already in the job are kept); how many were added. */
  addTargets(job: Pick<JobHead, 'id' | 'account_id'>, target: JobTarget, now: number): number {
    let n = 0;
    if (target.all) n += this.devices.addAll(job.id, job.account_id, now);
    if (target.groupIds.length > 0) n += this.devices.addGroups(job.id, job.account_id, target.groupIds, now);
    if (target.deviceIds.length > 0) n += this.devices.addDevices(job.id, job.account_id, target.deviceIds, now);
    return n;
  }

  /** The claim's device is pending again in its job, and the claim does not count as an attempt. */
  backToPending(e: ExecutionRow): void {
    this.devices.backToPending(e.job_id, e.device_id);
  }
}
