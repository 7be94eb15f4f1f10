/**
 * What the store could not do, in the store's own terms. Every store implementation translates its
 * driver's errors into these (the embedded SQLite store in `sqlite-errors.ts`), so code outside
 * store/ checks `instanceof` and never a driver's error codes. The driver's error stays as `cause`
 * (for logs). Errors of other kinds (a broken statement, a foreign key) are bugs and pass through
 * as the driver threw them: they end as SERVER_INTERNAL.
 */
export abstract class StoreError extends Error {
  /** Whether the same call may succeed when tried again later. */
  abstract readonly retryable: boolean;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A write would have given two rows the same value where a unique constraint or key forbids it. */
export class StoreConflictError extends StoreError {
  readonly retryable = false;

  constructor(
    /** The table of the constraint, when the driver says. */
    readonly table: string | null,
    /** The constrained columns (without the table), in the constraint's order; empty when unknown. */
    readonly columns: readonly string[],
    /** The constraint's or unique index's name, when the driver says. */
    readonly constraint: string | null,
    options?: { cause?: unknown },
  ) {
    const what = columns.length > 0 ? `${table ?? '?'}(${columns.join(', ')})` : (constraint ?? 'a unique constraint');
    super(`unique constraint violated: ${what}`, options);
  }

  /** True when the violated constraint covers `column` (e.g. a name taken within an account). */
  covers(column: string): boolean {
    return this.columns.includes(column);
  }
}

/** The database could not grow: no space left on its disk (or its quota). */
export class StoreFullError extends StoreError {
  readonly retryable = true;

  constructor(options?: { cause?: unknown }) {
    super('the store has no space left', options);
  }
}

/** The write lock (or a row lock) stayed held by another connection or process past the timeout. */
export class StoreBusyError extends StoreError {
  readonly retryable = true;

  constructor(options?: { cause?: unknown }) {
    super('the store is busy: the lock was not granted within the timeout', options);
  }
}

/** True when `err` is a unique violation whose constraint covers `column`. */
export function isConflictOn(err: unknown, column: string): boolean {
  return err instanceof StoreConflictError && err.covers(column);
}
