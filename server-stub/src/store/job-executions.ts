import { CANCELLABLE_JOB_STATES } from '@router-fleet/protocol';
import { dialects, listParam, type Store } from './database.js';
import { chunks } from './events.js';
import type { ExecutionRow } from './jobs.js';
import type { PacketRow } from './packets.js';

const CANCELLABLE_SQL = `('${CANCELLABLE_JOB_STATES.join('\', \'')}')`;

/**
 * The devices connected here that one running job may be offered to now, in claim order, at most
 * `limit` (parameters: job id, now, limit). Runs in the write transaction of every dispatch (each
 * reconnect and each finished execution), so it walks the job's pending devices in claim order
 * through the partial index `job_devices_pending` (migration 26) and stops at the limit, instead of
 * reading and sorting every device of the job: a test checks the plan. The model (which catalogue
 * firmware a firmware job sends) is the one the router reported, else the typed-in one.
 */
export const CLAIM_CANDIDATES_SQL = `SELECT jd.device_id, d.uuid, COALESCE(d.reported_model, d.model) AS model
  FROM job_devices jd
  JOIN job_local_ready r ON r.device_id = jd.device_id
  JOIN devices d ON d.id = jd.device_id
  WHERE jd.job_id = ? AND jd.status = 'pending' AND jd.next_attempt_at <= ?
    AND d.admission = 'managed'
    AND NOT EXISTS (SELECT 1 FROM job_executions e WHERE e.device_id = jd.device_id AND e.finished_at IS NULL)
  ORDER BY jd.added_at, jd.device_id
  LIMIT ?`;

/** Executions claimed but never offered (the claiming process died): the job tick reclaims them (index `job_executions_queued`). */
export const ORPHAN_QUEUED_SQL = `SELECT * FROM job_executions WHERE state = 'queued' AND finished_at IS NULL AND claimed_at < ?`;

/** A job's executions in flight, for its maxConcurrent limit (counted in index `job_executions_unfinished`). */
export const IN_FLIGHT_SQL = 'SELECT COUNT(*) AS n FROM job_executions WHERE job_id = ? AND finished_at IS NULL';

/** A device of a running job that may be claimed now (see CLAIM_CANDIDATES_SQL). */
export interface ClaimCandidate {
  device_id: number;
  uuid: string;
  model: string | null;
}

/** An execution with the uuid of its device. */
export type ExecutionWithDevice = ExecutionRow & { device_uuid: string };

export interface NewExecution {
  uuid: string;
  jobId: number;
  deviceId: number;
  packetId: number | null;
  attempt: number;
  claimedAt: number;
  deadline: number;
  windowStart: number | null;
  windowEnd: number | null;
}

/** A device's status in a job and its latest execution there (null columns: none yet). */
export interface JobExecutionColumns {
  /** The device's admission (`unmanaged`: beyond the licence limit). */
  admission: string | null;
  status: string;
  result: string | null;
  attempts: number;
  exec_uuid: string | null;
  state: string | null;
  percent: number | null;
  error_code: string | null;
  error_message: string | null;
  updated_at: number | null;
}

/**
 * A device's place in a job with its latest execution: the row behind every view of a job's
 * device list (the REST page and the console's live updates).
 */
export interface JobDeviceRow extends JobExecutionColumns {
  device_uuid: string;
  serial_number: string;
  name: string;
  cancel_requested: number | null;
}

/** One row of a job's per-device results, with the device's row id (the page cursor). */
export interface DeviceResultRow extends JobDeviceRow {
  id: number;
}

/** An execution with its device's uuid (`device_uuid`): the select the `WHERE` of each lookup follows. */
const WITH_DEVICE = 'SELECT e.*, d.uuid AS device_uuid FROM job_executions e JOIN devices d ON d.id = e.device_id';

/** The PostgreSQL array type of the columns executions are looked up by many at once. */
const IN_TYPE = { 'e.uuid': 'text', 'e.device_id': 'bigint' } as const;

