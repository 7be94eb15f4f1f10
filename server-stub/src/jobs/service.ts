import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { MINUTE } from '../clock.js';
import { AppError } from '../errors.js';
import type { LicensingService } from '../licensing/service.js';
import type { Metrics } from '../metrics.js';
import type { PacketService } from '../packets/service.js';
import type { Store } from '../store/database.js';
import { AccountEvents } from '../store/events.js';
import type { DeviceResultRow } from '../store/job-executions.js';
import { AccountJobs, insertJob, jobById, type JobHead } from '../store/jobs.js';
import type { PacketRow } from '../store/packets.js';
import type { AccountScope } from '../store/scope.js';
import type { JobTemplateHook } from '../templates/service.js';
import type { JobChannelPort } from './channel-port.js';
import { type IgnoredProgress, JobDispatcher } from './dispatcher.js';
import type { DownloadTokens } from './download-token.js';
import { canMove, JOB_LIFECYCLE, type JobEvent, statesAllowing } from './job-lifecycle.js';
import { type JobOptionsInput, type JobTarget, normalizeOptions } from './options.js';
import { JobOutcomes } from './outcomes.js';

export interface CreateJobInput {
  name?: string;
  packetUuid?: string;
  firmwareVersion?: string;
  /** A configuration template: every device gets its own rendered, signed packet (templates/). */
  templateUuid?: string;
  target: { deviceUuids?: string[]; groupUuids?: string[]; all?: boolean };
  options?: JobOptionsInput;
}

/** The window over which `rate` (devices with a result per minute) is measured. */
const RATE_WINDOW_MS = 10 * MINUTE;

/**
 * Update jobs: the API (create, pause, resume, cancel, read models) over the store, with the
 * dispatcher (jobs/dispatcher.ts: inbox, claims, offers) behind the same object for the routes and
 * the control channel. A job's own state moves only through jobs/job-lifecycle.ts; the rollout
 * policy is jobs/rollout.ts; every SQL statement is in store/.
 */
