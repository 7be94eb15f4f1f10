import {
  createMessage,
  type JobExecutionState,
  type JobOfferBody,
  type JobProgressBody,
  JOB_TRANSITIONS,
  type Message,
  type MessageOf,
} from '@router-fleet/protocol';
import type { AgentConfig } from '../config.js';
import type { ConnectionProfile } from '../connection-profile.js';
import { AgentError } from '../errors.js';
import type { Installer, ProfileStore } from '../installers/installer.js';
import { JOURNAL_VERSION, type JobRecord, Journal, type TerminalJobState } from '../lifecycle/journal.js';
import { type RunResult, type SessionView, UpdateRunner } from '../lifecycle/update-runner.js';
import { REPORTED_JOB_STATE } from '../lifecycle/update-table.js';
import type { Logger } from '../logger.js';
import { PowerCut } from '../platform/faults.js';
import type { Platform } from '../platform/platform.js';
import type { Dispatcher } from 'undici';
import { JsonDocument } from '../reporting/json-store.js';

/** A finished execution, remembered so a redelivered offer is answered, not re-applied. */
export interface HistoryEntry {
  executionId: string;
  state: TerminalJobState;
  errorCode?: string;
  errorMessage?: string;
  messageId: string;
  packetSha256: string;
  packetId?: string;
  at: number;
}

/** A terminal job-progress waiting for its ack. */
export interface PendingReport {
  messageId: string;
  body: JobProgressBody;
  lastSentAt: number;
}

interface QueuedOffer {
  messageId: string;
  body: JobOfferBody;
}

export interface JobManagerDeps {
  config: AgentConfig;
  platform: Platform;
  log: Logger;
  session: SessionView & { readonly connected: boolean };
  profile(): ConnectionProfile;
  profiles: ProfileStore;
  installers: Map<string, Installer>;
  /** The connection pool for packet downloads (the transport's); default: the process-wide one. */
  downloadDispatcher?(caPem: string): Dispatcher | undefined;
  /** Sends a message now if the session is welcomed. */
  send(message: Message): boolean;
  event(kind: string, severity: 'info' | 'warning' | 'error' | 'critical', details?: Record<string, string | number | boolean | null>): void;
  /** An update transition happened (observers: tests, simulator metrics). */
  transition?: (state: string) => void;
  /** Something the status report shows changed (a job finished). */
  changed(): void;
  /** The device must reboot now (the agent stops; the owner starts it again). */
  reboot(): void;
  /** A power cut was injected (memory platform): stop at once, write nothing. */
  powerCut(error: PowerCut): void;
  /** A bug (AGENT_NO_TRANSITION…): stop. */
  fatal(error: Error): void;
}

/** Shortest chain of legal job states from `from` to `to` (excluding `from`). */
export function statePath(from: JobExecutionState, to: JobExecutionState): JobExecutionState[] {
  if (from === to) return [to];
  const previous = new Map<JobExecutionState, JobExecutionState>();
  const queue: JobExecutionState[] = [from];
  while (queue.length > 0) {
    const s = queue.shift()!;
    for (const n of JOB_TRANSITIONS[s]) {
      if (n === from || previous.has(n)) continue;
      previous.set(n, s);
      if (n === to) {
        const path: JobExecutionState[] = [to];
        for (let p = s; p !== from; p = previous.get(p)!) path.unshift(p);
        return path;
      }
      queue.push(n);
    }
  }
  return [to];
}

/**
 * Owns job executions: one runs at a time (others wait in a small persisted queue), offers are
 * idempotent by execution id, cancels are honoured before the commit point, progress is reported
 * along legal job-state transitions, and terminal results are kept and resent until acknowledged.
 */