/** Longest error message kept with an execution (characters). */
export const ERROR_MESSAGE_MAX = 1024;

/**
 * Job executions of every account: what the dispatcher claims, offers, cancels and finishes. Not
 * account-scoped: dispatch serves whatever devices are connected to this process. Statements are
 * prepared once by the store (`Store.stmt` caches them by text).
 */
export class JobExecutions {
  constructor(private readonly store: Store) {}

  byId(id: number): ExecutionRow | undefined {
    return this.store.stmt<ExecutionRow>('SELECT * FROM job_executions WHERE id = ?').get(id);
  }

  /** The executions and their devices' uuids (to check that a report comes from the device it was offered to): one statement; unknown uuids are left out. */
  withDeviceMany(uuids: readonly string[]): ExecutionWithDevice[] {
    return this.#withDeviceIn('e.uuid', uuids);
  }

  /** The executions not finished of any of the devices, with their device's uuid, oldest first (one statement). */
  openForDevices(deviceIds: readonly number[]): ExecutionWithDevice[] {
    return this.#withDeviceIn('e.device_id', deviceIds, 'AND e.finished_at IS NULL ORDER BY e.id');
  }

  /**
   * Executions with their device's uuid whose `column` is one of `values`, in one statement (a JSON
   * array on SQLite, an array parameter on PostgreSQL); `rest` follows that condition (more
   * conditions, an order).
   */
  #withDeviceIn(column: keyof typeof IN_TYPE, values: readonly string[] | readonly number[], rest = ''): ExecutionWithDevice[] {
    if (values.length === 0) return [];
    return this.store
      .stmt<ExecutionWithDevice>(
        dialects({
          sqlite: `${WITH_DEVICE} WHERE ${column} IN (SELECT value FROM json_each(?)) ${rest}`,
          postgres: `${WITH_DEVICE} WHERE ${column} = ANY(?::${IN_TYPE[column]}[]) ${rest}`,
        }),
      )
      .all(listParam(this.store, values));
  }

  /**
   * Writes what changed of executions read in this write transaction (the columns reports, results,
   * offers and cancels change), each row as given: one statement per BULK_CHUNK_ROWS rows on
   * PostgreSQL, the prepared single-row update on SQLite. The count-keeping triggers see each row
   * go from what it was to what it is now, which counts the same as the steps in between.
   */
  writeRows(rows: readonly ExecutionRow[]): void {
    if (rows.length === 0) return;
    if (this.store.dialect !== 'postgres') {
      const up = this.store.stmt(
        `UPDATE job_executions SET state = ?, percent = ?, updated_at = ?, offered_at = ?, finished_at = ?, error_code = ?,
           error_message = ?, result_source = ?, ignored_progress = ?, cancel_sent_at = ? WHERE id = ?`,
      );
      for (const r of rows) {
        up.run(r.state, r.percent, r.updated_at, r.offered_at, r.finished_at, r.error_code, r.error_message, r.result_source,
          r.ignored_progress, r.cancel_sent_at, r.id);
      }
      return;
    }
    const up = this.store.stmt(
      `UPDATE job_executions e SET state = u.state, percent = u.percent, updated_at = u.updated_at, offered_at = u.offered_at,
         finished_at = u.finished_at, error_code = u.error_code, error_message = u.error_message, result_source = u.result_source,
         ignored_progress = u.ignored_progress, cancel_sent_at = u.cancel_sent_at
       FROM unnest(?::bigint[], ?::text[], ?::float8[], ?::bigint[], ?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::text[],
         ?::bigint[], ?::bigint[])
         AS u(id, state, percent, updated_at, offered_at, finished_at, error_code, error_message, result_source, ignored_progress,
           cancel_sent_at)
       WHERE e.id = u.id`,
    );
    for (const c of chunks(rows)) {
      up.run(
        c.map((r) => r.id), c.map((r) => r.state), c.map((r) => r.percent), c.map((r) => r.updated_at), c.map((r) => r.offered_at),
        c.map((r) => r.finished_at), c.map((r) => r.error_code), c.map((r) => r.error_message), c.map((r) => r.result_source),
        c.map((r) => r.ignored_progress), c.map((r) => r.cancel_sent_at),
      );
    }
  }

  /** The job's executions claimed and not yet offered. */
  queuedOfJob(jobId: number): ExecutionRow[] {
    return this.store
      .stmt<ExecutionRow>(`SELECT * FROM job_executions WHERE job_id = ? AND state = 'queued' AND finished_at IS NULL`)
      .all(jobId);
  }

  /** Executions offered (or further) whose deadline passed without a result. */
  overdue(now: number): ExecutionRow[] {
    return this.store
      .stmt<ExecutionRow>(`SELECT * FROM job_executions WHERE finished_at IS NULL AND deadline <= ? AND state != 'queued'`)
      .all(now);
  }

  /** Executions claimed before `claimedBefore` and still queued (see ORPHAN_QUEUED_SQL). */
  orphans(claimedBefore: number): ExecutionRow[] {
    return this.store.stmt<ExecutionRow>(ORPHAN_QUEUED_SQL).all(claimedBefore);
  }

  /** See CLAIM_CANDIDATES_SQL. */
  claimCandidates(jobId: number, now: number, limit: number): ClaimCandidate[] {
    return this.store.stmt<ClaimCandidate>(CLAIM_CANDIDATES_SQL).all(jobId, now, limit);
  }

  /** Records a claim (state `queued`) and returns it. */
  insert(e: NewExecution): ExecutionRow {
    return this.store
      .stmt<ExecutionRow>(
        `INSERT INTO job_executions (uuid, job_id, device_id, packet_id, attempt, state, claimed_at, updated_at,
           deadline, window_start, window_end)
         VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?) RETURNING *`,
      )
      .get(e.uuid, e.jobId, e.deviceId, e.packetId, e.attempt, e.claimedAt, e.claimedAt, e.deadline, e.windowStart, e.windowEnd)!;
  }

  /**
   * New queued executions of one job claimed together (same claim time, deadline and window): one
   * statement for the batch instead of one per device. Returns the rows by device row id.
   */
  insertMany(
    common: Pick<NewExecution, 'jobId' | 'claimedAt' | 'deadline' | 'windowStart' | 'windowEnd'>,
    rows: readonly Pick<NewExecution, 'uuid' | 'deviceId' | 'packetId' | 'attempt'>[],
  ): Map<number, ExecutionRow> {
    const inserted = this.store
      .stmt<ExecutionRow>(
        dialects({
          sqlite: `INSERT INTO job_executions (uuid, job_id, device_id, packet_id, attempt, state, claimed_at, updated_at,
                     deadline, window_start, window_end)
                   SELECT value ->> 0, ?, value ->> 1, value ->> 2, value ->> 3, 'queued', ?, ?, ?, ?, ?
                   FROM json_each(?) ORDER BY key RETURNING *`,
          postgres: `INSERT INTO job_executions (uuid, job_id, device_id, packet_id, attempt, state, claimed_at, updated_at,
                       deadline, window_start, window_end)
                     SELECT r.value ->> 0, CAST(? AS BIGINT), (r.value ->> 1)::BIGINT, (r.value ->> 2)::BIGINT, (r.value ->> 3)::BIGINT,
                       'queued', CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT)
                     FROM json_array_elements(?::json) WITH ORDINALITY AS r(value, key) ORDER BY r.key RETURNING *`,
        }),
      )
      .all(
        common.jobId,
        common.claimedAt,
        common.claimedAt,
        common.deadline,
        common.windowStart,
        common.windowEnd,
        JSON.stringify(rows.map((r) => [r.uuid, r.deviceId, r.packetId, r.attempt])),
      );
    return new Map(inserted.map((e) => [e.device_id, e]));
  }

  /** The offers went out (only those still queued: another process may have recorded one since); one statement for a dispatch's whole batch. */
  markOfferedAll(ids: readonly number[], now: number): void {
    if (ids.length === 0) return;
    this.store
      .stmt(
        dialects({
          sqlite: `UPDATE job_executions SET state = 'offered', offered_at = ?, updated_at = ?
                   WHERE id IN (SELECT value FROM json_each(?)) AND state = 'queued'`,
          postgres: `UPDATE job_executions SET state = 'offered', offered_at = ?, updated_at = ?
                     WHERE id IN (SELECT v::BIGINT FROM json_array_elements_text(?::json) AS t(v)) AND state = 'queued'`,
        }),
      )
      .run(now, now, JSON.stringify(ids));
  }

  /** Deletes a claim whose offer could not be sent; false when it is no longer queued. */
  deleteQueued(id: number): boolean {
    return this.store.stmt(`DELETE FROM job_executions WHERE id = ? AND state = 'queued'`).run(id).changes > 0;
  }

  /** Ends a still-queued claim as `cancelled` by the server; false when it is no longer queued. */
  abandonQueued(id: number, now: number, errorCode: string, errorMessage: string): boolean {
    return (
      this.store
        .stmt(
          `UPDATE job_executions SET state = 'cancelled', finished_at = ?, updated_at = ?, result_source = 'server', error_code = ?,
             error_message = ? WHERE id = ? AND state = 'queued'`,
        )
        .run(now, now, errorCode, errorMessage, id).changes > 0
    );
  }

  /** The id of the device's latest execution in the job. */
  latestId(jobId: number, deviceId: number): number | null {
    return (
      this.store
        .stmt<{ id: number | null }>('SELECT MAX(id) AS id FROM job_executions WHERE job_id = ? AND device_id = ?')
        .get(jobId, deviceId)?.id ?? null
    );
  }

  /** Every unfinished execution of the job is to be cancelled (sent where possible, see unsentCancels). */
  requestCancel(jobId: number): void {
    this.store.stmt('UPDATE job_executions SET cancel_requested = 1 WHERE job_id = ? AND finished_at IS NULL').run(jobId);
  }

  markCancelSent(id: number, now: number): void {
    this.store.stmt('UPDATE job_executions SET cancel_sent_at = ? WHERE id = ?').run(now, id);
  }

  /** The job's executions to be cancelled whose device is connected here and has not been told yet. */
  unsentCancels(jobId: number): ExecutionWithDevice[] {
    return this.store
      .stmt<ExecutionWithDevice>(
        `SELECT e.*, d.uuid AS device_uuid FROM job_executions e
         JOIN job_local_ready r ON r.device_id = e.device_id JOIN devices d ON d.id = e.device_id
         WHERE e.job_id = ? AND e.cancel_requested = 1 AND e.cancel_sent_at IS NULL AND e.finished_at IS NULL
           AND e.state IN ${CANCELLABLE_SQL}`,
      )
      .all(jobId);
  }

  /** Jobs with cancels not yet sent to devices connected here. */
  jobsWithUnsentCancels(): number[] {
    return this.store
      .stmt<{ job_id: number }>(
        `SELECT DISTINCT e.job_id FROM job_executions e JOIN job_local_ready r ON r.device_id = e.device_id
         WHERE e.cancel_requested = 1 AND e.cancel_sent_at IS NULL AND e.finished_at IS NULL`,
      )
      .all()
      .map((r) => r.job_id);
  }

  /** The job's executions in flight (see IN_FLIGHT_SQL). */
  inFlight(jobId: number): number {
    return this.store.stmt<{ n: number }>(IN_FLIGHT_SQL).get(jobId)!.n;
  }

  /** The job's executions claimed after `since` (retries included). */
  claimedSince(jobId: number, since: number): number {
    return this.store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM job_executions WHERE job_id = ? AND claimed_at > ?').get(jobId, since)!.n;
  }

  /** The job's executions finished after `since` (bounded by them: index job_executions_finished). */
  finishedSince(jobId: number, since: number): number {
    return this.store.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM job_executions WHERE job_id = ? AND finished_at > ?').get(jobId, since)!.n;
  }

  /**
   * What a download of the execution may serve while it is not finished: its device and packet. One
   * statement: a download request costs one round trip on PostgreSQL, not two.
   */
  downloadTarget(uuid: string): { deviceUuid: string; packet: PacketRow } | undefined {
    const row = this.store
      .stmt<PacketRow & { device_uuid: string }>(
        `SELECT p.*, d.uuid AS device_uuid FROM job_executions e
         JOIN devices d ON d.id = e.device_id JOIN packets p ON p.id = e.packet_id
         WHERE e.uuid = ? AND e.finished_at IS NULL`,
      )
      .get(uuid);
    if (!row) return undefined;
    const { device_uuid: deviceUuid, ...packet } = row;
    return { deviceUuid, packet };
  }

  /** Per-device results of a job, cursor-paged by device id, with each device's latest execution. */
  deviceResults(jobId: number, afterId: number, limit: number): DeviceResultRow[] {
    return this.store
      .stmt<DeviceResultRow>(
        `SELECT d.id, d.uuid AS device_uuid, d.serial_number, d.name, d.admission, jd.status, jd.result, jd.attempts,
           e.uuid AS exec_uuid, e.state, e.percent, e.error_code, e.error_message, e.cancel_requested, e.updated_at
         FROM job_devices jd JOIN devices d ON d.id = jd.device_id
         LEFT JOIN job_executions e ON e.id = (
           SELECT MAX(id) FROM job_executions WHERE job_id = jd.job_id AND device_id = jd.device_id)
         WHERE jd.job_id = ? AND jd.device_id > ? ORDER BY jd.device_id LIMIT ?`,
      )
      .all(jobId, afterId, limit);
  }
}