export class JobService {
  readonly #outcomes: JobOutcomes;
  readonly #dispatcher: JobDispatcher;
  #templates: JobTemplateHook | undefined;
  #runnable: (() => void) | undefined;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly licensing: LicensingService,
    private readonly packets: PacketService,
    readonly tokens: DownloadTokens,
    metrics: Metrics,
    publicBaseUrl: string,
    log: Logger,
  ) {
    metrics.counter('fleet_job_progress_ignored_total', 'job-progress messages ignored (duplicate, illegal, unknown).');
    metrics.counter('fleet_job_offers_total', 'Job offers sent to devices.');
    metrics.counter('fleet_job_executions_finished_total', 'Executions that reached a terminal state, by state.');
    const jobsLog = log.child({ component: 'jobs' });
    this.#outcomes = new JobOutcomes(store, metrics, jobsLog);
    this.#dispatcher = new JobDispatcher({ store, clock, packets, tokens, metrics, outcomes: this.#outcomes, log: jobsLog, publicBaseUrl });
  }

  /** Base URL of packet downloads in offers (`https://host:port`); set after listen when port 0. */
  get publicBaseUrl(): string {
    return this.#dispatcher.publicBaseUrl;
  }

  set publicBaseUrl(url: string) {
    this.#dispatcher.publicBaseUrl = url;
  }

  /** Channel inputs (progress reports, devices ready) received and not applied yet. */
  get pendingInputs(): number {
    return this.#dispatcher.pendingInputs;
  }

  /** Progress messages not applied, by reason (kept in memory; also in metrics). */
  get ignored(): IgnoredProgress {
    return this.#dispatcher.ignored;
  }

  /** Connects configuration templates (jobs with `templateUuid`); set once by createServices. */
  setTemplateHook(hook: JobTemplateHook): void {
    this.#templates = hook;
    this.#dispatcher.setTemplateHook(hook);
  }

  repo(scope: AccountScope): AccountJobs {
    return new AccountJobs(this.store, scope.accountId);
  }

  /** Connects the dispatcher to a control channel (once). */
  attach(port: JobChannelPort): void {
    this.#dispatcher.attach(port);
  }

  /**
   * Periodic work (timer and test-clock changes): timeouts, orphans, dynamic targets (the
   * store-wide part, when `storeWide`: one process of a cluster does it), then this process's
   * pending cancels and dispatch.
   */
  tick(storeWide = true): void {
    this.#dispatcher.tick(storeWide);
  }

  /**
   * Called whenever a job becomes runnable here (created or resumed), so that every process's
   * dispatcher is told (createServices publishes it as a `jobs-runnable` notice); set once.
   */
  onRunnable(listener: () => void): void {
    this.#runnable = listener;
  }

  /** Dispatches in the next turn of the event loop (once, however often asked). */
  dispatchSoon(): void {
    this.#dispatcher.dispatchSoon();
  }

  /** Claims and offers what the rollout limits allow now (see JobDispatcher.dispatch). */
  dispatch(): void {
    this.#dispatcher.dispatch();
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
      // One statement for the whole list (a job to every router names tens of thousands).
      const deviceUuids = [...new Set(t.deviceUuids ?? [])];
      const deviceIds = deviceUuids.length > 0 ? scope.devices.idsByUuid(deviceUuids) : new Map<string, number>();
      for (const u of deviceUuids) {
        const id = deviceIds.get(u);
        if (id === undefined) throw new AppError('SERVER_VALIDATION', `Unknown device ${u}.`);
        target.deviceIds.push(id);
        target.deviceUuids.push(u);
      }
      for (const u of new Set(t.groupUuids ?? [])) {
        const g = scope.groups.byUuid(u);
        if (!g) throw new AppError('SERVER_VALIDATION', `Unknown device group ${u}.`);
        target.groupIds.push(g.id);
        target.groupUuids.push(u);
      }
      const id = insertJob(this.store, {
        uuid,
        accountId: scope.accountId,
        name: input.name ?? (packet ? packet.name : template ? template.name : `firmware ${input.firmwareVersion}`),
        packetId: packet?.id ?? null,
        firmwareVersion: input.firmwareVersion ?? null,
        target: JSON.stringify(target),
        targetSummary: JSON.stringify({ all: target.all, groupUuids: target.groupUuids, deviceCount: target.deviceUuids.length }),
        options: JSON.stringify(options),
        state: JOB_LIFECYCLE.initial,
        createdBy,
        system,
        createdAt: now,
      });
      const job = jobById(this.store, id)!;
      if (template) this.#templates!.attach(id, template);
      const n = this.#outcomes.addTargets(job, target, now);
      new AccountEvents(this.store, scope.accountId).record({
        type: 'job.started',
        subject: uuid,
        data: { name: job.name, devices: n, system },
        at: now,
      });
      this.#outcomes.maybeFinish(job, now);
    });
    // In the next turn: the request is answered first, then the offers go out in slices (a job to
    // thousands of devices would otherwise hold its own response for the first slice).
    this.#dispatcher.dispatchSoon();
    this.#runnable?.();
    return this.repo(scope).byUuid(uuid)!;
  }

  /** Cancel: no new executions; before the commit point executions end `cancelled`, after it they finish. */
  cancel(scope: AccountScope, uuid: string): JobHead {
    const now = this.clock.now();
    const job = scope.write(() => {
      const job = this.repo(scope).byUuid(uuid);
      if (!job) throw new AppError('SERVER_NOT_FOUND');
      if (!canMove(job.state, 'cancel')) throw new AppError('SERVER_JOB_STATE');
      // In this transaction the job is still in the state just read: the move cannot lose a race.
      const cancelled = this.#outcomes.move(job, 'cancel', { finishedAt: now })!;
      this.#outcomes.devices.cancelPending(job.id);
      // Not yet offered: cancelled here and now.
      for (const e of this.#outcomes.executions.queuedOfJob(job.id)) this.#outcomes.finish(e, cancelled, { state: 'cancelled', now, errorCode: null, errorMessage: null });
      this.#outcomes.executions.requestCancel(job.id);
      new AccountEvents(this.store, scope.accountId).record({ type: 'job.cancelled', subject: uuid, at: now });
      return job;
    });
    this.#dispatcher.sendPendingCancels(job.id);
    return this.repo(scope).byUuid(uuid)!;
  }

  pause(scope: AccountScope, uuid: string): JobHead {
    return this.#move(scope, uuid, 'pause');
  }

  resume(scope: AccountScope, uuid: string): JobHead {
    const job = this.#move(scope, uuid, 'resume');
    this.dispatch();
    this.#runnable?.();
    return job;
  }

  /** A user's move of a job (pause, resume): SERVER_JOB_STATE when the job's state does not allow it. */
  #move(scope: AccountScope, uuid: string, event: JobEvent): JobHead {
    scope.write(() => {
      const job = this.repo(scope).byUuid(uuid);
      if (!job) throw new AppError('SERVER_NOT_FOUND');
      if (!canMove(job.state, event)) {
        const to = JOB_LIFECYCLE.rows[statesAllowing(event)[0]!][event];
        throw new AppError('SERVER_JOB_STATE', `Only a ${statesAllowing(event).join(' or ')} job can be made ${to}.`);
      }
      this.#outcomes.move(job, event);
    });
    return this.repo(scope).byUuid(uuid)!;
  }

  /** What a download of `executionUuid` may serve: its device and packet, while it is not terminal. */
  downloadTarget(executionUuid: string): { deviceUuid: string; packet: PacketRow } | undefined {
    return this.#outcomes.executions.downloadTarget(executionUuid);
  }

  #requireTemplates(): JobTemplateHook {
    if (!this.#templates) throw new AppError('SERVER_VALIDATION', 'Configuration templates are not available.');
    return this.#templates;
  }

  // ── progress views ───────────────────────────────────────────────────────────────────────

  /**
   * A job's counts, read from `job_counts` (kept by triggers on job_devices, job_executions and
   * devices, migration 28): a poll reads a handful of rows, not every device of the job.
   */
  counts(jobId: number) {
    const c = this.#outcomes.countBuckets(jobId);
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
    const recent = this.#outcomes.executions.finishedSince(job.id, now - RATE_WINDOW_MS);
    return {
      ...c,
      percentComplete: c.devices.total === 0 ? 100 : Math.round((c.devices.done / c.devices.total) * 1000) / 10,
      ratePerMinute: Math.round((recent / (RATE_WINDOW_MS / MINUTE)) * 100) / 100,
      ignoredProgress: ignored,
    };
  }

  /** Per-device results of a job, cursor-paged by device id. */
  deviceResults(job: JobHead, afterId: number, limit: number): DeviceResultRow[] {
    return this.#outcomes.executions.deviceResults(job.id, afterId, limit);
  }
}
