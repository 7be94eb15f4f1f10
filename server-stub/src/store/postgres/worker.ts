// The PostgreSQL connections of this process's stores, in one worker thread. The store's thread calls `call()`
// through synckit and blocks until the answer is back, so repositories stay synchronous (see
// ARCHITECTURE.md, "The store on PostgreSQL"). This file imports nothing of the server's: it only
// speaks the small protocol below.
import { Buffer } from 'node:buffer';
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
  | {
    readonly op: 'batch';
    readonly conn: number;
    readonly queries: readonly WorkerQuery[];
    readonly onErrorSql?: string;
    readonly answer?: number;
    /**
     * The batch starts afresh (a transaction's BEGIN, or a statement outside any transaction):
     * if the connection was lost, a new one may run it. A batch inside a transaction, its COMMIT
     * included, fails instead: the transaction went with the connection.
     */
    readonly fresh?: boolean;
  }
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

/** One of the store's connections: its client, replaced by a new one after a loss. */
interface Connection {
  client: pg.Client;
  readonly url: string;
  readonly applicationName: string;
  /** The client's connection ended (the server restarted, the backend was terminated, the network broke). */
  lost: boolean;
  /** No new connection is tried before this time (ms) after a failed one: each try blocks its caller. */
  retryAt: number;
}

const connections = new Map<number, Connection>();
let nextConn = 1;
/** How long a failed reconnect makes the next ones wait, and how long one may take (ms). */
const RECONNECT_PAUSE_MS = 1000;
const CONNECT_TIMEOUT_MS = 5000;

/** The error code of a batch refused while its connection is lost (store/postgres/errors.ts names it too). */
const CONNECTION_LOST = 'STORE_CONNECTION_LOST';

async function open(url: string, applicationName: string, onLost: (client: pg.Client) => void): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName, types, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // Without a listener the 'error' event would end the worker. A loss between statements is
  // noted here, and the next batch that starts afresh connects again.
  client.on('error', () => onLost(client));
  client.on('end', () => onLost(client));
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
  return client;
}

function markLost(conn: Connection, client: pg.Client): void {
  if (conn.client === client) conn.lost = true;
}

/** The connection's client, connected again first if it was lost and the batch may start afresh. */
async function usable(conn: Connection, fresh: boolean): Promise<pg.Client | WorkerError> {
  if (!conn.lost) return conn.client;
  if (!fresh) return { message: 'the connection to PostgreSQL was lost; the transaction was not committed', code: CONNECTION_LOST };
  if (Date.now() < conn.retryAt) return { message: 'PostgreSQL cannot be reached (trying again shortly)', code: CONNECTION_LOST };
  try {
    const old = conn.client;
    const client = await open(conn.url, conn.applicationName, (c) => markLost(conn, c));
    conn.client = client;
    conn.lost = false;
    void old.end().catch(() => {});
    return client;
  } catch (err) {
    conn.retryAt = Date.now() + RECONNECT_PAUSE_MS;
    return { message: `PostgreSQL cannot be reached: ${asError(err).message}`, code: CONNECTION_LOST };
  }
}

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
      const id = nextConn++;
      const client = await open(req.url, req.applicationName, (c) => {
        const conn = connections.get(id);
        if (conn) markLost(conn, c);
      });
      connections.set(id, { client, url: req.url, applicationName: req.applicationName, lost: false, retryAt: 0 });
      return { ok: { rows: [], rowCount: id } };
    }
    const conn = connections.get(req.conn);
    if (req.op === 'close') {
      connections.delete(req.conn);
      if (conn) await conn.client.end().catch(() => {});
      return { ok: { rows: [], rowCount: 0 } };
    }
    if (!conn) return { error: { message: 'the PostgreSQL store is closed', code: 'STORE_CLOSED' } };
    const fresh = req.fresh === true;
    const client = await usable(conn, fresh);
    if (!(client instanceof pg.Client)) return { error: client };
    try {
      return { ok: await run(client, req) };
    } catch (failure) {
      const err = failure instanceof StatementFailed ? failure.cause : failure;
      if (!lostConnection(err)) throw err;
      markLost(conn, client);
      // Lost before the first statement of a fresh batch answered (a connection that died while
      // idle, and whose end this thread had not yet seen): that statement is a BEGIN or a read
      // outside any transaction, so it runs again once on a new connection.
      const atFirst = failure instanceof StatementFailed && failure.index === 0;
      if (!fresh || !atFirst) return { error: { message: asError(err).message, code: CONNECTION_LOST } };
      const again = await usable(conn, true);
      if (!(again instanceof pg.Client)) return { error: again };
      return { ok: await run(again, req) };
    }
  } catch (failure) {
    const err = failure instanceof StatementFailed ? failure.cause : failure;
    return { error: lostConnection(err) ? { message: asError(err).message, code: CONNECTION_LOST } : asError(err) };
  }
}

/** A batch's statement at `index` failed with `cause`. */
class StatementFailed extends Error {
  constructor(
    override readonly cause: unknown,
    readonly index: number,
  ) {
    super(asError(cause).message);
  }
}

/** Runs a batch's queries in order; a failure is thrown as StatementFailed, naming the statement. */
async function run(client: pg.Client, req: Extract<WorkerRequest, { op: 'batch' }>): Promise<WorkerRows> {
  let last: WorkerRows = { rows: [], rowCount: 0 };
  let answer: WorkerRows = last;
  const answerAt = req.answer ?? req.queries.length - 1;
  let i = 0;
  try {
    for (const q of req.queries) {
      const r = q.params.length === 0 ? await client.query(q.sql) : await client.query(q.sql, q.params.map(param));
      // A simple query with several statements answers with one result per statement.
      const one = Array.isArray(r) ? (r.at(-1) as pg.QueryResult) : r;
      last = { rows: one.rows as Record<string, unknown>[], rowCount: one.rowCount ?? 0 };
      if (i === answerAt) answer = last;
      i++;
    }
  } catch (err) {
    if (req.onErrorSql && !lostConnection(err)) await client.query(req.onErrorSql).catch(() => {});
    throw new StatementFailed(err, i);
  }
  return answer;
}

/**
 * The connection, not the statement, failed: PostgreSQL ended the session (class 57P: shut down,
 * terminated by an administrator, cannot connect now), the connection broke (class 08), or the
 * driver saw the socket close or refuse without an SQLSTATE.
 */
function lostConnection(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
  if (['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT'].includes(code)) return true;
  return code === '' && /Connection terminated|not queryable|Client has encountered a connection error/i.test(String(e.message));
}

runAsWorker(call);
