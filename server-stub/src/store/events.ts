import { dialects, type Store } from './database.js';

/** Rows per multi-row statement on PostgreSQL: one round trip each, well below its 65,535 parameters. */
export const BULK_CHUNK_ROWS = 1000;

/** `rows` in slices of at most BULK_CHUNK_ROWS, in order: one multi-row statement each. */
export function* chunks<T>(rows: readonly T[]): Generator<T[]> {
  for (let i = 0; i < rows.length; i += BULK_CHUNK_ROWS) yield rows.slice(i, i + BULK_CHUNK_ROWS);
}

/** An event to record; with a `dedupeKey` it is recorded once however often it is offered. */
export interface NewAccountEvent {
  readonly type: string;
  readonly subject?: string | null;
  readonly data?: Record<string, unknown>;
  readonly at: number;
  readonly dedupeKey?: string;
}

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
  record(e: NewAccountEvent): boolean {
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

  /**
   * Records many events in their order (ids ascend as given) and answers how many were new (the
   * others' dedupe keys were recorded before, or earlier in `events`). On PostgreSQL one multi-row
   * statement per BULK_CHUNK_ROWS events instead of one round trip each (a licence sweep offers
   * every licence's due events every time); on SQLite the prepared single-row insert, which costs
   * microseconds.
   */
  recordMany(events: readonly NewAccountEvent[]): number {
    return recordAccountEvents(this.store, events.map((e) => ({ ...e, accountId: this.accountId })));
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

/**
 * Records events of any accounts in their order (ids ascend as given) and answers how many were
 * new (see `AccountEvents.recordMany`). On PostgreSQL one multi-row statement per BULK_CHUNK_ROWS
 * events (a tick of device events from many routers is one round trip, not one each); on SQLite
 * the prepared single-row insert, which costs microseconds.
 */
export function recordAccountEvents(store: Store, events: readonly (NewAccountEvent & { readonly accountId: number })[]): number {
  if (store.dialect !== 'postgres') {
    let n = 0;
    for (const e of events) if (new AccountEvents(store, e.accountId).record(e)) n++;
    return n;
  }
  const insert = store.stmt(
    `INSERT INTO account_events (account_id, type, subject, dedupe_key, data, at)
     SELECT e.account_id, e.type, e.subject, e.dedupe_key, e.data, e.at
     FROM unnest(?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[])
       WITH ORDINALITY AS e(account_id, type, subject, dedupe_key, data, at, n)
     ORDER BY e.n
     ON CONFLICT DO NOTHING`,
  );
  let n = 0;
  for (const chunk of chunks(events)) {
    n += insert.run(
      chunk.map((e) => e.accountId),
      chunk.map((e) => e.type),
      chunk.map((e) => e.subject ?? null),
      chunk.map((e) => e.dedupeKey ?? null),
      chunk.map((e) => JSON.stringify(e.data ?? {})),
      chunk.map((e) => e.at),
    ).changes;
  }
  return n;
}
