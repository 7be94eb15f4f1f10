import type { Store } from './database.js';

export interface TemplateRow {
  id: number;
  uuid: string;
  name: string;
  body: string;
  created_at: number;
}

export interface CertificateRow {
  id: number;
  uuid: string;
  name: string;
  kind: 'certificate' | 'ca';
  pem: string;
  created_at: number;
}

/** Configuration templates of one account (a Basic/Pro feature). */
export class AccountTemplates {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  list(opts: { afterId: number; limit: number }): TemplateRow[] {
    return this.store
      .stmt<TemplateRow>(
        'SELECT id, uuid, name, body, created_at FROM configuration_templates WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?',
      )
      .all(this.accountId, opts.afterId, opts.limit);
  }

  byUuid(uuid: string): TemplateRow | undefined {
    return this.store
      .stmt<TemplateRow>('SELECT id, uuid, name, body, created_at FROM configuration_templates WHERE account_id = ? AND uuid = ?')
      .get(this.accountId, uuid);
  }

  insert(t: { uuid: string; name: string; body: string }, now: number): void {
    this.store
      .stmt('INSERT INTO configuration_templates (uuid, account_id, name, body, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(t.uuid, this.accountId, t.name, t.body, now);
  }

  delete(id: number): boolean {
    return this.store.stmt('DELETE FROM configuration_templates WHERE id = ? AND account_id = ?').run(id, this.accountId).changes > 0;
  }
}

/** Certificate store of one account (a Basic/Pro feature). Only certificates, never private keys. */
export class AccountCertificates {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  list(opts: { afterId: number; limit: number }): CertificateRow[] {
    return this.store
      .stmt<CertificateRow>(
        'SELECT id, uuid, name, kind, pem, created_at FROM certificates WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?',
      )
      .all(this.accountId, opts.afterId, opts.limit);
  }

  byUuid(uuid: string): CertificateRow | undefined {
    return this.store
      .stmt<CertificateRow>('SELECT id, uuid, name, kind, pem, created_at FROM certificates WHERE account_id = ? AND uuid = ?')
      .get(this.accountId, uuid);
  }

  insert(c: { uuid: string; name: string; kind: 'certificate' | 'ca'; pem: string }, now: number): void {
    this.store
      .stmt('INSERT INTO certificates (uuid, account_id, name, kind, pem, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(c.uuid, this.accountId, c.name, c.kind, c.pem, now);
  }

  delete(id: number): boolean {
    return this.store.stmt('DELETE FROM certificates WHERE id = ? AND account_id = ?').run(id, this.accountId).changes > 0;
  }
}

export interface AuditRow {
  id: number;
  user_uuid: string | null;
  action: string;
  status: number;
  at: number;
}

/** Audit log of one account: every changing API call, who made it and how it ended. */
export class AccountAudit {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  record(e: { userUuid: string | null; action: string; status: number; at: number }): void {
    this.store
      .stmt('INSERT INTO audit_log (account_id, user_uuid, action, status, at) VALUES (?, ?, ?, ?, ?)')
      .run(this.accountId, e.userUuid, e.action, e.status, e.at);
  }

  list(opts: { before: number; limit: number }): AuditRow[] {
    return this.store
      .stmt<AuditRow>(
        'SELECT id, user_uuid, action, status, at FROM audit_log WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?',
      )
      .all(this.accountId, opts.before, opts.limit);
  }
}
