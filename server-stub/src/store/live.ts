import type { Store } from './database.js';
import { type EventLogRow, eventLogColumns } from './event-log.js';
import type { JobDeviceRow } from './job-executions.js';

/**
 * The reads behind the console's live streams (console/stream.ts). Each one is small and indexed,
 * because it runs once a second for as long as an operator has the page open; in cluster mode
 * every process runs its own, so they read only what the store holds, never in-process state.
 */

/** Device counts of one account, as the dashboard's tiles show them. */
export interface FleetCounts {
  total: number;
  /** Connected and holding a licence seat. */
  online: number;
  /** Connected beyond the licence limit. */
  unmanaged: number;
  /** Not connected (rejected devices included). */
  offline: number;
  /** Devices whose last hello was rejected for want of a licence. */
  rejected: number;
}

/** One execution of a job with its device, as the job's device list shows it. */
export interface JobDeviceChangeRow extends JobDeviceRow {
  exec_id: number;
  exec_uuid: string;
  state: string;
  cancel_requested: number;
  updated_at: number;
  finished_at: number | null;
}

/** Account-wide reads: counts and the newest events. Every statement carries `account_id = ?`. */
export class AccountLive {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  /** One pass over the covering index devices_account_status (account_id, online, admission). */
  fleetCounts(): FleetCounts {
    const r = this.store
      .stmt<{ total: number; online: number; unmanaged: number; rejected: number }>(
        `SELECT COUNT(*) AS total,
           COUNT(CASE WHEN online = 1 AND admission = 'managed' THEN 1 END) AS online,
           COUNT(CASE WHEN online = 1 AND admission = 'unmanaged' THEN 1 END) AS unmanaged,
           COUNT(CASE WHEN admission = 'rejected' THEN 1 END) AS rejected
         FROM devices WHERE account_id = ?`,
      )
      .get(this.accountId)!;
    return { ...r, offline: r.total - r.online - r.unmanaged };
  }

  /** Id of the account's newest event (0 when it has none). */
  lastEventId(): number {
    return (
      this.store
        .stmt<{ id: number | null }>('SELECT MAX(id) AS id FROM account_events WHERE account_id = ?')
        .get(this.accountId)?.id ?? 0
    );
  }

  /** The newest event of each device (by uuid; devices without events are left out). */
  latestEvents(deviceUuids: readonly string[]): EventLogRow[] {
    const one = this.store.stmt<EventLogRow>(
      `SELECT ${eventLogColumns(this.store.dialect)} FROM account_events WHERE account_id = ? AND subject = ? ORDER BY id DESC LIMIT 1`,
    );
    return this.store.read(() =>
      deviceUuids.map((u) => one.get(this.accountId, u)).filter((r): r is EventLogRow => r !== undefined),
    );
  }

  /** Events after `afterId`, oldest first, at most `limit` (the newest ones when there are more). */
  eventsAfter(afterId: number, limit: number): EventLogRow[] {
    return this.store
      .stmt<EventLogRow>(
        `SELECT * FROM (SELECT ${eventLogColumns(this.store.dialect)} FROM account_events
           WHERE account_id = ? AND id > ? ORDER BY id DESC LIMIT ?) AS newest ORDER BY id`,
      )
      .all(this.accountId, afterId, limit);
  }
}

const JOB_DEVICE_CHANGE = `SELECT e.id AS exec_id, e.uuid AS exec_uuid, d.uuid AS device_uuid, d.serial_number, d.name,
    d.admission, jd.status, jd.result, jd.attempts, e.state, e.percent, e.error_code, e.error_message,
    e.cancel_requested, e.updated_at, e.finished_at
  FROM job_executions e
  JOIN devices d ON d.id = e.device_id
  JOIN job_devices jd ON jd.job_id = e.job_id AND jd.device_id = e.device_id`;

/** Reads of one job's executions (the job id comes from a job the caller's account owns). */
export class JobLive {
  constructor(private readonly store: Store) {}

  /**
   * The job's executions in flight (not finished) changed at or after `since` (ms, the writers'
   * clock). It walks the partial index job_executions_unfinished (job_id, finished_at, state WHERE
   * finished_at IS NULL): the executions in flight, however many the job has done. Deliberately no
   * index on updated_at: every progress report rewrites it, and the write path is the one to keep
   * cheap; this read runs only while someone watches the job.
   */
  inFlightSince(jobId: number, since: number): JobDeviceChangeRow[] {
    return this.store
      .stmt<JobDeviceChangeRow>(`${JOB_DEVICE_CHANGE} WHERE e.job_id = ? AND e.finished_at IS NULL AND e.updated_at >= ?`)
      .all(jobId, since);
  }

  /**
   * The job's executions finished after (`at`, `id`) in (finished_at, id) order, at most `limit`:
   * a range scan of job_executions_finished (job_id, finished_at WHERE finished_at IS NOT NULL).
   */
  finishedAfter(jobId: number, at: number, id: number, limit: number): JobDeviceChangeRow[] {
    return this.store
      .stmt<JobDeviceChangeRow>(
        `${JOB_DEVICE_CHANGE} WHERE e.job_id = ? AND e.finished_at >= ? AND (e.finished_at > ? OR e.id > ?)
         ORDER BY e.finished_at, e.id LIMIT ?`,
      )
      .all(jobId, at, at, id, limit);
  }
}
