import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import {
  type Agent,
  type AgentConfig,
  type AgentExit,
  type ConfigInput,
  type ConnectionProfile,
  createAgent,
  createLogger,
  createMemoryPlatform,
  createSharedClock,
  type LifecycleTransition,
  loadUpdateCode,
  type Logger,
  type MemoryPlatform,
  resolveConfig,
  seededRandom,
  type SessionState,
  silentLogger,
  type Transport,
} from '@router-fleet/agent';
import { hashSeed } from '@router-fleet/protocol/random';
import { type Behaviour, drawDevice, type DeviceDraw } from './behaviour.js';
import { BurstHold, DOWNLOAD_QUIET_MS } from './burst-hold.js';
import { heldSends, SEND_HOLD_MAX_MS } from './held-sends.js';
import { Gate } from './gate.js';
import type { ProvisionedDevice } from './provision.js';
import { RouterFlag, RouterTable } from './router-table.js';
import type { DeviceDetail, WorkerStats } from './stats.js';
import { routerLink, routerMetrics, setTelemetryPeriod } from './telemetry.js';
import { createSimTransport, type SimTransport } from './transport.js';
import { now, WorkerMetrics } from './worker-metrics.js';

/** What one process of the fleet runs (plain data: it crosses the IPC boundary). */
export interface WorkerOptions {
  /** NDJSON written by `fleet-sim provision`. */
  profilesFile: string;
  /** This process's number and the number of processes: it runs the routers i with i % processes === process. */
  process: number;
  processes: number;
  /** Routers of the whole fleet (the first `devices` lines of the profiles file). */
  devices: number;
  /**
   * The routers of this process, when the coordinator chose them (a shard of the fleet): their
   * numbers in the file (0-based, among non-empty lines), ascending. Each dials at its slot in the
   * whole fleet's ramp (t0 + number / rate). Without it: the routers i < devices with
   * i % processes === process.
   */
  routers?: number[];
  /** Connects per second over the whole fleet (the ramp). */
  rate: number;
  /**
   * Connects in flight in this process; 0 = no limit. Bounds the ramp (routers started and not yet
   * answered) and every dial (TCP + TLS + upgrade), so a reconnect storm of thousands of routers
   * sharing this process's event loop cannot delay their own hellos past the server's timeout.
   */
  window: number;
  behaviour: Behaviour;
  seed: number;
  /** Replaces the origin (scheme, host, port) of the profiles' control-channel URL. */
  channelOrigin?: string;
  /** Source addresses to dial from (round robin). */
  localAddresses: string[];
  /** Agent configuration on top of the simulator's defaults (no boot delay). */
  agent: ConfigInput;
  /** Reports stats this often (ms). */
  statsIntervalMs: number;
  /** pino level of the shared logger (`silent` by default). */
  logLevel?: string;
  /** Collect garbage before each stats report (needs --expose-gc; benchmarks). */
  gcBeforeStats?: boolean;
}

/** Messages to a worker. */
export type ToWorker =
  | { type: 'start'; t0: number }
  | { type: 'cut'; fraction: number; seed: number }
  | { type: 'restart'; fraction: number; seed: number; powerCut?: boolean }
  | { type: 'job'; createdAt: number }
  | { type: 'mark'; at: number }
  | { type: 'detail'; id: number }
  | { type: 'stop'; graceMs?: number };

/** Messages from a worker. */
export type FromWorker =
  | { type: 'ready'; process: number; devices: number; memory: { pid: number; rss: number; heapUsed: number } }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'detail'; id: number; devices: DeviceDetail[] }
  | { type: 'stopped'; stats: WorkerStats }
  | { type: 'error'; message: string };

/** Session states in which a router's first connect has its answer (or gave up): it leaves the ramp's window. */
const FIRST_CONNECT_ANSWERED: ReadonlySet<SessionState> = new Set(['managed', 'unmanaged', 'rejected-waiting', 'backing-off', 'stopped']);

/**
 * One process's share of the fleet: N real agent cores (`createAgent`) on memory platforms with a
 * WebSocket transport. Everything that can be shared is: one clock (one Node timer for all agents),
 * one logger, one transport (TLS contexts per CA), one metrics function, one configuration. Per
 * router state for metrics lives in a `RouterTable` (typed arrays indexed by the router's local
 * number); the accounting itself is `WorkerMetrics`.
 */
