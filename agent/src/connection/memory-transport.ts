import { CloseCodes } from '@router-fleet/protocol';
import { type ChannelConnection, DialError, type DialOptions, type Transport } from './transport.js';

/** The server side of an in-memory connection. */
export interface MemoryServerConnection extends ChannelConnection {
  readonly url: string;
}

/**
 * An in-memory network: servers listen on a URL, agents dial it through `transport`. Frames are
 * delivered asynchronously (a microtask later), in order, as strings; closes are seen by both ends.
 */
export class MemoryNetwork {
  readonly #servers = new Map<string, (connection: MemoryServerConnection) => void>();
  readonly transport: Transport;

  constructor() {
    this.transport = { dial: (options) => this.#dial(options) };
  }

  listen(url: string, onConnection: (connection: MemoryServerConnection) => void): () => void {
    this.#servers.set(url, onConnection);
    return () => this.#servers.delete(url);
  }

  async #dial(options: DialOptions): Promise<ChannelConnection> {
    await Promise.resolve();
    if (options.signal?.aborted) throw options.signal.reason;
    const accept = this.#servers.get(options.url);
    if (!accept) throw new DialError('network', `nothing listens on ${options.url}`);
    const [client, server] = pair(options.url);
    accept(server);
    return client;
  }
}

function pair(url: string): [ChannelConnection, MemoryServerConnection] {
  let open = true;
  const a: ChannelConnection = { onMessage: undefined, onClose: undefined, send: () => false, close: () => {} };
  const b: MemoryServerConnection = { url, onMessage: undefined, onClose: undefined, send: () => false, close: () => {} };
  const link = (from: ChannelConnection, to: ChannelConnection) => {
    from.send = (text) => {
      if (!open) return false;
      queueMicrotask(() => {
        if (open) to.onMessage?.(text);
      });
      return true;
    };
    from.close = (code = CloseCodes.NORMAL, reason = '') => {
      if (!open) return;
      open = false;
      queueMicrotask(() => {
        from.onClose?.(code, reason);
        to.onClose?.(code, reason);
      });
    };
  };
  link(a, b);
  link(b, a);
  return [a, b];
}
