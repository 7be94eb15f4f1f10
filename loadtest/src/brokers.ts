/**
 * Mosquitto brokers of a load test's own: N processes on free ports of 127.0.0.1, each with its
 * own directory, config and dynamic-security file written before it starts (the server account
 * and every device of its shard, passwords hashed as the plugin hashes them). A fleet larger than
 * one process can hold (one process holds at most ~19,000 sockets under this machine's 20,000-file
 * limit) is sharded by MQTT bucket over several brokers, the way a real deployment shards brokers:
 * every device of a bucket, and so every uplink a bucket consumer reads, lives on one broker.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { MQTT_BINDING, mqttBucket } from '@router-fleet/protocol';
import { deviceRole, type DynsecClient, type DynsecRole, dynsecFile, SERVER_ACCOUNT, serverRole } from '@router-fleet/server-stub/mosquitto-files';
import { DYNSEC_PLUGIN, freePort, MOSQUITTO_BIN, MOSQUITTO_MISSING, MosquittoProcess } from '@router-fleet/server-stub/mosquitto-process';
import { LoadtestError } from './errors.js';

export { DYNSEC_PLUGIN, MOSQUITTO_BIN, MOSQUITTO_MISSING };

/** Devices one broker holds by default: 15,000 sockets leave room under a 20,000-file limit. */
export const DEFAULT_DEVICES_PER_BROKER = 15_000;

/** Connections a broker accepts beyond its devices: server bucket clients (64 per process), floor consumers, probes. */
export const DEFAULT_EXTRA_CONNECTIONS = 512;

/** Files a broker needs besides its sockets (listeners, log, persistence, plugin, epoll). */
const RESERVED_FILES = 64;

export { SERVER_ACCOUNT };

export interface BrokerDevice {
  deviceId: string;
  /** The device's credential: its MQTT password. */
  credential: string;
}

export interface BrokerFleetOptions {
  devices: readonly BrokerDevice[];
  /** Most devices one broker holds (capped by the file limit it can get). Default 15,000. */
  devicesPerBroker?: number;
  /** Connections each broker accepts beyond its devices. Default 512. */
  extraConnections?: number;
  /** The server's account (user name and password); the password is random by default. */
  server?: { username?: string; password?: string };
  /** Keep sessions and retained presence across a restart (persistence file). Default true. */
  persistence?: boolean;
  /**
   * QoS 1 messages a broker queues per absent client. Default 1000. Applies to a single broker:
   * bridged brokers (a hub and its shards) queue without a cap, since one bridge carries a whole
   * shard's traffic; asking for a cap with a hub is refused.
   */
  maxQueuedMessages?: number;
  /**
   * A hub broker the shards bridge their buckets to (up and presence out, down in), so that one
   * server with one broker URL consumes every bucket. Default: only when there is more than one shard.
   */
  hub?: boolean;
  /**
   * A TLS listener for the devices on every shard (PEM files; the certificate must name 127.0.0.1).
   * The plain listener stays for the server's side (consumers, bridges) on loopback.
   */
  tls?: { certPath: string; keyPath: string };
  /** Parent directory of the brokers' directories. Default: a new one under the system temp dir. */
  dir?: string;
  log?: (text: string) => void;
}

export interface BrokerShard {
  readonly index: number;
  readonly port: number;
  /** `mqtt://127.0.0.1:PORT`: the plain listener (server side, bridges, probes). */
  readonly url: string;
  /** What devices dial: `mqtts://127.0.0.1:TLSPORT` with TLS, else `url`. */
  readonly deviceUrl: string;
  readonly dir: string;
  /** Buckets whose devices (and consumers) this broker serves. */
  readonly buckets: readonly number[];
  /** Devices written into its dynamic-security file. */
  readonly devices: number;
  /** Open-file limit the process got (`ulimit -n`). */
  readonly fileLimit: number;
  /** Process id, undefined while stopped. */
  pid(): number | undefined;
  /** Resident memory of the process (bytes, /proc); 0 while stopped. */
  rss(): number;
  /** What the broker logged (errors and warnings). */
  log(): string;
  /** SIGTERM and wait for the exit (persistence is written). */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port with the same files (persisted sessions come back). */
  start(): Promise<void>;
}

