import { EventEmitter } from 'node:events';
import type { Clock } from '../clock.js';
import { credentialMatches } from '../devices/credentials.js';
import { dueLicenceEvents, entitlement } from '../licensing/rules.js';
import type { Metrics } from '../metrics.js';
import { type AccountRowId, type AccountUuid, asAccountRowId, asAccountUuid } from '../ids.js';
import { Accounts } from '../store/accounts.js';
import type { Store } from '../store/database.js';
import {
  type DeviceAdmission,
  type DeviceIdentity,
  deviceUuids,
  findDeviceIdentities,
  findDeviceIdentity,
  setDeviceAdmission,
  setDeviceAdmissions,
} from '../store/devices.js';
import { AccountEvents } from '../store/events.js';
import { ServerInstances, storeNow } from '../store/instances.js';
import {
  type AccountLease,
  AccountLeases,
  admissionSummaries,
  deleteLeases,
  type LeaseUpsert,
  leasesForAdmission,
  leasesOfDevices,
  rebootTimeoutsSec,
  releaseLeases,
  setLeaseInstances,
  upsertLeases,
} from '../store/leases.js';
import { AccountLicences, accountsWithLicencesOrLeases, type LicenceRecord } from '../store/licences.js';
import {
  currentHold,
  endHold,
  heldLeaseCount,
  holdLeases,
  holdServing,
  joinHold,
  outageBegan,
  outageOver,
  recordHeldReturn,
  startRestartHold,
} from '../store/seat-hold.js';
import { decideAdmission, needsRebalance, rebalance } from './decide.js';
import { type CaughtUpReason, holdGraceUntil, type HoldRule, holdVerdict } from './seat-hold.js';
import { PresenceTracker } from './presence.js';
import type { AdmissionChange, AdmissionEventMap, AdmitRequest, AdmitResult, ReleaseCause, SweepReport } from './types.js';

export interface AdmissionOptions {
  /** How long a disconnected device keeps its seat for reclaim (s). */
  readonly leaseGraceSec: number;
  /** Retry-after for a device rejected for want of a licence, when no lease ends sooner (s). */
  readonly admissionRetryAfterSec: number;
  /** Retry-after for a device whose credential is unknown or wrong (s). */
  readonly deniedRetryAfterSec?: number;
  /**
   * During a seat hold (after a start or a lost broker), caught up once no held device returned
   * for this long and no hello waits (s; default 300).
   */
  readonly restartQuietSec?: number;
  /** A seat hold is caught up at the latest this long after it started (s; default 1800; 0 = no hold). */
  readonly restartHoldMaxSec?: number;
}

/** What a process life found at its start (admission/seat-hold.ts). */
export interface RestartHoldReport {
  readonly held: number;
  readonly startedAt: number;
}

/** How a seat hold ended. */
export interface HoldEnd {
  readonly reason: CaughtUpReason;
  /** Leases whose devices had not returned: their normal grace period starts now. */
  readonly notReturned: number;
  readonly at: number;
}

interface Balance {
  seats: number;
  dropped: number[];
  toManaged: number[];
  toUnmanaged: number[];
}

type Cause = AdmissionChange['cause'];

/** A batch of hellos authenticated and waiting for the write lock (`AdmissionService.startAdmission`). */
export interface PendingAdmission {
  /** Decides and writes the batch if the store's write lock is free now; undefined when it is held elsewhere. */
  attempt(): AdmitResult[] | undefined;
  /** Decides and writes the batch, waiting for the write lock up to the store's busy timeout. */
  finish(): AdmitResult[];
}

/** An authenticated hello of a batch: its place in the batch, its device, when it connected. */
interface Hello {
  readonly index: number;
  readonly identity: DeviceIdentity;
  readonly now: number;
}

/**
 * One account as a batch of hellos sees it while deciding in memory: what the store held at the
 * start of the batch, changed by each decision as the per-hello statements would have changed it.
 */
