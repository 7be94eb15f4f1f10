/**
 * Bulk writes before and after they became set-based, on each store, in the same run (loopback
 * only, bounded, stops by itself):
 *
 *   npm run build && npx tsx server-stub/bench/bulk-writes.ts [--rows 20000] [--licences 600] [--url postgres://postgres@127.0.0.1:5432/postgres]
 *
 * "before" issues the statements the services used to issue, in the same transactions, through
 * today's repositories: the CSV registration's serial number check and insert per row; bulk
 * activation re-reading the account's licences after each activation, one update and one event
 * per licence, then its sweep recording every due event with a statement of its own; the sweep
 * alone likewise. "after" calls today's services (DeviceService.importCsv,
 * LicensingService.activateMany, AdmissionService.sweepAccount), and, for the CSV, also the two
 * set-based repository calls alone (serialNumbersTaken + insertMany), which is what the first
 * column compares with. Last, the start of a PostgreSQL write transaction with the `pg` driver
 * directly: BEGIN, the lock timeout and the advisory lock as three statements, and as one simple
 * query. Every figure is the time the write lock was held (ms), one JSON line each; the sweep is
 * the median of 5. PostgreSQL works in a schema of its own, dropped at the end.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { TestClock } from '../src/clock.js';
import { loadConfig } from '../src/config.js';
import { checkActivate, dueLicenceEvents, licenceStatus } from '../src/licensing/rules.js';
import { createServices, type Services } from '../src/services.js';
import { Store, type Store as StoreType } from '../src/store/database.js';
import { type NewDevice, serialNumbersTaken, serialNumberTaken } from '../src/store/devices.js';
import { AccountEvents } from '../src/store/events.js';
import type { AccountScope } from '../src/store/scope.js';
import { WRITE_LOCK_KEY } from '../src/store/postgres/store.js';
import { line, withBenchStores } from './bench-stores.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '20000' },
    licences: { type: 'string', default: '600' },
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const ROWS = Number(values.rows);
const LICENCES = Number(values.licences);
function ms(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return Math.round((performance.now() - t0) * 10) / 10;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

let accounts = 0;
async function account(services: Services): Promise<AccountScope> {
  const { accountId } = await services.auth.createAccount({ name: 'bench', username: `bulk-${++accounts}`, password: 'correct horse battery' });
  return services.auth.scope(accountId);
}

/** An account with a Pro licence active (device registration needs a plan). */
async function planAccount(services: Services, clock: TestClock): Promise<AccountScope> {
  const scope = await account(services);
  const [code] = services.licensing.issue('pro', 1, clock.now());
  const l = services.licensing.redeem(scope, code!, clock.now());
  services.licensing.activate(scope, l.uuid, undefined, clock.now());
  return scope;
}

/** An account with `n` Available basic-25 licences, written directly (redeeming one by one reads them all each time). */
async function stockAccount(services: Services, clock: TestClock, n: number): Promise<AccountScope> {
  const scope = await account(services);
  const codes = services.licensing.issue('basic-25', n, clock.now());
  const now = clock.now();
  services.store.write(() => {
    for (const code of codes) scope.licences.insert({ uuid: randomUUID(), code, kind: 'basic-25', seats: 25, issuedAt: now, redeemedAt: now });
  });
  return scope;
}

function devices(prefix: string, n: number): NewDevice[] {
  return Array.from({ length: n }, (_, i) => ({
    uuid: randomUUID(),
    serialNumber: `${prefix}-${i}`,
    name: `Router ${i}`,
    location: `Hall ${i % 20}`,
    groupId: null,
    model: null,
    firmware: null,
    pingInterval: 120,
    pongTimeout: 104,
    sessionTimeout: 16,
    customFields: {},
    credentialHash: Buffer.alloc(32, i & 0xff),
    credentialSealed: Buffer.alloc(60, i & 0xff),
  }));
}

/** The sweep's due events, one statement each (what the sweep did before). */
function recordDueOneByOne(store: StoreType, scope: AccountScope, now: number): void {
  store.write(() => {
    const licences = scope.licences.all();
    const log = new AccountEvents(store, scope.accountId);
    for (const l of licences) {
      for (const e of dueLicenceEvents(l, licences, now)) log.record({ type: e.type, subject: l.uuid, data: e.data, at: e.at, dedupeKey: e.dedupeKey });
    }
  });
}

