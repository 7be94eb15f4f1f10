import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConfigInput } from '@router-fleet/agent';
import { isMqttUrl } from '@router-fleet/protocol';
import { type Behaviour, loadBehaviour } from './behaviour.js';
import { SimError } from './errors.js';
import { PROFILES_FILE } from './provision.js';
import { serverUrls } from './server-url.js';
import { type FleetIdentity, scanFleet, type Shard, validateShard, WHOLE_FLEET } from './shard.js';
import { type DeviceDetail, type FleetStats, mergeStats, type WorkerStats } from './stats.js';
import { FleetWorker, type FromWorker, STOP_GRACE_MS, type ToWorker, type WorkerOptions } from './worker.js';

/** Most routers (sockets) per process: the machine allows 20,000 open files per process. */
export const MAX_ROUTERS_PER_PROCESS = 18_000;
/** Routers per process when the number of processes is not given. */
export const DEFAULT_ROUTERS_PER_PROCESS = 15_000;
/** Routers per source address (each address has about 28,000 ephemeral ports towards one server port). */
export const ROUTERS_PER_SOURCE_ADDRESS = 16_000;

/** Connects in flight per simulator process (see StartFleetOptions.window). */
export const DEFAULT_CONNECT_WINDOW = 200;

export interface StartFleetOptions {
  /** Directory written by `fleet-sim provision` (or its profiles.ndjson file). */
  profiles: string;
  /** Routers of the fleet (the first N of the file). Default: all. */
  devices?: number;
  /**
   * Run only this slice of the fleet (`{ index: K, count: N }`, 1 ≤ K ≤ N): the routers whose
   * serial number hashes to K among N (see `shardOfRouter`). N runs, one per slice, possibly on
   * N machines, run every router of the fleet exactly once; their reports merge exactly
   * (`mergeReports`). Default: the whole fleet (1/1).
   */
  shard?: Shard;
  /**
   * Connects per second over the whole fleet. Default 200. A shard dials each of its routers at
   * that router's slot in the whole fleet's ramp, so N shards started together ramp at `rate` in all.
   */
  rate?: number;
  /**
   * First connects in flight per process: a router starts only while fewer than this many of the
   * process's routers wait for their first answer (welcome) or failure. Keeps an overloaded server
   * measurable: an open-loop ramp above its capacity queues TLS handshakes until hellos time out,
   * and the retries collapse the goodput. The same number bounds every later dial of a process
   * (reconnects), so routers sharing one event loop cannot make their own hellos late.
   * 0 = open loop (the rate alone, dials unbounded). Default 200.
   */
  window?: number;
  /** Child processes; 0 runs every router in this process. Default: one per 15,000 routers. */
  processes?: number;
  /** Built-in behaviour name, a JSON file, or a behaviour object. Default `ideal`. */
  behaviour?: string | Behaviour;
  /** Seed of the fault draws and of every router's randomness. Default 1. */
  seed?: number;
  /** Dial this origin (`wss://host:port`) instead of the one in the profiles. */
  channelOrigin?: string;
  /**
   * The control channel the profiles must name: `ws` (WebSocket) or `mqtt` (a broker). Default:
   * whatever they name. A mismatch is SIM_FLEET_INVALID; `channelOrigin` applies to `ws` only.
   */
  transport?: 'ws' | 'mqtt';
  /** Source addresses to dial from. Default: 127.0.0.1… (one per 16,000 routers, at least 2) when the server is on 127.x, else the system's choice. */
  sourceAddresses?: string[];
  /** Agent configuration on top of the simulator's (bootDelayMaxSec 0). */
  agent?: ConfigInput;
  /** How often processes report (ms). Default 1000. */
  statsIntervalMs?: number;
  /** pino level of each process's shared logger. Default `silent`. */
  logLevel?: string;
  /** Node options of the child processes (e.g. `--expose-gc`). Default none. */
  execArgv?: string[];
  /** Collect garbage before each stats report (with `--expose-gc`; benchmarks). */
  gcBeforeStats?: boolean;
}