export interface BrokerFleet {
  readonly shards: readonly BrokerShard[];
  /** The broker the shards bridge to, when there is one (it holds no devices). */
  readonly hub: BrokerShard | undefined;
  /** Where the server (and the floor's consumer) connects: the hub, or the only broker. */
  readonly serverUrl: string;
  readonly dir: string;
  /** The server account every broker knows. */
  readonly server: { username: string; password: string };
  /** The dynsec admin of every broker. */
  readonly admin: { username: string; password: string };
  /** Measured while starting (ms): hashing every password, writing the files, until all listen. */
  readonly timings: { hashMs: number; writeMs: number; startMs: number };
  /** The broker a device dials. Throws on a device the fleet was not given. */
  shardOf(deviceId: string): BrokerShard;
  /** The broker that holds a bucket's devices. */
  shardOfBucket(bucket: number): BrokerShard;
  /** Resident memory of every broker (bytes). */
  rss(): number;
  /**
   * Heap in use of every broker (bytes, `$SYS/broker/heap/current`, fresh within about a second).
   * Steadier than RSS: a broker that parsed a large dynamic-security file at start reuses those
   * freed pages for its clients, so its RSS hardly grows with the first thousands of them.
   */
  heap(): Promise<number>;
  /** Stops and starts every broker, the hub last (SIGTERM: sessions persisted), one after the other. */
  restart(): Promise<void>;
  /** Stops every broker and removes the directories. */
  close(): Promise<void>;
}

/** The account the shards' bridges use at the hub. */
export const BRIDGE_ACCOUNT = 'rf-bridge';

/** The bridges' role at the hub: forward every device's up and presence, take every device's down. */
export function bridgeRole(): DynsecRole {
  const root = MQTT_BINDING.topicRoot;
  return {
    rolename: BRIDGE_ACCOUNT,
    acls: [
      { acltype: 'publishClientSend', topic: `${root}/+/+/up`, allow: true },
      { acltype: 'publishClientSend', topic: `${root}/+/+/presence`, allow: true },
      { acltype: 'subscribePattern', topic: `${root}/+/+/down`, allow: true },
      { acltype: 'publishClientReceive', topic: `${root}/+/+/down`, allow: true },
    ],
  };
}

/**
 * The open-file limit a broker process can get: `wanted` where the machine allows raising the
 * limit that far, else the hard limit this process has (`ulimit -Hn`).
 */
export function fileLimitFor(wanted: number): number {
  const probe = spawnSync('/bin/sh', ['-c', 'ulimit -n "$0" 2>/dev/null; ulimit -n', String(wanted)], { encoding: 'utf8' });
  const n = Number(probe.stdout.trim());
  if (Number.isFinite(n) && n > 0) return n;
  const hard = /Max open files\s+\d+\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
  return hard ? Number(hard) : 1024;
}

/**
 * Buckets over `shards` brokers, balanced by device count (largest bucket first onto the least
 * loaded broker). Deterministic for a given fleet.
 */
export function assignBuckets(counts: readonly number[], shards: number): number[][] {
  const order = counts.map((n, b) => ({ n, b })).sort((x, y) => y.n - x.n || x.b - y.b);
  const load = new Array<number>(shards).fill(0);
  const out: number[][] = Array.from({ length: shards }, () => []);
  for (const { n, b } of order) {
    let best = 0;
    for (let i = 1; i < shards; i++) if (load[i]! < load[best]!) best = i;
    out[best]!.push(b);
    load[best]! += n;
  }
  for (const s of out) s.sort((x, y) => x - y);
  return out;
}

/**
 * `$SYS/broker/heap/current` of one broker: the first value published after subscribing that is
 * not the retained one (the broker publishes it each second when it changed), else the retained one.
 */
async function brokerHeap(url: string, admin: { username: string; password: string }): Promise<number> {
  const client = await mqtt.connectAsync(url, { ...admin, clientId: `rf-loadtest-heap-${Math.random().toString(36).slice(2, 10)}`, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 30_000 });
  try {
    return await new Promise<number>((resolve, reject) => {
      let retained: number | undefined;
      const timer = setTimeout(() => (retained === undefined ? reject(new LoadtestError('LOADTEST_BROKER_FAILED', `${url}: no $SYS/broker/heap/current within 5 s`)) : resolve(retained)), 5000);
      client.on('message', (_topic, payload, packet) => {
        const n = Number(payload.toString());
        if (!Number.isFinite(n)) return;
        if (packet.retain) retained = n;
        else {
          clearTimeout(timer);
          resolve(n);
        }
      });
      client.subscribe('$SYS/broker/heap/current', { qos: 0 }, (err) => err && reject(err));
    });
  } finally {
    await client.endAsync(true);
  }
}