interface AccountView {
  readonly licenceVersion: number;
  managed: number;
  readonly unmanagedWaiting: boolean;
  /** A lease ended that leaves `unmanagedWaiting` unknown: the store balances the account. */
  unsure: boolean;
  /** The earliest grace end after the batch among leases not in `leases`. */
  readonly graceBeyond: number | null;
  /** The leases of the batch's devices and those whose grace ends during the batch, by device. */
  readonly leases: Map<number, AccountLease>;
}

/**
 * The writes a batch of hellos decided, kept in memory and written set-based by `flush` in the
 * order the per-hello statements had: ended leases, the hold's last return, taken and reclaimed
 * leases, leases served by this process now, and each device's last admission.
 */
class AdmissionWrites {
  #ended: Array<{ deviceId: number; at: number }> = [];
  #heldReturnAt: number | null = null;
  readonly #upserts = new Map<number, LeaseUpsert>();
  readonly #instances = new Map<number, string>();
  readonly #admissions = new Map<number, DeviceAdmission>();

  constructor(private readonly store: Store) {}

  end(deviceId: number, at: number): void {
    // A lease taken in this batch holds no grace period; were it ever ended, write what came first.
    if (this.#upserts.has(deviceId) || this.#instances.has(deviceId)) this.flush();
    this.#ended.push({ deviceId, at });
  }

  heldReturn(at: number): void {
    this.#heldReturnAt = Math.max(this.#heldReturnAt ?? at, at);
  }

  upsert(row: LeaseUpsert): void {
    this.#upserts.set(row.deviceId, row);
  }

  instance(deviceId: number, instanceId: string): void {
    this.#instances.set(deviceId, instanceId);
  }

  admission(row: DeviceAdmission): void {
    this.#admissions.delete(row.deviceId);
    this.#admissions.set(row.deviceId, row);
  }

  flush(): void {
    deleteLeases(this.store, this.#ended);
    if (this.#heldReturnAt !== null) recordHeldReturn(this.store, this.#heldReturnAt);
    upsertLeases(this.store, [...this.#upserts.values()]);
    const byInstance = new Map<string, number[]>();
    for (const [deviceId, instanceId] of this.#instances) {
      const ids = byInstance.get(instanceId);
      if (ids) ids.push(deviceId);
      else byInstance.set(instanceId, [deviceId]);
    }
    for (const [instanceId, deviceIds] of byInstance) setLeaseInstances(this.store, deviceIds, instanceId);
    setDeviceAdmissions(this.store, [...this.#admissions.values()]);
    this.#ended = [];
    this.#heldReturnAt = null;
    this.#upserts.clear();
    this.#instances.clear();
    this.#admissions.clear();
  }
}

/**
 * Admits devices to licences, first come first served. Each admission, release and sweep is one
 * `BEGIN IMMEDIATE` transaction over the account's licences and leases: SQLite's write lock is the
 * queue, so the order holds across every process that shares the store file.
 */
export class AdmissionService {
  readonly events = new EventEmitter<AdmissionEventMap>();
  readonly presence: PresenceTracker;
  readonly #accountUuids = new Map<AccountRowId, AccountUuid>();
  /**
   * The server process this service admits for, when several share the store (hosts/membership.ts):
   * leases name it, and a connection closing here releases only leases it still holds (the device
   * may have reconnected to another host meanwhile). Null: one process, behaviour of a single host.
   */
  instanceId: string | null = null;
  /** Each account's licences as of a licence version (see `#licences`). */
  readonly #licenceCache = new Map<number, { version: number; licences: LicenceRecord[] }>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly options: AdmissionOptions,
    private readonly metrics?: Metrics,
  ) {
    this.presence = new PresenceTracker(store);
  }

  /**
   * Whether `credential` is the current credential of device `deviceUuid`: the check a hello
   * passes, also asked by the embedded MQTT broker at CONNECT.
   */
  authenticate(deviceUuid: string, credential: string): boolean {
    const identity = findDeviceIdentity(this.store, { deviceUuid });
    return identity !== undefined && credentialMatches(credential, identity.credential_hash);
  }

  /** Admits one hello: a batch of one (see `admitMany`). */
  admit(req: AdmitRequest): AdmitResult {
    return this.admitMany([req])[0]!;
  }

  /**
   * Admits several hellos in arrival order in ONE write transaction (group commit): one fsync for
   * the batch instead of one per device, while first come, first served still holds, because the
   * requests are decided in order inside the transaction and the transaction takes the store's
   * write lock (`BEGIN IMMEDIATE`) for the whole batch. Results are durable when this returns.
   *
   * The batch costs a handful of statements, not a dozen per hello: the identities are read at
   * once (before the lock), then under the lock each account's licence version, managed count and
   * next grace end, and every lease of the batch's devices (and every lease whose grace ends
   * during the batch) at once; each hello is then decided in memory in arrival order, exactly as
   * one `admit` after the other would decide it, and the batch's lease, device and hold writes go
   * out as a few set-based statements (store/leases.ts, store/devices.ts). Only an account whose
   * line is out of balance (licences changed) is balanced by the store itself, as before.
   */
  admitMany(requests: readonly AdmitRequest[]): AdmitResult[] {
    return this.startAdmission(requests).finish();
  }

  /**
   * `admitMany` in two steps, for a caller that must not block while another process holds the
   * store's write lock: the hellos are authenticated now (identities read, credentials checked,
   * outside the lock); `attempt()` then decides and writes them only if the lock is free at once
   * (undefined otherwise: nothing decided, nothing written, try again later), `finish()` waits for
   * it as `admitMany` does. Either returns the results once; the batch is then done.
   */
  startAdmission(requests: readonly AdmitRequest[]): PendingAdmission {
    const deniedRetry = this.options.deniedRetryAfterSec ?? 3600;
    const identities = requests.length > 0 ? findDeviceIdentities(this.store, requests) : [];
    const results: Array<AdmitResult | undefined> = [];
    const hellos: Hello[] = [];
    requests.forEach((req, index) => {
      const identity = identities[index];
      if (!identity) results.push({ outcome: 'denied', reason: 'unknown-device', retryAfterSec: deniedRetry });
      else if (typeof req.credential !== 'string' || !credentialMatches(req.credential, identity.credential_hash)) {
        results.push({ outcome: 'denied', reason: 'bad-credential', retryAfterSec: deniedRetry });
      } else {
        results.push(undefined);
        hellos.push({ index, identity, now: req.connectedAt ?? this.clock.now() });
      }
    });
    const decide = () => this.#decideBatch(hellos);
    const write = (wait: boolean): { value: ReturnType<typeof decide> } | undefined => {
      if (hellos.length === 0) return { value: { decided: [], balances: [] } };
      if (wait || !this.store.tryWrite) return { value: this.store.write(decide) };
      return this.store.tryWrite(decide);
    };
    const settle = (done: ReturnType<typeof write>): AdmitResult[] | undefined => {
      if (!done) return undefined;
      if (hellos.length > 0) {
        const { decided, balances } = done.value;
        hellos.forEach((h, k) => (results[h.index] = decided[k]));
        for (const b of balances) this.#emit(b.accountId, b.balance, b.at, 'seat-freed');
        hellos.forEach((h, k) => {
          if (decided[k]!.outcome === 'rejected') this.presence.disconnected(h.identity.id, h.now);
          else this.presence.connected(h.identity.id, h.now);
        });
      }
      return results.map((r) => this.#count(r!));
    };
    return { attempt: () => settle(write(false)), finish: () => settle(write(true))! };
  }

  /** Decides authenticated hellos in arrival order (in the caller's write transaction); see `admitMany`. */
  #decideBatch(hellos: readonly Hello[]): { decided: AdmitResult[]; balances: Array<{ accountId: AccountRowId; balance: Balance; at: number }> } {
    const upTo = hellos.reduce((t, h) => Math.max(t, h.now), -Infinity);
    const deviceIds = [...new Set(hellos.map((h) => h.identity.id))];
    const views = new Map<AccountRowId, AccountView>();
    const load = (accountIds: readonly AccountRowId[]) => {
      const wanted = new Set(accountIds);
      for (const s of admissionSummaries(this.store, accountIds, upTo, deviceIds)) {
        views.set(asAccountRowId(s.accountId), {
          licenceVersion: s.licenceVersion,
          managed: s.managed,
          unmanagedWaiting: s.unmanagedWaiting,
          unsure: false,
          graceBeyond: s.nextGraceEndAfter,
          leases: new Map(),
        });
      }
      const devices = [...new Set(hellos.filter((h) => wanted.has(h.identity.account_id)).map((h) => h.identity.id))];
      for (const l of leasesForAdmission(this.store, devices, accountIds, upTo)) {
        if (wanted.has(asAccountRowId(l.accountId))) views.get(asAccountRowId(l.accountId))!.leases.set(l.deviceId, l);
      }
    };
    load([...new Set(hellos.map((h) => h.identity.account_id))]);

    const writes = new AdmissionWrites(this.store);
    const balances: Array<{ accountId: AccountRowId; balance: Balance; at: number }> = [];
    const decided = hellos.map(({ identity, now }): AdmitResult => {
      const accountId = identity.account_id;
      let view = views.get(accountId)!;
      const seats = entitlement(this.#licencesAt(accountId, view.licenceVersion), now).seats;
      // As `#balance` first does: the leases whose grace period is over end.
      for (const l of view.leases.values()) {
        if (l.graceUntil === null || l.graceUntil > now) continue;
        view.leases.delete(l.deviceId);
        if (l.state === 'managed') view.managed--;
        else view.unsure = true; // whether another unmanaged lease waits is not known here
        writes.end(l.deviceId, now);
      }
      if (view.unsure || needsRebalance(seats, view.managed, view.unmanagedWaiting)) {
        // The line is out of balance (licences changed): the store balances it, as for one hello.
        writes.flush();
        balances.push({ accountId, balance: this.#balance(accountId, now), at: now });
        load([accountId]);
        view = views.get(accountId)!;
      }
      const own = view.leases.get(identity.id);
      let nextGraceEnd = view.graceBeyond;
      for (const l of view.leases.values()) {
        if (l.graceUntil !== null && (nextGraceEnd === null || l.graceUntil < nextGraceEnd)) nextGraceEnd = l.graceUntil;
      }
      const decision = decideAdmission({
        seats,
        managedCount: view.managed,
        own,
        nextGraceEnd,
        now,
        defaultRetryAfterSec: this.options.admissionRetryAfterSec,
      });
      const device = { deviceUuid: identity.uuid, deviceKey: identity.id, accountUuid: identity.account_uuid };
      switch (decision.outcome) {
        case 'managed': {
          if (own?.held) writes.heldReturn(now);
          if (decision.lease !== 'kept') {
            writes.upsert({ deviceId: identity.id, accountId, state: 'managed', leasedAt: now, instanceId: this.instanceId });
            if (!own) view.managed++;
            view.leases.set(identity.id, {
              deviceId: identity.id,
              accountId,
              state: 'managed',
              leasedAt: own?.leasedAt ?? now,
              releasedAt: null,
              graceUntil: null,
              held: false,
              instanceId: this.instanceId,
            });
          } else if (this.instanceId !== null) {
            writes.instance(identity.id, this.instanceId);
            view.leases.set(identity.id, { ...own!, instanceId: this.instanceId });
          }
          writes.admission({ deviceId: identity.id, state: 'managed', reason: null, at: now });
          return { outcome: 'managed', ...device, lease: decision.lease };
        }
        case 'unmanaged':
          if (this.instanceId !== null) {
            writes.instance(identity.id, this.instanceId);
            view.leases.set(identity.id, { ...own!, instanceId: this.instanceId });
          }
          writes.admission({ deviceId: identity.id, state: 'unmanaged', reason: 'licence-limit', at: now });
          return { outcome: 'unmanaged', ...device, reason: 'licence-limit' };
        case 'rejected':
          writes.admission({ deviceId: identity.id, state: 'rejected', reason: decision.reason, at: now });
          return { outcome: 'rejected', ...device, reason: decision.reason, retryAfterSec: decision.retryAfterSec };
      }
    });
    writes.flush();
    return { decided, balances };
  }

  /**
   * An account's licences, read again only when their version changed (a trigger bumps it on every
   * insert, update and delete, whichever process made it). Admission decides every hello against
   * the licences; reading 1,600 of them per hello held the write lock for milliseconds each.
   */
  #licences(accountId: AccountRowId): LicenceRecord[] {
    return this.#licencesAt(accountId, new AccountLicences(this.store, accountId).version());
  }

  /** The account's licences as of `version` (read by the caller). */
  #licencesAt(accountId: AccountRowId, version: number): LicenceRecord[] {
    const cached = this.#licenceCache.get(accountId);
    if (cached && cached.version === version) return cached.licences;
    const licences = new AccountLicences(this.store, accountId).all();
    this.#licenceCache.set(accountId, { version, licences });
    return licences;
  }

  /** The device's connection closed at `at`: a managed device keeps its seat for the grace period. */
  release(deviceUuid: string, at: number = this.clock.now()): void {
    this.releaseMany([deviceUuid], at);
  }

  /**
   * Many connections closed at `at` (a server shutting down, a crashed worker, a burst of
   * disconnects): one transaction instead of one per device, each account rebalanced once.
   *
   * `server-outage`: the server itself lost the links (its bucket client lost the MQTT broker), so
   * the managed devices' seats are held by the seat hold (admission/seat-hold.ts) instead of
   * starting their grace period; a hold starts, or the running one takes them. A seat already in
   * its grace period (the link ended by a will moments before the loss) is held too.
   */
  releaseMany(deviceUuidList: readonly string[], at: number = this.clock.now(), cause: ReleaseCause = 'disconnect'): number {
    const identities = findDeviceIdentities(this.store, [...new Set(deviceUuidList)].map((deviceUuid) => ({ deviceUuid })))
      .filter((i): i is NonNullable<typeof i> => i !== undefined)
      .map((i) => ({ id: i.id, account_id: i.account_id }));
    if (identities.length === 0) return 0;
    const elsewhere = new Set<number>();
    const { balances, held } = this.store.write(() => this.#release(identities, at, cause, this.instanceId, elsewhere));
    // A device served by another process now is online there: its presence is not this process's to end.
    for (const identity of identities) if (!elsewhere.has(identity.id)) this.presence.disconnected(identity.id, at);
    for (const { accountId, balance } of balances) this.#emit(accountId, balance, at, 'seat-freed');
    return held;
  }

  /**
   * Another server process sharing the store stopped heartbeating (or its store connection is
   * gone): the devices it held are released as if their connections had closed at `at` (the same
   * grace rule as a crashed cluster worker's), so they are admitted again wherever they reconnect.
   * Marking the process stopped and releasing are one transaction, so when several processes find
   * it dead at once exactly one releases. Returns how many devices were released (0 when another
   * process did it first). With `ifDeadFor` (ms), the process is found dead again inside that
   * transaction (heartbeat older than that by the store's clock, or its liveness lock gone): one
   * that came back since it was found dead keeps its devices.
   */
  releaseInstance(instanceId: string, options: { at?: number; ifDeadFor?: number } = {}): number {
    const at = options.at ?? this.clock.now();
    const { ifDeadFor } = options;
    const instances = new ServerInstances(this.store);
    const done = this.store.write(() => {
      if (ifDeadFor !== undefined && !instances.isDead(instanceId, storeNow(this.store) - ifDeadFor)) return undefined;
      if (!instances.stop(instanceId, at)) return undefined;
      const identities = instances.heldDevices(instanceId).map((d) => ({ id: d.deviceId, account_id: asAccountRowId(d.accountId) }));
      return { identities, balances: this.#release(identities, at, 'disconnect', instanceId, new Set()).balances };
    });
    if (!done) return 0;
    for (const identity of done.identities) this.presence.disconnected(identity.id, at);
    for (const { accountId, balance } of done.balances) this.#emit(accountId, balance, at, 'seat-freed');
    return done.identities.length;
  }

  /**
   * Releases the leases of `identities` (in the caller's write transaction). With `owner` set, a
   * lease another server process holds now is left alone: its device reconnected there. Returns
   * the accounts' new balances and how many seats the seat hold took.
   */
  #release(
    identities: ReadonlyArray<{ id: number; account_id: AccountRowId }>,
    at: number,
    cause: ReleaseCause,
    owner: string | null,
    elsewhere: Set<number>,
  ): { balances: Array<{ accountId: AccountRowId; balance: Balance }>; held: number } {
    const grace = this.options.leaseGraceSec * 1000;
    const rule = this.#holdRule;
    const hold = cause === 'server-outage' && rule.holdMaxSec > 0;
    // Set-based: the devices' leases read at once, released / ended / held with a few statements.
    const leases = new Map(leasesOfDevices(this.store, identities.map((i) => i.id)).map((l) => [l.deviceId, l]));
    const accounts = new Set<AccountRowId>();
    const held: number[] = [];
    const open: number[] = [];
    const ended: Array<{ deviceId: number; at: number }> = [];
    for (const identity of identities) {
      const lease = leases.get(identity.id);
      const own = lease?.accountId === identity.account_id ? lease : undefined;
      if (owner !== null && own?.instanceId != null && own.instanceId !== owner) {
        elsewhere.add(identity.id);
        continue;
      }
      if (hold && own?.state === 'managed' && own.held !== true) {
        // Open, or released a moment ago by the device's will that a broker shutting down
        // published before it closed the server's own connections (channel `lostWithServer`).
        held.push(identity.id);
      } else if (own?.state === 'managed' && own.releasedAt === null) {
        open.push(identity.id);
      } else if (own?.state === 'unmanaged') {
        ended.push({ deviceId: identity.id, at });
      }
      accounts.add(identity.account_id);
    }
    // A device rebooting into an update keeps its seat until the job's reboot timeout.
    const reboots = rebootTimeoutsSec(this.store, open);
    const released: Array<{ deviceId: number; at: number; graceUntil: number }> = [];
    for (const deviceId of open) {
      const keep = Math.max(grace, (reboots.get(deviceId) ?? 0) * 1000);
      if (keep > 0) released.push({ deviceId, at, graceUntil: at + keep });
      else ended.push({ deviceId, at });
    }
    releaseLeases(this.store, released);
    deleteLeases(this.store, ended);
    if (held.length > 0) {
      joinHold(this.store, at, held.length);
      holdLeases(this.store, held, at, holdGraceUntil(at, rule, this.options.leaseGraceSec));
    }
    const balances = [...accounts].map((accountId) => ({ accountId, balance: this.#balance(accountId, at) }));
    return { balances, held: held.length };
  }

  get #holdRule(): HoldRule {
    return { quietSec: this.options.restartQuietSec ?? 300, holdMaxSec: this.options.restartHoldMaxSec ?? 1800 };
  }

  /**
   * Starts this process life (call once, before any device is served, in the one process that
   * sweeps): the seats of the previous life are held until the server has caught up with the
   * reconnecting fleet (admission/seat-hold.ts); then `checkHold` starts their grace.
   */
  startRestartHold(now: number = this.clock.now()): RestartHoldReport {
    const rule = this.#holdRule;
    const held = this.store.write(() =>
      startRestartHold(this.store, now, holdGraceUntil(now, rule, this.options.leaseGraceSec)),
    );
    return { held, startedAt: now };
  }

  /**
   * The devices can reach the server from now on, after a start once every cluster worker listens
   * (which takes seconds under load): the quiet period of a running hold counts from here, or from
   * when the last process out of touch with the MQTT broker (`outageBegan`) is back.
   */
  holdServing(now: number = this.clock.now()): void {
    this.store.write(() => holdServing(this.store, now));
  }

  /**
   * The process `owner` (named by the MQTT buckets it consumes, so a replacement process has the
   * same name) lost the broker: until `outageOver(owner)` no seat hold counts its quiet period,
   * whichever process lost or regained the broker first.
   */
  outageBegan(owner: string, now: number = this.clock.now()): void {
    this.store.write(() => outageBegan(this.store, owner, now));
  }

  /** The process `owner` has the broker back (or a replacement subscribed its buckets). */
  outageOver(owner: string, now: number = this.clock.now()): boolean {
    return this.store.write(() => outageOver(this.store, owner, now));
  }

  /** Whether a seat hold is running (started by any process that shares the store). */
  get holding(): boolean {
    const hold = currentHold(this.store);
    return hold !== undefined && hold.endedAt === null;
  }

  /**
   * Ends the running seat hold once the server has caught up (`backlog`: hellos waiting for a
   * decision in this process). Returns how it ended, or undefined while it runs (or when none runs).
   * Any process may have started the hold (cluster workers lose the broker, the primary checks):
   * the hold is read from the store, one cheap read when none runs.
   */
  checkHold(backlog: number, now: number = this.clock.now()): HoldEnd | undefined {
    if (!this.holding) return undefined;
    const rule = this.#holdRule;
    const end = this.store.write(() => {
      const hold = currentHold(this.store);
      if (!hold || hold.endedAt !== null) return undefined;
      const verdict = holdVerdict(
        {
          startedAt: Math.max(hold.startedAt, hold.lastLossAt ?? hold.startedAt),
          servingSince: hold.servingSince,
          lastReturnAt: hold.lastReturnAt,
          heldLeft: heldLeaseCount(this.store),
          backlog,
          now,
        },
        rule,
      );
      if (!verdict.caughtUp) return undefined;
      const notReturned = endHold(this.store, now, verdict.reason, now + this.options.leaseGraceSec * 1000);
      return { reason: verdict.reason, notReturned, at: now };
    });
    if (!end) return undefined;
    // With no grace left (leaseGraceSec 0) the seats are free now, not at the next sweep.
    if (end.notReturned > 0) this.sweep(now);
    return end;
  }

  /** Re-evaluates one account now (after an activation, a device deletion, ...). */
  reconcile(accountId: AccountRowId, now: number = this.clock.now()): void {
    const balance = this.store.write(() => this.#balance(accountId, now));
    this.#emit(accountId, balance, now, 'licences-changed');
  }

  /**
   * The periodic licence sweep: reclaims expired grace leases, takes seats from the devices that
   * connected most recently beyond the (possibly reduced) limit, gives freed seats to waiting
   * devices and records due licence events (activation, expiry notices, expiry, Free invalidation).
   */
  sweep(now: number = this.clock.now()): SweepReport {
    const total = { accounts: 0, dropped: 0, managed: 0, unmanaged: 0, events: 0 };
    for (const accountId of accountsWithLicencesOrLeases(this.store)) {
      const r = this.sweepAccount(accountId, now);
      total.accounts++;
      total.dropped += r.dropped;
      total.managed += r.managed;
      total.unmanaged += r.unmanaged;
      total.events += r.events;
    }
    return total;
  }

  /** The sweep for one account (also run right after one of its licences is activated). */
  sweepAccount(accountId: AccountRowId, now: number = this.clock.now()): SweepReport {
    const { balance, events } = this.store.write(() => {
      const balance = this.#balance(accountId, now);
      const licences = new AccountLicences(this.store, accountId).all();
      // Every licence's due events, offered again at each sweep (the dedupe key keeps each once):
      // one multi-row statement, not a round trip per event.
      const due = licences.flatMap((l) =>
        dueLicenceEvents(l, licences, now).map((e) => ({ type: e.type, subject: l.uuid, data: e.data, at: e.at, dedupeKey: e.dedupeKey })),
      );
      const events = new AccountEvents(this.store, accountId).recordMany(due);
      return { balance, events };
    });
    this.#emit(accountId, balance, now, 'licences-changed');
    return {
      accounts: 1,
      dropped: balance.dropped.length,
      managed: balance.toManaged.length,
      unmanaged: balance.toUnmanaged.length,
      events,
    };
  }

  /** Must run inside a write transaction. */
  #balance(accountId: AccountRowId, now: number): Balance {
    const seats = entitlement(this.#licences(accountId), now).seats;
    const leases = new AccountLeases(this.store, accountId);
    const dropped = leases.dropExpiredGrace(now);
    const out: Balance = { seats, dropped, toManaged: [], toUnmanaged: [] };
    if (!needsRebalance(seats, leases.managedCount(), leases.unmanagedWaiting())) return out;
    const r = rebalance(seats, leases.all(), now);
    for (const id of r.drop) leases.delete(id, now);
    for (const id of r.toManaged) {
      leases.setState(id, 'managed');
      setDeviceAdmission(this.store, id, 'managed', null, now);
    }
    for (const id of r.toUnmanaged) {
      leases.setState(id, 'unmanaged');
      setDeviceAdmission(this.store, id, 'unmanaged', 'licence-limit', now);
    }
    out.dropped.push(...r.drop);
    out.toManaged = r.toManaged;
    out.toUnmanaged = r.toUnmanaged;
    if (r.toManaged.length + r.toUnmanaged.length > 0) {
      const log = new AccountEvents(this.store, accountId);
      const sample = (ids: number[]) => deviceUuids(this.store, ids.slice(0, 100));
      if (r.toUnmanaged.length) {
        log.record({
          type: 'devices.unmanaged',
          data: { count: r.toUnmanaged.length, devices: sample(r.toUnmanaged) },
          at: now,
        });
      }
      if (r.toManaged.length) {
        log.record({ type: 'devices.managed', data: { count: r.toManaged.length, devices: sample(r.toManaged) }, at: now });
      }
    }
    return out;
  }

  #emit(accountId: AccountRowId, balance: Balance, at: number, cause: Cause): void {
    if (balance.toUnmanaged.length === 0 && balance.toManaged.length === 0) return;
    const account = this.#accountUuid(accountId);
    if (balance.toUnmanaged.length) {
      this.events.emit('unmanaged', {
        accountUuid: account,
        deviceUuids: deviceUuids(this.store, balance.toUnmanaged),
        at,
        cause: 'licences-changed',
      });
    }
    if (balance.toManaged.length) {
      this.events.emit('managed', {
        accountUuid: account,
        deviceUuids: deviceUuids(this.store, balance.toManaged),
        at,
        cause,
      });
    }
  }

  #accountUuid(accountId: AccountRowId): AccountUuid {
    let uuid = this.#accountUuids.get(accountId);
    if (!uuid) {
      uuid = asAccountUuid(new Accounts(this.store).uuidOf(accountId) ?? '');
      this.#accountUuids.set(accountId, uuid);
    }
    return uuid;
  }

  #count(result: AdmitResult): AdmitResult {
    this.metrics?.inc('fleet_admissions_total', { outcome: result.outcome });
    return result;
  }
}
