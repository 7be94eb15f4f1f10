/**
 * A Mosquitto process of one's own, for the tests and the load test (the server itself never starts
 * one; it writes the files one runs it with, mosquitto-files.ts): where the binary and the
 * dynamic-security plugin are, free ports on 127.0.0.1, and a process started with a config file
 * that counts as up once every listener accepts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { join } from 'node:path';

const firstExisting = (paths: readonly string[]) => paths.find((p) => existsSync(p));

const PATH_DIRS = (process.env['PATH'] ?? '').split(':').filter(Boolean);

/** The mosquitto binary, or undefined when it is not installed. */
export const MOSQUITTO_BIN = firstExisting(['/usr/sbin/mosquitto', ...PATH_DIRS.map((d) => join(d, 'mosquitto'))]);

/** The dynamic-security plugin shipped with Debian's mosquitto. */
export const DYNSEC_PLUGIN = firstExisting([
  '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/mosquitto_dynamic_security.so',
  '/usr/local/lib/mosquitto_dynamic_security.so',
]);

/** Why Mosquitto with dynamic security cannot be started here, or undefined when it can. */
export const MOSQUITTO_MISSING: string | undefined = !MOSQUITTO_BIN
  ? 'mosquitto is not installed (apt-get install mosquitto)'
  : !DYNSEC_PLUGIN
      ? 'the mosquitto dynamic-security plugin is not installed'
      : undefined;

/** Whether `port` of 127.0.0.1 can be bound right now (it is closed again at once). */
function bindable(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen(port, '127.0.0.1', () => {
      const bound = (srv.address() as { port: number }).port;
      srv.close(() => resolve(bound));
    });
  });
}

/** The start of the kernel's range for outgoing connections' ports (Linux; 32768 elsewhere). */
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > 0 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * A TCP port of 127.0.0.1 free right now, for a process that binds it a moment later (a broker's
 * listener written into its config file). It is picked below the range the kernel gives outgoing
 * connections: a port the kernel picked for `listen(0)` can be taken by any client socket in the
 * meantime, which happened under a load test opening tens of thousands of them. Falls back to the
 * kernel's pick when no port below that range binds.
 */
export async function freePort(): Promise<number> {
  const top = Math.min(ephemeralStart(), 65_536);
  const bottom = 10_000;
  if (top - bottom > 1_000) {
    for (let i = 0; i < 50; i++) {
      const port = await bindable(bottom + Math.floor(Math.random() * (top - bottom)));
      if (port !== undefined) return port;
    }
  }
  const port = await bindable(0);
  if (port === undefined) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.connect(port, '127.0.0.1');
  });
}

export interface MosquittoProcessOptions {
  /** The configuration file (`mosquitto -c`). */
  readonly configFile: string;
  /** The ports of its listeners on 127.0.0.1: it is up once every one accepts. */
  readonly ports: readonly number[];
  /** Raise the open-file limit (`ulimit -n`) of the process to this (default: inherited). */
  readonly fileLimit?: number | undefined;
  /** How long `start` waits for the listeners (ms). Default 60,000. */
  readonly startTimeoutMs?: number | undefined;
  /** Characters of the process's output kept (the end of it). Default 100,000. */
  readonly outputLimit?: number | undefined;
}

/** One mosquitto process that can be started, stopped and started again with the same files. */
export class MosquittoProcess {
  #child: ChildProcess | undefined;
  #output = '';

  constructor(private readonly options: MosquittoProcessOptions) {}

  /** Process id, undefined while stopped. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** The end of what the process wrote on stdout and stderr (a `log_dest file` is not in it). */
  output(): string {
    return this.#output;
  }

  /**
   * Starts the process (nothing when it runs) and resolves once every listener accepts. Rejects,
   * with the process's output, when it exits first or does not listen in time (it is killed then).
   */
  async start(): Promise<void> {
    if (this.#child) return;
    if (!MOSQUITTO_BIN) throw new Error(MOSQUITTO_MISSING);
    const o = this.options;
    const limit = o.outputLimit ?? 100_000;
    // The limit is raised in the shell that becomes mosquitto (exec keeps the pid).
    const c =
      o.fileLimit !== undefined
        ? spawn('/bin/sh', ['-c', 'ulimit -n "$1" 2>/dev/null; exec "$0" -c "$2"', MOSQUITTO_BIN, String(o.fileLimit), o.configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn(MOSQUITTO_BIN, ['-c', o.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = c;
    const collect = (b: Buffer) => {
      this.#output += b.toString();
      if (this.#output.length > limit) this.#output = this.#output.slice(-limit);
    };
    c.stdout?.on('data', collect);
    c.stderr?.on('data', collect);
    let exited = false;
    c.once('exit', () => {
      exited = true;
      if (this.#child === c) this.#child = undefined;
    });
    const timeoutMs = o.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (exited) throw new Error(`mosquitto exited at start:\n${this.#output.slice(-4000)}`);
      let up = true;
      for (const port of o.ports) if (!(await accepts(port))) up = false;
      if (up) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`mosquitto did not listen on ${o.ports.join(', ')} within ${timeoutMs} ms:\n${this.#output.slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM and wait for the exit (persistence is written). */
  stop(): Promise<void> {
    return this.#end('SIGTERM');
  }

  /** SIGKILL and wait for the exit. */
  kill(): Promise<void> {
    return this.#end('SIGKILL');
  }

  async #end(signal: NodeJS.Signals): Promise<void> {
    const c = this.#child;
    this.#child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(signal);
    await exited;
  }
}
