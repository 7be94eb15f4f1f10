// The PostgreSQL connections of this process's stores, in one worker thread. The store's thread calls `call()`
// through synckit and blocks until the answer is back, so repositories stay synchronous (see
// ARCHITECTURE.md, "The store on PostgreSQL"). This file imports nothing of the server's: it only
// speaks the small protocol below.
import pg from 'pg';
import { runAsWorker } from 'synckit';

/** One statement with its parameters (`$1`…); no parameters runs it as a simple query (several statements allowed). */
export interface WorkerQuery {
  readonly sql: string;
  readonly params: readonly unknown[];
}

export type WorkerRequest =
  /** Opens a connection; answers with its number in `rowCount`. */
  | { readonly op: 'connect'; readonly url: string; readonly applicationName: string }
  /**
   * Runs the queries in order on connection `conn`, stopping at the first error (then running
   * `onErrorSql`); answers with the rows of query number `answer` (default: the last).
   */
  | { readonly op: 'batch'; readonly conn: number; readonly queries: readonly WorkerQuery[]; readonly onErrorSql?: string; readonly answer?: number }
  | { readonly op: 'close'; readonly conn: number };

export interface WorkerRows {
  readonly rows: Record<string, unknown>[];
  readonly rowCount: number;
}

/** A PostgreSQL error as plain data (an Error does not cross threads with its fields intact). */
export interface WorkerError {
  readonly message: string;
  readonly code?: string;
  readonly table?: string;
  readonly constraint?: string;
  readonly detail?: string;
}

export type WorkerResponse = { readonly ok: WorkerRows } | { readonly error: WorkerError };

// Numbers come back as numbers, as from SQLite: BIGINT (every integer column, COUNT(*)), NUMERIC
// (SUM over BIGINT) and booleans (comparisons in a select list are 0 or 1 in SQLite).
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === pg.types.builtins.INT8 || oid === pg.types.builtins.NUMERIC) return (v: string) => Number(v);
    if (oid === pg.types.builtins.BOOL) return (v: string) => (v === 't' ? 1 : 0);
    return pg.types.getTypeParser(oid, format);
  }) as typeof pg.types.getTypeParser,
};

const clients = new Map<number, pg.Client>();
let nextConn = 1;

/** Parameters arrive as structured clones: Buffers became Uint8Arrays, which pg would send as text. */
function param(v: unknown): unknown {
  return v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v;
}

function asError(err: unknown): WorkerError {
  const e = err as { message?: string; code?: string; table?: string; constraint?: string; detail?: string };
  return { message: e.message ?? String(err), code: e.code, table: e.table, constraint: e.constraint, detail: e.detail };
}

async function call(req: WorkerRequest): Promise<WorkerResponse> {
  try {
    if (req.op === 'connect') {
      const client = new pg.Client({ connectionString: req.url, application_name: req.applicationName, types });
      // A connection lost between statements surfaces on the next statement; without a listener
      // the 'error' event would end the worker.
      client.on('error', () => {});
      await client.connect();
      const conn = nextConn++;
      clients.set(conn, client);
      return { ok: { rows: [], rowCount: conn } };
    }
    const client = clients.get(req.conn);
    if (req.op === 'close') {
      clients.delete(req.conn);
      if (client) await client.end();
      return { ok: { rows: [], rowCount: 0 } };
    }
    if (!client) return { error: { message: 'the PostgreSQL store is closed', code: 'STORE_CLOSED' } };
    let last: WorkerRows = { rows: [], rowCount: 0 };
    let answer: WorkerRows = last;
    const answerAt = req.answer ?? req.queries.length - 1;
    try {
      for (const [i, q] of req.queries.entries()) {
        const r = q.params.length === 0 ? await client.query(q.sql) : await client.query(q.sql, q.params.map(param));
        // A simple query with several statements answers with one result per statement.
        const one = Array.isArray(r) ? (r.at(-1) as pg.QueryResult) : r;
        last = { rows: one.rows as Record<string, unknown>[], rowCount: one.rowCount ?? 0 };
        if (i === answerAt) answer = last;
      }
    } catch (err) {
      if (req.onErrorSql) await client.query(req.onErrorSql).catch(() => {});
      throw err;
    }
    return { ok: answer };
  } catch (err) {
    return { error: asError(err) };
  }
}

runAsWorker(call);
