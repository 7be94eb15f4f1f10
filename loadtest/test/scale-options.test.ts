import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.js';
import { compareScaleCounts, readScaleCounts } from '../src/compare-counts.js';
import { openRunStore, parseStoreOption } from '../src/run-store.js';
import { checkScaleOptions, type ScaleCounts } from '../src/scale.js';
import { spreadProfiles } from '../src/stage.js';

// The PostgreSQL server of the tests: 127.0.0.1:5432, user postgres, unless PG* say otherwise.
const pgConfig = {
  host: process.env['PGHOST'] || '127.0.0.1',
  port: Number(process.env['PGPORT'] || 5432),
  user: process.env['PGUSER'] || 'postgres',
  password: process.env['PGPASSWORD'] ?? '',
};

async function sql<T extends pg.QueryResultRow>(database: string, text: string): Promise<T[]> {
  const client = new pg.Client({ ...pgConfig, database });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

const databaseExists = async (name: string) => (await sql('postgres', `SELECT 1 FROM pg_database WHERE datname = '${name}'`)).length === 1;

describe('fleet-loadtest scale: --store and --servers', () => {
  const made: string[] = [];
  afterAll(async () => {
    for (const name of made) await sql('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });

  it('refuses several server processes on SQLite, over MQTT, or out of range, with a usage error', () => {
    expect(() => checkScaleOptions({ servers: 2 })).toThrow(expect.objectContaining({ code: 'LOADTEST_USAGE', message: expect.stringMatching(/--servers above 1 needs --store postgres/) }));
    expect(() => checkScaleOptions({ servers: 2, store: 'sqlite' })).toThrow(expect.objectContaining({ code: 'LOADTEST_USAGE' }));
    expect(() => checkScaleOptions({ servers: 2, store: 'postgres', transport: 'mqtt' })).toThrow(expect.objectContaining({ code: 'LOADTEST_USAGE', message: expect.stringMatching(/--transport ws only/) }));
    for (const servers of [0, 1.5, 17]) {
      expect(() => checkScaleOptions({ servers, store: 'postgres' })).toThrow(expect.objectContaining({ code: 'LOADTEST_USAGE', message: expect.stringMatching(/--servers must be an integer from 1 to 16/) }));
    }
    expect(() => checkScaleOptions({ servers: 2, store: 'postgres' })).not.toThrow();
    expect(() => checkScaleOptions({ servers: 3, store: 'postgres://u@h/db' })).not.toThrow();
    expect(() => checkScaleOptions({})).not.toThrow();
  });

  it('refuses a --store that is neither sqlite, postgres nor a postgres:// URL, without echoing a password', () => {
    expect(parseStoreOption(undefined)).toBe('sqlite');
    expect(parseStoreOption('postgres')).toBe('postgres');
    expect(parseStoreOption('postgres://u@h:5432/db')).toEqual({ url: 'postgres://u@h:5432/db' });
    expect(() => parseStoreOption('mysql://u:secret@h/db')).toThrow(expect.objectContaining({ code: 'LOADTEST_USAGE', message: expect.not.stringContaining('secret') }));
    expect(() => parseStoreOption('pg')).toThrow(/--store must be sqlite, postgres/);
  });

  it('the command line refuses --servers 2 with SQLite before it starts anything', async () => {
    await expect(runCli(['scale', '--devices', '10', '--licences', '5', '--servers', '2', '--report', join(tmpdir(), 'never.json')]))
      .rejects.toMatchObject({ code: 'LOADTEST_USAGE', exitCode: 2 });
  });

  it('--store postgres creates a database of the run\'s own and drops it', async () => {
    const store = await openRunStore('postgres');
    const name = new URL(store.url!).pathname.slice(1);
    made.push(name);
    expect(store.kind).toBe('postgres');
    expect(name).toMatch(/^fleet_scale_\d{12}_[0-9a-f]{6}$/);
    expect(store.description).toContain(`database ${name}`);
    expect(await databaseExists(name)).toBe(true);
    // Even with a connection still open (a server that did not stop in time).
    const open = new pg.Client({ connectionString: store.url });
    open.on('error', () => {});
    await open.connect();
    await store.release();
    await open.end().catch(() => undefined);
    expect(await databaseExists(name)).toBe(false);
    await store.release(); // twice is harmless
  });

  it('a --store URL must name an empty, reachable database; it is used and left in place', async () => {
    const name = `fleet_scale_test_${process.pid}`;
    made.push(name);
    await sql('postgres', `CREATE DATABASE ${name}`);
    const url = `postgres://${encodeURIComponent(pgConfig.user)}${pgConfig.password ? `:${encodeURIComponent(pgConfig.password)}` : ''}@${pgConfig.host}:${pgConfig.port}/${name}`;
    const store = await openRunStore(url);
    expect(store).toMatchObject({ kind: 'postgres', url });
    await store.release();
    expect(await databaseExists(name)).toBe(true);
    await sql(name, 'CREATE TABLE leftover (id int)');
    await expect(openRunStore(url)).rejects.toMatchObject({ code: 'LOADTEST_STORE_NOT_EMPTY', message: expect.stringMatching(/has 1 table\(s\)/) });
    // Port 1: nothing listens there.
    await expect(openRunStore(`postgres://postgres@127.0.0.1:1/${name}`)).rejects.toMatchObject({ code: 'LOADTEST_STORE_UNREACHABLE' });
  });

  it('spreads the fleet\'s profiles over the server processes, router i on server i mod N', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spread-'));
    try {
      const line = (i: number) => JSON.stringify({ profile: { deviceId: `d${i}`, serverUrl: 'wss://127.0.0.1:1000/api/device-channel' }, credential: 'x' });
      writeFileSync(join(dir, 'profiles.ndjson'), `${[0, 1, 2, 3, 4].map(line).join('\n')}\n`);
      await spreadProfiles(dir, [{ port: 2001 }, { port: 2002 }]);
      const out = readFileSync(join(dir, 'profiles.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(out.map((d) => d.profile.serverUrl)).toEqual([2001, 2002, 2001, 2002, 2001].map((p) => `wss://127.0.0.1:${p}/api/device-channel`));
      expect(out.map((d) => d.profile.deviceId)).toEqual(['d0', 'd1', 'd2', 'd3', 'd4']);
      expect(out[0].credential).toBe('x');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('fleet-loadtest compare-counts', () => {
  const counts = (over: Partial<ScaleCounts> = {}): ScaleCounts => ({
    devices: 300, managed: 240, refused: 60, jobsFinished: 240, jobsRolledBack: 0, jobSucceeded: 240,
    states: { managed: 240, rejected: 60 }, ...over,
  });

  it('finds no difference between equal counts, and names each one that differs', () => {
    expect(compareScaleCounts(counts(), counts())).toEqual([]);
    expect(compareScaleCounts(counts(), counts({ managed: 239, states: { managed: 239, rejected: 60, connecting: 1 } }))).toEqual([
      { name: 'managed', a: 240, b: 239 },
      { name: 'states.connecting', a: 0, b: 1 },
      { name: 'states.managed', a: 240, b: 239 },
    ]);
  });

  it('reads the counts of two report files and exits 1 when they differ', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'compare-'));
    try {
      writeFileSync(join(dir, 'a.json'), JSON.stringify({ counts: counts() }));
      writeFileSync(join(dir, 'b.json'), JSON.stringify({ counts: counts({ jobsFinished: 200 }) }));
      writeFileSync(join(dir, 'old.json'), JSON.stringify({ devices: 300 }));
      expect(readScaleCounts(join(dir, 'a.json')).managed).toBe(240);
      expect(() => readScaleCounts(join(dir, 'old.json'))).toThrow(expect.objectContaining({ code: 'LOADTEST_REPORT_INVALID' }));
      expect(() => readScaleCounts(join(dir, 'missing.json'))).toThrow(expect.objectContaining({ code: 'LOADTEST_REPORT_INVALID' }));
      const exitCode = process.exitCode;
      try {
        await runCli(['compare-counts', join(dir, 'a.json'), join(dir, 'a.json')]);
        expect(process.exitCode).toBe(0);
        await runCli(['compare-counts', join(dir, 'a.json'), join(dir, 'b.json')]);
        expect(process.exitCode).toBe(1);
      } finally {
        process.exitCode = exitCode;
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
