import type { Server } from 'node:http';
import {
  CloseCodes,
  createMessage,
  decode,
  encode,
  type Message,
  type MessageType,
  ProtocolError,
} from '@router-fleet/protocol';
import type { Logger } from 'pino';
import type { AdmissionService } from '../admission/service.js';
import type { ReleaseCause } from '../admission/types.js';
import type { Clock } from '../clock.js';
import type { ServerConfig } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { TrustAnchorService } from '../pki/trust-anchors.js';
import type { ChannelRepository } from '../store/channel.js';
import type { DeviceStatusBuffer } from '../store/device-status.js';
import { TickBatch } from '../tick-batch.js';
import { AdmissionGate } from './admission-gate.js';
import { AnchorOffers } from './anchors.js';
import { BadInput } from './bad-input.js';
import { WsEndpoint } from './handshake.js';
import type { ChannelHub, MessageHandler, SessionEvent, SessionInfo } from './hub.js';
import { Ingest } from './ingest.js';
import { KeepAlive } from './keep-alive.js';
import { NoticeDelivery } from './notice-delivery.js';
import type { NoticeBus } from './notices.js';
import { Session, Sessions } from './session.js';
import { CLOSE_GRACE_MS, SessionIo } from './session-io.js';
import type { ChannelTransport, LinkEndCause, LinkEvents } from './transport.js';

/** A failed batch of lease releases is retried after 1 s, then backing off to at most 30 s. */
const RELEASE_RETRY_FIRST_MS = 1_000;
const RELEASE_RETRY_MAX_MS = 30_000;

/** Whom the channel reports session changes to (the cluster primary, to release a crashed worker's devices). */
export interface SessionRegistry {
  opened(deviceUuid: string): void;
  closed(deviceUuid: string): void;
}

export interface ChannelDeps {
  readonly config: Pick<ServerConfig, 'channelSweepMs' | 'helloTimeoutMs' | 'channelMaxBadMessages' | 'channelMaxBufferedBytes'>;
  readonly clock: Clock;
  readonly metrics: Metrics;
  /** Admission of hellos, release of leases, presence of heard devices. */
  readonly admission: Pick<AdmissionService, 'startAdmission' | 'releaseMany' | 'presence'>;
  /** Admission, settings and trust-anchor changes for open sessions. */
  readonly notices: Pick<NoticeBus, 'subscribe'>;
  readonly trust: Pick<TrustAnchorService, 'forAccount' | 'forget' | 'reload'>;
  /** The channel's reads and writes (store/channel.ts). */
  readonly repository: Pick<ChannelRepository, 'deviceFacts' | 'accountKey' | 'recordDeviceEvents'>;
  /** Hello summaries and status, written with the presence flush. */
  readonly status: Pick<DeviceStatusBuffer, 'hello' | 'status' | 'flush'>;
  readonly log: Logger;
  /** Monotonic milliseconds for keep-alive timing (default performance.now); tests move it. */
  readonly monotonic?: (() => number) | undefined;
  readonly registry?: SessionRegistry | undefined;
  /** Extra 101-response header naming this process (cluster mode, so tests can tell workers apart). */
  readonly workerTag?: string | undefined;
}

/**
 * The control channel. Each link (WebSocket today, see `transport.ts`) is one {@link Session} in
 * one state of the session table (`session-table.ts`, docs/channel-session.md); the pieces are the
 * handshake (`handshake.ts`), the keep-alive sweep (`keep-alive.ts`), the admission gate
 * (`admission-gate.ts`: hello → welcome), ingest (`ingest.ts`: status, events, acks) and trust
 * anchors (`anchors.ts`), bad input (`bad-input.ts`) and notices (`notice-delivery.ts`). This class
 * routes frames to them, opens and ends sessions, shuts down, and implements {@link ChannelHub}
 * for the job dispatcher.
 */
