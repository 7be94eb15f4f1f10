import { Buffer } from 'node:buffer';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createSyncFn } from 'synckit';
import { AppError } from '../../errors.js';
import type { OpenStoreOptions, RunResult, Sql, Statement, Store } from '../database.js';
import { fromPostgresError, isConnectionLoss } from './errors.js';
import { StatementProfile } from './profile.js';
import { migratePostgres } from './schema.js';
import { toPostgres } from './translate.js';
import type { WorkerQuery, WorkerRequest, WorkerResponse, WorkerRows } from './worker.js';
import { redactUrl } from './url.js';

/**
 * The key of the one transaction-scoped advisory lock every write transaction takes first, in
 * every process and host sharing the database: PostgreSQL's writers are then serialised exactly as
 * SQLite's (one writer at a time, readers never blocked), so every guarantee of the SQLite store
 * (first come, first served admission, global rollout limits) carries over unchanged.
 * ('fleet' in ASCII.)
 */
export const WRITE_LOCK_KEY = 0x666c656574;

type Call = (req: WorkerRequest) => WorkerResponse;

/**
 * The worker module, compiled JavaScript: next to this file in the build, or in the build's folder
 * when the server runs from its TypeScript sources (as the tests do; a worker thread cannot load
 * TypeScript through tsx on Node 20).
 */
function bridge(): Call {
  for (const candidate of ['./worker.js', '../../../dist/store/postgres/worker.js']) {
    const url = new URL(candidate, import.meta.url);
    if (existsSync(fileURLToPath(url))) return createSyncFn(url) as unknown as Call;
  }
  throw new AppError('SERVER_STORE_DRIVER_MISSING', 'the PostgreSQL store\'s worker (dist/store/postgres/worker.js) is not built: run npm run build');
}

let call: Call | undefined;

/** A statement starting with SELECT (or a WITH without a write) reads; anything else writes. */
function isRead(sql: string): boolean {
  const head = /^\s*(\w+)/.exec(sql)?.[1]?.toUpperCase();
  if (head === 'SELECT' || head === 'VALUES') return true;
  return head === 'WITH' && !/\b(INSERT|UPDATE|DELETE)\b/i.test(sql);
}

/** Buffers cross the thread as Uint8Arrays: give repositories Buffers, as SQLite does. */
function fixRow(row: Record<string, unknown>): Record<string, unknown> {
  for (const k in row) {
    const v = row[k];
    if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }
  return row;
}

class PgStatement<R> implements Statement<R> {
  readonly #store: PostgresStore;
  readonly #sql: string;
  readonly #reads: boolean;

  constructor(store: PostgresStore, sql: string) {
    this.#store = store;
    this.#sql = sql;
    this.#reads = isRead(sql);
  }

  #query(params: unknown[]): WorkerRows {
    return this.#store.query({ sql: this.#sql, params }, this.#reads);
  }

  get(...params: unknown[]): R | undefined {
    const row = this.#query(params).rows[0];
    return row ? (fixRow(row) as R) : undefined;
  }

  all(...params: unknown[]): R[] {
    return this.#query(params).rows.map((r) => fixRow(r) as R);
  }

  run(...params: unknown[]): RunResult {
    const changes = this.#query(params).rowCount;
    return {
      changes,
      get lastInsertRowid(): never {
        throw new AppError('SERVER_INTERNAL', 'lastInsertRowid is SQLite\'s: a statement for both stores says RETURNING id');
      },
    };
  }

  iterate(...params: unknown[]): IterableIterator<R> {
    return this.all(...params)[Symbol.iterator]();
  }
}

/**
 * The PostgreSQL store: one connection, driven synchronously. The `pg` driver runs in a worker
 * thread and each statement is one blocking round trip (store/postgres/worker.ts); the SQLite
 * store blocks the event loop on disk and on its write lock in the same way.
 *
 * Transactions: a write takes the advisory lock `WRITE_LOCK_KEY` at BEGIN (waiting at most the
 * busy timeout, then StoreBusyError as on SQLite); a read is a REPEATABLE READ, READ ONLY snapshot; a
 * savepoint inside a transaction is a SAVEPOINT. A write statement outside any transaction runs
 * as a write transaction of its own, so it too waits for the lock, as SQLite's autocommit does.
 */
export class PostgresStore implements Store {
  readonly dialect = 'postgres';
  readonly #conn: number;
  readonly #busyTimeoutMs: number;
  readonly #statements = new Map<string, PgStatement<unknown>>();
  readonly #profile: StatementProfile | undefined;
  #inTransaction = false;
  #savepoints = 0;
  #closed = false;

  private constructor(conn: number, busyTimeoutMs: number, profileDir: string | undefined) {
    this.#conn = conn;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#profile = profileDir ? new StatementProfile(profileDir) : undefined;
  }

