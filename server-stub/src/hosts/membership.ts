import { randomInt, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { AdmissionService } from '../admission/service.js';
import { AppError } from '../errors.js';
import type { Store } from '../store/database.js';
import { holdLivenessLock, renewLivenessLock, ServerInstances, storeNow } from '../store/instances.js';

type Dead = ReturnType<ServerInstances['dead']>[number];

/** The role whose holder runs the cluster-wide background work (licence sweep, seat hold, job timeouts, ...). */
export const BACKGROUND_ROLE = 'background';

/**
 * The role of the one process that consumes an external MQTT broker's device uplinks (its bucket
 * sessions have fixed client ids: two hosts consuming one broker would take each other's sessions
 * over, back and forth). Named by the broker's address, so hosts on different brokers do not clash.
 */
export function mqttConsumerRole(brokerUrl: string): string {
  try {
    const u = new URL(brokerUrl);
    return `mqtt-consumer ${u.protocol}//${u.host}`;
  } catch {
    return 'mqtt-consumer';
  }
}

/**
 * Which process of the cluster runs the work that must happen once for the whole store. With one
 * process (the SQLite store, or a test's in-process app) that is always this one.
 */
export interface ClusterRole {
  /** This process's id in `server_instances`, or null when it is alone (nothing is recorded). */
  readonly instanceId: string | null;
  /** Whether this process runs the once-per-cluster work right now. */
  leads(): boolean;
}

/** One process, nothing shared: it always leads. */
export const SINGLE_PROCESS: ClusterRole = { instanceId: null, leads: () => true };

export interface MembershipOptions {
  readonly store: Store;
  readonly admission: Pick<AdmissionService, 'releaseInstance' | 'instanceId'>;
  readonly log: Logger;
  /**
   * A process whose heartbeat is older than this is dead (ms); also the lease of the background
   * role. Heartbeats go out four times per period.
   */
  readonly timeoutMs: number;
  /** What `server_instances.label` says about this process (host name, pid, port). */
  readonly label?: string;
  /**
   * The other members count this process dead, so they release (or have released) the leases of
   * the devices it serves into their grace period: another member declared it dead (its heartbeat
   * was late: an event loop or a host stalled; called once it has registered again), or its
   * heartbeats have failed for longer than `timeoutMs` (its store connection is gone: called once
   * per such outage). The devices must say hello again (`ControlChannel.reconnectAll`): kept
   * open, their sessions would outlive their seats once the grace period ends.
   */
  readonly onDeclaredDead?: () => void;
  /**
   * Roles this process holds alone for as long as it lives (`mqttConsumerRole`): taken when it
   * joins, renewed with every heartbeat, given up at a clean stop. When a live member already holds
   * one, joining fails with SERVER_HOST_ROLE_TAKEN (nothing of this process is recorded).
   */
  readonly exclusiveRoles?: readonly string[];
}

/**
 * This process as one member of the servers sharing a PostgreSQL store (independent hosts):
 *
 * - it records itself in `server_instances` and heartbeats; on PostgreSQL it also holds a
 *   session-level advisory lock for as long as its store connection lives, so a process that
 *   crashed (its connection closed by the kernel) is seen dead at the next heartbeat of any other,
 *   and one that hangs or lost its network once its heartbeat is `timeoutMs` late;
 * - the first member to find another dead marks it stopped and releases the leases of the devices
 *   it held (admission `releaseInstance`: the grace rule of a crashed cluster worker), in one
 *   transaction, so exactly one member does it;
 * - the background role is a lease row (`server_roles`) renewed at every heartbeat for `timeoutMs`;
 *   it is taken over when it expired or its holder was found dead. The holder stops acting as
 *   leader on its own once it could not renew for 80 % of the lease (measured on its monotonic
 *   clock), before anyone else can take it.
 * - a member that starts when no other is alive is a cold start of the whole cluster: the seat
 *   hold of the previous life starts (`onColdStart`), exactly as for a single server's restart; a
 *   member joining a running cluster holds nothing (the others' devices are theirs).
 */
export class HostMembership implements ClusterRole {
  readonly instanceId: string = randomUUID();
  readonly #lockKey = randomInt(1, 2 ** 31 - 1);
  readonly #instances: ServerInstances;
  readonly #opts: MembershipOptions;
  #leaderUntil = 0;
  /** When the last heartbeat was recorded (monotonic ms). */
  #lastBeat = performance.now();
  /** Heartbeats have failed for longer than the timeout, and `onDeclaredDead` was called for it. */
  #cutOff = false;
  #leading = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: MembershipOptions) {
    this.#opts = opts;
    this.#instances = new ServerInstances(opts.store);
  }

  leads(): boolean {
    return this.#leading && performance.now() < this.#leaderUntil;
  }

  get periodMs(): number {
    return Math.max(250, Math.floor(this.#opts.timeoutMs / 4));
  }

  /**
   * Joins the cluster (before the process serves anything): takes the liveness lock, registers, runs
   * `onColdStart` in the same transaction when no other member is alive, releases what dead members
   * held, and tries the background role. Returns whether this was a cold start.
   */
  start(onColdStart: () => void): { coldStart: boolean } {
    const { store } = this.#opts;
    holdLivenessLock(store, this.#lockKey);
    const label = this.#opts.label ?? `${hostname()}/${process.pid}`;
    const { coldStart, dead, now } = store.write(() => {
      const now = storeNow(store);
      const dead = this.#instances.dead(this.instanceId, now - this.#opts.timeoutMs);
      const coldStart = this.#instances.othersRunning(this.instanceId) === dead.length;
      if (coldStart) {
        // Their devices' seats are held by the seat hold, not released one instance at a time.
        this.#instances.stopAllBut(this.instanceId, now);
        onColdStart();
      }
      this.#instances.register(this.instanceId, this.#lockKey, label, now);
      for (const name of this.#opts.exclusiveRoles ?? []) {
        // A holder found dead (crashed: its liveness lock is gone) does not keep a replacement out.
        const previous = this.#instances.roleHolder(name);
        if (previous !== undefined && dead.some((d) => d.id === previous)) this.#instances.releaseRole(name, previous);
        const holder = this.#instances.claimRole(name, this.instanceId, now, now + this.#opts.timeoutMs);
        if (holder !== this.instanceId) {
          // Thrown inside the transaction: the registration above is undone with it.
          throw new AppError(
            'SERVER_HOST_ROLE_TAKEN',
            `another server process on this store (${this.#instances.label(holder) ?? holder}) holds the role "${name}"; `
            + 'only one host may consume an MQTT broker: give the others no --mqtt-url, or another broker',
          );
        }
      }
      return { coldStart, dead: coldStart ? [] : dead, now };
    });
    this.#opts.admission.instanceId = this.instanceId;
    this.#lastBeat = performance.now();
    this.#opts.log.info({ instanceId: this.instanceId, label, coldStart }, coldStart ? 'cluster member: first of the cluster (cold start)' : 'cluster member: joined a running cluster');
    this.#reap(dead, now);
    this.#claim(performance.now());
    return { coldStart };
  }

  /** Heartbeats every `periodMs` (an unref'd timer) until `stop`. */
  run(): void {
    this.#timer = setInterval(() => {
      try {
        this.tick();
      } catch (err) {
        this.#opts.log.error({ err }, 'cluster heartbeat failed');
        this.#missed();
      }
    }, this.periodMs);
    this.#timer.unref();
  }

  /** One heartbeat: record it, release the devices of members found dead, renew or take the background role. */
  tick(): void {
    if (this.#stopped) return;
    const started = performance.now();
    const { store } = this.#opts;
    // A store connection made again after a loss does not hold the lock the lost one held: until it
    // does, the others count this process dead (and release its devices, which then reconnect).
    if (renewLivenessLock(store, this.#lockKey)) {
      this.#opts.log.warn({ instanceId: this.instanceId }, 'cluster member: the store connection was made again; liveness lock taken again');
    }
    const { alive, dead, now } = store.write(() => {
      const now = storeNow(store);
      const alive = this.#instances.heartbeat(this.instanceId, now);
      if (!alive) this.#instances.register(this.instanceId, this.#lockKey, this.#opts.label ?? `${hostname()}/${process.pid}`, now);
      return { alive, dead: this.#instances.dead(this.instanceId, now - this.#opts.timeoutMs), now };
    });
    if (!alive) {
      // Another member found this one late (an event loop stalled past the timeout) and released
      // its devices' leases into their grace period; they reclaim them with a new hello.
      this.#opts.log.error({ instanceId: this.instanceId }, 'cluster member: another member declared this process dead; registered again, its devices reconnect');
      this.#opts.onDeclaredDead?.();
    }
    this.#lastBeat = started;
    this.#cutOff = false;
    this.#reap(dead, now);
    this.#claim(started);
  }

  /** A heartbeat failed: past the timeout, the others count this process dead (once per outage). */
  #missed(): void {
    if (this.#stopped || this.#cutOff || performance.now() - this.#lastBeat <= this.#opts.timeoutMs) return;
    this.#cutOff = true;
    this.#opts.log.error(
      { instanceId: this.instanceId, sinceMs: Math.round(performance.now() - this.#lastBeat) },
      'cluster member: no heartbeat recorded for longer than the timeout; the others release this process\'s devices, which reconnect',
    );
    this.#opts.onDeclaredDead?.();
  }

  #reap(dead: readonly Dead[], now: number): void {
    for (const d of dead) {
      const released = this.#opts.admission.releaseInstance(d.id, { ifDeadFor: this.#opts.timeoutMs });
      this.#opts.log.warn(
        { deadInstance: d.id, released, heartbeatAgeMs: now - d.heartbeatAt, connected: d.connected },
        'cluster member: another server process stopped heartbeating; its devices released',
      );
    }
  }

  #claim(started: number): void {
    const { store } = this.#opts;
    const holder = store.write(() => {
      const now = storeNow(store);
      for (const name of this.#opts.exclusiveRoles ?? []) {
        const other = this.#instances.claimRole(name, this.instanceId, now, now + this.#opts.timeoutMs);
        // Only after this process was declared dead and another took the role over.
        if (other !== this.instanceId) this.#opts.log.error({ role: name, holder: other }, 'cluster member: another server process took over a role this one held alone');
      }
      return this.#instances.claimRole(BACKGROUND_ROLE, this.instanceId, now, now + this.#opts.timeoutMs);
    });
    const leading = holder === this.instanceId;
    if (leading) this.#leaderUntil = started + this.#opts.timeoutMs * 0.8;
    if (leading !== this.#leading) {
      this.#opts.log.info({ instanceId: this.instanceId, holder }, leading ? 'cluster member: runs the background work now' : 'cluster member: background work runs elsewhere');
    }
    this.#leading = leading;
  }

  /** A clean stop (after the channel released its devices): the role is given up and the row marked stopped. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#leading = false;
    const { store } = this.#opts;
    store.write(() => {
      this.#instances.releaseRole(BACKGROUND_ROLE, this.instanceId);
      for (const name of this.#opts.exclusiveRoles ?? []) this.#instances.releaseRole(name, this.instanceId);
      const now = storeNow(store);
      this.#instances.stop(this.instanceId, now);
      this.#instances.purgeStopped(now - 24 * 3600_000);
    });
  }
}
