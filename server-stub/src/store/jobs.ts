import type { JobExecutionState } from '@router-fleet/protocol';
import { dialects, listParam, type Store } from './database.js';
import type { JobExecutionColumns } from './job-executions.js';

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

/** One job a device was part of, with the device's result there (a device's job history). */
export interface DeviceJobRow extends JobExecutionColumns {
  id: number;
  uuid: string;
  name: string;
  job_state: string;
  created_at: number;
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
        dialects({
          sqlite: `SELECT t.key AS idx, t.value AS uuid FROM jobs j, json_each(j.target, '$.deviceUuids') t
                   WHERE j.id = ? AND j.account_id = ? AND t.key > ? ORDER BY t.key LIMIT ?`,
          postgres: `SELECT t.n - 1 AS idx, t.uuid FROM jobs j,
                       jsonb_array_elements_text(j.target::jsonb->'deviceUuids') WITH ORDINALITY AS t(uuid, n)
                     WHERE j.id = ? AND j.account_id = ? AND t.n - 1 > ? ORDER BY t.n LIMIT ?`,
        }),
      )
      .all(jobId, this.accountId, after, limit);
  }

  /**
   * The jobs that included device `deviceId` (of this account), newest first, with the device's
   * status and result in each and its latest execution there: job_devices_device (device_id) and
   * job_executions_device (device_id) find them. `beforeJobId`: the last job id of the previous page.
   */
  deviceHistory(deviceId: number, beforeJobId: number, limit: number): DeviceJobRow[] {
    return this.store
      .stmt<DeviceJobRow>(
        `SELECT j.id, j.uuid, j.name, j.state AS job_state, j.created_at, jd.status, jd.result, jd.attempts, d.admission,
           e.uuid AS exec_uuid, e.state, e.percent, e.error_code, e.error_message, e.updated_at
         FROM job_devices jd JOIN jobs j ON j.id = jd.job_id JOIN devices d ON d.id = jd.device_id
         LEFT JOIN job_executions e ON e.id = (
           SELECT MAX(id) FROM job_executions WHERE device_id = jd.device_id AND job_id = jd.job_id)
         WHERE jd.device_id = ? AND j.account_id = ? AND j.id < ? ORDER BY j.id DESC LIMIT ?`,
      )
      .all(deviceId, this.accountId, beforeJobId, limit);
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

/** `jobById` for several jobs at once (one statement). */
export function jobsByIds(store: Store, ids: readonly number[]): JobHead[] {
  if (ids.length === 0) return [];
  return store
    .stmt<JobHead>(
      dialects({
        sqlite: `SELECT ${JOB_HEAD_COLUMNS} FROM jobs WHERE id IN (SELECT value FROM json_each(?))`,
        postgres: `SELECT ${JOB_HEAD_COLUMNS} FROM jobs WHERE id = ANY(?::bigint[])`,
      }),
    )
    .all(listParam(store, ids));
}

/** The target JSON of a job (read only where the target itself is needed: dynamic jobs, the API). */
export function jobTarget(store: Store, id: number): string | undefined {
  return store.stmt<{ target: string }>('SELECT target FROM jobs WHERE id = ?').get(id)?.target;
}

/** One page of a job's explicit target devices, in the order given at creation (`after`: index of the last one seen, -1 before the first). */
export function jobTargetDevices(store: Store, jobId: number, after: number, limit: number): Array<{ idx: number; uuid: string }> {
  return store
    .stmt<{ idx: number; uuid: string }>(
      dialects({
        sqlite: `SELECT t.key AS idx, t.value AS uuid FROM jobs j, json_each(j.target, '$.deviceUuids') t
                 WHERE j.id = ? AND t.key > ? ORDER BY t.key LIMIT ?`,
        postgres: `SELECT t.n - 1 AS idx, t.uuid FROM jobs j,
                     jsonb_array_elements_text(j.target::jsonb->'deviceUuids') WITH ORDINALITY AS t(uuid, n)
                   WHERE j.id = ? AND t.n - 1 > ? ORDER BY t.n LIMIT ?`,
      }),
    )
    .all(jobId, after, limit);
}

export interface NewJob {
  uuid: string;
  accountId: number;
  name: string;
  packetId: number | null;
  firmwareVersion: string | null;
  /** JSON JobTarget. */
  target: string;
  /** JSON `{ all, groupUuids, deviceCount }`. */
  targetSummary: string;
  /** JSON JobOptions. */
  options: string;
  state: JobState;
  createdBy: string | null;
  system: boolean;
  createdAt: number;
}

/** Stores a new job; its row id. */
export function insertJob(store: Store, job: NewJob): number {
  return Number(
    store
      .stmt<{ id: number }>(
        `INSERT INTO jobs (uuid, account_id, name, packet_id, firmware_version, target, target_summary, options, state,
           created_by, system, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
      )
      .get(
        job.uuid,
        job.accountId,
        job.name,
        job.packetId,
        job.firmwareVersion,
        job.target,
        job.targetSummary,
        job.options,
        job.state,
        job.createdBy,
        job.system ? 1 : 0,
        job.createdAt,
      )!.id,
  );
}

/**
 * Moves a job from `from` to `to` (compare and set: false when it is no longer in `from`, e.g.
 * another process ended it first). `end` records when and why a job reached a terminal state.
 * Which moves are legal is jobs/job-lifecycle.ts's business, not the store's.
 */
export function setJobState(
  store: Store,
  jobId: number,
  from: JobState,
  to: JobState,
  end?: { finishedAt: number; abortReason?: string },
): boolean {
  if (!end) return store.stmt('UPDATE jobs SET state = ? WHERE id = ? AND state = ?').run(to, jobId, from).changes > 0;
  return (
    store
      .stmt('UPDATE jobs SET state = ?, finished_at = ?, abort_reason = COALESCE(?, abort_reason) WHERE id = ? AND state = ?')
      .run(to, end.finishedAt, end.abortReason ?? null, jobId, from).changes > 0
  );
}

/** Running jobs (without their targets), oldest first. */
export function runningJobs(store: Store): JobHead[] {
  return store.stmt<JobHead>(`SELECT ${JOB_HEAD_COLUMNS} FROM jobs WHERE state = 'running' ORDER BY id`).all();
}

/** Ids of the running jobs, oldest first (the claim order of jobs). */
export function runningJobIds(store: Store): number[] {
  return store.stmt<{ id: number }>(`SELECT id FROM jobs WHERE state = 'running' ORDER BY id`).all().map((r) => r.id);
}

/** Whether any job is running (one index probe: the claim and the template renders need one). */
export function anyRunningJob(store: Store): boolean {
  return store.stmt(`SELECT 1 FROM jobs WHERE state = 'running' LIMIT 1`).get() !== undefined;
}

/**
 * Running dynamic jobs of the accounts of any of the devices (with their targets), with the device
 * each was found for (a job appears once per device of its account asked about).
 */
export function dynamicJobsOfDevicesAccounts(store: Store, deviceIds: readonly number[]): Array<JobRow & { device_id: number }> {
  if (deviceIds.length === 0) return [];
  return store
    .stmt<JobRow & { device_id: number }>(
      dialects({
        sqlite: `SELECT j.*, d.id AS device_id FROM jobs j JOIN devices d ON d.account_id = j.account_id
                 WHERE d.id IN (SELECT value FROM json_each(?)) AND j.state = 'running' AND json_extract(j.options, '$.dynamic') = 1`,
        postgres: `SELECT j.*, d.id AS device_id FROM jobs j JOIN devices d ON d.account_id = j.account_id
                   WHERE d.id = ANY(?::bigint[]) AND j.state = 'running' AND j.options::jsonb->'dynamic' IN ('true', '1')`,
      }),
    )
    .all(listParam(store, deviceIds));
}

/**
 * A job's counters (`bucket` → n) from `job_counts`, kept by triggers on job_devices,
 * job_executions and devices (migration 28): a poll reads a handful of rows, not every device.
 * Buckets: `status:<pending|active|done>`, `result:<state>`, `state:<execution state in flight>`,
 * `skipped`, `ignored`.
 */
export function jobCountBuckets(store: Store, jobId: number): Map<string, number> {
  const c = new Map<string, number>();
  for (const r of store.stmt<{ bucket: string; n: number }>('SELECT bucket, n FROM job_counts WHERE job_id = ?').all(jobId)) {
    c.set(r.bucket, r.n);
  }
  return c;
}

/** The job's devices still pending or active, from `job_counts` (what decides whether it is finished). */
export function unfinishedJobDevices(store: Store, jobId: number): { pending: number; active: number } {
  let pending = 0;
  let active = 0;
  for (const r of store
    .stmt<{ bucket: string; n: number }>(`SELECT bucket, n FROM job_counts WHERE job_id = ? AND bucket IN ('status:pending', 'status:active')`)
    .all(jobId)) {
    if (r.bucket === 'status:pending') pending = r.n;
    else active = r.n;
  }
  return { pending, active };
}
