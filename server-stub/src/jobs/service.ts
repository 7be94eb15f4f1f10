import { TickBatch } from '../tick-batch.js';
import { randomUUID } from 'node:crypto';
import {
  CANCELLABLE_JOB_STATES,
  createMessage,
  isTerminalJobState,
  type JobExecutionState,
  type MessageOf,
} from '@router-fleet/protocol';
import type { Clock } from '../clock.js';
import { MINUTE } from '../clock.js';
import { AppError } from '../errors.js';
import type { LicensingService } from '../licensing/service.js';
import type { Metrics } from '../metrics.js';
import type { PacketService } from '../packets/service.js';
import type { Store } from '../store/database.js';
import { AccountEvents } from '../store/events.js';
import { AccountJobs, type ExecutionRow, JOB_HEAD_COLUMNS, jobById, type JobHead, type JobRow, type JobState, jobTarget } from '../store/jobs.js';
import { packetById, type PacketRow } from '../store/packets.js';
import type { AccountScope } from '../store/scope.js';
import type { JobTemplateHook } from '../templates/service.js';
import type { JobChannelPort } from './channel-port.js';
import type { DownloadTokens } from './download-token.js';
import { type JobOptions, type JobOptionsInput, type JobTarget, normalizeOptions, waveCapacity } from './options.js';
import { nextWindow } from './window.js';
import { decideProgress, type ResultSource } from './progress.js';

export interface CreateJobInput {
  name?: string;
  packetUuid?: string;
  firmwareVersion?: string;
  /** A configuration template: every device gets its own rendered, signed packet (templates/). */
  templateUuid?: string;
  target: { deviceUuids?: string[]; groupUuids?: string[]; all?: boolean };
  options?: JobOptionsInput;
}

/** Terminal results that count as failures (for retries and the abort threshold). */
const FAILURES: readonly JobExecutionState[] = ['failed', 'rejected', 'timed-out'];
const RETRYABLE: readonly JobExecutionState[] = ['failed', 'timed-out'];
/** A queued execution not offered within this time belongs to a worker that died: its device is claimed again. */
const ORPHAN_QUEUED_MS = MINUTE;
/** The window over which `rate` (devices with a result per minute) is measured. */
const RATE_WINDOW_MS = 10 * MINUTE;

const CANCELLABLE_SQL = `('${CANCELLABLE_JOB_STATES.join('\', \'')}')`;
const FAILURES_SQL = `('${FAILURES.join('\', \'')}')`;

/** Most channel inputs applied in one transaction; more in one tick flush early. */
const INBOX_BATCH_MAX = 2000;
/**
 * Executions claimed per write transaction; more are claimed in the next turn of the event loop.
 * One claim for 13,000 connected devices held the write lock past the other workers' busy timeout
 * (the 50,000-router run: job creation answered 500 with SQLITE_BUSY).
 */
export const CLAIMS_PER_TRANSACTION = 500;

type ProgressOutcome = 'applied' | 'duplicate' | 'illegal' | 'unknown';

/** What the control channel hands the dispatcher, in arrival order. */
type ChannelInput =
  | { kind: 'ready'; deviceUuid: string }
  | { kind: 'progress'; deviceUuid: string; message: MessageOf<'job-progress'> };

interface Claim {
  exec: ExecutionRow;
  job: JobHead;
  deviceUuid: string;
  packet: PacketRow;
}

/** Counts of progress messages that were not applied (kept in memory; also in metrics). */
export interface IgnoredProgress {
  duplicate: number;
  illegal: number;
  unknown: number;
}

/**
 * The devices connected here that one running job may be offered to now, in claim order, at most
 * `limit` (parameters: job id, now, limit). Runs in the write transaction of every dispatch (each
 * reconnect and each finished execution), so it walks the job's pending devices in claim order
 * through the partial index `job_devices_pending` (migration 26) and stops at the limit, instead of
 * reading and sorting every device of the job: a test checks the plan. The model (which catalogue
 * firmware a firmware job sends) is the one the router reported, else the typed-in one.
 */
export const CLAIM_CANDIDATES_SQL = `SELECT jd.device_id, d.uuid, COALESCE(d.reported_model, d.model) AS model
  FROM job_devices jd
  JOIN job_local_ready r ON r.device_id = jd.device_id
  JOIN devices d ON d.id = jd.device_id
  WHERE jd.job_id = ? AND jd.status = 'pending' AND jd.next_attempt_at <= ?
    AND d.admission = 'managed'
    AND NOT EXISTS (SELECT 1 FROM job_executions e WHERE e.device_id = jd.device_id AND e.finished_at IS NULL)
  ORDER BY jd.added_at, jd.device_id
  LIMIT ?`;

/** Executions claimed but never offered (the claiming process died): the job tick reclaims them (index `job_executions_queued`). */
export const ORPHAN_QUEUED_SQL = `SELECT * FROM job_executions WHERE state = 'queued' AND finished_at IS NULL AND claimed_at < ?`;

/** A job's executions in flight, for its maxConcurrent limit (counted in index `job_executions_unfinished`). */
export const IN_FLIGHT_SQL = 'SELECT COUNT(*) AS n FROM job_executions WHERE job_id = ? AND finished_at IS NULL';

