import type { Store } from './database.js';

export type TemplateKind = 'ascii-configuration' | 'configuration-profile' | 'container-configuration';

export interface TemplateRow {
  id: number;
  uuid: string;
  name: string;
  kind: TemplateKind;
  file_name: string;
  description: string;
  body: string;
  created_at: number;
  updated_at: number | null;
}

export interface TemplateFields {
  name: string;
  kind: TemplateKind;
  fileName: string;
  description: string;
  body: string;
}

const COLS = 'id, uuid, name, kind, file_name, description, body, created_at, updated_at';

/** Configuration templates of one account. Every statement carries `account_id = ?`. */
export class AccountTemplateStore {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  byUuid(uuid: string): TemplateRow | undefined {
    return this.store
      .stmt<TemplateRow>(`SELECT ${COLS} FROM configuration_templates WHERE account_id = ? AND uuid = ?`)
      .get(this.accountId, uuid);
  }

  list(opts: { afterId: number; limit: number }): TemplateRow[] {
    return this.store
      .stmt<TemplateRow>(`SELECT ${COLS} FROM configuration_templates WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?`)
      .all(this.accountId, opts.afterId, opts.limit);
  }

  insert(uuid: string, t: TemplateFields, now: number): void {
    this.store
      .stmt(
        `INSERT INTO configuration_templates (uuid, account_id, name, kind, file_name, description, body, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(uuid, this.accountId, t.name, t.kind, t.fileName, t.description, t.body, now, now);
  }

  update(id: number, t: TemplateFields, now: number): void {
    this.store
      .stmt(
        `UPDATE configuration_templates SET name = ?, kind = ?, file_name = ?, description = ?, body = ?, updated_at = ?
         WHERE id = ? AND account_id = ?`,
      )
      .run(t.name, t.kind, t.fileName, t.description, t.body, now, id, this.accountId);
  }

  delete(id: number): boolean {
    return this.store.stmt('DELETE FROM configuration_templates WHERE id = ? AND account_id = ?').run(id, this.accountId).changes > 0;
  }

  /** Template values of one group of this account (`{}` when none are set). */
  groupValues(groupId: number): Record<string, string> {
    const row = this.store
      .stmt<{ vals: string }>('SELECT vals FROM group_template_values WHERE group_id = ? AND account_id = ?')
      .get(groupId, this.accountId);
    return row ? (JSON.parse(row.vals) as Record<string, string>) : {};
  }

  /** The name of group `groupId` of this account (what templates call `group.name`). */
  groupName(groupId: number): string | undefined {
    return this.store
      .stmt<{ name: string }>('SELECT name FROM device_groups WHERE id = ? AND account_id = ?')
      .get(groupId, this.accountId)?.name;
  }

  /** The uuid of device `deviceId` of this account. */
  deviceUuid(deviceId: number): string | undefined {
    return this.store
      .stmt<{ uuid: string }>('SELECT uuid FROM devices WHERE id = ? AND account_id = ?')
      .get(deviceId, this.accountId)?.uuid;
  }

  setGroupValues(groupId: number, values: Record<string, string>, now: number): void {
    this.store
      .stmt(
        `INSERT INTO group_template_values (group_id, account_id, vals, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (group_id) DO UPDATE SET vals = excluded.vals, updated_at = excluded.updated_at
         WHERE group_template_values.account_id = excluded.account_id`,
      )
      .run(groupId, this.accountId, JSON.stringify(values), now);
  }
}

/** The template snapshot a template job renders (taken when the job is created). */
export interface TemplateJobRow {
  job_id: number;
  template_uuid: string;
  name: string;
  kind: TemplateKind;
  file_name: string;
  body: string;
}

export interface TemplateRenderRow {
  job_id: number;
  device_id: number;
  packet_id: number | null;
  error_code: string | null;
  error_message: string | null;
  rendered_at: number;
}

/** A pending device of a running template job that has no render yet. */
export interface UnrenderedDevice {
  job_id: number;
  device_id: number;
  account_id: number;
}

/**
 * The template side of jobs: the template each template job snapshots, and what was rendered for
 * each of its devices. Keyed by job row id (the job row carries the account), so the dispatcher's
 * claim, which crosses accounts, can ask.
 */
export class TemplateJobStore {
  constructor(private readonly store: Store) {}

  /** Snapshots template `t` for job `jobId` (inside the job-creation transaction). */
  attach(jobId: number, t: TemplateRow): void {
    this.store
      .stmt('INSERT INTO template_jobs (job_id, template_uuid, name, kind, file_name, body) VALUES (?, ?, ?, ?, ?, ?)')
      .run(jobId, t.uuid, t.name, t.kind, t.file_name, t.body);
  }

  /** The template job `jobId` renders (undefined for other jobs). */
  byJob(jobId: number): TemplateJobRow | undefined {
    return this.store.stmt<TemplateJobRow>('SELECT * FROM template_jobs WHERE job_id = ?').get(jobId);
  }

  /** Whether any template job is running (what the renders ahead of a claim look at first). */
  anyRunning(): boolean {
    return (
      this.store
        .stmt(`SELECT 1 FROM template_jobs tj JOIN jobs j ON j.id = tj.job_id WHERE j.state = 'running' LIMIT 1`)
        .get() !== undefined
    );
  }

  /** What was rendered for (job, device), if anything. */
  render(jobId: number, deviceId: number): TemplateRenderRow | undefined {
    return this.store
      .stmt<TemplateRenderRow>('SELECT * FROM template_renders WHERE job_id = ? AND device_id = ?')
      .get(jobId, deviceId);
  }

  /** Records a render of (job, device): its packet, or why it failed. Replaces an earlier one. */
  recordRender(
    jobId: number,
    deviceId: number,
    result: { packetId: number | null; error: { code: string; message: string } | null },
    now: number,
  ): void {
    this.store
      .stmt(
        `INSERT INTO template_renders (job_id, device_id, packet_id, error_code, error_message, rendered_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (job_id, device_id) DO UPDATE SET packet_id = excluded.packet_id, error_code = excluded.error_code,
           error_message = excluded.error_message, rendered_at = excluded.rendered_at`,
      )
      .run(jobId, deviceId, result.packetId, result.error?.code ?? null, result.error?.message ?? null, now);
  }

  forgetRender(jobId: number, deviceId: number): void {
    this.store.stmt('DELETE FROM template_renders WHERE job_id = ? AND device_id = ?').run(jobId, deviceId);
  }

  /**
   * Pending, managed devices of running template jobs that are ready in this process
   * (`job_local_ready`), due (`next_attempt_at <= now`) and not rendered yet, oldest first.
   */
  unrendered(now: number, limit: number): UnrenderedDevice[] {
    return this.store
      .stmt<UnrenderedDevice>(
        `SELECT jd.job_id, jd.device_id, j.account_id FROM job_devices jd
         JOIN template_jobs tj ON tj.job_id = jd.job_id
         JOIN jobs j ON j.id = jd.job_id
         JOIN job_local_ready r ON r.device_id = jd.device_id
         JOIN devices d ON d.id = jd.device_id
         WHERE j.state = 'running' AND jd.status = 'pending' AND jd.next_attempt_at <= ? AND d.admission = 'managed'
           AND NOT EXISTS (SELECT 1 FROM template_renders tr WHERE tr.job_id = jd.job_id AND tr.device_id = jd.device_id)
         ORDER BY jd.job_id, jd.added_at, jd.device_id LIMIT ?`,
      )
      .all(now, limit);
  }
}
