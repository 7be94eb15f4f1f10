import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const dir = (path: string) => new URL(path, import.meta.url);
const sources = (path: string) =>
  readdirSync(dir(path))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => ({ file: f, text: readFileSync(dir(`${path}/${f}`), 'utf8') }));

/** Every source file of the server, recursively, by its path under src/. */
const allSources = () =>
  (readdirSync(dir('../src/'), { recursive: true }) as string[])
    .map((f) => f.split('\\').join('/'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => ({ file: f, text: readFileSync(dir(`../src/${f}`), 'utf8') }));

/**
 * What counts as SQL in a source file: a prepared statement (`Store.stmt`, better-sqlite3's
 * `prepare`/`exec` with literal text/`pragma`/`transaction`), the driver itself, or a statement's
 * own words (upper case, as every statement in store/ is written). RegExp `exec(value)` and prose
 * such as "refuse UPDATE and DELETE" do not match.
 */
const SQL = [
  /\.stmt\s*[<(]/,
  /\.(prepare|pragma|transaction)\s*\(/,
  /\.exec\s*\(\s*['"`]/,
  /from 'better-sqlite3'/,
  /\bSELECT\b[^;]{0,400}?\bFROM\b/,
  /['"`]\s*(SELECT|WITH|PRAGMA)\b/,
  /\b(INSERT( OR \w+)? INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX|TRIGGER|VIEW))\b/,
];
const hasSql = (text: string) => SQL.some((re) => re.test(text));

/**
 * What only a store implementation may know about its database driver: the driver's error codes
 * (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_UNIQUE`, in code or prose) and the driver packages themselves
 * (imported, required or loaded by name), or the store's own driver modules. Outside store/, code
 * checks the store's typed errors (`store/errors.ts`) instead.
 */
const DRIVER = [
  /\bSQLITE_[A-Z_]+/,
  /\b(from|import|require)\s*\(?\s*['"`](better-sqlite3(-napi)?|pg|pg-[\w-]+)['"`]/,
  /['"`][./]*(store\/)?sqlite(-errors)?\.js['"`]/,
];
const hasDriver = (text: string) => DRIVER.some((re) => re.test(text));

/**
 * Files outside store/ that may hold SQL, each with the reason it cannot move. Empty: every
 * statement lives in a store/ repository, so a second store implementation is a second folder.
 */
const SQL_ALLOWED_OUTSIDE_STORE: Readonly<Record<string, string>> = {};

describe('layering', () => {
  it('route handlers reach the store only through account-scoped repositories and ports', () => {
    const offenders = sources('../src/routes/').filter((s) => /services\.store\b|\.stmt\s*[<(]/.test(s.text));
    expect(offenders.map((s) => s.file)).toEqual([]);
  });

  it('SQL lives only in store/: every other folder calls repositories', () => {
    const files = allSources();
    // The walk itself must see the tree (a wrong path would make this pass vacuously).
    expect(files.some((f) => f.file === 'channel/channel.ts')).toBe(true);
    expect(files.filter((f) => f.file.startsWith('store/') && hasSql(f.text)).length).toBeGreaterThan(10);
    const offenders = files
      .filter((f) => !f.file.startsWith('store/') && !(f.file in SQL_ALLOWED_OUTSIDE_STORE) && hasSql(f.text))
      .map((f) => f.file);
    expect(offenders).toEqual([]);
  });

  it('driver error codes and driver imports live only in store/: every other folder checks typed store errors', () => {
    const files = allSources();
    expect(files.some((f) => f.file === 'storage-guard.ts')).toBe(true);
    // The store itself does translate driver errors (a wrong pattern would make this pass vacuously).
    expect(files.filter((f) => f.file.startsWith('store/') && hasDriver(f.text)).length).toBeGreaterThan(0);
    const offenders = files.filter((f) => !f.file.startsWith('store/') && hasDriver(f.text)).map((f) => f.file);
    expect(offenders).toEqual([]);
  });

  it('the driver detector recognises error codes and driver imports, and ignores the store\'s typed errors', () => {
    const yes = [
      'if ((err as { code?: string }).code === \'SQLITE_CONSTRAINT_UNIQUE\') throw new AppError(\'SERVER_NAME_TAKEN\');',
      'const FULL_CODES = new Set([\'SQLITE_FULL\', \'ENOSPC\']);',
      '// (e.g. SQLITE_BUSY: other processes held the write lock)',
      'import Database from \'better-sqlite3\';',
      'import type { Statement } from "better-sqlite3-napi";',
      'const { Pool } = await import(\'pg\');',
      'const driver = require(\'better-sqlite3\');',
      'import { SqliteDatabase } from \'../store/sqlite.js\';',
      'import { fromSqliteError } from \'./store/sqlite-errors.js\';',
    ];
    const no = [
      'if (isConflictOn(err, \'name\')) throw new AppError(\'SERVER_NAME_TAKEN\');',
      'if (e instanceof StoreFullError) return true;',
      'import { StoreBusyError } from \'../store/errors.js\';',
      '// SQLite needs room in its WAL even to delete',
      'import { AccountScope } from \'../store/scope.js\';',
      'const page = \'pages\';',
    ];
    expect(yes.filter((t) => !hasDriver(t))).toEqual([]);
    expect(no.filter((t) => hasDriver(t))).toEqual([]);
  });

  it('the SQL detector recognises statements and ignores prose and RegExp exec', () => {
    const yes = [
      'store.stmt<{ id: number }>(\'SELECT id FROM accounts WHERE uuid = ?\')',
      'this.store.stmt(\'UPDATE jobs SET packet_id = NULL WHERE packet_id = ?\')',
      'db.prepare(sql)',
      'db.exec(\'DROP TRIGGER x\')',
      '`INSERT OR IGNORE INTO job_devices (job_id) VALUES (?)`',
      '\'DELETE FROM template_renders WHERE job_id = ?\'',
      'import Database from \'better-sqlite3\';',
      'const q = `SELECT uuid\n  FROM devices`;',
      'const ping = \'SELECT 1\';',
      'const walk = `WITH RECURSIVE t(n) AS (VALUES (1)) SELECT n FROM t`;',
    ];
    const no = [
      'const m = HHMM.exec(hhmm);',
      '// append-only (SQLite triggers refuse UPDATE and DELETE)',
      'method: \'DELETE\',',
      'this.audit.recordSystem(accountId, \'SMART-UPDATE create job\')',
    ];
    expect(yes.filter((t) => !hasSql(t))).toEqual([]);
    expect(no.filter((t) => hasSql(t))).toEqual([]);
  });

  it('every allowed exception still exists and still holds SQL (the list only shrinks)', () => {
    const files = new Map(allSources().map((f) => [f.file, f.text]));
    for (const [file, why] of Object.entries(SQL_ALLOWED_OUTSIDE_STORE)) {
      expect(why.length, file).toBeGreaterThan(20);
      expect(hasSql(files.get(file) ?? ''), file).toBe(true);
    }
  });

  it('the channel pieces are given narrow dependencies, never the whole Services bag', () => {
    const offenders = [...sources('../src/channel/'), ...sources('../src/channel/mqtt/')].filter((s) => /\bServices\b/.test(s.text));
    expect(offenders.map((s) => s.file)).toEqual([]);
  });
});
