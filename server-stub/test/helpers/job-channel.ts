import {
  createMessage,
  decode,
  encode,
  isMessage,
  type JobExecutionState,
  type Message,
  type MessageOf,
  WS_SUBPROTOCOL,
} from '@router-fleet/protocol';
import WebSocket from 'ws';

/** A protocol-level fake router: hello, then it records every message and reports what the test says. */
export class FakeDevice {
  readonly received: Message[] = [];
  #ws: WebSocket | undefined;
  #waiters: { pred: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  readonly #consumed = new Set<Message>();

  constructor(
    readonly uuid: string,
    readonly serialNumber: string,
    private readonly credential: string,
  ) {}

  async connect(port: number): Promise<MessageOf<'welcome'>> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/channel`, WS_SUBPROTOCOL);
    this.#ws = ws;
    ws.on('message', (data) => {
      const msg = decode(data as Buffer, { accept: 'down' });
      if (!isMessage(msg)) return;
      this.received.push(msg);
      const w = this.#waiters.find((x) => x.pred(msg));
      if (w) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        this.#consumed.add(msg);
        w.resolve(msg);
      }
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const welcome = this.next((m) => m.type === 'welcome');
    ws.send(
      encode(
        createMessage('hello', {
          serialNumber: this.serialNumber,
          deviceId: this.uuid,
          credential: this.credential,
          model: 'RT-100',
          firmwareVersion: '1.0.0',
          agentVersion: '0.1.0',
          capabilities: ['firmware'],
          bootId: 'boot-1',
          inventory: { certificates: 0, containers: 0 },
        }),
      ),
    );
    return (await welcome) as MessageOf<'welcome'>;
  }

  async disconnect(): Promise<void> {
    const ws = this.#ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((r) => {
      ws.once('close', () => r());
      ws.close();
    });
  }

  /** The next message (already received or arriving) matching `pred` that was not consumed before. */
  next(pred: (m: Message) => boolean, timeoutMs = 5000): Promise<Message> {
    const have = this.received.find((m) => !this.#consumed.has(m) && pred(m));
    if (have) {
      this.#consumed.add(have);
      return Promise.resolve(have);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.serialNumber}: no matching message in ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push({
        pred,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
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

  /** Sends a status (what the router runs now). */
  status(body: { firmwareVersion: string; location?: { lat: number; lon: number }; trustAnchorsDigest?: string }): void {
    this.#ws!.send(encode(createMessage('status', { uptimeSec: 1, link: { type: 'ethernet', up: true }, certificates: [], containers: [], ...body })));
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
    this.#ws!.send(encode(msg));
    return msg;
  }
}

/** Waits until `check` returns a truthy value (polling; for effects that cross sockets). */
export async function until<T>(check: () => T | undefined | false, timeoutMs = 5000, what = 'condition'): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
