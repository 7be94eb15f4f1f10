import type { LeaseFacts, LeaseState } from '../admission/decide.js';
import { DEFAULT_REBOOT_TIMEOUT_SEC } from '../jobs/options.js';
import type { Store } from './database.js';
import { chunks } from './events.js';

interface LeaseRow {
  device_id: number;
  state: LeaseState;
  leased_at: number;
  released_at: number | null;
  grace_until: number | null;
  restart_hold: number | null;
  instance_id?: string | null;
}

function toFacts(r: LeaseRow): LeaseFacts {
  return {
    deviceId: r.device_id,
    state: r.state,
    leasedAt: r.leased_at,
    releasedAt: r.released_at,
    graceUntil: r.grace_until,
    held: r.restart_hold !== null,
    instanceId: r.instance_id ?? null,
  };
}

/** Licence leases of one account (see admission/decide.ts for what a lease is). */
export class AccountLeases {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  all(): LeaseFacts[] {
    return this.store
      .stmt<LeaseRow>('SELECT * FROM leases WHERE account_id = ?')
      .all(this.accountId)
      .map(toFacts);
  }

  /** Drops leases whose grace period ended; returns the devices concerned. */
  dropExpiredGrace(now: number): number[] {
    const ids = this.store
      .stmt<{ device_id: number }>(
        'DELETE FROM leases WHERE account_id = ? AND grace_until IS NOT NULL AND grace_until <= ? RETURNING device_id',
      )
      .all(this.accountId, now)
      .map((r) => r.device_id);
    markLeasesEnded(this.store, ids, now);
    return ids;
  }

  /** Managed leases of the account: one row of `lease_counts` (kept by triggers), not a scan of every lease. */
  managedCount(): number {
    return (
      this.store
        .stmt<{ n: number }>('SELECT n FROM lease_counts WHERE account_id = ? AND state = \'managed\'')
        .get(this.accountId)?.n ?? 0
    );
  }

  unmanagedWaiting(): boolean {
    return (
      this.store
        .stmt('SELECT 1 FROM leases WHERE account_id = ? AND state = \'unmanaged\' LIMIT 1')
        .get(this.accountId) !== undefined
    );
  }

  /** `instanceId`: the server process that admitted the device (null: one process, nobody to tell apart). */
  upsert(deviceId: number, state: LeaseState, leasedAt: number, instanceId: string | null = null): void {
    this.store
      .stmt(
        `INSERT INTO leases (device_id, account_id, state, leased_at, instance_id) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, released_at = NULL, grace_until = NULL, restart_hold = NULL,
           instance_id = excluded.instance_id`,
      )
      .run(deviceId, this.accountId, state, leasedAt, instanceId);
  }

  setState(deviceId: number, state: LeaseState): void {
    this.store.stmt('UPDATE leases SET state = ? WHERE device_id = ? AND account_id = ?').run(state, deviceId, this.accountId);
  }

  /** Ends the device's lease at `at` (its device then shows no admission, see `markLeasesEnded`). */
  delete(deviceId: number, at: number): void {
    this.store.stmt('DELETE FROM leases WHERE device_id = ? AND account_id = ?').run(deviceId, this.accountId);
    markLeasesEnded(this.store, [deviceId], at);
  }
}

/** Server-wide counts for the metrics: seats held, connected devices beyond limits, rejected devices. */
export function admissionCounts(store: Store): { managed: number; unmanaged: number; rejected: number } {
  return store
    .stmt<{ managed: number; unmanaged: number; rejected: number }>(
      `SELECT (SELECT COUNT(*) FROM leases WHERE state = 'managed') AS managed,
              (SELECT COUNT(*) FROM leases WHERE state = 'unmanaged') AS unmanaged,
              (SELECT COUNT(*) FROM devices WHERE admission = 'rejected') AS rejected`,
    )
    .get()!;
}

/**
 * The devices whose lease ended show no admission (null) with the reason `lease-ended`, instead of
 * the `managed` or `unmanaged` of a seat they no longer hold. A device whose admission is something
 * else (rejected, or re-admitted in the same transaction) keeps it.
 */
