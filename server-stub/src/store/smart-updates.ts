import { dialects, type Store } from './database.js';

/** A device as Smart Updates sees it: what the router reported, else what was typed in. */
export interface SmartUpdateCandidate {
  id: number;
  uuid: string;
  model: string;
  firmware: string;
  /** The trust anchors' digest the router reported. */
  anchors: string | null;
}

/** The reservation of (account, model, version) and the state of its job (null job: being created). */
export interface SmartUpdateReservation {
  job_id: number | null;
  state: string | null;
  uuid: string | null;
}

/** The last Smart Update attempt of a device for one (model, version). */
export interface SmartUpdateAttempt {
  device_state: string | null;
  attempted_at: number;
}

/**
 * Smart Updates bookkeeping of one account: which (model, version) has a system job, and which
 * devices were last offered it when. Every statement carries `account_id = ?`. The devices of the
 * job itself are the job's (`JobDevices`, by the job id read from this account's reservation).
 */
export class AccountSmartUpdates {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  /** Devices with a known model and firmware (reported, else typed in). */
  candidates(): SmartUpdateCandidate[] {
    return this.store
      .stmt<SmartUpdateCandidate>(
        `SELECT id, uuid, COALESCE(reported_model, model) AS model, COALESCE(reported_firmware, firmware) AS firmware,
           reported_anchors AS anchors
         FROM devices WHERE account_id = ? AND COALESCE(reported_model, model) IS NOT NULL
           AND COALESCE(reported_firmware, firmware) IS NOT NULL`,
      )
      .all(this.accountId);
  }

  /** The reservation of (model, version) with its job's state, if there is one. */
  reservation(model: string, version: string): SmartUpdateReservation | undefined {
    return this.store
      .stmt<SmartUpdateReservation>(
        `SELECT s.job_id, j.state, j.uuid FROM smart_update_jobs s LEFT JOIN jobs j ON j.id = s.job_id
         WHERE s.account_id = ? AND s.model = ? AND s.version = ?`,
      )
      .get(this.accountId, model, version);
  }

  /** Reserves (model, version) before its job exists, so that no other process creates it too. */
  reserve(model: string, version: string, now: number): void {
    this.store
      .stmt('INSERT INTO smart_update_jobs (account_id, model, version, job_id, created_at) VALUES (?, ?, ?, NULL, ?)')
      .run(this.accountId, model, version, now);
  }

  /** Binds the reservation to the job created for it (null: a new job is about to be created). */
  setJob(model: string, version: string, jobId: number | null): void {
    this.store
      .stmt('UPDATE smart_update_jobs SET job_id = ? WHERE account_id = ? AND model = ? AND version = ?')
      .run(jobId, this.accountId, model, version);
  }

  /** Drops a reservation whose job could not be created. */
  dropReservation(model: string, version: string): void {
    this.store
      .stmt('DELETE FROM smart_update_jobs WHERE account_id = ? AND model = ? AND version = ? AND job_id IS NULL')
      .run(this.accountId, model, version);
  }

  attempt(model: string, version: string, deviceId: number): SmartUpdateAttempt | undefined {
    return this.store
      .stmt<SmartUpdateAttempt>(
        'SELECT device_state, attempted_at FROM smart_update_devices WHERE account_id = ? AND model = ? AND version = ? AND device_id = ?',
      )
      .get(this.accountId, model, version, deviceId);
  }

  recordAttempt(model: string, version: string, deviceId: number, deviceState: string, now: number): void {
    this.store
      .stmt(
        `INSERT INTO smart_update_devices (account_id, model, version, device_id, device_state, attempted_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (account_id, model, version, device_id) DO UPDATE SET device_state = excluded.device_state, attempted_at = excluded.attempted_at`,
      )
      .run(this.accountId, model, version, deviceId, deviceState, now);
  }

  /** Forgets the attempt recorded at `at` (its job could not be created), so the next check tries again. */
  forgetAttempt(model: string, version: string, deviceId: number, at: number): void {
    this.store
      .stmt(
        'DELETE FROM smart_update_devices WHERE account_id = ? AND model = ? AND version = ? AND device_id = ? AND attempted_at = ?',
      )
      .run(this.accountId, model, version, deviceId, at);
  }
}

/** Accounts that have Smart Updates switched on. */
export function accountsWithSmartUpdates(store: Store): number[] {
  return store
    .stmt<{ id: number }>(
      dialects({
        sqlite: `SELECT id FROM accounts WHERE json_extract(settings, '$.smartUpdates.enabled') = 1`,
        postgres: `SELECT id FROM accounts WHERE settings::jsonb #> '{smartUpdates,enabled}' IN ('true', '1')`,
      }),
    )
    .all()
    .map((r) => r.id);
}
