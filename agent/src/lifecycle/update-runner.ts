import { isProtocolError, type ProtocolError } from '@router-fleet/protocol';
import { type ReadPacketResult, readPacket } from '../packet-api.js';
import type { AgentConfig } from '../config.js';
import type { ConnectionProfile } from '../connection-profile.js';
import { AgentError, type AgentErrorCode, toAgentError } from '../errors.js';
import type { InstallContext, Installer, ProfileStore } from '../installers/installer.js';
import { downloadPacket, httpDownloadSource } from '../jobs/download.js';
import { collect, tarMember, verifiedStream } from '../jobs/payload.js';
import type { Logger } from '../logger.js';
import { sleep } from '../platform/clock.js';
import type { Dispatcher } from 'undici';
import { PowerCut } from '../platform/faults.js';
import type { Platform } from '../platform/platform.js';
import { runningFirmwareVersion } from '../reporting/status.js';
import { HeadCheck, type HeadOptions } from './head-check.js';
import type { JobRecord, Journal, SectionRecord, TerminalJobState } from './journal.js';
import { journaledStep, type SectionStep, type StepEnd } from './phase-journal.js';
import { nextState } from './table.js';
import { CANCELLABLE_UPDATE_STATES, UPDATE_TABLE, type UpdateOutcome, type UpdateState } from './update-table.js';

/** What the runner needs from the session (health check, re-provisioning). */
export interface SessionView {
  readonly state: string;
  readonly epoch: number;
  /**
   * Welcomes of this process that rejected the device for want of a licence (authenticated, no
   * seat): proof that the device reached the server, which the health check accepts.
   */
  readonly licensingRejections?: number;
  roundTrip(timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  changed(timeoutMs: number, signal?: AbortSignal): Promise<void>;
  reconnect(): void;
}

export interface UpdateDeps {
  config: AgentConfig;
  platform: Platform;
  log: Logger;
  journal: Journal;
  session: SessionView;
  profile(): ConnectionProfile;
  profiles: ProfileStore;
  installers: Map<string, Installer>;
  /** The connection pool for packet downloads (the transport's); default: the process-wide one. */
  downloadDispatcher?(caPem: string): Dispatcher | undefined;
  /** Resolves when a download may start, or when `signal` aborts (the transport's; default: at once). */
  downloadTurn?(signal: AbortSignal): Promise<void>;
  /** Whether a packet (by SHA-256 of the file, or PACKET_ID) was installed by an earlier job. */
  alreadyInstalled(packet: { sha256?: string; packetId?: string }): boolean;
  /** Reports the record's current state (progress); `percent`/bytes while downloading. */
  progress(record: JobRecord, extra?: { bytesDone?: number }): void;
  /** Called after every journaled transition. */
  transition?(state: UpdateState): void;
  event(kind: string, severity: 'info' | 'warning' | 'error' | 'critical', details?: Record<string, string | number | boolean | null>): void;
}

/** A handler's report: an outcome from the update table's list (the table picks the successor). */
type StepResult = { outcome: UpdateOutcome; error?: AgentError };
/** This process life ends inside the state: the agent stops or reboots, and the job resumes from the journal. */
type Halt = { halt: 'halted' | 'reboot' };
type HandlerResult = StepResult | Halt;

const HALTED: Halt = { halt: 'halted' };

/** What `run` ended with: the job is done, or the agent is stopping or rebooting (resume later). */
export type RunResult = 'done' | 'halted' | 'reboot';

const TERMINAL_OF: Partial<Record<UpdateOutcome, TerminalJobState>> = {
  ok: 'succeeded',
  'already-installed': 'succeeded',
  failed: 'failed',
  rejected: 'rejected',
  cancelled: 'cancelled',
  'timed-out': 'timed-out',
};

const SECURITY_CODES = new Set([
  'PROTO_PACKET_SIGNATURE_MISSING',
  'PROTO_PACKET_SIGNATURE_INVALID',
  'PROTO_PACKET_SIGNER_UNTRUSTED',
  'PROTO_PACKET_SIGNER_EXPIRED',
]);

const fail = (code: AgentErrorCode, message?: string) => ({
  outcome: 'failed' as const,
  error: new AgentError(code, message),
});

/**
 * The one place where the runner recognises a power cut: every catch block that turns an error
 * into a step's result (or a log line) takes the error through here. A power cut is not a failure
 * of the step but the end of this process life, and nothing more may be written: on the emulated
 * platform it is SIGKILL and never reaches any catch block; on the memory platform it is a thrown
 * `PowerCut`, passed on unchanged to the job manager, which stops the agent as a power loss. Making
 * it unreachable instead (a never-settling promise) would leave the job manager waiting forever on
 * the runner when the agent stops.
 */
function stepError(error: unknown, fallback: AgentErrorCode): AgentError {
  if (error instanceof PowerCut) throw error;
  return toAgentError(error, fallback);
}

function protocolRejection(error: ProtocolError): AgentError {
  return AgentError.withCode(error.code, `${error.message}${error.entry ? ` (${error.entry})` : ''}`);
}

/**
 * Runs one job execution through UPDATE_TABLE. Each handler reports an outcome; the table picks the
 * successor; the record is journaled before every transition and before every side effect inside a
 * handler, so that `run` can be called again on a record loaded after a restart (`resumed`).
 */
export class UpdateRunner {
  readonly record: JobRecord;
  readonly #deps: UpdateDeps;
  /**
   * A cancel was asked for. A flag, and the controller behind `#cancelSignal` made only when a step
   * needs a signal: creating an AbortSignal (an EventTarget) for every offer was a visible part of a
   * simulator process's time while a fleet's offers arrived, and most jobs are never cancelled.
   */
  #cancelled = false;
  #cancel: AbortController | undefined;
  readonly #stop: AbortSignal;
  /** The installers by FILETYPE, in the platform's decorators (fault behaviours on test platforms). */
  readonly #installers: Map<string, Installer>;
  #resumed: boolean;
  /**
   * One handler per state of UPDATE_TABLE; each reports an outcome and never names its successor.
   * A switch rather than a table of closures built per runner (one runner per offer).
   */
  #handle(state: UpdateState): Promise<HandlerResult> {
    switch (state) {
      case 'offered':
        return this.#offered();
      case 'downloading':
        return this.#downloading();
      case 'verifying':
        return this.#verifying();
      case 'waiting':
        return this.#waiting();
      case 'installing':
        return this.#installing();
      case 'rebooting':
        return this.#rebootingState();
      case 'health-check':
        return this.#healthCheck();
      case 'committing':
        return this.#committing();
      case 'rolling-back':
        return this.#rollingBack();
      case 'done':
        return Promise.reject(new AgentError('AGENT_INTERNAL', 'done has no handler'));
    }
  }

