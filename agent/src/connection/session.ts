import {
  CloseCodes,
  correlationIdOf,
  createMessage,
  decode,
  encode,
  errorReplyBody,
  type HelloBody,
  isMessage,
  type Message,
  type MessageOf,
  type SessionParameters,
  type WelcomeBody,
} from '@router-fleet/protocol';
import pRetry, { AbortError } from 'p-retry';
import type { AgentConfig } from '../config.js';
import type { ConnectionProfile } from '../connection-profile.js';
import { AgentError } from '../errors.js';
import { type SessionOutcome, type SessionState, SESSION_TABLE } from '../lifecycle/session-table.js';
import { nextState } from '../lifecycle/table.js';
import type { Logger } from '../logger.js';
import type { Platform, Timer } from '../platform/platform.js';
import { Backoff } from './backoff.js';
import { Keepalive } from './keepalive.js';
import { LinkLog } from './link-log.js';
import { type ChannelConnection, DialError, type Transport } from './transport.js';

/** Keep-alive values used before the first welcome: the real product's defaults. */
export const DEFAULT_SESSION: SessionParameters = { pingIntervalSec: 120, pongTimeoutSec: 104, sessionTimeoutSec: 16 };

export interface SessionHooks {
  profile(): ConnectionProfile;
  hello(): Promise<HelloBody>;
  /** A welcome with admission managed or unmanaged arrived (epoch = welcome count). */
  welcomed(welcome: WelcomeBody): void;
  /** Any message after welcome other than the ones the session handles itself. */
  message(message: Message): void;
  stateChanged(state: SessionState): void;
}

/**
 * The control-channel session as a table-driven state machine (SESSION_TABLE). Handlers report
 * outcomes; `nextState` picks successors. Frames arrive through the transport; outcomes that come
 * from frames or closes are posted to a small mailbox that the current handler awaits.
 */
export class Session {
  state: SessionState = 'starting';
  /** Increases on every welcome: a health check can ask for a session newer than a point in time. */
  epoch = 0;
  /** Welcomes of this process that rejected the device for want of a licence (see the health check). */
  licensingRejections = 0;
  welcome: WelcomeBody | undefined;
  lastClose: { code: number; reason: string } | undefined;

  readonly #config: AgentConfig;
  readonly #platform: Platform;
  readonly #transport: Transport;
  readonly #log: Logger;
  readonly #hooks: SessionHooks;
  readonly #backoff: Backoff;
  readonly #authBackoff: Backoff;
  /** Set by stop(); waits and dials check it. No long-lived AbortSignal: thousands of idle sessions. */
  #stopped = false;
  /** Ends the current wait early (stop). */
  #wake: (() => void) | undefined;
  /** Ends a backoff wait early with `ready` (the link came back). */
  #nudge: (() => void) | undefined;
  /** Aborts the dial loop in progress (stop). */
  #dialing: AbortController | undefined;
  #connection: ChannelConnection | undefined;
  #keepalive: Keepalive | undefined;
  #dropTimer: Timer | undefined;
  #mailbox: SessionOutcome[] = [];
  #waiter: ((o: SessionOutcome) => void) | undefined;
  #connectedAt = 0;
  #retryAfterMs: number | undefined;
  #lastWasAuth = false;
  /** Id of the hello sent on the current connection: only the welcome that answers it counts. */
  #helloId: string | undefined;
  #pongWaiters: Map<string, () => void> | undefined;
  #stateWaiters: Set<() => void> | undefined;
  #unsubscribeNetwork: (() => void) | undefined;
  #running: Promise<void> | undefined;
  /** Info lines for connected / managed / lost; none when info is off (fleets of silent agents). */
  readonly #linkLog: LinkLog | undefined;

