import { createMessage, type EventBody, type Message, type MessageOf } from '@router-fleet/protocol';
import type { AgentConfig } from './config.js';
import type { ConnectionProfile } from './connection-profile.js';
import { loadProfile, StoredProfiles } from './connection/profile-store.js';
import { createTransport } from './connection/create-transport.js';
import { Session, type SessionHooks } from './connection/session.js';
import type { Transport } from './connection/transport.js';
import { TrustAnchorStore } from './connection/trust-anchor-store.js';
import { AgentError } from './errors.js';
import type { Installer } from './installers/installer.js';
import { JobManager, loadUpdateCode } from './jobs/job-manager.js';
import type { SessionState } from './lifecycle/session-table.js';
import type { UpdateState } from './lifecycle/update-table.js';
import { contextLogger, type Logger, silentLogger } from './logger.js';
import { PowerCut } from './platform/faults.js';
import type { Platform, Timer } from './platform/platform.js';
import { AnalyticsCollector } from './reporting/analytics.js';
import { JsonDocument } from './reporting/json-store.js';
import { Outbox } from './reporting/outbox.js';
import { buildHello, buildStatus, runningFirmwareVersion } from './reporting/status.js';

export interface AgentOptions {
  /** Default: the binding the profile's URL names (WebSocket over TLS, or MQTT through a broker). */
  transport?: Transport;
  /** Default: silent. Child loggers carry device and job context; credentials are never logged. */
  logger?: Logger;
  /** Use this profile instead of the one in storage (simulator; config-file provisioning). */
  profile?: ConnectionProfile;
  /** Replace the built-in installers (tests, other platforms). */
  installers?: Installer[];
  /** Observe lifecycle transitions (tests, simulator metrics). */
  onTransition?: TransitionListener;
}

/**
 * A lifecycle transition, typed by machine: the control-channel session (SESSION_TABLE) or the
 * update of a job (UPDATE_TABLE). A listener written as `(machine, state) => …` gets `state`
 * narrowed once it has checked `machine`.
 */
export type LifecycleTransition = ['session', SessionState] | ['update', UpdateState];
export type TransitionListener = (...transition: LifecycleTransition) => void;

/** Why the agent stopped. `reboot`: start it again on the same platform after powering on. */
export interface AgentExit {
  reason: 'stopped' | 'reboot' | 'power-cut' | 'error';
  error?: Error;
}

export interface Agent {
  /** Loads state, resumes an interrupted job and starts the session. Rejects when not provisioned. */
  start(): Promise<void>;
  /** Graceful stop: the job halts at its next safe point (it resumes on the next start), GOING_AWAY close. */
  stop(): Promise<AgentExit>;
  /** Resolves once the agent has stopped, whatever the reason. */
  readonly done: Promise<AgentExit>;
  sessionState(): SessionState;
  updateState(): UpdateState | undefined;
  /** The results of the executions this device finished (the most recent `historyMax`), oldest first. */
  jobResults(): ReadonlyArray<{ executionId: string; state: string }>;
  /** Records a device event (kept in the outbox until acknowledged). */
  event(kind: string, severity: EventBody['severity'], details?: EventBody['details']): Promise<void>;
}

interface AgentMemo {
  lastBootId?: string;
}

/**
 * Creates the router agent core. Every side effect goes through `platform`; the connection goes
 * through `options.transport`. The configuration is validated and frozen by the caller
 * (`loadConfig` / `resolveConfig`).
 */
export function createAgent(config: AgentConfig, platform: Platform, options: AgentOptions = {}): Agent {
  return new AgentImpl(config, platform, options);
}