export class JobManager {
  readonly #deps: JobManagerDeps;
  readonly #journal: Journal;
  readonly #history: JsonDocument<HistoryEntry[]>;
  readonly #reports: JsonDocument<PendingReport[]>;
  readonly #queue: JsonDocument<QueuedOffer[]>;
  readonly #stop = new AbortController();
  #runner: UpdateRunner | undefined;
  #running: Promise<void> | undefined;
  #chain: Promise<void> = Promise.resolve();
  #historyCache: HistoryEntry[] = [];

  constructor(deps: JobManagerDeps) {
    this.#deps = deps;
    const storage = deps.platform.storage;
    this.#journal = new Journal(storage);
    this.#history = new JsonDocument(storage, 'history.json', () => []);
    this.#reports = new JsonDocument(storage, 'reports.json', () => []);
    this.#queue = new JsonDocument(storage, 'queue.json', () => []);
  }

  get active(): UpdateRunner | undefined {
    return this.#runner;
  }

  /**
   * Loads the journal and resumes (or finishes) an interrupted job. Runs in the same serial chain
   * as `offer` and `cancel`: an offer that arrives while the journal is still loading (the server
   * re-sends unfinished offers on every connection) waits, and then finds the resumed runner
   * instead of starting a second run of the same job.
   */
  start(): Promise<void> {
    const run = this.#chain.then(() => this.#start());
    this.#chain = run.catch(() => {});
    return run;
  }