/**
 * The devices whose control channel is open in this process and managed: a per-connection TEMP
 * table, so the claim query can join it (each worker process dispatches to its own devices).
 */
export class LocalReadyDevices {
  constructor(private readonly store: Store) {
    store.stmt('CREATE TEMP TABLE IF NOT EXISTS job_local_ready (device_id BIGINT PRIMARY KEY)').run();
  }

  /** Marks the devices ready here (two statements); the row id of each known device by uuid. */
  addMany(deviceUuids: readonly string[]): Map<string, number> {
    if (deviceUuids.length === 0) return new Map();
    const rows = this.store
      .stmt<{ id: number; uuid: string }>(
        dialects({
          sqlite: 'SELECT id, uuid FROM devices WHERE uuid IN (SELECT value FROM json_each(?))',
          postgres: 'SELECT id, uuid FROM devices WHERE uuid = ANY(?::text[])',
        }),
      )
      .all(listParam(this.store, deviceUuids));
    if (rows.length > 0) {
      const ids = rows.map((r) => r.id);
      this.store
        .stmt(
          dialects({
            sqlite: 'INSERT OR IGNORE INTO job_local_ready (device_id) SELECT value FROM json_each(?)',
            postgres: 'INSERT INTO job_local_ready (device_id) SELECT unnest(?::bigint[]) ON CONFLICT DO NOTHING',
          }),
        )
        .run(listParam(this.store, ids));
    }
    return new Map(rows.map((r) => [r.uuid, r.id]));
  }

  /** The device is no longer reachable here (a send to it failed). */
  remove(deviceUuid: string): void {
    this.store.stmt('DELETE FROM job_local_ready WHERE device_id = (SELECT id FROM devices WHERE uuid = ?)').run(deviceUuid);
  }
}
