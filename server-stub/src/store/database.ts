import { AppError } from '../errors.js';
import { PostgresStore } from './postgres/store.js';
import { openDatabase, SqliteStore, STORE_FILE } from './sqlite-store.js';

export { openDatabase, SqliteStore, STORE_FILE };

/** What a write statement did. `lastInsertRowid` is SQLite's; portable inserts say `RETURNING id`. */
export interface RunResult {
  readonly changes: number;
  readonly lastInsertRowid: number | bigint;
}

/**
 * A prepared statement: parameters are bound by position (`?`), never spliced into the text. Errors
 * are the store's own (`errors.ts`): a unique violation, a full disk or a lock timeout never
 * reaches a caller as a driver's error, on either store.
 */
export interface Statement<R = unknown> {
  get(...params: unknown[]): R | undefined;
  all(...params: unknown[]): R[];
  run(...params: unknown[]): RunResult;
  iterate(...params: unknown[]): IterableIterator<R>;
}

/**
 * A statement written once for both stores, or once per dialect where they differ (`INSERT OR
 * IGNORE` against `ON CONFLICT DO NOTHING`, `json_extract` against `->>`, …). Portable text is
 * written in SQLite's form; the PostgreSQL store translates `?` placeholders and the null-safe
 * `IS` / `IS NOT` mechanically (store/postgres/translate.ts), nothing else.
 */
export type Sql = string | DialectSql;

export interface DialectSql {
  readonly sqlite: string;
  readonly postgres: string;
}

/** The same statement in each dialect, side by side where it is used. */
export function dialects(forms: DialectSql): DialectSql {
  return forms;
}

export type StoreDialect = 'sqlite' | 'postgres';

/**
 * A list as one statement parameter: a PostgreSQL array (`= ANY(?::bigint[])`, `unnest(?)`), or
 * on SQLite its JSON text (`IN (SELECT value FROM json_each(?))`).
 */
export function listParam(store: Pick<Store, 'dialect'>, values: readonly unknown[]): readonly unknown[] | string {
  return store.dialect === 'postgres' ? values : JSON.stringify(values);
}

/**
 * The store every repository talks to: synchronous, one connection, one transaction at a time.
 * Two implementations: the embedded SQLite file (the default) and PostgreSQL (a server that
 * several server processes and hosts can share). Both give the same guarantees: one writer at a
 * time across every process (`write`), a consistent snapshot for `read`, and a commit that
 * returned is durable.
 */
export interface Store {
  readonly dialect: StoreDialect;
  /** A statement with bound parameters (cached per text). */
  stmt<R = unknown>(sql: Sql): Statement<R>;
  /** Runs `fn` holding the store's single write lock (queued across processes up to the busy timeout). */
  write<T>(fn: () => T): T;
  /**
   * Runs `fn` like `write` only when the write lock can be had at once; undefined (`fn` not run)
   * when another connection holds it. Optional: a store without it is asked to `write` instead.
   */
  tryWrite?<T>(fn: () => T): { value: T } | undefined;
  /** Runs `fn` in one read snapshot. */
  read<T>(fn: () => T): T;
  /** Runs `fn` so that its writes can be undone alone: a savepoint inside a transaction, else a write. */
  savepoint<T>(fn: () => T): T;
  /** Whether a transaction is open on this connection. */
  readonly inTransaction: boolean;
  /** A trivial query: the store is open and answers. */
  ping(): void;
  close(): void;
}

export interface OpenStoreOptions {
  /** How long a write waits for another connection (or process) holding the write lock. */
  busyTimeoutMs?: number;
  /** Clock reading recorded with applied migrations. */
  now?: number;
  /** PostgreSQL only: a directory to write the statement profile to (store/postgres/profile.ts); none by default. */
  profileDir?: string;
}

/** Whether a `--store` value names a PostgreSQL database rather than an SQLite data directory. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

export const Store = {
  /** Opens (creating if needed) the SQLite store in a data directory. */
  open(dataDir: string, options: OpenStoreOptions = {}): SqliteStore {
    return SqliteStore.open(dataDir, options);
  },
  /** Connects to a PostgreSQL store (`postgres://…`), creating or upgrading its schema. */
  connect(url: string, options: OpenStoreOptions = {}): PostgresStore {
    if (!isPostgresUrl(url)) throw new AppError('SERVER_CONFIG_INVALID', `not a PostgreSQL URL: ${url.split('@').at(-1)}`);
    return PostgresStore.connect(url, options);
  },
  /** The store named by `store` (a `postgres://` URL), else the SQLite file in `dataDir`. */
  select(store: string | undefined, dataDir: string, options: OpenStoreOptions = {}): Store {
    return store && isPostgresUrl(store) ? PostgresStore.connect(store, options) : SqliteStore.open(dataDir, options);
  },
};