  constructor(deps: UpdateDeps, record: JobRecord, stop: AbortSignal, resumed: boolean) {
    this.#deps = deps;
    this.record = record;
    this.#stop = stop;
    this.#resumed = resumed;
    const decorate = deps.platform.decorate;
    this.#installers = decorate ? new Map([...deps.installers].map(([type, installer]) => [type, decorate.installer(installer)])) : deps.installers;
    // Session epochs count welcomes of this process: after a restart every session is a new one.
    if (resumed && record.health) {
      record.health.epoch = -1;
      record.health.rejections = 0;
    }
    if (resumed && record.installEpoch !== undefined) record.installEpoch = -1;
  }

  get state(): UpdateState {
    return this.record.state;
  }

  /** Whether a cancel can still abort the job (before the commit point). */
  cancellable(): boolean {
    return CANCELLABLE_UPDATE_STATES.includes(this.record.state);
  }

  /** Asks a cancellable job to abort. */
  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#cancel?.abort(new AgentError('AGENT_CANCELLED'));
  }

  get cancelRequested(): boolean {
    return this.#cancelled;
  }

  /** Aborts on cancel (already aborted when the cancel came first). */
  #cancelSignal(): AbortSignal {
    if (!this.#cancel) {
      this.#cancel = new AbortController();
      if (this.#cancelled) this.#cancel.abort(new AgentError('AGENT_CANCELLED'));
    }
    return this.#cancel.signal;
  }

  async run(): Promise<RunResult> {
    const r = this.record;
    const { journal, platform, config, log } = this.#deps;
    while (r.state !== 'done') {
      if (this.#stop.aborted) return 'halted';
      await platform.faults.point(`update:${r.state}`, this.#stop);
      if (this.#stop.aborted) return 'halted';
      let result: HandlerResult;
      if (r.transitions >= config.maxTransitions || r.resumes > config.maxResumes) {
        result = fail('AGENT_TRANSITION_LOOP', `${r.transitions} transitions, ${r.resumes} restarts`);
      } else {
        try {
          result = await this.#handle(r.state);
        } catch (error) {
          const e = stepError(error, 'AGENT_INSTALL_FAILED');
          if (this.#stop.aborted) return 'halted';
          result = { outcome: 'failed', error: e };
        }
      }
      this.#resumed = false;
      if ('halt' in result) return result.halt;
      const from = r.state;
      const to = nextState(UPDATE_TABLE, from, result.outcome);
      if (result.error && !r.result) {
        r.result = {
          state: TERMINAL_OF[result.outcome] ?? 'failed',
          errorCode: result.error.code.slice(0, 64),
          errorMessage: result.error.message.slice(0, 1024),
        };
      }
      r.transitions++;
      r.state = to;
      r.enteredAt = platform.clock.now();
      if (to === 'done') {
        r.result ??= { state: TERMINAL_OF[result.outcome] ?? 'failed' };
        r.terminalMessageId ??= platform.random.uuid();
      }
      log.info(
        { executionId: r.executionId, from, outcome: result.outcome, to, ...(result.error ? { code: result.error.code } : {}) },
        'update transition',
      );
      await journal.save(r);
      this.#deps.transition?.(to);
      if (to !== 'done') {
        const reported = r.lastReported;
        this.#deps.progress(r);
        // What the server was told is part of where the job stands: a restart continues from it.
        if (r.lastReported !== reported) await journal.save(r);
      }
    }
    await platform.faults.point('update:done', this.#stop);
    if (this.#stop.aborted) return 'halted';
    await this.#cleanup();
    return 'done';
  }

  /** Every installer's cleanup step, whatever the result (idempotent; failures only logged). */
  async #cleanup(): Promise<void> {
    for (const section of this.record.packet?.sections ?? []) {
      try {
        await this.#installers.get(section.fileType)?.cleanup(this.#context(section));
      } catch (error) {
        this.#deps.log.warn({ section: section.index, err: stepError(error, 'AGENT_INTERNAL').message }, 'cleanup failed');
      }
    }
  }

  // ── helpers ─────────────────────────────────────────────────────────────────────────────

  get #dir(): string {
    return `job-${this.record.executionId.replace(/[^A-Za-z0-9._-]/g, '_')}`;
  }

  get #packetName(): string {
    return `${this.#dir}/packet.tar`;
  }

  #now(): number {
    return this.#deps.platform.clock.now();
  }

  #beforeCommitChecks(): StepResult | undefined {
    if (this.#cancelled) return { outcome: 'cancelled', error: new AgentError('AGENT_CANCELLED') };
    if (this.#now() > this.record.offer.deadline) return { outcome: 'timed-out', error: new AgentError('AGENT_DEADLINE_EXCEEDED') };
    return undefined;
  }

  /** A signal that fires on cancel, stop or the offer deadline. */
  #jobSignal(): { signal: AbortSignal; dispose(): void } {
    const deadline = new AbortController();
    const timer = this.#deps.platform.clock.setTimer(Math.max(0, this.record.offer.deadline - this.#now()), () =>
      deadline.abort(new AgentError('AGENT_DEADLINE_EXCEEDED')),
    );
    return { signal: AbortSignal.any([this.#cancelSignal(), this.#stop, deadline.signal]), dispose: () => timer.cancel() };
  }

  #aborted(error: unknown): HandlerResult | undefined {
    if (this.#stop.aborted) return HALTED;
    if (this.#cancelled) return { outcome: 'cancelled', error: new AgentError('AGENT_CANCELLED') };
    if (error instanceof AgentError && error.code === 'AGENT_DEADLINE_EXCEEDED') return { outcome: 'timed-out', error };
    return undefined;
  }

  #context(section: SectionRecord): InstallContext {
    const deps = this.#deps;
    const staging = deps.platform.staging;
    const extracted = `${this.#dir}/payload/${section.fileName}`;
    const raw = () =>
      staging.localPath(this.#packetName) !== undefined ? staging.read(extracted) : tarMember(staging.read(this.#packetName), section.fileName);
    const payload = () => verifiedStream(raw(), section.sha256, section.size);
    return {
      platform: deps.platform,
      log: deps.log,
      executionId: this.record.executionId,
      section,
      save: () => deps.journal.save(this.record),
      payload,
      readPayload: (max = 16 * 1024 * 1024) => collect(payload(), max),
      packetCaPems: async () => {
        const out: string[] = [];
        for (const s of this.record.packet?.sections ?? []) {
          if (s.fileType === 'CaCertificate') out.push((await collect(this.#context(s).payload(), 256 * 1024)).toString('utf8'));
        }
        return out;
      },
      profiles: deps.profiles,
      reconnect: () => deps.session.reconnect(),
      signal: this.#stop,
    };
  }

  #installer(section: SectionRecord): Installer {
    const installer = this.#installers.get(section.fileType);
    if (!installer) throw new AgentError('AGENT_UNSUPPORTED_FILETYPE', `no installer for FILETYPE=${section.fileType}`);
    return installer;
  }

  async #reboot(): Promise<Halt> {
    await this.#deps.platform.system.reboot();
    return { halt: 'reboot' };
  }

  /** Journals the section's phase around one installer step (`journaledStep`). */
  #sectionStep<T>(section: SectionRecord, step: SectionStep<T>): Promise<StepEnd<T>> {
    return journaledStep(() => this.#deps.journal.save(this.record), section, step);
  }

  // ── handlers ────────────────────────────────────────────────────────────────────────────

  async #offered(): Promise<HandlerResult> {
    const { offer } = this.record;
    const { config, platform } = this.#deps;
    const early = this.#beforeCommitChecks();
    if (early) return early;
    if (this.#deps.alreadyInstalled({ sha256: offer.packet.sha256 })) return { outcome: 'already-installed' };
    if (offer.packet.size > config.maxPacketBytes) {
      return { outcome: 'rejected', error: new AgentError('AGENT_PACKET_TOO_LARGE', `${offer.packet.size} bytes > ${config.maxPacketBytes}`) };
    }
    // The packet, its extracted payload (on disk) and a reserve must fit before a byte is written.
    const extracted = platform.staging.localPath('x') !== undefined ? offer.packet.size : 0;
    const need = offer.packet.size + extracted + config.stagingReserveBytes;
    const free = await platform.staging.freeBytes();
    if (free < need) {
      return { outcome: 'rejected', error: new AgentError('AGENT_INSUFFICIENT_SPACE', `need ${need} bytes, ${free} free`) };
    }
    return { outcome: 'ok' };
  }

  async #downloading(): Promise<HandlerResult> {
    // The download starts in a later turn of the event loop than the offer that asked for it: the
    // offer is accepted, journaled and reported first. A fleet's offers arrive in one burst, and in
    // a process that runs many agents (the simulator) the next router's offer then no longer waits
    // behind this router's download setup (TLS, request, abort signals): measured in a 5,000-router
    // run, download work was a third of a simulator process's time while offers were arriving.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.#deps.downloadTurn) {
      await this.#deps.downloadTurn(this.#stop);
      if (this.#stop.aborted) return HALTED;
    }
    const early = this.#beforeCommitChecks();
    if (early) return early;
    const r = this.record;
    const { config, platform, journal, log } = this.#deps;
    const profile = this.#deps.profile();
    const job = this.#jobSignal();
    // Check MANIFEST (signature, model, REQUIRED_SW, downgrade) as soon as its bytes arrive, so an
    // incompatible packet is refused before its payload is downloaded.
    const head = r.downloadOffset ? undefined : new HeadCheck(this.readerOptions(profile));
    let lastReport = 0;
    try {
      await downloadPacket({
        url: r.offer.packet.url,
        token: r.offer.download.token,
        size: r.offer.packet.size,
        sha256: r.offer.packet.sha256,
        staging: platform.staging,
        name: this.#packetName,
        caPem: profile.caCertPem,
        allowInsecure: config.allowInsecureTransport,
        dispatcher: this.#deps.downloadDispatcher?.(profile.caCertPem),
        offset: r.downloadOffset ?? 0,
        persistOffset: async (offset) => {
          if (r.downloadOffset === offset) return;
          r.downloadOffset = offset;
          await journal.save(r);
          if (offset > 0 && offset < r.offer.packet.size) await platform.faults.point('download:partial', this.#stop);
        },
        clock: platform.clock,
        random: platform.random,
        source: platform.decorate?.downloadSource(httpDownloadSource) ?? httpDownloadSource,
        retries: config.downloadRetries,
        retryBaseMs: config.downloadRetryBaseMs,
        stallWindowMs: config.downloadStallSec * 1000,
        minBytesPerSec: config.downloadMinBytesPerSec,
        syncBytes: config.downloadSyncBytes,
        signal: head ? AbortSignal.any([job.signal, head.signal]) : job.signal,
        onChunk: head ? (chunk, offset) => head.feed(chunk, offset) : undefined,
        onProgress: (bytesDone) => {
          const now = this.#now();
          if (now - lastReport >= 2000) {
            lastReport = now;
            this.#deps.progress(r, { bytesDone });
          }
        },
        onRetry: (error, attempt, delayMs) =>
          log.warn({ executionId: r.executionId, code: error.code, attempt, delayMs: Math.round(delayMs) }, 'download attempt failed'),
      });
      if (head) await head.finish();
      this.#deps.progress(r, { bytesDone: r.offer.packet.size });
      return this.#beforeCommitChecks() ?? { outcome: 'ok' };
    } catch (error) {
      const rejection = head?.rejection;
      if (rejection) return this.#rejectPacket(rejection);
      const aborted = this.#aborted(error);
      if (aborted) return aborted;
      const e = stepError(error, 'AGENT_DOWNLOAD_FAILED');
      if (isProtocolError(error)) return this.#rejectPacket(error);
      if (e.code === 'AGENT_DOWNLOAD_TOO_LONG') return { outcome: 'rejected', error: e };
      return { outcome: 'failed', error: e };
    } finally {
      job.dispose();
      head?.dispose();
    }
  }

  #rejectPacket(error: ProtocolError): HandlerResult {
    if (SECURITY_CODES.has(error.code)) {
      this.#deps.event('security.packet-rejected', 'critical', { executionId: this.record.executionId, code: error.code });
    }
    return { outcome: 'rejected', error: protocolRejection(error) };
  }

  /** Options for the protocol's packet reader: this device, its anchors and its clock. */
  async readerOptions(profile: ConnectionProfile): Promise<HeadOptions> {
    const { config, platform } = this.#deps;
    return {
      requireSignature: config.requireSignatures,
      trustAnchors: profile.trustAnchorsPem,
      at: new Date(platform.clock.now()),
      device: {
        model: platform.system.identity().model,
        firmwareVersion: await runningFirmwareVersion(platform),
        allowDowngrade: this.record.offer.allowDowngrade,
      },
      limits: { maxTotalSize: Math.max(this.record.offer.packet.size, 1024), maxEntrySize: Math.max(this.record.offer.packet.size, 1) },
    };
  }

  async #verifying(): Promise<HandlerResult> {
    const early = this.#beforeCommitChecks();
    if (early) return early;
    const r = this.record;
    const { platform, journal } = this.#deps;
    const staging = platform.staging;
    const job = this.#jobSignal();
    try {
      const options = await this.readerOptions(this.#deps.profile());
      const packetPath = staging.localPath(this.#packetName);
      let result: ReadPacketResult;
      try {
        if (packetPath !== undefined) {
          // Extract into a fresh directory: what is installed is what this pass verified.
          await staging.remove(`${this.#dir}/payload`);
          result = await readPacket(packetPath, {
            ...options,
            extractTo: staging.localPath(`${this.#dir}/payload`)!,
            expect: { sha256: r.offer.packet.sha256, size: r.offer.packet.size },
            signal: job.signal,
          });
        } else {
          result = await readPacket(staging.read(this.#packetName), {
            ...options,
            expect: { sha256: r.offer.packet.sha256, size: r.offer.packet.size },
            signal: job.signal,
          });
        }
      } catch (error) {
        const aborted = this.#aborted(error);
        if (aborted) return aborted;
        if (isProtocolError(error)) return this.#rejectPacket(error);
        throw error;
      }
      if (!result.signed && this.#deps.config.requireSignatures) {
        return { outcome: 'rejected', error: AgentError.withCode('PROTO_PACKET_SIGNATURE_MISSING', 'the packet is not signed') };
      }
      const packetId = result.manifest.header?.packetId;
      r.packet = {
        ...(packetId ? { packetId } : {}),
        sections: result.sections.map((s, index) => ({
          index,
          fileName: s.fileName,
          fileType: s.fileType,
          sha256: s.sha256,
          size: s.size,
          ...(s.version !== undefined ? { version: s.version } : {}),
          extra: s.extra.map((f) => ({ key: f.key, value: f.value })),
          phase: 'pending' as const,
          data: {},
        })),
      };
      await journal.save(r);
      if (packetId && this.#deps.alreadyInstalled({ packetId })) return { outcome: 'already-installed' };
      for (const section of r.packet.sections) {
        let installer: Installer;
        try {
          installer = this.#installer(section);
        } catch (error) {
          return { outcome: 'rejected', error: stepError(error, 'AGENT_INTERNAL') };
        }
        try {
          await installer.download(this.#context(section));
        } catch (error) {
          const e = stepError(error, 'AGENT_PACKET_INVALID');
          const aborted = this.#aborted(error);
          if (aborted) return aborted;
          return { outcome: 'rejected', error: e };
        }
      }
      const late = this.#beforeCommitChecks();
      if (late) return late;
      const window = r.offer.installWindow;
      if (window && this.#now() > window.notAfter) return { outcome: 'timed-out', error: new AgentError('AGENT_WINDOW_MISSED') };
      if (window && this.#now() < window.notBefore) return { outcome: 'wait' };
      return { outcome: 'ok' };
    } finally {
      job.dispose();
    }
  }

  async #waiting(): Promise<HandlerResult> {
    const window = this.record.offer.installWindow;
    const job = this.#jobSignal();
    try {
      if (window && this.#now() < window.notBefore) await sleep(this.#deps.platform.clock, window.notBefore - this.#now(), job.signal);
    } catch (error) {
      const aborted = this.#aborted(error);
      if (aborted) return aborted;
      throw error;
    } finally {
      job.dispose();
    }
    const early = this.#beforeCommitChecks();
    if (early) return early;
    if (window && this.#now() > window.notAfter) return { outcome: 'timed-out', error: new AgentError('AGENT_WINDOW_MISSED') };
    return { outcome: 'ok' };
  }

  async #installing(): Promise<HandlerResult> {
    const r = this.record;
    const sections = r.packet?.sections ?? [];
    if (this.#resumed && sections.some((s) => s.phase !== 'pending')) {
      // Never trust an install that was interrupted half-way: roll it back.
      return fail('AGENT_INTERRUPTED');
    }
    const { platform } = this.#deps;
    // Before any side effect: a section that reconnects (new profile) may be welcomed very soon.
    r.installEpoch ??= this.#deps.session.epoch;
    let reboot = false;
    for (const section of sections) {
      if (section.phase === 'installed') {
        reboot ||= section.needsReboot === true;
        continue;
      }
      await platform.faults.point(`install:${section.index}`, this.#stop);
      if (this.#stop.aborted) return HALTED;
      const installer = this.#installer(section);
      const ctx = this.#context(section);
      const step = await this.#sectionStep(section, {
        entering: 'installing',
        call: () => installer.install(ctx),
        settle: () => {
          section.phase = 'installed';
          section.needsReboot = installer.needsReboot(ctx);
        },
      });
      if (!step.ok) {
        const e = stepError(step.error, 'AGENT_INSTALL_FAILED');
        if (this.#stop.aborted) return HALTED;
        return { outcome: 'failed', error: e };
      }
      reboot ||= section.needsReboot === true;
      this.#deps.event('job.section-installed', 'info', {
        executionId: r.executionId,
        section: section.index,
        fileType: section.fileType,
      });
      await platform.faults.point(`install:${section.index}:after`, this.#stop);
    }
    return { outcome: reboot ? 'reboot' : 'ok' };
  }

  async #rebootingState(): Promise<HandlerResult> {
    const r = this.record;
    const { platform, journal } = this.#deps;
    const bootId = platform.system.bootId();
    const target = this.#targetSlot();
    const booted = (await platform.firmware.state()).booted;
    if (!r.reboot && target !== undefined && booted === target) {
      // A power cut after the trial slot was set already booted the new firmware.
      return { outcome: 'ok' };
    }
    if (!r.reboot || r.reboot.fromBootId === bootId) {
      r.reboot = { fromBootId: bootId };
      await journal.save(r);
      return this.#reboot();
    }
    return (await this.#slotProblem()) ?? { outcome: 'ok' };
  }

  /** The slot an installed firmware section boots, if any. */
  #targetSlot(): string | undefined {
    const firmware = this.record.packet?.sections.find((s) => s.fileType === 'FirmwareFull' && s.phase === 'installed');
    return firmware?.data.targetSlot as string | undefined;
  }

  /** Fails when new firmware was installed but the device runs another slot (boot loader fell back). */
  async #slotProblem(): Promise<HandlerResult | undefined> {
    const target = this.#targetSlot();
    if (target === undefined) return undefined;
    const booted = (await this.#deps.platform.firmware.state()).booted;
    return booted === target ? undefined : fail('AGENT_BOOT_FAILED', `running slot ${booted}, expected ${target}`);
  }

  async #healthCheck(): Promise<HandlerResult> {
    const r = this.record;
    const { journal, session, config } = this.#deps;
    const slot = await this.#slotProblem();
    if (slot) return slot;
    if (!r.health) {
      const newSession = (r.packet?.sections ?? []).some(
        (s) => s.phase === 'installed' && this.#installers.get(s.fileType)?.requiresNewSession?.(this.#context(s)),
      );
      r.health = {
        deadline: this.#now() + config.healthCheckTimeoutSec * 1000,
        epoch: r.installEpoch ?? session.epoch,
        newSession,
        rejections: session.licensingRejections ?? 0,
      };
      await journal.save(r);
    }
    const health = r.health;
    while (!this.#stop.aborted) {
      const remaining = health.deadline - this.#now();
      if (remaining <= 0) break;
      const fresh = !health.newSession || session.epoch > health.epoch;
      // Licensing is not health: a device that reached the server and was authenticated, but has
      // no seat (unmanaged, or rejected for want of a licence), runs working firmware. Rolling it
      // back would not bring the seat back either.
      const licensing =
        (session.state === 'unmanaged' && fresh) || (session.licensingRejections ?? 0) > (health.rejections ?? 0);
      if (licensing) {
        this.#deps.log.info({ state: session.state }, 'health check passed: authenticated by the server, not managed for licensing reasons');
        return { outcome: 'ok' };
      }
      if (session.state === 'managed' && fresh) {
        if (await session.roundTrip(Math.min(remaining, 10_000), this.#stop)) return { outcome: 'ok' };
        await session.changed(Math.min(Math.max(0, health.deadline - this.#now()), 1000), this.#stop);
      } else {
        await session.changed(remaining, this.#stop);
      }
    }
    if (this.#stop.aborted) return HALTED;
    return fail('AGENT_HEALTH_CHECK_FAILED', `not back online and managed within ${config.healthCheckTimeoutSec} s`);
  }

  async #committing(): Promise<HandlerResult> {
    const r = this.record;
    const slot = await this.#slotProblem();
    if (slot) return slot;
    for (const section of r.packet?.sections ?? []) {
      if (section.phase !== 'installed') continue;
      // No entering phase: commit is idempotent and runs again after a restart.
      const step = await this.#sectionStep(section, {
        call: () => this.#installer(section).commit(this.#context(section)),
        settle: () => {
          section.phase = 'committed';
        },
      });
      if (!step.ok) return { outcome: 'failed', error: stepError(step.error, 'AGENT_COMMIT_FAILED') };
    }
    return { outcome: 'ok' };
  }

  async #rollingBack(): Promise<HandlerResult> {
    const r = this.record;
    const { platform, log } = this.#deps;
    const bootId = platform.system.bootId();
    if (r.rollbackReboot && r.rollbackReboot.fromBootId === bootId) return this.#reboot();
    const sections = [...(r.packet?.sections ?? [])].reverse();
    for (const section of sections) {
      if (section.phase !== 'installing' && section.phase !== 'installed') continue;
      const step = await this.#sectionStep(section, {
        call: () => this.#installer(section).rollback(this.#context(section)),
        settle: (done) => {
          // A rollback that needs a reboot runs again after it; the boot id tells the two apart.
          if (done === 'reboot') r.rollbackReboot = { fromBootId: bootId };
          else section.phase = 'rolled-back';
        },
      });
      if (!step.ok) {
        const e = stepError(step.error, 'AGENT_ROLLBACK_FAILED');
        log.error({ executionId: r.executionId, section: section.index, code: e.code, err: e.message }, 'rollback failed');
        this.#deps.event('job.rollback-failed', 'critical', { executionId: r.executionId, section: section.index, code: e.code });
        return { outcome: 'failed', error: new AgentError('AGENT_ROLLBACK_FAILED', e.message) };
      }
      if (step.value === 'reboot') return this.#reboot();
    }
    this.#deps.event('job.rolled-back', 'warning', { executionId: r.executionId, code: r.result?.errorCode ?? null });
    return { outcome: 'ok' };
  }
}
