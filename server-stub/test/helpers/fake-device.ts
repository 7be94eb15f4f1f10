import { randomUUID } from 'node:crypto';
import {
  createMessage,
  decode,
  encode,
  isMessage,
  type JobExecutionState,
  type Message,
  type MessageOf,
  type MessageType,
  WS_SUBPROTOCOL,
} from '@router-fleet/protocol';
import WebSocket, { type ClientOptions } from 'ws';

export interface DeviceIdentity {
  uuid: string;
  serialNumber: string;
  credential: string;
}

export interface Closed {
  code: number;
  reason: string;
}

/** What the device says about itself in its hello (the rest of the hello is fixed). */
export interface HelloFacts {
  model: string;
  firmwareVersion: string;
}

export type SocketOptions = ClientOptions & { protocols?: string[] };

/** Default wait for one message or the close (a loaded machine runs two suites on 2 cores). */
const WAIT_MS = 10_000;

/**
 * The server tests' fake device: a real `ws` client that speaks the control channel through the
 * protocol's codec. It records everything it receives (in order, across reconnects), answers pings
 * unless told not to, and sends hellos, statuses and job reports as the test says.
 */
export class FakeDevice {
  readonly received: Message[] = [];
  readonly raw: string[] = [];
  answerPings = true;
  /** The close of the current socket (reset when the device connects again). */
  closed: Closed | undefined;
  /** Response headers of the handshake (e.g. x-fleet-worker in cluster mode). */
  headers: Record<string, string | string[] | undefined> = {};
  #ws: WebSocket | undefined;
  #welcomed = false;
  readonly #waiters = new Set<() => void>();
  /** Messages `next` already returned: each received message is returned once. */
  readonly #consumed = new Set<Message>();

  constructor(
    readonly id: DeviceIdentity,
    readonly facts: HelloFacts = { model: 'MRX5 LTE', firmwareVersion: '10.3.2' },
  ) {}

  get uuid(): string {
    return this.id.uuid;
  }

  get serialNumber(): string {
    return this.id.serialNumber;
  }