class AgentImpl implements Agent {
  readonly #config: AgentConfig;
  readonly #platform: Platform;
  readonly #options: AgentOptions;
  readonly #log: Logger;
  readonly done: Promise<AgentExit>;
  #resolveDone!: (exit: AgentExit) => void;
  #exit: AgentExit | undefined;
  #session: Session | undefined;
  #jobs: JobManager | undefined;
  #outbox: Outbox;
  #analytics: AnalyticsCollector | undefined;
  #timer: Timer | undefined;
  #statusTimer: Timer | undefined;
  #nextStatusAt = 0;
  #nextSampleAt = 0;
  #disconnections = 0;
  #firmwareVersion: string | undefined;
  #unsubscribe: (() => void) | undefined;
  #stopping = false;
  #anchors: TrustAnchorStore | undefined;
  #profile: (() => ConnectionProfile) | undefined;

  constructor(config: AgentConfig, platform: Platform, options: AgentOptions) {
    this.#config = config;
    this.#platform = platform;
    this.#options = options;
    this.#log = options.logger ?? silentLogger();
    this.#outbox = new Outbox(platform.storage, platform.clock, config.outboxMaxEvents);
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  sessionState(): SessionState {
    return this.#session?.state ?? 'starting';
  }

  updateState(): UpdateState | undefined {
    return this.#jobs?.active?.state;
  }

  jobResults(): ReadonlyArray<{ executionId: string; state: string }> {
    return (this.#jobs?.history() ?? []).map((h) => ({ executionId: h.executionId, state: h.state }));
  }

  async start(): Promise<void> {
    const platform = this.#platform;
    const config = this.#config;
    const profile = this.#options.profile ?? (await loadProfile(platform.storage, config.allowInsecureTransport));
    if (!profile) throw new AgentError('AGENT_NOT_PROVISIONED');
    const profiles = new StoredProfiles(platform.storage, profile, config.allowInsecureTransport);
    this.#anchors = new TrustAnchorStore(profiles);
    this.#profile = () => profiles.current();
    const log = contextLogger(this.#log, { deviceId: profile.deviceId });
    await this.#outbox.load();
    this.#firmwareVersion = await runningFirmwareVersion(platform);

    const memo = new JsonDocument<AgentMemo>(platform.storage, 'agent.json', () => ({}));
    const bootId = platform.system.bootId();
    if ((await memo.get()).lastBootId !== bootId) {
      await memo.set({ lastBootId: bootId });
      await this.#outbox.add('boot', 'info', { bootCount: platform.system.bootCount(), firmwareVersion: this.#firmwareVersion });
    }

    const hooks: SessionHooks = {
      profile: () => profiles.current(),
      hello: () => buildHello(platform, profiles.current()),
      welcomed: (welcome) => this.#welcomed(welcome.analyticsConsent),
      message: (message) => this.#onMessage(message),
      stateChanged: (state) => {
        if (state === 'backing-off') this.#disconnections++;
        this.#options.onTransition?.('session', state);
      },
    };
    const transport = this.#options.transport ?? createTransport();
    const session = new Session(config, platform, transport, log, hooks);
    this.#session = session;
    // Loaded with the first job (installer code is not needed by an idle agent).
    const installers = async () => {
      const [, { defaultInstallerMap, installerMap }] = await loadUpdateCode();
      const own = this.#options.installers;
      return own ? installerMap(own) : defaultInstallerMap({ allowInsecure: config.allowInsecureTransport });
    };
    this.#jobs = new JobManager({
      config,
      platform,
      log,
      session,
      profile: () => profiles.current(),
      profiles,
      installers,
      downloadDispatcher: (caPem) => transport.downloadDispatcher?.(caPem),
      ...(transport.downloadTurn ? { downloadTurn: (signal: AbortSignal) => transport.downloadTurn!(signal) } : {}),
      send: (message) => session.send(message),
      event: (kind, severity, details) => void this.event(kind, severity, details).catch(() => {}),
      changed: () => this.#statusChanged(),
      // The job manager passes on the update runner's states (UpdateState) as strings.
      transition: (state) => this.#options.onTransition?.('update', state as UpdateState),
      reboot: () => void this.#finish({ reason: 'reboot' }),
      powerCut: (error) => this.#powerCut(error),
      fatal: (error) => {
        log.fatal({ err: error.message, code: (error as AgentError).code }, 'agent stopped by an internal error');
        void this.#finish({ reason: 'error', error });
      },
    });
    this.#unsubscribe = platform.network.onChange(() => this.#statusChanged());

    session.start().catch((error: unknown) => {
      if (error instanceof PowerCut) this.#powerCut(error);
      else {
        log.fatal({ err: (error as Error).message }, 'session stopped by an internal error');
        void this.#finish({ reason: 'error', error: error as Error });
      }
    });
    try {
      await this.#jobs.start();
    } catch (error) {
      if (error instanceof PowerCut) {
        this.#powerCut(error);
        return;
      }
      throw error;
    }
    this.#analytics = new AnalyticsCollector(platform, config.analyticsSampleSec, config.analyticsBatchSize);
    this.#schedule();
  }

  async stop(): Promise<AgentExit> {
    await this.#finish({ reason: 'stopped' });
    return this.done;
  }

  async event(kind: string, severity: EventBody['severity'], details?: EventBody['details']): Promise<void> {
    const event = await this.#outbox.add(kind, severity, details);
    if (this.#session?.connected) this.#sendEvent(event);
  }

  // ── session hooks ──────────────────────────────────────────────────────────────────────

  #welcomed(consent: boolean): void {
    this.#analytics?.setConsent(consent);
    void this.#sendStatus();
    for (const event of this.#outbox.pending()) this.#sendEvent(event);
    void this.#jobs?.welcomed().catch(() => {});
    this.#flushAnalytics(false);
  }

  #onMessage(message: Message): void {
    const jobs = this.#jobs;
    switch (message.type) {
      case 'job-offer':
        void jobs?.offer(message);
        return;
      case 'job-cancel':
        void jobs?.cancel(message);
        return;
      case 'ack':
        if (message.body.seqs.length > 0) void this.#outbox.ack(message.body.seqs).catch(() => {});
        if (message.correlationId) void jobs?.ack(message.correlationId).catch(() => {});
        return;
      case 'settings':
        if (message.body.analyticsConsent !== undefined) {
          this.#analytics?.setConsent(message.body.analyticsConsent);
          if (message.body.analyticsConsent) this.#nextSampleAt = this.#platform.clock.now();
          this.#schedule();
        }
        return;
      case 'trust-anchors':
        void this.#trustAnchors(message);
        return;
      case 'error':
        this.#log.warn({ code: message.body.code, correlationId: message.correlationId }, 'server reported an error');
        return;
      default:
        return;
    }
  }

  /**
   * A new anchor set from the server. The session hands messages over only once welcomed, so this
   * came over the authenticated channel; it is stored before the next packet is verified with it.
   * The status that follows tells the server the digest it now has.
   */
  async #trustAnchors(message: MessageOf<'trust-anchors'>): Promise<void> {
    try {
      const changed = await this.#anchors?.apply(message.body);
      if (changed) {
        this.#log.info({ anchors: message.body.anchors.map((a) => a.scope) }, 'trust anchors updated');
        await this.event('trust-anchors-updated', 'info', { anchors: message.body.anchors.length });
      }
      await this.#sendStatus();
    } catch (error) {
      const code = error instanceof AgentError ? error.code : 'AGENT_STORAGE_FAILED';
      this.#log.warn({ err: (error as Error).message, code }, 'trust-anchor update refused');
      this.#session?.send(
        createMessage(
          'error',
          { code, message: (error as Error).message.slice(0, 256) },
          { id: this.#platform.random.uuid(), sentAt: this.#platform.clock.now(), correlationId: message.id },
        ),
      );
    }
  }