  static connect(url: string, options: OpenStoreOptions = {}): PostgresStore {
    call ??= bridge();
    const r = call({ op: 'connect', url, applicationName: 'fleet-server' });
    if ('error' in r) {
      throw new AppError('SERVER_STORE_UNREACHABLE', `cannot connect to the PostgreSQL store at ${redactUrl(url)}: ${r.error.message}`);
    }
    const store = new PostgresStore(r.ok.rowCount, options.busyTimeoutMs ?? 5000, options.profileDir);
    try {
      migratePostgres(store, options.now ?? Date.now());
    } catch (err) {
      store.close();
      throw err;
    }
    return store;
  }

  get inTransaction(): boolean {
    return this.#inTransaction;
  }

  stmt<R = unknown>(sql: Sql): Statement<R> {
    const text = typeof sql === 'string' ? toPostgres(sql) : toPostgres(sql.postgres);
    let s = this.#statements.get(text);
    if (!s) {
      s = new PgStatement(this, text);
      this.#statements.set(text, s);
    }
    return s as Statement<R>;
  }

  /** Runs one statement; a write outside a transaction becomes a write transaction of its own. */
  query(q: WorkerQuery, reads: boolean): WorkerRows {
    if (reads || this.#inTransaction) return this.#batch([q], undefined, q.sql, undefined, !this.#inTransaction);
    const begin = this.#beginWrite();
    return this.#batch([...begin, q, { sql: 'COMMIT', params: [] }], 'ROLLBACK', q.sql, begin.length, true);
  }

  /** Several statements without parameters (a schema), as one simple query. */
  exec(sql: string): void {
    this.#batch([{ sql, params: [] }], undefined, sql.slice(0, 200), undefined, !this.#inTransaction);
  }

  /**
   * One round trip. `fresh`: the batch starts a transaction or is one, so after a lost connection
   * the worker may connect again to run it; inside a transaction a loss fails the batch, and the
   * transaction's next batch (its ROLLBACK) too, until the next transaction connects again.
   */
  #batch(queries: WorkerQuery[], onErrorSql: string | undefined, what: string, answer?: number, fresh = false): WorkerRows {
    if (this.#closed) throw new AppError('SERVER_UNAVAILABLE', 'the PostgreSQL store is not open (closed)');
    const started = this.#profile ? performance.now() : 0;
    const r = call!({ op: 'batch', conn: this.#conn, queries, onErrorSql, answer, fresh });
    this.#profile?.record(what, performance.now() - started);
    if ('error' in r) {
      if (isConnectionLoss(r.error)) throw new AppError('SERVER_UNAVAILABLE', `the PostgreSQL store is unavailable: ${r.error.message}`);
      throw fromPostgresError(r.error, what);
    }
    return r.ok;
  }

  /**
   * BEGIN, the lock timeout and the write lock as one simple query: one round trip where three
   * statements with parameters took three, before every write transaction. Its only values are
   * integers of our own, never input.
   */
  #beginWrite(): WorkerQuery[] {
    const timeout = Number.isFinite(this.#busyTimeoutMs) ? Math.max(1, Math.floor(this.#busyTimeoutMs)) : 2_147_483_647;
    return [{ sql: `BEGIN; SET LOCAL lock_timeout = '${timeout}ms'; SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`, params: [] }];
  }

  #transaction<T>(begin: WorkerQuery[], fn: () => T): T {
    this.#batch(begin, 'ROLLBACK', 'BEGIN', undefined, true);
    this.#inTransaction = true;
    let result: T;
    try {
      result = fn();
    } catch (err) {
      this.#inTransaction = false;
      this.#savepoints = 0;
      this.#batch([{ sql: 'ROLLBACK', params: [] }], undefined, 'ROLLBACK');
      throw err;
    }
    this.#inTransaction = false;
    this.#savepoints = 0;
    this.#batch([{ sql: 'COMMIT', params: [] }], 'ROLLBACK', 'COMMIT');
    return result;
  }

  write<T>(fn: () => T): T {
    if (this.#inTransaction) return fn();
    return this.#transaction(this.#beginWrite(), fn);
  }

  read<T>(fn: () => T): T {
    if (this.#inTransaction) return fn();
    return this.#transaction([{ sql: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', params: [] }], fn);
  }

  savepoint<T>(fn: () => T): T {
    if (!this.#inTransaction) return this.write(fn);
    // Names come from a counter, never from values.
    const name = `sp${++this.#savepoints}`;
    this.#batch([{ sql: `SAVEPOINT ${name}`, params: [] }], undefined, 'SAVEPOINT');
    let result: T;
    try {
      result = fn();
    } catch (err) {
      this.#batch([{ sql: `ROLLBACK TO SAVEPOINT ${name}`, params: [] }, { sql: `RELEASE SAVEPOINT ${name}`, params: [] }], undefined, 'ROLLBACK TO');
      throw err;
    }
    this.#batch([{ sql: `RELEASE SAVEPOINT ${name}`, params: [] }], undefined, 'RELEASE');
    return result;
  }

  ping(): void {
    this.stmt('SELECT 1').get();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#profile?.close();
    call!({ op: 'close', conn: this.#conn });
  }
}