  constructor(config: AgentConfig, platform: Platform, transport: Transport, log: Logger, hooks: SessionHooks) {
    this.#config = config;
    this.#platform = platform;
    this.#transport = transport;
    this.#log = log;
    this.#hooks = hooks;
    this.#linkLog = log.isLevelEnabled('info') ? new LinkLog(log, platform.clock) : undefined;
    this.#backoff = new Backoff(config.backoffBaseMs, config.backoffMaxMs, platform.random);
    this.#authBackoff = new Backoff(
      config.authBackoffMinSec * 1000,
      config.authBackoffMaxSec * 1000,
      platform.random,
      config.authBackoffMinSec * 1000,
    );
  }

  get connected(): boolean {
    return this.state === 'managed' || this.state === 'unmanaged';
  }

  /** Runs until stopped. Rejects only on a bug (AGENT_NO_TRANSITION). */
  start(): Promise<void> {
    this.#unsubscribeNetwork = this.#platform.network.onChange(() => {
      if (!this.#platform.network.reachable()) {
        this.#connection?.close(CloseCodes.GOING_AWAY, 'link down');
        return;
      }
      // The link is back: dial now instead of finishing a backoff grown during the outage.
      this.#backoff.reset();
      this.#nudge?.();
    });
    this.#running = this.#loop().finally(() => {
      this.#unsubscribeNetwork?.();
      this.#linkLog?.close();
    });
    return this.#running;
  }

  async #loop(): Promise<void> {
    while (this.state !== 'stopped') {
      const outcome = await this.#handle(this.state);
      const previous = this.state;
      const next = nextState(SESSION_TABLE, previous, outcome);
      this.#log.debug({ from: previous, outcome, to: next }, 'session transition');
      this.state = next;
      this.#linkLog?.transition(previous, next, { url: this.#hooks.profile().serverUrl, ...(this.lastClose ? { close: this.lastClose } : {}) });
      this.#hooks.stateChanged(next);
      // After the state changed, so that what the hook sends goes out on the welcomed session.
      if (previous === 'hello-sent' && this.connected && this.welcome) this.#hooks.welcomed(this.welcome);
      if (this.#stateWaiters) for (const w of [...this.#stateWaiters]) w();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#dialing?.abort(new AgentError('AGENT_INTERNAL', 'stopping'));
    this.#wake?.();
    this.#post('stop');
    this.#connection?.close(CloseCodes.GOING_AWAY, 'agent stopping');
    await this.#running?.catch(() => {});
  }

  /** Drops the connection and dials again (new connection profile). */
  reconnect(): void {
    this.#backoff.reset();
    this.#connection?.close(CloseCodes.NORMAL, 'reconnecting');
  }

  /** Sends a message if the session is welcomed. */
  send(message: Message): boolean {
    if (!this.connected || !this.#connection) return false;
    return this.#connection.send(encode(message, { validate: false }));
  }

  /** Pings the server and waits for the pong: proof that the link works now. */
  async roundTrip(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (!this.connected) return false;
    const ping = createMessage('ping', {}, { id: this.#platform.random.uuid(), sentAt: this.#platform.clock.now() });
    this.#pongWaiters ??= new Map();
    const waiters = this.#pongWaiters;
    const answered = new Promise<boolean>((resolve) => {
      const timer = this.#platform.clock.setTimer(timeoutMs, () => {
        waiters.delete(ping.id);
        resolve(false);
      });
      signal?.addEventListener('abort', () => {
        timer.cancel();
        resolve(false);
      });
      waiters.set(ping.id, () => {
        timer.cancel();
        resolve(true);
      });
    });
    if (!this.send(ping)) {
      waiters.delete(ping.id);
      return false;
    }
    return answered;
  }

  /** Resolves on the next state change (or after `timeoutMs`, or on abort). */
  changed(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      this.#stateWaiters ??= new Set();
      const waiters = this.#stateWaiters;
      const done = () => {
        timer.cancel();
        waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.#platform.clock.setTimer(timeoutMs, done);
      signal?.addEventListener('abort', done, { once: true });
      waiters.add(done);
    });
  }

  // ── mailbox ───────────────────────────────────────────────────────────────────────────

  #post(outcome: SessionOutcome): void {
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter(outcome);
    } else {
      this.#mailbox.push(outcome);
    }
  }

  #receive(): Promise<SessionOutcome> {
    const queued = this.#mailbox.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }

  /** Waits `ms`; `stop` ends it with 'stop', and when `nudgeable`, a returning link ends it with 'ready'. */
  #wait(ms: number, nudgeable = false): Promise<SessionOutcome> {
    if (this.#stopped) return Promise.resolve('stop');
    return new Promise((resolve) => {
      const end = (outcome: SessionOutcome) => {
        this.#wake = undefined;
        this.#nudge = undefined;
        timer.cancel();
        resolve(outcome);
      };
      const timer = this.#platform.clock.setTimer(ms, () => end('ready'));
      this.#wake = () => end('stop');
      if (nudgeable) this.#nudge = () => end('ready');
    });
  }

  // ── handlers ──────────────────────────────────────────────────────────────────────────

  #handle(state: SessionState): Promise<SessionOutcome> {
    if (this.#stopped) {
      this.#mailbox = [];
      return Promise.resolve('stop');
    }
    switch (state) {
      case 'starting':
        return this.#wait(this.#platform.random.next() * this.#config.bootDelayMaxSec * 1000);
      case 'connecting':
        return this.#connect();
      case 'hello-sent':
        return this.#hello();
      case 'managed':
      case 'unmanaged':
        return this.#receive();
      case 'rejected-waiting': {
        const wait = this.#lastWasAuth
          ? this.#authBackoff.next()
          : this.#retryAfterMs ?? this.#config.rejectedDefaultWaitSec * 1000;
        // Spread devices rejected at the same moment over up to a fifth of the wait (≤ 60 s).
        const jitter = this.#lastWasAuth ? 0 : this.#platform.random.next() * Math.min(wait / 5, 60_000);
        this.#log.info({ waitMs: Math.round(wait + jitter), auth: this.#lastWasAuth }, 'waiting before reconnecting');
        return this.#wait(wait + jitter);
      }
      case 'backing-off': {
        const lasted = this.#platform.clock.now() - this.#connectedAt;
        if (this.#connectedAt > 0 && lasted >= this.#config.stableSessionSec * 1000) this.#backoff.reset();
        return this.#wait(this.#backoff.next(), true);
      }
      case 'stopped':
        return Promise.resolve('stop');
    }
  }

  async #connect(): Promise<SessionOutcome> {
    this.#mailbox = [];
    const dialing = new AbortController();
    this.#dialing = dialing;
    const signal = dialing.signal;
    if (this.#stopped) return 'stop';
    try {
      const connection = await pRetry(
        async () => {
          if (!this.#platform.network.reachable()) throw new AgentError('AGENT_LINK_DOWN');
          const profile = this.#hooks.profile();
          try {
            return await this.#transport.dial({
              url: profile.serverUrl,
              caPem: profile.caCertPem,
              timeoutMs: this.#config.connectTimeoutSec * 1000,
              allowInsecure: this.#config.allowInsecureTransport,
              signal,
              deviceId: profile.deviceId,
              credential: profile.credential,
              ...(profile.mqttVersion ? { mqttVersion: profile.mqttVersion } : {}),
              // The broker's keep-alive paces like the application ping: the latest the server set.
              keepAliveSec: (this.welcome?.session ?? profile.keepAlive ?? DEFAULT_SESSION).pingIntervalSec,
            });
          } catch (error) {
            if (signal.aborted) throw new AbortError('stopping');
            if (error instanceof DialError && error.kind === 'auth') throw new AbortError(error);
            throw new AgentError('AGENT_CONNECT_FAILED', (error as Error).message);
          }
        },
        {
          retries: Number.POSITIVE_INFINITY,
          // p-retry drives the attempts; the delay is ours: full jitter on the injected clock.
          minTimeout: 0,
          factor: 1,
          signal,
          onFailedAttempt: async ({ error, attemptNumber }) => {
            const delay = this.#backoff.next();
            this.#log.info({ attempt: attemptNumber, code: (error as AgentError).code, delayMs: Math.round(delay) }, 'connect failed');
            if ((await this.#wait(delay, true)) === 'stop') throw new AbortError('stopping');
          },
        },
      );
      this.#attach(connection);
      return 'connected';
    } catch (error) {
      if (signal.aborted || this.#stopped) return 'stop';
      if (error instanceof DialError && error.kind === 'auth') {
        this.#log.warn('credential refused in the handshake');
        this.#lastWasAuth = true;
        return 'auth-failed';
      }
      throw error;
    } finally {
      this.#dialing = undefined;
    }
  }

  #attach(connection: ChannelConnection): void {
    this.#connection = connection;
    this.#connectedAt = this.#platform.clock.now();
    this.welcome = undefined;
    const profile = this.#hooks.profile();
    const params = profile.keepAlive ?? DEFAULT_SESSION;
    const keepalive = new Keepalive(
      this.#platform.clock,
      params,
      () => connection.send(encode(createMessage('ping', {}, { id: this.#platform.random.uuid(), sentAt: this.#platform.clock.now() }), { validate: false })),
      () => {
        this.#log.warn('no pong within the pong timeout: link is half-open');
        connection.close(CloseCodes.PONG_TIMEOUT, 'pong timeout');
      },
    );
    this.#keepalive = keepalive;
    const dropAfter = this.#platform.faults.faults.connection?.dropAfterMs;
    if (dropAfter !== undefined) {
      this.#dropTimer = this.#platform.clock.setTimer(dropAfter, () => connection.close(CloseCodes.GOING_AWAY, 'fault: flapping link'));
    }
    connection.onMessage = (data) => {
      keepalive.heard();
      this.#onFrame(connection, data);
    };
    connection.onClose = (code, reason) => {
      keepalive.stop();
      if (this.#connection !== connection) {
        // A connection the session already gave up on (a rejected welcome, a licence change to
        // rejected) and has since replaced: its late end says nothing about the current one, and
        // posting it would end the new connection's hello wait while that connection stays open.
        this.#log.debug({ code, reason }, 'an earlier connection closed');
        return;
      }
      this.#dropTimer?.cancel();
      this.#connection = undefined;
      this.lastClose = { code, reason };
      this.#log.info({ code, reason, state: this.state }, 'channel closed');
      if (code === CloseCodes.AUTH_FAILED || code === CloseCodes.UNSUPPORTED_VERSION) {
        this.#lastWasAuth = true;
        this.#post('auth-failed');
      } else if (code === CloseCodes.REJECTED) {
        this.#lastWasAuth = false;
        this.#post('rejected');
      } else {
        this.#post('closed');
      }
    };
  }

  async #hello(): Promise<SessionOutcome> {
    const connection = this.#connection;
    if (!connection) return 'closed';
    const hello = createMessage('hello', await this.#hooks.hello(), {
      id: this.#platform.random.uuid(),
      sentAt: this.#platform.clock.now(),
    });
    this.#helloId = hello.id;
    connection.send(encode(hello));
    const timer = this.#platform.clock.setTimer(this.#config.helloTimeoutSec * 1000, () => {
      this.#log.warn('no welcome in time');
      connection.close(CloseCodes.NORMAL, 'hello timeout');
    });
    const outcome = await this.#receive();
    timer.cancel();
    return outcome;
  }

  #onFrame(connection: ChannelConnection, data: string): void {
    const message = decode(data, { accept: 'down' });
    if (!isMessage(message)) {
      const correlationId = correlationIdOf(message, data);
      this.#log.warn({ code: message.code }, 'bad frame from the server');
      const reply = createMessage('error', errorReplyBody(message), {
        id: this.#platform.random.uuid(),
        sentAt: this.#platform.clock.now(),
        ...(correlationId ? { correlationId } : {}),
      });
      connection.send(encode(reply, { validate: false }));
      return;
    }
    switch (message.type) {
      case 'ping':
        connection.send(
          encode(createMessage('pong', {}, { id: this.#platform.random.uuid(), correlationId: message.id, sentAt: this.#platform.clock.now() }), {
            validate: false,
          }),
        );
        return;
      case 'pong': {
        const waiter = message.correlationId ? this.#pongWaiters?.get(message.correlationId) : undefined;
        if (waiter) {
          this.#pongWaiters!.delete(message.correlationId!);
          waiter();
        }
        return;
      }
      case 'welcome':
        this.#onWelcome(message);
        return;
      case 'licence-change': {
        const admission = message.body.admission;
        if (!this.connected || admission === this.state) return;
        this.#log.info({ admission, reason: message.body.reason }, 'licence changed');
        this.#post(admission === 'rejected' ? 'rejected' : admission);
        return;
      }
      case 'settings':
        if (message.body.session) this.#applySession(message.body.session);
        if (this.connected) this.#hooks.message(message);
        return;
      default:
        if (this.connected) this.#hooks.message(message);
    }
  }

  #onWelcome(message: MessageOf<'welcome'>): void {
    if (this.state !== 'hello-sent') return;
    if (message.correlationId !== this.#helloId) {
      // A broker delivers what it queued for an earlier link right after it connects: a welcome
      // that answered an earlier hello says nothing about this one (its admission may be stale).
      this.#log.debug({ correlationId: message.correlationId }, 'welcome for an earlier hello ignored');
      return;
    }
    const body = message.body;
    this.welcome = body;
    this.#applySession(body.session);
    this.#lastWasAuth = false;
    if (body.admission === 'rejected') {
      this.licensingRejections++;
      this.#retryAfterMs = (body.retryAfterSec ?? this.#config.rejectedDefaultWaitSec) * 1000;
      this.#log.info({ reason: body.reason, retryAfterSec: body.retryAfterSec }, 'admission rejected');
      this.#connection?.close(CloseCodes.NORMAL, 'rejected');
      this.#post('rejected');
      return;
    }
    this.#retryAfterMs = undefined;
    this.epoch++;
    this.#post(body.admission);
  }

  #applySession(params: SessionParameters): void {
    this.#keepalive?.update(params);
  }
}
