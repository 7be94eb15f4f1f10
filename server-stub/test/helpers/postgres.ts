// PostgreSQL for the tests: a fresh database per test file (created on first use, dropped after
// the file by postgres-cleanup.ts, a setup file of every test file), and in it a fresh schema per store, so every world starts empty as a new SQLite file
// does. The server is the one at 127.0.0.1:5432 (user postgres, no password) unless PGHOST,
// PGPORT, PGUSER or PGPASSWORD say otherwise; .ci/run makes sure it is running.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ensureServerBuilt } from './built.js';

/** Which store the server tests run on: FLEET_TEST_STORE=postgres, else SQLite. */
export const TEST_STORE: 'sqlite' | 'postgres' = process.env.FLEET_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';

const host = process.env.PGHOST || '127.0.0.1';
const port = process.env.PGPORT || '5432';
const user = process.env.PGUSER || 'postgres';
const password = process.env.PGPASSWORD ?? '';

function psql(database: string, sql: string): string {
  return execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-h', host, '-p', port, '-U', user, '-d', database, '-c', sql], {
    env: { ...process.env, PGPASSWORD: password },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

let database: string | undefined;
let schemas = 0;

/** The URL of `db` on the test server, with `search_path` set when a schema is given. */
export function postgresUrl(db: string, schema?: string): string {
  const auth = encodeURIComponent(user) + (password ? `:${encodeURIComponent(password)}` : '');
  const options = schema ? `?options=${encodeURIComponent(`-c search_path=${schema}`)}` : '';
  return `postgres://${auth}@${host}:${port}/${db}${options}`;
}

/** This test file's database, created on first use and dropped after the file. */
export function testDatabase(): string {
  if (database) return database;
  // The store's worker thread runs the compiled worker module (store/postgres/store.ts).
  ensureServerBuilt();
  const name = `fleet_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  psql('postgres', `CREATE DATABASE ${name}`);
  database = name;
  return name;
}

/** Drops this test file's database, if it made one. */
export function dropTestDatabase(): void {
  if (!database) return;
  // FORCE: a store a test left open must not keep the database alive.
  psql('postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  database = undefined;
}

/** A URL to an empty schema of this file's database: one store's worth of tables, as a new SQLite file is. */
export function freshPostgresStore(): string {
  const db = testDatabase();
  const schema = `s${++schemas}`;
  psql(db, `CREATE SCHEMA ${schema}`);
  return postgresUrl(db, schema);
}

/** Runs `sql` on this file's database as the test server's superuser (for tests that need a second, plain connection). */
export function psqlTest(sql: string, schema?: string): string {
  return psql(testDatabase(), schema ? `SET search_path = ${schema}; ${sql}` : sql);
}

/**
 * Lets new connections into this file's database, or refuses them all (superusers too): a store
 * whose connection then ends cannot connect again, as when the database server is down. Existing
 * connections are left alone.
 */
export function allowConnections(allowed: boolean): void {
  psql('postgres', `ALTER DATABASE ${testDatabase()} ALLOW_CONNECTIONS ${allowed}`);
}