  /** The current socket. */
  get ws(): WebSocket {
    if (!this.#ws) throw new Error(`${this.id.serialNumber}: not connected`);
    return this.#ws;
  }

  /** The current socket is open and the server welcomed the device on it (it answers pings then). */
  get welcomed(): boolean {
    return this.#welcomed && this.#ws?.readyState === WebSocket.OPEN;
  }

  /** A new device with its socket open (resolves when open; rejects when the handshake is refused). */
  static async open(url: string, id: DeviceIdentity, options: SocketOptions = {}): Promise<FakeDevice> {
    const device = new FakeDevice(id);
    await device.openSocket(url, options);
    return device;
  }

  /** Opens a (new) socket to `url`, or to the plain channel URL on `port` of 127.0.0.1. */
  openSocket(target: string | number, options: SocketOptions = {}): Promise<void> {
    const url = typeof target === 'number' ? `ws://127.0.0.1:${target}/api/channel` : target;
    const { protocols, ...rest } = options;
    const ws = new WebSocket(url, protocols ?? [WS_SUBPROTOCOL], rest);
    this.#ws = ws;
    this.#welcomed = false;
    this.closed = undefined;
    ws.on('upgrade', (res) => (this.headers = res.headers));
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const text = data.toString('utf8');
      this.raw.push(isBinary ? `<binary ${data.length}>` : text);
      const msg = decode(data, { accept: 'down' });
      if (isMessage(msg)) {
        this.received.push(msg);
        if (msg.type === 'welcome') this.#welcomed = true;
        if (msg.type === 'ping' && this.answerPings) this.send(createMessage('pong', {}, { correlationId: msg.id }));
      }
      this.#wake();
    });
    ws.on('close', (code, reason) => {
      if (this.#ws === ws) this.closed = { code, reason: reason.toString() };
      this.#wake();
    });
    ws.on('error', () => this.#wake());
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake refused: ${res.statusCode}`)));
    });
  }

  /** Opens a socket to the channel (`port` of 127.0.0.1, or a URL), says hello and returns the welcome. */
  async connect(target: string | number, options: SocketOptions = {}): Promise<MessageOf<'welcome'>> {
    await this.openSocket(target, options);
    return this.admit();
  }

  hello(overrides: Partial<{ credential: string; serialNumber: string; deviceId: string }> = {}): Message {
    const msg = createMessage('hello', {
      serialNumber: overrides.serialNumber ?? this.id.serialNumber,
      deviceId: overrides.deviceId ?? this.id.uuid,
      credential: overrides.credential ?? this.id.credential,
      model: this.facts.model,
      firmwareVersion: this.facts.firmwareVersion,
      agentVersion: '0.1.0',
      capabilities: ['firmware'],
      bootId: randomUUID(),
      inventory: { certificates: 0, containers: 0 },
    });
    this.send(msg);
    return msg;
  }

  /** hello, then the welcome (or the close when refused). */
  async admit(overrides: Parameters<FakeDevice['hello']>[0] = {}): Promise<MessageOf<'welcome'>> {
    const hello = this.hello(overrides);
    return this.next('welcome', (m) => m.correlationId === hello.id);
  }

  /** Sends a message without validating it (tests also send what a real agent would not). */
  send(message: Message): void {
    this.ws.send(encode(message, { validate: false }));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** Sends a status (what the router runs now). */
  status(body: { firmwareVersion: string; location?: { lat: number; lon: number }; trustAnchorsDigest?: string }): void {
    this.ws.send(encode(createMessage('status', { uptimeSec: 1, link: { type: 'ethernet', up: true }, certificates: [], containers: [], ...body })));
  }

  /** Sends a job-progress and returns its message (its id is what a terminal ack correlates). */
  report(
    executionId: string,
    state: JobExecutionState,
    extra: { errorCode?: string; percent?: number; id?: string } = {},
  ): MessageOf<'job-progress'> {
    const msg = createMessage(
      'job-progress',
      {
        executionId,
        state,
        ...(extra.errorCode ? { errorCode: extra.errorCode } : {}),
        ...(extra.percent !== undefined ? { percent: extra.percent } : {}),
      },
      extra.id ? { id: extra.id } : {},
    );
    this.ws.send(encode(msg));
    return msg;
  }

  offers(): MessageOf<'job-offer'>[] {
    return this.received.filter((m): m is MessageOf<'job-offer'> => m.type === 'job-offer');
  }

  cancels(): MessageOf<'job-cancel'>[] {
    return this.received.filter((m): m is MessageOf<'job-cancel'> => m.type === 'job-cancel');
  }

  acks(): MessageOf<'ack'>[] {
    return this.received.filter((m): m is MessageOf<'ack'> => m.type === 'ack');
  }

  /**
   * The next received message of `type` (matching `where`), or matching `pred`, that `next` did not
   * return before: waits for it, or throws on close or timeout.
   */
  next<T extends MessageType>(type: T, where?: (m: MessageOf<T>) => boolean, timeoutMs?: number): Promise<MessageOf<T>>;
  next(pred: (m: Message) => boolean, timeoutMs?: number): Promise<Message>;
  next(
    typeOrPred: MessageType | ((m: Message) => boolean),
    whereOrTimeout?: ((m: never) => boolean) | number,
    timeoutMs?: number,
  ): Promise<Message> {
    let pred: (m: Message) => boolean;
    let what: string;
    if (typeof typeOrPred === 'function') {
      pred = typeOrPred;
      what = 'a matching message';
      timeoutMs = whereOrTimeout as number | undefined;
    } else {
      const where = (whereOrTimeout ?? (() => true)) as (m: Message) => boolean;
      pred = (m) => m.type === typeOrPred && where(m);
      what = typeOrPred;
    }
    return this.until(() => {
      const m = this.received.find((x) => !this.#consumed.has(x) && pred(x));
      if (m) this.#consumed.add(m);
      return m;
    }, what, timeoutMs);
  }

  async waitClosed(timeoutMs = WAIT_MS): Promise<Closed> {
    return this.until(() => this.closed, 'close', timeoutMs);
  }

  /** Waits until `probe` returns a value (re-checked on every frame and the close); throws if the socket closes first. */
  async until<T>(probe: () => T | undefined, what: string, timeoutMs = WAIT_MS): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      if (this.closed && what !== 'close') {
        const again = probe();
        if (again !== undefined) return again;
        throw new Error(`${this.id.serialNumber}: closed (${this.closed.code}) while waiting for ${what}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.id.serialNumber}: timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.add(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /**
   * Sends a ping and waits for its pong. The server answers a ping as it reads it, on the same
   * ordered socket, so once the pong is here every message the server sent this device before it
   * is here too: a positive signal to wait for before asserting that something was NOT sent.
   */
  async roundTrip(timeoutMs = WAIT_MS): Promise<void> {
    const ping = createMessage('ping', {});
    this.send(ping);
    await this.next('pong', (m) => m.correlationId === ping.id, timeoutMs);
  }

  close(): void {
    this.ws.close(1000);
  }

  /** Closes the socket and waits until it is closed (no-op when not connected). */
  async disconnect(): Promise<void> {
    const ws = this.#ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((r) => {
      ws.once('close', () => r());
      ws.close();
    });
  }

  terminate(): void {
    this.#ws?.terminate();
  }

  #wake(): void {
    const ws = [...this.#waiters];
    this.#waiters.clear();
    for (const w of ws) w();
  }
}
