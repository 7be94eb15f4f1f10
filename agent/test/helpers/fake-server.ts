import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  type BodyOf,
  CloseCodes,
  createMessage,
  decode,
  encode,
  type HelloBody,
  isMessage,
  type Message,
  type MessageOf,
  type MessageType,
  type SessionParameters,
  WS_SUBPROTOCOL,
} from '@router-fleet/protocol';
import { pino } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import { MqttBucketConsumer } from '../../../server-stub/src/channel/mqtt/consumer.js';
import type { ChannelTransport } from '../../../server-stub/src/channel/transport.js';

/**
 * A protocol-level fake of the reference server for agent tests: real TLS, real ws on port 0, the
 * control channel (hello → welcome, ping/pong, acks) and a packet download endpoint with injectable
 * faults. It records every frame in both directions. Tests talk to it through `TestServer`, so the
 * real server can replace it later behind the same surface.
 */

export type Admission =
  | { kind: 'managed' }
  | { kind: 'unmanaged' }
  | { kind: 'rejected'; retryAfterSec: number }
  | { kind: 'auth-failed' };

/**
 * Download faults of one packet (combinable): cut the first `cutTimes` responses after
 * `cutAfterBytes`; answer resumes with 200 (`ignoreRange`), a wrong Content-Range (`wrongRange`) or
 * a packet of another size (`sizeChanged`); flip a byte; trickle; send endless data.
 */
export interface PacketFault {
  cutAfterBytes?: number;
  cutTimes?: number;
  ignoreRange?: boolean;
  wrongRange?: boolean;
  sizeChanged?: boolean;
  flipAt?: number;
  trickle?: { bytesPerTick: number; tickMs: number };
  endless?: boolean;
  status?: number;
}

export interface Frame {
  dir: 'in' | 'out';
  deviceId: string | undefined;
  text: string;
  message: Message | undefined;
  at: number;
}

export interface FakeServerOptions {
  certPem: string;
  keyPem: string;
  session?: SessionParameters;
  analyticsConsent?: boolean;
  /** Acknowledge events and terminal job-progress messages (default true). */
  autoAck?: boolean;
  admission?: (hello: HelloBody) => Admission;
}

const TERMINAL = new Set(['succeeded', 'failed', 'rejected', 'cancelled', 'timed-out']);
export const DOWNLOAD_TOKEN = 'download-token-0123456789abcdef';

/**
 * What the agent tests use of a server. The reference server can implement it later (a thin
 * adapter over its control channel and packet store) and the same tests run against it.
 */
export interface TestServer {
  readonly url: string;
  readonly frames: Frame[];
  readonly closes: { deviceId: string | undefined; code: number }[];
  readonly downloads: { name: string; range: string | undefined; status: number; from: string; port: number }[];
  addPacket(name: string, data: Buffer, fault?: PacketFault): void;
  packetUrl(name: string): string;
  offer(deviceId: string, executionId: string, packetName: string, extra?: Partial<BodyOf<'job-offer'>>): string;
  send<T extends MessageType>(deviceId: string, type: T, body: BodyOf<T>): string;
  received<T extends MessageType>(type?: T, deviceId?: string): MessageOf<T>[];
  progress(executionId: string): string[];
  terminals(executionId: string): MessageOf<'job-progress'>[];
  waitFor<T>(check: () => T | undefined | false, timeoutMs?: number, what?: string): Promise<T>;
  waitForTerminal(executionId: string, timeoutMs?: number): Promise<MessageOf<'job-progress'>>;
  dropAll(code?: number): void;
  close(): Promise<void>;
}

/**
 * One device connection as the fake server handles it, whatever carries it: a WebSocket here, an
 * MQTT link through a broker where a test asks for one.
 */
export interface FakeLink {
  /** Whether frames can still be sent. */
  readonly open: boolean;
  /** Sends one text frame as it is (tests use it to send malformed frames too). */
  send(text: string): void;
  close(code: number, reason: string): void;
  /** Ends the link without a close (a half-open link from the device's side). */
  terminate(): void;
}

/** What a transport reports about one link to the fake server. */
export interface FakeLinkEvents {
  frame(text: string, isBinary: boolean): void;
  ended(code: number): void;
}

