import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  CANCELLABLE_JOB_STATES,
  createMessage,
  isTerminalJobState,
  type Message,
  type MessageOf,
} from '@router-fleet/protocol';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { MINUTE } from '../clock.js';
import type { Metrics } from '../metrics.js';
import type { PacketService } from '../packets/service.js';
import type { Store } from '../store/database.js';
import { StoreError } from '../store/errors.js';
import type { ExecutionRow } from '../store/jobs.js';
import { anyRunningJob, dynamicJobsOfDevicesAccounts, type JobHead, jobById, type JobRow, jobTarget, runningJobIds, runningJobs } from '../store/jobs.js';
import { LocalReadyDevices } from '../store/job-executions.js';
import { packetById, type PacketRow } from '../store/packets.js';
import type { JobTemplateHook } from '../templates/service.js';
import { TickBatch } from '../tick-batch.js';
import type { JobChannelPort } from './channel-port.js';
import type { DownloadTokens } from './download-token.js';
import { OfferTemplate } from './offer-template.js';
import type { JobOptions, JobTarget } from './options.js';
import type { JobOutcomes } from './outcomes.js';
import { decideProgress } from './progress.js';
import type { ResultBatch } from './result-batch.js';
import { capacity, type CapacityCounts, countsNeeded, executionDeadline } from './rollout.js';
import { nextWindow, type WindowSpan } from './window.js';

/** A queued execution not offered within this time belongs to a worker that died: its device is claimed again. */
const ORPHAN_QUEUED_MS = MINUTE;

/** Most channel inputs applied in one transaction; more in one tick flush early. */
export const INBOX_BATCH_MAX = 2000;
/**
 * Longest pause between two applications of channel inputs (ms); the pause is what the last one
 * cost (see TickBatch's `gapMs`, as the admission gate does). Under a ramp or a reconnect wave the
 * devices' ready reports arrived one per tick, and each was a read transaction of several
 * statements plus a dispatch: on PostgreSQL, where every statement is a round trip on the event
 * loop, that was a fifth of all the store's time in a 4,000-router run. Paced, a wave's reports go
 * together, and a process spends at most half its time applying them.
 */
const INBOX_GAP_MAX_MS = 25;
/**
 * How long channel inputs (progress reports, devices ready) may wait while a burst of offers goes
 * on (ms): they are applied after the burst, or when this long has passed, or when INBOX_HOLD_MAX
 * wait, in transactions of INBOX_BATCH_MAX, one per turn of the event loop. The first offers of a
 * job to every router start downloads whose progress reports came back while the other offers
 * were still to be sent, each tick of them a write transaction and an fsync
 * of its own between two claim transactions (20,000 routers, 2 workers: 10 % of a worker's time
 * while offering went to applying them, and their commits took turns for the write lock with the
 * claims). Held, they go in fewer, larger transactions once the offers are out.
 */
const INBOX_HOLD_MAX_MS = 2000;
/**
 * Most channel inputs held during a burst. 2,000 (one transaction's worth) filled within a second
 * of a job to 20,000 routers (each reports `downloading` as soon as it has its offer), and applying
 * them took its turn in the middle of the burst.
 */
const INBOX_HOLD_MAX = 10 * INBOX_BATCH_MAX;
/**
 * How long new packet downloads of this process wait while a burst of offers goes on (ms, from the
 * burst's start): they queue within the download limits (`DownloadSlots.hold`) and start when the
 * burst ends or this long has passed, whichever is first. Bounded so that a burst to a very large
 * fleet does not leave the first devices' downloads waiting past the download queue's own wait.
 */
const DOWNLOAD_HOLD_MAX_MS = 3000;
/**
 * Executions claimed in the first write transaction of a dispatch; each further transaction of
 * the same dispatch claims twice as many, up to CLAIMS_PER_TRANSACTION_MAX. A job to few devices
 * sends its first offers after a small claim; a job to every router pays one commit (an fsync)
 * and one turn of the write lock per 2,000 offers instead of per 500.
 */
export const CLAIMS_PER_TRANSACTION = 500;
/**
 * The most executions claimed in one write transaction. One claim for 13,000 connected devices
 * held the write lock past the other workers' busy timeout (the 50,000-router run: job creation
 * answered 500, the store busy); 2,000 hold it for about 0.1 s of CPU (job-claim bench: 45–60 µs
 * per offer, claim and record).
 */
export const CLAIMS_PER_TRANSACTION_MAX = 2000;
/** Offer templates kept (per job, packet and base URL); a few jobs run at once, templated jobs have a packet per device. */
const OFFER_TEMPLATES_MAX = 64;
/**
 * How long one dispatch goes on claiming and offering, batch after batch, before it lets other
 * work of the process run (ms of wall time). Offers go out first and at once: a job to every online
 * router is one burst of a few hundred bytes per router, while the downloads, progress reports and
 * reconnects it starts queue behind it for at most this long (downloads are paced by the download
 * slots, not here). Bounded so keep-alives and hellos still get their turn.
 */
