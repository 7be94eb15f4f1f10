import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DAY, TestClock } from '../../src/clock.js';
import { type ConfigInput, loadConfig, type ServerConfig } from '../../src/config.js';
import type { LicenceKind } from '../../src/licensing/plans.js';
import type { LicenceView } from '../../src/licensing/service.js';
import { createServices, type Services } from '../../src/services.js';
import { type OpenStoreOptions, Store } from '../../src/store/database.js';
import type { AccountScope } from '../../src/store/scope.js';
import { freshPostgresStore, TEST_STORE } from './postgres.js';

/** 2026-01-01T00:00:00Z: tests start here so dates in failures are readable. */
export const T0 = Date.UTC(2026, 0, 1);

export const TS_REGISTER = fileURLToPath(new URL('./ts-register.mjs', import.meta.url));

const dirs: string[] = [];

export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-server-test-'));
  dirs.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** With FLEET_TEST_STORE=postgres: the PostgreSQL schema that stands for each data directory's store. */
const postgresStores = new Map<string, string>();

/**
 * A test server's configuration. Its store is the SQLite file in `dataDir`, or with
 * FLEET_TEST_STORE=postgres a schema of this test file's PostgreSQL database, empty the first time
 * and the same one whenever the same data directory is used again (a restart finds its data).
 */
export function testConfig(dataDir: string, flags: ConfigInput = {}): ServerConfig {
  let store = {};
  if (TEST_STORE === 'postgres' && flags.store === undefined) {
    if (!postgresStores.has(dataDir)) postgresStores.set(dataDir, freshPostgresStore());
    store = { store: postgresStores.get(dataDir) };
  }
  return loadConfig({
    flags: { dataDir, logLevel: 'silent', scryptCost: 1024, port: 0, host: '127.0.0.1', ...store, ...flags },
    env: {},
  });
}

/**
 * The `--store` flag for a `fleet-server serve` started by a test on `dataDir`: the same store as
 * the test's worlds on that directory (none on SQLite: the file in the directory is the store).
 */
export function serveStoreArgs(dataDir: string): string[] {
  const store = testConfig(dataDir).store;
  return store ? ['--store', store] : [];
}

export interface Tenant {
  accountId: number;
  accountUuid: string;
  scope: AccountScope;
  username: string;
  password: string;
}

export interface World {
  dataDir: string;
  clock: TestClock;
  services: Services;
  newTenant(name?: string): Promise<Tenant>;
  /** Issues `count` codes of `kind` (vendor side) and redeems them into the tenant's account. */
  redeem(t: Tenant, kind: LicenceKind, count: number): LicenceView[];
  /** Redeems and activates now (or at `at`). */
  licences(t: Tenant, kind: LicenceKind, count: number, at?: number): LicenceView[];
  /** Registers devices `prefix-0..n-1` and returns uuid + credential of each. */
  devices(t: Tenant, count: number, prefix?: string): { uuid: string; serialNumber: string; credential: string }[];
  advance(ms: number): void;
  /** Another connection to this world's store (the SQLite file, or its PostgreSQL schema), as another process would open it. */
  openStore(options?: OpenStoreOptions): Store;
  close(): void;
}

let tenantSeq = 0;

export function world(flags: ConfigInput = {}, dataDir: string = tempDir()): World {
  const clock = new TestClock(T0);
  const config = testConfig(dataDir, flags);
  return worldOf(createServices(config, { clock }), clock, dataDir);
}

/** The same helpers around services built elsewhere (e.g. by buildApp). */
export function worldOf(services: Services, clock: TestClock, dataDir: string): World {
  const w: World = {
    dataDir,
    clock,
    services,
    async newTenant(name = `Tenant ${++tenantSeq}`) {
      const username = `user${tenantSeq}-${Math.random().toString(36).slice(2, 8)}`;
      const password = 'correct horse battery';
      const created = await services.auth.createAccount({ name, username, password });
      return {
        accountId: created.accountId,
        accountUuid: created.accountUuid,
        scope: services.auth.scope(created.accountId),
        username,
        password,
      };
    },
    redeem(t, kind, count) {
      return services.licensing
        .issue(kind, count, clock.now())
        .map((code) => services.licensing.redeem(t.scope, code, clock.now()));
    },
    licences(t, kind, count, at) {
      return w.redeem(t, kind, count).map((l) => services.licensing.activate(t.scope, l.uuid, at, clock.now()));
    },
    devices(t, count, prefix = `SN${t.accountId}`) {
      const out: { uuid: string; serialNumber: string; credential: string }[] = [];
      for (let i = 0; i < count; i++) {
        const serialNumber = `${prefix}-${String(i).padStart(4, '0')}`;
        const row = services.devices.create(t.scope, { serialNumber, name: serialNumber });
        out.push({ uuid: row.uuid, serialNumber, credential: services.devices.credential(t.scope, row.uuid) });
      }
      return out;
    },
    advance(ms) {
      clock.advance(ms);
    },
    openStore(options) {
      return Store.select(services.config.store ?? undefined, dataDir, options);
    },
    close() {
      services.close();
    },
  };
  return w;
}

export { DAY };
