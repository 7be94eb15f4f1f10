/**
 * What a wave of reports from connected routers costs the store, on each store in the same run
 * (loopback only, bounded, stops by itself):
 *
 *   npm run build && npx tsx server-stub/bench/device-reports.ts [--n 500] [--url postgres://postgres@127.0.0.1:5432/postgres]
 *
 * N routers of one account are admitted, ready, and offered a firmware job through the job
 * dispatcher (a port stands for the control channel). Then each wave hands the server one report
 * per router as one batch, the way the channel does in one tick: job progress `downloading`, then
 * `rebooting`, the routers' reconnect (ready, their execution still open: the offer is sent again),
 * the result `succeeded` (acknowledged; the job finishes), the status each sends after its update
 * (a new firmware version, buffered and written by the presence flush), and one device event each.
 * Per wave: statements executed, transactions and savepoints, the PostgreSQL round trips these
 * make (one per statement, two per transaction or savepoint: BEGIN with the write lock and COMMIT,
 * SAVEPOINT and RELEASE), and the wall time of the batch (ms in all and per report), including
 * the dispatch that follows it. One JSON line each; PostgreSQL works in a schema of its own,
 * dropped at the end.
 */
import { createMessage } from '@router-fleet/protocol';
import { parseArgs } from 'node:util';
import { TestClock } from '../src/clock.js';
import { loadConfig } from '../src/config.js';
import { createServices } from '../src/services.js';
import { ChannelRepository } from '../src/store/channel.js';
import { Store, type Store as StoreType } from '../src/store/database.js';
import { DeviceStatusBuffer } from '../src/store/device-status.js';
import { applied, jobPortFleet } from '../test/helpers/job-port-fleet.js';
import { spyStatements } from '../test/helpers/statement-spy.js';
import { line, withBenchStores } from './bench-stores.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '500' },
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const N = Number(values.n);
const T0 = Date.UTC(2026, 0, 1);

/** Counts what the store is asked to do (statements, outermost transactions, savepoints). */
interface Counts {
  statements: number;
  transactions: number;
  savepoints: number;
}

function counting(store: StoreType): Counts {
  const counts: Counts = { statements: 0, transactions: 0, savepoints: 0 };
  spyStatements(store, () => counts.statements++);
  for (const name of ['write', 'read'] as const) {
    const fn = store[name].bind(store);
    store[name] = <T>(body: () => T): T => {
      if (!store.inTransaction) counts.transactions++;
      return fn(body);
    };
  }
  const savepoint = store.savepoint.bind(store);
  store.savepoint = <T>(body: () => T): T => {
    if (store.inTransaction) counts.savepoints++;
    else counts.transactions++;
    return savepoint(body);
  };
  return counts;
}

async function run(kind: 'sqlite' | 'postgres', store: StoreType, dataDir: string): Promise<void> {
  const counts = counting(store);
  const clock = new TestClock(T0);
  const config = loadConfig({ flags: { dataDir, logLevel: 'silent', scryptCost: 1024 }, env: {} });
  const services = createServices(config, { clock, store });
  const { accountId, rows, job, sent, executions, ready, progress, scope } = await jobPortFleet(services, `R-${kind}`, N);

  async function wave(name: string, push: () => void, after?: () => void): Promise<void> {
    await applied(services);
    const before = { ...counts };
    const t0 = performance.now();
    push();
    await applied(services);
    after?.();
    const ms = performance.now() - t0;
    const statements = counts.statements - before.statements;
    const transactions = counts.transactions - before.transactions;
    const savepoints = counts.savepoints - before.savepoints;
    const roundTrips = statements + 2 * transactions + 2 * savepoints;
    line({
      store: kind, wave: name, n: N, statements, transactions, savepoints,
      ...(kind === 'postgres' ? { roundTrips, roundTripsPerReport: Math.round((roundTrips / N) * 100) / 100 } : {}),
      ms: Math.round(ms), msPerReport: Math.round((ms / N) * 1000) / 1000,
    });
  }
  const report = (state: 'downloading' | 'rebooting' | 'succeeded') => () => {
    for (const r of rows) progress(r.uuid, createMessage('job-progress', { executionId: executions.get(r.uuid)!, state }, { sentAt: clock.now() }));
  };
  await wave('job-progress downloading', report('downloading'));
  await wave('job-progress rebooting', report('rebooting'));
  await wave('reconnect (ready, execution open)', () => {
    for (const r of rows) ready(r.uuid);
  });
  await wave('job-progress succeeded', report('succeeded'));
  const view = services.jobs.repo(scope).byUuid(job.uuid)!;
  const acks = sent.filter((s) => s.message.type === 'ack').length;
  if (acks !== N || view.state !== 'finished') throw new Error(`acks ${acks}, job ${view.state}`);

  const status = new DeviceStatusBuffer(store);
  await wave('status (new firmware)', () => {
    for (const r of rows) status.status(r.id, { firmwareVersion: '9.0.0', trustAnchorsDigest: 'a'.repeat(64) }, clock.now());
  }, () => status.flush());
  const channel = new ChannelRepository(store);
  await wave('device event', () => {
    channel.recordDeviceEvents(rows.map((r, i) => ({
      accountKey: accountId, deviceUuid: r.uuid, seq: i + 1, kind: 'reboot', severity: 'info', at: clock.now(),
    })), clock.now());
  });
  services.close();
}

await withBenchStores(values.url!, 'reports', async ({ sqliteDir, schemaUrl }) => {
  line({ node: process.version, n: N, note: 'one batch of N reports per wave; roundTrips = statements + 2 per transaction and savepoint (PostgreSQL)' });
  await run('sqlite', Store.open(sqliteDir), sqliteDir);
  await run('postgres', Store.connect(schemaUrl), sqliteDir);
});
