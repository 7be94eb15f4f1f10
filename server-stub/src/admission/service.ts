import { EventEmitter } from 'node:events';
import type { Clock } from '../clock.js';
import { credentialMatches } from '../devices/credentials.js';
import { dueLicenceEvents, entitlement } from '../licensing/rules.js';
import type { Metrics } from '../metrics.js';
import { type AccountRowId, type AccountUuid, asAccountRowId, asAccountUuid } from '../ids.js';
import { Accounts } from '../store/accounts.js';
import type { Store } from '../store/database.js';
import { deviceUuids, findDeviceIdentity, setDeviceAdmission } from '../store/devices.js';
import { AccountEvents } from '../store/events.js';
import { ServerInstances } from '../store/instances.js';
import { AccountLeases, rebootTimeoutSec } from '../store/leases.js';
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

  admit(req: AdmitRequest): AdmitResult {
    const now = req.connectedAt ?? this.clock.now();
    const identity = findDeviceIdentity(this.store, req);
    const deniedRetry = this.options.deniedRetryAfterSec ?? 3600;
    if (!identity) return this.#count({ outcome: 'denied', reason: 'unknown-device', retryAfterSec: deniedRetry });
    if (typeof req.credential !== 'string' || !credentialMatches(req.credential, identity.credential_hash)) {
      return this.#count({ outcome: 'denied', reason: 'bad-credential', retryAfterSec: deniedRetry });
    }
    const accountUuid = identity.account_uuid;
    const deviceUuid = identity.uuid;
    const deviceKey = identity.id;
    const { result, balance } = this.store.write(() => {
      const balance = this.#balance(identity.account_id, now);
      const leases = new AccountLeases(this.store, identity.account_id);
      const own = leases.own(identity.id);
      const decision = decideAdmission({
        seats: balance.seats,
        managedCount: leases.managedCount(),
        own,
        nextGraceEnd: leases.nextGraceEnd(),
        now,
        defaultRetryAfterSec: this.options.admissionRetryAfterSec,
      });
      let result: AdmitResult;
      switch (decision.outcome) {
        case 'managed': {
          if (own?.held) recordHeldReturn(this.store, now);
          if (decision.lease !== 'kept') leases.upsert(identity.id, 'managed', now, this.instanceId);
          else if (this.instanceId !== null) leases.setInstance(identity.id, this.instanceId);
          setDeviceAdmission(this.store, identity.id, 'managed', null, now);
          result = { outcome: 'managed', deviceUuid, deviceKey, accountUuid, lease: decision.lease };
          break;
        }
        case 'unmanaged':
          if (this.instanceId !== null) leases.setInstance(identity.id, this.instanceId);
          setDeviceAdmission(this.store, identity.id, 'unmanaged', 'licence-limit', now);
          result = { outcome: 'unmanaged', deviceUuid, deviceKey, accountUuid, reason: 'licence-limit' };
          break;
        case 'rejected':
          setDeviceAdmission(this.store, identity.id, 'rejected', decision.reason, now);
          result = {
            outcome: 'rejected',
            deviceUuid,
            deviceKey,
            accountUuid,
            reason: decision.reason,
            retryAfterSec: decision.retryAfterSec,
          };
          break;
      }
      return { result, balance };
    });
    this.#emit(identity.account_id, balance, now, 'seat-freed');
    if (result.outcome === 'rejected') this.presence.disconnected(identity.id, now);
    else this.presence.connected(identity.id, now);
    return this.#count(result);
  }

  /**
   * Admits several hellos in arrival order in ONE write transaction (group commit): one fsync for
   * the batch instead of one per device, while first come, first served still holds, because the
   * requests are decided in order inside the transaction and the transaction takes the store's
   * write lock (`BEGIN IMMEDIATE`) for the whole batch. Results are durable when this returns.
   */
  admitMany(requests: readonly AdmitRequest[]): AdmitResult[] {
    if (requests.length === 1) return [this.admit(requests[0]!)];
    return this.store.write(() => requests.map((r) => this.admit(r)));
  }

  /**
   * An account's licences, read again only when their version changed (a trigger bumps it on every
   * insert, update and delete, whichever process made it). Admission decides every hello against
   * the licences; reading 1,600 of them per hello held the write lock for milliseconds each.
   */
  #licences(accountId: AccountRowId): LicenceRecord[] {
    const repo = new AccountLicences(this.store, accountId);
    const version = repo.version();
    const cached = this.#licenceCache.get(accountId);
    if (cached && cached.version === version) return cached.licences;
    const licences = repo.all();
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
    const identities = [...new Set(deviceUuidList)]
      .map((deviceUuid) => findDeviceIdentity(this.store, { deviceUuid }))
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
   * process did it first).
   */
  releaseInstance(instanceId: string, at: number = this.clock.now()): number {
    const instances = new ServerInstances(this.store);
    const done = this.store.write(() => {
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
    {
      const accounts = new Set<AccountRowId>();
      const held: number[] = [];
      for (const identity of identities) {
        const leases = new AccountLeases(this.store, identity.account_id);
        const own = leases.own(identity.id);
        if (owner !== null && own?.instanceId != null && own.instanceId !== owner) {
          elsewhere.add(identity.id);
          continue;
        }
        if (hold && own?.state === 'managed' && own.held !== true) {
          // Open, or released a moment ago by the device's will that a broker shutting down
          // published before it closed the server's own connections (channel `lostWithServer`).
          held.push(identity.id);
        } else if (own?.state === 'managed' && own.releasedAt === null) {
          // A device rebooting into an update keeps its seat until the job's reboot timeout.
          const keep = Math.max(grace, (rebootTimeoutSec(this.store, identity.id) ?? 0) * 1000);
          if (keep > 0) leases.release(identity.id, at, at + keep);
          else leases.delete(identity.id, at);
        } else if (own?.state === 'unmanaged') {
          leases.delete(identity.id, at);
        }
        accounts.add(identity.account_id);
      }
      if (held.length > 0) {
        joinHold(this.store, at, held.length);
        holdLeases(this.store, held, at, holdGraceUntil(at, rule, this.options.leaseGraceSec));
      }
      const balances = [...accounts].map((accountId) => ({ accountId, balance: this.#balance(accountId, at) }));
      return { balances, held: held.length };
    }
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
