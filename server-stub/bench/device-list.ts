/**
 * What one page of the device list costs the store at fleet size: N devices in one account (a
 * second account of N/10 beside it), with names, models, firmware, online and admission states,
 * last-seen times and a few events each, read the way GET /api/inventory/managed-devices reads
 * them (AccountDevices.list) for every sort, both orders, common filters, the first page and a
 * page deep in the list (by cursor); the console's latest event per device on a page of 50; and
 * the floor: 50 rows read by primary key. One JSON line per case.
 *
 *   npx tsx server-stub/bench/device-list.ts [--devices 50000] [--reps 20]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openDatabase, SqliteStore } from '../src/store/database.js';
import { AccountDevices, DEVICE_SORTS, type DeviceFilter, type DeviceSort } from '../src/store/devices.js';
import { AccountLive } from '../src/store/live.js';

const { values } = parseArgs({ options: { devices: { type: 'string', default: '50000' }, reps: { type: 'string', default: '20' } } });
const n = Number(values.devices);
const reps = Number(values.reps);
const PAGE = 50;
const dir = mkdtempSync(join(tmpdir(), 'fleet-device-list-'));
const db = openDatabase(dir);
const store = new SqliteStore(db);

/** Deterministic pseudo-random numbers (the same fleet every run). */
let seed = 42;
const rand = () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  return seed / 2 ** 31;
};
const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)]!;