export interface FleetHandle {
  /** Latest merged figures (refreshed every statsIntervalMs; in-process: now). */
  stats(): FleetStats;
  /** Resolves with the stats once the predicate holds; rejects after timeoutMs (default 120 s). */
  waitFor(predicate: (stats: FleetStats) => boolean, timeoutMs?: number): Promise<FleetStats>;
  /** Every router's detail (state, admission, first hello, reconnects, expected job result). */
  details(): Promise<DeviceDetail[]>;
  /** Drops a fraction of the open channels abruptly. */
  cutConnections(fraction: number, seed?: number): void;
  /** Restarts a fraction of the routers (graceful reboot or power cut). */
  restartDevices(fraction: number, options?: { seed?: number; powerCut?: boolean }): void;
  /** Tells the routers' metrics when a job was created (time-to-offer, time-to-complete). */
  jobCreated(at?: number): void;
  /**
   * Sets a mark (default now): `stats().managedSinceMark` then counts the routers that are managed
   * on a session that said hello at or after it, so admitted after it ("back after the server restart").
   */
  mark(at?: number): void;
  /**
   * Stops every router and process; resolves with the final figures. Graceful (GOING_AWAY close,
   * jobs halt at a safe point) for `graceMs` (default STOP_GRACE_MS, 15 s); routers still running
   * then have their sockets cut, so a stop of a large fleet against a saturated server is bounded.
   */
  stop(options?: { graceMs?: number }): Promise<FleetStats>;
  readonly processes: number;
  /** Routers of this run (of its shard). */
  readonly devices: number;
  /** The slice of the fleet this run is (1/1: the whole fleet). */
  readonly shard: Shard;
  /** The fleet this run took its routers from (reports merge only within one fleet). */
  readonly fleet: FleetIdentity;
  /** Memory of each process after loading its profiles, before any router started. */
  readonly baseline: Array<{ pid: number; rss: number; heapUsed: number }>;
}

interface Part {
  send(message: ToWorker): void;
  /** In-process: the stats now. */
  stats?: () => WorkerStats;
  latest: WorkerStats | undefined;
  stopped: Promise<WorkerStats>;
}

/**
 * Resolves with the fleet's figures once `predicate` holds for them (read every 200 ms); rejects
 * when the fleet is stopped first, or with `SIM_TIMEOUT` after `timeoutMs`.
 */
export function pollStats(
  stats: () => FleetStats,
  predicate: (s: FleetStats) => boolean,
  timeoutMs: number,
  stopped: () => boolean,
): Promise<FleetStats> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const check = () => {
      const s = stats();
      if (predicate(s)) return resolve(s);
      if (stopped()) return reject(new Error('the fleet was stopped'));
      if (Date.now() > deadline) return reject(new SimError('SIM_TIMEOUT', `waitFor: timed out after ${timeoutMs} ms (managed ${s.managed}, rejected ${s.rejected}, backing off ${s.backingOff})`));
      setTimeout(check, 200);
    };
    check();
  });
}

function workerScript(): string {
  const here = fileURLToPath(import.meta.url);
  // From the sources (tests, tsx) fork the compiled worker: `npm test` builds first.
  return here.endsWith('.ts') ? join(dirname(here), '..', 'dist', 'worker-main.js') : join(dirname(here), 'worker-main.js');
}

function profilesFile(path: string): string {
  return existsSync(path) && statSync(path).isDirectory() ? join(path, PROFILES_FILE) : path;
}

/** Default source addresses for a channel URL: several 127.0.0.x when the server is on loopback. */
export function defaultSourceAddresses(channelUrl: string, devices: number): string[] {
  let host: string;
  try {
    host = new URL(channelUrl).hostname;
  } catch {
    return [];
  }
  if (!/^127\.\d+\.\d+\.\d+$/.test(host)) return [];
  const n = Math.min(250, Math.max(2, Math.ceil(devices / ROUTERS_PER_SOURCE_ADDRESS)));
  return Array.from({ length: n }, (_, i) => `127.0.0.${i + 1}`);
}

/**
 * Starts a fleet of virtual routers (each the real agent core on a memory platform with a
 * WebSocket transport) from provisioned profiles, ramped at `rate` connects per second in file
 * order, in this process or spread over child processes.
 */
