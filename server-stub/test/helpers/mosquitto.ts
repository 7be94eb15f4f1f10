/**
 * A real Mosquitto broker for tests: its own config file and directory, a free port on 127.0.0.1,
 * optionally a TLS listener and the dynamic-security plugin with clients and roles written before
 * it starts. Never the machine's broker on 1883.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { type DynsecClient, type DynsecRole, dynsecFile } from '../../src/channel/mqtt/mosquitto-files.js';
import { DYNSEC_PLUGIN, freePort, MOSQUITTO_BIN, MOSQUITTO_MISSING, MosquittoProcess } from '../../src/channel/mqtt/mosquitto-process.js';
import { removeTempDirs } from './setup.js';

export { DYNSEC_PLUGIN, freePort, MOSQUITTO_BIN, MOSQUITTO_MISSING };

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

  const proc = new MosquittoProcess({ configFile: conf, ports: tlsPort ? [port, tlsPort] : [port] });
  await proc.start();
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    tlsPort,
    tlsUrl: tlsPort ? `mqtts://127.0.0.1:${tlsPort}` : undefined,
    dir,
    log: () => proc.output(),
    stop: () => proc.stop(),
    kill: () => proc.kill(),
    restart: async () => {
      await proc.stop();
      await proc.start();
    },
    close: async () => {
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * What a test file starts against Mosquitto, ended after each test in order: device connections,
 * then servers (`worlds`), then `between` (e.g. killing `serve` processes), then the brokers; then
 * the temporary directories go. Push what a test starts into the lists.
 */
export function mosquittoTestParts(between?: () => void): {
  devices: { end(): Promise<unknown> }[];
  worlds: { stop(): Promise<unknown> }[];
  brokers: MosquittoBroker[];
} {
  const parts = { devices: [] as { end(): Promise<unknown> }[], worlds: [] as { stop(): Promise<unknown> }[], brokers: [] as MosquittoBroker[] };
  afterEach(async () => {
    const failures: unknown[] = [];
    const attempt = async (step: () => unknown) => {
      try {
        await step();
      } catch (err) {
        failures.push(err);
      }
    };
    for (const d of parts.devices.splice(0)) await d.end().catch(() => undefined);
    for (const w of parts.worlds.splice(0)) await w.stop().catch(() => undefined);
    // Every broker is closed and the directories go even when a step before fails (which still fails the test).
    if (between) await attempt(between);
    for (const b of parts.brokers.splice(0)) await attempt(() => b.close());
    removeTempDirs();
    if (failures.length > 0) throw failures[0];
  });
  return parts;
}