async function run(kind: 'sqlite' | 'postgres', store: StoreType, dataDir: string): Promise<void> {
  const clock = new TestClock(Date.UTC(2026, 0, 1));
  const config = loadConfig({ flags: { dataDir, logLevel: 'silent', scryptCost: 1024 }, env: {} });
  const services = createServices(config, { clock, store });
  const now = clock.now();

  // CSV registration.
  {
    const scope = await planAccount(services, clock);
    const list = devices(`BEFORE-${kind}`, ROWS);
    const t = ms(() =>
      store.write(() => {
        for (const d of list) if (!serialNumberTaken(store, d.serialNumber)) scope.devices.insert(d, now);
      }),
    );
    line({ store: kind, op: 'csv registration: store statements', variant: 'before (check + insert per row)', rows: ROWS, ms: t });
  }
  {
    const scope = await planAccount(services, clock);
    const list = devices(`AFTER-${kind}`, ROWS);
    const t = ms(() =>
      store.write(() => {
        const taken = serialNumbersTaken(store, list.map((d) => d.serialNumber));
        scope.devices.insertMany(list.filter((d) => !taken.has(d.serialNumber)), now);
      }),
    );
    line({ store: kind, op: 'csv registration: store statements', variant: 'after (serialNumbersTaken + insertMany)', rows: ROWS, ms: t });
  }
  {
    const scope = await planAccount(services, clock);
    const csv = ['serialNumber,name,location', ...Array.from({ length: ROWS }, (_, i) => `CSV-${kind}-${i},Router ${i},Hall ${i % 20}`)].join('\n');
    let imported = 0;
    const t = ms(() => {
      imported = services.devices.importCsv(scope, `${csv}\n`, false, ROWS + 1).imported;
    });
    line({ store: kind, op: 'csv registration: DeviceService.importCsv end to end', variant: 'after', rows: ROWS, imported, ms: t });
  }

  // Bulk activation, then its sweep.
  {
    const scope = await stockAccount(services, clock, LICENCES);
    const t = ms(() => {
      store.write(() => {
        const before = scope.licences.all();
        const targets = before.filter((l) => licenceStatus(l, before, now) === 'available').map((l) => l.uuid);
        for (const uuid of targets) {
          const all = scope.licences.all();
          const licence = all.find((l) => l.uuid === uuid)!;
          const end = checkActivate(licence, all, now, now);
          scope.licences.setActivation(licence.id, now, end);
          scope.events.record({ type: 'licence.activation-requested', subject: uuid, data: { licence: uuid, kind: licence.kind }, at: now });
        }
      });
      services.admission.reconcile(scope.accountId, now);
      recordDueOneByOne(store, scope, now);
      services.licensing.list(scope, now);
    });
    line({ store: kind, op: 'activate licences (all Available) + its sweep', variant: 'before (re-read per licence, a statement per row)', licences: LICENCES, ms: t });
  }
  const activated = await stockAccount(services, clock, LICENCES);
  {
    let n = 0;
    const t = ms(() => {
      n = services.licensing.activateMany(activated, undefined, undefined, now).length;
    });
    line({ store: kind, op: 'activate licences (all Available) + its sweep', variant: 'after (LicensingService.activateMany)', licences: LICENCES, activated: n, ms: t });
  }

  // One sweep of an account whose events are all recorded already (every sweep after the first).
  {
    const before: number[] = [];
    const after: number[] = [];
    for (let i = 0; i < 5; i++) {
      before.push(ms(() => {
        services.admission.reconcile(activated.accountId, now);
        recordDueOneByOne(store, activated, now);
      }));
      after.push(ms(() => services.admission.sweepAccount(activated.accountId, now)));
    }
    line({ store: kind, op: 'licence sweep of one account (median of 5)', variant: 'before (one INSERT per due event)', licences: LICENCES, ms: median(before) });
    line({ store: kind, op: 'licence sweep of one account (median of 5)', variant: 'after (one INSERT ... SELECT)', licences: LICENCES, ms: median(after) });
  }
  services.close();
}

await withBenchStores(values.url!, 'bench_bulk', async ({ sqliteDir, schemaUrl }) => {
  line({ node: process.version, rows: ROWS, licences: LICENCES, note: 'ms the write lock was held; before = the statements the services used to issue, after = today\'s services' });
  const sqlite = Store.open(sqliteDir, { busyTimeoutMs: 600_000 });
  await run('sqlite', sqlite, sqliteDir);
  sqlite.close();
  const postgres = Store.connect(schemaUrl, { busyTimeoutMs: 600_000 });
  await run('postgres', postgres, sqliteDir);
  postgres.close();

  // The start of a write transaction, with the pg driver directly (median of 500, µs).
  const c = new pg.Client({ connectionString: schemaUrl });
  await c.connect();
  const three: number[] = [];
  const one: number[] = [];
  for (let i = 0; i < 500; i++) {
    let t0 = performance.now();
    await c.query('BEGIN');
    await c.query('SELECT set_config(\'lock_timeout\', $1, true)', ['5000ms']);
    await c.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK_KEY]);
    three.push((performance.now() - t0) * 1000);
    await c.query('COMMIT');
    t0 = performance.now();
    await c.query(`BEGIN; SET LOCAL lock_timeout = '5000ms'; SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`);
    one.push((performance.now() - t0) * 1000);
    await c.query('COMMIT');
  }
  line({ store: 'postgres-floor', op: 'begin a write transaction (median of 500, µs)', variant: 'before (three statements)', us: Math.round(median(three)) });
  line({ store: 'postgres-floor', op: 'begin a write transaction (median of 500, µs)', variant: 'after (one simple query)', us: Math.round(median(one)) });
  await c.end();
});
