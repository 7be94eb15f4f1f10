import {
  createMessage,
  type JobExecutionState,
  type JobProgressBody,
  jobStatePath,
  type Message,
} from '@router-fleet/protocol';
import type { AgentConfig } from '../config.js';
import type { JobRecord, TerminalJobState } from '../lifecycle/journal.js';
import { REPORTED_JOB_STATE } from '../lifecycle/update-table.js';
import type { Logger } from '../logger.js';
import type { Platform } from '../platform/platform.js';
import { JsonDocument } from '../reporting/json-store.js';

/** A terminal job-progress waiting for its ack. */
export interface PendingReport {
  messageId: string;
  body: JobProgressBody;
  lastSentAt: number;
  /**
   * The last state the server was sent before this result, while the legal chain from it to the
   * result has not gone out yet. The chain is sent, in order, right before the result on a
   * welcomed session, and then dropped (a result finished offline, or just before a power cut,
   * would otherwise reach the server straight after a state it may not follow).
   */
  chainFrom?: JobExecutionState;
}

/** A terminal result to report: its state and, for failures, the catalogue code and message. */
export interface JobResult {
  state: TerminalJobState;
  errorCode?: string;
  errorMessage?: string;
}

export interface JobReporterDeps {
  config: Pick<AgentConfig, 'reportResendSec'>;
  platform: Pick<Platform, 'clock' | 'random' | 'storage'>;
  log: Logger;
  session: { readonly connected: boolean };
  /** Hands a message to the session; false when there is no welcomed session to send it on. */
  send(message: Message): boolean;
  /** Makes the active job's record durable (its journal), `lastReported` included. */
  journal(record: JobRecord): Promise<void>;
}

/**
 * The only sender of `job-progress` (the job manager and the update runner tell it what happened;
 * it decides what the server hears). Its invariant: for every execution the server hears one legal
 * sequence of job states and exactly one terminal result.
 *
 * - Progress: the state the server was last sent is `record.lastReported`, journaled with the job
 *   (by the runner after its own reports, by `current` after the others) so that a restart
 *   continues from it. A state counts as reported only once a welcomed session took it; states
 *   skipped meanwhile (offline, or jumped over after a restart) are sent first, along the shortest
 *   legal chain (`jobStatePath`).
 * - Results: persisted in `reports.json` before they are first sent, resent (same message id)
 *   after every welcome and every `reportResendSec` until the server acknowledges them, each
 *   preceded once by the chain from the execution's last reported state.
 */
export class JobReporter {
  readonly #deps: JobReporterDeps;
  readonly #document: JsonDocument<PendingReport[]>;
  /** The outbox, read once; every change is made here synchronously and then written in order. */
  #outbox: Promise<PendingReport[]> | undefined;
  #writes: Promise<void> = Promise.resolve();

  constructor(deps: JobReporterDeps) {
    this.#deps = deps;
    this.#document = new JsonDocument(deps.platform.storage, 'reports.json', () => []);
  }

  /** Results not acknowledged yet. */
  async pending(): Promise<readonly PendingReport[]> {
    return this.#reports();
  }

