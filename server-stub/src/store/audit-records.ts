import { dialects, type Store } from './database.js';

export interface AuditRecordRow {
  id: number;
  account_id: number;
  seq: number;
  at: number;
  /** JSON {type, userUuid?, username?, via?}. */
  actor: string;
  action: string;
  resource_kind: string | null;
  resource_uuid: string | null;
  status: number;
  request: string | null;
  before: string | null;
  after: string | null;
  prev_hash: string;
  hash: string;
}

export interface AuditFilter {
  resourceUuid?: string;
  userUuid?: string;
  from?: number;
  to?: number;
}

/**
 * The stored audit records of one account (append-only: triggers of either store refuse UPDATE and DELETE).
 * The hash chain over them is audit/chain.ts's. Every statement carries `account_id = ?`.
 */
export class AccountAuditRecordStore {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  /** The chain head: the newest record's seq and hash (read it under the write lock before appending). */
  head(): { seq: number; hash: string } | undefined {
    return this.store
      .stmt<{ seq: number; hash: string }>(
        'SELECT seq, hash FROM audit_records WHERE account_id = ? ORDER BY seq DESC LIMIT 1',
      )
      .get(this.accountId);
  }

  /** Stores one record of this account; returns its row id. */
  insert(row: Omit<AuditRecordRow, 'id' | 'account_id'>): number {
    return Number(
      this.store
        .stmt<{ id: number }>(
          `INSERT INTO audit_records (account_id, seq, at, actor, action, resource_kind, resource_uuid, status,
             request, before, after, prev_hash, hash)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
        )
        .get(this.accountId, row.seq, row.at, row.actor, row.action, row.resource_kind, row.resource_uuid,
          row.status, row.request, row.before, row.after, row.prev_hash, row.hash)!.id,
    );
  }

  /** Newest first, before the `before` seq. */
  list(opts: { beforeSeq: number; limit: number; filter?: AuditFilter }): AuditRecordRow[] {
    const f = opts.filter ?? {};
    return this.store
      .stmt<AuditRecordRow>(
        dialects({
          sqlite: `SELECT * FROM audit_records
                   WHERE account_id = ? AND seq < ?
                     AND (? IS NULL OR resource_uuid = ?)
                     AND (? IS NULL OR json_extract(actor, '$.userUuid') = ?)
                     AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?)
                   ORDER BY seq DESC LIMIT ?`,
          postgres: `SELECT * FROM audit_records
                     WHERE account_id = ? AND seq < ?
                       AND (? IS NULL OR resource_uuid = ?)
                       AND (? IS NULL OR actor::jsonb->>'userUuid' = ?)
                       AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?)
                     ORDER BY seq DESC LIMIT ?`,
        }),
      )
      .all(
        this.accountId,
        opts.beforeSeq,
        f.resourceUuid ?? null,
        f.resourceUuid ?? null,
        f.userUuid ?? null,
        f.userUuid ?? null,
        f.from ?? null,
        f.from ?? null,
        f.to ?? null,
        f.to ?? null,
        opts.limit,
      );
  }

  /** Every record, oldest first, read lazily (a chain may be long). */
  inSeqOrder(): IterableIterator<AuditRecordRow> {
    return this.store
      .stmt<AuditRecordRow>('SELECT * FROM audit_records WHERE account_id = ? ORDER BY seq')
      .iterate(this.accountId);
  }
}
