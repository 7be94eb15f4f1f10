import { SqliteDatabase, sqliteDriver } from '../src/store/sqlite.js';
import { afterEach, describe, expect, it } from 'vitest';
import { isAppError } from '../src/errors.js';
import { openDatabase, Store, STORE_FILE } from '../src/store/database.js';
import { isConflictOn, StoreBusyError, StoreConflictError, StoreFullError } from '../src/store/errors.js';
import { CLAIM_CANDIDATES_SQL, IN_FLIGHT_SQL, ORPHAN_QUEUED_SQL } from '../src/store/job-executions.js';
import { AccountLicences } from '../src/store/licences.js';
import { latestVersion, migrate, migrations } from '../src/store/migrations.js';
import { isStorageFull } from '../src/storage-guard.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';
import { spawn } from 'node:child_process';
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
    const tables = (db.prepare('SELECT name FROM sqlite_master WHERE type = \'table\'').all() as { name: string }[]).map((t) => t.name);
    expect(tables).toContain('audit_records');
    expect(tables).not.toContain('audit_log'); // version 1's table, dropped by version 23
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

  it('finds claimable devices, orphaned claims and executions in flight through partial indexes, not by scanning a whole job', () => {
    const store = Store.open(tempDir());
    try {
      store.db.exec('CREATE TEMP TABLE IF NOT EXISTS job_local_ready (device_id INTEGER PRIMARY KEY)');
      // The job's pending devices in claim order straight from the index, so LIMIT stops the walk (no sort of them all).
      const plan = (store.db.prepare(`EXPLAIN QUERY PLAN ${CLAIM_CANDIDATES_SQL}`).all(1, 0, 10) as { detail: string }[]).map((r) => r.detail);
      expect(plan.filter((d) => / jd /.test(d))).toEqual(['SEARCH jd USING INDEX job_devices_pending (job_id=?)']);
      expect(plan.join('\n')).not.toMatch(/TEMP B-TREE/);
      const orphans = (store.db.prepare(`EXPLAIN QUERY PLAN ${ORPHAN_QUEUED_SQL}`).all(0) as { detail: string }[]).map((r) => r.detail);
      expect(orphans).toEqual(['SEARCH job_executions USING INDEX job_executions_queued (claimed_at<?)']);
      const inFlight = (store.db.prepare(`EXPLAIN QUERY PLAN ${IN_FLIGHT_SQL}`).all(1) as { detail: string }[]).map((r) => r.detail);
      expect(inFlight).toEqual(['SEARCH job_executions USING COVERING INDEX job_executions_unfinished (job_id=? AND finished_at=?)']);
    } finally {
      store.close();
    }
  });

  it('keeps lease counts equal to the leases (insert, upsert, state change, delete, cascades) and backfills them on upgrade', () => {
    const dir = tempDir();
    const db = new SqliteDatabase(join(dir, STORE_FILE));
    db.pragma('foreign_keys = ON');
    // A store from before version 24, already holding leases.
    migrate(db, 0, migrations.filter((m) => m.version < 24));
    const account = (id: number) => db.prepare('INSERT INTO accounts (id, uuid, name, created_at) VALUES (?, ?, ?, 0)').run(id, `a${id}`, `account ${id}`);
    const device = (id: number, accountId: number) =>
      db
        .prepare(
          `INSERT INTO devices (id, uuid, account_id, serial_number, ping_interval, pong_timeout, session_timeout, credential_hash, credential_enc, created_at, updated_at)
           VALUES (?, ?, ?, ?, 60, 30, 300, x'00', x'00', 0, 0)`,
        )
        .run(id, `d${id}`, accountId, `SN${id}`);
    const lease = db.prepare(
      `INSERT INTO leases (device_id, account_id, state, leased_at) VALUES (?, ?, ?, 0)
       ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, released_at = NULL, grace_until = NULL`,
    );
    account(1);
    account(2);
    for (let id = 1; id <= 10; id++) device(id, id <= 6 ? 1 : 2);
    for (let id = 1; id <= 4; id++) lease.run(id, 1, 'managed');
    lease.run(5, 1, 'unmanaged');
    lease.run(7, 2, 'managed');
    migrate(db, 0, migrations);
    const counted = () =>
      db.prepare('SELECT account_id, state, n FROM lease_counts WHERE n > 0 ORDER BY account_id, state').all();
    const truth = () =>
      db.prepare('SELECT account_id, state, COUNT(*) AS n FROM leases GROUP BY account_id, state ORDER BY account_id, state').all();
    expect(counted()).toEqual(truth()); // backfilled
    lease.run(6, 1, 'managed'); // insert
    lease.run(5, 1, 'managed'); // upsert: unmanaged → managed
    lease.run(1, 1, 'managed'); // upsert, same state: no change
    db.prepare('UPDATE leases SET state = \'unmanaged\' WHERE device_id = 2').run();
    db.prepare('UPDATE leases SET released_at = 5, grace_until = 9 WHERE device_id = 3').run(); // not a count change
    db.prepare('DELETE FROM leases WHERE device_id = 4').run();
    db.prepare('DELETE FROM devices WHERE id = 7').run(); // cascades to its lease
    expect(counted()).toEqual(truth());
    expect(db.prepare('SELECT n FROM lease_counts WHERE account_id = 1 AND state = \'managed\'').get()).toEqual({ n: 4 });
    db.prepare('DELETE FROM accounts WHERE id = 1').run();
    expect(counted()).toEqual(truth());
    expect(db.prepare('SELECT COUNT(*) AS n FROM lease_counts WHERE account_id = 1').get()).toEqual({ n: 0 });
    db.close();
  });

  it('a write waits for another process holding the write lock, and gives up with StoreBusyError after the busy timeout without running', async () => {
    const dir = tempDir();
    const impatient = Store.open(dir, { busyTimeoutMs: 20 });
    const patient = Store.open(dir, { busyTimeoutMs: 5000 });
    // Another process takes the write lock and holds it until told to commit.
    const script = `
      const { SqliteDatabase } = await import(${JSON.stringify(new URL('../dist/store/sqlite.js', import.meta.url).href)});
      const db = new SqliteDatabase(process.argv[1], { timeout: 0 });
      db.exec('BEGIN IMMEDIATE');
      db.prepare("INSERT INTO accounts (uuid, name, created_at) VALUES ('other', 'other', 0)").run();
      console.log('locked');
      process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.exit(0); });
    `;
    const holder = spawn(process.execPath, ['--input-type=module', '-e', script, join(dir, STORE_FILE)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise((r) => holder.once('exit', r));
    await new Promise<void>((resolve) => holder.stdout.on('data', (b: Buffer) => b.toString().includes('locked') && resolve()));

    let ran = false;
    expect(() => impatient.write(() => (ran = true))).toThrow(StoreBusyError);
    expect(ran).toBe(false);
    impatient.close();

    holder.stdin.write('commit\n'); // the other process commits while this write polls for the lock
    patient.write(() => patient.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'mine\', \'mine\', 0)').run());
    const names = patient.stmt<{ uuid: string }>('SELECT uuid FROM accounts ORDER BY id').all().map((r) => r.uuid);
    expect(names).toEqual(['other', 'mine']); // it waited for the other commit, then wrote
    // The busy timeout is the one configured.
    expect(patient.db.pragma('busy_timeout', { simple: true })).toBe(5000);
    patient.close();
    await exited;
  });

  it('gives an account a new licence version on every licence change, seen by other connections, never repeated after a rollback', () => {
    const dir = tempDir();
    const a = Store.open(dir);
    const b = Store.open(dir);
    try {
      a.stmt('INSERT INTO accounts (id, uuid, name, created_at) VALUES (1, \'a1\', \'a\', 0)').run();
      const code = (c: string) => a.stmt('INSERT INTO vendor_codes (code, plan, issued_at) VALUES (?, \'basic-1\', 0)').run(c);
      const licence = (store: Store, c: string) =>
        store.stmt('INSERT INTO licences (uuid, account_id, code, plan, seats, issued_at, redeemed_at) VALUES (?, 1, ?, \'basic-1\', 1, 0, 0)').run(`l-${c}`, c);
      const versionIn = (store: Store) => new AccountLicences(store, 1).version();
      expect(versionIn(a)).toBe(0);
      code('C1');
      code('C2');
      code('C3');
      licence(b, 'C1');
      const v1 = versionIn(a);
      expect(v1).not.toBe(0);
      b.stmt('UPDATE licences SET activation_at = 5, expires_at = 9 WHERE code = \'C1\'').run();
      const v2 = versionIn(a);
      expect(v2).not.toBe(v1);
      // A change that rolls back leaves the version as it was; the next change gets a new one.
      let seenInside = 0;
      expect(() =>
        b.write(() => {
          licence(b, 'C2');
          seenInside = versionIn(b);
          throw new Error('rolled back');
        }),
      ).toThrow('rolled back');
      expect(versionIn(a)).toBe(v2);
      licence(b, 'C3');
      const v3 = versionIn(a);
      expect([v1, v2, seenInside]).not.toContain(v3);
      b.stmt('DELETE FROM licences WHERE code = \'C3\'').run();
      expect(versionIn(a)).not.toBe(v3);
    } finally {
      a.close();
      b.close();
    }
  });

  it('a unique violation is a StoreConflictError naming its table and columns (or its index), and the write is undone', () => {
    const store = Store.open(tempDir());
    try {
      const insert = store.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (?, ?, 0)');
      insert.run('a-1', 'first');
      let thrown: unknown;
      try {
        store.write(() => {
          insert.run('a-2', 'second');
          insert.run('a-1', 'again');
        });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(StoreConflictError);
      const conflict = thrown as StoreConflictError;
      expect({ table: conflict.table, columns: conflict.columns, constraint: conflict.constraint }).toEqual({
        table: 'accounts',
        columns: ['uuid'],
        constraint: null,
      });
      expect(conflict.covers('uuid')).toBe(true);
      expect(isConflictOn(conflict, 'name')).toBe(false);
      expect(conflict.retryable).toBe(false);
      expect((conflict.cause as { code?: string }).code).toBe('SQLITE_CONSTRAINT_UNIQUE');
      expect(store.stmt<{ uuid: string }>('SELECT uuid FROM accounts ORDER BY id').all().map((r) => r.uuid)).toEqual(['a-1']);

      // Two columns (a name is unique within its account).
      store.stmt('INSERT INTO device_groups (uuid, account_id, name, created_at) VALUES (?, 1, ?, 0)').run('g-1', 'plant');
      expect(() => store.stmt('INSERT INTO device_groups (uuid, account_id, name, created_at) VALUES (?, 1, ?, 0)').run('g-2', 'plant'))
        .toThrow(expect.objectContaining({ table: 'device_groups', columns: ['account_id', 'name'] }));
      // Renaming to a taken name, in a savepoint.
      store.stmt('INSERT INTO device_groups (uuid, account_id, name, created_at) VALUES (?, 1, ?, 0)').run('g-3', 'office');
      expect(() => store.savepoint(() => store.stmt('UPDATE device_groups SET name = ? WHERE uuid = ?').run('plant', 'g-3')))
        .toThrow(expect.objectContaining({ columns: ['account_id', 'name'] }));

      // A unique index on an expression is named by the index.
      store.db.exec('CREATE TEMP TABLE tags (label TEXT); CREATE UNIQUE INDEX temp.tags_label ON tags (lower(label))');
      store.stmt('INSERT INTO tags (label) VALUES (?)').run('North');
      expect(() => store.stmt('INSERT INTO tags (label) VALUES (?)').run('NORTH'))
        .toThrow(expect.objectContaining({ table: null, columns: [], constraint: 'tags_label' }));
    } finally {
      store.close();
    }
  });

  it('a write that finds no space left is a StoreFullError, seen by the storage guard, and nothing is written', () => {
    const store = Store.open(tempDir());
    try {
      // The database may not grow past its present size: every page more is "disk full" to SQLite.
      const accounts = () => store.stmt('SELECT COUNT(*) AS n FROM accounts').get();
      const before = accounts();
      const pages = store.db.pragma('page_count', { simple: true }) as number;
      store.db.pragma(`max_page_count = ${pages}`);
      let thrown: unknown;
      try {
        store.write(() => store.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (?, ?, 0)').run('big', 'x'.repeat(1 << 20)));
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(StoreFullError);
      expect((thrown as StoreFullError).retryable).toBe(true);
      expect(isStorageFull(thrown)).toBe(true);
      expect(accounts()).toEqual(before);
    } finally {
      store.close();
    }
  });

  it('errors the store does not name pass through as the driver threw them', () => {
    const store = Store.open(tempDir());
    try {
      // A foreign key to an account that does not exist: a bug of the caller, not a conflict.
      expect(() => store.stmt('INSERT INTO device_groups (uuid, account_id, name, created_at) VALUES (?, 999, ?, 0)').run('g', 'n'))
        .toThrow(expect.objectContaining({ code: 'SQLITE_CONSTRAINT_FOREIGNKEY' }));
    } finally {
      store.close();
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

  it('migration 28 counts existing jobs, summarises their targets and says who decided existing results', () => {
    const db = new SqliteDatabase(join(tempDir(), 'old.sqlite'));
    migrate(db, 0, migrations.filter((m) => m.version <= 26));
    db.exec(`
      INSERT INTO accounts (id, uuid, name, created_at) VALUES (1, 'a', 'A', 0);
      INSERT INTO devices (id, uuid, account_id, serial_number, ping_interval, pong_timeout, session_timeout, credential_hash,
        credential_enc, admission, created_at, updated_at)
      VALUES (1, 'd1', 1, 'S1', 1, 1, 1, x'00', x'00', 'managed', 0, 0), (2, 'd2', 1, 'S2', 1, 1, 1, x'00', x'00', 'unmanaged', 0, 0),
        (3, 'd3', 1, 'S3', 1, 1, 1, x'00', x'00', 'managed', 0, 0), (4, 'd4', 1, 'S4', 1, 1, 1, x'00', x'00', 'managed', 0, 0);
      INSERT INTO jobs (id, uuid, account_id, name, target, options, state, created_at)
      VALUES (1, 'j', 1, 'J', '{"all":false,"deviceIds":[1,2,3,4],"groupIds":[],"deviceUuids":["d1","d2","d3","d4"],"groupUuids":[]}', '{}', 'running', 0);
      INSERT INTO job_devices (job_id, device_id, status, result, added_at)
      VALUES (1, 1, 'done', 'succeeded', 0), (1, 2, 'pending', NULL, 0), (1, 3, 'active', NULL, 0), (1, 4, 'done', 'timed-out', 0);
      INSERT INTO job_executions (uuid, job_id, device_id, attempt, state, claimed_at, updated_at, finished_at, deadline, error_code, ignored_progress)
      VALUES ('e1', 1, 1, 1, 'succeeded', 0, 0, 5, 9, NULL, 2), ('e3', 1, 3, 1, 'installing', 0, 0, NULL, 9, NULL, 1),
        ('e4', 1, 4, 1, 'timed-out', 0, 0, 5, 9, 'SERVER_EXECUTION_TIMEOUT', 0);
    `);
    migrate(db, 0);
    const counts = Object.fromEntries(
      (db.prepare('SELECT bucket, n FROM job_counts WHERE job_id = 1').all() as Array<{ bucket: string; n: number }>).map((r) => [r.bucket, r.n]),
    );
    expect(counts).toEqual({
      'status:done': 2,
      'status:pending': 1,
      'status:active': 1,
      'result:succeeded': 1,
      'result:timed-out': 1,
      skipped: 1,
      'state:installing': 1,
      ignored: 3,
    });
    expect(JSON.parse((db.prepare('SELECT target_summary FROM jobs WHERE id = 1').get() as { target_summary: string }).target_summary)).toEqual({
      all: false,
      groupUuids: [],
      deviceCount: 4,
    });
    const sources = db.prepare('SELECT uuid, result_source FROM job_executions ORDER BY uuid').all();
    expect(sources).toEqual([
      { uuid: 'e1', result_source: 'device' },
      { uuid: 'e3', result_source: null },
      { uuid: 'e4', result_source: 'server' },
    ]);
    // The triggers keep them from here: the unmanaged device becomes managed, the active one finishes.
    db.exec(`UPDATE devices SET admission = 'managed' WHERE id = 2;
      UPDATE job_executions SET state = 'succeeded', finished_at = 6 WHERE uuid = 'e3';
      UPDATE job_devices SET status = 'done', result = 'succeeded' WHERE job_id = 1 AND device_id = 3;
      DELETE FROM devices WHERE id = 4;`);
    const after = Object.fromEntries(
      (db.prepare('SELECT bucket, n FROM job_counts WHERE job_id = 1 AND n != 0').all() as Array<{ bucket: string; n: number }>).map((r) => [r.bucket, r.n]),
    );
    expect(after).toEqual({ 'status:done': 2, 'status:pending': 1, 'result:succeeded': 2, ignored: 3 });
    db.close();
  });
});

describe('SQLite driver', () => {
  it('reports a driver that is not installed as SERVER_STORE_DRIVER_MISSING, naming the package', () => {
    let caught: unknown;
    try {
      sqliteDriver('better-sqlite3-not-installed');
    } catch (err) {
      caught = err;
    }
    expect(isAppError(caught) && caught.code).toBe('SERVER_STORE_DRIVER_MISSING');
    expect((caught as Error).message).toMatch(/better-sqlite3-not-installed.*Install the server again/);
    expect(typeof sqliteDriver()).toBe('function');
  });
});
