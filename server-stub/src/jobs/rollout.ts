import type { JobExecutionState } from '@router-fleet/protocol';
import type { JobDeviceStatus } from '../store/jobs.js';
import type { JobOptions } from './options.js';
import type { WindowSpan } from './window.js';

/**
 * The rollout policy of a job as pure functions over counts the dispatcher reads from the store in
 * its write transaction (like admission/decide.ts beside admission/service.ts): how many devices
 * may start now, whether a device gets another attempt, whether the job aborts or is finished.
 */

/** Terminal results that count as failures (for retries and the abort threshold). */
export const FAILURES: readonly JobExecutionState[] = ['failed', 'rejected', 'timed-out'];
/** Terminal results after which a device may get another attempt. */
export const RETRYABLE: readonly JobExecutionState[] = ['failed', 'timed-out'];

export function isFailure(state: JobExecutionState): boolean {
  return FAILURES.includes(state);
}

/** The limits of a job that `capacity` applies. */
export type RolloutLimits = Pick<JobOptions, 'maxConcurrent' | 'maxPerMinute' | 'waves' | 'window'>;

/** Counts `capacity` needs; each only when its limit is set (see `countsNeeded`). */
export interface CapacityCounts {
  /** The job's executions not finished (for `maxConcurrent`). */
  inFlight?: number;
  /** The job's executions claimed in the last 60 s, retries included (for `maxPerMinute`). */
  claimedLastMinute?: number;
  /** The job's devices: all, started, started without a result (for `waves`). */
  devices?: { total: number; started: number; unfinished: number };
}

/** Which counts the limits of a job need (the others are not read: a job without limits costs no query). */
export function countsNeeded(limits: RolloutLimits): { inFlight: boolean; claimedLastMinute: boolean; devices: boolean } {
  return { inFlight: limits.maxConcurrent !== null, claimedLastMinute: limits.maxPerMinute !== null, devices: limits.waves.length > 0 };
}

function required(value: number | undefined, what: string): number {
  if (value === undefined) throw new Error(`rollout capacity: the count ${what} was not read`);
  return value;
}

/**
 * How many new executions the job may start now (≥ 0; `Infinity` without limits): the smallest
 * room left under maxConcurrent, maxPerMinute and the current wave; 0 when the job has a
 * maintenance window that has ended (`window` is the occurrence `nextWindow` found, if any).
 */
export function capacity(limits: RolloutLimits, counts: CapacityCounts, window: WindowSpan | undefined): number {
  let room = Number.POSITIVE_INFINITY;
  if (limits.maxConcurrent !== null) room = Math.min(room, limits.maxConcurrent - required(counts.inFlight, 'inFlight'));
  if (limits.maxPerMinute !== null) room = Math.min(room, limits.maxPerMinute - required(counts.claimedLastMinute, 'claimedLastMinute'));
  if (limits.waves.length > 0) {
    if (!counts.devices) throw new Error('rollout capacity: the count devices was not read');
    room = Math.min(room, waveCapacity(limits.waves, counts.devices.total, counts.devices.started, counts.devices.unfinished));
  }
  if (limits.window && !window) room = 0;
  return Math.max(0, room);
}

/**
 * How many devices of a wave rollout may start now: the cap of the first wave not yet filled, or
 * 0 while a filled wave still has devices without a result. `Infinity` past the last wave.
 */
export function waveCapacity(waves: readonly number[], total: number, started: number, unfinished: number): number {
  for (const pct of waves) {
    const cap = Math.ceil((pct / 100) * total);
    if (started < cap) return cap - started;
    if (unfinished > 0) return 0;
  }
  return Number.POSITIVE_INFINITY;
}

/** When a new execution's result is due: its timeout, or the end of its install window if later. */
export function executionDeadline(now: number, timeoutSec: number, window: WindowSpan | undefined): number {
  return Math.max(now + timeoutSec * 1000, window ? window.notAfter : 0);
}

/**
 * A device's status in its job after an execution ended with `result`: pending again for another
 * attempt (a retryable result, attempts left, the job still running), else done. `nextAttemptAt`
 * is when a retry may be claimed.
 */
export function deviceAfterResult(
  result: JobExecutionState,
  attempt: number,
  options: Pick<JobOptions, 'retries' | 'retryDelaySec'>,
  jobRunning: boolean,
  now: number,
): { status: Extract<JobDeviceStatus, 'pending' | 'done'>; nextAttemptAt: number } {
  const retry = RETRYABLE.includes(result) && attempt <= options.retries && jobRunning;
  return { status: retry ? 'pending' : 'done', nextAttemptAt: now + options.retryDelaySec * 1000 };
}

/**
 * Whether failures abort the job: failed devices exceed `failurePercent` of the devices with a
 * result AND number at least `minFailures`. The reason is what the job resource shows.
 */
export function abortVerdict(
  abort: JobOptions['abort'],
  counts: { failed: number; finished: number },
): { reason: string } | undefined {
  if (!abort) return undefined;
  const percent = counts.finished === 0 ? 0 : (counts.failed / counts.finished) * 100;
  if (counts.failed < abort.minFailures || percent <= abort.failurePercent) return undefined;
  return { reason: `${counts.failed} of ${counts.finished} devices failed (${percent.toFixed(1)} %)` };
}

/** A job is finished when no device is pending or active; a dynamic job never is (devices may still join). */
export function isJobDone(options: Pick<JobOptions, 'dynamic'>, devices: { pending: number; active: number }): boolean {
  return !options.dynamic && !(devices.pending > 0) && !(devices.active > 0);
}
