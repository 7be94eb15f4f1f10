// Used by tests and by benches alike: no test framework here.
import type { Sql, Statement, Store } from '../../src/store/database.js';

/** A statement call: `get`, `all` and `iterate` read, `run` writes. */
export type StatementCall = 'read' | 'write';

/**
 * Calls `onCall` with the statement's text (in the store's dialect) and the kind of call before each
 * call of every statement `store` prepares from now on; `onCall` may throw, as a failing statement
 * would. Returns what puts the store's own `stmt` back.
 */
export function spyStatements(store: Store, onCall: (sql: string, call: StatementCall) => void): () => void {
  const stmt = store.stmt.bind(store);
  store.stmt = <R>(sql: Sql): Statement<R> => {
    const s = stmt<R>(sql);
    const text = typeof sql === 'string' ? sql : sql[store.dialect];
    return {
      get: (...p: unknown[]) => (onCall(text, 'read'), s.get(...p)),
      all: (...p: unknown[]) => (onCall(text, 'read'), s.all(...p)),
      iterate: (...p: unknown[]) => (onCall(text, 'read'), s.iterate(...p)),
      run: (...p: unknown[]) => (onCall(text, 'write'), s.run(...p)),
    };
  };
  return () => {
    store.stmt = stmt;
  };
}
