import { dialects, type Store } from './database.js';

export interface AccountEventRecord {
  readonly id: number;
  readonly type: string;
  readonly subject: string | null;
  readonly data: Record<string, unknown>;
  readonly at: number;
}

interface EventRow {
  id: number;
  type: string;
  subject: string | null;
  data: string;
  at: number;
}

/** The account's event log (licence notices, admissions changes, ...). */
export class AccountEvents {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  /** Records an event; with a `dedupeKey` the event is recorded once however often this is called. */
  record(e: {
    type: string;
    subject?: string | null;
    data?: Record<string, unknown>;
    at: number;
    dedupeKey?: string;
  }): boolean {
    const result = this.store
      .stmt(
        dialects({
          sqlite: `INSERT OR IGNORE INTO account_events (account_id, type, subject, dedupe_key, data, at)
                   VALUES (?, ?, ?, ?, ?, ?)`,
          postgres: `INSERT INTO account_events (account_id, type, subject, dedupe_key, data, at)
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        }),
      )
      .run(this.accountId, e.type, e.subject ?? null, e.dedupeKey ?? null, JSON.stringify(e.data ?? {}), e.at);
    return result.changes > 0;
  }

  /** Newest first; `before` is the id cursor of the previous page. */
  list(opts: { limit: number; before?: number; type?: string }): AccountEventRecord[] {
    const rows = this.store
      .stmt<EventRow>(
        `SELECT id, type, subject, data, at FROM account_events
         WHERE account_id = ? AND id < ? AND (? IS NULL OR type = ?)
         ORDER BY id DESC LIMIT ?`,
      )
      .all(this.accountId, opts.before ?? Number.MAX_SAFE_INTEGER, opts.type ?? null, opts.type ?? null, opts.limit);
    return rows.map((r) => ({ id: r.id, type: r.type, subject: r.subject, data: JSON.parse(r.data), at: r.at }));
  }
}
