import { decode, encode, type Message, ProtocolError } from '@router-fleet/protocol';
import type { ChannelTransport, LinkAcceptor, LinkEvents } from '../../src/channel/transport.js';

/**
 * A control-channel link without sockets: what the server sends is decoded into `sent`, and the
 * test plays the device through `deliver`. `close` records the code and ends the link on the next
 * tick, as a peer answering the close handshake would; `terminate` ends it at once.
 */
export class MemoryTransport implements ChannelTransport {
  readonly peer = 'memory';
  readonly sent: Message[] = [];
  bufferedAmount = 0;
  closedWith: { code: number; reason: string } | undefined;
  terminated = false;
  #ended = false;
  #closing = false;
  readonly #waiters: { ready: () => boolean; resolve: () => void }[] = [];
  readonly link: LinkEvents;

  constructor(accept: LinkAcceptor) {
    this.link = accept(this);
  }

  get writable(): boolean {
    return !this.#ended && !this.#closing;
  }

  get ended(): boolean {
    return this.#ended;
  }

  send(text: string): void {
    const msg = decode(text, { accept: 'down' });
    if (msg instanceof ProtocolError) throw msg;
    this.sent.push(msg);
    this.#wake();
  }

  close(code: number, reason: string): void {
    if (this.#closing || this.#ended) return;
    this.#closing = true;
    this.closedWith = { code, reason };
    setImmediate(() => this.#end());
  }

  terminate(): void {
    this.terminated = true;
    this.#end();
  }

  /** The device sends `message`. */
  deliver(message: Message): void {
    this.link.frame(Buffer.from(encode(message, { validate: false })), false);
  }

  /** The first message of `type` sent to the device (waits for it). */
  async next<T extends Message['type']>(type: T, match: (m: Message & { type: T }) => boolean = () => true): Promise<Message & { type: T }> {
    const find = () => this.sent.find((m): m is Message & { type: T } => m.type === type && match(m as Message & { type: T }));
    await this.until(() => find() !== undefined);
    return find()!;
  }

  /** Resolves once `ready()` holds, checked after every send and every end. */
  until(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ ready, resolve }));
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.link.ended();
    this.#wake();
  }

  #wake(): void {
    for (const w of [...this.#waiters]) {
      if (w.ready()) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }
}
