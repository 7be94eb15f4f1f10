import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { LoadtestError } from './errors.js';
import { redactUrl } from '@router-fleet/server-stub/postgres-url';

/**
 * The store of a scale run's servers: the SQLite file in the run's data directory (the default),
 * or a PostgreSQL database. `postgres` alone: a database of the run's own, created on the server
 * named by PGHOST/PGPORT/PGUSER/PGPASSWORD (default 127.0.0.1:5432, user postgres) and dropped
 * when the run ends, also on failure. A `postgres://` URL: that database, which must be empty (the
 * run creates its schema, its account and its fleet there, and leaves them).
 */
export interface RunStore {
  kind: 'sqlite' | 'postgres';
  /** `serve --store` URL (postgres only). */
  url?: string;
  /** For the report: which store, and whether the run made it (the password never appears). */
  description: string;
  /** Drops the database the run created (no-op otherwise); safe to call more than once. */
  release(): Promise<void>;
}

const sqlite: RunStore = { kind: 'sqlite', description: 'SQLite (the file in the run\'s data directory)', release: async () => {} };

function pgDefaults() {
  return {
    host: process.env['PGHOST'] || '127.0.0.1',
    port: Number(process.env['PGPORT'] || 5432),
    user: process.env['PGUSER'] || 'postgres',
    password: process.env['PGPASSWORD'] ?? '',
  };
}

async function withClient<T>(config: pg.ClientConfig, what: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...config, application_name: 'fleet-loadtest', connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    throw new LoadtestError('LOADTEST_STORE_UNREACHABLE', `cannot connect to PostgreSQL at ${what}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Checks a `--store` value without connecting: `sqlite`, `postgres` or a `postgres://` URL. */
export function parseStoreOption(value: string | undefined): 'sqlite' | 'postgres' | { url: string } {
  if (value === undefined || value === 'sqlite') return 'sqlite';
  if (value === 'postgres' || value === 'postgresql') return 'postgres';
  if (/^postgres(ql)?:\/\/\S+$/i.test(value)) {
    try {
      new URL(value);
    } catch {
      throw new LoadtestError('LOADTEST_USAGE', `--store ${redactUrl(value)} is not a valid URL`);
    }
    return { url: value };
  }
  throw new LoadtestError('LOADTEST_USAGE', `--store must be sqlite, postgres (a database of the run's own) or a postgres:// URL, not ${JSON.stringify(value.replace(/:[^:@/]*@/, ':***@'))}`);
}

/**
 * Opens the store a run asked for: creates the run's own database for `postgres`, checks that a
 * given database is empty (LOADTEST_STORE_NOT_EMPTY) and reachable (LOADTEST_STORE_UNREACHABLE).
 */
export async function openRunStore(value: string | undefined, log: (t: string) => void = () => {}): Promise<RunStore> {
  const parsed = parseStoreOption(value);
  if (parsed === 'sqlite') return sqlite;
  if (parsed === 'postgres') {
    const d = pgDefaults();
    const name = `fleet_scale_${new Date().toISOString().slice(0, 16).replace(/\D/g, '')}_${randomBytes(3).toString('hex')}`;
    await withClient({ ...d, database: 'postgres' }, `${d.user}@${d.host}:${d.port}`, (c) => c.query(`CREATE DATABASE ${name}`));
    const auth = encodeURIComponent(d.user) + (d.password ? `:${encodeURIComponent(d.password)}` : '');
    const url = `postgres://${auth}@${d.host}:${d.port}/${name}`;
    log(`PostgreSQL store: created database ${name} on ${d.host}:${d.port} (dropped at the end of the run)`);
    let dropped = false;
    return {
      kind: 'postgres',
      url,
      description: `PostgreSQL (database ${name} on ${d.host}:${d.port}, created for the run and dropped after it)`,
      release: async () => {
        if (dropped) return;
        dropped = true;
        // FORCE: a server process that did not stop in time must not keep the database alive.
        await withClient({ ...d, database: 'postgres' }, `${d.user}@${d.host}:${d.port}`, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
        log(`PostgreSQL store: dropped database ${name}`);
      },
    };
  }
  const { url } = parsed;
  const tables = await withClient({ connectionString: url }, redactUrl(url), async (c) => {
    // The tables the server would see: those of the schemas on the URL's search_path.
    const r = await c.query<{ n: string }>('SELECT count(*) AS n FROM pg_tables WHERE schemaname = ANY (current_schemas(false))');
    return Number(r.rows[0]?.n ?? 0);
  });
  if (tables > 0) {
    throw new LoadtestError('LOADTEST_STORE_NOT_EMPTY', `the PostgreSQL database at ${redactUrl(url)} has ${tables} table(s): a scale run needs an empty database (or --store postgres for one of its own)`);
  }
  const u = new URL(url);
  return { kind: 'postgres', url, description: `PostgreSQL (database ${u.pathname.slice(1)} on ${u.host}, given; left in place)`, release: async () => {} };
}