export class ControlChannel implements ChannelHub {
  readonly #deps: ChannelDeps;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #mono: () => number;
  readonly #sessions = new Sessions();
  readonly #io: SessionIo;
  readonly #keepAlive: KeepAlive;
  readonly #gate: AdmissionGate;
  readonly #ingest: Ingest;
  readonly #anchors: AnchorOffers;
  readonly #badInput: BadInput;
  readonly #endpoint: WsEndpoint;
  readonly #handlers = new Map<string, Set<MessageHandler<MessageType>>>();
  readonly #sessionListeners = new Set<(event: SessionEvent, session: SessionInfo) => void>();
  readonly #releases = new TickBatch<string>((uuids) => this.#flushReleases(uuids, 'disconnect'));
  /** Devices whose links the server lost itself (a lost MQTT broker): their seats are held. */
  readonly #outageReleases = new TickBatch<string>((uuids) => this.#flushReleases(uuids, 'server-outage'));
  /** During shutdown: whom to tell when a session's link has ended. */
  readonly #endWaiters = new Map<Session, () => void>();
  /** Release batches that failed in a row (their retry backs off). */
  #releaseFailures = 0;
  #timer: NodeJS.Timeout | undefined;
  #shuttingDown = false;
  readonly #offNotices: () => void;

  constructor(deps: ChannelDeps) {
    this.#deps = deps;
    const { clock, metrics, log } = deps;
    this.#log = log;
    this.#metrics = metrics;
    const monotonic = deps.monotonic ?? (() => performance.now());
    this.#mono = monotonic;
    const sessions = this.#sessions;
    const io = new SessionIo({ sessions, metrics, clock, monotonic, maxBufferedBytes: deps.config.channelMaxBufferedBytes });
    this.#io = io;
    this.#keepAlive = new KeepAlive({ sessions, io, clock, monotonic, helloTimeoutMs: deps.config.helloTimeoutMs });
    this.#anchors = new AnchorOffers({ trust: deps.trust, accountKey: (uuid) => deps.repository.accountKey(uuid), clock, log, sessions, io });
    this.#gate = new AdmissionGate({
      admission: deps.admission,
      deviceFacts: (uuids) => deps.repository.deviceFacts(uuids),
      status: deps.status,
      clock,
      metrics,
      log,
      sessions,
      io,
      opened: (s) => this.#opened(s),
      release: (uuids, cause) => {
        const batch = cause === 'server-outage' ? this.#outageReleases : this.#releases;
        for (const u of uuids) batch.push(u);
      },
    });
    this.#ingest = new Ingest({
      status: deps.status,
      events: deps.repository,
      clock,
      log,
      io,
      anchorsReported: (s) => this.#anchors.offer(s),
    });
    this.#endpoint = new WsEndpoint({
      metrics,
      shuttingDown: () => this.#shuttingDown,
      accept: (transport) => this.accept(transport),
      workerTag: deps.workerTag,
    });
    this.#badInput = new BadInput({ io, metrics, maxBadMessages: deps.config.channelMaxBadMessages });
    const notices = new NoticeDelivery({
      sessions,
      io,
      clock,
      anchors: this.#anchors,
      admissionChanged: (s) => {
        for (const l of this.#sessionListeners) l('admission', s);
      },
    });
    this.#offNotices = deps.notices.subscribe((n) => notices.deliver(n));
    metrics.counter('fleet_channel_connections_total', 'WebSocket handshakes accepted on /api/channel.');
    metrics.counter('fleet_channel_handshakes_refused_total', 'Upgrade requests refused, by reason.');
    metrics.counter('fleet_channel_errors_total', 'Bad input on the control channel, by code.');
    metrics.counter('fleet_channel_closes_total', 'Sessions closed by the server, by close code.');
    metrics.gauge('fleet_channel_sessions', 'Admitted control-channel sessions open (all workers).', () => sessions.admittedCount);
  }

  // ── ChannelHub ───────────────────────────────────────────────────────────────────────────

  /** Connections whose hello has not been decided yet (the admission backlog after a restart). */
  get backlog(): number {
    return this.#sessions.count('awaiting-hello') + this.#sessions.count('admitting');
  }

  get size(): number {
    return this.#sessions.admittedCount;
  }

  isConnected(deviceUuid: string): boolean {
    return this.#sessions.open(deviceUuid) !== undefined;
  }

  session(deviceUuid: string): SessionInfo | undefined {
    return this.#sessions.open(deviceUuid);
  }

  send(deviceUuid: string, message: Message): boolean {
    const s = this.#sessions.open(deviceUuid);
    if (!s) return false;
    return this.#io.send(s, encode(message));
  }

  sendText(deviceUuid: string, text: string): boolean {
    const s = this.#sessions.open(deviceUuid);
    if (!s) return false;
    return this.#io.send(s, text);
  }

  onMessage<T extends MessageType>(type: T, handler: MessageHandler<T>): () => void {
    let set = this.#handlers.get(type);
    if (!set) this.#handlers.set(type, (set = new Set()));
    const h = handler as unknown as MessageHandler<MessageType>;
    set.add(h);
    return () => set.delete(h);
  }

  onSession(listener: (event: SessionEvent, session: SessionInfo) => void): () => void {
    this.#sessionListeners.add(listener);
    return () => this.#sessionListeners.delete(listener);
  }

  // ── lifecycle ────────────────────────────────────────────────────────────────────────────

  /** Serves the WebSocket endpoint on `server` (call before listening); starts the sweep timer. */
  attach(server: Server): void {
    this.#endpoint.attach(server);
    this.#timer ??= setInterval(() => this.sweep(), this.#deps.config.channelSweepMs);
    this.#timer.unref();
  }

  /**
   * A new link from any transport: a session in `awaiting-hello`. The transport reports the
   * link's frames and its end to the returned sink.
   */
  accept(transport: ChannelTransport): LinkEvents {
    const s = new Session(transport, this.#mono());
    this.#sessions.add(s);
    return {
      frame: (data, isBinary) => this.#onFrame(s, data, isBinary),
      failed: (code) => this.#metrics.inc('fleet_channel_errors_total', { code }),
      ended: (cause) => this.#onEnded(s, cause),
    };
  }

  /**
   * Graceful shutdown: closes every session with `code` (GOING_AWAY, or SERVICE_RESTART for a
   * restart), releases their leases in one transaction (they keep their seats for the grace
   * period), writes buffered status, and ends what has not closed within CLOSE_GRACE_MS.
   */
  async close(code: number = CloseCodes.GOING_AWAY): Promise<void> {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    this.#offNotices();
    const all = [...this.#sessions.live()];
    const released: Session[] = [];
    const ended = all.map((s) => new Promise<void>((resolve) => this.#endWaiters.set(s, resolve)));
    for (const s of all) {
      const state = s.state;
      if (state === 'open' || state === 'closing') released.push(s);
      if (state !== 'replaced' && state !== 'refusing') this.#sessions.move(s, 'shutdown');
      s.transport.close(code, code === CloseCodes.SERVICE_RESTART ? 'server restarting' : 'server shutting down');
    }
    this.#metrics.inc('fleet_channel_closes_total', { code: String(code) }, released.length);
    try {
      if (released.length) this.#deps.admission.releaseMany(released.map((s) => s.deviceUuid), this.#deps.clock.now());
      for (const s of released) this.#deps.registry?.closed(s.deviceUuid);
      this.#releases.drain();
      this.#outageReleases.drain();
      this.#ingest.drain();
      this.flush();
    } catch (err) {
      this.#log.error({ err }, 'channel shutdown: store write failed');
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(ended),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
    ]);
    clearTimeout(timer);
    for (const s of this.#endWaiters.keys()) s.transport.terminate();
    this.#endWaiters.clear();
    if (this.#timer) clearInterval(this.#timer);
    this.#endpoint.close();
  }

  /**
   * Ends every open session with SERVICE_RESTART while the process keeps serving: their devices
   * reconnect and say hello again, and admission decides their seats afresh. For a process that
   * another host declared dead (hosts/membership.ts): the leases of the devices it served went into
   * their grace period, and a session kept open would go on serving a device as managed after the
   * sweep gave its seat away. Returns how many sessions were closed.
   */
  reconnectAll(reason: string): number {
    const open = [...this.#sessions.admitted()].filter((s) => s.state === 'open');
    for (const s of open) this.#io.close(s, CloseCodes.SERVICE_RESTART, reason);
    return open.length;
  }

  /** Writes buffered status (called with the presence flush). */
  flush(): void {
    this.#deps.status.flush();
  }

  /** One keep-alive pass over all sessions (keep-alive.ts); the timer calls it every `channelSweepMs`. */
  sweep(): void {
    this.#keepAlive.sweep();
  }

  // ── frames ───────────────────────────────────────────────────────────────────────────────

  #onFrame(s: Session, data: Buffer, isBinary: boolean): void {
    // A refused or ended session takes nothing more; one being closed after admission (or replaced)
    // is still the device's own: what it sent before its close arrived is taken.
    if (s.state === 'closed' || s.state === 'refusing') return;
    this.#metrics.inc('fleet_messages_in_total');
    s.lastHeardAt = this.#mono();
    if (isBinary) return this.#badInput.binary(s);
    const msg = decode(data, { accept: 'up' });
    if (msg instanceof ProtocolError) return this.#badInput.message(s, msg, data);
    if (s.state === 'admitting') return;
    if (s.state === 'awaiting-hello') {
      if (msg.type !== 'hello') {
        this.#io.error(s, 'SERVER_HELLO_REQUIRED', `expected hello, got ${msg.type}`, msg.id);
        return this.#io.close(s, CloseCodes.HELLO_REQUIRED, 'hello required');
      }
      return this.#gate.hello(s, msg);
    }
    s.badInRow = 0;
    this.#keepAlive.heard(s);
    const now = this.#deps.clock.now();
    this.#deps.admission.presence.seen(s.deviceKey, now);
    switch (msg.type) {
      case 'hello':
        this.#io.error(s, 'SERVER_UNEXPECTED_MESSAGE', 'hello was already received on this session', msg.id);
        return;
      case 'ping':
        this.#io.send(s, encode(createMessage('pong', {}, { correlationId: msg.id, sentAt: now }), { validate: false }));
        break;
      case 'status':
        this.#ingest.status(s, msg, now);
        break;
      case 'event':
        this.#ingest.event(s, msg);
        break;
      case 'error':
        this.#log.debug({ device: s.deviceUuid, code: msg.body.code }, 'device reported an error');
        break;
      default:
        break;
    }
    const handlers = this.#handlers.get(msg.type);
    if (handlers) {
      for (const h of handlers) {
        try {
          h(msg, s);
        } catch (err) {
          this.#log.error({ err, device: s.deviceUuid, type: msg.type }, 'channel message handler failed');
        }
      }
    }
  }

  // ── opening and ending ───────────────────────────────────────────────────────────────────

  /**
   * Devices whose links ended a moment before the server lost its way to them, as part of that
   * loss (a broker shutting down publishes every device's will before it closes the server's own
   * connections): their seats join the seat hold like those of the links the loss ended. A device
   * connected again by the time the batch is written is left alone.
   */
  lostWithServer(deviceUuids: readonly string[]): void {
    for (const u of deviceUuids) this.#outageReleases.push(u);
  }

  /** The admission gate welcomed `s`. */
  #opened(s: Session): void {
    this.#anchors.offer(s, s.connectedAt);
    this.#deps.registry?.opened(s.deviceUuid);
    for (const l of this.#sessionListeners) l('opened', s);
  }

  #onEnded(s: Session, cause: LinkEndCause | undefined): void {
    const waiter = this.#endWaiters.get(s);
    if (waiter) {
      this.#endWaiters.delete(s);
      waiter();
    }
    // Shut down: its lease was released with all the others.
    if (s.state === 'closed') return;
    const from = s.state;
    s.endCause = cause;
    this.#sessions.move(s, 'ended');
    if (from !== 'open' && from !== 'closing') return;
    this.#deps.registry?.closed(s.deviceUuid);
    for (const l of this.#sessionListeners) l('closed', s);
    // Releases of one tick go to the store in one transaction.
    (cause === 'server-outage' ? this.#outageReleases : this.#releases).push(s.deviceUuid);
  }

  #flushReleases(queued: string[], cause: ReleaseCause): void {
    // A device that reconnected meanwhile keeps its lease.
    const uuids = queued.filter((u) => !this.#sessions.ofDevice(u));
    if (uuids.length === 0) return;
    try {
      const held = this.#deps.admission.releaseMany(uuids, this.#deps.clock.now(), cause);
      this.#releaseFailures = 0;
      if (held > 0) this.#log.info({ held }, 'seat hold: managed devices lost with the MQTT broker keep their seats until the fleet is back');
    } catch (err) {
      // The store could not take them now (busy, unreachable): the leases stay open, neither in
      // their grace period nor held, so they are retried with backoff until it can. When the
      // server shuts down meanwhile, the next start's restart hold takes them.
      const delayMs = Math.min(RELEASE_RETRY_MAX_MS, RELEASE_RETRY_FIRST_MS * 2 ** this.#releaseFailures++);
      this.#log.error({ err, count: uuids.length, retryInMs: delayMs }, 'releasing leases failed; retrying');
      const batch = cause === 'server-outage' ? this.#outageReleases : this.#releases;
      setTimeout(() => {
        if (this.#shuttingDown) return;
        for (const u of uuids) batch.push(u);
      }, delayMs).unref();
    }
  }
}