  /**
   * The runner's report of the record's current job state, after the states skipped since
   * `record.lastReported` (which advances with every state that went out; the runner journals it).
   * `force`: also repeat the last state when the update state reports none of its own. A finished
   * record reports nothing here: its states and result go out through `record`/`send` (re-reporting
   * its last state could land after the result).
   */
  progress(record: JobRecord, extra?: { bytesDone?: number }, force = false): void {
    if (record.state === 'done') return;
    const target = REPORTED_JOB_STATE[record.state];
    const last = record.lastReported ?? 'offered';
    if (target === undefined) {
      if (force) this.#send({ executionId: record.executionId, state: last });
      return;
    }
    for (const state of jobStatePath(last, target)) {
      const body: JobProgressBody = { executionId: record.executionId, state };
      if (state === 'downloading') {
        const done = extra?.bytesDone ?? record.downloadOffset ?? 0;
        body.bytesDone = done;
        body.bytesTotal = record.offer.packet.size;
        body.percent = Math.min(100, Math.round((done / record.offer.packet.size) * 1000) / 10);
      }
      if (!this.#send(body)) return;
      record.lastReported = state;
    }
  }

  /**
   * Where the active job is, asked from outside the runner (a welcome, a redelivered offer, a
   * resumed job): its state, after the skipped ones. What went out is journaled before this
   * returns, and a save the runner is waiting for includes it: otherwise a power cut at the
   * runner's next step would leave the journal behind the server, and the restarted agent would
   * send the same states again, a step backwards.
   */
  async current(record: JobRecord): Promise<void> {
    const before = record.lastReported;
    this.progress(record, undefined, true);
    if (record.lastReported !== before) await this.#deps.journal(record);
  }

  /**
   * Puts an execution's result into the outbox, durably, before anything of it is sent (`send`
   * sends it). Recording the same message id again changes nothing.
   */
  async record(executionId: string, result: JobResult, messageId: string, lastReported: JobExecutionState | undefined): Promise<void> {
    const reports = await this.#reports();
    if (reports.some((r) => r.messageId === messageId)) return;
    const body: JobProgressBody = {
      executionId,
      state: result.state,
      ...(result.errorCode ? { errorCode: result.errorCode } : {}),
      ...(result.errorMessage ? { errorMessage: result.errorMessage } : {}),
    };
    const chainFrom = lastReported ?? 'offered';
    reports.push({ messageId, body, lastSentAt: 0, ...(jobStatePath(chainFrom, body.state).length > 1 ? { chainFrom } : {}) });
    await this.#save();
  }

  /** Sends a recorded result now (after its chain) if a welcomed session is up; else the next welcome does. */
  async send(messageId: string): Promise<void> {
    await this.#resend(true, messageId);
  }

  /**
   * Sends a finished execution's result again (a redelivered offer or cancel asks for it), putting
   * it back into the outbox (`body`) if it was acknowledged already.
   */
  async resendResult(messageId: string, body: JobProgressBody): Promise<void> {
    const reports = await this.#reports();
    if (!reports.some((r) => r.messageId === messageId)) {
      reports.push({ messageId, body, lastSentAt: 0 });
      await this.#save();
    }
    await this.#resend(true, messageId);
  }

  /** After a welcome: every unacknowledged result, then the active execution's state. */
  async welcomed(active: () => JobRecord | undefined): Promise<void> {
    await this.#resend(true);
    const record = active();
    if (record) await this.current(record);
  }

  /** Periodic: resends results not acknowledged within `reportResendSec`. */
  async tick(): Promise<void> {
    await this.#resend(false);
  }

  /** An `ack` whose correlationId may name a result: it is not sent again. */
  async ack(correlationId: string): Promise<void> {
    const reports = await this.#reports();
    const index = reports.findIndex((r) => r.messageId === correlationId);
    if (index < 0) return;
    reports.splice(index, 1);
    await this.#save();
  }

  // ── internals ────────────────────────────────────────────────────────────────────────────

  async #resend(force: boolean, only?: string): Promise<void> {
    if (!this.#deps.session.connected) return;
    const reports = await this.#reports();
    const now = this.#deps.platform.clock.now();
    let chained = false;
    for (const report of [...reports]) {
      if (only !== undefined && report.messageId !== only) continue;
      if (!force && now - report.lastSentAt < this.#deps.config.reportResendSec * 1000) continue;
      if (report.chainFrom !== undefined) {
        const chain = jobStatePath(report.chainFrom, report.body.state).slice(0, -1);
        const refused = chain.findIndex((state) => !this.#send({ executionId: report.body.executionId, state }));
        if (refused >= 0) {
          // The states before the refused one went out: the chain continues from the last of them.
          if (refused > 0) {
            report.chainFrom = chain[refused - 1];
            chained = true;
          }
          continue;
        }
        this.#deps.log.debug({ executionId: report.body.executionId, chain }, 'states skipped before the result sent first');
        delete report.chainFrom;
        chained = true;
      }
      const sent = this.#deps.send(createMessage('job-progress', report.body, { id: report.messageId, sentAt: now }));
      // lastSentAt only paces resends: kept in memory, persisting it would cost a write per resend.
      if (sent) report.lastSentAt = now;
    }
    // A chain goes out once: remembered durably, so a restart does not send it after the result.
    if (chained) await this.#save();
  }

  /** Sends one intermediate job-progress now; false when there is no welcomed session to send it on. */
  #send(body: JobProgressBody): boolean {
    if (!this.#deps.session.connected) return false;
    const { clock, random } = this.#deps.platform;
    return this.#deps.send(createMessage('job-progress', body, { id: random.uuid(), sentAt: clock.now() }));
  }

  #reports(): Promise<PendingReport[]> {
    this.#outbox ??= this.#document.get().then((stored) => [...stored]);
    return this.#outbox;
  }

  /** Writes the outbox as it is now, after the writes queued before (so the last one wins). */
  #save(): Promise<void> {
    const write = this.#writes.then(async () => {
      const reports = await this.#reports();
      await this.#document.set(reports.map((r) => ({ ...r })));
    });
    // A failed write is the caller's error (it awaits `write`); the next write still runs.
    this.#writes = write.catch(() => {});
    return write;
  }
}
