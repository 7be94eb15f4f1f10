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