export function markLeasesEnded(store: Store, deviceIds: readonly number[], at: number): void {
  markLeasesEndedAt(store, deviceIds.map((deviceId) => ({ deviceId, at })));
}

/** `markLeasesEnded` with a time per device: on PostgreSQL one statement per BULK_CHUNK_ROWS devices. */
export function markLeasesEndedAt(store: Store, ended: ReadonlyArray<{ deviceId: number; at: number }>): void {
  if (ended.length === 0) return;
  if (store.dialect !== 'postgres') {
    const update = store.stmt(
      `UPDATE devices SET admission = NULL, admission_reason = 'lease-ended', admission_at = ?
       WHERE id = ? AND admission IN ('managed', 'unmanaged')`,
    );
    for (const e of ended) update.run(e.at, e.deviceId);
    return;
  }
  const update = store.stmt(
    `UPDATE devices SET admission = NULL, admission_reason = 'lease-ended', admission_at = u.at
     FROM unnest(?::bigint[], ?::bigint[]) AS u(id, at)
     WHERE devices.id = u.id AND devices.admission IN ('managed', 'unmanaged')`,
  );
  for (const c of chunks(ended)) {
    update.run(c.map((e) => e.deviceId), c.map((e) => e.at));
  }
}

/** A lease with the account it belongs to, as the set-based reads return it. */
export interface AccountLease extends LeaseFacts {
  readonly accountId: number;
}

function toAccountLease(r: LeaseRow & { account_id: number }): AccountLease {
  return { ...toFacts(r), accountId: r.account_id };
}

/** What admission needs of one account before it decides a batch of hellos (see `admissionSummaries`). */
export interface AdmissionSummary {
  readonly accountId: number;
  /** The account's licence version (store/licences.ts `version`). */
  readonly licenceVersion: number;
  /** Managed leases (`lease_counts`). */
  readonly managed: number;
  /** Whether a connected device waits without a seat (an unmanaged lease). */
  readonly unmanagedWaiting: boolean;
  /** The earliest grace end after `after` among the account's leases, those of `exceptDevices` left out. */
  readonly nextGraceEndAfter: number | null;
}

/**
 * For each account: its licence version, managed count, whether an unmanaged device waits and the
 * earliest grace end after `after` (leaving out the leases of `exceptDevices`, which the caller
 * reads whole). On PostgreSQL one statement for all accounts; on SQLite one prepared read each.
 */
export function admissionSummaries(
  store: Store,
  accountIds: readonly number[],
  after: number,
  exceptDevices: readonly number[],
): AdmissionSummary[] {
  if (accountIds.length === 0) return [];
  const columns = (account: string, except: string) => `
      COALESCE((SELECT v.version FROM licence_versions v WHERE v.account_id = ${account}), 0) AS licence_version,
      COALESCE((SELECT c.n FROM lease_counts c WHERE c.account_id = ${account} AND c.state = 'managed'), 0) AS managed,
      CASE WHEN EXISTS (SELECT 1 FROM leases l WHERE l.account_id = ${account} AND l.state = 'unmanaged') THEN 1 ELSE 0 END AS unmanaged_waiting,
      (SELECT MIN(l.grace_until) FROM leases l
       WHERE l.account_id = ${account} AND l.grace_until IS NOT NULL AND l.grace_until > ? AND ${except}) AS next_grace`;
  type Row = { account_id: number; licence_version: number; managed: number; unmanaged_waiting: number; next_grace: number | null };
  const toSummary = (r: Row): AdmissionSummary => ({
    accountId: r.account_id,
    licenceVersion: r.licence_version,
    managed: r.managed,
    unmanagedWaiting: r.unmanaged_waiting === 1,
    nextGraceEndAfter: r.next_grace,
  });
  if (store.dialect !== 'postgres') {
    const read = store.stmt<Row>(
      `SELECT a.id AS account_id, ${columns('a.id', 'l.device_id NOT IN (SELECT value FROM json_each(?))')} FROM (SELECT ? AS id) a`,
    );
    const except = JSON.stringify(exceptDevices);
    return accountIds.map((id) => toSummary(read.get(after, except, id)!));
  }
  return store
    .stmt<Row>(`SELECT a.id AS account_id, ${columns('a.id', 'l.device_id <> ALL(?::bigint[])')} FROM unnest(?::bigint[]) AS a(id)`)
    .all(after, exceptDevices, accountIds)
    .map(toSummary);
}

