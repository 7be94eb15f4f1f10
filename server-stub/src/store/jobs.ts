import type { JobExecutionState } from '@router-fleet/protocol';
import type { Store } from './database.js';

export type JobState = 'running' | 'paused' | 'finished' | 'cancelled' | 'aborted';
export type JobDeviceStatus = 'pending' | 'active' | 'done';

export interface JobRow {
  id: number;
  uuid: string;
  account_id: number;
  name: string;
  packet_id: number | null;
  firmware_version: string | null;
  /** JSON JobTarget. */
  target: string;
  /**
   * JSON `{ all, groupUuids, deviceCount }`: what the job resource shows of the target (the device
   * list itself is paged by `GET /api/jobs/{uuid}/target/devices`). Null only before migration 28.
   */
  target_summary: string | null;
  /** JSON JobOptions. */
  options: string;
  state: JobState;
  created_by: string | null;
  system: number;
  created_at: number;
  finished_at: number | null;
  abort_reason: string | null;
}

export interface ExecutionRow {
  id: number;
  uuid: string;
  job_id: number;
  device_id: number;
  packet_id: number | null;
  attempt: number;
  state: JobExecutionState;
  percent: number | null;
  error_code: string | null;
  error_message: string | null;
  claimed_at: number;
  offered_at: number | null;
  updated_at: number;
  finished_at: number | null;
  deadline: number;
  window_start: number | null;
  window_end: number | null;
  cancel_requested: number;
  cancel_sent_at: number | null;
  ignored_progress: number;
  /** Who decided the terminal state (null while running): see jobs/progress.ts. */
  result_source: 'device' | 'server' | null;
}

/** Jobs of one account. Every statement carries `account_id = ?`. */
export class AccountJobs {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  byUuid(uuid: string): JobHead | undefined {
    return this.store
      .stmt<JobHead>(`SELECT ${JOB_HEAD_COLUMNS} FROM jobs WHERE account_id = ? AND uuid = ?`)
      .get(this.accountId, uuid);
  }

  list(opts: { afterId: number; limit: number; state?: JobState }): JobHead[] {
    return this.store
      .stmt<JobHead>(
        `SELECT ${JOB_HEAD_COLUMNS} FROM jobs WHERE account_id = ? AND id > ? AND (? IS NULL OR state = ?) ORDER BY id LIMIT ?`,
      )
      .all(this.accountId, opts.afterId, opts.state ?? null, opts.state ?? null, opts.limit);
  }

  /** One page of the job's explicit target devices, in the order given at creation (`after`: index of the last one seen, -1 before the first). */
  targetDevices(jobId: number, after: number, limit: number): Array<{ idx: number; uuid: string }> {
    return this.store
      .stmt<{ idx: number; uuid: string }>(
        `SELECT t.key AS idx, t.value AS uuid FROM jobs j, json_each(j.target, '$.deviceUuids') t
         WHERE j.id = ? AND j.account_id = ? AND t.key > ? ORDER BY t.key LIMIT ?`,
      )
      .all(jobId, this.accountId, after, limit);
  }

  /** The uuid of the job's packet (the account's own or a vendor packet). */
  packetUuid(jobId: number): string | undefined {
    return this.store
      .stmt<{ uuid: string }>('SELECT p.uuid FROM jobs j JOIN packets p ON p.id = j.packet_id WHERE j.id = ? AND j.account_id = ?')
      .get(jobId, this.accountId)?.uuid;
  }
}

/**
 * A job without its target. The target is the job's JSON as created: with explicit device lists
 * it grows to hundreds of KB (a 15,000-device job: 664 KB, 10.7 ms to read), so the paths that run
 * per progress report, per ready device and per tick read this instead; the devices a job covers
 * are in `job_devices`.
 */
export type JobHead = Omit<JobRow, 'target'>;

/** The columns of a JobHead, for `SELECT ${JOB_HEAD_COLUMNS} FROM jobs`. */
export const JOB_HEAD_COLUMNS =
  'id, uuid, account_id, name, packet_id, firmware_version, options, state, created_by, system, created_at, finished_at, abort_reason, target_summary';

export function jobById(store: Store, id: number): JobHead | undefined {
  return store.stmt<JobHead>(`SELECT ${JOB_HEAD_COLUMNS} FROM jobs WHERE id = ?`).get(id);
}

/** The target JSON of a job (read only where the target itself is needed: dynamic jobs, the API). */
export function jobTarget(store: Store, id: number): string | undefined {
  return store.stmt<{ target: string }>('SELECT target FROM jobs WHERE id = ?').get(id)?.target;
}

/** One page of a job's explicit target devices, in the order given at creation (`after`: index of the last one seen, -1 before the first). */
export function jobTargetDevices(store: Store, jobId: number, after: number, limit: number): Array<{ idx: number; uuid: string }> {
  return store
    .stmt<{ idx: number; uuid: string }>(
      `SELECT t.key AS idx, t.value AS uuid FROM jobs j, json_each(j.target, '$.deviceUuids') t
       WHERE j.id = ? AND t.key > ? ORDER BY t.key LIMIT ?`,
    )
    .all(jobId, after, limit);
}
