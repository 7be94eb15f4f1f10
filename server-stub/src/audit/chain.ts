import { createHash } from 'node:crypto';
import { AccountAuditRecordStore, type AuditFilter, type AuditRecordRow } from '../store/audit-records.js';
import type { Store } from '../store/database.js';

export type { AuditFilter, AuditRecordRow } from '../store/audit-records.js';

/** The hash a chain starts from (the `prev_hash` of an account's first record). */
export const GENESIS_HASH = '0'.repeat(64);

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

/**
 * The audit records of one account: append-only (triggers of either store refuse UPDATE and DELETE) and
 * hash-chained per account (each record's hash covers the previous one), so a record changed or
 * removed behind the server's back breaks the chain (`verify`). The rows are read and written by
 * store/audit-records.ts.
 */
export class AccountAuditRecords {
  readonly #records: AccountAuditRecordStore;

  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {
    this.#records = new AccountAuditRecordStore(store, accountId);
  }

  /** Appends one record in its own write transaction (the chain head is read under the write lock). */
  append(rec: NewAuditRecord): AuditRecordRow {
    return this.store.write(() => {
      const last = this.#records.head();
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
      const id = this.#records.insert({ ...row, hash });
      return { ...row, id, hash };
    });
  }

  /** Newest first, before the `before` seq. */
  list(opts: { beforeSeq: number; limit: number; filter?: AuditFilter }): AuditRecordRow[] {
    return this.#records.list(opts);
  }

  /** Recomputes the whole chain: the first seq whose hash or link does not match, if any. */
  verify(): { ok: boolean; records: number; brokenAtSeq: number | null } {
    let prev = GENESIS_HASH;
    let expectedSeq = 1;
    let records = 0;
    for (const r of this.#records.inSeqOrder()) {
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
