import { TickBatch } from '../tick-batch.js';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  CloseCodes,
  correlationIdOf as correlationOf,
  createMessage,
  decode,
  encode,
  errorReplyBody,
  MAX_FRAME_BYTES,
  type Message,
  type MessageOf,
  type MessageType,
  ProtocolError,
  WS_SUBPROTOCOL,
} from '@router-fleet/protocol';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import type { AdmitResult } from '../admission/types.js';
import { sessionParams } from '../devices/keep-alive.js';
import type { ServerErrorCode } from '../errors.js';
import { CHANNEL_PATH } from '../profiles/service.js';
import type { Services } from '../services.js';
import { DeviceStatusBuffer } from '../store/device-status.js';
import { AccountEvents } from '../store/events.js';
import type { ChannelHub, MessageHandler, SessionEvent, SessionInfo } from './hub.js';
import type { Notice } from './notices.js';

/** Time for a close handshake before the socket is destroyed (ms). */
const CLOSE_GRACE_MS = 2_000;

/** Whom the channel reports session changes to (the cluster primary, to release a crashed worker's devices). */
export interface SessionRegistry {
  opened(deviceUuid: string): void;
  closed(deviceUuid: string): void;
}

export interface ChannelDeps {
  readonly services: Services;
  readonly log: Logger;
  /** Monotonic milliseconds for keep-alive timing (default performance.now); tests move it. */
  readonly monotonic?: () => number;
  readonly registry?: SessionRegistry;
  /** Extra 101-response header naming this process (cluster mode, so tests can tell workers apart). */
  readonly workerTag?: string;
}

type State = 'awaiting-hello' | 'open' | 'closed';

/** Most hellos admitted in one transaction (group commit); more wait for the next tick. */
const HELLO_BATCH_MAX = 256;

/**
 * One connection. Kept small: the server holds tens of thousands. No timers per session: the one
 * sweep (`sweep()`) reads `lastHeardAt`/`pingSentAt`/`closeBy`.
 */
class Session implements SessionInfo {
  state: State = 'awaiting-hello';
  deviceUuid = '';
  deviceKey = 0;
  accountId = '';
  accountKey = 0;
  admission: 'managed' | 'unmanaged' = 'managed';
  connectedAt = 0;
  lastHeardAt: number;
  pingIntervalMs = 0;
  pongTimeoutMs = 0;
  /** Id of the ping awaiting its pong, or null. */
  pingId: string | null = null;
  pingSentAt = 0;
  /** Set when the server closed it: destroy the socket if the close handshake has not ended by then. */
  closeBy = 0;
  badInRow = 0;
  /** Replaced by a newer connection of the same device: its close must not release the lease. */
  replaced = false;
  /** Its hello waits in the admission batch: further frames are ignored until the welcome. */
  admitting = false;
  /** `trustAnchorsDigest` the device last reported (hello, status); undefined for agents before 1.1. */
  anchorsDigest: string | undefined;
  /** Digest of the last `trust-anchors` sent on this session: each set is offered once per session. */
  anchorsSent: string | undefined;

  constructor(
    readonly ws: WebSocket,
    readonly openedAt: number,
  ) {
    this.lastHeardAt = openedAt;
  }
}

const WELCOME_REASONS = {
  'licence-limit': ['LICENCE_LIMIT', 'All licences are in use by devices that connected earlier.'],
  'no-free-licence': ['LICENCE_UNAVAILABLE', 'No licence is free; retry later.'],
  'no-active-licence': ['NO_ACTIVE_LICENCE', 'The account has no active licence.'],
} as const;

interface DeviceFacts {
  id: number;
  account_id: number;
  serial_number: string;
  ping_interval: number;
  pong_timeout: number;
  session_timeout: number;
  settings: string;
}

/**
 * The control channel: WebSocket endpoint `/api/channel` on the server's own
 * HTTP(S) listener. Handshake checks, hello → admission → welcome, keep-alive with one sweep
 * timer, status and event ingestion, admission and settings notices, slow-consumer and bad-input
 * handling. Implements {@link ChannelHub} for the job dispatcher.
 */
