// The store: first the contract every repository relies on, run on both stores (the SQLite file
// and PostgreSQL); then what only the SQLite file has (pragmas, query plans, upgrades of files
// written by older servers) and its driver.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isAppError } from '../src/errors.js';
import { dialects, openDatabase, Store, STORE_FILE, type Store as StoreType } from '../src/store/database.js';
import { isConflictOn, StoreBusyError, StoreConflictError, StoreFullError } from '../src/store/errors.js';
import { CLAIM_CANDIDATES_SQL, IN_FLIGHT_SQL, ORPHAN_QUEUED_SQL } from '../src/store/job-executions.js';
import { AccountLicences } from '../src/store/licences.js';
import { latestVersion, migrate, migrations } from '../src/store/migrations.js';
import { fromPostgresError, PostgresStoreError } from '../src/store/postgres/errors.js';
import { latestPostgresVersion, migratePostgres, postgresDdl, postgresMigrations } from '../src/store/postgres/schema.js';
import { PostgresStore, WRITE_LOCK_KEY } from '../src/store/postgres/store.js';
import { SqliteDatabase, sqliteDriver } from '../src/store/sqlite.js';
import { isStorageFull } from '../src/storage-guard.js';
import { freshPostgresStore, psqlTest } from './helpers/postgres.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';

const open: StoreType[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  removeTempDirs();
});

/** A place for a new, empty store of one kind, and connections to it. */
interface Place {
  connect(options?: { busyTimeoutMs?: number }): StoreType;
  /** A script for another process that takes the write lock, inserts account 'other', says "locked" and commits on a line of input. */
  holderScript(): { args: string[] };
}

function sqlitePlace(): Place {
  const dir = tempDir();
  return {
    connect: (options) => remember(Store.open(dir, options)),
    holderScript: () => ({
      args: [
        '--input-type=module',
        '-e',
        `const { SqliteDatabase } = await import(${JSON.stringify(new URL('../dist/store/sqlite.js', import.meta.url).href)});
         const db = new SqliteDatabase(process.argv[1], { timeout: 0 });
         db.exec('BEGIN IMMEDIATE');
         db.prepare("INSERT INTO accounts (uuid, name, created_at) VALUES ('other', 'other', 0)").run();
         console.log('locked');
         process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.exit(0); });`,
        join(dir, STORE_FILE),
      ],
    }),
  };
}

function postgresPlace(): Place {
  const url = freshPostgresStore();
  return {
    connect: (options) => remember(Store.connect(url, options)),
    holderScript: () => ({
      args: [
        '--input-type=module',
        '-e',
        `const { default: pg } = await import('pg');
         const c = new pg.Client({ connectionString: process.argv[1] });
         await c.connect();
         await c.query('BEGIN');
         await c.query('SELECT pg_advisory_xact_lock($1)', [${WRITE_LOCK_KEY}]);
         await c.query("INSERT INTO accounts (uuid, name, created_at) VALUES ('other', 'other', 0)");
         console.log('locked');
         process.stdin.once('data', async () => { await c.query('COMMIT'); await c.end(); process.exit(0); });`,
        url,
      ],
    }),
  };
}

function remember<S extends StoreType>(s: S): S {
  open.push(s);
  return s;
}

const places: Array<[string, () => Place]> = [
  ['SQLite', sqlitePlace],
  ['PostgreSQL', postgresPlace],
];

