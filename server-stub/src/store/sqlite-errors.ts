import { StoreBusyError, StoreConflictError, StoreError, StoreFullError } from './errors.js';

/**
 * SQLite's words for the columns of a violated unique constraint: `UNIQUE constraint failed:
 * device_groups.account_id, device_groups.name`, or for a unique index on expressions or with a
 * WHERE clause `UNIQUE constraint failed: index 'packets_vendor_firmware'`.
 */
const UNIQUE_COLUMNS = /constraint failed: (.+)$/;
const UNIQUE_INDEX = /^index '([^']+)'$/;

function conflict(message: string, cause: unknown): StoreConflictError {
  const what = UNIQUE_COLUMNS.exec(message)?.[1]?.trim();
  if (!what) return new StoreConflictError(null, [], null, { cause });
  const index = UNIQUE_INDEX.exec(what);
  if (index) return new StoreConflictError(null, [], index[1]!, { cause });
  const qualified = what.split(',').map((c) => c.trim().split('.'));
  const table = qualified[0]!.length === 2 ? qualified[0]![0]! : null;
  return new StoreConflictError(table, qualified.map((q) => q[q.length - 1]!), null, { cause });
}

/**
 * The store's typed error for an error of better-sqlite3 (by its SQLite result code), or `err`
 * itself when it is of no kind the store names (or is already a store error).
 */
export function fromSqliteError(err: unknown): unknown {
  if (err instanceof StoreError || !(err instanceof Error)) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return err;
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return conflict(err.message, err);
  if (code === 'SQLITE_FULL') return new StoreFullError({ cause: err });
  // SQLITE_BUSY and its extended codes (BUSY_SNAPSHOT, BUSY_TIMEOUT, BUSY_RECOVERY).
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_')) return new StoreBusyError({ cause: err });
  return err;
}
