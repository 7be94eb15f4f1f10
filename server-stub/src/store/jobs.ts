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
}

/** Jobs of one account. Every statement carries `account_id = ?`. */
export class AccountJobs {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  byUuid(uuid: string): JobRow | undefined {
    return this.store.stmt<JobRow>('SELECT * FROM jobs WHERE account_id = ? AND uuid = ?').get(this.accountId, uuid);
  }

  list(opts: { afterId: number; limit: number; state?: JobState }): JobRow[] {
    return this.store
      .stmt<JobRow>(
        `SELECT * FROM jobs WHERE account_id = ? AND id > ? AND (? IS NULL OR state = ?) ORDER BY id LIMIT ?`,
      )
      .all(this.accountId, opts.afterId, opts.state ?? null, opts.state ?? null, opts.limit);
  }
}

export function jobById(store: Store, id: number): JobRow | undefined {
  return store.stmt<JobRow>('SELECT * FROM jobs WHERE id = ?').get(id);
}
