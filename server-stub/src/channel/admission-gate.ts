import { performance } from 'node:perf_hooks';
import { CloseCodes, createMessage, encode, type MessageOf } from '@router-fleet/protocol';
import type { Logger } from 'pino';
import type { AdmissionService, PendingAdmission } from '../admission/service.js';
import type { AdmitResult, ReleaseCause } from '../admission/types.js';
import type { Clock } from '../clock.js';
import { sessionParams } from '../devices/keep-alive.js';
import type { Metrics } from '../metrics.js';
import type { DeviceFacts } from '../store/channel.js';
import type { DeviceStatusBuffer } from '../store/device-status.js';
import { TickBatch } from '../tick-batch.js';
import type { Session, Sessions } from './session.js';
import type { SessionIo } from './session-io.js';

/** Most hellos admitted in one transaction (group commit); more wait for the next tick. */
const HELLO_BATCH_MAX = 256;
/**
 * Longest pause between two admission transactions of one process (ms). The pause is what the last
 * one cost (lock wait + statements + commit): see TickBatch's `gapMs`. Admitting a hello costs one
 * fsync'd commit (5.6 ms on the reference disk, tens of ms on a loaded one) serialized with every
 * other process's commit; at a ramp of 250 connects/s most ticks held one hello, so the commits,
 * one per hello, were the limit. The cap bounds what a hello can wait for its batch.
 */
const HELLO_GAP_MAX_MS = 25;
/**
 * How long a batch polls for the store's write lock without blocking (ms) before it waits for it
 * like any write (up to the busy timeout). Polling every millisecond is what the blocking wait did
 * too (store/sqlite-store.ts), so the order in which processes get the lock is unchanged.
 */
const LOCK_POLL_MAX_MS = 2_000;

const WELCOME_REASONS = {
  'licence-limit': ['LICENCE_LIMIT', 'All licences are in use by devices that connected earlier.'],
  'no-free-licence': ['LICENCE_UNAVAILABLE', 'No licence is free; retry later.'],
  'no-active-licence': ['NO_ACTIVE_LICENCE', 'The account has no active licence.'],
} as const;

export interface AdmissionGateDeps {
  readonly admission: Pick<AdmissionService, 'startAdmission'>;
  /**
   * Gives back the leases of devices whose link ended while their hello waited (queued with the
   * channel's other releases: written in the next tick's batch, retried when the store fails).
   */
  readonly release: (deviceUuids: readonly string[], cause: ReleaseCause) => void;
  /** The device and account facts hellos need, by device uuid, for a whole batch (store/channel.ts). */
  readonly deviceFacts: (deviceUuids: readonly string[]) => Map<string, DeviceFacts>;
  /** Where the hello summary (model, firmware, inventory) is buffered. */
  readonly status: Pick<DeviceStatusBuffer, 'hello'>;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly sessions: Sessions;
  readonly io: SessionIo;
  /** Called once a session is open and welcomed (trust anchors, registry, session listeners). */
  readonly opened: (s: Session) => void;
}

interface QueuedHello {
  s: Session;
  msg: MessageOf<'hello'>;
  now: number;
}

/** A batch authenticated and waiting for the store's write lock. */
interface WaitingBatch {
  readonly queued: QueuedHello[];
  readonly batch: Array<QueuedHello & { facts: DeviceFacts }>;
  readonly pending: PendingAdmission;
  /** performance.now() when the batch began (its transaction time includes the lock wait). */
  readonly started: number;
}

/**
 * hello → admission → welcome. Hellos of one tick are admitted in one transaction, their devices'
 * facts read in one statement before it; the session waits in `admitting` meanwhile. A newer
 * connection of an admitted device replaces the older one.
 */
export class AdmissionGate {
  readonly #hellos = new TickBatch<QueuedHello>(
    (batch) => this.#flush(batch),
    HELLO_BATCH_MAX,
    () => Math.min(HELLO_GAP_MAX_MS, this.#lastCommitMs),
  );

  /** What the last admission transaction took (ms), lock wait included. */
  #lastCommitMs = 0;
  /** The batch waiting for the write lock, if any. */
  #waiting: WaitingBatch | undefined;
  /** Hellos flushed while a batch waited for the lock, in arrival order. */
  #held: QueuedHello[] = [];
  /** When each waiting session's hello arrived (monotonic ms), for the admission latency histogram. */
  readonly #helloAt = new WeakMap<Session, number>();

