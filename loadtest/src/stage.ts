import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fleetToCsv, generateFleet, PROFILES_FILE, provisionFleet, RestClient } from '@router-fleet/simulator';
import { activateAll, prepareTenant, SERVER_CLI, type ServerProcess, startServer, type Tenant, type TenantOptions } from './local-server.js';

const run = promisify(execFile);

/** A server with its own data directory, an account with active licences, and a provisioned fleet. */
export interface Stage {
  dataDir: string;
  /** The first server process (the one the REST client talks to). */
  server: ServerProcess;
  /**
   * Every independent `fleet-server serve` process of the stage (`servers`), the first one first;
   * each has its own port and data directory (`dataDirs`), all share the store.
   */
  servers: ServerProcess[];
  /** The data directory of each server process (`dataDir` is the first). */
  dataDirs: string[];
  /** The store's URL when it is not the data directory's SQLite file. */
  store: string | undefined;
  rest: RestClient;
  tenant: Tenant;
  /** Whether the server runs HTTPS/WSS (local CA) or plain HTTP/WS. */
  tls: boolean;
  /** CA files of the TLS mode ('' when plain). */
  caPath: string;
  caPem: string;
  certPath: string;
  keyPath: string;
  /** Directory of the provisioned connection profiles (for `startFleet`). */
  profilesDir: string;
  workers: number;
  /**
   * Restarts the server on the same port and data directory; with `extraArgs`, with these `serve`
   * flags added from now on (e.g. the MQTT broker to consume).
   */
  restart(extraArgs?: string[]): Promise<ServerProcess>;
}

export interface StageOptions extends TenantOptions {
  devices: number;
  seed?: number;
  workers?: number;
  /**
   * Independent `fleet-server serve` processes (own port and data directory each, the same TLS
   * certificate, one shared store: `store` must be a PostgreSQL URL). Default 1.
   */
  servers?: number;
  /** HTTPS/WSS with a local CA (default) or plain HTTP/WS (`false`: loopback measurements only). */
  tls?: boolean;
  /** More `fleet-server serve` flags (e.g. `--mqtt embedded --device-transport mqtt`). */
  serverArgs?: string[];
  /** Where the server's output goes (appended, across restarts). Default: not kept. */
  serverLog?: string;
  /** Node options of the server's processes (e.g. `--cpu-prof --cpu-prof-dir=DIR`). Default none. */
  serverNodeArgs?: string[];
  log?: (text: string) => void;
}

/**
 * Stages a run on this machine: TLS from a local CA (`fleet-server tls generate`; or plain HTTP
 * with `tls: false`), an account with
 * licences issued by the CLI and redeemed + activated through the API, the server started on
 * 127.0.0.1, and a deterministic fleet registered by CSV with its connection profiles fetched.
 */
export async function stage(options: StageOptions): Promise<Stage> {
  const log = options.log ?? (() => {});
  const dataDir = mkdtempSync(join(tmpdir(), 'router-fleet-run-'));
  const useTls = options.tls ?? true;
  const tls = useTls
    ? (JSON.parse((await run(process.execPath, [SERVER_CLI, 'tls', 'generate', '--data', dataDir, '--ip', '127.0.0.1'])).stdout) as {
        ca: string;
        cert: string;
        key: string;
      })
    : { ca: '', cert: '', key: '' };
  const tenant = await prepareTenant(dataDir, options);
  const workers = options.workers ?? 1;
  const serverCount = options.servers ?? 1;
  if (serverCount > 1 && !options.store) throw new Error('several server processes need a shared store (a PostgreSQL URL)');
  const dataDirs = [dataDir, ...Array.from({ length: serverCount - 1 }, () => mkdtempSync(join(tmpdir(), 'router-fleet-run-')))];
  const baseArgs = [...(useTls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : []), ...(options.serverArgs ?? [])];
  let serverArgs = baseArgs;
  // One log for all of them: each line says its pid. The store's password stays off the command line.
  const common = {
    workers,
    ...(options.serverLog ? { logFile: options.serverLog } : {}),
    ...(options.serverNodeArgs?.length ? { nodeArgs: options.serverNodeArgs } : {}),
    ...(options.store ? { store: options.store } : {}),
  };
  const servers: ServerProcess[] = [];
  const caPem = useTls ? readFileSync(tls.ca, 'utf8') : '';
  let rest: RestClient | undefined;
  const profilesDir = join(dataDir, 'fleet');
  try {
    // One after the other: the first one creates the schema in a fresh store.
    for (const dir of dataDirs) servers.push(await startServer({ dataDir: dir, args: serverArgs, ...common }));
    rest = new RestClient({ server: servers[0]!.url, ...(useTls ? { caPem } : {}) });
    const token = await rest.login(tenant.username, tenant.password);
    await activateAll(rest, tenant.codes);
    log(`fleet-server on ${servers.map((s) => s.url).join(', ')} (${workers} worker${workers > 1 ? 's' : ''} each); ${tenant.codes.length} licence code(s) active`);
    const csvPath = join(dataDir, 'fleet.csv');
    writeFileSync(csvPath, fleetToCsv(generateFleet({ devices: options.devices, seed: options.seed ?? 2026, customFields: false })));
    const provisioned = await provisionFleet({ server: servers[0]!.url, token, fleetCsv: csvPath, outDir: profilesDir, ...(useTls ? { caPem } : {}) });
    log(`registered ${provisioned.imported} routers (CSV mass registration) and fetched their connection profiles`);
    if (servers.length > 1) await spreadProfiles(profilesDir, servers);
  } catch (err) {
    // A stage that fails half-way (a server that does not start, a refused import) leaves no
    // server behind (its store may be dropped next).
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    await rest?.close().catch(() => undefined);
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let server = servers[0]!;
  const result: Stage = {
    dataDir,
    server,
    servers,
    dataDirs,
    store: options.store,
    rest,
    tenant,
    tls: useTls,
    caPath: tls.ca,
    caPem,
    certPath: tls.cert,
    keyPath: tls.key,
    profilesDir,
    workers,
    async restart(extraArgs) {
      if (extraArgs) serverArgs = [...baseArgs, ...extraArgs];
      // All stop before any starts again, as a restart of the whole service.
      await Promise.all(result.servers.map((s) => s.stop()));
      const ports = result.servers.map((s) => s.port);
      result.servers = [];
      for (const [i, dir] of dataDirs.entries()) {
        result.servers.push(await startServer({ dataDir: dir, port: ports[i]!, args: serverArgs, ...common }));
      }
      server = result.servers[0]!;
      result.server = server;
      return server;
    },
  };
  return result;
}

/**
 * Spreads the fleet over several server processes: router i dials server i mod N (the profile's
 * `serverUrl` with that server's port; in a deployment, a load balancer or DNS does this).
 * Rewrites the provisioned profiles in place.
 */
export async function spreadProfiles(profilesDir: string, servers: readonly Pick<ServerProcess, 'port'>[]): Promise<void> {
  const file = join(profilesDir, PROFILES_FILE);
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const out = lines.map((line, i) => {
    const d = JSON.parse(line) as { profile: { serverUrl: string } };
    const url = new URL(d.profile.serverUrl);
    url.port = String(servers[i % servers.length]!.port);
    return JSON.stringify({ ...d, profile: { ...d.profile, serverUrl: url.toString() } });
  });
  writeFileSync(`${file}.tmp`, `${out.join('\n')}\n`);
  renameSync(`${file}.tmp`, file);
}
