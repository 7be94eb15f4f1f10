import { createHash } from 'node:crypto';
import type { Store } from '../store/database.js';

/** The hash a chain starts from (the `prev_hash` of an account's first record). */
export const GENESIS_HASH = '0'.repeat(64);

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

export interface NewAuditRecord {
  at: number;
  actor: { type: 'user' | 'system'; userUuid?: string; username?: string; via?: 'session' | 'api' };
  action: string;
  resourceKind: string | null;
  resourceUuid: string | null;
  status: number;
  request: unknown;
  before: unknown;
  after: unknown;
}

function json(v: unknown): string | null {
  return v === undefined ? null : JSON.stringify(v);
}

/** The hash of one record: SHA-256 over the previous hash and every stored field, in a fixed order. */
export function recordHash(r: Omit<AuditRecordRow, 'id' | 'hash'>): string {
  const fields = [
    r.account_id,
    r.seq,
    r.at,
    r.actor,
    r.action,
    r.resource_kind,
    r.resource_uuid,
    r.status,
    r.request,
    r.before,
    r.after,
  ];
  return createHash('sha256').update(r.prev_hash).update('\n').update(JSON.stringify(fields)).digest('hex');
}

export interface AuditFilter {
  resourceUuid?: string;
  userUuid?: string;
  from?: number;
  to?: number;
}

/**
 * The audit records of one account: append-only (SQLite triggers refuse UPDATE and DELETE) and
 * hash-chained per account (each record's hash covers the previous one), so a record changed or
 * removed behind the server's back breaks the chain (`verify`). Every statement carries
 * `account_id = ?`.
 */
export class AccountAuditRecords {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  /** Appends one record in its own write transaction (the chain head is read under the write lock). */
  append(rec: NewAuditRecord): AuditRecordRow {
    return this.store.write(() => {
      const last = this.store
        .stmt<{ seq: number; hash: string }>(
          'SELECT seq, hash FROM audit_records WHERE account_id = ? ORDER BY seq DESC LIMIT 1',
        )
        .get(this.accountId);
      const row: Omit<AuditRecordRow, 'id' | 'hash'> = {
        account_id: this.accountId,
        seq: (last?.seq ?? 0) + 1,
        at: rec.at,
        actor: JSON.stringify(rec.actor),
        action: rec.action,
        resource_kind: rec.resourceKind,
        resource_uuid: rec.resourceUuid,
        status: rec.status,
        request: json(rec.request),
        before: json(rec.before),
        after: json(rec.after),
        prev_hash: last?.hash ?? GENESIS_HASH,
      };
      const hash = recordHash(row);
      const id = Number(
        this.store
          .stmt(
            `INSERT INTO audit_records (account_id, seq, at, actor, action, resource_kind, resource_uuid, status,
               request, before, after, prev_hash, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(row.account_id, row.seq, row.at, row.actor, row.action, row.resource_kind, row.resource_uuid,
            row.status, row.request, row.before, row.after, row.prev_hash, hash).lastInsertRowid,
      );
      return { ...row, id, hash };
    });
  }

  /** Newest first, before the `before` seq. */
  list(opts: { beforeSeq: number; limit: number; filter?: AuditFilter }): AuditRecordRow[] {
    const f = opts.filter ?? {};
    return this.store
      .stmt<AuditRecordRow>(
        `SELECT * FROM audit_records
         WHERE account_id = ? AND seq < ?
           AND (? IS NULL OR resource_uuid = ?)
           AND (? IS NULL OR json_extract(actor, '$.userUuid') = ?)
           AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?)
         ORDER BY seq DESC LIMIT ?`,
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

  /** Recomputes the whole chain: the first seq whose hash or link does not match, if any. */
  verify(): { ok: boolean; records: number; brokenAtSeq: number | null } {
    let prev = GENESIS_HASH;
    let expectedSeq = 1;
    let records = 0;
    for (const r of this.store
      .stmt<AuditRecordRow>('SELECT * FROM audit_records WHERE account_id = ? ORDER BY seq')
      .iterate(this.accountId)) {
      records++;
      const { id: _id, hash, ...rest } = r;
      if (r.seq !== expectedSeq || r.prev_hash !== prev || recordHash(rest) !== hash) {
        return { ok: false, records, brokenAtSeq: r.seq };
      }
      prev = hash;
      expectedSeq++;
    }
    return { ok: true, records, brokenAtSeq: null };
  }
}
