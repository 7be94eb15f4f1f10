import { SqliteDatabase } from '../src/store/sqlite.js';
import { afterEach, describe, expect, it } from 'vitest';
import { isAppError } from '../src/errors.js';
import { openDatabase, Store, STORE_FILE } from '../src/store/database.js';
import { latestVersion, migrate, migrations } from '../src/store/migrations.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';
import { join } from 'node:path';

afterEach(() => removeTempDirs());

describe('store', () => {
  it('opens in WAL mode with synchronous=FULL and foreign keys on', () => {
    const store = Store.open(tempDir());
    try {
      expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(store.db.pragma('synchronous', { simple: true })).toBe(2); // FULL
      expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
    } finally {
      store.close();
    }
  });

  it('applies numbered migrations once, forward only', () => {
    const dir = tempDir();
    openDatabase(dir).close();
    const db = openDatabase(dir);
    const rows = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as { version: number }[];
    expect(rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
    const next = [...migrations, { version: latestVersion() + 1, name: 'test', sql: 'CREATE TABLE t2 (x INTEGER)' }];
    expect(migrate(db, 0, next)).toEqual([latestVersion() + 1]);
    expect(migrate(db, 0, next)).toEqual([]);
    db.close();
    // This server does not know version latest+1: it refuses the store instead of guessing.
    try {
      openDatabase(dir);
      expect.unreachable();
    } catch (err) {
      expect(isAppError(err) && err.code).toBe('SERVER_STORE_VERSION');
    }
  });

  it('migration numbers are strictly increasing', () => {
    // Ranges are reserved per line of work (control channel 2–9, packets and jobs 10+), so numbers may skip.
    migrations.forEach((m, i) => expect(m.version).toBeGreaterThan(i === 0 ? 0 : migrations[i - 1]!.version));
  });

  it('a failed transaction leaves nothing behind', () => {
    const dir = tempDir();
    const store = Store.open(dir);
    expect(() =>
      store.write(() => {
        store.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'u1\', \'n\', 0)').run();
        throw new Error('boom');
      }),
    ).toThrow('boom');
    store.close();
    const db = new SqliteDatabase(join(dir, STORE_FILE));
    expect(db.prepare('SELECT COUNT(*) AS n FROM accounts').get()).toEqual({ n: 0 });
    db.close();
  });
});
