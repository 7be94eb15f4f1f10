/**
 * Cost of one store statement on each store, measured in the same run (loopback only, bounded,
 * stops by itself):
 *
 *   npm run build && npx tsx server-stub/bench/store-statements.ts [--n 2000] [--batches 20] [--url postgres://postgres@127.0.0.1:5432/postgres]
 *
 * For each operation it times N repetitions on the SQLite file (synchronous driver, WAL,
 * synchronous=FULL), on the PostgreSQL store (synchronous through its worker thread), and, as the
 * floor of the latter, the same statements sent with the `pg` driver directly (async, awaited one
 * by one: the database's own round trip without the bridge). Operations: a point read by uuid, the
 * same read inside a read transaction, a one-row update in a write transaction (on PostgreSQL:
 * BEGIN + advisory lock + COMMIT), one device admission (AdmissionService.admit), and, per hello,
 * a batch of 100 hellos admitted in one transaction as the admission gate does (admitMany) and
 * the same 100 devices released together (releaseMany), `--batches` times. PostgreSQL works in a
 * schema of its own, dropped at the end. Prints one JSON line per measurement.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { TestClock } from '../src/clock.js';
import { loadConfig } from '../src/config.js';
import { createServices } from '../src/services.js';
import { Store, type Store as StoreType } from '../src/store/database.js';
import { WRITE_LOCK_KEY } from '../src/store/postgres/store.js';
import { line, withBenchStores } from './bench-stores.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '2000' },
    batches: { type: 'string', default: '20' },
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const N = Number(values.n);
const BATCHES = Number(values.batches);
/** Hellos per admission batch (the gate admits up to 256 per transaction). */
const BATCH = 100;
function time(store: string, op: string, fn: () => void): void {
  for (let i = 0; i < Math.min(100, N); i++) fn(); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < N; i++) fn();
  const us = ((performance.now() - t0) * 1000) / N;
  line({ store, op, n: N, usPerOp: Math.round(us * 10) / 10 });
}

async function timeAsync(store: string, op: string, fn: () => Promise<void>): Promise<void> {
  for (let i = 0; i < Math.min(100, N); i++) await fn();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await fn();
  const us = ((performance.now() - t0) * 1000) / N;
  line({ store, op, n: N, usPerOp: Math.round(us * 10) / 10 });
}

/** A store with one account, a Pro licence (100 seats) and 100 devices, through the server's own services. */
async function populate(store: StoreType, dataDir: string) {
  const clock = new TestClock(Date.UTC(2026, 0, 1));
  const config = loadConfig({ flags: { dataDir, logLevel: 'silent', scryptCost: 1024, leaseGraceSec: 0 }, env: {} });
  const services = createServices(config, { clock, store });
  const { accountId } = await services.auth.createAccount({ name: 'bench', username: `bench-${store.dialect}`, password: 'correct horse battery' });
  const scope = services.auth.scope(accountId);
  for (const code of services.licensing.issue('pro', 1, clock.now())) {
    const l = services.licensing.redeem(scope, code, clock.now());
    services.licensing.activate(scope, l.uuid, undefined, clock.now());
  }
  const routers = Array.from({ length: BATCH }, (_, i) => {
    const row = services.devices.create(scope, { serialNumber: `B-${store.dialect}-${i}`, name: `B-${i}` });
    return { uuid: row.uuid, serialNumber: `B-${store.dialect}-${i}`, credential: services.devices.credential(scope, row.uuid), id: row.id };
  });
  return { admission: services.admission, routers, close: () => services.close() };
}

async function run(kind: string, store: StoreType, dataDir: string): Promise<void> {
  const { admission, routers, close } = await populate(store, dataDir);
  const read = store.stmt('SELECT * FROM devices WHERE uuid = ?');
  const update = store.stmt('UPDATE devices SET last_seen_at = ? WHERE id = ?');
  let i = 0;
  time(kind, 'point read', () => void read.get(routers[i++ % routers.length]!.uuid));
  time(kind, 'point read in a read transaction', () => store.read(() => read.get(routers[i++ % routers.length]!.uuid)));
  time(kind, 'one-row update in a write transaction', () => store.write(() => update.run(i, routers[i++ % routers.length]!.id)));
  time(kind, 'admit one device (AdmissionService.admit)', () => {
    const r = routers[i++ % routers.length]!;
    admission.admit({ serialNumber: r.serialNumber, credential: r.credential });
    admission.release(r.uuid);
  });
  // A reconnect wave: BATCH hellos in one transaction (the admission gate's group commit), then the
  // same devices' connections closing together.
  const hellos = routers.map((r) => ({ deviceUuid: r.uuid, credential: r.credential }));
  const uuids = routers.map((r) => r.uuid);
  let admitMs = 0;
  let releaseMs = 0;
  for (let b = -Math.min(3, BATCHES); b < BATCHES; b++) {
    const t0 = performance.now();
    const results = admission.admitMany(hellos);
    const t1 = performance.now();
    admission.releaseMany(uuids);
    const t2 = performance.now();
    if (results.some((r) => r.outcome !== 'managed')) throw new Error('bench: every hello of the batch must be admitted');
    if (b < 0) continue; // warm-up
    admitMs += t1 - t0;
    releaseMs += t2 - t1;
  }
  const per = (ms: number) => Math.round(((ms * 1000) / (BATCHES * BATCH)) * 10) / 10;
  line({ store: kind, op: `admit a batch of ${BATCH} hellos (admitMany), per hello`, n: BATCHES * BATCH, usPerOp: per(admitMs) });
  line({ store: kind, op: `release ${BATCH} devices together (releaseMany), per device`, n: BATCHES * BATCH, usPerOp: per(releaseMs) });
  close();
}

await withBenchStores(values.url!, 'bench', async ({ sqliteDir, schemaUrl }) => {
  line({ node: process.version, n: N, note: 'µs per operation, one at a time; postgres-floor = the pg driver awaited directly, without the worker bridge' });
  const sqlite = Store.open(sqliteDir);
  await run('sqlite', sqlite, sqliteDir);
  sqlite.close();
  const postgres = Store.connect(schemaUrl);
  await run('postgres', postgres, sqliteDir);
  postgres.close();

  // The floor: the same statements through the pg driver directly, in the same database.
  const c = new pg.Client({ connectionString: schemaUrl });
  await c.connect();
  const uuids = (await c.query<{ uuid: string; id: string }>('SELECT uuid, id FROM devices')).rows;
  let i = 0;
  await timeAsync('postgres-floor', 'point read', async () => {
    await c.query('SELECT * FROM devices WHERE uuid = $1', [uuids[i++ % uuids.length]!.uuid]);
  });
  await timeAsync('postgres-floor', 'point read in a read transaction', async () => {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await c.query('SELECT * FROM devices WHERE uuid = $1', [uuids[i++ % uuids.length]!.uuid]);
    await c.query('COMMIT');
  });
  await timeAsync('postgres-floor', 'one-row update in a write transaction', async () => {
    await c.query('BEGIN');
    await c.query('SELECT set_config(\'lock_timeout\', $1, true)', ['5000ms']);
    await c.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK_KEY]);
    await c.query('UPDATE devices SET last_seen_at = $1 WHERE id = $2', [i, uuids[i++ % uuids.length]!.id]);
    await c.query('COMMIT');
  });
  await c.end();
});