export class FleetWorker {
  readonly #options: WorkerOptions;
  readonly #send: (message: FromWorker) => void;
  readonly #clock = createSharedClock();
  readonly #log: Logger;
  readonly #transport: SimTransport;
  readonly #config: AgentConfig;
  readonly #metrics = new WorkerMetrics(() => this.#routers);
  /** The routers' downloads start after a burst of offers (see BurstHold). */
  readonly #downloadTurns = new BurstHold();
  /** The routers' channel writes wait for the end of a burst of offers (see heldSends). */
  readonly #sendTurns = new BurstHold(DOWNLOAD_QUIET_MS, SEND_HOLD_MAX_MS);

  // Per router (local index j; global index = #global[j], its number in the file).
  #global = new Uint32Array(0);
  #profiles: ConnectionProfile[] = [];
  #sim: Array<ProvisionedDevice['sim']> = [];
  #draws: DeviceDraw[] = [];
  #platforms: Array<MemoryPlatform | undefined> = [];
  #agents: Array<Agent | undefined> = [];
  #routers = new RouterTable(0);
  #started = 0;
  /** Routers whose time in the ramp schedule has come (see WorkerStats.due). */
  #due = 0;
  /** Routers whose first connect is in flight (the ramp's window). */
  #inFlight = 0;
  /** Dials in flight (the same window, for every dial: reconnects too). */
  readonly #dials: Gate;
  #stopping = false;
  #ramp: NodeJS.Timeout | undefined;
  #statsTimer: NodeJS.Timeout | undefined;
  #cpu0 = process.cpuUsage();
  #onExit: (j: number, exit: AgentExit) => void;