export const DISPATCH_SLICE_MS = 200;

type ProgressOutcome = 'applied' | 'duplicate' | 'illegal' | 'unknown';

/** What the control channel hands the dispatcher, in arrival order. */
/** What a committed batch of channel inputs leaves to do after its commit. */
interface BatchApplied {
  acks: Array<{ deviceUuid: string; correlationId: string }>;
  outcomes: Array<Exclude<ProgressOutcome, 'applied'>>;
  finished: boolean;
}

/** One input of a batch could not be applied (`cause`); the batch's transaction was rolled back. */
class InputNotApplied extends Error {
  constructor(
    readonly index: number,
    cause: unknown,
  ) {
    super('channel input not applied', { cause });
  }
}

type ChannelInput =
  | { kind: 'ready'; deviceUuid: string }
  | { kind: 'progress'; deviceUuid: string; message: MessageOf<'job-progress'> };

/** What the ready devices of one batch share (read once per batch). */
interface ReadyInputs {
  b: ResultBatch;
  /** Running dynamic jobs of each ready device's account. */
  dynamic: Map<number, JobRow[]>;
  /** Dynamic jobs whose targets were added in this batch. */
  refreshed: Set<number>;
  packets: Map<number, PacketRow | undefined>;
  now: number;
}

interface Claim {
  exec: ExecutionRow;
  job: JobHead;
  /** The job's options, parsed once per job and dispatch (not once per offer). */
  options: JobOptions;
  deviceUuid: string;
  packet: PacketRow;
}

/** Counts of progress messages that were not applied (kept in memory; also in metrics). */
export interface IgnoredProgress {
  duplicate: number;
  illegal: number;
  unknown: number;
}

export interface DispatcherDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly packets: PacketService;
  readonly tokens: DownloadTokens;
  readonly metrics: Metrics;
  readonly outcomes: JobOutcomes;
  /** Child loggers of it carry the job and device a line is about. */
  readonly log: Logger;
  /** Base URL of packet downloads in offers. */
  readonly publicBaseUrl: string;
}

/**
 * Dispatch of jobs to devices connected to this process: the inbox of channel inputs (devices
 * ready, job progress), claims within each job's rollout limits, offers and cancels. All dispatch
 * state is in the store (jobs, job_devices, job_executions), so several worker processes can each
 * dispatch to their own connected devices: executions are claimed in `BEGIN IMMEDIATE`
 * transactions that re-check the rollout limits, and the only in-memory state is which devices are
 * connected to this process (a per-connection TEMP table, so the claim query can join it).
 */
export class JobDispatcher {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #packets: PacketService;
  readonly #tokens: DownloadTokens;
  readonly #metrics: Metrics;
  readonly #outcomes: JobOutcomes;
  readonly #log: Logger;
  readonly #ready: LocalReadyDevices;
  #port: JobChannelPort | undefined;
  #dispatchPending = false;
  /** What applying the last batch of channel inputs took (ms), its dispatch included. */
  #lastApplyMs = 0;
  /** A dispatch left more to claim and offer, and goes on in the next turn (a burst of offers). */
  #bursting = false;
  /** performance.now() when the current burst of offers began. */
  #burstStarted = 0;
  /** Executions the next claim transaction of a burst takes. */
  #claimSize = CLAIMS_PER_TRANSACTION;
  /** Channel inputs held while a burst of offers goes on (applied first, in arrival order). */
  #held: ChannelInput[] = [];
  /** performance.now() of the first held input. */
  #heldSince = 0;
  readonly #offerTemplates = new Map<string, OfferTemplate>();
  #templates: JobTemplateHook | undefined;
  readonly ignored: IgnoredProgress = { duplicate: 0, illegal: 0, unknown: 0 };
  readonly #inbox: TickBatch<ChannelInput>;
  /** Base URL of packet downloads in offers (`https://host:port`); set after listen when port 0. */
  publicBaseUrl: string;