export async function startFleet(options: StartFleetOptions): Promise<FleetHandle> {
  const file = profilesFile(options.profiles);
  const shard = options.shard === undefined ? WHOLE_FLEET : validateShard(options.shard);
  if (options.devices !== undefined && !(options.devices >= 1)) throw new SimError('SIM_FLEET_INVALID', `devices must be ≥ 1, not ${options.devices}`);
  const scan = await scanFleet(file, shard, options.devices).catch((err: unknown) => {
    if (err instanceof SimError) throw err;
    throw new SimError('SIM_FILE_UNREADABLE', `cannot read profiles ${file}: ${(err as Error).message} (write them with fleet-sim provision)`);
  });
  if (scan.available < 1) throw new SimError('SIM_FLEET_INVALID', `no routers in ${file}`);
  const devices = scan.selected.length;
  if (devices < 1) throw new SimError('SIM_FLEET_INVALID', `shard ${shard.index}/${shard.count} of the ${scan.fleet.routers} routers of ${file} has no router (fewer routers than shards)`);
  const processes = options.processes ?? Math.max(1, Math.ceil(devices / DEFAULT_ROUTERS_PER_PROCESS));
  if (!Number.isInteger(processes) || processes < 0) throw new SimError('SIM_FLEET_INVALID', 'processes must be an integer ≥ 0');
  if (devices / Math.max(1, processes) > MAX_ROUTERS_PER_PROCESS) {
    throw new SimError('SIM_FLEET_INVALID', `${devices} routers need at least ${Math.ceil(devices / MAX_ROUTERS_PER_PROCESS)} processes (≤ ${MAX_ROUTERS_PER_PROCESS} sockets each)`);
  }
  const rate = options.rate ?? 200;
  if (!(rate > 0)) throw new SimError('SIM_FLEET_INVALID', 'rate must be > 0');
  const window = options.window ?? DEFAULT_CONNECT_WINDOW;
  if (!Number.isInteger(window) || window < 0) throw new SimError('SIM_FLEET_INVALID', 'window must be an integer ≥ 0');
  let behaviour: Behaviour;
  try {
    behaviour = typeof options.behaviour === 'object' ? options.behaviour : loadBehaviour(options.behaviour ?? 'ideal');
  } catch (err) {
    throw new SimError('SIM_FLEET_INVALID', `behaviour: ${(err as Error).message}`);
  }
  const firstUrl = await firstChannelUrl(file);
  const named = isMqttUrl(firstUrl) ? 'mqtt' : 'ws';
  if (options.transport && options.transport !== named) {
    throw new SimError(
      'SIM_FLEET_INVALID',
      `transport ${options.transport}: the profiles in ${file} name ${named === 'mqtt' ? 'an MQTT broker' : 'a WebSocket endpoint'} (${firstUrl}); provision them from a server whose deviceTransport is ${options.transport}`,
    );
  }
  // Mapped explicitly (https → wss, http → ws) and validated: a plain origin must also allow the
  // routers insecure transport, or they refuse to dial it and the fleet never connects. An MQTT
  // fleet dials the brokers its profiles name (the REST server is not where the devices connect).
  const channelOrigin = options.channelOrigin === undefined || named === 'mqtt' ? undefined : serverUrls(options.channelOrigin).channelOrigin;
  const channelUrl = channelOrigin ?? firstUrl;
  const base: Omit<WorkerOptions, 'process' | 'processes'> = {
    profilesFile: file,
    devices: scan.fleet.routers,
    rate,
    window,
    behaviour,
    seed: options.seed ?? 1,
    ...(channelOrigin ? { channelOrigin } : {}),
    localAddresses: options.sourceAddresses ?? defaultSourceAddresses(channelUrl, devices),
    agent: { ...(channelUrl.startsWith('ws:') || channelUrl.startsWith('mqtt:') ? { allowInsecureTransport: true } : {}), ...options.agent },
    statsIntervalMs: options.statsIntervalMs ?? 1000,
    ...(options.logLevel ? { logLevel: options.logLevel } : {}),
    ...(options.gcBeforeStats ? { gcBeforeStats: true } : {}),
  };
  const baseline: FleetHandle['baseline'] = [];

  const parts: Part[] = [];
  const pendingDetails = new Map<number, { parts: number; devices: DeviceDetail[]; resolve: (d: DeviceDetail[]) => void }>();
  let nextDetail = 1;
  const onDetail = (id: number, list: DeviceDetail[]) => {
    const p = pendingDetails.get(id);
    if (!p) return;
    p.devices.push(...list);
    if (--p.parts === 0) {
      pendingDetails.delete(id);
      p.resolve(p.devices.sort((a, b) => a.index - b.index));
    }
  };
  const readies: Array<Promise<void>> = [];
  const children: ChildProcess[] = [];

  if (processes === 0) {
    let resolveReady!: () => void;
    readies.push(new Promise((r) => (resolveReady = r)));
    const part: Part = {
      latest: undefined,
      stopped: undefined as unknown as Promise<WorkerStats>,
      send: (message) => {
        if (worker.command(message)) return;
        switch (message.type) {
          case 'detail':
            onDetail(message.id, worker.details());
            break;
          case 'stop':
            part.stopped = worker.stop(message.graceMs);
            break;
        }
      },
    };
    // `part.send` runs only after `worker` exists.
    const worker = new FleetWorker({ ...base, process: 0, processes: 1, routers: scan.selected }, (m) => {
      if (m.type === 'ready') {
        baseline.push(m.memory);
        resolveReady();
      } else if (m.type === 'stats') part.latest = m.stats;
    });
    parts.push(part);
    part.stats = () => worker.stats();
    await worker.load();
  } else {
    const script = workerScript();
    for (let k = 0; k < processes; k++) {
      // No inherited loaders (tsx, vitest): the worker is compiled JavaScript.
      const child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: options.execArgv ?? [] });
      children.push(child);
      let resolveStopped!: (s: WorkerStats) => void;
      let rejectStopped!: (e: Error) => void;
      const part: Part = {
        latest: undefined,
        stopped: new Promise<WorkerStats>((res, rej) => {
          resolveStopped = res;
          rejectStopped = rej;
        }),
        send: (message) => {
          if (child.connected) child.send(message);
        },
      };
      part.stopped.catch(() => undefined);
      readies.push(
        new Promise<void>((resolve, reject) => {
          child.on('message', (m: FromWorker) => {
            if (m.type === 'ready') {
              baseline[k] = m.memory;
              resolve();
            } else if (m.type === 'stats') part.latest = m.stats;
            else if (m.type === 'detail') onDetail(m.id, m.devices);
            else if (m.type === 'stopped') {
              part.latest = m.stats;
              resolveStopped(m.stats);
            } else if (m.type === 'error') process.emitWarning(`fleet process ${k}: ${m.message}`);
          });
          child.once('exit', (code) => {
            const error = new Error(`fleet process ${k} exited with code ${code}`);
            reject(error);
            rejectStopped(error);
          });
        }),
      );
      const routers = scan.selected.filter((_, j) => j % processes === k);
      child.send({ type: 'init', options: { ...base, process: k, processes, routers } });
      parts.push(part);
    }
  }
  await Promise.all(readies);
  const t0 = Date.now() + 100;
  for (const p of parts) p.send({ type: 'start', t0 });

  const latest = (): FleetStats => mergeStats(parts.map((p) => p.stats?.() ?? p.latest).filter((s): s is WorkerStats => s !== undefined));
  let stopped: Promise<FleetStats> | undefined;
  const handle: FleetHandle = {
    processes,
    devices,
    shard,
    fleet: scan.fleet,
    baseline,
    stats: latest,
    waitFor(predicate, timeoutMs = 120_000) {
      return pollStats(latest, predicate, timeoutMs, () => stopped !== undefined);
    },
    details() {
      const id = nextDetail++;
      return new Promise((resolve) => {
        pendingDetails.set(id, { parts: parts.length, devices: [], resolve });
        for (const p of parts) p.send({ type: 'detail', id });
      });
    },
    cutConnections(fraction, seed = 1) {
      parts.forEach((p, k) => p.send({ type: 'cut', fraction, seed: seed * 1000 + k }));
    },
    restartDevices(fraction, o = {}) {
      parts.forEach((p, k) => p.send({ type: 'restart', fraction, seed: (o.seed ?? 1) * 1000 + k, ...(o.powerCut ? { powerCut: true } : {}) }));
    },
    jobCreated(at = Date.now()) {
      for (const p of parts) p.send({ type: 'job', createdAt: at });
    },
    mark(at = Date.now()) {
      for (const p of parts) p.send({ type: 'mark', at });
    },
    stop(o = {}) {
      const graceMs = o.graceMs ?? STOP_GRACE_MS;
      stopped ??= (async () => {
        for (const p of parts) p.send({ type: 'stop', graceMs });
        // Each part bounds its own stop (STOP_GRACE_MS, then its sockets are cut); a process that
        // still has not answered by then is killed below and reports its latest figures.
        const bound = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('stop timed out')), graceMs + 10_000).unref());
        const finals = await Promise.allSettled(parts.map((p) => Promise.race([p.stopped, bound])));
        for (const c of children) {
          if (c.exitCode === null) {
            await Promise.race([new Promise((r) => c.once('exit', r)), new Promise((r) => setTimeout(r, 3000))]);
            if (c.exitCode === null) c.kill('SIGKILL');
          }
        }
        return mergeStats(finals.map((f, k) => (f.status === 'fulfilled' ? f.value : parts[k]!.latest)).filter((s): s is WorkerStats => s !== undefined));
      })();
      return stopped;
    },
  };
  return handle;
}

async function firstChannelUrl(file: string): Promise<string> {
  const { createReadStream } = await import('node:fs');
  const { createInterface } = await import('node:readline');
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    lines.close();
    return (JSON.parse(line) as { profile: { serverUrl: string } }).profile.serverUrl;
  }
  return '';
}
