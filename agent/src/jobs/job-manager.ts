import {
  createMessage,
  type JobOfferBody,
  type Message,
  type MessageOf,
} from '@router-fleet/protocol';
import type { AgentConfig } from '../config.js';
import type { ConnectionProfile } from '../connection-profile.js';
import { AgentError } from '../errors.js';
import type { Installer, ProfileStore } from '../installers/installer.js';
import { JOURNAL_VERSION, type JobRecord, Journal, type TerminalJobState } from '../lifecycle/journal.js';
import type { RunResult, SessionView, UpdateRunner } from '../lifecycle/update-runner.js';
import type { Logger } from '../logger.js';
import { PowerCut } from '../platform/faults.js';
import type { Platform } from '../platform/platform.js';
import type { Dispatcher } from 'undici';
import { JsonDocument } from '../reporting/json-store.js';
import { type JobResult, JobReporter, type PendingReport } from './job-reporter.js';

export type { PendingReport } from './job-reporter.js';

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

type UpdateCode = [typeof import('../lifecycle/update-runner.js'), typeof import('../installers/registry.js')];

/** The update code, imported once per process (see `loadUpdateCode`). */
let updateCode: Promise<UpdateCode> | undefined;

/**
 * The code a job needs (update runner, downloads, packet verification, installers), imported once
 * per process: an agent imports it when its first job arrives (an idle agent, what a router runs
 * nearly all the time, never holds it), and every later job takes the same modules without another
 * `import()` (each one a module-map lookup and a promise: 0.1 ms of a simulator process's time per
 * offer, in the middle of a burst). A process that runs many agents (the simulator) calls this at
 * start, so that the first job of the fleet does not hold every one of its routers' offers behind
 * the one import of that code (145–300 ms on a loaded 2-core machine).
 */
export function loadUpdateCode(): Promise<UpdateCode> {
  return (updateCode ??= Promise.all([import('../lifecycle/update-runner.js'), import('../installers/registry.js')]));
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
  /**
   * The installers by FILETYPE, or a loader of them called when the first job runs (an idle agent
   * then never loads installer code).
   */
  installers: Map<string, Installer> | (() => Promise<Map<string, Installer>>);
  /** The connection pool for packet downloads (the transport's); default: the process-wide one. */
  downloadDispatcher?(caPem: string): Dispatcher | undefined;
  /** Resolves when a download may start, or when `signal` aborts (the transport's; default: at once). */
  downloadTurn?(signal: AbortSignal): Promise<void>;
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

/**
 * Owns job executions: one runs at a time (others wait in a small persisted queue), offers are
 * idempotent by execution id, cancels are honoured before the commit point, and what the server
 * hears of them (one legal sequence of states, one result per execution) is the `JobReporter`'s.
 */
export class JobManager {
  readonly #deps: JobManagerDeps;
  readonly #journal: Journal;
  readonly #history: JsonDocument<HistoryEntry[]>;
  readonly #reporter: JobReporter;
  readonly #queue: JsonDocument<QueuedOffer[]>;
  readonly #stop = new AbortController();
  #runner: UpdateRunner | undefined;
  #running: Promise<void> | undefined;
  #chain: Promise<void> = Promise.resolve();
  #historyCache: HistoryEntry[] = [];
  #installers: Promise<Map<string, Installer>> | undefined;

  constructor(deps: JobManagerDeps) {
    this.#deps = deps;
    const storage = deps.platform.storage;
    this.#journal = new Journal(storage);
    this.#history = new JsonDocument(storage, 'history.json', () => []);
    this.#reporter = new JobReporter({
      config: deps.config,
      platform: deps.platform,
      log: deps.log,
      session: deps.session,
      send: (message) => deps.send(message),
      journal: (record) => this.#journal.save(record),
    });
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
    await this.#reporter.pending();
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
      await this.#launch(record, true);
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
        await this.#reporter.current(this.#runner.record);
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
  ack(correlationId: string): Promise<void> {
    return this.#reporter.ack(correlationId);
  }

  /** After a welcome: resend unacknowledged results and the active job's state. */
  welcomed(): Promise<void> {
    return this.#reporter.welcomed(() => this.#runner?.record);
  }

  /** Periodic: resend results not acknowledged within reportResendSec. */
  tick(): Promise<void> {
    return this.#reporter.tick();
  }

  pendingReports(): Promise<readonly PendingReport[]> {
    return this.#reporter.pending();
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
    await this.#launch(record, false);
  }

  /**
   * Starts the runner of `record`. The update code (runner, downloads, packet verification,
   * installers) is loaded here, when a job arrives, not when the agent starts: an idle agent, which
   * is what a router runs nearly all the time, does not hold it in memory.
   */
  async #launch(record: JobRecord, resumed: boolean): Promise<void> {
    const deps = this.#deps;
    const installers = typeof deps.installers === 'function' ? await (this.#installers ??= deps.installers()) : deps.installers;
    const [{ UpdateRunner }] = await loadUpdateCode();
    const runner = new UpdateRunner(
      {
        config: deps.config,
        platform: deps.platform,
        log: deps.log,
        journal: this.#journal,
        session: deps.session,
        profile: deps.profile,
        profiles: deps.profiles,
        installers,
        downloadDispatcher: (caPem) => deps.downloadDispatcher?.(caPem),
        ...(deps.downloadTurn ? { downloadTurn: deps.downloadTurn } : {}),
        alreadyInstalled: (p) =>
          this.#historyCache.some(
            (h) =>
              h.state === 'succeeded'
              && h.executionId !== record.executionId
              && ((p.sha256 !== undefined && h.packetSha256 === p.sha256) || (p.packetId !== undefined && h.packetId === p.packetId)),
          ),
        progress: (r, extra) => this.#reporter.progress(r, extra),
        transition: (state) => deps.transition?.(state),
        event: deps.event,
      },
      record,
      this.#stop.signal,
      resumed,
    );
    this.#runner = runner;
    if (resumed) {
      void this.#reporter.current(record).catch((error: unknown) => {
        if (error instanceof PowerCut) deps.powerCut(error);
        else deps.log.warn({ err: (error as Error).message }, 'journaling the reported job state failed (the next save carries it)');
      });
    }
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
    result: JobResult,
    messageId: string,
    packetSha256: string,
    packetId: string | undefined,
    lastReported: JobRecord['lastReported'],
  ): Promise<void> {
    await this.#reporter.record(executionId, result, messageId, lastReported);
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
    await this.#reporter.send(messageId);
  }

  async #resendFinished(entry: HistoryEntry): Promise<void> {
    await this.#reporter.resendResult(entry.messageId, {
      executionId: entry.executionId,
      state: entry.state,
      ...(entry.errorCode ? { errorCode: entry.errorCode } : {}),
      ...(entry.errorMessage ? { errorMessage: entry.errorMessage } : {}),
    });
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
