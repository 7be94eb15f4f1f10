import type { LeaseFacts, LeaseState } from '../admission/decide.js';
import { DEFAULT_REBOOT_TIMEOUT_SEC } from '../jobs/options.js';
import { dialects, type Store } from './database.js';

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

  own(deviceId: number): LeaseFacts | undefined {
    const row = this.store
      .stmt<LeaseRow>('SELECT * FROM leases WHERE device_id = ? AND account_id = ?')
      .get(deviceId, this.accountId);
    return row && toFacts(row);
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

  nextGraceEnd(): number | null {
    return (
      this.store
        .stmt<{ t: number | null }>(
          'SELECT MIN(grace_until) AS t FROM leases WHERE account_id = ? AND grace_until IS NOT NULL',
        )
        .get(this.accountId)?.t ?? null
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

  /** The server process now serving the device's open lease (it reconnected to another host). */
  setInstance(deviceId: number, instanceId: string): void {
    this.store
      .stmt('UPDATE leases SET instance_id = ? WHERE device_id = ? AND account_id = ? AND instance_id IS NOT ?')
      .run(instanceId, deviceId, this.accountId, instanceId);
  }

  setState(deviceId: number, state: LeaseState): void {
    this.store.stmt('UPDATE leases SET state = ? WHERE device_id = ? AND account_id = ?').run(state, deviceId, this.accountId);
  }

  release(deviceId: number, at: number, graceUntil: number): void {
    this.store
      .stmt('UPDATE leases SET released_at = ?, grace_until = ? WHERE device_id = ? AND account_id = ?')
      .run(at, graceUntil, deviceId, this.accountId);
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
  const update = store.stmt(
    `UPDATE devices SET admission = NULL, admission_reason = 'lease-ended', admission_at = ?
     WHERE id = ? AND admission IN ('managed', 'unmanaged')`,
  );
  for (const id of deviceIds) update.run(at, id);
}

/**
 * The longest `rollout.rebootTimeoutSec` (s) of the device's executions past the commit point and
 * not finished (installing, rebooting into new firmware, verifying it), or null if none: while an
 * update reboots the device, its disconnect is part of the update, not the device going away.
 */
export function rebootTimeoutSec(store: Store, deviceId: number): number | null {
  return (
    store
      .stmt<{ t: number | null }>(
        dialects({
          sqlite: `SELECT MAX(COALESCE(json_extract(j.options, '$.rebootTimeoutSec'), ${DEFAULT_REBOOT_TIMEOUT_SEC})) AS t
                   FROM job_executions e JOIN jobs j ON j.id = e.job_id
                   WHERE e.device_id = ? AND e.state IN ('installing', 'rebooting', 'verifying') AND e.finished_at IS NULL`,
          postgres: `SELECT MAX(COALESCE((j.options::jsonb->>'rebootTimeoutSec')::DOUBLE PRECISION, ${DEFAULT_REBOOT_TIMEOUT_SEC})) AS t
                     FROM job_executions e JOIN jobs j ON j.id = e.job_id
                     WHERE e.device_id = ? AND e.state IN ('installing', 'rebooting', 'verifying') AND e.finished_at IS NULL`,
        }),
      )
      .get(deviceId)?.t ?? null
  );
}