export class ControlChannel implements ChannelHub {
  readonly #wss: WebSocketServer;
  readonly #services: Services;
  readonly #log: Logger;
  readonly #mono: () => number;
  readonly #registry: SessionRegistry | undefined;
  readonly #pending = new Set<Session>();
  readonly #hellos = new TickBatch<{ s: Session; msg: MessageOf<'hello'>; facts: DeviceFacts; now: number }>(
    (batch) => this.#flushHellos(batch),
    HELLO_BATCH_MAX,
  );

  readonly #sessions = new Map<string, Session>();
  readonly #byAccount = new Map<string, Set<Session>>();
  /** Sessions the server closed, awaiting the end of the close handshake. */
  readonly #closing = new Set<Session>();
  readonly #handlers = new Map<string, Set<MessageHandler<MessageType>>>();
  readonly #sessionListeners = new Set<(event: SessionEvent, session: SessionInfo) => void>();
  readonly #status: DeviceStatusBuffer;
  readonly #events = new TickBatch<{ s: Session; msg: MessageOf<'event'> }>((batch) => this.#flushEvents(batch));
  readonly #releases = new TickBatch<string>((uuids) => this.#flushReleases(uuids));
  #timer: NodeJS.Timeout | undefined;
  #shuttingDown = false;
  readonly #offNotices: () => void;
  readonly #factsStmt;
  readonly #accountKeyStmt;

  constructor(deps: ChannelDeps) {
    this.#services = deps.services;
    this.#log = deps.log;
    this.#mono = deps.monotonic ?? (() => performance.now());
    this.#registry = deps.registry;
    this.#status = new DeviceStatusBuffer(deps.services.store);
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      handleProtocols: (offered) => (offered.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    });
    if (deps.workerTag) {
      const tag = deps.workerTag;
      this.#wss.on('headers', (headers) => headers.push(`X-Fleet-Worker: ${tag}`));
    }
    this.#offNotices = deps.services.notices.subscribe((n) => this.#onNotice(n));
    this.#accountKeyStmt = deps.services.store.stmt<{ id: number }>('SELECT id FROM accounts WHERE uuid = ?');
    this.#factsStmt = deps.services.store.stmt<DeviceFacts>(
      `SELECT d.id, d.account_id, d.serial_number, d.ping_interval, d.pong_timeout, d.session_timeout, a.settings
       FROM devices d JOIN accounts a ON a.id = d.account_id WHERE d.uuid = ?`,
    );
    const m = deps.services.metrics;
    m.counter('fleet_channel_connections_total', 'WebSocket handshakes accepted on /api/channel.');
    m.counter('fleet_channel_handshakes_refused_total', 'Upgrade requests refused, by reason.');
    m.counter('fleet_channel_errors_total', 'Bad input on the control channel, by code.');
    m.counter('fleet_channel_closes_total', 'Sessions closed by the server, by close code.');
    m.gauge('fleet_channel_sessions', 'Admitted control-channel sessions open (all workers).', () => this.#sessions.size);
  }

  // ── ChannelHub ───────────────────────────────────────────────────────────────────────────

  /** Connections whose hello has not been decided yet (the admission backlog after a restart). */
  get backlog(): number {
    return this.#pending.size;
  }

  get size(): number {
    return this.#sessions.size;
  }

  isConnected(deviceUuid: string): boolean {
    return this.#sessions.get(deviceUuid)?.state === 'open';
  }

  session(deviceUuid: string): SessionInfo | undefined {
    const s = this.#sessions.get(deviceUuid);
    return s && s.state === 'open' ? s : undefined;
  }

  send(deviceUuid: string, message: Message): boolean {
    const s = this.#sessions.get(deviceUuid);
    if (!s || s.state !== 'open') return false;
    return this.#send(s, encode(message));
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

  /** Handles `upgrade` on the server (call before listening); starts the sweep timer. */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.#timer ??= setInterval(() => this.sweep(), this.#services.config.channelSweepMs);
    this.#timer.unref();
  }

  /**
   * Graceful shutdown: closes every session with `code` (GOING_AWAY, or SERVICE_RESTART for a
   * restart), releases their leases in one transaction (they keep their seats for the grace
   * period), writes buffered status, and destroys what has not closed within CLOSE_GRACE_MS.
   */
  async close(code: number = CloseCodes.GOING_AWAY): Promise<void> {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    this.#offNotices();
    const all = [...this.#pending, ...this.#sessions.values(), ...this.#closing];
    const open = [...this.#sessions.values()];
    for (const s of open) s.state = 'closed';
    this.#sessions.clear();
    this.#byAccount.clear();
    this.#pending.clear();
    const closed = all.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.ws.readyState === WebSocket.CLOSED) return resolve();
          s.ws.once('close', () => resolve());
          s.ws.close(code, code === CloseCodes.SERVICE_RESTART ? 'server restarting' : 'server shutting down');
        }),
    );
    this.#services.metrics.inc('fleet_channel_closes_total', { code: String(code) }, open.length);
    try {
      if (open.length) this.#services.admission.releaseMany(open.map((s) => s.deviceUuid), this.#services.clock.now());
      for (const s of open) this.#registry?.closed(s.deviceUuid);
      this.#releases.drain();
      this.#events.drain();
      this.flush();
    } catch (err) {
      this.#log.error({ err }, 'channel shutdown: store write failed');
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(closed),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
    ]);
    clearTimeout(timer);
    for (const s of all) if (s.ws.readyState !== WebSocket.CLOSED) s.ws.terminate();
    if (this.#timer) clearInterval(this.#timer);
    this.#wss.close();
  }

  /** Writes buffered status (called with the presence flush). */
  flush(): void {
    this.#status.flush();
  }

  /**
   * The one keep-alive timer for all sessions: hello deadlines, pings after `pingIntervalSec` of
   * silence, pong timeouts (close 4008: a half-open link), and the end of close
   * handshakes that never finish. Cost: one pass over the sessions per `channelSweepMs`.
   */
  sweep(): void {
    const t = this.#mono();
    const helloTimeout = this.#services.config.helloTimeoutMs;
    // Overdue sessions are closed only after the next I/O poll: timers run before pending socket
    // reads, so on a busy server a hello or pong already in the socket buffer would otherwise be
    // taken for silence. setImmediate runs after the poll phase, when those bytes have been read.
    const noHello: Session[] = [];
    const noPong: Session[] = [];
    for (const s of this.#pending) {
      if (t - s.openedAt >= helloTimeout && !s.admitting) noHello.push(s);
    }
    for (const s of this.#sessions.values()) {
      if (s.pingId !== null) {
        if (t - s.pingSentAt >= s.pongTimeoutMs) noPong.push(s);
      } else if (t - s.lastHeardAt >= s.pingIntervalMs) {
        const ping = createMessage('ping', {}, { sentAt: this.#services.clock.now() });
        s.pingId = ping.id;
        s.pingSentAt = t;
        this.#send(s, encode(ping, { validate: false }));
      }
    }
    if (noHello.length + noPong.length > 0) {
      setImmediate(() => {
        for (const s of noHello) {
          if (!this.#pending.has(s) || s.admitting || s.closeBy !== 0) continue;
          this.#error(s, 'SERVER_HELLO_REQUIRED', 'no hello within the hello timeout');
          this.#closeSession(s, CloseCodes.HELLO_REQUIRED, 'hello timeout');
        }
        for (const s of noPong) {
          if (s.pingId !== null && this.#sessions.get(s.deviceUuid) === s) this.#closeSession(s, CloseCodes.PONG_TIMEOUT, 'pong timeout');
        }
      });
    }
    for (const s of this.#closing) {
      if (s.ws.readyState === WebSocket.CLOSED) this.#closing.delete(s);
      else if (t >= s.closeBy) {
        this.#closing.delete(s);
        s.ws.terminate();
      }
    }
  }

  // ── handshake ────────────────────────────────────────────────────────────────────────────

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?', 1)[0];
    if (path !== CHANNEL_PATH) return this.#refuse(socket, 404, 'Not Found', 'not-found');
    if (this.#shuttingDown) return this.#refuse(socket, 503, 'Service Unavailable', 'shutting-down');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim());
    // Without the subprotocol (which names the major version) the handshake fails: the client
    // speaks another or no version of the protocol.
    if (!offered.includes(WS_SUBPROTOCOL)) {
      return this.#refuse(socket, 400, 'Bad Request', 'subprotocol', `Sec-WebSocket-Protocol must offer ${WS_SUBPROTOCOL}`);
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onConnection(ws));
  }

  #refuse(socket: Duplex, status: number, text: string, reason: string, body = text): void {
    this.#services.metrics.inc('fleet_channel_handshakes_refused_total', { reason });
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\n`
        + `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  }

  #onConnection(ws: WebSocket): void {
    const s = new Session(ws, this.#mono());
    this.#services.metrics.inc('fleet_channel_connections_total');
    this.#pending.add(s);
    ws.on('message', (data: Buffer, isBinary: boolean) => this.#onMessage(s, data, isBinary));
    ws.on('close', () => this.#onClose(s));
    // ws closes the connection itself (1009 too big, 1007 invalid UTF-8, 1002 bad frames) and then
    // reports why here; without a listener the process would crash.
    ws.on('error', (err: Error & { code?: string }) => {
      this.#services.metrics.inc('fleet_channel_errors_total', { code: err.code ?? 'WS_ERROR' });
    });
  }

  // ── messages ─────────────────────────────────────────────────────────────────────────────

  #onMessage(s: Session, data: Buffer, isBinary: boolean): void {
    if (s.state === 'closed') return;
    const m = this.#services.metrics;
    m.inc('fleet_messages_in_total');
    s.lastHeardAt = this.#mono();
    if (isBinary) {
      m.inc('fleet_channel_errors_total', { code: 'BINARY_FRAME' });
      return this.#closeSession(s, CloseCodes.PROTOCOL_ERROR, 'binary frames are not accepted');
    }
    const msg = decode(data, { accept: 'up' });
    if (msg instanceof ProtocolError) return this.#badMessage(s, msg, data);
    if (s.state === 'awaiting-hello') {
      if (s.admitting) return;
      if (msg.type !== 'hello') {
        this.#error(s, 'SERVER_HELLO_REQUIRED', `expected hello, got ${msg.type}`, msg.id);
        return this.#closeSession(s, CloseCodes.HELLO_REQUIRED, 'hello required');
      }
      return this.#hello(s, msg);
    }
    s.badInRow = 0;
    s.pingId = null; // anything heard proves the link; the next ping follows after a quiet interval
    const now = this.#services.clock.now();
    this.#services.admission.presence.seen(s.deviceKey, now);
    switch (msg.type) {
      case 'hello':
        this.#error(s, 'SERVER_UNEXPECTED_MESSAGE', 'hello was already received on this session', msg.id);
        return;
      case 'ping':
        this.#send(s, encode(createMessage('pong', {}, { correlationId: msg.id, sentAt: now }), { validate: false }));
        break;
      case 'status':
        this.#status.status(s.deviceKey, msg.body, now);
        if (msg.body.trustAnchorsDigest !== undefined && msg.body.trustAnchorsDigest !== s.anchorsDigest) {
          s.anchorsDigest = msg.body.trustAnchorsDigest;
          this.#offerAnchors(s, now);
        }
        break;
      case 'event':
        this.#events.push({ s, msg });
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

  #badMessage(s: Session, err: ProtocolError, data: Buffer): void {
    this.#services.metrics.inc('fleet_channel_errors_total', { code: err.code });
    const correlationId = correlationOf(err, data);
    switch (err.code) {
      case 'PROTO_TOO_LARGE':
        return this.#closeSession(s, CloseCodes.MESSAGE_TOO_BIG, 'frame too large');
      case 'PROTO_INVALID_UTF8':
        return this.#closeSession(s, CloseCodes.INVALID_PAYLOAD, 'invalid UTF-8');
      case 'PROTO_UNSUPPORTED_VERSION':
        this.#protoError(s, err, correlationId);
        return this.#closeSession(s, CloseCodes.UNSUPPORTED_VERSION, 'unsupported protocol version');
      default:
        break;
    }
    this.#protoError(s, err, correlationId);
    if (s.state === 'awaiting-hello') return this.#closeSession(s, CloseCodes.HELLO_REQUIRED, 'hello required');
    // Schema violations and unknown types keep the channel open (a newer peer may fall back);
    // a run of bad messages is garbage, not a peer speaking a newer minor version.
    if (++s.badInRow >= this.#services.config.channelMaxBadMessages) {
      this.#closeSession(s, CloseCodes.POLICY_VIOLATION, 'too many bad messages');
    }
  }

  #protoError(s: Session, err: ProtocolError, correlationId: string | undefined): void {
    const body = errorReplyBody(err);
    const opts = { sentAt: this.#services.clock.now(), ...(correlationId ? { correlationId } : {}) };
    this.#send(s, encode(createMessage('error', body, opts)));
  }

  #error(s: Session, code: ServerErrorCode, message: string, correlationId?: string): void {
    const opts = { sentAt: this.#services.clock.now(), ...(correlationId ? { correlationId } : {}) };
    this.#send(s, encode(createMessage('error', { code, message, retryable: false }, opts)));
  }

  // ── hello and admission ──────────────────────────────────────────────────────────────────

  #hello(s: Session, msg: MessageOf<'hello'>): void {
    const services = this.#services;
    const b = msg.body;
    const now = services.clock.now();
    const facts = this.#factsStmt.get(b.deviceId);
    if (!facts || facts.serial_number !== b.serialNumber) {
      services.metrics.inc('fleet_admissions_total', { outcome: 'denied' });
      return this.#admitted(s, msg, facts, now, { outcome: 'denied', reason: 'unknown-device', retryAfterSec: 3600 });
    }
    // Group commit: hellos arriving in the same tick are admitted in one transaction (one fsync),
    // in arrival order, so a reconnect storm is not bound by one fsync per device.
    s.admitting = true;
    this.#hellos.push({ s, msg, facts, now });
  }

  #flushHellos(batch: { s: Session; msg: MessageOf<'hello'>; facts: DeviceFacts; now: number }[]): void {
    let results: AdmitResult[];
    try {
      results = this.#services.admission.admitMany(
        batch.map(({ msg, now }) => ({ deviceUuid: msg.body.deviceId, credential: msg.body.credential, connectedAt: now })),
      );
    } catch (err) {
      // The store could not decide (e.g. SQLITE_BUSY: other processes held the write lock past
      // the busy timeout). Nothing was leased: the devices are asked to come back later and
      // reconnect with their backoff. Never a crash.
      this.#log.warn({ err, hellos: batch.length }, 'admission batch failed; devices asked to retry');
      this.#services.metrics.inc('fleet_errors_total', { code: 'SERVER_ADMISSION_BUSY' });
      for (const { s } of batch) {
        s.admitting = false;
        if (s.state !== 'closed') this.#closeSession(s, CloseCodes.TRY_AGAIN_LATER, 'server busy, try again later');
      }
      return;
    }
    const orphans: string[] = [];
    batch.forEach(({ s, msg, facts, now }, i) => {
      const result = results[i]!;
      s.admitting = false;
      if (s.state === 'closed') {
        // The socket closed while its hello waited: give back what was just leased.
        if (result.outcome === 'managed' || result.outcome === 'unmanaged') orphans.push(result.deviceUuid);
        return;
      }
      this.#admitted(s, msg, facts, now, result);
    });
    if (orphans.length > 0) this.#services.admission.releaseMany(orphans.filter((u) => !this.#sessions.has(u)));
  }

  #admitted(s: Session, msg: MessageOf<'hello'>, facts: DeviceFacts | undefined, now: number, result: AdmitResult): void {
    const b = msg.body;
    this.#pending.delete(s);
    if (result.outcome === 'denied') {
      this.#error(s, 'SERVER_DEVICE_AUTH_FAILED', 'device unknown or credential wrong', msg.id);
      return this.#closeSession(s, CloseCodes.AUTH_FAILED, 'authentication failed');
    }
    // Authenticated: a newer connection of the same device replaces the older one.
    const previous = this.#sessions.get(result.deviceUuid);
    if (previous) {
      previous.replaced = true;
      this.#forget(previous);
      this.#closeSession(previous, CloseCodes.REPLACED, 'replaced by a newer connection');
    }
    const session = sessionParams(facts!);
    const analyticsConsent = consentOf(facts!.settings);
    const base = { deviceId: result.deviceUuid, session, analyticsConsent, serverTime: now };
    const reply = { correlationId: msg.id, sentAt: now };
    if (result.outcome === 'rejected') {
      const [reason, reasonMessage] = WELCOME_REASONS[result.reason];
      this.#send(
        s,
        encode(
          createMessage(
            'welcome',
            { ...base, admission: 'rejected', reason, reasonMessage, retryAfterSec: Math.min(result.retryAfterSec, 86_400) },
            reply,
          ),
        ),
      );
      return this.#closeSession(s, CloseCodes.REJECTED, 'no licence free');
    }
    s.state = 'open';
    s.deviceUuid = result.deviceUuid;
    s.deviceKey = result.deviceKey;
    s.accountId = result.accountId;
    s.accountKey = facts!.account_id;
    s.admission = result.outcome;
    s.connectedAt = now;
    s.pingIntervalMs = session.pingIntervalSec * 1000;
    s.pongTimeoutMs = session.pongTimeoutSec * 1000;
    this.#sessions.set(s.deviceUuid, s);
    let set = this.#byAccount.get(s.accountId);
    if (!set) this.#byAccount.set(s.accountId, (set = new Set()));
    set.add(s);
    this.#status.hello(
      s.deviceKey,
      {
        model: b.model,
        firmwareVersion: b.firmwareVersion,
        agentVersion: b.agentVersion,
        capabilities: b.capabilities.slice(0, 32),
        bootId: b.bootId,
        inventory: b.inventory,
      },
      now,
      b.trustAnchorsDigest,
    );
    const welcome =
      result.outcome === 'managed'
        ? { ...base, admission: 'managed' as const }
        : {
            ...base,
            admission: 'unmanaged' as const,
            reason: WELCOME_REASONS['licence-limit'][0],
            reasonMessage: WELCOME_REASONS['licence-limit'][1],
          };
    this.#send(s, encode(createMessage('welcome', welcome, reply)));
    s.anchorsDigest = b.trustAnchorsDigest;
    this.#offerAnchors(s, now);
    this.#registry?.opened(s.deviceUuid);
    for (const l of this.#sessionListeners) l('opened', s);
  }

  // ── notices (admission changes, settings) ────────────────────────────────────────────────

  #onNotice(n: Notice): void {
    const now = this.#services.clock.now();
    if (n.kind === 'admission') {
      for (const uuid of n.deviceUuids) {
        const s = this.#sessions.get(uuid);
        if (!s || s.state !== 'open' || s.admission === n.state) continue;
        s.admission = n.state;
        const body =
          n.state === 'unmanaged'
            ? {
                admission: 'unmanaged' as const,
                reason: 'LICENCE_EXPIRED',
                reasonMessage: 'Licences ended; this device connected beyond the limit.',
              }
            : { admission: 'managed' as const, reason: 'LICENCE_AVAILABLE', reasonMessage: 'A licence is free for this device.' };
        this.#send(s, encode(createMessage('licence-change', body, { sentAt: now })));
        for (const l of this.#sessionListeners) l('admission', s);
      }
      return;
    }
    if (n.kind === 'trust-anchors') {
      void this.#anchorsChanged(n.accountId);
      return;
    }
    const sessions = this.#byAccount.get(n.accountId);
    if (!sessions) return;
    const text = encode(createMessage('settings', { analyticsConsent: n.analyticsConsent }, { sentAt: now }));
    for (const s of sessions) if (s.state === 'open') this.#send(s, text);
  }

  // ── trust anchors ────────────────────────────────────────────────────────────────────────

  /**
   * Sends the account's trust anchors when the device reported another digest (once per set and
   * session: a device that refuses a set is not sent it again in a loop). Agents before protocol 1.1
   * report no digest and are sent nothing (they would not understand the message).
   */
  #offerAnchors(s: Session, now: number): void {
    if (s.anchorsDigest === undefined || s.state !== 'open') return;
    let set;
    try {
      set = this.#services.trust.forAccount(s.accountKey);
    } catch (err) {
      this.#log.error({ err, device: s.deviceUuid }, 'trust anchors unavailable');
      return;
    }
    if (set.anchors.length === 0 || set.digest === s.anchorsDigest || set.digest === s.anchorsSent) return;
    s.anchorsSent = set.digest;
    const text = encode(createMessage('trust-anchors', { anchors: [...set.anchors], digest: set.digest }, { sentAt: now }));
    // A frame the device must refuse would close its session on every connect: send none (the
    // account's policy check keeps sets far below the limit; this guards the server's own roots).
    if (Buffer.byteLength(text) > MAX_FRAME_BYTES) {
      this.#log.error({ device: s.deviceUuid, bytes: Buffer.byteLength(text) }, 'trust-anchor set larger than a frame; not sent');
      return;
    }
    this.#send(s, text);
  }

  /** A notice: the set of one account (uuid) or of every account (null) changed. */
  async #anchorsChanged(accountUuid: string | null): Promise<void> {
    const trust = this.#services.trust;
    try {
      if (accountUuid === null) await trust.reload(false);
      else trust.forget(this.#accountKeyStmt.get(accountUuid)?.id ?? null);
    } catch (err) {
      this.#log.error({ err }, 'reloading trust anchors failed');
      return;
    }
    const now = this.#services.clock.now();
    const sessions = accountUuid === null ? this.#sessions.values() : (this.#byAccount.get(accountUuid) ?? []);
    for (const s of sessions) this.#offerAnchors(s, now);
  }

  // ── events ───────────────────────────────────────────────────────────────────────────────

  /**
   * Stores the events of this tick in one transaction (durable before the ack), then acks each
   * by its seq. A seq seen before is ignored by the event log's dedupe key and acked again.
   */
  #flushEvents(batch: { s: Session; msg: MessageOf<'event'> }[]): void {
    const { store, clock } = this.#services;
    const now = clock.now();
    try {
      store.write(() => {
        for (const { s, msg } of batch) {
          const e = msg.body;
          new AccountEvents(store, s.accountKey).record({
            type: 'device.event',
            subject: s.deviceUuid,
            data: { seq: e.seq, kind: e.kind, severity: e.severity, at: e.at, ...(e.details ? { details: e.details } : {}) },
            at: now,
            dedupeKey: `device-event:${s.deviceUuid}:${e.seq}`,
          });
        }
      });
    } catch (err) {
      // Not stored, not acked: the device keeps the events in its outbox and resends them.
      this.#log.error({ err, count: batch.length }, 'storing device events failed');
      return;
    }
    for (const { s, msg } of batch) {
      if (s.state !== 'open') continue;
      this.#send(s, encode(createMessage('ack', { seqs: [msg.body.seq] }, { correlationId: msg.id, sentAt: now }), { validate: false }));
    }
  }

  // ── closing ──────────────────────────────────────────────────────────────────────────────

  #send(s: Session, text: string): boolean {
    const ws = s.ws;
    if (ws.readyState !== WebSocket.OPEN) return false;
    // A peer that does not read: its queue is bounded; only it is dropped, the others are not slowed.
    if (ws.bufferedAmount > this.#services.config.channelMaxBufferedBytes) {
      this.#services.metrics.inc('fleet_channel_closes_total', { code: String(CloseCodes.POLICY_VIOLATION) });
      this.#services.metrics.inc('fleet_channel_errors_total', { code: 'SLOW_CONSUMER' });
      // A close frame would queue behind the unread bytes: destroy the socket.
      ws.terminate();
      return false;
    }
    ws.send(text);
    this.#services.metrics.inc('fleet_messages_out_total');
    return true;
  }

  /** Starts a close handshake; the sweep destroys the socket if it does not finish in time. */
  #closeSession(s: Session, code: number, reason: string): void {
    if (s.closeBy !== 0) return;
    this.#services.metrics.inc('fleet_channel_closes_total', { code: String(code) });
    s.closeBy = this.#mono() + CLOSE_GRACE_MS;
    this.#closing.add(s);
    s.ws.close(code, reason);
  }

  #forget(s: Session): void {
    if (this.#sessions.get(s.deviceUuid) === s) this.#sessions.delete(s.deviceUuid);
    const set = this.#byAccount.get(s.accountId);
    if (set) {
      set.delete(s);
      if (set.size === 0) this.#byAccount.delete(s.accountId);
    }
  }

  #onClose(s: Session): void {
    this.#pending.delete(s);
    this.#closing.delete(s);
    const wasOpen = s.state === 'open';
    s.state = 'closed';
    if (!wasOpen || s.replaced) return;
    this.#forget(s);
    this.#registry?.closed(s.deviceUuid);
    for (const l of this.#sessionListeners) l('closed', s);
    // Releases of one tick go to the store in one transaction.
    this.#releases.push(s.deviceUuid);
  }

  #flushReleases(queued: string[]): void {
    // A device that reconnected meanwhile keeps its lease.
    const uuids = queued.filter((u) => !this.#sessions.has(u));
    if (uuids.length === 0) return;
    try {
      this.#services.admission.releaseMany(uuids, this.#services.clock.now());
    } catch (err) {
      this.#log.error({ err, count: uuids.length }, 'releasing leases failed');
    }
  }
}

function consentOf(settings: string): boolean {
  try {
    return (JSON.parse(settings) as { analyticsConsent?: unknown }).analyticsConsent === true;
  } catch {
    return false;
  }
}