function wsLink(ws: WebSocket): FakeLink {
  return {
    get open() {
      return ws.readyState === WebSocket.OPEN;
    },
    send: (text) => ws.send(text),
    close: (code, reason) => ws.close(code, reason),
    terminate: () => ws.terminate(),
  };
}

export class FakeServer implements TestServer {
  readonly frames: Frame[] = [];
  readonly connections = new Map<string, FakeLink>();
  /** Handshakes seen (device connections attempted, including refused ones). */
  handshakes = 0;
  /** TLS handshakes that failed (e.g. a device that does not trust this server's certificate). */
  tlsFailures = 0;
  readonly closes: { deviceId: string | undefined; code: number }[] = [];
  readonly downloads: { name: string; range: string | undefined; status: number; from: string; port: number }[] = [];
  readonly packets = new Map<string, { data: Buffer; fault?: PacketFault; requests: number }>();
  options: FakeServerOptions;
  #server: Server;
  #wss: WebSocketServer;
  #waiters = new Set<() => void>();
  #open = new Set<import('node:net').Socket>();
  #mqtt: MqttBucketConsumer | undefined;
  port = 0;

  constructor(options: FakeServerOptions) {
    this.options = options;
    this.#server = createServer({ cert: options.certPem, key: options.keyPem }, (req, res) => this.#http(req, res));
    this.#server.on('secureConnection', (socket) => {
      this.#open.add(socket);
      socket.on('close', () => this.#open.delete(socket));
    });
    this.#server.on('tlsClientError', () => this.tlsFailures++);
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: 64 * 1024,
      handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    });
    this.#server.on('upgrade', (req, socket, head) => {
      this.handshakes++;
      if (req.url !== '/api/channel') {
        socket.destroy();
        return;
      }
      this.#wss.handleUpgrade(req, socket, head, (ws) => {
        const events = this.accept(wsLink(ws));
        ws.on('message', (data, isBinary) => events.frame(data.toString(), isBinary));
        ws.on('close', (code) => events.ended(code));
      });
    });
  }

  async start(port = 0): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(port, '127.0.0.1', resolve));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `wss://127.0.0.1:${this.port}/api/channel`;
  }

  packetUrl(name: string): string {
    return `https://127.0.0.1:${this.port}/packets/${name}`;
  }

  /**
   * Serves the channel through an MQTT broker too (every bucket, as the reference server's MQTT
   * adapter does: it is that adapter); devices whose profile names the broker arrive here.
   */
  async useMqtt(brokerUrl: string, protocolVersion: 4 | 5 = 5): Promise<void> {
    this.#mqtt = new MqttBucketConsumer({
      url: brokerUrl,
      protocolVersion,
      buckets: Array.from({ length: 64 }, (_, b) => b),
      accept: (transport) => this.#acceptMqtt(transport),
      log: pino({ level: 'silent' }),
      reconnectMs: 200,
    });
    await this.#mqtt.start();
  }

  #acceptMqtt(transport: ChannelTransport) {
    // An MQTT link ends without a code of its own: the code is the one the server closed it with,
    // or 1006 (gone: the device's will, a lost broker).
    let closedWith = 1006;
    const events = this.accept({
      get open() {
        return transport.writable;
      },
      send: (text) => transport.send(text),
      close: (code, reason) => {
        closedWith = code;
        transport.close(code, reason);
      },
      terminate: () => transport.terminate(),
    });
    return {
      frame: (data: Buffer, isBinary: boolean) => events.frame(data.toString(), isBinary),
      failed: () => undefined,
      ended: () => events.ended(closedWith),
    };
  }

  async close(): Promise<void> {
    await this.#mqtt?.close();
    for (const ws of this.#wss.clients) ws.terminate();
    this.#wss.close();
    for (const s of this.#open) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Drops every connection (server restart without closing the listener). */
  dropAll(code: number = CloseCodes.SERVICE_RESTART): void {
    for (const ws of this.connections.values()) ws.close(code, 'restart');
  }

  // ── channel ───────────────────────────────────────────────────────────────────────────

  #record(frame: Frame): void {
    this.frames.push(frame);
    for (const w of [...this.#waiters]) w();
  }

  /** A new device link from any transport; the transport reports its frames and end to the result. */
  accept(link: FakeLink): FakeLinkEvents {
    let deviceId: string | undefined;
    return {
      frame: (text, isBinary) => {
        const message = isBinary ? undefined : decode(text, { accept: 'up' });
        const ok = message !== undefined && isMessage(message) ? message : undefined;
        if (!deviceId && ok?.type === 'hello') deviceId = ok.body.deviceId;
        this.#record({ dir: 'in', deviceId, text, message: ok, at: Date.now() });
        if (!ok) return;
        this.#onMessage(link, ok, deviceId);
      },
      ended: (code) => {
        this.closes.push({ deviceId, code });
        if (deviceId && this.connections.get(deviceId) === link) this.connections.delete(deviceId);
      },
    };
  }

  #send(link: FakeLink, deviceId: string | undefined, message: Message): void {
    const text = encode(message);
    this.#record({ dir: 'out', deviceId, text, message, at: Date.now() });
    link.send(text);
  }

  #onMessage(ws: FakeLink, message: Message, deviceId: string | undefined): void {
    const reply = <T extends MessageType>(type: T, body: BodyOf<T>, correlationId?: string) =>
      this.#send(ws, deviceId, createMessage(type, body, correlationId ? { correlationId } : {}) as Message);
    switch (message.type) {
      case 'hello': {
        const admission = this.options.admission?.(message.body) ?? { kind: 'managed' };
        if (admission.kind === 'auth-failed') {
          ws.close(CloseCodes.AUTH_FAILED, 'credential refused');
          return;
        }
        const previous = this.connections.get(message.body.deviceId);
        if (previous && previous !== ws) previous.close(CloseCodes.REPLACED, 'replaced');
        this.connections.set(message.body.deviceId, ws);
        reply(
          'welcome',
          {
            admission: admission.kind,
            ...(admission.kind === 'rejected' ? { retryAfterSec: admission.retryAfterSec, reason: 'LICENCE_UNAVAILABLE' } : {}),
            deviceId: message.body.deviceId,
            session: this.options.session ?? { pingIntervalSec: 60, pongTimeoutSec: 30, sessionTimeoutSec: 30 },
            analyticsConsent: this.options.analyticsConsent ?? false,
            serverTime: Date.now(),
          },
          message.id,
        );
        if (admission.kind === 'rejected') ws.close(CloseCodes.REJECTED, 'rejected');
        return;
      }
      case 'ping':
        reply('pong', {}, message.id);
        return;
      case 'event':
        if (this.options.autoAck !== false) reply('ack', { seqs: [message.body.seq] });
        return;
      case 'job-progress':
        if (this.options.autoAck !== false && TERMINAL.has(message.body.state)) reply('ack', { seqs: [] }, message.id);
        return;
      default:
        return;
    }
  }

  /** Sends a message to a connected device; returns its id. */
  send<T extends MessageType>(deviceId: string, type: T, body: BodyOf<T>): string {
    const ws = this.connections.get(deviceId);
    if (!ws?.open) throw new Error(`${deviceId} is not connected`);
    const message = createMessage(type, body) as Message;
    this.#send(ws, deviceId, message);
    return message.id;
  }

  /** Offers a registered packet as a job. */
  offer(
    deviceId: string,
    executionId: string,
    packetName: string,
    extra: Partial<BodyOf<'job-offer'>> = {},
  ): string {
    const packet = this.packets.get(packetName);
    if (!packet) throw new Error(`no packet ${packetName}`);
    return this.send(deviceId, 'job-offer', {
      executionId,
      jobId: `job-${executionId}`,
      packet: { url: this.packetUrl(packetName), size: packet.data.length, sha256: createHash('sha256').update(packet.data).digest('hex') },
      download: { token: DOWNLOAD_TOKEN, expiresAt: Date.now() + 3_600_000 },
      deadline: Date.now() + 3_600_000,
      allowDowngrade: false,
      ...extra,
    });
  }

  addPacket(name: string, data: Buffer, fault?: PacketFault): void {
    this.packets.set(name, { data, ...(fault ? { fault } : {}), requests: 0 });
  }

  // ── queries ───────────────────────────────────────────────────────────────────────────

  /** Messages received from devices (optionally of one type / one device). */
  received<T extends MessageType>(type?: T, deviceId?: string): MessageOf<T>[] {
    return this.frames
      .filter((f) => f.dir === 'in' && f.message && (!type || f.message.type === type) && (!deviceId || f.deviceId === deviceId))
      .map((f) => f.message as MessageOf<T>);
  }

  /** job-progress states received for an execution, in order. */
  progress(executionId: string): string[] {
    return this.received('job-progress')
      .filter((m) => m.body.executionId === executionId)
      .map((m) => m.body.state);
  }

  /** Terminal reports of an execution, deduplicated by message id (resends of one report count once). */
  terminals(executionId: string): MessageOf<'job-progress'>[] {
    const seen = new Map<string, MessageOf<'job-progress'>>();
    for (const m of this.received('job-progress')) {
      if (m.body.executionId === executionId && TERMINAL.has(m.body.state) && !seen.has(m.id)) seen.set(m.id, m);
    }
    return [...seen.values()];
  }

  /** Waits until `check` returns a value (re-checked on every frame). */
  waitFor<T>(check: () => T | undefined | false, timeoutMs = 10_000, what = 'condition'): Promise<T> {
    return new Promise((resolve, reject) => {
      const test = () => {
        const value = check();
        if (value !== undefined && value !== false) {
          cleanup();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(test);
      };
      this.#waiters.add(test);
      test();
    });
  }

  waitForTerminal(executionId: string, timeoutMs = 20_000): Promise<MessageOf<'job-progress'>> {
    return this.waitFor(() => this.terminals(executionId)[0], timeoutMs, `terminal report of ${executionId}`);
  }

  waitForWelcome(deviceId: string, after = 0, timeoutMs = 10_000): Promise<Frame> {
    return this.waitFor(
      () => this.frames.find((f, i) => i >= after && f.dir === 'out' && f.deviceId === deviceId && f.message?.type === 'welcome'),
      timeoutMs,
      `welcome of ${deviceId}`,
    );
  }

  // ── downloads ─────────────────────────────────────────────────────────────────────────

  #http(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
    const m = /^\/packets\/([A-Za-z0-9._-]+)$/.exec(req.url ?? '');
    const packet = m ? this.packets.get(m[1]!) : undefined;
    const range = req.headers.range;
    const log = (status: number) =>
      this.downloads.push({ name: m?.[1] ?? '?', range, status, from: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 });
    if (!packet) {
      log(404);
      res.writeHead(404).end();
      return;
    }
    if (req.headers.authorization !== `Bearer ${DOWNLOAD_TOKEN}`) {
      log(401);
      res.writeHead(401).end();
      return;
    }
    packet.requests++;
    const fault = packet.fault ?? {};
    if (fault.status) {
      log(fault.status);
      res.writeHead(fault.status).end();
      return;
    }
    let data = packet.data;
    if (fault.flipAt !== undefined) {
      data = Buffer.from(data);
      data[fault.flipAt] = data[fault.flipAt]! ^ 0xff;
    }
    if (fault.sizeChanged) data = Buffer.concat([data, Buffer.alloc(100, 1)]);
    const start = range ? Number(/^bytes=(\d+)-$/.exec(range)?.[1] ?? 0) : 0;
    const partial = range !== undefined && !fault.ignoreRange;
    const body = partial ? data.subarray(start) : data;
    const status = partial ? 206 : 200;
    const headers: Record<string, string | number> = { 'content-type': 'application/x-tar' };
    if (partial) {
      const first = fault.wrongRange ? start + 7 : start;
      headers['content-range'] = `bytes ${first}-${data.length - 1}/${data.length}`;
    }
    log(status);
    if (fault.endless) {
      res.writeHead(200, headers);
      const chunk = Buffer.alloc(16 * 1024, 0x41);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) {
          // keep writing until the socket pushes back
        }
      };
      res.on('drain', pump);
      pump();
      return;
    }
    headers['content-length'] = body.length;
    res.writeHead(status, headers);
    if (fault.trickle) {
      const { bytesPerTick, tickMs } = fault.trickle;
      let off = 0;
      const timer = setInterval(() => {
        if (off >= body.length || res.destroyed) {
          clearInterval(timer);
          res.end();
          return;
        }
        res.write(body.subarray(off, off + bytesPerTick));
        off += bytesPerTick;
      }, tickMs);
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (fault.cutAfterBytes !== undefined && packet.requests <= (fault.cutTimes ?? 1)) {
      res.write(body.subarray(0, fault.cutAfterBytes), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  }
}
