import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { RestClient } from '@router-fleet/simulator';

/**
 * The reference server's CLI, resolved through the declared dependency `@router-fleet/server-stub`
 * (its `./cli` export), so the load tests also work where they are installed from the registry.
 */
export const SERVER_CLI = createRequire(import.meta.url).resolve('@router-fleet/server-stub/cli');

export interface Tenant {
  username: string;
  password: string;
  /** Account uuid. */
  accountId: string;
  /** Licence codes issued for it (redeem and activate them with `activateLicences` once the server runs). */
  codes: string[];
}

export interface TenantOptions {
  name?: string;
  /** Plan of the licences issued (default `pro`: 100 devices each). */
  plan?: 'free' | 'basic-1' | 'basic-25' | 'pro';
  /** Number of licence codes (default 1). */
  licences?: number;
  /** Also issue an API licence (API tokens need one). */
  apiLicence?: boolean;
  /** More codes of other articles of the same plan (e.g. basic-1 next to basic-25). */
  more?: { plan: 'basic-1' | 'basic-25' | 'pro'; count: number }[];
  /** The store the server will use (`serve --store`): a postgres:// URL; default the data directory's SQLite file. */
  store?: string;
}

/**
 * How a child process is given a store URL: `--store` with the URL less its password (any user of
 * the machine can read a process's arguments, and execFile's errors quote them), and the password
 * in the child's PGPASSWORD, which the PostgreSQL driver reads when the URL has none.
 */
export function storeForChild(url: string | undefined): { args: string[]; env: Record<string, string> } {
  if (!url) return { args: [], env: {} };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { args: ['--store', url], env: {} };
  }
  if (!u.password) return { args: ['--store', url], env: {} };
  const password = decodeURIComponent(u.password);
  u.password = '';
  return { args: ['--store', u.toString()], env: { PGPASSWORD: password } };
}

