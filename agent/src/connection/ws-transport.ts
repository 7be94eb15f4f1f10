import { CloseCodes, MAX_FRAME_BYTES, WS_SUBPROTOCOL } from '@router-fleet/protocol';
import WebSocket from 'ws';
import { downloadDispatcher } from '../jobs/download-pool.js';
import { clientContext } from './tls-context.js';
import {
  type ChannelConnection,
  DialError,
  type DialOptions,
  type NetworkTransportOptions,
  type Transport,
  type TransportObserver,
} from './transport.js';

/**
 * Told of what the transport does; the link is the socket. Dial failure codes: the socket's error
 * code, `HTTP_<status>`, `CLOSE_<code>`, `SUBPROTOCOL` or `ABORTED`.
 */
export type WsTransportObserver = TransportObserver<WebSocket>;

export type WsTransportOptions = NetworkTransportOptions<WebSocket>;

type TrackedSocket = WebSocket & { connection?: ChannelConnection };

/**
 * The WebSocket binding (ws): TLS with the connection profile's CA (the server certificate is
 * verified; no `rejectUnauthorized: false` anywhere), subprotocol WS_SUBPROTOCOL, frames capped at
 * MAX_FRAME_BYTES, no compression. TLS contexts are shared per CA and the message listener is shared
 * by every socket, so thousands of simulated agents in one process stay light.
 */
export function createWsTransport(options: WsTransportOptions = {}): Transport & Required<Pick<Transport, 'downloadDispatcher'>> {
  const addresses = options.localAddresses ?? [];
  const observer = options.observer;
  let next = 0;
  let nextDownload = 0;

  const wrap = (ws: TrackedSocket): ChannelConnection => {
    let closed = false;
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
        // Do not wait for a peer that may be gone (half-open): terminate if the close handshake stalls.
        setTimeout(() => ws.terminate(), 2000).unref();
      },
    };
    ws.connection = connection;
    ws.on('message', onMessage);
    ws.on('error', noop);
    ws.on('close', (code: number, reason: Buffer) => {
      if (closed) return;
      closed = true;
      observer?.closed?.(ws, code);
      connection.onClose?.(code, reason.toString());
    });
    observer?.opened?.(ws);
    return connection;
  };

  return {
    downloadDispatcher(caPem: string) {
      // One bounded pool per source address, used in turn: downloads share the channel's addresses.
      const localAddress = addresses.length > 0 ? addresses[nextDownload++ % addresses.length] : undefined;
      return downloadDispatcher({ caPem, localAddress });
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
        const ws: TrackedSocket = new WebSocket(dial.url, WS_SUBPROTOCOL, {
          ...(url.protocol === 'wss:' ? { secureContext: clientContext(dial.caPem) } : {}),
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
          observer?.dialFailed?.(code);
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
function onMessage(this: TrackedSocket, data: WebSocket.RawData, isBinary: boolean): void {
  if (isBinary) {
    this.close(CloseCodes.PROTOCOL_ERROR, 'binary frames are not allowed');
    return;
  }
  this.connection?.onMessage?.(data.toString());
}
