import type { JobExecutionState } from '@router-fleet/protocol';
import { dialects, type Store } from './database.js';
import { chunks } from './events.js';
import type { JobDeviceStatus } from './jobs.js';

/** A job's devices by how far they got, for wave rollouts. */
export interface WaveCounts {
  total: number;
  /** Devices that had at least one execution. */
  started: number;
  /** Started devices without a final result yet. */
  unfinished: number;
}

/** A job's devices with a result, and how many of those results are failures. */
export interface ResultCounts {
  failed: number;
  finished: number;
}

/**
 * The devices a job covers (`job_devices`): pending, active (an execution in flight) or done, with
 * the latest result and the number of attempts. Not account-scoped: the dispatcher works across
 * accounts; the job id carries the account.
 */
export class JobDevices {
  constructor(private readonly store: Store) {}

  /** Adds every device of the account (devices already in the job are kept as they are); returns how many were added. */
  addAll(jobId: number, accountId: number, now: number): number {
    return this.store
      .stmt(
        dialects({
          sqlite: `INSERT OR IGNORE INTO job_devices (job_id, device_id, status, added_at) SELECT ?, id, 'pending', ? FROM devices WHERE account_id = ?`,
          postgres: `INSERT INTO job_devices (job_id, device_id, status, added_at)
                     SELECT CAST(? AS BIGINT), id, 'pending', CAST(? AS BIGINT) FROM devices WHERE account_id = ? ON CONFLICT DO NOTHING`,
        }),
      )
      .run(jobId, now, accountId).changes;
  }

  /** Adds the account's devices in these groups; returns how many were added. */
  addGroups(jobId: number, accountId: number, groupIds: readonly number[], now: number): number {
    return this.store
      .stmt(
        dialects({
          sqlite: `INSERT OR IGNORE INTO job_devices (job_id, device_id, status, added_at) SELECT ?, id, 'pending', ? FROM devices
                   WHERE account_id = ? AND group_id IN (SELECT value FROM json_each(?))`,
          postgres: `INSERT INTO job_devices (job_id, device_id, status, added_at) SELECT CAST(? AS BIGINT), id, 'pending', CAST(? AS BIGINT) FROM devices
                     WHERE account_id = ? AND group_id IN (SELECT v::BIGINT FROM json_array_elements_text(?::json) AS t(v)) ON CONFLICT DO NOTHING`,
        }),
      )
      .run(jobId, now, accountId, JSON.stringify(groupIds)).changes;
  }

  /** Adds these devices of the account; returns how many were added. */
  addDevices(jobId: number, accountId: number, deviceIds: readonly number[], now: number): number {
    return this.store
      .stmt(
        dialects({
          sqlite: `INSERT OR IGNORE INTO job_devices (job_id, device_id, status, added_at) SELECT ?, id, 'pending', ? FROM devices
                   WHERE account_id = ? AND id IN (SELECT value FROM json_each(?))`,
          postgres: `INSERT INTO job_devices (job_id, device_id, status, added_at) SELECT CAST(? AS BIGINT), id, 'pending', CAST(? AS BIGINT) FROM devices
                     WHERE account_id = ? AND id IN (SELECT v::BIGINT FROM json_array_elements_text(?::json) AS t(v)) ON CONFLICT DO NOTHING`,
        }),
      )
      .run(jobId, now, accountId, JSON.stringify(deviceIds)).changes;
  }

  /** Adds one device (a device already in the job is left as it is). */
  addDevice(jobId: number, deviceId: number, now: number): void {
    this.store
      .stmt(
        dialects({
          sqlite: `INSERT OR IGNORE INTO job_devices (job_id, device_id, status, added_at) VALUES (?, ?, 'pending', ?)`,
          postgres: `INSERT INTO job_devices (job_id, device_id, status, added_at) VALUES (?, ?, 'pending', ?) ON CONFLICT DO NOTHING`,
        }),
      )
      .run(jobId, deviceId, now);
  }

  /** Every device the job covers, whatever its status. */
  deviceIds(jobId: number): number[] {
    return this.store
      .stmt<{ device_id: number }>('SELECT device_id FROM job_devices WHERE job_id = ?')
      .all(jobId)
      .map((r) => r.device_id);
  }

  attempts(jobId: number, deviceId: number): number {
    return (
      this.store
        .stmt<{ attempts: number }>('SELECT attempts FROM job_devices WHERE job_id = ? AND device_id = ?')
        .get(jobId, deviceId)?.attempts ?? 0
    );
  }

