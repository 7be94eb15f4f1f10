import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { ROOT } from './process.js';
import { waitFor as waitUntil } from '../../../protocol/test/helpers/wait-for.js';

/*
 * The real reference server (`server-stub`) as a black box for the agent's end-to-end tests: its
 * built CLI runs as a child process, the tests talk to it over HTTP(S) only. The agent never
 * imports server code (CONTRIBUTING: no cycles), and neither does this helper.
 */

export const SERVER_CLI = join(ROOT, 'server-stub', 'dist', 'cli.js');

const execFileAsync = promisify(execFile);
/** Deadline for the server to start or an offline command to finish (ms): the machine may run two suites at once. */
const START_DEADLINE_MS = 60_000;

/** Runs an offline `fleet-server` command (tls generate, account create, licences issue); returns stdout. */
export async function serverCli(args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, [SERVER_CLI, ...args], { timeout: START_DEADLINE_MS });
  return stdout;
}

export interface ServeOptions {
  dataDir: string;
  /** 0: any free port (the URL is read from the "listening" log line). */
  port: number;
  tls?: { cert: string; key: string };
  /** More `serve` flags. */
  args?: string[];
}

/** One `fleet-server serve` process. */
export class ServerProcess {
  private constructor(
    readonly child: ChildProcess,
    /** Base URL as logged by the server (`https://127.0.0.1:PORT`). */
    readonly url: string,
    readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
    /** stdout + stderr so far (pino JSON lines). */
    readonly log: () => string,
  ) {}

  static async start(options: ServeOptions): Promise<ServerProcess> {
    const args = [
      SERVER_CLI,
      'serve',
      '--data', options.dataDir,
      '--host', '127.0.0.1',
      '--port', String(options.port),
      ...(options.tls ? ['--tls-cert', options.tls.cert, '--tls-key', options.tls.key] : []),
      ...(options.args ?? []),
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const keep = (d: Buffer) => {
      log += d.toString();
      if (log.length > 400_000) log = log.slice(-200_000);
    };
    child.stderr!.on('data', keep);
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fleet-server did not listen within ${START_DEADLINE_MS / 1000} s:\n${log}`)), START_DEADLINE_MS);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        log += `${line}\n`;
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'fleet-server listening' && entry.url) {
            clearTimeout(timer);
            resolve(entry.url);
          }
        } catch {
          // not a log line
        }
      });
      void exit.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`fleet-server exited (${code ?? signal}) before listening:\n${log}`));
      });
    });
    return new ServerProcess(child, url, exit, () => log);
  }

  /** SIGTERM (graceful shutdown) and the exit status. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exit;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** A small JSON client of the REST API (bearer token; the server's TLS CA pinned). */
export class Api {
  readonly #dispatcher: Agent;
  token: string | undefined;

  constructor(
    public baseUrl: string,
    caPem?: string,
  ) {
    // One connection per request: a restarted server must not meet a stale kept-alive socket.
    this.#dispatcher = new Agent({ pipelining: 0, ...(caPem ? { connect: { ca: caPem } } : {}) });
  }

  async call(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<{ status: number; body: Buffer }> {
    const res = await request(`${this.baseUrl}${path}`, {
      method,
      dispatcher: this.#dispatcher,
      headers: {
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
  }

  /** A JSON call that must answer `expected` (else it throws with the server's error body). */
  async json<T = Record<string, unknown>>(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown, expected = method === 'POST' ? [200, 201] : [200]): Promise<T> {
    const res = await this.call(method, path, body);
    if (!expected.includes(res.status)) {
      throw new Error(`${method} ${path}: HTTP ${res.status} ${res.body.toString('utf8').slice(0, 2000)}`);
    }
    return JSON.parse(res.body.toString('utf8')) as T;
  }

  async login(username: string, password: string): Promise<void> {
    this.token = (await this.json<{ token: string }>('POST', '/api/auth/login', { username, password }, [200])).token;
  }

  close(): Promise<void> {
    return this.#dispatcher.close();
  }
}

/** Polls `probe` until it returns a value other than undefined/false; throws with `what` (and the last value) after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs: number,
  intervalMs = 100,
  describe?: () => Promise<string> | string,
): Promise<T> {
  try {
    return await waitUntil(probe, { what, timeout: timeoutMs, interval: intervalMs });
  } catch (error) {
    const detail = describe ? await describe() : '';
    throw detail ? new Error(`${(error as Error).message}\n${detail}`) : error;
  }
}