  async #start(): Promise<void> {
    this.#historyCache = await this.#history.get();
    await this.#reports.get();
    const loaded = await this.#journal.load();
    if (loaded.kind === 'corrupt') {
      this.#deps.log.error({ reason: loaded.reason }, 'journal unreadable');
      this.#deps.event('job.journal-corrupt', 'critical', { reason: loaded.reason, executionId: loaded.executionId ?? null });
      await this.#journal.remove();
      if (loaded.executionId) {
        await this.#finishWithout(loaded.executionId, 'failed', 'AGENT_JOURNAL_CORRUPT', 'the job journal could not be read', '', undefined);
      }
    } else if (loaded.kind === 'record') {
      const record = loaded.record;
      if (record.state !== 'done') record.resumes++;
      await this.#journal.save(record);
      this.#deps.log.info({ executionId: record.executionId, state: record.state, resumes: record.resumes }, 'resuming job');
      this.#launch(record, true);
      return;
    }
    await this.#next();
  }

  /** Stops the running job at its next safe point (it resumes on the next start). */
  async stop(): Promise<void> {
    this.#stop.abort(new AgentError('AGENT_INTERNAL', 'stopping'));
    await this.#running?.catch(() => {});
  }

  // ── inbound messages ─────────────────────────────────────────────────────────────────────

  offer(message: MessageOf<'job-offer'>): Promise<void> {
    return this.#serial(async () => {
      const body = message.body;
      const id = body.executionId;
      const done = this.#historyCache.find((h) => h.executionId === id);
      if (done) {
        this.#deps.log.info({ executionId: id, state: done.state }, 'offer for a finished execution: resending its result');
        await this.#resendFinished(done);
        return;
      }
      if (this.#runner?.record.executionId === id) {
        this.#deps.log.info({ executionId: id }, 'offer redelivered: reporting the current state');
        this.#report(this.#runner.record, undefined, true);
        return;
      }
      const queue = await this.#queue.get();
      if (queue.some((q) => q.body.executionId === id)) return;
      if (this.#runner || queue.length > 0) {
        if (queue.length >= this.#deps.config.jobQueueMax) {
          await this.#finishWithout(id, 'failed', 'AGENT_BUSY', 'too many jobs queued', body.packet.sha256, undefined);
          return;
        }
        await this.#queue.set([...queue, { messageId: message.id, body }]);
        this.#deps.log.info({ executionId: id, queued: queue.length + 1 }, 'offer queued');
        return;
      }
      await this.#begin(body);
    });
  }

  cancel(message: MessageOf<'job-cancel'>): Promise<void> {
    return this.#serial(async () => {
      const id = message.body.executionId;
      const runner = this.#runner;
      if (runner && runner.record.executionId === id) {
        if (runner.cancellable()) {
          this.#deps.log.info({ executionId: id, state: runner.state }, 'cancelling before the commit point');
          runner.cancel();
        } else {
          this.#deps.log.warn({ executionId: id, state: runner.state }, 'cancel after the commit point: finishing');
          runner.record.cancelRefused = true;
          this.#deps.send(
            createMessage(
              'error',
              {
                code: 'AGENT_CANCEL_TOO_LATE',
                message: `execution ${id} is past its commit point (${runner.state}); it finishes and reports its result`,
                retryable: false,
              },
              { id: this.#deps.platform.random.uuid(), correlationId: message.id, sentAt: this.#deps.platform.clock.now() },
            ),
          );
          this.#deps.event('job.cancel-refused', 'warning', { executionId: id, state: runner.state });
        }
        return;
      }
      const queue = await this.#queue.get();
      const queued = queue.find((q) => q.body.executionId === id);
      if (queued) {
        await this.#queue.set(queue.filter((q) => q !== queued));
        await this.#finishWithout(id, 'cancelled', 'AGENT_CANCELLED', 'cancelled while queued', queued.body.packet.sha256, undefined);
        return;
      }
      const done = this.#historyCache.find((h) => h.executionId === id);
      if (done) {
        await this.#resendFinished(done);
        return;
      }
      this.#deps.send(
        createMessage(
          'error',
          { code: 'AGENT_UNKNOWN_EXECUTION', message: `no execution ${id} on this device`, retryable: false },
          { id: this.#deps.platform.random.uuid(), correlationId: message.id, sentAt: this.#deps.platform.clock.now() },
        ),
      );
    });
  }

  /** An `ack` whose correlationId may name a terminal report. */
  async ack(correlationId: string): Promise<void> {
    const reports = await this.#reports.get();
    if (!reports.some((r) => r.messageId === correlationId)) return;
    await this.#reports.set(reports.filter((r) => r.messageId !== correlationId));
  }

  /** After a welcome: resend unacknowledged results and the active job's state. */
  async welcomed(): Promise<void> {
    await this.#resendPending(true);
    if (this.#runner) this.#report(this.#runner.record, undefined, true);
  }

  /** Periodic: resend results not acknowledged within reportResendSec. */
  async tick(): Promise<void> {
    await this.#resendPending(false);
  }

  async pendingReports(): Promise<readonly PendingReport[]> {
    return this.#reports.get();
  }

  history(): readonly HistoryEntry[] {
    return this.#historyCache;
  }

  // ── internals ────────────────────────────────────────────────────────────────────────────

  async #begin(offer: JobOfferBody): Promise<void> {
    const record: JobRecord = {
      v: JOURNAL_VERSION,
      executionId: offer.executionId,
      jobId: offer.jobId,
      offer,
      state: 'offered',
      transitions: 0,
      resumes: 0,
      enteredAt: this.#deps.platform.clock.now(),
      lastReported: 'offered',
    };
    await this.#journal.save(record);
    this.#deps.log.info({ executionId: offer.executionId, jobId: offer.jobId, size: offer.packet.size }, 'job accepted');
    this.#launch(record, false);
  }

  #launch(record: JobRecord, resumed: boolean): void {
    const deps = this.#deps;
    const runner = new UpdateRunner(
      {
        config: deps.config,
        platform: deps.platform,
        log: deps.log,
        journal: this.#journal,
        session: deps.session,
        profile: deps.profile,
        profiles: deps.profiles,
        installers: deps.installers,
        downloadDispatcher: (caPem) => deps.downloadDispatcher?.(caPem),
        alreadyInstalled: (p) =>
          this.#historyCache.some(
            (h) =>
              h.state === 'succeeded'
              && h.executionId !== record.executionId
              && ((p.sha256 !== undefined && h.packetSha256 === p.sha256) || (p.packetId !== undefined && h.packetId === p.packetId)),
          ),
        progress: (r, extra) => this.#report(r, extra),
        transition: (state) => deps.transition?.(state),
        event: deps.event,
      },
      record,
      this.#stop.signal,
      resumed,
    );
    this.#runner = runner;
    if (resumed) this.#report(record, undefined, true);
    this.#running = runner.run().then(
      (result) => this.#after(runner, result),
      (error: unknown) => {
        this.#runner = undefined;
        if (error instanceof PowerCut) deps.powerCut(error);
        else deps.fatal(error as Error);
      },
    );
  }

  async #after(runner: UpdateRunner, result: RunResult): Promise<void> {
    if (result === 'reboot') {
      this.#deps.reboot();
      return;
    }
    if (result === 'halted') return;
    try {
      await this.#finalize(runner.record);
    } catch (error) {
      if (error instanceof PowerCut) {
        this.#deps.powerCut(error);
        return;
      }
      this.#deps.fatal(error as Error);
      return;
    }
    this.#runner = undefined;
    this.#deps.changed();
    await this.#serial(() => this.#next());
  }

  /** Terminal: result persisted for resending, history updated, staging cleaned, journal removed. */
  async #finalize(record: JobRecord): Promise<void> {
    const { platform, log } = this.#deps;
    const result = record.result ?? { state: 'failed' as const, errorCode: 'AGENT_INTERNAL' };
    const messageId = record.terminalMessageId ?? platform.random.uuid();
    await platform.staging.remove(`job-${record.executionId.replace(/[^A-Za-z0-9._-]/g, '_')}`);
    await this.#recordResult(record.executionId, result, messageId, record.offer.packet.sha256, record.packet?.packetId, record.lastReported);
    this.#deps.event(`job.${result.state}`, result.state === 'succeeded' ? 'info' : 'error', {
      executionId: record.executionId,
      code: result.errorCode ?? null,
      ...(record.cancelRefused ? { cancelRefused: true } : {}),
    });
    await this.#journal.remove();
    log.info({ executionId: record.executionId, state: result.state, code: result.errorCode }, 'job finished');
  }

  async #finishWithout(
    executionId: string,
    state: TerminalJobState,
    errorCode: string,
    errorMessage: string,
    packetSha256: string,
    packetId: string | undefined,
  ): Promise<void> {
    await this.#recordResult(executionId, { state, errorCode, errorMessage }, this.#deps.platform.random.uuid(), packetSha256, packetId, 'offered');
  }

  async #recordResult(
    executionId: string,
    result: NonNullable<JobRecord['result']>,
    messageId: string,
    packetSha256: string,
    packetId: string | undefined,
    lastReported: JobExecutionState | undefined,
  ): Promise<void> {
    const body: JobProgressBody = {
      executionId,
      state: result.state,
      ...(result.errorCode ? { errorCode: result.errorCode } : {}),
      ...(result.errorMessage ? { errorMessage: result.errorMessage } : {}),
    };
    const reports = await this.#reports.get();
    if (!reports.some((r) => r.messageId === messageId)) {
      await this.#reports.set([...reports, { messageId, body, lastSentAt: 0 }]);
    }
    if (!this.#historyCache.some((h) => h.executionId === executionId)) {
      const entry: HistoryEntry = {
        executionId,
        state: result.state,
        ...(result.errorCode ? { errorCode: result.errorCode } : {}),
        ...(result.errorMessage ? { errorMessage: result.errorMessage } : {}),
        messageId,
        packetSha256,
        ...(packetId ? { packetId } : {}),
        at: this.#deps.platform.clock.now(),
      };
      this.#historyCache = [...this.#historyCache, entry].slice(-this.#deps.config.historyMax);
      await this.#history.set(this.#historyCache);
    }
    // Intermediate states first, so the server sees a legal sequence.
    for (const s of statePath(lastReported ?? 'offered', result.state).slice(0, -1)) {
      this.#sendProgress({ executionId, state: s });
    }
    await this.#resendPending(true, messageId);
  }

  async #resendFinished(entry: HistoryEntry): Promise<void> {
    const reports = await this.#reports.get();
    const pending = reports.find((r) => r.messageId === entry.messageId);
    const body: JobProgressBody = pending?.body ?? {
      executionId: entry.executionId,
      state: entry.state,
      ...(entry.errorCode ? { errorCode: entry.errorCode } : {}),
      ...(entry.errorMessage ? { errorMessage: entry.errorMessage } : {}),
    };
    if (!pending) await this.#reports.set([...reports, { messageId: entry.messageId, body, lastSentAt: 0 }]);
    await this.#resendPending(true, entry.messageId);
  }

  async #resendPending(force: boolean, only?: string): Promise<void> {
    if (!this.#deps.session.connected) return;
    const reports = await this.#reports.get();
    const now = this.#deps.platform.clock.now();
    let changed = false;
    for (const report of reports) {
      if (only !== undefined && report.messageId !== only) continue;
      if (!force && now - report.lastSentAt < this.#deps.config.reportResendSec * 1000) continue;
      const sent = this.#deps.send(
        createMessage('job-progress', report.body, { id: report.messageId, sentAt: now }),
      );
      if (sent) {
        report.lastSentAt = now;
        changed = true;
      }
    }
    // lastSentAt only paces resends: keep it in memory, persisting it would cost a write per resend.
    void changed;
  }

  /**
   * Reports the record's current job state, filling in skipped legal states. A state counts as
   * reported (`lastReported`) only once it went out on a welcomed session: states reached while
   * offline are sent, in order, by the next report or by the welcome after reconnecting. (A state
   * handed to a socket the peer had already lost is resent as the current state after the welcome;
   * the server accepts a state reachable from the one it holds.)
   */
  #report(record: JobRecord, extra?: { bytesDone?: number }, force = false): void {
    // A finished record's states and result go out through #finalize (path from lastReported, then the
    // terminal report from the outbox). Re-reporting its last state here could land after the terminal
    // one (a welcome between #finalize and the runner being cleared) and break the state sequence.
    if (record.state === 'done') return;
    const target = REPORTED_JOB_STATE[record.state];
    const last = record.lastReported ?? 'offered';
    if (target === undefined) {
      if (force) this.#sendProgress({ executionId: record.executionId, state: last });
      return;
    }
    const path = statePath(last, target);
    for (const state of path) {
      const body: JobProgressBody = { executionId: record.executionId, state };
      if (state === 'downloading') {
        const done = extra?.bytesDone ?? record.downloadOffset ?? 0;
        body.bytesDone = done;
        body.bytesTotal = record.offer.packet.size;
        body.percent = Math.min(100, Math.round((done / record.offer.packet.size) * 1000) / 10);
      }
      if (!this.#sendProgress(body)) return;
      record.lastReported = state;
    }
  }

  /** Sends a job-progress now; false when there is no welcomed session to send it on. */
  #sendProgress(body: JobProgressBody): boolean {
    if (!this.#deps.session.connected) return false;
    return this.#deps.send(createMessage('job-progress', body, { id: this.#deps.platform.random.uuid(), sentAt: this.#deps.platform.clock.now() }));
  }

  async #next(): Promise<void> {
    if (this.#runner || this.#stop.signal.aborted) return;
    const queue = await this.#queue.get();
    const first = queue[0];
    if (!first) return;
    await this.#queue.set(queue.slice(1));
    await this.#begin(first.body);
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(fn);
    this.#chain = run.catch((error: unknown) => {
      if (error instanceof PowerCut) this.#deps.powerCut(error);
      else this.#deps.log.error({ err: (error as Error).message }, 'job manager error');
    });
    return this.#chain;
  }
}