function serverCli(args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [SERVER_CLI, ...args], { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`fleet-server ${args[0]} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/**
 * Prepares a data directory before the server starts, as an operator would: `fleet-server account
 * create` and `fleet-server licences issue` (the vendor's side). Redeem and activate the codes
 * through the API with `activateLicences` once the server runs.
 */
export async function prepareTenant(dataDir: string, options: TenantOptions = {}): Promise<Tenant> {
  const username = 'admin';
  const password = 'load test password 1';
  const store = storeForChild(options.store);
  const created = JSON.parse(
    await serverCli(['account', 'create', '--data', dataDir, ...store.args, '--name', options.name ?? 'Load test', '--user', username, '--password', password], store.env),
  ) as { account: string };
  const issue = async (plan: string, count: number) =>
    (await serverCli(['licences', 'issue', '--data', dataDir, ...store.args, '--plan', plan, '--count', String(count)], store.env)).trim().split('\n').filter(Boolean);
  const codes = await issue(options.plan ?? 'pro', options.licences ?? 1);
  for (const m of options.more ?? []) if (m.count > 0) codes.push(...(await issue(m.plan, m.count)));
  if (options.apiLicence) codes.push(...(await issue('api', 1)));
  return { username, password, accountId: created.account, codes };
}

/** Redeems and activates licence codes now, through the REST API. */
export function activateLicences(url: string, token: string, codes: readonly string[]): Promise<void> {
  return withRest(url, token, (rest) => activateAll(rest, codes));
}

/**
 * Redeems each code, then activates them all in one call (`POST /api/licences/activate`, at most
 * 10,000 per call): one licence sweep for the lot instead of one per licence (each sweep records
 * the due events of every licence so far, so activating 600 one by one costs 180,000 statements).
 */
export async function activateAll(rest: RestClient, codes: readonly string[]): Promise<void> {
  const uuids: string[] = [];
  for (const code of codes) uuids.push((await rest.json<{ uuid: string }>('POST', '/api/licences/redeem', { code })).uuid);
  for (let i = 0; i < uuids.length; i += 10_000) {
    await rest.json('POST', '/api/licences/activate', { licences: uuids.slice(i, i + 10_000) });
  }
}

export interface ServerProcess {
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
  child: ChildProcess;
  /** SIGTERM, wait for a graceful exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>;
}

export interface StartOptions {
  dataDir: string;
  /** Port to listen on; 0 = any (the default). Restart on the same port to keep clients' URL. */
  port?: number;
  workers?: number;
  /** Extra `serve` flags. */
  args?: string[];
  /** The store (`serve --store`): a postgres:// URL, its password passed outside the arguments (`storeForChild`). */
  store?: string;
  /** Called with each log line (pino JSON) the server prints. */
  onLog?: (line: string) => void;
  /** Appends everything the server prints (stdout and stderr) to this file. */
  logFile?: string;
  /** How long the server may take to listen (ms). Default 180,000: a cluster on a loaded machine needs more than a minute. */
  startTimeoutMs?: number;
  /** Node options of the server's processes, its workers included (e.g. `--cpu-prof`). Default none. */
  nodeArgs?: string[];
}

/** Starts `fleet-server serve` as a child process on 127.0.0.1 and resolves when it listens. */
export function startServer(options: StartOptions): Promise<ServerProcess> {
  const args = [...(options.nodeArgs ?? []), SERVER_CLI, 'serve', '--data', options.dataDir, '--host', '127.0.0.1', '--port', String(options.port ?? 0)];
  if (options.workers && options.workers > 1) args.push('--workers', String(options.workers));
  const store = storeForChild(options.store);
  args.push(...store.args, ...(options.args ?? []));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...store.env, FLEET_SERVER_LOG_LEVEL: 'info' } });
  const stderr: string[] = [];
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  if (options.logFile) {
    const file = createWriteStream(options.logFile, { flags: 'a' });
    child.stdout!.pipe(file, { end: false });
    child.stderr!.pipe(file, { end: false });
    child.once('exit', (code, signal) => file.end(`fleet-server exited: code ${code}, signal ${signal}\n`));
  }
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    let done = false;
    const startMs = options.startTimeoutMs ?? 180_000;
    const timer = setTimeout(() => fail(new Error(`fleet-server did not start within ${startMs / 1000} s`)), startMs);
    const fail = (err: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${err.message}\n${stderr.join('').slice(-2000)}`));
    };
    child.once('exit', (code) => fail(new Error(`fleet-server exited (${code}) before listening`)));
    lines.on('line', (line) => {
      options.onLog?.(line);
      if (done || !line.includes('listening')) return;
      const url = /"url":"(https?:\/\/[^"]+)"/.exec(line)?.[1] ?? /(https?:\/\/127\.0\.0\.1:\d+)/.exec(line)?.[1];
      if (!url) return;
      done = true;
      clearTimeout(timer);
      const port = Number(new URL(url).port);
      resolve({
        url: url.replace('0.0.0.0', '127.0.0.1'),
        port,
        child,
        stop: (graceMs = 15_000) =>
          new Promise((res) => {
            if (child.exitCode !== null) return res(child.exitCode);
            const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
            child.once('exit', (code) => {
              clearTimeout(kill);
              res(code);
            });
            child.kill('SIGTERM');
          }),
      });
    });
  });
}

/** A REST client for `url` (the simulator's, shared by the load tests), closed after `fn`. */
export async function withRest<T>(url: string, token: string | undefined, fn: (rest: RestClient) => Promise<T>): Promise<T> {
  const rest = new RestClient({ server: url, ...(token === undefined ? {} : { token }) });
  try {
    return await fn(rest);
  } finally {
    await rest.close();
  }
}

/** Logs in and returns a bearer token. */
export function login(url: string, tenant: Pick<Tenant, 'username' | 'password'>): Promise<string> {
  return withRest(url, undefined, (rest) => rest.login(tenant.username, tenant.password));
}
