import { createSecureContext, type SecureContext } from 'node:tls';
import { type ChannelConnection, DialError, type DialOptions, type Transport } from '@router-fleet/agent';
import { CloseCodes, MAX_FRAME_BYTES, WS_SUBPROTOCOL } from '@router-fleet/protocol';
import WebSocket from 'ws';

/** What the simulator's transport counts (one object per process, not per router). */
export interface TransportObserver {
  /** A dial failed (error code of the socket, `HTTP_<status>` or the DialError kind). */
  dialFailed(code: string): void;
  /** An open channel closed (WebSocket close code). */
  closed(code: number): void;
}

export interface SimTransportOptions {
  /** Source addresses dialled from, round robin (e.g. 127.0.0.1–127.0.0.4), so ephemeral ports last. */
  localAddresses?: readonly string[];
  observer?: TransportObserver;
}

/** The transport and the open sockets it holds (for `cut-connections`). */
export interface SimTransport extends Transport {
  /** Open channels now. */
  open(): number;
  /** Drops a fraction of the open channels abruptly (TCP reset, as a NAT timeout or a cut cable). */
  cut(fraction: number, random: () => number): number;
}

/**
 * The agent's WebSocket binding (same checks as `createWsTransport` of @router-fleet/agent: TLS
 * with the profile's CA, the subprotocol, frame limit, no compression) plus what a simulator of
 * thousands of routers needs and the agent's transport does not offer: a source address per dial
 * (`localAddress`), shared TLS contexts, and a registry of open sockets so connections can be cut.
 */
export function createSimTransport(options: SimTransportOptions = {}): SimTransport {
  const contexts = new Map<string, SecureContext>();
  const addresses = options.localAddresses ?? [];
  const observer = options.observer;
  const sockets = new Set<WebSocket>();
  let next = 0;
  const contextFor = (caPem: string) => {
    let context = contexts.get(caPem);
    if (!context) {
      context = createSecureContext({ ca: caPem });
      contexts.set(caPem, context);
    }
    return context;
  };
  const wrap = (ws: WebSocket): ChannelConnection => {
    sockets.add(ws);
    const connection: ChannelConnection = {
      onMessage: undefined,
      onClose: undefined,
      send(text) {
        if (ws.readyState !== WebSocket.OPEN) return false;
        ws.send(text);
        return true;
      },
      close(code, reason) {
        if (ws.readyState === WebSocket.CLOSED) return;
        ws.close(code, reason?.slice(0, 120));
        setTimeout(() => ws.terminate(), 2000).unref();
      },
    };
    ws.on('message', onMessage);
    ws.on('error', noop);
    ws.on('close', (code: number, reason: Buffer) => {
      if (!sockets.delete(ws)) return;
      observer?.closed(code);
      connection.onClose?.(code, reason.toString());
    });
    (ws as WebSocket & { connection?: ChannelConnection }).connection = connection;
    return connection;
  };
  return {
    open: () => sockets.size,
    cut(fraction, random) {
      let n = 0;
      for (const ws of [...sockets]) {
        if (random() < fraction) {
          ws.terminate();
          n++;
        }
      }
      return n;
    },
    dial(dial: DialOptions): Promise<ChannelConnection> {
      return new Promise((resolve, reject) => {
        let url: URL;
        try {
          url = new URL(dial.url);
        } catch {
          reject(new DialError('protocol', 'invalid server URL'));
          return;
        }
        if (url.protocol !== 'wss:' && !(dial.allowInsecure && url.protocol === 'ws:')) {
          reject(new DialError('protocol', `refusing ${url.protocol} (TLS required)`));
          return;
        }
        if (dial.signal?.aborted) {
          reject(dial.signal.reason);
          return;
        }
        const localAddress = addresses.length > 0 ? addresses[next++ % addresses.length] : undefined;
        const ws = new WebSocket(dial.url, WS_SUBPROTOCOL, {
          ...(url.protocol === 'wss:' ? { secureContext: contextFor(dial.caPem) } : {}),
          ...(localAddress ? { localAddress } : {}),
          maxPayload: MAX_FRAME_BYTES,
          handshakeTimeout: dial.timeoutMs,
          perMessageDeflate: false,
          followRedirects: false,
        });
        let settled = false;
        const onAbort = () => {
          fail(new DialError('network', 'dial aborted'), 'ABORTED');
          ws.terminate();
        };
        const fail = (error: Error, code: string) => {
          if (settled) return;
          settled = true;
          dial.signal?.removeEventListener('abort', onAbort);
          observer?.dialFailed(code);
          reject(error);
        };
        dial.signal?.addEventListener('abort', onAbort, { once: true });
        ws.once('unexpected-response', (_req, res) => {
          const status = res.statusCode ?? 0;
          res.resume();
          fail(
            status === 401 || status === 403
              ? new DialError('auth', `handshake refused with HTTP ${status}`)
              : new DialError('network', `handshake answered with HTTP ${status}`),
            `HTTP_${status}`,
          );
          ws.terminate();
        });
        ws.once('error', (error: Error & { code?: string }) => fail(new DialError('network', error.message, { cause: error }), error.code ?? 'NETWORK'));
        ws.once('close', (code) => fail(new DialError('network', `closed during the handshake (${code})`), `CLOSE_${code}`));
        ws.once('open', () => {
          if (ws.protocol !== WS_SUBPROTOCOL) {
            ws.close(CloseCodes.PROTOCOL_ERROR, 'subprotocol not accepted');
            fail(new DialError('protocol', 'the server did not accept the subprotocol'), 'SUBPROTOCOL');
            return;
          }
          settled = true;
          dial.signal?.removeEventListener('abort', onAbort);
          ws.removeAllListeners('error');
          ws.removeAllListeners('close');
          resolve(wrap(ws));
        });
      });
    },
  };
}

function noop(): void {
  // 'close' follows every 'error'.
}

/** Shared message listener: `this` is the socket (no closure per connection). */
function onMessage(this: WebSocket & { connection?: ChannelConnection }, data: WebSocket.RawData, isBinary: boolean): void {
  if (isBinary) {
    this.close(CloseCodes.PROTOCOL_ERROR, 'binary frames are not allowed');
    return;
  }
  this.connection?.onMessage?.(data.toString());
}
