import type { LeaseFacts, LeaseState } from '../admission/decide.js';
import type { Store } from './database.js';

interface LeaseRow {
  device_id: number;
  state: LeaseState;
  leased_at: number;
  released_at: number | null;
  grace_until: number | null;
}

function toFacts(r: LeaseRow): LeaseFacts {
  return {
    deviceId: r.device_id,
    state: r.state,
    leasedAt: r.leased_at,
    releasedAt: r.released_at,
    graceUntil: r.grace_until,
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
    return this.store
      .stmt<{ device_id: number }>(
        'DELETE FROM leases WHERE account_id = ? AND grace_until IS NOT NULL AND grace_until <= ? RETURNING device_id',
      )
      .all(this.accountId, now)
      .map((r) => r.device_id);
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

  upsert(deviceId: number, state: LeaseState, leasedAt: number): void {
    this.store
      .stmt(
        `INSERT INTO leases (device_id, account_id, state, leased_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, released_at = NULL, grace_until = NULL`,
      )
      .run(deviceId, this.accountId, state, leasedAt);
  }

  setState(deviceId: number, state: LeaseState): void {
    this.store.stmt('UPDATE leases SET state = ? WHERE device_id = ? AND account_id = ?').run(state, deviceId, this.accountId);
  }

  release(deviceId: number, at: number, graceUntil: number): void {
    this.store
      .stmt('UPDATE leases SET released_at = ?, grace_until = ? WHERE device_id = ? AND account_id = ?')
      .run(at, graceUntil, deviceId, this.accountId);
  }

  delete(deviceId: number): void {
    this.store.stmt('DELETE FROM leases WHERE device_id = ? AND account_id = ?').run(deviceId, this.accountId);
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
