import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fleetToCsv, generateFleet, provisionFleet, RestClient } from '@router-fleet/simulator';
import { prepareTenant, SERVER_CLI, type ServerProcess, startServer, type Tenant, type TenantOptions } from './local-server.js';

const run = promisify(execFile);

/** A server with its own data directory, an account with active licences, and a provisioned fleet. */
export interface Stage {
  dataDir: string;
  server: ServerProcess;
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
  /** HTTPS/WSS with a local CA (default) or plain HTTP/WS (`false`: loopback measurements only). */
  tls?: boolean;
  /** More `fleet-server serve` flags (e.g. `--mqtt embedded --device-transport mqtt`). */
  serverArgs?: string[];
  /** Where the server's output goes (appended, across restarts). Default: not kept. */
  serverLog?: string;
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
  const baseArgs = [...(useTls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : []), ...(options.serverArgs ?? [])];
  let serverArgs = baseArgs;
  const logFile = options.serverLog ? { logFile: options.serverLog } : {};
  let server = await startServer({ dataDir, workers, args: serverArgs, ...logFile });
  const caPem = useTls ? readFileSync(tls.ca, 'utf8') : '';
  const rest = new RestClient({ server: server.url, ...(useTls ? { caPem } : {}) });
  const token = await rest.login(tenant.username, tenant.password);
  for (const code of tenant.codes) {
    const licence = await rest.json<{ uuid: string }>('POST', '/api/licences/redeem', { code });
    await rest.json('POST', `/api/licences/${licence.uuid}/activate`, {});
  }
  log(`fleet-server on ${server.url} (${workers} worker${workers > 1 ? 's' : ''}); ${tenant.codes.length} licence code(s) active`);
  const csvPath = join(dataDir, 'fleet.csv');
  writeFileSync(csvPath, fleetToCsv(generateFleet({ devices: options.devices, seed: options.seed ?? 2026, customFields: false })));
  const profilesDir = join(dataDir, 'fleet');
  const provisioned = await provisionFleet({ server: server.url, token, fleetCsv: csvPath, outDir: profilesDir, ...(useTls ? { caPem } : {}) });
  log(`registered ${provisioned.imported} routers (CSV mass registration) and fetched their connection profiles`);
  const result: Stage = {
    dataDir,
    server,
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
      await server.stop();
      server = await startServer({ dataDir, workers, port: server.port, args: serverArgs, ...logFile });
      result.server = server;
      return server;
    },
  };
  return result;
}
