import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { STORE_FILE } from '../src/store/database.js';
import { SqliteDatabase } from '../src/store/sqlite.js';
import { freshPostgresStore } from './helpers/postgres.js';
import { removeTempDirs, TS_REGISTER, type World, world } from './helpers/setup.js';

const CHILD = fileURLToPath(new URL('./helpers/admission-child.ts', import.meta.url));

const children: ChildProcessWithoutNullStreams[] = [];
const worlds: World[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  for (const w of worlds.splice(0)) w.close();
  removeTempDirs();
});

function startChild(mode: 'race' | 'burst', w: World, devices: unknown[], name: string) {
  const file = join(w.dataDir, `${name}.json`);
  writeFileSync(file, JSON.stringify(devices));
  const store = w.services.config.store;
  const child = spawn(process.execPath, ['--import', TS_REGISTER, CHILD, mode, w.dataDir, String(w.clock.now()), file, ...(store ? [store] : [])], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines: string[] = [];
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const rl = createInterface({ input: child.stdout });
  const waiters: { pred: (l: string[]) => boolean; resolve: () => void }[] = [];
  rl.on('line', (line) => {
    lines.push(line);
    for (const wt of [...waiters]) {
      if (wt.pred(lines)) {
        waiters.splice(waiters.indexOf(wt), 1);
        wt.resolve();
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    stderr: () => stderr,
    until(pred: (l: string[]) => boolean): Promise<void> {
      if (pred(lines)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        waiters.push({ pred, resolve });
        void exited.then((code) => reject(new Error(`child exited (${code}) early: ${stderr}`)));
      });
    },
  };
}

/** The stores several processes can share: the SQLite file in a data directory, and a PostgreSQL database. */
const stores: Array<[string, () => { store?: string }]> = [
  ['the SQLite file', () => ({})],
  ['PostgreSQL', () => ({ store: freshPostgresStore() })],
];

describe.each(stores)('admission across processes sharing the store (%s)', (kind, storeFlags) => {
  beforeAll(async () => {
    const warm = spawn(process.execPath, ['--import', TS_REGISTER, CHILD, 'warm'], { stdio: 'ignore' });
    await new Promise((resolve) => warm.on('exit', resolve));
  });

  it('200 admissions racing in 4 child processes for one free licence: exactly one wins', async () => {
    const w = world({ leaseGraceSec: 0, ...storeFlags() });
    worlds.push(w);
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const routers = w.devices(t, 200);
    const racers = [0, 1, 2, 3].map((i) => startChild('race', w, routers.slice(i * 50, i * 50 + 50), `racer${i}`));
    await Promise.all(racers.map((r) => r.until((l) => l.includes('ready'))));
    const started = performance.now();
    for (const r of racers) r.child.stdin.end('go\n');
    const codes = await Promise.all(racers.map((r) => r.exited));
    console.log(`race: ${Math.round(performance.now() - started)} ms`);
    expect(codes, racers.map((r) => r.stderr()).join('\n')).toEqual([0, 0, 0, 0]);
    const outcomes = racers.flatMap((r) => r.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l).outcome));
    expect(outcomes).toHaveLength(200);
    expect(outcomes.filter((o) => o === 'managed')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'rejected')).toHaveLength(199);
    expect(t.scope.leases.managedCount()).toBe(1);
  });

  it('SIGKILL during a burst of admissions: store intact, no licence leased twice, no acknowledged write lost', async () => {
    const w = world({ leaseGraceSec: 0, ...storeFlags() });
    worlds.push(w);
    const t = await w.newTenant();
    const SEATS = 5;
    w.licences(t, 'basic-1', SEATS);
    const routers = w.devices(t, 40);
    w.close();
    const burst = startChild('burst', w, routers, 'burst');
    await burst.until((l) => l.filter((x) => x.startsWith('ACK')).length >= 400);
    burst.child.kill('SIGKILL');
    await burst.exited;

    // What survives is read through a new connection, as a restarted server would.
    if (kind === 'the SQLite file') {
      const db = new SqliteDatabase(join(w.dataDir, STORE_FILE));
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      db.close();
    }
    const db = w.openStore();
    try {
      const managed = db.stmt<{ n: number }>('SELECT COUNT(*) AS n FROM leases WHERE state = \'managed\'').get()!;
      expect(managed.n).toBeLessThanOrEqual(SEATS);
      // The last acknowledged operation of each device is in the store; the one in flight at the
      // kill (a BEGIN without its ACK) may or may not be.
      const last = new Map<string, string>();
      let inFlight: string | undefined;
      for (const line of burst.lines) {
        const [kind, uuid, op, outcome] = line.split(' ');
        if (kind === 'BEGIN') inFlight = uuid;
        if (kind === 'ACK') {
          last.set(uuid!, `${op} ${outcome}`);
          inFlight = undefined;
        }
      }
      const lease = db.stmt<{ state: string }>('SELECT l.state FROM leases l JOIN devices d ON d.id = l.device_id WHERE d.uuid = ?');
      const device = db.stmt('SELECT admission FROM devices WHERE uuid = ?');
      let checked = 0;
      for (const [uuid, what] of last) {
        if (uuid === inFlight) continue;
        const l = lease.get(uuid);
        if (what === 'admit managed') expect(l?.state, `${uuid} ${what}`).toBe('managed');
        else expect(l, `${uuid} ${what}`).toBeUndefined();
        if (what === 'admit rejected') expect(device.get(uuid)).toEqual({ admission: 'rejected' });
        checked++;
      }
      expect(checked).toBeGreaterThan(10);
    } finally {
      db.close();
    }
  });
});