/**
 * The leases of `deviceIds` and, of the accounts `accountIds`, every lease whose grace period ends
 * by `graceBy` (those a batch of hellos up to `graceBy` may drop). On PostgreSQL one statement; on
 * SQLite one prepared read per device and per account.
 */
export function leasesForAdmission(
  store: Store,
  deviceIds: readonly number[],
  accountIds: readonly number[],
  graceBy: number,
): AccountLease[] {
  type Row = LeaseRow & { account_id: number };
  if (store.dialect !== 'postgres') {
    const own = store.stmt<Row>('SELECT * FROM leases WHERE device_id = ?');
    const ending = store.stmt<Row>('SELECT * FROM leases WHERE account_id = ? AND grace_until IS NOT NULL AND grace_until <= ?');
    const rows = new Map<number, Row>();
    for (const id of deviceIds) {
      const r = own.get(id);
      if (r) rows.set(r.device_id, r);
    }
    for (const id of accountIds) for (const r of ending.all(id, graceBy)) rows.set(r.device_id, r);
    return [...rows.values()].map(toAccountLease);
  }
  return store
    .stmt<Row>(
      `SELECT * FROM leases WHERE device_id = ANY(?::bigint[])
       OR (account_id = ANY(?::bigint[]) AND grace_until IS NOT NULL AND grace_until <= ?)`,
    )
    .all(deviceIds, accountIds, graceBy)
    .map(toAccountLease);
}

/** The leases of `deviceIds` (each device has at most one): on PostgreSQL one statement. */
export function leasesOfDevices(store: Store, deviceIds: readonly number[]): AccountLease[] {
  return leasesForAdmission(store, deviceIds, [], 0);
}

/** A lease a batch of hellos takes or reclaims (see `AccountLeases.upsert`). */
export interface LeaseUpsert {
  readonly deviceId: number;
  readonly accountId: number;
  readonly state: LeaseState;
  readonly leasedAt: number;
  readonly instanceId: string | null;
}

/** `AccountLeases.upsert` for many devices (each once): on PostgreSQL one statement per BULK_CHUNK_ROWS. */
export function upsertLeases(store: Store, rows: readonly LeaseUpsert[]): void {
  if (store.dialect !== 'postgres') {
    for (const r of rows) new AccountLeases(store, r.accountId).upsert(r.deviceId, r.state, r.leasedAt, r.instanceId);
    return;
  }
  const upsert = store.stmt(
    `INSERT INTO leases (device_id, account_id, state, leased_at, instance_id)
     SELECT u.device_id, u.account_id, u.state, u.leased_at, u.instance_id
     FROM unnest(?::bigint[], ?::bigint[], ?::text[], ?::bigint[], ?::text[]) AS u(device_id, account_id, state, leased_at, instance_id)
     ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, released_at = NULL, grace_until = NULL, restart_hold = NULL,
       instance_id = excluded.instance_id`,
  );
  for (const c of chunks(rows)) {
    upsert.run(c.map((r) => r.deviceId), c.map((r) => r.accountId), c.map((r) => r.state), c.map((r) => r.leasedAt), c.map((r) => r.instanceId));
  }
}