  constructor(options: WorkerOptions, send: (message: FromWorker) => void, transport?: Transport) {
    this.#options = options;
    this.#dials = new Gate(options.window);
    this.#send = send;
    this.#log = options.logLevel && options.logLevel !== 'silent' ? createLogger(options.logLevel) : silentLogger();
    const observer = {
      dialFailed: (code: string) => this.#metrics.dialFailed(code),
      closed: (code: number) => this.#metrics.closed(code),
    };
    this.#transport = (transport as SimTransport | undefined) ?? createSimTransport({ localAddresses: options.localAddresses, observer });
    this.#config = resolveConfig({ bootDelayMaxSec: 0, ...options.agent, dataDir: '' });
    setTelemetryPeriod(this.#config.analyticsSampleSec);
    this.#onExit = (j, exit) => this.#exited(j, exit);
  }

  /** Reads this process's routers from the profiles file. */
  async load(): Promise<number> {
    const { process: k, processes: p, devices: n } = this.#options;
    const interned = new Map<string, string>();
    const intern = (s: string) => {
      const have = interned.get(s);
      if (have !== undefined) return have;
      interned.set(s, s);
      return s;
    };
    const anchors = new Map<string, string[]>();
    const origin = this.#options.channelOrigin;
    const chosen = this.#options.routers;
    const global: number[] = [];
    let next = 0; // the next of `chosen` to find
    let i = 0;
    const lines = createInterface({ input: createReadStream(this.#options.profilesFile), crlfDelay: Infinity });
    for await (const line of lines) {
      if (line.trim() === '') continue;
      if (i >= n || (chosen && next >= chosen.length)) break;
      if (chosen ? chosen[next] === i : i % p === k) {
        next++;
        global.push(i);
        const d = JSON.parse(line) as ProvisionedDevice;
        const raw = d.profile;
        let serverUrl = raw.serverUrl;
        // The origin replaces a WebSocket endpoint only: MQTT routers dial the broker their profile names.
        if (origin && !/^mqtts?:\/\//.test(serverUrl)) {
          const u = new URL(serverUrl);
          serverUrl = `${origin}${u.pathname}${u.search}`; // origin: ws(s)://host:port (startFleet maps it)
        }
        const anchorList = (raw['trustAnchorsPem'] as string[]).map(intern);
        const anchorKey = anchorList.join('\n');
        let sharedAnchors = anchors.get(anchorKey);
        if (!sharedAnchors) anchors.set(anchorKey, (sharedAnchors = anchorList));
        const profile: ConnectionProfile = {
          format: intern(raw['format'] as string) as ConnectionProfile['format'],
          serverUrl: intern(serverUrl),
          caCertPem: intern(raw.caCertPem),
          trustAnchorsPem: sharedAnchors,
          deviceId: raw.deviceId,
          serialNumber: raw.serialNumber,
          credential: raw['credential'] as string,
          ...(raw['keepAlive'] ? { keepAlive: raw['keepAlive'] as ConnectionProfile['keepAlive'] } : {}),
          ...(raw['mqttVersion'] === 4 || raw['mqttVersion'] === 5 ? { mqttVersion: raw['mqttVersion'] } : {}),
        };
        this.#profiles.push(profile);
        this.#sim.push({ ...d.sim, model: intern(d.sim.model), firmware: intern(d.sim.firmware) });
        this.#draws.push(drawDevice(this.#options.behaviour, this.#options.seed, profile.serialNumber));
      }
      i++;
    }
    lines.close();
    // Loaded now, not with the fleet's first job: otherwise every router of this process waits for
    // the one import of the update code that the first offer starts (a router loads it for itself).
    await loadUpdateCode();
    this.#global = Uint32Array.from(global);
    const m = this.#profiles.length;
    this.#routers = new RouterTable(m);
    this.#platforms = new Array<MemoryPlatform | undefined>(m);
    this.#agents = new Array<Agent | undefined>(m);
    this.#gc();
    const mem = process.memoryUsage();
    this.#send({ type: 'ready', process: k, devices: m, memory: { pid: process.pid, rss: mem.rss, heapUsed: mem.heapUsed } });
    return m;
  }

  /** Starts the ramp: router i (global) dials at t0 + i / rate. */
  start(t0: number): void {
    const { rate, window } = this.#options;
    const m = this.#profiles.length;
    const globals = this.#global;
    const tick = () => {
      if (this.#stopping) return;
      const t = Date.now();
      while (this.#started < m && (window === 0 || this.#inFlight < window)) {
        const global = globals[this.#started]!;
        if (t0 + (global * 1000) / rate > t) break;
        this.#inFlight++;
        this.#routers.set(this.#started, RouterFlag.IN_FLIGHT);
        void this.#boot(this.#started++);
      }
      // Routers of this process whose time has come: global index g due at t0 + g / rate.
      this.#due = countAtMost(globals, Math.floor(((t - t0) * rate) / 1000));
      if (this.#started < m) this.#ramp = setTimeout(tick, 5);
    };
    tick();
    this.#statsTimer = setInterval(() => this.#send({ type: 'stats', stats: this.stats() }), this.#options.statsIntervalMs);
    this.#statsTimer.unref?.();
  }

  async #boot(j: number): Promise<void> {
    try {
      let platform = this.#platforms[j];
      if (!platform) {
        const profile = this.#profiles[j]!;
        const sim = this.#sim[j]!;
        const seed = hashSeed(this.#options.seed, profile.serialNumber);
        const options = {
          clock: this.#clock,
          random: seededRandom(seed),
          faults: this.#draws[j]!.faults,
          model: sim.model,
          serialNumber: profile.serialNumber,
          firmwareVersion: sim.firmware,
          link: routerLink(seed, sim.model),
          metrics: routerMetrics,
          telemetrySeed: seed,
          stagingQuotaBytes: 16 * 1024 * 1024,
          ...(sim.lat !== undefined && sim.lon !== undefined ? { location: { lat: sim.lat, lon: sim.lon, accuracyM: 50 } } : {}),
        };
        platform = await createMemoryPlatform(options);
        this.#platforms[j] = platform;
      }
      if (this.#stopping) return;
      const agent = createAgent(this.#config, platform, {
        transport: {
          dial: async (dial) => {
            // A slot in the window first; the handshake (and its timeout) starts once granted.
            if ((await this.#dials.acquire(dial.signal)) === false) this.#metrics.dialQueued();
            this.#routers.attemptAt[j] = now();
            try {
              // Writes during a burst of offers wait for its end (see heldSends).
              return heldSends(await this.#transport.dial(dial), this.#sendTurns);
            } finally {
              this.#dials.release();
            }
          },
          // Downloads share bounded pools on the fleet's source addresses (not a socket each).
          downloadDispatcher: (caPem) => this.#transport.downloadDispatcher(caPem),
          downloadTurn: (signal) => this.#downloadTurns.wait(signal),
        },
        logger: this.#log,
        profile: this.#profiles[j]!,
        onTransition: (...transition) => this.#transition(j, transition),
      });
      this.#agents[j] = agent;
      void agent.done.then((exit) => this.#onExit(j, exit));
      await agent.start();
    } catch (err) {
      this.#landed(j);
      this.#metrics.error(`start:${(err as { code?: string }).code ?? 'FAILED'}`);
    }
  }

  /** The router's first connect got an answer or gave up: its slot in the ramp's window is free. */
  #landed(j: number): void {
    if (this.#routers.take(j, RouterFlag.IN_FLIGHT)) this.#inFlight--;
  }

  #transition(j: number, [machine, state]: LifecycleTransition): void {
    if (machine === 'update') {
      // `downloading` follows `offered` once per offer taken (accepted, journaled, reported).
      if (state === 'downloading') {
        this.#downloadTurns.offered();
        this.#sendTurns.offered();
      }
      this.#metrics.update(j, state);
      return;
    }
    if (FIRST_CONNECT_ANSWERED.has(state)) this.#landed(j);
    this.#metrics.session(j, state, this.#stopping);
  }

  #exited(j: number, exit: AgentExit): void {
    this.#agents[j] = undefined;
    if (this.#stopping) return;
    const restart = this.#routers.take(j, RouterFlag.RESTART_PENDING);
    if (exit.reason === 'stopped' && !restart) return;
    this.#metrics.restarting(j, exit);
    const delay = exit.reason === 'error' ? 5000 : (this.#draws[j]!.faults.reboot?.durationMs ?? 0);
    this.#clock.setTimer(delay, () => {
      if (this.#stopping) return;
      const platform = this.#platforms[j];
      if (!platform) return;
      platform
        .powerOn()
        .then(() => this.#boot(j))
        .catch(() => this.#metrics.error('power-on'));
    });
  }

  /** Drops a fraction of the open channels abruptly. */
  cut(fraction: number, seed: number): number {
    const random = seededRandom(seed);
    return this.#transport.cut(fraction, () => random.next());
  }

  /** Restarts a fraction of the routers (graceful reboot, or a power cut). */
  restart(fraction: number, seed: number, powerCut = false): number {
    const random = seededRandom(seed);
    let n = 0;
    for (let j = 0; j < this.#agents.length; j++) {
      const agent = this.#agents[j];
      if (!agent || random.next() >= fraction) continue;
      n++;
      if (powerCut) {
        // Nothing is flushed: the agent stops where it is, the channel is cut. Its exit as
        // `stopped` boots nothing (not even for a graceful restart still pending): the power-cut
        // exit below does.
        this.#routers.clear(j, RouterFlag.RESTART_PENDING);
        void agent.stop().then(() => this.#exited(j, { reason: 'power-cut' }));
      } else {
        this.#routers.set(j, RouterFlag.RESTART_PENDING);
        void agent.stop();
      }
    }
    return n;
  }

  /** Applies a command that needs no answer; false for `detail` and `stop` (the caller answers those). */
  command(message: ToWorker): boolean {
    switch (message.type) {
      case 'start':
        this.start(message.t0);
        return true;
      case 'cut':
        this.cut(message.fraction, message.seed);
        return true;
      case 'restart':
        this.restart(message.fraction, message.seed, message.powerCut);
        return true;
      case 'job':
        this.jobCreated(message.createdAt);
        return true;
      case 'mark':
        this.mark(message.at);
        return true;
      default:
        return false;
    }
  }

  jobCreated(at: number): void {
    this.#metrics.jobCreated(at);
  }

  /** From now on `stats().managedSinceMark` counts the routers managed on a session that said hello at or after `at`. */
  mark(at: number): void {
    this.#metrics.mark(at);
  }

  details(): DeviceDetail[] {
    const routers = this.#routers;
    return this.#profiles.map((profile, j) => {
      const admission = routers.admission(j);
      return {
        index: this.#global[j]!,
        serialNumber: profile.serialNumber,
        deviceId: profile.deviceId,
        state: routers.state(j),
        updateState: this.#agents[j]?.updateState(),
        admission: admission === 'none' ? null : admission,
        firstHelloAt: routers.firstHelloAt[j]!,
        firstAdmissionAt: routers.firstAdmissionAt[j]!,
        reconnects: routers.reconnects[j]!,
        lastReconnectMs: routers.lastReconnectMs[j]!,
        decidedHelloAt: routers.decidedHelloAt[j]!,
        lastRedialMs: routers.lastRedialMs[j]!,
        expect: this.#draws[j]!.expect,
        labels: this.#draws[j]!.labels,
        jobResults: [...(this.#agents[j]?.jobResults() ?? [])],
      };
    });
  }

  #gc(): void {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (this.#options.gcBeforeStats && gc) {
      gc();
      gc();
    }
  }

  stats(): WorkerStats {
    this.#gc();
    const metrics = this.#metrics.snapshot(this.#started);
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage(this.#cpu0);
    return {
      process: this.#options.process,
      pid: process.pid,
      at: Date.now(),
      devices: this.#profiles.length,
      started: this.#started,
      due: Math.max(this.#due, this.#started),
      ...metrics,
      openSockets: this.#transport.open(),
      memory: { rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external },
      cpu: { userMs: cpu.user / 1000, systemMs: cpu.system / 1000 },
    };
  }

  /**
   * Stops every agent (graceful close) and the timers. Bounded: agents not stopped within
   * `graceMs` (a saturated server answering close handshakes slowly, downloads waiting for their
   * safe point) have their sockets cut, and the stop returns at most STOP_AFTER_CUT_MS later.
   */
  async stop(graceMs = STOP_GRACE_MS): Promise<WorkerStats> {
    if (this.#ramp) clearTimeout(this.#ramp);
    if (this.#statsTimer) clearInterval(this.#statsTimer);
    const stats = this.stats();
    this.#stopping = true;
    const all = Promise.all(this.#agents.map((a) => a?.stop().catch(() => undefined))).then(() => true);
    const within = (ms: number) => Promise.race([all, new Promise<false>((r) => setTimeout(() => r(false), ms).unref())]);
    if (!(await within(graceMs))) {
      this.#transport.cut(1, () => 0);
      await within(STOP_AFTER_CUT_MS);
    }
    return stats;
  }
}

/** How long a graceful fleet stop waits for its agents before cutting their sockets. */
export const STOP_GRACE_MS = 15_000;
/** How long a stop waits after cutting the sockets. */
const STOP_AFTER_CUT_MS = 5_000;

/** How many of the ascending `sorted` are at most `x` (binary search). */
function countAtMost(sorted: Uint32Array, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Entry point of a child process: talks to the coordinator over IPC. */
export function runWorkerProcess(): void {
  let worker: FleetWorker | undefined;
  // A coordinator that died leaves a broken IPC channel: the callback takes the EPIPE (an 'error'
  // event on `process` would crash us) and 'disconnect' below ends the process.
  const send = (message: FromWorker) => {
    if (process.connected) process.send?.(message, undefined, undefined, ignoreSendError);
  };
  process.on('message', (raw: { type: 'init'; options: WorkerOptions } | ToWorker) => {
    void (async () => {
      try {
        if (raw.type === 'init') {
          worker = new FleetWorker(raw.options, send);
          await worker.load();
          return;
        }
        if (!worker || worker.command(raw)) return;
        switch (raw.type) {
          case 'detail':
            send({ type: 'detail', id: raw.id, devices: worker.details() });
            break;
          case 'stop': {
            const stats = await worker.stop(raw.graceMs);
            send({ type: 'stopped', stats });
            setTimeout(() => process.exit(0), 50);
            break;
          }
        }
      } catch (err) {
        send({ type: 'error', message: (err as Error).message });
      }
    })();
  });
  process.on('disconnect', () => process.exit(0));
}

function ignoreSendError(): void {
  // The coordinator is gone; 'disconnect' exits.
}
