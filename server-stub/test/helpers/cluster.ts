/**
 * `fleet-server serve --workers N` as the cluster tests run it: the compiled CLI in a child process
 * whose JSON log lines are followed, a data directory seeded with a tenant, seats and devices, and
 * a login against the running server.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { waitFor } from '../../../protocol/test/helpers/wait-for.js';
import { SERVER_CLI_DIST } from './built.js';
import { seedSigningPki } from './channel-world.js';
import type { DeviceIdentity } from './fake-device.js';
import { serveStoreArgs, type Tenant, tempDir, world } from './setup.js';

/** Deadline for a log line (ms): workers start in seconds, but the machine may run two suites at once. */
export const LOG_DEADLINE_MS = 60_000;

export type LogLine = Record<string, unknown>;

export interface ServerLogs {
  readonly lines: LogLine[];
  /** The first line (so far or to come) that `pred` accepts. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly logs: ServerLogs;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
}

/** The pids of the processes that logged "fleet-server listening" (each cluster worker does). */
function listeningPids(logs: ServerLogs): number[] {
  return [...new Set(logs.lines.filter((l) => l['msg'] === 'fleet-server listening').map((l) => Number(l['pid'])))];
}

/** Waits until `n` worker processes listen; their pids. */
export async function workersListening(logs: ServerLogs, n: number, timeoutMs = LOG_DEADLINE_MS): Promise<number[]> {
  await logs.waitFor(() => listeningPids(logs).length >= n, timeoutMs);
  return listeningPids(logs);
}

const started: ChildProcess[] = [];

/** Follows a child's stdout as pino lines (anything else is skipped). */
export function followLogs(child: ChildProcess): ServerLogs {
  const lines: LogLine[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as LogLine);
    } catch {
      // not a log line
    }
  });
  return {
    lines,
    waitFor(pred, timeoutMs = LOG_DEADLINE_MS) {
      return waitFor(() => lines.find(pred), { timeout: timeoutMs, interval: 50, what: () => `a log line; got ${JSON.stringify(lines.slice(-5))}` });
    },
  };
}

/**
 * Runs `fleet-server serve --data dataDir --port 0 --host 127.0.0.1 --scryptCost 1024 …args`
 * (stderr inherited), with `--store` naming the data directory's PostgreSQL schema when the tests
 * run on PostgreSQL (or `opts.store`: several hosts, one store); {@link killServes} ends what is
 * left of it after the tests.
 */
export function serve(dataDir: string, args: readonly string[], opts: { store?: string } = {}): ServeProcess {
  const store = opts.store === undefined ? serveStoreArgs(dataDir) : ['--store', opts.store];
  const child = spawn(
    process.execPath,
    [SERVER_CLI_DIST, 'serve', ...store, '--data', dataDir, '--port', '0', '--host', '127.0.0.1', '--scryptCost', '1024', ...args],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  started.push(child);
  return {
    child,
    logs: followLogs(child),
    async stop() {
      const exited = new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** SIGKILLs every `serve` process still running (afterAll). */
export function killServes(): void {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  started.length = 0;
}

/** A data directory with the signing PKI, a tenant with `licences` Basic-1 seats and `devices` routers. */
export async function seedFleet(opts: { licences: number; devices: number }): Promise<{ dataDir: string; t: Tenant; ids: DeviceIdentity[] }> {
  const dataDir = tempDir();
  await seedSigningPki(dataDir);
  const w = world({}, dataDir);
  try {
    w.clock.set(Date.now());
    const t = await w.newTenant();
    if (opts.licences > 0) w.licences(t, 'basic-1', opts.licences);
    const ids = w.devices(t, opts.devices);
    return { dataDir, t, ids };
  } finally {
    w.close();
  }
}

/** Logs in as the tenant's user at a running server; the bearer token. */
export async function login(url: string, t: Tenant): Promise<string> {
  const res = await request(`${url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: t.username, password: t.password }),
    signal: AbortSignal.timeout(10_000),
  });
  return ((await res.body.json()) as { token: string }).token;
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
