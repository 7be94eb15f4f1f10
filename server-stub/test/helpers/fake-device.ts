import { randomUUID } from 'node:crypto';
import {
  createMessage,
  decode,
  encode,
  isMessage,
  type Message,
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

/**
 * A protocol-level fake device for tests: a raw `ws` client that speaks the control channel (the
 * real agent comes later). It records everything it receives and answers pings unless told not to.
 */
export class FakeDevice {
  readonly received: Message[] = [];
  readonly raw: string[] = [];
  answerPings = true;
  closed: Closed | undefined;
  /** Response headers of the handshake (e.g. x-fleet-worker in cluster mode). */
  headers: Record<string, string | string[] | undefined> = {};
  readonly #waiters = new Set<() => void>();

  private constructor(
    readonly ws: WebSocket,
    readonly id: DeviceIdentity,
  ) {
    ws.on('upgrade', (res) => (this.headers = res.headers));
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const text = data.toString('utf8');
      this.raw.push(isBinary ? `<binary ${data.length}>` : text);
      const msg = decode(data, { accept: 'down' });
      if (isMessage(msg)) {
        this.received.push(msg);
        if (msg.type === 'ping' && this.answerPings) this.send(createMessage('pong', {}, { correlationId: msg.id }));
      }
      this.#wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.#wake();
    });
    ws.on('error', () => this.#wake());
  }

  /** Opens the socket (resolves when open; rejects when the handshake is refused). */
  static connect(url: string, id: DeviceIdentity, options: ClientOptions & { protocols?: string[] } = {}): Promise<FakeDevice> {
    const { protocols, ...rest } = options;
    const ws = new WebSocket(url, protocols ?? [WS_SUBPROTOCOL], rest);
    const device = new FakeDevice(ws, id);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(device));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake refused: ${res.statusCode}`)));
    });
  }

  hello(overrides: Partial<{ credential: string; serialNumber: string; deviceId: string }> = {}): Message {
    const msg = createMessage('hello', {
      serialNumber: overrides.serialNumber ?? this.id.serialNumber,
      deviceId: overrides.deviceId ?? this.id.uuid,
      credential: overrides.credential ?? this.id.credential,
      model: 'MRX5 LTE',
      firmwareVersion: '10.3.2',
      agentVersion: '0.1.0',
      capabilities: ['firmware'],
      bootId: randomUUID(),
      inventory: { certificates: 0, containers: 0 },
    });
    this.send(msg);
    return msg;
  }

  /** hello, then the welcome (or the close when refused). */
  async admit(overrides: Parameters<FakeDevice['hello']>[0] = {}): Promise<Message & { type: 'welcome' }> {
    const hello = this.hello(overrides);
    return (await this.next('welcome', (m) => m.correlationId === hello.id)) as Message & { type: 'welcome' };
  }

  send(message: Message): void {
    this.ws.send(encode(message, { validate: false }));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** The first received message of `type` (matching `where`) — waits for it, or throws on close/timeout. */
  async next(type: MessageType, where: (m: Message) => boolean = () => true, timeoutMs = 5000): Promise<Message> {
    const find = () => this.received.find((m) => m.type === type && where(m));
    return this.until(() => find(), `${type}`, timeoutMs);
  }

  async waitClosed(timeoutMs = 5000): Promise<Closed> {
    return this.until(() => this.closed, 'close', timeoutMs);
  }

  async until<T>(probe: () => T | undefined, what: string, timeoutMs = 5000): Promise<T> {
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

  close(): void {
    this.ws.close(1000);
  }

  terminate(): void {
    this.ws.terminate();
  }

  #wake(): void {
    const ws = [...this.#waiters];
    this.#waiters.clear();
    for (const w of ws) w();
  }
}