describe.each(places)('store contract on %s', (_name, place) => {
  it('hands integers, reals, blobs, nulls and comparisons back as SQLite does', () => {
    const s = place().connect();
    const big = Date.UTC(2026, 0, 1) * 1000; // beyond 32 bits
    s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (?, ?, ?)').run('a', 'A', big);
    const row = s
      .stmt<{ id: number; created_at: number; n: number; same: number; half: number; empty: null }>(
        'SELECT id, created_at, (SELECT COUNT(*) FROM accounts) AS n, uuid = \'a\' AS same, 0.5 AS half, NULL AS empty FROM accounts',
      )
      .get();
    expect(row).toEqual({ id: expect.any(Number), created_at: big, n: 1, same: 1, half: 0.5, empty: null });
    const accountId = row!.id;
    s.stmt(
      `INSERT INTO devices (uuid, account_id, serial_number, ping_interval, pong_timeout, session_timeout, credential_hash, credential_enc, created_at, updated_at)
       VALUES ('d', ?, 'SN', 60, 30, 300, ?, ?, 0, 0)`,
    ).run(accountId, Buffer.from([0, 1, 255]), Buffer.alloc(0));
    const device = s.stmt<{ credential_hash: Buffer; credential_enc: Buffer }>('SELECT credential_hash, credential_enc FROM devices').get()!;
    expect(Buffer.isBuffer(device.credential_hash)).toBe(true);
    expect([...device.credential_hash]).toEqual([0, 1, 255]);
    expect(device.credential_enc.length).toBe(0);
    // SUM over integers is a number too (PostgreSQL's NUMERIC).
    expect(s.stmt<{ t: number }>('SELECT SUM(ping_interval) AS t FROM devices').get()).toEqual({ t: 60 });
  });

  it('writes statements per dialect, null-safe comparisons and RETURNING alike', () => {
    const s = place().connect();
    const id = s.stmt<{ id: number }>('INSERT INTO accounts (uuid, name, created_at) VALUES (?, ?, 0) RETURNING id').get('a', 'A')!.id;
    const ignore = dialects({
      sqlite: 'INSERT OR IGNORE INTO vendor_codes (code, plan, issued_at) VALUES (?, ?, 0)',
      postgres: 'INSERT INTO vendor_codes (code, plan, issued_at) VALUES (?, ?, 0) ON CONFLICT DO NOTHING',
    });
    expect(s.stmt(ignore).run('C1', 'basic-1').changes).toBe(1);
    expect(s.stmt(ignore).run('C1', 'basic-1').changes).toBe(0);
    // `IS` compares NULLs as equal, and a `?` or `IS` inside quotes is text.
    const named = s.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM vendor_codes WHERE redeemed_by IS ? AND plan != \'is ? here\'');
    expect(named.get(null)).toEqual({ n: 1 });
    expect(named.get(id)).toEqual({ n: 0 });
    expect(s.stmt('UPDATE vendor_codes SET redeemed_by = ? WHERE code = ?').run(id, 'C1').changes).toBe(1);
    expect(named.get(id)).toEqual({ n: 1 });
    expect(s.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM vendor_codes WHERE redeemed_by IS NOT ?').get(id)).toEqual({ n: 0 });
  });

  it('a failed transaction leaves nothing behind; a failed savepoint only its own writes', () => {
    const s = place().connect();
    const insert = s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (?, \'n\', 0)');
    expect(() =>
      s.write(() => {
        insert.run('u1');
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(s.inTransaction).toBe(false);
    s.write(() => {
      insert.run('u2');
      expect(() =>
        s.savepoint(() => {
          insert.run('u3');
          throw new Error('row failed');
        }),
      ).toThrow('row failed');
      s.savepoint(() => insert.run('u4'));
      // A constraint violation inside a savepoint does not spoil the transaction either.
      expect(() => s.savepoint(() => insert.run('u2'))).toThrow(StoreConflictError);
    });
    expect(s.stmt<{ uuid: string }>('SELECT uuid FROM accounts ORDER BY uuid').all().map((r) => r.uuid)).toEqual(['u2', 'u4']);
  });

  it('a read sees one snapshot while another connection commits', () => {
    const p = place();
    const a = p.connect();
    const b = p.connect();
    const count = () => a.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM accounts').get()!.n;
    const seen = a.read(() => {
      const before = count();
      b.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'x\', \'x\', 0)').run();
      return [before, count()];
    });
    expect(seen).toEqual([0, 0]);
    expect(count()).toBe(1);
  });

  it('keeps lease counts equal to the leases (insert, upsert, state change, delete, cascades)', () => {
    const s = place().connect();
    const account = (id: number) => s.stmt('INSERT INTO accounts (id, uuid, name, created_at) VALUES (?, ?, ?, 0)').run(id, `a${id}`, `account ${id}`);
    const device = (id: number, accountId: number) =>
      s
        .stmt(
          `INSERT INTO devices (id, uuid, account_id, serial_number, ping_interval, pong_timeout, session_timeout, credential_hash, credential_enc, created_at, updated_at)
           VALUES (?, ?, ?, ?, 60, 30, 300, ?, ?, 0, 0)`,
        )
        .run(id, `d${id}`, accountId, `SN${id}`, Buffer.from([0]), Buffer.from([0]));
    const lease = s.stmt(
      `INSERT INTO leases (device_id, account_id, state, leased_at) VALUES (?, ?, ?, 0)
       ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, released_at = NULL, grace_until = NULL`,
    );
    const counted = () => s.stmt('SELECT account_id, state, n FROM lease_counts WHERE n > 0 ORDER BY account_id, state').all();
    const truth = () => s.stmt('SELECT account_id, state, COUNT(*) AS n FROM leases GROUP BY account_id, state ORDER BY account_id, state').all();
    account(1);
    account(2);
    for (let id = 1; id <= 10; id++) device(id, id <= 6 ? 1 : 2);
    for (let id = 1; id <= 4; id++) lease.run(id, 1, 'managed');
    lease.run(5, 1, 'unmanaged');
    lease.run(7, 2, 'managed');
    expect(counted()).toEqual(truth());
    lease.run(6, 1, 'managed'); // insert
    lease.run(5, 1, 'managed'); // upsert: unmanaged → managed
    lease.run(1, 1, 'managed'); // upsert, same state: no change
    s.stmt('UPDATE leases SET state = \'unmanaged\' WHERE device_id = 2').run();
    s.stmt('UPDATE leases SET released_at = 5, grace_until = 9 WHERE device_id = 3').run(); // not a count change
    s.stmt('DELETE FROM leases WHERE device_id = 4').run();
    s.stmt('DELETE FROM devices WHERE id = 7').run(); // cascades to its lease
    expect(counted()).toEqual(truth());
    expect(s.stmt('SELECT n FROM lease_counts WHERE account_id = 1 AND state = \'managed\'').get()).toEqual({ n: 4 });
    s.stmt('DELETE FROM accounts WHERE id = 1').run();
    expect(counted()).toEqual(truth());
    expect(s.stmt('SELECT COUNT(*) AS n FROM lease_counts WHERE account_id = 1').get()).toEqual({ n: 0 });
  });

  it('keeps job counts by trigger: devices, results, skipped (admission changes, device deletion), executions, ignored progress', () => {
    const s = place().connect();
    s.stmt('INSERT INTO accounts (id, uuid, name, created_at) VALUES (1, \'a\', \'A\', 0)').run();
    const device = s.stmt(
      `INSERT INTO devices (id, uuid, account_id, serial_number, ping_interval, pong_timeout, session_timeout, credential_hash, credential_enc, admission, created_at, updated_at)
       VALUES (?, ?, 1, ?, 1, 1, 1, ?, ?, ?, 0, 0)`,
    );
    for (const [id, admission] of [[1, 'managed'], [2, 'unmanaged'], [3, 'managed'], [4, 'managed']] as const) device.run(id, `d${id}`, `S${id}`, Buffer.from([0]), Buffer.from([0]), admission);
    s.stmt('INSERT INTO jobs (id, uuid, account_id, name, target, options, state, created_at) VALUES (1, \'j\', 1, \'J\', \'{}\', \'{}\', \'running\', 0)').run();
    const jd = s.stmt('INSERT INTO job_devices (job_id, device_id, status, result, added_at) VALUES (1, ?, ?, ?, 0)');
    jd.run(1, 'done', 'succeeded');
    jd.run(2, 'pending', null);
    jd.run(3, 'active', null);
    jd.run(4, 'done', 'timed-out');
    const ex = s.stmt('INSERT INTO job_executions (uuid, job_id, device_id, attempt, state, claimed_at, updated_at, finished_at, deadline, ignored_progress) VALUES (?, 1, ?, 1, ?, 0, 0, ?, 9, ?)');
    ex.run('e1', 1, 'succeeded', 5, 2);
    ex.run('e3', 3, 'installing', null, 1);
    const counts = () =>
      Object.fromEntries(s.stmt<{ bucket: string; n: number }>('SELECT bucket, n FROM job_counts WHERE job_id = 1 AND n != 0').all().map((r) => [r.bucket, r.n]));
    expect(counts()).toEqual({
      'status:done': 2,
      'status:pending': 1,
      'status:active': 1,
      'result:succeeded': 1,
      'result:timed-out': 1,
      skipped: 1,
      'state:installing': 1,
      ignored: 3,
    });
    s.stmt('UPDATE devices SET admission = \'managed\' WHERE id = 2').run();
    s.stmt('UPDATE job_executions SET state = \'succeeded\', finished_at = 6, ignored_progress = 4 WHERE uuid = \'e3\'').run();
    s.stmt('UPDATE job_devices SET status = \'done\', result = \'succeeded\' WHERE job_id = 1 AND device_id = 3').run();
    s.stmt('DELETE FROM devices WHERE id = 4').run();
    expect(counts()).toEqual({ 'status:done': 2, 'status:pending': 1, 'result:succeeded': 2, ignored: 6 });
    s.stmt('UPDATE devices SET admission = \'unmanaged\' WHERE id = 2').run();
    expect(counts()).toMatchObject({ skipped: 1 });
    s.stmt('DELETE FROM devices WHERE id = 2').run(); // a pending, unmanaged device leaves: skipped and pending go with it
    expect(counts()).toEqual({ 'status:done': 2, 'result:succeeded': 2, ignored: 6 });
    s.stmt('DELETE FROM jobs WHERE id = 1').run();
    expect(s.stmt('SELECT COUNT(*) AS n FROM job_counts').get()).toEqual({ n: 0 });
  });

  it('gives an account a new licence version on every licence change, seen by other connections, never repeated after a rollback', () => {
    const p = place();
    const a = p.connect();
    const b = p.connect();
    a.stmt('INSERT INTO accounts (id, uuid, name, created_at) VALUES (1, \'a1\', \'a\', 0)').run();
    const code = (c: string) => a.stmt('INSERT INTO vendor_codes (code, plan, issued_at) VALUES (?, \'basic-1\', 0)').run(c);
    const licence = (store: StoreType, c: string) =>
      store.stmt('INSERT INTO licences (uuid, account_id, code, plan, seats, issued_at, redeemed_at) VALUES (?, 1, ?, \'basic-1\', 1, 0, 0)').run(`l-${c}`, c);
    const versionIn = (store: StoreType) => new AccountLicences(store, 1).version();
    expect(versionIn(a)).toBe(0);
    code('C1');
    code('C2');
    code('C3');
    licence(b, 'C1');
    const v1 = versionIn(a);
    expect(v1).not.toBe(0);
    expect(Number.isSafeInteger(v1)).toBe(true);
    b.stmt('UPDATE licences SET activation_at = 5, expires_at = 9 WHERE code = \'C1\'').run();
    const v2 = versionIn(a);
    expect(v2).not.toBe(v1);
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
  });

  it('keeps audit records append-only while their account exists', () => {
    const s = place().connect();
    s.stmt('INSERT INTO accounts (id, uuid, name, created_at) VALUES (1, \'a\', \'A\', 0)').run();
    s.stmt('INSERT INTO audit_records (account_id, seq, at, actor, action, status, prev_hash, hash) VALUES (1, 1, 0, \'x\', \'y\', 200, \'\', \'h\')').run();
    expect(() => s.stmt('UPDATE audit_records SET action = \'z\'').run()).toThrow(/append-only/);
    expect(() => s.stmt('DELETE FROM audit_records').run()).toThrow(/append-only/);
    s.stmt('DELETE FROM accounts WHERE id = 1').run(); // the cascade is the only way out
    expect(s.stmt('SELECT COUNT(*) AS n FROM audit_records').get()).toEqual({ n: 0 });
  });

  it('a write waits for another process holding the write lock, and gives up with StoreBusyError after the busy timeout without running', async () => {
    const p = place();
    const impatient = p.connect({ busyTimeoutMs: 20 });
    const patient = p.connect({ busyTimeoutMs: 10_000 });
    const { args } = p.holderScript();
    const holder = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise((r) => holder.once('exit', r));
    await new Promise<void>((resolve) => holder.stdout.on('data', (b: Buffer) => b.toString().includes('locked') && resolve()));

    let ran = false;
    expect(() => impatient.write(() => (ran = true))).toThrow(StoreBusyError);
    expect(ran).toBe(false);
    // A write statement outside a transaction queues for the lock too.
    expect(() => impatient.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'rude\', \'rude\', 0)').run()).toThrow(StoreBusyError);

    holder.stdin.write('commit\n'); // the other process commits while this write waits for the lock
    patient.write(() => patient.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'mine\', \'mine\', 0)').run());
    const names = patient.stmt<{ uuid: string }>('SELECT uuid FROM accounts ORDER BY id').all().map((r) => r.uuid);
    expect(names).toEqual(['other', 'mine']); // it waited for the other commit, then wrote
    await exited;
  });

  it('tryWrite runs at once when the write lock is free, and returns without waiting or running while another process holds it', async () => {
    const p = place();
    const s = p.connect({ busyTimeoutMs: 10_000 });
    // The PostgreSQL store has none: its callers write (and wait) as before.
    if (!s.tryWrite) return expect(s.dialect).toBe('postgres');
    expect(s.tryWrite(() => s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'first\', \'first\', 0)').run().changes)).toEqual({ value: 1 });
    const { args } = p.holderScript();
    const holder = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise((r) => holder.once('exit', r));
    await new Promise<void>((resolve) => holder.stdout.on('data', (b: Buffer) => b.toString().includes('locked') && resolve()));

    let ran = false;
    const started = performance.now();
    expect(s.tryWrite(() => (ran = true))).toBeUndefined();
    expect(ran).toBe(false);
    expect(performance.now() - started).toBeLessThan(1_000); // far below the busy timeout: it did not wait
    holder.stdin.write('commit\n');
    await exited;
    expect(s.tryWrite(() => s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'mine\', \'mine\', 0)').run().changes)).toEqual({ value: 1 });
    expect(s.stmt<{ uuid: string }>('SELECT uuid FROM accounts ORDER BY id').all().map((r) => r.uuid)).toEqual(['first', 'other', 'mine']);
  });

  it('a unique violation is a StoreConflictError naming its table and columns (or its index), and the write is undone', () => {
    const s = place().connect();
    const insert = s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (?, ?, 0)');
    insert.run('a-1', 'first');
    let thrown: unknown;
    try {
      s.write(() => {
        insert.run('a-2', 'second');
        insert.run('a-1', 'again');
      });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(StoreConflictError);
    const conflict = thrown as StoreConflictError;
    expect({ table: conflict.table, columns: conflict.columns }).toEqual({ table: 'accounts', columns: ['uuid'] });
    expect(conflict.covers('uuid')).toBe(true);
    expect(isConflictOn(conflict, 'name')).toBe(false);
    expect(conflict.retryable).toBe(false);
    expect(conflict.cause).toBeInstanceOf(Error); // the driver's error, for logs
    expect(s.stmt<{ uuid: string }>('SELECT uuid FROM accounts ORDER BY id').all().map((r) => r.uuid)).toEqual(['a-1']);
    const accountId = s.stmt<{ id: number }>('SELECT id FROM accounts').get()!.id;

    // Two columns (a name is unique within its account).
    const group = s.stmt('INSERT INTO device_groups (uuid, account_id, name, created_at) VALUES (?, ?, ?, 0)');
    group.run('g-1', accountId, 'plant');
    expect(() => group.run('g-2', accountId, 'plant')).toThrow(expect.objectContaining({ table: 'device_groups', columns: ['account_id', 'name'] }));
    // Renaming to a taken name, in a savepoint inside a transaction that goes on.
    group.run('g-3', accountId, 'office');
    s.write(() => {
      expect(() => s.savepoint(() => s.stmt('UPDATE device_groups SET name = ? WHERE uuid = ?').run('plant', 'g-3')))
        .toThrow(expect.objectContaining({ columns: ['account_id', 'name'] }));
      s.stmt('UPDATE device_groups SET name = ? WHERE uuid = ?').run('yard', 'g-3');
    });
    expect(s.stmt('SELECT name FROM device_groups WHERE uuid = \'g-3\'').get()).toEqual({ name: 'yard' });

    // A unique index on an expression is named by the index.
    s.stmt('CREATE TABLE tags (label TEXT)').run();
    s.stmt('CREATE UNIQUE INDEX tags_label ON tags (lower(label))').run();
    s.stmt('INSERT INTO tags (label) VALUES (?)').run('North');
    expect(() => s.stmt('INSERT INTO tags (label) VALUES (?)').run('NORTH')).toThrow(expect.objectContaining({ columns: [], constraint: 'tags_label' }));
  });

  it('errors the store does not name pass through as the driver threw them', () => {
    const s = place().connect();
    // A foreign key to an account that does not exist: a bug of the caller, not a conflict.
    let thrown: unknown;
    try {
      s.stmt('INSERT INTO device_groups (uuid, account_id, name, created_at) VALUES (?, 999, ?, 0)').run('g', 'n');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect(thrown).not.toBeInstanceOf(StoreConflictError);
    expect((thrown as { code?: string }).code).toBe(s.dialect === 'sqlite' ? 'SQLITE_CONSTRAINT_FOREIGNKEY' : '23503');
  });
});

