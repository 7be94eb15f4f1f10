/**
 * A real Mosquitto broker for tests: its own config file and directory, a free port on 127.0.0.1,
 * optionally a TLS listener and the dynamic-security plugin with clients and roles written before
 * it starts. Never the machine's broker on 1883.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DynsecClient, type DynsecRole, dynsecFile } from '../../src/channel/mqtt/mosquitto-files.js';
import { waitFor } from '../../../protocol/test/helpers/wait-for.js';

function firstExisting(paths: string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}

const PATH_DIRS = (process.env.PATH ?? '').split(':').filter(Boolean);

/** The mosquitto binary, or undefined when it is not installed (tests skip with this reason). */
export const MOSQUITTO_BIN = firstExisting(['/usr/sbin/mosquitto', ...PATH_DIRS.map((d) => join(d, 'mosquitto'))]);

/** The dynamic-security plugin shipped with Debian's mosquitto. */
export const DYNSEC_PLUGIN = firstExisting([
  '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/mosquitto_dynamic_security.so',
  '/usr/local/lib/mosquitto_dynamic_security.so',
]);

/** Why MQTT broker tests cannot run here, or undefined when they can. */
export const MOSQUITTO_MISSING: string | undefined = !MOSQUITTO_BIN
  ? 'mosquitto is not installed (apt-get install mosquitto); .ci/run installs it'
  : !DYNSEC_PLUGIN
      ? 'the mosquitto dynamic-security plugin is not installed'
      : undefined;

export interface MosquittoOptions {
  /** Dynamic-security plugin with this admin and these clients/roles; without it: anonymous access. */
  dynsec?: { admin: { username: string; password: string }; clients?: DynsecClient[]; roles?: DynsecRole[] };
  /** A TLS listener too (PEM): the URL `mqtts://127.0.0.1:<tlsPort>`. */
  tls?: { certPem: string; keyPem: string };
  /** Keep sessions and retained messages across a restart (persistence file in the broker's directory). */
  persistence?: boolean;
  /** Extra configuration lines. */
  extra?: string[];
}

export interface MosquittoBroker {
  readonly port: number;
  readonly url: string;
  readonly tlsPort: number | undefined;
  readonly tlsUrl: string | undefined;
  readonly dir: string;
  /** What the broker logged so far. */
  log(): string;
  /** SIGTERM and wait for the exit (persistence is written). */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** Starts it again on the same ports with the same files. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
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

/** Starts a Mosquitto of its own. Throws when the binary (or, with `dynsec`, the plugin) is missing. */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<MosquittoBroker> {
  if (!MOSQUITTO_BIN) throw new Error(MOSQUITTO_MISSING);
  if (options.dynsec && !DYNSEC_PLUGIN) throw new Error(MOSQUITTO_MISSING);
  const dir = await mkdtemp(join(tmpdir(), 'rf-mosquitto-'));
  const port = await freePort();
  const tlsPort = options.tls ? await freePort() : undefined;
  const lines = [
    'per_listener_settings false',
    `listener ${port} 127.0.0.1`,
    // Running as root, mosquitto would switch to the `mosquitto` user, which cannot write this
    // directory (the dynamic-security file, persistence).
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    'max_keepalive 3600',
  ];
  if (options.tls && tlsPort) {
    await writeFile(join(dir, 'server.crt'), options.tls.certPem);
    await writeFile(join(dir, 'server.key'), options.tls.keyPem, { mode: 0o600 });
    lines.push(`listener ${tlsPort} 127.0.0.1`, `certfile ${join(dir, 'server.crt')}`, `keyfile ${join(dir, 'server.key')}`);
  }
  if (options.dynsec) {
    const file = join(dir, 'dynamic-security.json');
    await writeFile(file, JSON.stringify(dynsecFile(options.dynsec.admin, options.dynsec.clients, options.dynsec.roles)), { mode: 0o600 });
    lines.push('allow_anonymous false', `plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${file}`);
  } else {
    lines.push('allow_anonymous true');
  }
  if (options.persistence) lines.push('persistence true', `persistence_location ${dir}/`, 'autosave_interval 1');
  lines.push(...(options.extra ?? []));
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(conf, `${lines.join('\n')}\n`);

  let child: ChildProcess | undefined;
  let output = '';
  const start = async (): Promise<void> => {
    const c = spawn(MOSQUITTO_BIN, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const collect = (b: Buffer) => {
      output += b.toString();
      if (output.length > 200_000) output = output.slice(-100_000);
    };
    c.stdout?.on('data', collect);
    c.stderr?.on('data', collect);
    let exited = false;
    c.once('exit', () => (exited = true));
    await waitFor(async () => {
      if (exited) throw new Error(`mosquitto exited at start:\n${output}`);
      return (await accepts(port)) && (tlsPort === undefined || (await accepts(tlsPort)));
    }, { timeout: 15_000, what: 'mosquitto listening' });
  };
  const stopWith = async (signal: NodeJS.Signals): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(signal);
    await exited;
  };
  await start();
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    tlsPort,
    tlsUrl: tlsPort ? `mqtts://127.0.0.1:${tlsPort}` : undefined,
    dir,
    log: () => output,
    stop: () => stopWith('SIGTERM'),
    kill: () => stopWith('SIGKILL'),
    restart: async () => {
      await stopWith('SIGTERM');
      await start();
    },
    close: async () => {
      await stopWith('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