/**
 * Update jobs and their dispatch. All dispatch state is in the store (jobs, job_devices,
 * job_executions), so several worker processes can each dispatch to their own connected devices:
 * executions are claimed in `BEGIN IMMEDIATE` transactions that re-check the rollout limits, and
 * the only in-memory state is which devices are connected to this process (a per-connection
 * TEMP table, so the claim query can join it).
 */
export class JobService {
  #port: JobChannelPort | undefined;
  #dispatchPending = false;
  #templates: JobTemplateHook | undefined;
  readonly ignored: IgnoredProgress = { duplicate: 0, illegal: 0, unknown: 0 };
  readonly #inbox = new TickBatch<ChannelInput>((batch) => this.#apply(batch), INBOX_BATCH_MAX);
  /** Base URL of packet downloads in offers (`https://host:port`); set after listen when port 0. */
  publicBaseUrl: string;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly licensing: LicensingService,
    private readonly packets: PacketService,
    readonly tokens: DownloadTokens,
    private readonly metrics: Metrics,
    publicBaseUrl: string,
  ) {
    this.publicBaseUrl = publicBaseUrl;
    store.db.exec('CREATE TEMP TABLE IF NOT EXISTS job_local_ready (device_id INTEGER PRIMARY KEY)');
    metrics.counter('fleet_job_progress_ignored_total', 'job-progress messages ignored (duplicate, illegal, unknown).');
    metrics.counter('fleet_job_offers_total', 'Job offers sent to devices.');
    metrics.counter('fleet_job_executions_finished_total', 'Executions that reached a terminal state, by state.');
  }

  /** Connects configuration templates (jobs with `templateUuid`); set once by createServices. */
  setTemplateHook(hook: JobTemplateHook): void {
    this.#templates = hook;
  }

  repo(scope: AccountScope): AccountJobs {
    return new AccountJobs(this.store, scope.accountId);
  }

  // ── the channel port ─────────────────────────────────────────────────────────────────────

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
   * each), then acknowledges the terminal reports and dispatches once. Each item runs in its own
   * savepoint, so a bad one is undone alone and counted; if the commit itself fails nothing is
   * acknowledged and the devices repeat their terminal reports.
   */
  #apply(batch: ChannelInput[]): void {
    const now = this.clock.now();
    const acks: Array<{ deviceUuid: string; correlationId: string }> = [];
    const outcomes: Array<Exclude<ProgressOutcome, 'applied'>> = [];
    let finished = false;
    try {
      this.store.write(() => {
        for (const item of batch) {
          try {
            if (item.kind === 'ready') {
              this.store.savepoint(() => this.#deviceReady(item.deviceUuid));
              continue;
            }
            const outcome = this.store.savepoint(() => this.#applyProgress(item.deviceUuid, item.message, now));
            const terminal = isTerminalJobState(item.message.body.state);
            if (outcome !== 'applied') outcomes.push(outcome);
            if (outcome !== 'unknown' && terminal) acks.push({ deviceUuid: item.deviceUuid, correlationId: item.message.id });
            if (outcome === 'applied' && terminal) finished = true;
          } catch {
            this.metrics.inc('fleet_errors_total', { code: 'SERVER_INTERNAL' });
          }
        }
      });
    } catch {
      // Nothing was stored: nothing is acknowledged; the devices resend, the next tick retries dispatch.
      this.metrics.inc('fleet_errors_total', { code: 'SERVER_INTERNAL' });
      return;
    }
    for (const outcome of outcomes) {
      this.ignored[outcome]++;
      this.metrics.inc('fleet_job_progress_ignored_total', { reason: outcome });
    }
    for (const a of acks) this.#send(a.deviceUuid, createMessage('ack', { seqs: [] }, { correlationId: a.correlationId, sentAt: now }));
    if (finished || batch.some((item) => item.kind === 'ready')) {
      try {
        this.dispatch();
      } catch {
        // A dispatch problem must never take the channel down; the next tick retries from the store.
        this.metrics.inc('fleet_errors_total', { code: 'SERVER_INTERNAL' });
      }
    }
  }

  /**
   * A device is connected here and managed: resend what it may have missed (flush dispatches after).
   * That includes executions still `queued`: claimed by a process that died (or lost the device)
   * before it recorded the offer, which may or may not have gone out; offers are idempotent by
   * execution id, so it is offered again and recorded as offered.
   */
  #deviceReady(deviceUuid: string): void {
    const device = this.store.stmt<{ id: number }>('SELECT id FROM devices WHERE uuid = ?').get(deviceUuid);
    if (!device) return;
    this.store.stmt('INSERT OR IGNORE INTO job_local_ready (device_id) VALUES (?)').run(device.id);
    this.#refreshDynamicFor(device.id);
    const open = this.store
      .stmt<ExecutionRow>(
        `SELECT * FROM job_executions WHERE device_id = ? AND finished_at IS NULL ORDER BY id`,
      )
      .all(device.id);
    const now = this.clock.now();
    for (const exec of open) {
      const job = jobById(this.store, exec.job_id)!;
      if (exec.cancel_requested === 1) {
        if (CANCELLABLE_JOB_STATES.includes(exec.state)) this.#sendCancel(deviceUuid, exec);
        continue;
      }
      const packet = exec.packet_id === null ? undefined : packetById(this.store, exec.packet_id);
      if (packet && !this.#send(deviceUuid, this.#offer(exec, job, deviceUuid, packet))) return;
      if (exec.state === 'queued') {
        this.store
          .stmt(`UPDATE job_executions SET state = 'offered', offered_at = ?, updated_at = ? WHERE id = ? AND state = 'queued'`)
          .run(now, now, exec.id);
      }
    }
  }

  // ── API operations ───────────────────────────────────────────────────────────────────────

  create(scope: AccountScope, input: CreateJobInput, createdBy: string | null, system = false): JobHead {
    const now = this.clock.now();
    const options = normalizeOptions(input.options, now);
    const t = input.target;
    const targetCount = (t.all ? 1 : 0) + (t.deviceUuids?.length ? 1 : 0) + (t.groupUuids?.length ? 1 : 0);
    if (targetCount === 0) throw new AppError('SERVER_VALIDATION', 'target: give deviceUuids, groupUuids or all: true.');
    const sources = [input.packetUuid, input.firmwareVersion, input.templateUuid].filter((x) => x !== undefined);
    if (sources.length !== 1) {
      throw new AppError('SERVER_VALIDATION', 'Give exactly one of packetUuid, firmwareVersion and templateUuid.');
    }
    const uuid = randomUUID();
    scope.write(() => {
      this.licensing.requireActivePlan(scope, now);
      let packet: PacketRow | undefined;
      const template =
        input.templateUuid === undefined ? undefined : this.#requireTemplates().lookup(scope, input.templateUuid);
      if (template) {
        // rendered per device at dispatch
      } else if (input.packetUuid !== undefined) {
        packet = this.packets.repo(scope).byUuid(input.packetUuid);
        if (!packet) throw new AppError('SERVER_VALIDATION', `Unknown packet ${input.packetUuid}.`);
      } else if (!this.packets.catalogue.hasVersion(input.firmwareVersion!)) {
        throw new AppError('SERVER_FIRMWARE_UNKNOWN');
      }
      const target: JobTarget = { all: t.all === true, deviceIds: [], groupIds: [], deviceUuids: [], groupUuids: [] };
      for (const u of new Set(t.deviceUuids ?? [])) {
        const d = scope.devices.byUuid(u);
        if (!d) throw new AppError('SERVER_VALIDATION', `Unknown device ${u}.`);
        target.deviceIds.push(d.id);
        target.deviceUuids.push(u);
      }
      for (const u of new Set(t.groupUuids ?? [])) {
        const g = scope.groups.byUuid(u);
        if (!g) throw new AppError('SERVER_VALIDATION', `Unknown device group ${u}.`);
        target.groupIds.push(g.id);
        target.groupUuids.push(u);
      }
      const id = Number(
        this.store
          .stmt(
            `INSERT INTO jobs (uuid, account_id, name, packet_id, firmware_version, target, target_summary, options, state,
               created_by, system, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)`,
          )
          .run(
            uuid,
            scope.accountId,
            input.name ?? (packet ? packet.name : template ? template.name : `firmware ${input.firmwareVersion}`),
            packet?.id ?? null,
            input.firmwareVersion ?? null,
            JSON.stringify(target),
            JSON.stringify({ all: target.all, groupUuids: target.groupUuids, deviceCount: target.deviceUuids.length }),
            JSON.stringify(options),
            createdBy,
            system ? 1 : 0,
            now,
          ).lastInsertRowid,
      );
      const job = jobById(this.store, id)!;
      if (template) this.#templates!.attach(id, template);
      const n = this.#addTargets(job, target, now);
      new AccountEvents(this.store, scope.accountId).record({
        type: 'job.started',
        subject: uuid,
        data: { name: job.name, devices: n, system },
        at: now,
      });
      this.#maybeFinish(job, now);
    });
    this.dispatch();
    return this.repo(scope).byUuid(uuid)!;
  }

  /** Cancel: no new executions; before the commit point executions end `cancelled`, after it they finish. */
  cancel(scope: AccountScope, uuid: string): JobHead {
    const now = this.clock.now();
    const job = scope.write(() => {
      const job = this.repo(scope).byUuid(uuid);
      if (!job) throw new AppError('SERVER_NOT_FOUND');
      if (job.state !== 'running' && job.state !== 'paused') throw new AppError('SERVER_JOB_STATE');
      this.store.stmt(`UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?`).run(now, job.id);
      this.store
        .stmt(`UPDATE job_devices SET status = 'done', result = 'cancelled' WHERE job_id = ? AND status = 'pending'`)
        .run(job.id);
      // Not yet offered: cancelled here and now.
      for (const e of this.store
        .stmt<ExecutionRow>(`SELECT * FROM job_executions WHERE job_id = ? AND state = 'queued' AND finished_at IS NULL`)
        .all(job.id)) {
        this.#finish(e, job, 'cancelled', now, null, null);
      }
      this.store
        .stmt('UPDATE job_executions SET cancel_requested = 1 WHERE job_id = ? AND finished_at IS NULL')
        .run(job.id);
      new AccountEvents(this.store, scope.accountId).record({ type: 'job.cancelled', subject: uuid, at: now });
      return job;
    });
    this.#sendPendingCancels(job.id);
    return this.repo(scope).byUuid(uuid)!;
  }

  pause(scope: AccountScope, uuid: string): JobHead {
    return this.#setState(scope, uuid, 'running', 'paused');
  }

  resume(scope: AccountScope, uuid: string): JobHead {
    const job = this.#setState(scope, uuid, 'paused', 'running');
    this.dispatch();
    return job;
  }

  #setState(scope: AccountScope, uuid: string, from: JobState, to: JobState): JobHead {
    scope.write(() => {
      const job = this.repo(scope).byUuid(uuid);
      if (!job) throw new AppError('SERVER_NOT_FOUND');
      if (job.state !== from) throw new AppError('SERVER_JOB_STATE', `Only a ${from} job can be made ${to}.`);
      this.store.stmt('UPDATE jobs SET state = ? WHERE id = ?').run(to, job.id);
    });
    return this.repo(scope).byUuid(uuid)!;
  }

  /** What a download of `executionUuid` may serve: its device and packet, while it is not terminal. */
  downloadTarget(executionUuid: string): { deviceUuid: string; packet: PacketRow } | undefined {
    const row = this.store
      .stmt<{ device_uuid: string; packet_id: number | null; finished_at: number | null }>(
        `SELECT d.uuid AS device_uuid, e.packet_id, e.finished_at FROM job_executions e
         JOIN devices d ON d.id = e.device_id WHERE e.uuid = ?`,
      )
      .get(executionUuid);
    if (!row || row.finished_at !== null || row.packet_id === null) return undefined;
    const packet = packetById(this.store, row.packet_id);
    return packet ? { deviceUuid: row.device_uuid, packet } : undefined;
  }

  // ── dispatch ─────────────────────────────────────────────────────────────────────────────

  /** Periodic work (timer and test-clock changes): timeouts, orphans, dynamic targets, dispatch. */
  tick(): void {
    const now = this.clock.now();
    this.store.write(() => {
      for (const e of this.store
        .stmt<ExecutionRow>(`SELECT * FROM job_executions WHERE finished_at IS NULL AND deadline <= ? AND state != 'queued'`)
        .all(now)) {
        this.#finish(e, jobById(this.store, e.job_id)!, 'timed-out', now, 'SERVER_EXECUTION_TIMEOUT', 'No result before the deadline.');
      }
      for (const e of this.store
        .stmt<ExecutionRow>(ORPHAN_QUEUED_SQL)
        .all(now - ORPHAN_QUEUED_MS)) {
        this.#abandonOrphan(e, now);
      }
      for (const job of this.store.stmt<JobHead>(`SELECT ${JOB_HEAD_COLUMNS} FROM jobs WHERE state = 'running'`).all()) {
        const options = JSON.parse(job.options) as JobOptions;
        if (options.dynamic) this.#addTargets(job, JSON.parse(jobTarget(this.store, job.id)!) as JobTarget, now);
        this.#maybeFinish(job, now);
      }
    });
    for (const { job_id } of this.store
      .stmt<{ job_id: number }>(
        `SELECT DISTINCT e.job_id FROM job_executions e JOIN job_local_ready r ON r.device_id = e.device_id
         WHERE e.cancel_requested = 1 AND e.cancel_sent_at IS NULL AND e.finished_at IS NULL`,
      )
      .all()) {
      this.#sendPendingCancels(job_id);
    }
    this.dispatch();
  }

  /**
   * Claims executions for devices connected here, within each job's limits, and offers them. The
   * claim is one BEGIN IMMEDIATE transaction (limits are counted inside it, so several processes
   * never exceed them together); sending happens after commit, and an offer that cannot be sent
   * (device gone) is undone.
   */
  dispatch(): void {
    if (!this.#port) return;
    // Template jobs: render the packets of ready devices first (async); dispatch runs again after.
    this.#templates?.prepare(() => this.dispatch());
    const now = this.clock.now();
    const { claims, more } = this.store.write(() => this.#claim(now));
    if (more) this.#dispatchSoon();
    if (claims.length === 0) return;
    const sent: Claim[] = [];
    const failed: Claim[] = [];
    for (const c of claims) {
      if (this.#send(c.deviceUuid, this.#offer(c.exec, c.job, c.deviceUuid, c.packet))) sent.push(c);
      else failed.push(c);
    }
    this.store.write(() => {
      const offered = this.store.stmt(
        `UPDATE job_executions SET state = 'offered', offered_at = ?, updated_at = ? WHERE id = ? AND state = 'queued'`,
      );
      for (const c of sent) offered.run(now, now, c.exec.id);
      for (const c of failed) this.#unclaim(c.exec);
    });
    this.metrics.inc('fleet_job_offers_total', undefined, sent.length);
    // Capacity freed by failed sends may go to other connected devices.
    if (failed.length > 0) this.dispatch();
  }

  /** Dispatches again in the next turn of the event loop (once, however often asked). */
  #dispatchSoon(): void {
    if (this.#dispatchPending) return;
    this.#dispatchPending = true;
    setImmediate(() => {
      this.#dispatchPending = false;
      try {
        this.dispatch();
      } catch {
        // The next tick retries from the store.
      }
    });
  }

  #claim(now: number): { claims: Claim[]; more: boolean } {
    const claims: Claim[] = [];
    const busy = new Set<number>();
    let taken = 0;
    let more = false;
    // Job by job, oldest first: the limits first, then at most that many candidates (a job with
    // no room left costs one count, not a read of its pending devices).
    for (const { id: jobId } of this.store.stmt<{ id: number }>(`SELECT id FROM jobs WHERE state = 'running' ORDER BY id`).all()) {
      if (taken >= CLAIMS_PER_TRANSACTION) {
        more = true;
        break;
      }
      const job = jobById(this.store, jobId)!;
      const options = JSON.parse(job.options) as JobOptions;
      let capacity = this.#capacity(job, options, now);
      const window = options.window ? nextWindow(options.window, now) : undefined;
      if (options.window && !window) capacity = 0;
      if (capacity <= 0) continue;
      const limit = Math.min(capacity, CLAIMS_PER_TRANSACTION - taken);
      const rows = this.store
        .stmt<{ device_id: number; uuid: string; model: string | null }>(CLAIM_CANDIDATES_SQL)
        .all(jobId, now, limit);
      // A full page may leave more behind (rows skipped below count against it too).
      if (rows.length === limit) more = true;
      for (let k = 0; k < rows.length && capacity > 0 && taken < CLAIMS_PER_TRANSACTION; k++) {
        const row = rows[k]!;
        if (busy.has(row.device_id)) continue;
        const rendered = this.#templates?.packetFor(jobId, row.device_id) ?? { kind: 'none' as const };
        if (rendered.kind === 'pending') continue;
        const packet = rendered.kind === 'none' ? this.#packetFor(job, row.model) : rendered.kind === 'packet' ? rendered.packet : undefined;
        busy.add(row.device_id);
        capacity--;
        taken++;
        const attempt =
          (this.store
            .stmt<{ attempts: number }>('SELECT attempts FROM job_devices WHERE job_id = ? AND device_id = ?')
            .get(jobId, row.device_id)?.attempts ?? 0) + 1;
        this.store
          .stmt(`UPDATE job_devices SET status = 'active', attempts = ? WHERE job_id = ? AND device_id = ?`)
          .run(attempt, jobId, row.device_id);
        const deadline = Math.max(now + options.timeoutSec * 1000, window ? window.notAfter : 0);
        const id = Number(
          this.store
            .stmt(
              `INSERT INTO job_executions (uuid, job_id, device_id, packet_id, attempt, state, claimed_at, updated_at,
                 deadline, window_start, window_end)
               VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)`,
            )
            .run(randomUUID(), jobId, row.device_id, packet?.id ?? null, attempt, now, now, deadline,
              window?.notBefore ?? null, window?.notAfter ?? null).lastInsertRowid,
        );
        const exec = this.store.stmt<ExecutionRow>('SELECT * FROM job_executions WHERE id = ?').get(id)!;
        if (rendered.kind === 'error') {
          // The template could not be rendered for this device (a missing value): fails before anything is sent.
          this.#templates!.forget(jobId, row.device_id);
          this.#finish(exec, job, 'failed', now, rendered.code, rendered.message);
          continue;
        }
        if (!packet) {
          // Firmware job and no catalogue firmware of that version for this model: rejected here.
          this.#finish(exec, job, 'rejected', now, 'SERVER_FIRMWARE_UNKNOWN',
            `No firmware ${job.firmware_version} for model ${row.model ?? '(unknown)'} in the catalogue.`);
          continue;
        }
        claims.push({ exec, job, deviceUuid: row.uuid, packet });
      }
    }
    return { claims, more };
  }

  #capacity(job: JobHead, options: JobOptions, now: number): number {
    let capacity = Number.POSITIVE_INFINITY;
    if (options.maxConcurrent !== null) {
      const inFlight = this.store
        .stmt<{ n: number }>(IN_FLIGHT_SQL)
        .get(job.id)!.n;
      capacity = Math.min(capacity, options.maxConcurrent - inFlight);
    }
    if (options.maxPerMinute !== null) {
      const recent = this.store
        .stmt<{ n: number }>('SELECT COUNT(*) AS n FROM job_executions WHERE job_id = ? AND claimed_at > ?')
        .get(job.id, now - MINUTE)!.n;
      capacity = Math.min(capacity, options.maxPerMinute - recent);
    }
    if (options.waves.length > 0) {
      const c = this.store
        .stmt<{ total: number; started: number; unfinished: number }>(
          `SELECT COUNT(*) AS total, COALESCE(SUM(attempts > 0), 0) AS started,
             COALESCE(SUM(attempts > 0 AND status != 'done'), 0) AS unfinished
           FROM job_devices WHERE job_id = ?`,
        )
        .get(job.id)!;
      capacity = Math.min(capacity, waveCapacity(options.waves, c.total, c.started, c.unfinished));
    }
    return Math.max(0, capacity);
  }

  #requireTemplates(): JobTemplateHook {
    if (!this.#templates) throw new AppError('SERVER_VALIDATION', 'Configuration templates are not available.');
    return this.#templates;
  }

  #packetFor(job: JobHead, model: string | null): PacketRow | undefined {
    if (job.packet_id !== null) return packetById(this.store, job.packet_id);
    if (job.firmware_version === null || model === null) return undefined;
    return this.packets.catalogue.byModelVersion(model, job.firmware_version);
  }

  /**
   * A claim whose process died before recording the offer, and whose device did not come back to
   * be offered it again: its device goes back to pending (a new execution is claimed for it), and
   * the execution is kept, ended by the server, not deleted: the offer may have gone out, and the
   * device's result for it must still be recorded (and acknowledged) when it arrives.
   */
  #abandonOrphan(e: ExecutionRow, now: number): void {
    const ended = this.store
      .stmt(
        `UPDATE job_executions SET state = 'cancelled', finished_at = ?, updated_at = ?, result_source = 'server', error_code = ?,
           error_message = ? WHERE id = ? AND state = 'queued'`,
      )
      .run(now, now, 'SERVER_OFFER_UNCONFIRMED', 'Claimed by a process that stopped before recording the offer.', e.id).changes;
    if (ended === 0) return;
    this.#backToPending(e);
  }

  /** Undoes a claim whose offer could not be sent (only while still queued: another process may have offered it since). */
  #unclaim(e: ExecutionRow): void {
    if (this.store.stmt(`DELETE FROM job_executions WHERE id = ? AND state = 'queued'`).run(e.id).changes === 0) return;
    this.#backToPending(e);
  }

  /** The claim's device is pending again in its job, and the claim does not count as an attempt. */
  #backToPending(e: ExecutionRow): void {
    this.store
      .stmt(
        `UPDATE job_devices SET status = 'pending', attempts = MAX(attempts - 1, 0) WHERE job_id = ? AND device_id = ? AND status = 'active'`,
      )
      .run(e.job_id, e.device_id);
  }

  #addTargets(job: JobHead, target: JobTarget, now: number): number {
    const insert = `INSERT OR IGNORE INTO job_devices (job_id, device_id, status, added_at) `;
    let n = 0;
    if (target.all) {
      n += this.store
        .stmt(`${insert} SELECT ?, id, 'pending', ? FROM devices WHERE account_id = ?`)
        .run(job.id, now, job.account_id).changes;
    }
    if (target.groupIds.length > 0) {
      n += this.store
        .stmt(
          `${insert} SELECT ?, id, 'pending', ? FROM devices
           WHERE account_id = ? AND group_id IN (SELECT value FROM json_each(?))`,
        )
        .run(job.id, now, job.account_id, JSON.stringify(target.groupIds)).changes;
    }
    if (target.deviceIds.length > 0) {
      n += this.store
        .stmt(
          `${insert} SELECT ?, id, 'pending', ? FROM devices
           WHERE account_id = ? AND id IN (SELECT value FROM json_each(?))`,
        )
        .run(job.id, now, job.account_id, JSON.stringify(target.deviceIds)).changes;
    }
    return n;
  }

  /** A device that became ready may have joined a targeted group of a dynamic job. */
  #refreshDynamicFor(deviceId: number): void {
    const now = this.clock.now();
    const jobs = this.store
      .stmt<JobRow>(
        `SELECT j.* FROM jobs j JOIN devices d ON d.account_id = j.account_id
         WHERE d.id = ? AND j.state = 'running' AND json_extract(j.options, '$.dynamic') = 1`,
      )
      .all(deviceId);
    if (jobs.length === 0) return;
    this.store.write(() => {
      for (const job of jobs) this.#addTargets(job, JSON.parse(job.target) as JobTarget, now);
    });
  }

  #offer(exec: ExecutionRow, job: JobHead, deviceUuid: string, packet: PacketRow): MessageOf<'job-offer'> {
    const now = this.clock.now();
    const options = JSON.parse(job.options) as JobOptions;
    const expiresAt = Math.min(exec.deadline, now + this.packets.options.downloadTokenTtlSec * 1000);
    const token = this.tokens.issue({ executionId: exec.uuid, deviceUuid, expiresAt });
    return createMessage(
      'job-offer',
      {
        executionId: exec.uuid,
        jobId: job.uuid,
        packet: {
          url: `${this.publicBaseUrl}/api/packets/download/${exec.uuid}`,
          size: packet.size,
          sha256: packet.sha256,
          description: packet.name.slice(0, 256),
        },
        download: { token, expiresAt },
        deadline: exec.deadline,
        ...(exec.window_start !== null && exec.window_end !== null
          ? { installWindow: { notBefore: exec.window_start, notAfter: exec.window_end } }
          : {}),
        allowDowngrade: options.allowDowngrade,
      },
      { sentAt: now },
    );
  }

  #send(deviceUuid: string, message: Parameters<JobChannelPort['send']>[1]): boolean {
    const ok = this.#port?.send(deviceUuid, message) ?? false;
    if (!ok) {
      this.store
        .stmt('DELETE FROM job_local_ready WHERE device_id = (SELECT id FROM devices WHERE uuid = ?)')
        .run(deviceUuid);
    }
    return ok;
  }

  #sendCancel(deviceUuid: string, exec: ExecutionRow): void {
    const now = this.clock.now();
    const sent = this.#send(
      deviceUuid,
      createMessage('job-cancel', { executionId: exec.uuid, reason: 'The job was cancelled.' }, { sentAt: now }),
    );
    if (sent) this.store.stmt('UPDATE job_executions SET cancel_sent_at = ? WHERE id = ?').run(now, exec.id);
  }

  #sendPendingCancels(jobId: number): void {
    const rows = this.store
      .stmt<ExecutionRow & { device_uuid: string }>(
        `SELECT e.*, d.uuid AS device_uuid FROM job_executions e
         JOIN job_local_ready r ON r.device_id = e.device_id JOIN devices d ON d.id = e.device_id
         WHERE e.job_id = ? AND e.cancel_requested = 1 AND e.cancel_sent_at IS NULL AND e.finished_at IS NULL
           AND e.state IN ${CANCELLABLE_SQL}`,
      )
      .all(jobId);
    for (const e of rows) this.#sendCancel(e.device_uuid, e);
  }

  // ── progress from devices ──────────────────────────────────────────────────────────────────

  /**
   * Applies a job-progress as `decideProgress` judges it against the stored execution: states
   * reachable from the stored one advance it (the ones in between were lost or never sent); a
   * terminal result is recorded once, and revises a result the server decided without the device;
   * repeats and states behind the stored one are ignored and counted. Every terminal report of a
   * known execution is acknowledged (again, for duplicates), so the device stops repeating it.
   */
  #applyProgress(deviceUuid: string, message: MessageOf<'job-progress'>, now: number): ProgressOutcome {
    const body = message.body;
    const exec = this.store
      .stmt<ExecutionRow & { device_uuid: string }>(
        `SELECT e.*, d.uuid AS device_uuid FROM job_executions e JOIN devices d ON d.id = e.device_id WHERE e.uuid = ?`,
      )
      .get(body.executionId);
    if (!exec || exec.device_uuid !== deviceUuid) return 'unknown';
    const decision = decideProgress({ state: exec.state, resultSource: exec.result_source }, body.state);
    switch (decision.kind) {
      case 'duplicate':
        return 'duplicate';
      case 'stale':
        this.store.stmt('UPDATE job_executions SET ignored_progress = ignored_progress + 1 WHERE id = ?').run(exec.id);
        return 'illegal';
      case 'advance':
        // From `queued`: the offer went out but the process that sent it died before recording it.
        this.store
          .stmt('UPDATE job_executions SET state = ?, percent = ?, updated_at = ?, offered_at = COALESCE(offered_at, ?) WHERE id = ?')
          .run(decision.state, body.percent ?? null, now, now, exec.id);
        return 'applied';
      case 'finish':
        this.#finish(exec, jobById(this.store, exec.job_id)!, decision.state, now, body.errorCode ?? null, body.errorMessage ?? null, 'device');
        return 'applied';
      case 'revise':
        this.#revise(exec, decision.state, decision.previous, now, body.errorCode ?? null, body.errorMessage ?? null);
        return 'applied';
    }
  }

  /**
   * The device's own result of an execution the server had already ended without it (deadline,
   * cancel before the offer was known to be out). The execution takes the device's result; the
   * device's result in the job too, if this is its latest execution of the job (a retry started
   * since reports its own). An account event keeps what the server had decided.
   */
  #revise(
    exec: ExecutionRow,
    state: JobExecutionState,
    previous: JobExecutionState,
    now: number,
    errorCode: string | null,
    errorMessage: string | null,
  ): void {
    const job = jobById(this.store, exec.job_id)!;
    this.store
      .stmt(
        `UPDATE job_executions SET state = ?, result_source = 'device', updated_at = ?, error_code = ?, error_message = ? WHERE id = ?`,
      )
      .run(state, now, errorCode, errorMessage?.slice(0, 1024) ?? null, exec.id);
    this.metrics.inc('fleet_job_executions_finished_total', { state });
    const latest = this.store
      .stmt<{ id: number }>('SELECT MAX(id) AS id FROM job_executions WHERE job_id = ? AND device_id = ?')
      .get(exec.job_id, exec.device_id)!.id;
    if (latest === exec.id) this.#settleDevice(exec, job, state, now);
    new AccountEvents(this.store, job.account_id).record({
      type: 'job.execution-revised',
      subject: job.uuid,
      data: { executionId: exec.uuid, serverResult: previous, deviceResult: state },
      at: now,
    });
    if (FAILURES.includes(state)) this.#maybeAbort(job, JSON.parse(job.options) as JobOptions, now);
    this.#maybeFinish(job, now);
  }

  #finish(
    exec: ExecutionRow,
    job: JobHead,
    state: JobExecutionState,
    now: number,
    errorCode: string | null,
    errorMessage: string | null,
    source: ResultSource = 'server',
  ): void {
    this.store
      .stmt(
        `UPDATE job_executions SET state = ?, finished_at = ?, updated_at = ?, error_code = ?, error_message = ?, result_source = ?
         WHERE id = ?`,
      )
      .run(state, now, now, errorCode, errorMessage?.slice(0, 1024) ?? null, source, exec.id);
    this.metrics.inc('fleet_job_executions_finished_total', { state });
    const options = JSON.parse(job.options) as JobOptions;
    this.#settleDevice(exec, job, state, now);
    if (FAILURES.includes(state)) this.#maybeAbort(job, options, now);
    this.#maybeFinish(job, now);
  }

  /** The device's result in the job after an execution ended: done, or pending again for a retry. */
  #settleDevice(exec: ExecutionRow, job: JobHead, state: JobExecutionState, now: number): void {
    const options = JSON.parse(job.options) as JobOptions;
    const retry = RETRYABLE.includes(state) && exec.attempt <= options.retries && job.state === 'running';
    this.store
      .stmt(
        `UPDATE job_devices SET status = ?, result = ?, next_attempt_at = ? WHERE job_id = ? AND device_id = ?`,
      )
      .run(retry ? 'pending' : 'done', state, now + options.retryDelaySec * 1000, job.id, exec.device_id);
  }

  #maybeAbort(job: JobHead, options: JobOptions, now: number): void {
    if (!options.abort || job.state !== 'running') return;
    const c = this.store
      .stmt<{ failed: number; finished: number }>(
        `SELECT COALESCE(SUM(result IN ${FAILURES_SQL}), 0) AS failed, COUNT(result) AS finished
         FROM job_devices WHERE job_id = ?`,
      )
      .get(job.id)!;
    const percent = c.finished === 0 ? 0 : (c.failed / c.finished) * 100;
    if (c.failed < options.abort.minFailures || percent <= options.abort.failurePercent) return;
    const reason = `${c.failed} of ${c.finished} devices failed (${percent.toFixed(1)} %)`;
    const changed = this.store
      .stmt(`UPDATE jobs SET state = 'aborted', finished_at = ?, abort_reason = ? WHERE id = ? AND state = 'running'`)
      .run(now, reason, job.id).changes;
    if (changed > 0) {
      new AccountEvents(this.store, job.account_id).record({
        type: 'job.aborted',
        subject: job.uuid,
        data: { reason, failed: c.failed, finished: c.finished },
        at: now,
      });
    }
  }

  /** Finishes a job with every device done (read from job_counts: runs per finished execution, under the write lock). */
  #maybeFinish(job: JobHead, now: number): void {
    const options = JSON.parse(job.options) as JobOptions;
    if (options.dynamic) return; // runs until cancelled: devices may still join
    const changed = this.store
      .stmt(
        `UPDATE jobs SET state = 'finished', finished_at = ? WHERE id = ? AND state = 'running'
         AND NOT EXISTS (SELECT 1 FROM job_counts WHERE job_id = ? AND bucket IN ('status:pending', 'status:active') AND n > 0)`,
      )
      .run(now, job.id, job.id).changes;
    if (changed > 0) {
      const c = this.counts(job.id);
      new AccountEvents(this.store, job.account_id).record({
        type: 'job.finished',
        subject: job.uuid,
        data: { results: c.results },
        at: now,
      });
    }
  }

  // ── progress views ───────────────────────────────────────────────────────────────────────

  /**
   * A job's counts, read from `job_counts` (kept by triggers on job_devices, job_executions and
   * devices, migration 28): a poll reads a handful of rows, not every device of the job.
   */
  counts(jobId: number) {
    const c = new Map<string, number>();
    for (const r of this.store.stmt<{ bucket: string; n: number }>('SELECT bucket, n FROM job_counts WHERE job_id = ?').all(jobId)) {
      c.set(r.bucket, r.n);
    }
    const n = (bucket: string) => c.get(bucket) ?? 0;
    const skipped = n('skipped');
    const devices = {
      total: n('status:pending') + n('status:active') + n('status:done'),
      pending: n('status:pending') - skipped,
      skipped,
      active: n('status:active'),
      done: n('status:done'),
    };
    const results: Record<string, number> = { succeeded: 0, failed: 0, rejected: 0, cancelled: 0, 'timed-out': 0 };
    const states: Record<string, number> = {};
    for (const [bucket, count] of c) {
      if (bucket.startsWith('result:')) results[bucket.slice(7)] = count;
      else if (bucket.startsWith('state:') && count !== 0) states[bucket.slice(6)] = count;
    }
    return { devices, results, inFlight: states, ignored: n('ignored') };
  }

  progressView(job: JobHead) {
    const now = this.clock.now();
    const { ignored, ...c } = this.counts(job.id);
    // Bounded by the executions finished in the window (index job_executions_finished).
    const recent = this.store
      .stmt<{ n: number }>('SELECT COUNT(*) AS n FROM job_executions WHERE job_id = ? AND finished_at > ?')
      .get(job.id, now - RATE_WINDOW_MS)!.n;
    return {
      ...c,
      percentComplete: c.devices.total === 0 ? 100 : Math.round((c.devices.done / c.devices.total) * 1000) / 10,
      ratePerMinute: Math.round((recent / (RATE_WINDOW_MS / MINUTE)) * 100) / 100,
      ignoredProgress: ignored,
    };
  }

  /** Per-device results of a job, cursor-paged by device id. */
  deviceResults(job: JobHead, afterId: number, limit: number) {
    return this.store
      .stmt<{
      id: number;
      uuid: string;
      serial_number: string;
      admission: string | null;
      status: string;
      result: string | null;
      attempts: number;
      exec_uuid: string | null;
      state: string | null;
      percent: number | null;
      error_code: string | null;
      error_message: string | null;
      cancel_requested: number | null;
      updated_at: number | null;
    }>(
        `SELECT d.id, d.uuid, d.serial_number, d.admission, jd.status, jd.result, jd.attempts,
           e.uuid AS exec_uuid, e.state, e.percent, e.error_code, e.error_message, e.cancel_requested, e.updated_at
         FROM job_devices jd JOIN devices d ON d.id = jd.device_id
         LEFT JOIN job_executions e ON e.id = (
           SELECT MAX(id) FROM job_executions WHERE job_id = jd.job_id AND device_id = jd.device_id)
         WHERE jd.job_id = ? AND jd.device_id > ? ORDER BY jd.device_id LIMIT ?`,
      )
      .all(job.id, afterId, limit);
  }
}