describe('PostgreSQL store', () => {
  it('translates PostgreSQL\'s errors into the store\'s: unique violation, disk full, lock timeout; others keep their SQLSTATE', () => {
    const unique = fromPostgresError({
      message: 'duplicate key value violates unique constraint "device_groups_account_id_name_key"',
      code: '23505',
      table: 'device_groups',
      constraint: 'device_groups_account_id_name_key',
      detail: 'Key (account_id, name)=(1, a "quoted", name) already exists.',
    });
    expect(unique).toBeInstanceOf(StoreConflictError);
    expect(unique).toMatchObject({ table: 'device_groups', columns: ['account_id', 'name'], constraint: 'device_groups_account_id_name_key' });
    expect((unique as StoreConflictError).cause).toMatchObject({ sqlState: '23505' });
    // A key on an expression, or no detail: the constraint's name only.
    expect(fromPostgresError({ message: 'dup', code: '23505', constraint: 'tags_label', detail: 'Key (lower(label))=(north) already exists.' }))
      .toMatchObject({ columns: [], constraint: 'tags_label' });
    expect(fromPostgresError({ message: 'dup', code: '23505', constraint: 'c' })).toMatchObject({ columns: [], constraint: 'c' });

    const full = fromPostgresError({ message: 'could not extend file: No space left on device', code: '53100' });
    expect(full).toBeInstanceOf(StoreFullError);
    expect(isStorageFull(full)).toBe(true);
    expect(fromPostgresError({ message: 'canceling statement due to lock timeout', code: '55P03' })).toBeInstanceOf(StoreBusyError);
    const other = fromPostgresError({ message: 'syntax error', code: '42601' }, 'SELEC 1');
    expect(other).toBeInstanceOf(PostgresStoreError);
    expect(other).toMatchObject({ code: '42601', message: 'syntax error (in: SELEC 1)' });
  });

  it('has a migration for every SQLite schema version since its baseline', () => {
    expect(latestPostgresVersion()).toBe(latestVersion());
  });

  it('carries a later SQLite migration over in PostgreSQL\'s types, and refuses one it cannot', () => {
    expect(postgresDdl('CREATE TABLE t (\n  k TEXT PRIMARY KEY,\n  n INTEGER NOT NULL,\n  r REAL,\n  b BLOB\n) WITHOUT ROWID;')).toBe(
      'CREATE TABLE t (\n  k TEXT PRIMARY KEY,\n  n BIGINT NOT NULL,\n  r DOUBLE PRECISION,\n  b BYTEA\n);',
    );
    expect(postgresDdl('ALTER TABLE t ADD COLUMN m INTEGER NOT NULL DEFAULT 0; UPDATE t SET note = \'an INTEGER, it\'\'s a BLOB\';')).toBe(
      'ALTER TABLE t ADD COLUMN m BIGINT NOT NULL DEFAULT 0; UPDATE t SET note = \'an INTEGER, it\'\'s a BLOB\';',
    );
    expect(() => postgresDdl('CREATE TABLE t (id INTEGER PRIMARY KEY)')).toThrow(/by hand .*INTEGER PRIMARY KEY/);
    expect(() => postgresDdl('CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END')).toThrow(/CREATE TRIGGER/);
    expect(postgresMigrations.find((m) => m.version === 35)?.sql).toMatch(/data BYTEA NOT NULL/);
  });

  it('applies its migrations once, forward only, and refuses a database from a newer server', () => {
    const url = freshPostgresStore();
    const s = remember(Store.connect(url));
    expect(s.stmt<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version').all().map((r) => r.version)).toEqual(
      postgresMigrations.map((m) => m.version),
    );
    const next = [...postgresMigrations, { version: latestVersion() + 1, name: 'test', sql: 'CREATE TABLE t2 (x BIGINT)' }];
    expect(migratePostgres(s, 0, next)).toEqual([latestVersion() + 1]);
    expect(migratePostgres(s, 0, next)).toEqual([]);
    try {
      Store.connect(url);
      expect.unreachable();
    } catch (err) {
      expect(isAppError(err) && err.code).toBe('SERVER_STORE_VERSION');
    }
  });

  it('connecting to several processes\' worth of stores at once applies the schema once', () => {
    const url = freshPostgresStore();
    const stores = [1, 2, 3].map(() => remember(Store.connect(url)));
    expect(stores[2]!.stmt('SELECT COUNT(*) AS n FROM schema_migrations').get()).toEqual({ n: postgresMigrations.length });
  });

  it('with a profile directory, writes its round trips by statement text with their caller when it closes', () => {
    const dir = tempDir();
    const s = Store.connect(freshPostgresStore(), { profileDir: dir });
    for (let i = 0; i < 3; i++) s.stmt('SELECT   ? AS n').get(i);
    s.write(() => s.stmt('SELECT 2').get());
    s.close();
    const [file] = readdirSync(dir);
    expect(file).toMatch(/^pg-profile-\d+-\d+\.json$/);
    const profile = JSON.parse(readFileSync(join(dir, file!), 'utf8')) as { statements: Array<{ sql: string; count: number; callers: Record<string, number> }> };
    const by = new Map(profile.statements.map((e) => [e.sql, e]));
    expect(by.get('SELECT $1 AS n')).toMatchObject({ count: 3 });
    expect(Object.keys(by.get('SELECT $1 AS n')!.callers)).toEqual([expect.stringMatching(/store\.test\.ts:\d+$/)]);
    // The caller is the first frame outside the store: the connect (its migrations) and the write here.
    expect(Object.keys(by.get('BEGIN')!.callers)).toHaveLength(2);
    expect(Object.keys(by.get('BEGIN')!.callers)).toEqual(expect.arrayContaining([expect.stringMatching(/store\.test\.ts:\d+$/)]));
    expect(by.get('COMMIT')!.count).toBe(by.get('BEGIN')!.count);
  });

  it('connects again after PostgreSQL ends its connection: a transaction cut off fails as retryable and is not committed', () => {
    const s = remember(Store.connect(freshPostgresStore()));
    const backend = () => s.stmt<{ pid: number }>('SELECT pg_backend_pid() AS pid').get()!.pid;
    // pg_terminate_backend(pid, timeout) returns once the backend has exited.
    const terminate = (pid: number) => expect(psqlTest(`SELECT pg_terminate_backend(${pid}, 10000)`).trim()).toBe('t');

    // Ended while idle: the next statement runs on a new connection, as if nothing happened.
    const first = backend();
    terminate(first);
    const second = backend();
    expect(second).not.toBe(first);

    // Ended inside a write transaction: the transaction fails with a retryable error and leaves nothing.
    let caught: unknown;
    try {
      s.write(() => {
        s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'cut\', \'cut\', 0)').run();
        terminate(backend());
        s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'cut2\', \'cut2\', 0)').run();
      });
    } catch (err) {
      caught = err;
    }
    expect(isAppError(caught) && caught.code).toBe('SERVER_UNAVAILABLE');
    expect(s.inTransaction).toBe(false);
    expect(s.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM accounts WHERE uuid IN (\'cut\', \'cut2\')').get()).toEqual({ n: 0 });

    // The next transaction commits on the new connection.
    s.write(() => s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'after\', \'after\', 0)').run());
    expect(s.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM accounts WHERE uuid = \'after\'').get()).toEqual({ n: 1 });
    expect(backend()).not.toBe(second);
  });

  it('while PostgreSQL cannot be reached, fails each call as retryable, and goes on once it can again', async () => {
    // The store reaches PostgreSQL through a TCP relay in a child process: killing the relay cuts
    // the connection and refuses new ones, as a database server that went down does.
    const target = new URL(freshPostgresStore());
    const relay = (port: number) => {
      const child = spawn(process.execPath, [
        '-e',
        `const net = require('node:net');
         const server = net.createServer((c) => { const u = net.connect(${Number(target.port || 5432)}, ${JSON.stringify(target.hostname)}); c.pipe(u).pipe(c); c.on('error', () => u.destroy()); u.on('error', () => c.destroy()); });
         server.listen(${port}, '127.0.0.1', () => console.log(server.address().port));`,
      ], { stdio: ['ignore', 'pipe', 'inherit'] });
      return new Promise<{ child: typeof child; port: number }>((resolve, reject) => {
        child.stdout.once('data', (b: Buffer) => resolve({ child, port: Number(String(b).trim()) }));
        child.once('exit', (code) => reject(new Error(`relay exited (${code})`)));
      });
    };
    const up = await relay(0);
    const viaRelay = new URL(target);
    viaRelay.port = String(up.port);
    const s = remember(Store.connect(viaRelay.href));
    s.write(() => s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'before\', \'before\', 0)').run());

    up.child.kill('SIGKILL');
    await new Promise((resolve) => up.child.once('exit', resolve));
    const code = () => {
      try {
        s.stmt('SELECT 1 AS one').get();
        return 'ok';
      } catch (err) {
        return isAppError(err) ? err.code : String(err);
      }
    };
    expect(code()).toBe('SERVER_UNAVAILABLE');
    expect(code()).toBe('SERVER_UNAVAILABLE');

    const again = await relay(up.port);
    try {
      // A failed try makes the next ones wait a moment before connecting again: poll until one does.
      const deadline = Date.now() + 20_000;
      let last = code();
      while (last !== 'ok' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        last = code();
      }
      expect(last).toBe('ok');
      expect(s.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM accounts WHERE uuid = \'before\'').get()).toEqual({ n: 1 });
      s.write(() => s.stmt('INSERT INTO accounts (uuid, name, created_at) VALUES (\'after\', \'after\', 0)').run());
      expect(s.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM accounts').get()).toEqual({ n: 2 });
    } finally {
      s.close();
      again.child.kill('SIGKILL');
    }
  });

  it('reports a database it cannot reach as SERVER_STORE_UNREACHABLE, without the password', () => {
    let caught: unknown;
    try {
      PostgresStore.connect('postgres://postgres:secret@127.0.0.1:1/none');
    } catch (err) {
      caught = err;
    }
    expect(isAppError(caught) && caught.code).toBe('SERVER_STORE_UNREACHABLE');
    expect((caught as Error).message).not.toContain('secret');
  });
});

describe('SQLite store: pragmas, query plans, upgrades of older files', () => {
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

  it('migration numbers are strictly increasing', () => {
    // Ranges are reserved per line of work (control channel 2–9, packets and jobs 10+), so numbers may skip.
    migrations.forEach((m, i) => expect(m.version).toBeGreaterThan(i === 0 ? 0 : migrations[i - 1]!.version));
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