/** Moves the open leases of these devices to the server process `instanceId` (they reconnected to another host). */
export function setLeaseInstances(store: Store, deviceIds: readonly number[], instanceId: string): void {
  if (deviceIds.length === 0) return;
  if (store.dialect !== 'postgres') {
    const update = store.stmt('UPDATE leases SET instance_id = ? WHERE device_id = ? AND instance_id IS NOT ?');
    for (const id of deviceIds) update.run(instanceId, id, instanceId);
    return;
  }
  const update = store.stmt('UPDATE leases SET instance_id = ? WHERE device_id = ANY(?::bigint[]) AND instance_id IS DISTINCT FROM ?');
  for (const chunk of chunks(deviceIds)) update.run(instanceId, chunk, instanceId);
}

/**
 * Ends the leases of many devices, each at its own time (see `AccountLeases.delete`): on
 * PostgreSQL one delete and one device update per BULK_CHUNK_ROWS devices.
 */
export function deleteLeases(store: Store, ended: ReadonlyArray<{ deviceId: number; at: number }>): void {
  if (ended.length === 0) return;
  if (store.dialect !== 'postgres') {
    const del = store.stmt('DELETE FROM leases WHERE device_id = ?');
    for (const e of ended) del.run(e.deviceId);
  } else {
    const del = store.stmt('DELETE FROM leases WHERE device_id = ANY(?::bigint[])');
    for (const chunk of chunks(ended)) del.run(chunk.map((e) => e.deviceId));
  }
  markLeasesEndedAt(store, ended);
}

/** Releases the leases of many devices at once (a burst of closed connections): each keeps its seat until its own grace end. */
export function releaseLeases(store: Store, rows: ReadonlyArray<{ deviceId: number; at: number; graceUntil: number }>): void {
  if (rows.length === 0) return;
  if (store.dialect !== 'postgres') {
    const update = store.stmt('UPDATE leases SET released_at = ?, grace_until = ? WHERE device_id = ?');
    for (const r of rows) update.run(r.at, r.graceUntil, r.deviceId);
    return;
  }
  const update = store.stmt(
    `UPDATE leases SET released_at = u.at, grace_until = u.grace_until
     FROM unnest(?::bigint[], ?::bigint[], ?::bigint[]) AS u(device_id, at, grace_until)
     WHERE leases.device_id = u.device_id`,
  );
  for (const c of chunks(rows)) {
    update.run(c.map((r) => r.deviceId), c.map((r) => r.at), c.map((r) => r.graceUntil));
  }
}

/**
 * The devices with an update rebooting them and, for each, the longest `rollout.rebootTimeoutSec`
 * (s) of its executions past the commit point and not finished (installing, rebooting into new
 * firmware, verifying it): while an update reboots a device, its disconnect is part of the update,
 * not the device going away. On SQLite one prepared read per device, on PostgreSQL one statement
 * per BULK_CHUNK_ROWS devices.
 */
export function rebootTimeoutsSec(store: Store, deviceIds: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  if (deviceIds.length === 0) return out;
  const within = (devices: string) => `FROM job_executions e JOIN jobs j ON j.id = e.job_id
     WHERE ${devices} AND e.state IN ('installing', 'rebooting', 'verifying') AND e.finished_at IS NULL`;
  if (store.dialect !== 'postgres') {
    const read = store.stmt<{ t: number | null }>(
      `SELECT MAX(COALESCE(json_extract(j.options, '$.rebootTimeoutSec'), ${DEFAULT_REBOOT_TIMEOUT_SEC})) AS t ${within('e.device_id = ?')}`,
    );
    for (const id of deviceIds) {
      const t = read.get(id)?.t ?? null;
      if (t !== null) out.set(id, t);
    }
    return out;
  }
  const read = store.stmt<{ device_id: number; t: number | null }>(
    `SELECT e.device_id, MAX(COALESCE((j.options::jsonb->>'rebootTimeoutSec')::DOUBLE PRECISION, ${DEFAULT_REBOOT_TIMEOUT_SEC})) AS t
     ${within('e.device_id = ANY(?::bigint[])')} GROUP BY e.device_id`,
  );
  for (const chunk of chunks(deviceIds)) {
    for (const r of read.all(chunk)) if (r.t !== null) out.set(r.device_id, r.t);
  }
  return out;
}
