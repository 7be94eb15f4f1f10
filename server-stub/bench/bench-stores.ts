import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** One JSON line of a bench's output. */
export function line(o: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

/**
 * Runs `body` with what a bench comparing the two stores needs: an empty directory for the SQLite
 * file, and a PostgreSQL schema of its own in the database at `url` (`schemaUrl` selects it). Both
 * are removed afterwards, whatever `body` does.
 */
export async function withBenchStores(
  url: string,
  prefix: string,
  body: (stores: { sqliteDir: string; schemaUrl: string }) => Promise<void>,
): Promise<void> {
  const schema = `${prefix}_${process.pid}`;
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  const sqliteDir = mkdtempSync(join(tmpdir(), `${prefix.replaceAll('_', '-')}-`));
  const admin = new pg.Client({ connectionString: url });
  try {
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    try {
      await body({ sqliteDir, schemaUrl: u.toString() });
    } finally {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    }
  } finally {
    await admin.end().catch(() => {});
    rmSync(sqliteDir, { recursive: true, force: true });
  }
}