try {
  db.exec(`INSERT INTO accounts (id, uuid, name, created_at) VALUES (1, 'a', 'A', 0), (2, 'b', 'B', 0)`);
  const device = db.prepare(
    `INSERT INTO devices (id, uuid, account_id, serial_number, name, location, model, firmware, reported_firmware,
       ping_interval, pong_timeout, session_timeout, credential_hash, credential_enc, admission, online, last_seen_at,
       created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 1, 1, x'00', x'00', ?, ?, ?, ?, ?)`,
  );
  const event = db.prepare(`INSERT INTO account_events (account_id, type, subject, data, at) VALUES (?, ?, ?, '{}', ?)`);
  const cities = ['Berlin', 'Hamburg', 'München', 'Köln', 'Wien', 'Zürich', 'Lyon', 'Oslo', 'Porto', 'Kraków'];
  const models = ['RT-100', 'RT-200', 'MRX5 LTE', 'MRX6 5G', 'IRX3'];
  const firmware = ['9.8.1', '10.1.0', '10.2.4', '10.3.2', '10.4.0'];
  const total = n + Math.floor(n / 10);
  db.transaction(() => {
    for (let i = 1; i <= total; i++) {
      const account = i <= n ? 1 : 2;
      const online = rand() < 0.7 ? 1 : 0;
      const r = rand();
      const admission = r < 0.85 ? 'managed' : r < 0.9 ? 'unmanaged' : r < 0.95 ? 'rejected' : null;
      const created = i * 1000;
      device.run(
        i,
        randomUUID(),
        account,
        `SN-${String(i).padStart(7, '0')}`,
        `${pick(cities)}-${pick(['Depot', 'Tower', 'Substation', 'Bus', 'Kiosk'])}-${Math.floor(rand() * 10_000)}`,
        pick(cities),
        pick(models),
        pick(firmware),
        rand() < 0.5 ? pick(firmware) : null,
        admission,
        online,
        rand() < 0.9 ? created + Math.floor(rand() * 1e9) : null,
        created,
        created,
      );
    }
  })();
  const subjects = db.prepare('SELECT uuid FROM devices WHERE account_id = 1 ORDER BY id').pluck().all() as string[];
  db.transaction(() => {
    for (let k = 0; k < n * 3; k++) event.run(1, 'device.event', pick(subjects), k);
  })();
  db.exec('ANALYZE');

  const time = (fn: () => unknown): number => {
    fn();
    const start = process.hrtime.bigint();
    for (let k = 0; k < reps; k++) fn();
    return Number(process.hrtime.bigint() - start) / 1e6 / reps;
  };
  const out = (record: Record<string, unknown>) => console.log(JSON.stringify({ devices: n, ...record }));
  const repo = new AccountDevices(store, 1);

  const floor = time(() => db.prepare('SELECT * FROM devices WHERE id > ? ORDER BY id LIMIT ?').all(n / 2, PAGE));
  out({ case: 'floor: 50 rows by primary key', ms: Math.round(floor * 1000) / 1000 });

  const filters: Array<[string, DeviceFilter]> = [
    ['none', {}],
    ['status=online', { status: 'online' }],
    ['status=offline', { status: 'offline' }],
    ['admission=rejected', { admission: 'rejected' }],
    ['model=IRX3', { model: 'IRX3' }],
    ['text=Depot', { text: 'Depot' }],
    ['text=SN-0049', { text: 'SN-0049' }],
  ];
  const run = (sorts: readonly DeviceSort[], indexes: string) => {
    for (const sort of sorts) {
      for (const desc of [false, true]) {
        for (const [label, filter] of filters) {
          const first = () => repo.list({ filter, sort, desc, limit: PAGE + 1 });
          const rows = first();
          // A page deep in the list: the cursor of the row at 60 % of the matches (paged to by the client).
          const all = repo.list({ filter, sort, desc, limit: n });
          const at = all[Math.floor(all.length * 0.6)];
          const deep = at ? () => repo.list({ filter, sort, desc, after: { value: repo.sortValue(at, sort), id: at.id }, limit: PAGE + 1 }) : first;
          const firstMs = time(first);
          const deepMs = time(deep);
          out({
            case: `sort=${sort} ${desc ? 'desc' : 'asc'} filter ${label}`,
            indexes,
            firstPageMs: Math.round(firstMs * 1000) / 1000,
            deepPageMs: Math.round(deepMs * 1000) / 1000,
            rows: rows.length,
            floorRatio: Math.round((Math.max(firstMs, deepMs) / floor) * 10) / 10,
          });
        }
      }
    }
  };
  // The same sorts without the indexes of migration 32 (serial number and creation time per account).
  db.exec('DROP INDEX devices_account_serial; DROP INDEX devices_account_created; ANALYZE');
  run(['serialNumber', 'createdAt'], 'before migration 32');
  db.exec(`CREATE INDEX devices_account_serial ON devices(account_id, serial_number);
    CREATE INDEX devices_account_created ON devices(account_id, created_at); ANALYZE`);
  run(Object.keys(DEVICE_SORTS) as DeviceSort[], 'current');
  const page = repo.list({ filter: {}, sort: 'name', desc: false, limit: PAGE });
  const live = new AccountLive(store, 1);
  const latestMs = time(() => live.latestEvents(page.map((d) => d.uuid)));
  out({ case: 'latest event of each device on a page of 50', ms: Math.round(latestMs * 1000) / 1000 });
  const countsMs = time(() => live.fleetCounts());
  out({ case: 'fleet counts (the stream\'s read each second)', ms: Math.round(countsMs * 1000) / 1000 });

  // What an index on last-seen time would cost: the presence flush rewrites last_seen_at of every
  // device that sent anything since the last flush (pings included), on the single writer.
  const presence = db.prepare('UPDATE devices SET online = ?, connected_at = ?, last_seen_at = ? WHERE id = ?');
  let tick = 2e9;
  const flush = () =>
    db.transaction(() => {
      tick += 1000;
      for (let i = 1; i <= 10_000; i++) presence.run(1, 5, tick + i, i * 4);
    })();
  const without = time(flush);
  db.exec('CREATE INDEX bench_last_seen ON devices(account_id, COALESCE(last_seen_at, 0))');
  const withIndex = time(flush);
  const sortedWith = time(() => repo.list({ filter: {}, sort: 'lastSeenAt', desc: true, limit: PAGE + 1 }));
  db.exec('DROP INDEX bench_last_seen');
  out({
    case: 'presence flush of 10,000 devices, without / with an index on last-seen time',
    withoutMs: Math.round(without * 1000) / 1000,
    withMs: Math.round(withIndex * 1000) / 1000,
    lastSeenFirstPageWithIndexMs: Math.round(sortedWith * 1000) / 1000,
  });
} finally {
  store.close();
  rmSync(dir, { recursive: true, force: true });
}