  constructor(private readonly deps: AdmissionGateDeps) {}

  /** The first frame of an `awaiting-hello` session was a hello. */
  hello(s: Session, msg: MessageOf<'hello'>): void {
    const { deps } = this;
    this.#helloAt.set(s, performance.now());
    // Group commit: hellos arriving in the same tick are admitted in one transaction (one fsync),
    // in arrival order, so a reconnect storm is not bound by one fsync per device.
    deps.sessions.move(s, 'hello');
    this.#hellos.push({ s, msg, now: deps.clock.now() });
  }

  #flush(queued: QueuedHello[]): void {
    // A batch waits for the write lock: later hellos wait behind it (arrival order is admission order).
    if (this.#waiting) {
      for (const q of queued) this.#held.push(q);
      return;
    }
    const { deps } = this;
    const batch: Array<QueuedHello & { facts: DeviceFacts }> = [];
    const started = performance.now();
    let pending: PendingAdmission;
    try {
      const facts = deps.deviceFacts(queued.map(({ msg }) => msg.body.deviceId));
      for (const q of queued) {
        const f = facts.get(q.msg.body.deviceId);
        if (f && f.serial_number === q.msg.body.serialNumber) batch.push({ ...q, facts: f });
        else if (q.s.state === 'admitting') {
          deps.metrics.inc('fleet_admissions_total', { outcome: 'denied' });
          this.#decided(q.s, q.msg, f, q.now, { outcome: 'denied', reason: 'unknown-device', retryAfterSec: 3600 });
        }
      }
      if (batch.length === 0) return;
      pending = deps.admission.startAdmission(
        batch.map(({ msg, now }) => ({ deviceUuid: msg.body.deviceId, credential: msg.body.credential, connectedAt: now })),
      );
    } catch (err) {
      return this.#failed(queued, started, err);
    }
    this.#attempt({ queued, batch, pending, started });
  }

  /**
   * Decides a waiting batch if the store's write lock is free now; otherwise tries again in a
   * millisecond, the event loop serving the worker's other connections meanwhile (a `write` would
   * block it for the other processes' commits), and after LOCK_POLL_MAX_MS waits for the lock as
   * any write does (up to the busy timeout, then the devices are asked to retry).
   */
  #attempt(w: WaitingBatch): void {
    const { deps } = this;
    let results: AdmitResult[] | undefined;
    try {
      results = performance.now() - w.started < LOCK_POLL_MAX_MS ? w.pending.attempt() : w.pending.finish();
    } catch (err) {
      this.#waiting = undefined;
      this.#failed(w.queued, w.started, err);
      return this.#releaseHeld();
    }
    if (!results) {
      this.#waiting = w;
      setTimeout(() => this.#attempt(w), 1).unref();
      return;
    }
    this.#waiting = undefined;
    this.#lastCommitMs = performance.now() - w.started;
    deps.metrics.observe('fleet_admission_transaction_seconds', undefined, this.#lastCommitMs / 1000);
    const orphans: string[] = [];
    const lost: string[] = [];
    w.batch.forEach(({ s, msg, facts, now }, i) => {
      const result = results[i]!;
      if (s.state !== 'admitting') {
        // The link ended (or was refused, or the server shut down) while its hello waited: give
        // back what was just leased (held when the server lost the link itself).
        if (result.outcome === 'managed' || result.outcome === 'unmanaged') {
          (s.endCause === 'server-outage' ? lost : orphans).push(result.deviceUuid);
        }
        return;
      }
      this.#decided(s, msg, facts, now, result);
    });
    if (orphans.length > 0) deps.release(orphans, 'disconnect');
    if (lost.length > 0) deps.release(lost, 'server-outage');
    this.#releaseHeld();
  }

  /** The hellos that arrived while a batch waited for the lock: the next batches, at once, each of at most HELLO_BATCH_MAX. */
  #releaseHeld(): void {
    while (this.#held.length > 0 && !this.#waiting) this.#flush(this.#held.splice(0, HELLO_BATCH_MAX));
  }

  #failed(queued: readonly QueuedHello[], started: number, err: unknown): void {
    const { deps } = this;
    this.#lastCommitMs = performance.now() - started;
    // The store could not decide (e.g. StoreBusyError: other processes held the write lock past
    // the busy timeout). Nothing was leased: the devices are asked to come back later and
    // reconnect with their backoff. Never a crash.
    deps.log.warn({ err, hellos: queued.length }, 'admission batch failed; devices asked to retry');
    deps.metrics.inc('fleet_errors_total', { code: 'SERVER_ADMISSION_BUSY' });
    for (const { s } of queued) deps.io.close(s, CloseCodes.TRY_AGAIN_LATER, 'server busy, try again later');
  }

  #decided(s: Session, msg: MessageOf<'hello'>, facts: DeviceFacts | undefined, now: number, result: AdmitResult): void {
    const { deps } = this;
    const { io, sessions } = deps;
    const b = msg.body;
    if (result.outcome === 'denied') {
      io.error(s, 'SERVER_DEVICE_AUTH_FAILED', 'device unknown or credential wrong', msg.id);
      return io.close(s, CloseCodes.AUTH_FAILED, 'authentication failed');
    }
    // Authenticated: a newer connection of the same device replaces the older one.
    const previous = sessions.ofDevice(result.deviceUuid);
    if (previous) {
      const wasClosing = previous.state === 'closing';
      sessions.move(previous, 'replaced');
      if (!wasClosing) io.startClose(previous, CloseCodes.REPLACED, 'replaced by a newer connection');
    }
    const session = sessionParams(facts!);
    const analyticsConsent = consentOf(facts!.settings);
    const base = { deviceId: result.deviceUuid, session, analyticsConsent, serverTime: now };
    const reply = { correlationId: msg.id, sentAt: now };
    if (result.outcome === 'rejected') {
      const [reason, reasonMessage] = WELCOME_REASONS[result.reason];
      const body = { ...base, admission: 'rejected' as const, reason, reasonMessage, retryAfterSec: Math.min(result.retryAfterSec, 86_400) };
      io.send(s, encode(createMessage('welcome', body, reply)));
      this.#welcomed(s, result.outcome);
      return io.close(s, CloseCodes.REJECTED, 'no licence free');
    }
    s.deviceUuid = result.deviceUuid;
    s.deviceKey = result.deviceKey;
    s.accountUuid = result.accountUuid;
    s.accountKey = facts!.account_id;
    s.admission = result.outcome;
    s.connectedAt = now;
    s.pingIntervalMs = session.pingIntervalSec * 1000;
    s.pongTimeoutMs = session.pongTimeoutSec * 1000;
    sessions.move(s, 'admitted');
    deps.status.hello(
      s.deviceKey,
      {
        model: b.model,
        firmwareVersion: b.firmwareVersion,
        agentVersion: b.agentVersion,
        capabilities: b.capabilities.slice(0, 32),
        bootId: b.bootId,
        inventory: b.inventory,
      },
      now,
      b.trustAnchorsDigest,
    );
    const welcome =
      result.outcome === 'managed'
        ? { ...base, admission: 'managed' as const }
        : {
            ...base,
            admission: 'unmanaged' as const,
            reason: WELCOME_REASONS['licence-limit'][0],
            reasonMessage: WELCOME_REASONS['licence-limit'][1],
          };
    io.send(s, encode(createMessage('welcome', welcome, reply)));
    this.#welcomed(s, result.outcome);
    s.anchorsDigest = b.trustAnchorsDigest;
    deps.opened(s);
  }

  /** Admission latency as the operator sees it: the hello frame in, the welcome out. */
  #welcomed(s: Session, outcome: string): void {
    const at = this.#helloAt.get(s);
    if (at === undefined) return;
    this.#helloAt.delete(s);
    this.deps.metrics.observe('fleet_admission_duration_seconds', { outcome }, (performance.now() - at) / 1000);
  }
}

function consentOf(settings: string): boolean {
  try {
    return (JSON.parse(settings) as { analyticsConsent?: unknown }).analyticsConsent === true;
  } catch {
    // Settings that do not parse grant nothing: without consent no analytics are kept.
    return false;
  }
}
