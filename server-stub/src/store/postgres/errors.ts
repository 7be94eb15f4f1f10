import { StoreBusyError, StoreConflictError, StoreFullError, type StoreError } from '../errors.js';
import type { WorkerError } from './worker.js';

/**
 * An error from PostgreSQL that the store names no kind for (a foreign key, a broken statement: a
 * bug of the caller). `code` is PostgreSQL's SQLSTATE as sent (`PG_ERROR` when there is none).
 */
export class PostgresStoreError extends Error {
  readonly code: string;
  readonly sqlState: string | undefined;
  readonly table: string | undefined;
  readonly constraint: string | undefined;

  constructor(err: WorkerError, sql?: string) {
    super(sql ? `${err.message} (in: ${sql.replace(/\s+/g, ' ').slice(0, 200)})` : err.message);
    this.name = 'PostgresStoreError';
    this.sqlState = err.code;
    this.code = err.code ?? 'PG_ERROR';
    this.table = err.table;
    this.constraint = err.constraint;
  }
}

/** SQLSTATEs the store names (PostgreSQL's appendix "Error Codes"). */
const UNIQUE_VIOLATION = '23505';
const DISK_FULL = '53100';
/** lock_not_available: the write lock (or a row lock) was not granted within `lock_timeout`. */
const LOCK_NOT_AVAILABLE = '55P03';

/** The key columns of a unique violation's detail: `Key (account_id, name)=(1, plant) already exists.` */
const KEY_COLUMNS = /^Key \((.*?)\)=\(/;
const IDENTIFIER = /^"?([A-Za-z_][A-Za-z0-9_$]*)"?$/;

/**
 * The columns of the violated constraint, in its order, from the error's detail; empty when a key
 * part is an expression (`lower(label)`) or the detail is missing, as SQLite reports a unique
 * index on expressions by its name only.
 */
function keyColumns(detail: string | undefined): string[] {
  const key = detail ? KEY_COLUMNS.exec(detail)?.[1] : undefined;
  if (!key) return [];
  const columns: string[] = [];
  for (const part of key.split(',')) {
    const name = IDENTIFIER.exec(part.trim())?.[1];
    if (!name) return [];
    columns.push(name);
  }
  return columns;
}

/**
 * The store's typed error for an error PostgreSQL sent (by its SQLSTATE), the same kinds the
 * SQLite store throws (`../sqlite-errors.ts`): a unique violation is a StoreConflictError naming
 * its table, columns and constraint; a full disk a StoreFullError; a lock timeout a StoreBusyError.
 * Anything else is a PostgresStoreError carrying the SQLSTATE. The driver's error is the `cause`.
 */
export function fromPostgresError(err: WorkerError, sql?: string): StoreError | PostgresStoreError {
  const cause = new PostgresStoreError(err, sql);
  switch (err.code) {
    case UNIQUE_VIOLATION:
      return new StoreConflictError(err.table ?? null, keyColumns(err.detail), err.constraint ?? null, { cause });
    case DISK_FULL:
      return new StoreFullError({ cause });
    case LOCK_NOT_AVAILABLE:
      return new StoreBusyError({ cause });
    default:
      return cause;
  }
}

/**
 * The worker's code for a batch that failed because its connection, not its statement, failed
 * (lost, or not to be had again yet; store/postgres/worker.ts names it too).
 */
const CONNECTION_LOST = 'STORE_CONNECTION_LOST';

export function isConnectionLoss(err: WorkerError): boolean {
  return err.code === CONNECTION_LOST;
}