  #sendEvent(event: EventBody): void {
    this.#session?.send(createMessage('event', event, { id: this.#platform.random.uuid(), sentAt: this.#platform.clock.now() }));
  }

  async #sendStatus(): Promise<void> {
    const session = this.#session;
    if (!session?.connected) return;
    try {
      const body = await buildStatus(this.#platform, this.#profile?.());
      this.#firmwareVersion = body.firmwareVersion;
      session.send(createMessage('status', body, { id: this.#platform.random.uuid(), sentAt: this.#platform.clock.now() }));
      this.#nextStatusAt = this.#platform.clock.now() + this.#config.statusIntervalSec * 1000;
    } catch (error) {
      this.#log.warn({ err: (error as Error).message }, 'status failed');
    }
  }

  /** Coalesces changes into one status a moment later. */
  #statusChanged(): void {
    if (this.#statusTimer || this.#stopping) return;
    this.#statusTimer = this.#platform.clock.setTimer(500, () => {
      this.#statusTimer = undefined;
      void this.#sendStatus();
    });
  }

  #flushAnalytics(force: boolean): void {
    const analytics = this.#analytics;
    const session = this.#session;
    if (!analytics?.consent || !session?.connected) return;
    const batch = analytics.takeBatch(force);
    if (!batch) return;
    const sent = session.send(createMessage('analytics', batch, { id: this.#platform.random.uuid(), sentAt: this.#platform.clock.now() }));
    if (!sent) analytics.restore(batch);
  }

  /**
   * One housekeeping timer per agent (status, analytics samples, result resends), armed for the
   * earliest of them: the simulator runs thousands of agents on a shared clock.
   */
  #schedule(): void {
    if (this.#stopping) return;
    this.#timer?.cancel();
    const now = this.#platform.clock.now();
    if (this.#nextStatusAt === 0) this.#nextStatusAt = now + this.#config.statusIntervalSec * 1000;
    if (this.#nextSampleAt === 0) this.#nextSampleAt = now + this.#config.analyticsSampleSec * 1000;
    const resendAt = now + this.#config.reportResendSec * 1000;
    const at = Math.min(this.#nextStatusAt, this.#analytics?.consent ? this.#nextSampleAt : Number.POSITIVE_INFINITY, resendAt);
    this.#timer = this.#platform.clock.setTimer(Math.max(0, at - now), () => void this.#housekeeping());
  }

  async #housekeeping(): Promise<void> {
    this.#timer = undefined;
    if (this.#stopping) return;
    const now = this.#platform.clock.now();
    if (now >= this.#nextStatusAt) await this.#sendStatus();
    if (now >= this.#nextStatusAt) this.#nextStatusAt = now + this.#config.statusIntervalSec * 1000;
    if (this.#analytics?.consent && now >= this.#nextSampleAt) {
      this.#analytics.sample({ disconnections: this.#disconnections, firmwareVersion: this.#firmwareVersion });
      this.#nextSampleAt = now + this.#config.analyticsSampleSec * 1000;
      this.#flushAnalytics(false);
    }
    await this.#jobs?.tick().catch(() => {});
    this.#schedule();
  }

  // ── stopping ───────────────────────────────────────────────────────────────────────────

  #powerCut(error: PowerCut): void {
    // Nothing more is written: what is on storage is what a power cut leaves.
    this.#log.warn({ err: error.message }, 'power cut (fault injection)');
    this.#stopping = true;
    this.#timer?.cancel();
    this.#statusTimer?.cancel();
    this.#unsubscribe?.();
    void this.#session?.stop();
    void this.#jobs?.stop();
    this.#settle({ reason: 'power-cut', error });
  }

  async #finish(exit: AgentExit): Promise<void> {
    if (this.#stopping) {
      await this.done;
      return;
    }
    this.#stopping = true;
    this.#timer?.cancel();
    this.#statusTimer?.cancel();
    this.#unsubscribe?.();
    await this.#jobs?.stop();
    await this.#session?.stop();
    await this.#outbox.idle();
    this.#settle(exit);
  }

  #settle(exit: AgentExit): void {
    if (this.#exit) return;
    this.#exit = exit;
    this.#resolveDone(exit);
  }
}