  /**
   * The device was claimed: an execution is in flight. Returns which attempt it is (one statement
   * instead of a read and a write: it runs once per offer, under the write lock).
   */
  claim(jobId: number, deviceId: number): number {
    return this.store
      .stmt<{ attempts: number }>(
        `UPDATE job_devices SET status = 'active', attempts = attempts + 1 WHERE job_id = ? AND device_id = ? RETURNING attempts`,
      )
      .get(jobId, deviceId)!.attempts;
  }

  /** `claim` for many devices of the job in one statement: device row id → its attempt. */
  claimMany(jobId: number, deviceIds: readonly number[]): Map<number, number> {
    const rows = this.store
      .stmt<{ device_id: number; attempts: number }>(
        dialects({
          sqlite: `UPDATE job_devices SET status = 'active', attempts = attempts + 1
                   WHERE job_id = ? AND device_id IN (SELECT value FROM json_each(?)) RETURNING device_id, attempts`,
          postgres: `UPDATE job_devices SET status = 'active', attempts = attempts + 1
                     WHERE job_id = ? AND device_id IN (SELECT v::BIGINT FROM json_array_elements_text(?::json) AS t(v)) RETURNING device_id, attempts`,
        }),
      )
      .all(jobId, JSON.stringify(deviceIds));
    return new Map(rows.map((r) => [r.device_id, r.attempts]));
  }

  /** The device's result after an execution ended: done, or pending again (a retry not before `nextAttemptAt`). */
  settle(jobId: number, deviceId: number, status: JobDeviceStatus, result: JobExecutionState, nextAttemptAt: number): void {
    this.store
      .stmt('UPDATE job_devices SET status = ?, result = ?, next_attempt_at = ? WHERE job_id = ? AND device_id = ?')
      .run(status, result, nextAttemptAt, jobId, deviceId);
  }

  /** `settle` for many devices (one statement per BULK_CHUNK_ROWS on PostgreSQL; the prepared one per row on SQLite). */
  settleMany(rows: readonly { jobId: number; deviceId: number; status: JobDeviceStatus; result: JobExecutionState; nextAttemptAt: number }[]): void {
    if (rows.length === 0) return;
    if (this.store.dialect !== 'postgres') {
      for (const r of rows) this.settle(r.jobId, r.deviceId, r.status, r.result, r.nextAttemptAt);
      return;
    }
    const up = this.store.stmt(
      `UPDATE job_devices jd SET status = u.status, result = u.result, next_attempt_at = u.next_attempt_at
       FROM unnest(?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::bigint[]) AS u(job_id, device_id, status, result, next_attempt_at)
       WHERE jd.job_id = u.job_id AND jd.device_id = u.device_id`,
    );
    for (const c of chunks(rows)) {
      up.run(c.map((r) => r.jobId), c.map((r) => r.deviceId), c.map((r) => r.status), c.map((r) => r.result), c.map((r) => r.nextAttemptAt));
    }
  }

  /** An active device whose claim was undone is pending again, and the claim does not count as an attempt. */
  backToPending(jobId: number, deviceId: number): void {
    this.store
      .stmt(
        `UPDATE job_devices SET status = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
         WHERE job_id = ? AND device_id = ? AND status = 'active'`,
      )
      .run(jobId, deviceId);
  }

  /** The job was cancelled: devices not yet claimed are done with the result `cancelled`. */
  cancelPending(jobId: number): void {
    this.store.stmt(`UPDATE job_devices SET status = 'done', result = 'cancelled' WHERE job_id = ? AND status = 'pending'`).run(jobId);
  }

  /** See WaveCounts. */
  waveCounts(jobId: number): WaveCounts {
    return this.store
      .stmt<WaveCounts>(
        `SELECT COUNT(*) AS total, COUNT(CASE WHEN attempts > 0 THEN 1 END) AS started,
           COUNT(CASE WHEN attempts > 0 AND status != 'done' THEN 1 END) AS unfinished
         FROM job_devices WHERE job_id = ?`,
      )
      .get(jobId)!;
  }

  /** See ResultCounts; `failures` are the results that count as failed. */
  resultCounts(jobId: number, failures: readonly JobExecutionState[]): ResultCounts {
    return this.store
      .stmt<ResultCounts>(
        dialects({
          sqlite: `SELECT COALESCE(SUM(result IN (SELECT value FROM json_each(?))), 0) AS failed, COUNT(result) AS finished
                   FROM job_devices WHERE job_id = ?`,
          postgres: `SELECT COUNT(*) FILTER (WHERE result IN (SELECT v FROM json_array_elements_text(?::json) AS t(v))) AS failed,
                       COUNT(result) AS finished
                     FROM job_devices WHERE job_id = ?`,
        }),
      )
      .get(JSON.stringify(failures), jobId)!;
  }
}
