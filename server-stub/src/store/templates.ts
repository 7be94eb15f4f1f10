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
