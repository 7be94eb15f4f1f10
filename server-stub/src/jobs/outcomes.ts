import type { JobExecutionState } from '@router-fleet/protocol';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import type { Store } from '../store/database.js';
import { AccountEvents } from '../store/events.js';
import { JobDevices } from '../store/job-devices.js';
import { JobExecutions } from '../store/job-executions.js';
import {
  type ExecutionRow,
  type JobHead,
  jobById,
  jobCountBuckets,
  setJobState,
  unfinishedJobDevices,
} from '../store/jobs.js';
import { canMove, type JobEvent, nextJobState } from './job-lifecycle.js';
import type { JobOptions, JobTarget } from './options.js';
import type { ResultSource } from './progress.js';
import { abortVerdict, deviceAfterResult, FAILURES, isFailure, isJobDone } from './rollout.js';

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

  /** An execution reached a terminal state (decided by the device or, by default, by the server). */
  finish(
    exec: ExecutionRow,
    job: JobHead,
    state: JobExecutionState,
    now: number,
    errorCode: string | null,
    errorMessage: string | null,
    source: ResultSource = 'server',
  ): void {
    this.executions.finish(exec.id, state, now, errorCode, errorMessage, source);
    this.metrics.inc('fleet_job_executions_finished_total', { state });
    this.#settleDevice(exec, job, state, now);
    this.#settleJob(job, state, now);
  }

  /**
   * The device's own result of an execution the server had already ended without it (deadline,
   * cancel before the offer was known to be out). The execution takes the device's result; the
   * device's result in the job too, if this is its latest execution of the job (a retry started
   * since reports its own). An account event keeps what the server had decided.
   */
  revise(
    exec: ExecutionRow,
    state: JobExecutionState,
    previous: JobExecutionState,
    now: number,
    errorCode: string | null,
    errorMessage: string | null,
  ): void {
    const job = jobById(this.store, exec.job_id)!;
    this.executions.revise(exec.id, state, now, errorCode, errorMessage);
    this.metrics.inc('fleet_job_executions_finished_total', { state });
    if (this.executions.latestId(exec.job_id, exec.device_id) === exec.id) this.#settleDevice(exec, job, state, now);
    new AccountEvents(this.store, job.account_id).record({
      type: 'job.execution-revised',
      subject: job.uuid,
      data: { executionId: exec.uuid, serverResult: previous, deviceResult: state },
      at: now,
    });
    this.#settleJob(job, state, now);
  }

  /** The device's result in the job after an execution ended: done, or pending again for a retry. */
  #settleDevice(exec: ExecutionRow, job: JobHead, state: JobExecutionState, now: number): void {
    const options = JSON.parse(job.options) as JobOptions;
    const next = deviceAfterResult(state, exec.attempt, options, job.state === 'running', now);
    this.devices.settle(job.id, exec.device_id, next.status, state, next.nextAttemptAt);
  }

  /** After a result: a failure may abort the job, and the job may be finished. */
  #settleJob(job: JobHead, state: JobExecutionState, now: number): void {
    if (isFailure(state)) this.#maybeAbort(job, JSON.parse(job.options) as JobOptions, now);
    this.maybeFinish(job, now);
  }

  #maybeAbort(job: JobHead, options: JobOptions, now: number): void {
    if (!options.abort || !canMove(job.state, 'failure-threshold')) return;
    const counts = this.devices.resultCounts(job.id, FAILURES);
    const verdict = abortVerdict(options.abort, counts);
    if (!verdict) return;
    if (!this.move(job, 'failure-threshold', { finishedAt: now, abortReason: verdict.reason })) return;
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
   * under the write lock). `job.state` may be stale within a transaction (an abort just before):
   * the move is a compare and set on the stored state, so only a job still running finishes.
   */
  maybeFinish(job: JobHead, now: number): void {
    const options = JSON.parse(job.options) as JobOptions;
    if (options.dynamic || !canMove(job.state, 'all-done')) return;
    if (!isJobDone(options, unfinishedJobDevices(this.store, job.id))) return;
    if (!this.move(job, 'all-done', { finishedAt: now })) return;
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