  constructor(deps: DispatcherDeps) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#packets = deps.packets;
    this.#tokens = deps.tokens;
    this.#metrics = deps.metrics;
    this.#outcomes = deps.outcomes;
    this.#log = deps.log;
    this.publicBaseUrl = deps.publicBaseUrl;
    this.#ready = new LocalReadyDevices(deps.store);
    this.#inbox = new TickBatch<ChannelInput>(
      (batch) => this.#apply(batch),
      INBOX_BATCH_MAX,
      () => Math.min(INBOX_GAP_MAX_MS, this.#lastApplyMs),
    );
  }

  /** Channel inputs received and not applied yet (waiting for their batch, or held during a burst). */
  get pendingInputs(): number {
    return this.#inbox.size + this.#held.length;
  }

  setTemplateHook(hook: JobTemplateHook): void {
    this.#templates = hook;
  }

  /** Connects the dispatcher to a control channel (once). */
  attach(port: JobChannelPort): void {
    if (this.#port) throw new Error('a channel port is already attached');
    this.#port = port;
    port.onDeviceReady((deviceUuid) => this.#inbox.push({ kind: 'ready', deviceUuid }));
    port.onJobProgress((deviceUuid, message) => this.#inbox.push({ kind: 'progress', deviceUuid, message }));
  }

  /**
   * Applies what the channel delivered since the last flush, in arrival order, in one transaction
   * (group commit: one fsync for a whole tick of progress reports and reconnects instead of one
   * each), then acknowledges the terminal reports and dispatches once. The batch is read at once
   * and judged in memory in arrival order (ResultBatch): a few statements per batch, not several per
   * report, which on PostgreSQL is a round trip each under the one write lock. An input that cannot
   * be applied is left out alone and counted (the others are applied again without it); if the
   * store fails as such nothing is acknowledged and the devices repeat their terminal reports.
   */
  #apply(input: ChannelInput[]): void {
    const started = performance.now();
    try {
      this.#applyOrHold(input);
    } finally {
      this.#lastApplyMs = performance.now() - started;
    }
  }

  #applyOrHold(input: ChannelInput[]): void {
    // While offers go out in a burst, what the devices send waits (bounded in time and count).
    if (this.#bursting && this.#held.length + input.length < INBOX_HOLD_MAX
      && (this.#held.length === 0 || performance.now() - this.#heldSince < INBOX_HOLD_MAX_MS)) {
      if (this.#held.length === 0) this.#heldSince = performance.now();
      for (const item of input) this.#held.push(item);
      return;
    }
    if (this.#held.length === 0) return this.#applyBatch(input);
    // Held inputs first, in arrival order, one transaction's worth per turn.
    const all = input.length > 0 ? this.#held.concat(input) : this.#held;
    this.#held = all.slice(INBOX_BATCH_MAX);
    this.#applyBatch(all.slice(0, INBOX_BATCH_MAX));
    this.#releaseHeldSoon();
  }

  /** Applies what was held during a burst of offers, once the burst has ended (in a later turn). */
  #releaseHeldSoon(): void {
    if (this.#held.length === 0) return;
    setImmediate(() => {
      // Held again only while a burst goes on and the first held input is younger than INBOX_HOLD_MAX_MS.
      if (this.#held.length > 0) this.#apply([]);
    });
  }

  #applyBatch(batch: ChannelInput[]): void {
    const now = this.#clock.now();
    const anyReady = batch.some((item) => item.kind === 'ready');
    let ready: { ids: Map<string, number>; quiet: Set<string> } | undefined;
    let writes = batch;
    let applied: BatchApplied = { acks: [], outcomes: [], finished: false };
    try {
      // Devices that connect while nothing waits for them (the common case of a ramp or a reconnect
      // storm) need no write transaction: one per tick of hellos was a second commit and fsync, and
      // a second wait for the write lock, beside the admission's own. Read inside the try: a store
      // that fails here fails the batch like its write would, never the process (a timer called us).
      ready = anyReady ? this.#readyWithoutWrites(batch.flatMap((item) => (item.kind === 'ready' ? [item.deviceUuid] : []))) : undefined;
      if (ready) writes = batch.filter((item) => item.kind !== 'ready' || !ready!.quiet.has(item.deviceUuid));
      // An input that cannot be applied is left out alone: the transaction that held it is rolled
      // back whole (a half-judged input must not be written, nor the others' writes lost with it)
      // and the rest is applied again without it. A store that fails as such fails the batch.
      while (writes.length > 0) {
        try {
          applied = this.#applyWrites(writes, ready, now);
          break;
        } catch (err) {
          if (!(err instanceof InputNotApplied)) throw err;
          this.#metrics.inc('fleet_errors_total', { code: 'SERVER_INTERNAL' });
          const item = writes[err.index]!;
          this.#log.error({ err: err.cause, deviceUuid: item.deviceUuid, input: item.kind, ...executionOf(item) }, 'channel input not applied');
          writes = writes.filter((_, i) => i !== err.index);
        }
      }
    } catch (err) {
      // Nothing was stored: nothing is acknowledged; the devices resend, the next tick retries dispatch.
      this.#metrics.inc('fleet_errors_total', { code: 'SERVER_INTERNAL' });
      this.#log.error({ err, inputs: batch.length }, 'channel inputs not stored (the devices repeat them)');
      return;
    }
    for (const outcome of applied.outcomes) {
      this.ignored[outcome]++;
      this.#metrics.inc('fleet_job_progress_ignored_total', { reason: outcome });
    }
    for (const a of applied.acks) this.#send(a.deviceUuid, createMessage('ack', { seqs: [] }, { correlationId: a.correlationId, sentAt: now }));
    if (applied.finished || anyReady) {
      try {
        this.dispatch();
      } catch (err) {
        // A dispatch problem must never take the channel down; the next tick retries from the store.
        this.#metrics.inc('fleet_errors_total', { code: 'SERVER_INTERNAL' });
        this.#log.error({ err }, 'dispatch failed (the next tick retries)');
      }
    }
  }

  /**
   * Applies these inputs in one write transaction: what they are about is read at once and judged
   * in memory in arrival order; what changed is written set-based at the end (ResultBatch). Throws
   * InputNotApplied (the transaction rolled back) when one input fails for a reason other than the
   * store being unavailable, busy or full; a StoreError of those kinds passes through as it is.
   */
  #applyWrites(writes: readonly ChannelInput[], ready: { ids: Map<string, number> } | undefined, now: number): BatchApplied {
    const applied: BatchApplied = { acks: [], outcomes: [], finished: false };
    this.#store.write(() => {
      const b = this.#outcomes.batch();
      const readyIds = ready ? [...new Set(writes.flatMap((item) => (item.kind === 'ready' ? [ready.ids.get(item.deviceUuid)!] : [])))] : [];
      const uuids = writes.flatMap((item) => {
        const id = executionOf(item).executionId;
        return typeof id === 'string' ? [id] : [];
      });
      b.load(uuids, readyIds);
      const inputs: ReadyInputs = { b, dynamic: this.#dynamicJobs(readyIds), refreshed: new Set(), packets: new Map(), now };
      for (const [index, item] of writes.entries()) {
        try {
          if (item.kind === 'ready') {
            this.#deviceReady(inputs, item.deviceUuid, ready!.ids.get(item.deviceUuid)!);
            continue;
          }
          const outcome = this.#applyProgress(b, item.deviceUuid, item.message, now);
          const terminal = isTerminalJobState(item.message.body.state);
          if (outcome !== 'applied') applied.outcomes.push(outcome);
          if (outcome !== 'unknown' && terminal) applied.acks.push({ deviceUuid: item.deviceUuid, correlationId: item.message.id });
          if (outcome === 'applied' && terminal) applied.finished = true;
        } catch (err) {
          if (err instanceof StoreError && err.retryable) throw err;
          throw new InputNotApplied(index, err);
        }
      }
      b.flush();
    });
    return applied;
  }

  /**
   * A device is connected here and managed: resend what it may have missed (flush dispatches after).
   * That includes executions still `queued`: claimed by a process that died (or lost the device)
   * before it recorded the offer, which may or may not have gone out; offers are idempotent by
   * execution id, so it is offered again and recorded as offered.
   */
  #deviceReady(inputs: ReadyInputs, deviceUuid: string, deviceId: number): void {
    const { b, now } = inputs;
    // A device that became ready may have joined a targeted group of a dynamic job: the job's
    // target is added once per batch (it covers every device of the target, not only this one).
    for (const job of inputs.dynamic.get(deviceId) ?? []) {
      if (inputs.refreshed.has(job.id)) continue;
      inputs.refreshed.add(job.id);
      this.#outcomes.addTargets(job, JSON.parse(job.target) as JobTarget, now);
    }
    for (const exec of b.openOf(deviceId)) {
      const job = b.job(exec.job_id);
      if (exec.cancel_requested === 1) {
        if (CANCELLABLE_JOB_STATES.includes(exec.state)) this.#sendCancel(deviceUuid, exec, b);
        continue;
      }
      let packet: PacketRow | undefined;
      if (exec.packet_id !== null) {
        if (inputs.packets.has(exec.packet_id)) packet = inputs.packets.get(exec.packet_id);
        else inputs.packets.set(exec.packet_id, (packet = packetById(this.#store, exec.packet_id)));
      }
      if (packet && !this.#send(deviceUuid, this.#offer(exec, job, b.options<JobOptions>(job), deviceUuid, packet))) return;
      if (exec.state === 'queued') {
        exec.state = 'offered';
        exec.offered_at = now;
        exec.updated_at = now;
        b.changed(exec);
      }
    }
  }

  /** Running dynamic jobs of the accounts of these devices, by device (one statement). */
  #dynamicJobs(deviceIds: readonly number[]): Map<number, JobRow[]> {
    const byDevice = new Map<number, JobRow[]>();
    for (const row of dynamicJobsOfDevicesAccounts(this.#store, deviceIds)) {
      const list = byDevice.get(row.device_id);
      if (list) list.push(row);
      else byDevice.set(row.device_id, [row]);
    }
    return byDevice;
  }

  /**
   * Marks the devices ready here and tells which of them need nothing more (`quiet`): nothing of
   * theirs is open (no execution to resend or cancel) and no running dynamic job of their account
   * may have to add them; unknown devices are quiet too. Read in one snapshot without the write
   * lock, four statements for the whole batch (the ready table is this connection's TEMP table,
   * which the lock does not cover): a write transaction at this moment would have read the same
   * and written nothing else. The others go through `#deviceReady` in the write transaction.
   */
  #readyWithoutWrites(deviceUuids: readonly string[]): { ids: Map<string, number>; quiet: Set<string> } {
    return this.#store.read(() => {
      const ids = this.#ready.addMany(deviceUuids);
      const known = [...new Set(ids.values())];
      const busy = new Set(this.#outcomes.executions.openForDevices(known).map((e) => e.device_id));
      for (const row of dynamicJobsOfDevicesAccounts(this.#store, known)) busy.add(row.device_id);
      const quiet = new Set<string>();
      for (const uuid of deviceUuids) {
        const id = ids.get(uuid);
        if (id === undefined || !busy.has(id)) quiet.add(uuid);
      }
      return { ids, quiet };
    });
  }

  // ── periodic work and dispatch ─────────────────────────────────────────────────────────────

  /**
   * Periodic work (timer and test-clock changes): timeouts, orphans, dynamic targets (with
   * `storeWide`: the part about every process's devices, done by one process of a cluster), then
   * the cancels and dispatch of the devices connected here.
   */
  tick(storeWide = true): void {
    const now = this.#clock.now();
    const executions = this.#outcomes.executions;
    if (storeWide) this.#store.write(() => {
      // Executions past their deadline end together (a wave of them is a few statements, not several each).
      const b = this.#outcomes.batch();
      for (const e of executions.overdue(now)) {
        this.#outcomes.finishIn(b, b.adopt(e), {
          state: 'timed-out', now, errorCode: 'SERVER_EXECUTION_TIMEOUT', errorMessage: 'No result before the deadline.',
        });
      }
      b.flush();
      for (const e of executions.orphans(now - ORPHAN_QUEUED_MS)) this.#abandonOrphan(e, now);
      for (const job of runningJobs(this.#store)) {
        const options = JSON.parse(job.options) as JobOptions;
        if (options.dynamic) this.#outcomes.addTargets(job, JSON.parse(jobTarget(this.#store, job.id)!) as JobTarget, now);
        this.#outcomes.maybeFinish(job, now);
      }
    });
    for (const jobId of executions.jobsWithUnsentCancels()) this.sendPendingCancels(jobId);
    this.dispatch();
  }

  /**
   * Claims executions for devices connected here, within each job's limits, and offers them. The
   * claim is one BEGIN IMMEDIATE transaction (limits are counted inside it, so several processes
   * never exceed them together); sending happens after commit, and an offer that cannot be sent
   * (device gone) is undone. Batches follow one another within DISPATCH_SLICE_MS: the offers of one
   * batch are recorded in the transaction that claims the next (one commit, one fsync, per batch),
   * which is safe because nothing else runs in between (no turn of the event loop: no cancel, no
   * progress report can come between sending an offer and recording it). The first transaction
   * claims CLAIMS_PER_TRANSACTION, each next one twice as many up to CLAIMS_PER_TRANSACTION_MAX.
   * While a dispatch leaves more to offer (a burst), channel inputs are held (see INBOX_HOLD_MAX_MS).
   */
  dispatch(): void {
    let more = false;
    try {
      more = this.#dispatchSlice();
    } finally {
      this.#burst(more);
      if (this.#held.length > 0 && (!more || performance.now() - this.#heldSince >= INBOX_HOLD_MAX_MS)) this.#releaseHeldSoon();
    }
  }

  /** A burst of offers begins, goes on or ends: new downloads wait while it goes on (bounded). */
  #burst(more: boolean): void {
    const downloads = this.#packets.downloads;
    if (more && !this.#bursting) {
      this.#burstStarted = performance.now();
      downloads.hold();
    }
    this.#bursting = more;
    if (downloads.held && (!more || performance.now() - this.#burstStarted >= DOWNLOAD_HOLD_MAX_MS)) downloads.resume();
  }

  /** One slice of dispatch (see `dispatch`); true when more is left to claim in the next turn. */
  #dispatchSlice(): boolean {
    if (!this.#port) return false;
    // No job is running: nothing to render or claim, and no write transaction to take (a read sees
    // what the claim transaction would have seen at this moment; a job started later dispatches again).
    if (!anyRunningJob(this.#store)) return false;
    // Template jobs: render the packets of ready devices first (async); dispatch runs again after.
    this.#templates?.renderAhead(() => this.dispatch());
    const started = performance.now();
    let batch: { sent: Claim[]; failed: Claim[]; at: number } = { sent: [], failed: [], at: 0 };
    let offered = 0;
    let more = false;
    // A burst goes on with the claim size it had reached.
    let size = this.#bursting ? this.#claimSize : CLAIMS_PER_TRANSACTION;
    for (;;) {
      let now = this.#clock.now();
      const previous = batch;
      // Undone claims first: the capacity they free is claimed again in the same transaction.
      let claimed: { claims: Claim[]; more: boolean };
      try {
        claimed = this.#store.write(() => {
          this.#record(previous);
          // Read once the write lock is held: claimed_at is never earlier than a result this claim
          // saw recorded, whichever process recorded it while this one waited for the lock.
          now = this.#clock.now();
          return this.#claim(now, size);
        });
      } catch (err) {
        // The offers already sent are recorded on their own (a claim that failed, e.g. on a busy
        // lock, must not leave them queued, where a cancel would end them without telling the device).
        if (previous.sent.length > 0 || previous.failed.length > 0) this.#store.write(() => this.#record(previous));
        throw err;
      }
      offered += previous.sent.length;
      more = claimed.more;
      size = Math.min(2 * size, CLAIMS_PER_TRANSACTION_MAX);
      batch = { sent: [], failed: [], at: now };
      for (const c of claimed.claims) {
        if (this.#send(c.deviceUuid, this.#offer(c.exec, c.job, c.options, c.deviceUuid, c.packet))) batch.sent.push(c);
        else batch.failed.push(c);
      }
      this.#observeOfferLatency(batch.sent);
      if (claimed.claims.length === 0 || !more || performance.now() - started >= DISPATCH_SLICE_MS) break;
    }
    this.#claimSize = size;
    const last = batch;
    if (last.sent.length > 0 || last.failed.length > 0) this.#store.write(() => this.#record(last));
    offered += last.sent.length;
    if (offered > 0) this.#metrics.inc('fleet_job_offers_total', undefined, offered);
    if (more) this.dispatchSoon();
    // Capacity freed by failed sends may go to other connected devices.
    else if (last.failed.length > 0) this.dispatch();
    return more;
  }

  /** Job creation → offer sent, one observation per offer (one clock read and one difference per job and batch). */
  #observeOfferLatency(sent: Claim[]): void {
    if (sent.length === 0) return;
    const sentAt = this.#clock.now();
    let job: JobHead | undefined;
    let seconds = 0;
    for (const c of sent) {
      if (c.job !== job) {
        job = c.job;
        seconds = (sentAt - job.created_at) / 1000;
      }
      this.#metrics.observe('fleet_job_offer_latency_seconds', undefined, seconds);
    }
  }

  /** Records a batch's offers as offered and undoes the claims whose offer could not be sent (in the caller's transaction). */
  #record(batch: { sent: Claim[]; failed: Claim[]; at: number }): void {
    if (batch.sent.length > 0) this.#outcomes.executions.markOfferedAll(batch.sent.map((c) => c.exec.id), batch.at);
    for (const c of batch.failed) this.#unclaim(c.exec);
  }

  /** Dispatches in the next turn of the event loop (once, however often asked). */
  dispatchSoon(): void {
    if (this.#dispatchPending) return;
    this.#dispatchPending = true;
    setImmediate(() => {
      this.#dispatchPending = false;
      try {
        this.dispatch();
      } catch (err) {
        // Nothing is lost: the claims are in the store and the next tick retries.
        this.#metrics.inc('fleet_errors_total', { code: 'SERVER_INTERNAL' });
        this.#log.error({ err }, 'dispatch failed (the next tick retries)');
      }
    });
  }

  #claim(now: number, max: number): { claims: Claim[]; more: boolean } {
    const executions = this.#outcomes.executions;
    const devices = this.#outcomes.devices;
    const claims: Claim[] = [];
    const busy = new Set<number>();
    let taken = 0;
    let more = false;
    // Job by job, oldest first: the limits first, then at most that many candidates (a job with
    // no room left costs one count, not a read of its pending devices).
    for (const jobId of runningJobIds(this.#store)) {
      if (taken >= max) {
        more = true;
        break;
      }
      const job = jobById(this.#store, jobId)!;
      const options = JSON.parse(job.options) as JobOptions;
      const window = options.window ? nextWindow(options.window, now) : undefined;
      let room = capacity(options, this.#capacityCounts(jobId, options, now), window);
      if (room <= 0) continue;
      const limit = Math.min(room, max - taken);
      const rows = executions.claimCandidates(jobId, now, limit);
      // The packet of a packet job, or a firmware job's per model: read once per job, not per device.
      const packets = new Map<string | null, PacketRow | undefined>();
      const templated = this.#templates?.renders(jobId) ?? false;
      // A full page may leave more behind (rows skipped below count against it too).
      if (rows.length === limit) more = true;
      const takenBefore = taken;
      // The devices that will be offered are claimed together after the loop (two statements per
      // job and batch instead of two per device); the claim time, deadline and window are the job's.
      const deadline = executionDeadline(now, options.timeoutSec, window);
      const offers: Array<{ row: (typeof rows)[number]; packet: PacketRow }> = [];
      for (let k = 0; k < rows.length && room > 0 && taken < max; k++) {
        const row = rows[k]!;
        if (busy.has(row.device_id)) continue;
        const rendered = templated ? this.#templates!.packetFor(jobId, row.device_id) : { kind: 'none' as const };
        if (rendered.kind === 'pending') continue;
        let packet: PacketRow | undefined;
        if (rendered.kind === 'packet') packet = rendered.packet;
        else if (rendered.kind === 'none') {
          const key = job.packet_id !== null ? null : row.model;
          if (packets.has(key)) packet = packets.get(key);
          else packets.set(key, (packet = this.#packetFor(job, row.model)));
        }
        busy.add(row.device_id);
        room--;
        taken++;
        if (rendered.kind !== 'error' && packet) {
          offers.push({ row, packet });
          continue;
        }
        const attempt = devices.claim(jobId, row.device_id);
        const exec = executions.insert({
          uuid: randomUUID(),
          jobId,
          deviceId: row.device_id,
          packetId: packet?.id ?? null,
          attempt,
          claimedAt: now,
          deadline,
          windowStart: window?.notBefore ?? null,
          windowEnd: window?.notAfter ?? null,
        });
        if (rendered.kind === 'error') {
          // The template could not be rendered for this device (a missing value): fails before anything is sent.
          this.#templates!.forget(jobId, row.device_id);
          this.#outcomes.finish(exec, job, { state: 'failed', now, errorCode: rendered.code, errorMessage: rendered.message });
          continue;
        }
        // Firmware job and no catalogue firmware of that version for this model: rejected here.
        this.#outcomes.finish(exec, job, {
          state: 'rejected', now, errorCode: 'SERVER_FIRMWARE_UNKNOWN',
          errorMessage: `No firmware ${job.firmware_version} for model ${row.model ?? '(unknown)'} in the catalogue.`,
        });
      }
      if (offers.length > 0) {
        const attempts = devices.claimMany(jobId, offers.map((o) => o.row.device_id));
        const inserted = executions.insertMany(
          { jobId, claimedAt: now, deadline, windowStart: window?.notBefore ?? null, windowEnd: window?.notAfter ?? null },
          offers.map(({ row, packet }) => ({ uuid: randomUUID(), deviceId: row.device_id, packetId: packet.id, attempt: attempts.get(row.device_id)! })),
        );
        for (const { row, packet } of offers) claims.push({ exec: inserted.get(row.device_id)!, job, options, deviceUuid: row.uuid, packet });
      }
      if (taken > takenBefore) this.#log.debug({ job: job.uuid, claimed: taken - takenBefore, roomLeft: room }, 'executions claimed');
    }
    return { claims, more };
  }

  /** The counts the job's rollout limits need, read inside the claim transaction. */
  #capacityCounts(jobId: number, options: JobOptions, now: number): CapacityCounts {
    const need = countsNeeded(options);
    const executions = this.#outcomes.executions;
    return {
      ...(need.inFlight ? { inFlight: executions.inFlight(jobId) } : {}),
      ...(need.claimedLastMinute ? { claimedLastMinute: executions.claimedSince(jobId, now - MINUTE) } : {}),
      ...(need.devices ? { devices: this.#outcomes.devices.waveCounts(jobId) } : {}),
    };
  }

  #packetFor(job: JobHead, model: string | null): PacketRow | undefined {
    if (job.packet_id !== null) return packetById(this.#store, job.packet_id);
    if (job.firmware_version === null || model === null) return undefined;
    return this.#packets.catalogue.byModelVersion(model, job.firmware_version);
  }

  /**
   * A claim whose process died before recording the offer, and whose device did not come back to
   * be offered it again: its device goes back to pending (a new execution is claimed for it), and
   * the execution is kept, ended by the server, not deleted: the offer may have gone out, and the
   * device's result for it must still be recorded (and acknowledged) when it arrives.
   */
  #abandonOrphan(e: ExecutionRow, now: number): void {
    const ended = this.#outcomes.executions.abandonQueued(
      e.id,
      now,
      'SERVER_OFFER_UNCONFIRMED',
      'Claimed by a process that stopped before recording the offer.',
    );
    if (ended) this.#outcomes.backToPending(e);
  }

  /** Undoes a claim whose offer could not be sent (only while still queued: another process may have offered it since). */
  #unclaim(e: ExecutionRow): void {
    if (this.#outcomes.executions.deleteQueued(e.id)) this.#outcomes.backToPending(e);
  }

  // ── messages to devices ────────────────────────────────────────────────────────────────────

  /** The offer's text, from the job's template (built and validated once per job, packet and base URL). */
  #offer(exec: ExecutionRow, job: JobHead, options: JobOptions, deviceUuid: string, packet: PacketRow): string {
    const now = this.#clock.now();
    const expiresAt = Math.min(exec.deadline, now + this.#packets.options.downloadTokenTtlSec * 1000);
    const token = this.#tokens.issue({ executionId: exec.uuid, deviceUuid, expiresAt });
    const installWindow: WindowSpan | undefined =
      exec.window_start !== null && exec.window_end !== null ? { notBefore: exec.window_start, notAfter: exec.window_end } : undefined;
    const key = `${job.uuid} ${packet.id} ${installWindow ? 'w' : '-'} ${this.publicBaseUrl}`;
    const cached = this.#offerTemplates.get(key);
    const spec = cached?.spec;
    // A row id may be reused after a delete: the template must be of this very packet.
    let template = spec && spec.packet.sha256 === packet.sha256 && spec.packet.size === packet.size
      && spec.packet.name === packet.name && spec.allowDowngrade === options.allowDowngrade ? cached : undefined;
    if (template) {
      // Least recently used first: a template in use moves to the end of the map's order.
      this.#offerTemplates.delete(key);
      this.#offerTemplates.set(key, template);
    } else {
      if (cached) this.#offerTemplates.delete(key);
      else if (this.#offerTemplates.size >= OFFER_TEMPLATES_MAX) this.#offerTemplates.delete(this.#offerTemplates.keys().next().value!);
      template = new OfferTemplate({
        jobId: job.uuid,
        baseUrl: this.publicBaseUrl,
        packet: { size: packet.size, sha256: packet.sha256, name: packet.name },
        allowDowngrade: options.allowDowngrade,
        windowed: installWindow !== undefined,
      });
      this.#offerTemplates.set(key, template);
    }
    return template.text({ id: randomUUID(), sentAt: now, executionId: exec.uuid, token, expiresAt, deadline: exec.deadline, installWindow });
  }

  /** Sends a message, or an offer's text (parsed for a port that only takes messages). */
  #send(deviceUuid: string, message: Message | string): boolean {
    const port = this.#port;
    let ok = false;
    if (port) {
      if (typeof message !== 'string') ok = port.send(deviceUuid, message);
      else ok = port.sendText ? port.sendText(deviceUuid, message) : port.send(deviceUuid, JSON.parse(message) as Message);
    }
    if (!ok) this.#ready.remove(deviceUuid);
    return ok;
  }

  /** Sends a cancel and records it (in the batch's row when within one, else at once). */
  #sendCancel(deviceUuid: string, exec: ExecutionRow, b?: ResultBatch): void {
    const now = this.#clock.now();
    const sent = this.#send(
      deviceUuid,
      createMessage('job-cancel', { executionId: exec.uuid, reason: 'The job was cancelled.' }, { sentAt: now }),
    );
    if (!sent) return;
    if (!b) return this.#outcomes.executions.markCancelSent(exec.id, now);
    exec.cancel_sent_at = now;
    b.changed(exec);
  }

  /** Sends the job's cancels to its devices connected here that were not told yet. */
  sendPendingCancels(jobId: number): void {
    for (const e of this.#outcomes.executions.unsentCancels(jobId)) this.#sendCancel(e.device_uuid, e);
  }

  // ── progress from devices ──────────────────────────────────────────────────────────────────

  /**
   * Applies a job-progress as `decideProgress` judges it against the stored execution: states
   * reachable from the stored one advance it (the ones in between were lost or never sent); a
   * terminal result is recorded once, and revises a result the server decided without the device;
   * repeats and states behind the stored one are ignored and counted. Every terminal report of a
   * known execution is acknowledged (again, for duplicates), so the device stops repeating it.
   */
  #applyProgress(b: ResultBatch, deviceUuid: string, message: MessageOf<'job-progress'>, now: number): ProgressOutcome {
    const body = message.body;
    const exec = b.byUuid(body.executionId);
    if (!exec || exec.device_uuid !== deviceUuid) return 'unknown';
    const decision = decideProgress({ state: exec.state, resultSource: exec.result_source }, body.state);
    switch (decision.kind) {
      case 'duplicate':
        return 'duplicate';
      case 'stale':
        // Counted per execution.
        exec.ignored_progress++;
        b.changed(exec);
        return 'illegal';
      case 'advance':
        // From `queued`: the offer went out but the process that sent it died before recording it.
        exec.state = decision.state;
        exec.percent = body.percent ?? null;
        exec.updated_at = now;
        exec.offered_at ??= now;
        b.changed(exec);
        return 'applied';
      case 'finish':
      case 'revise': {
        const end = { state: decision.state, now, errorCode: body.errorCode ?? null, errorMessage: body.errorMessage ?? null };
        if (decision.kind === 'finish') this.#outcomes.finishIn(b, exec, { ...end, source: 'device' });
        else this.#outcomes.reviseIn(b, exec, end, decision.previous);
        return 'applied';
      }
    }
  }
}

/** The execution a channel input is about, for a log line (read defensively: the input may be what failed). */
function executionOf(item: ChannelInput): { executionId?: unknown } {
  if (item.kind !== 'progress') return {};
  const body = item.message.body as { executionId?: unknown } | undefined;
  return body?.executionId === undefined ? {} : { executionId: body.executionId };
}