function vmRss(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

const randomSecret = () => `${Math.random().toString(36).slice(2)}${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;

/** Starts the brokers of a fleet; throws `LOADTEST_MOSQUITTO_MISSING` without mosquitto. */
export async function startBrokerFleet(options: BrokerFleetOptions): Promise<BrokerFleet> {
  if (MOSQUITTO_MISSING) throw new LoadtestError('LOADTEST_MOSQUITTO_MISSING', MOSQUITTO_MISSING);
  const log = options.log ?? (() => {});
  const extra = options.extraConnections ?? DEFAULT_EXTRA_CONNECTIONS;
  const wantedPerBroker = options.devicesPerBroker ?? DEFAULT_DEVICES_PER_BROKER;
  if (!Number.isInteger(wantedPerBroker) || wantedPerBroker < 1) throw new LoadtestError('LOADTEST_USAGE', 'devices per broker must be a positive integer');
  const fileLimit = fileLimitFor(wantedPerBroker + extra + RESERVED_FILES);
  const perBroker = Math.min(wantedPerBroker, fileLimit - extra - RESERVED_FILES);
  if (perBroker < 1) throw new LoadtestError('LOADTEST_USAGE', `a broker may open ${fileLimit} files here: too few for ${extra} extra connections`);

  const byBucket: BrokerDevice[][] = Array.from({ length: MQTT_BINDING.buckets }, () => []);
  const seen = new Set<string>();
  for (const d of options.devices) {
    if (seen.has(d.deviceId)) throw new LoadtestError('LOADTEST_USAGE', `device ${d.deviceId} given twice`);
    seen.add(d.deviceId);
    byBucket[mqttBucket(d.deviceId)]!.push(d);
  }
  const counts = byBucket.map((b) => b.length);
  if (Math.max(...counts) > perBroker) {
    throw new LoadtestError('LOADTEST_USAGE', `one bucket holds ${Math.max(...counts)} devices, more than a broker may hold here (${perBroker})`);
  }
  // As few brokers as hold the fleet; one more while a balanced split still overfills one.
  let shardCount = Math.max(1, Math.ceil(options.devices.length / perBroker));
  let assignment = assignBuckets(counts, shardCount);
  const fill = (a: number[][]) => Math.max(...a.map((bs) => bs.reduce((n, b) => n + counts[b]!, 0)));
  while (fill(assignment) > perBroker) assignment = assignBuckets(counts, ++shardCount);

  const server = { username: options.server?.username ?? SERVER_ACCOUNT, password: options.server?.password ?? randomSecret() };
  const admin = { username: 'rf-loadtest-admin', password: randomSecret() };
  const bridge = { username: BRIDGE_ACCOUNT, password: randomSecret() };
  const useHub = options.hub ?? shardCount > 1;
  const persistence = options.persistence ?? true;
  const maxQueued = options.maxQueuedMessages ?? 1000;
  if (useHub && options.maxQueuedMessages !== undefined) {
    throw new LoadtestError('LOADTEST_USAGE', 'maxQueuedMessages applies to a single broker: bridged brokers queue without a cap (a bridge carries a whole shard)');
  }
  const root = options.dir ?? (await mkdtemp(join(tmpdir(), 'rf-loadtest-brokers-')));
  const ownsRoot = options.dir === undefined;
  const shards: ShardImpl[] = [];
  let hub: ShardImpl | undefined;
  let hashMs = 0;
  let writeMs = 0;
  try {
    if (useHub) {
      const dir = join(root, 'hub');
      await mkdir(dir, { recursive: true });
      const file = dynsecFile(admin, [
        { username: server.username, password: server.password, roles: [SERVER_ACCOUNT] },
        { username: bridge.username, password: bridge.password, roles: [BRIDGE_ACCOUNT] },
      ], [serverRole(), bridgeRole()]);
      await writeFile(join(dir, 'dynamic-security.json'), JSON.stringify(file), { mode: 0o600 });
      const port = await freePort();
      await writeFile(join(dir, 'mosquitto.conf'), brokerConfig({ dir, port, maxConnections: extra + shardCount, persistence, maxQueued, bridged: true }));
      hub = new ShardImpl(-1, port, dir, Array.from({ length: MQTT_BINDING.buckets }, (_, b) => b), 0, fileLimit);
      // The hub first: the shards' bridges connect to it as they start.
      await hub.start();
    }
    for (let i = 0; i < shardCount; i++) {
      const buckets = assignment[i]!;
      const devices = buckets.flatMap((b) => byBucket[b]!);
      const clients: DynsecClient[] = [
        { username: server.username, password: server.password, roles: [SERVER_ACCOUNT] },
        ...devices.map((d) => ({ username: d.deviceId, clientid: d.deviceId, password: d.credential, roles: [`rf-device-${d.deviceId}`] })),
      ];
      const roles = [serverRole(), ...devices.map((d) => deviceRole(d.deviceId))];
      let t = performance.now();
      // The password hashing (PBKDF2-SHA512, 101 iterations per client) happens in here.
      const file = JSON.stringify(dynsecFile(admin, clients, roles));
      hashMs += performance.now() - t;
      t = performance.now();
      const dir = join(root, `broker-${i}`);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'dynamic-security.json'), file, { mode: 0o600 });
      const port = await freePort();
      const tlsPort = options.tls ? await freePort() : undefined;
      const bridgeTo = hub ? { port: hub.port, ...bridge, clientId: `rf-bridge-${i}`, buckets } : undefined;
      await writeFile(join(dir, 'mosquitto.conf'), brokerConfig({
        dir,
        port,
        maxConnections: devices.length + extra,
        persistence,
        maxQueued,
        ...(bridgeTo ? { bridge: bridgeTo } : {}),
        ...(options.tls && tlsPort ? { tls: { port: tlsPort, ...options.tls } } : {}),
      }));
      writeMs += performance.now() - t;
      shards.push(new ShardImpl(i, port, dir, buckets, devices.length, fileLimit, tlsPort));
    }
    const tStart = performance.now();
    await Promise.all(shards.map((s) => s.start()));
    const startMs = performance.now() - tStart;
    log(`${shardCount} broker(s)${hub ? ' bridged to a hub' : ''} for ${options.devices.length} devices (≤ ${perBroker} each, file limit ${fileLimit}): hashing ${Math.round(hashMs)} ms, files ${Math.round(writeMs)} ms, start ${Math.round(startMs)} ms`);
    const all = hub ? [...shards, hub] : shards;
    const shardByBucket = new Map<number, ShardImpl>();
    for (const s of shards) for (const b of s.buckets) shardByBucket.set(b, s);
    const fleet: BrokerFleet = {
      shards,
      hub,
      serverUrl: hub?.url ?? shards[0]!.url,
      dir: root,
      server,
      admin,
      timings: { hashMs: Math.round(hashMs), writeMs: Math.round(writeMs), startMs: Math.round(startMs) },
      shardOf: (deviceId) => {
        if (!seen.has(deviceId)) throw new LoadtestError('LOADTEST_USAGE', `device ${deviceId} is not in the broker fleet`);
        return shardByBucket.get(mqttBucket(deviceId))!;
      },
      shardOfBucket: (bucket) => {
        const s = shardByBucket.get(bucket);
        if (!s) throw new RangeError(`bucket must be 0–${MQTT_BINDING.buckets - 1}`);
        return s;
      },
      rss: () => all.reduce((n, s) => n + s.rss(), 0),
      heap: async () => (await Promise.all(all.map((s) => brokerHeap(s.url, admin)))).reduce((n, h) => n + h, 0),
      restart: async () => {
        for (const s of all) {
          await s.stop();
          await s.start();
        }
      },
      close: async () => {
        await Promise.all(all.map((s) => s.stop()));
        if (ownsRoot) await rm(root, { recursive: true, force: true });
        else for (const s of all) await rm(s.dir, { recursive: true, force: true });
      },
    };
    return fleet;
  } catch (err) {
    await Promise.all([...shards, ...(hub ? [hub] : [])].map((s) => s.kill()));
    if (ownsRoot) await rm(root, { recursive: true, force: true });
    throw err;
  }
}

interface BridgeConfig {
  port: number;
  username: string;
  password: string;
  clientId: string;
  buckets: readonly number[];
}

interface BrokerConfig {
  dir: string;
  port: number;
  maxConnections: number;
  persistence: boolean;
  maxQueued: number;
  /** A hub or a shard bridged to one: its queues carry a bridge's traffic. */
  bridged?: boolean;
  bridge?: BridgeConfig;
  tls?: { port: number; certPath: string; keyPath: string };
}

function brokerConfig(o: BrokerConfig): string {
  const lines = [
    'per_listener_settings false',
    `listener ${o.port} 127.0.0.1`,
    `max_connections ${o.maxConnections}`,
    ...(o.tls ? [`listener ${o.tls.port} 127.0.0.1`, `max_connections ${o.maxConnections}`, `certfile ${o.tls.certPath}`, `keyfile ${o.tls.keyPath}`] : []),
    // Running as root, mosquitto would switch to the `mosquitto` user, which cannot write this
    // directory (persistence, the dynamic-security file).
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    // Connection messages for tens of thousands of clients would cost the broker more than they tell.
    `log_dest file ${join(o.dir, 'mosquitto.log')}`,
    'log_type error',
    'log_type warning',
    'connection_messages false',
    'set_tcp_nodelay true',
    // $SYS/broker/heap/current every second: what heap() reads.
    'sys_interval 1',
    'max_keepalive 3600',
    // A bridge is one client carrying a whole shard's traffic: behind the default cap (1,000 queued
    // per client) Mosquitto drops QoS 1 messages silently, which lost 3,125 of 15,000 job offers
    // published within 1.5 s through the hub. Bridged brokers queue without a cap (0); downlinks
    // to devices are bounded by their message expiry.
    `max_queued_messages ${o.bridged || o.bridge ? 0 : o.maxQueued}`,
    // MQTT 3.1.1 sessions have no expiry of their own.
    'persistent_client_expiration 14d',
    'allow_anonymous false',
    `plugin ${DYNSEC_PLUGIN}`,
    `plugin_opt_config_file ${join(o.dir, 'dynamic-security.json')}`,
  ];
  // Saved on a clean stop; an autosave of tens of thousands of sessions every second would be load of its own.
  if (o.persistence) lines.push('persistence true', `persistence_location ${o.dir}/`, 'autosave_interval 300');
  if (o.bridge) {
    const root = MQTT_BINDING.topicRoot;
    lines.push(
      // MQTT 5 end to end: downlinks keep their message expiry across the bridge.
      'connection hub',
      `address 127.0.0.1:${o.bridge.port}`,
      'bridge_protocol_version mqttv50',
      `remote_clientid ${o.bridge.clientId}`,
      `remote_username ${o.bridge.username}`,
      `remote_password ${o.bridge.password}`,
      // A persistent session at the hub: downlinks for this shard's buckets wait while it restarts.
      'cleansession false',
      'notifications false',
      'start_type automatic',
      'restart_timeout 1 5',
      // Only this shard's buckets: each device's traffic crosses exactly one bridge, in order.
      ...o.bridge.buckets.flatMap((b) => [`topic ${root}/${b}/+/up out 1`, `topic ${root}/${b}/+/presence out 1`, `topic ${root}/${b}/+/down in 1`]),
    );
  }
  return `${lines.join('\n')}\n`;
}

class ShardImpl implements BrokerShard {
  readonly url: string;
  readonly deviceUrl: string;
  readonly #process: MosquittoProcess;

  constructor(
    readonly index: number,
    readonly port: number,
    readonly dir: string,
    readonly buckets: readonly number[],
    readonly devices: number,
    readonly fileLimit: number,
    readonly tlsPort?: number,
  ) {
    this.url = `mqtt://127.0.0.1:${port}`;
    this.deviceUrl = tlsPort ? `mqtts://127.0.0.1:${tlsPort}` : this.url;
    this.#process = new MosquittoProcess({
      configFile: join(dir, 'mosquitto.conf'),
      ports: tlsPort ? [port, tlsPort] : [port],
      fileLimit,
      outputLimit: 4000,
    });
  }

  pid(): number | undefined {
    return this.#process.pid;
  }

  rss(): number {
    return vmRss(this.#process.pid);
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, 'mosquitto.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async start(): Promise<void> {
    try {
      await this.#process.start();
    } catch (err) {
      throw new LoadtestError('LOADTEST_BROKER_FAILED', `broker ${this.index}: ${(err as Error).message}${this.log().slice(-2000)}`, { cause: err });
    }
  }

  stop(): Promise<void> {
    return this.#process.stop();
  }

  kill(): Promise<void> {
    return this.#process.kill();
  }
}
