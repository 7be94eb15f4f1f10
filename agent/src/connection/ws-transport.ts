import { createSecureContext, type SecureContext } from 'node:tls';
import { CloseCodes, MAX_FRAME_BYTES, WS_SUBPROTOCOL } from '@router-fleet/protocol';
import WebSocket from 'ws';
import { type ChannelConnection, DialError, type DialOptions, type Transport } from './transport.js';

/**
 * The WebSocket binding (ws): TLS with the connection profile's CA (the server certificate is
 * verified; no `rejectUnauthorized: false` anywhere), subprotocol WS_SUBPROTOCOL, frames capped at
 * MAX_FRAME_BYTES, no compression. TLS contexts are shared per CA so thousands of simulated agents
 * do not each build one.
 */
export function createWsTransport(): Transport {
  const contexts = new Map<string, SecureContext>();
  const contextFor = (caPem: string) => {
    let context = contexts.get(caPem);
    if (!context) {
      context = createSecureContext({ ca: caPem });
      contexts.set(caPem, context);
    }
    return context;
  };
  return {
    dial(options: DialOptions): Promise<ChannelConnection> {
      return new Promise((resolve, reject) => {
        let url: URL;
        try {
          url = new URL(options.url);
        } catch {
          reject(new DialError('protocol', `invalid server URL`));
          return;
        }
        if (url.protocol !== 'wss:' && !(options.allowInsecure && url.protocol === 'ws:')) {
          reject(new DialError('protocol', `refusing ${url.protocol} (TLS required)`));
          return;
        }
        if (options.signal?.aborted) {
          reject(options.signal.reason);
          return;
        }
        const ws = new WebSocket(options.url, WS_SUBPROTOCOL, {
          ...(url.protocol === 'wss:' ? { secureContext: contextFor(options.caPem) } : {}),
          maxPayload: MAX_FRAME_BYTES,
          handshakeTimeout: options.timeoutMs,
          perMessageDeflate: false,
          followRedirects: false,
        });
        let settled = false;
        const onAbort = () => {
          fail(new DialError('network', 'dial aborted'));
          ws.terminate();
        };
        const fail = (error: Error) => {
          if (settled) return;
          settled = true;
          options.signal?.removeEventListener('abort', onAbort);
          reject(error);
        };
        options.signal?.addEventListener('abort', onAbort, { once: true });
        ws.once('unexpected-response', (_req, res) => {
          const status = res.statusCode ?? 0;
          res.resume();
          fail(
            status === 401 || status === 403
              ? new DialError('auth', `handshake refused with HTTP ${status}`)
              : new DialError('network', `handshake answered with HTTP ${status}`),
          );
          ws.terminate();
        });
        ws.once('error', (error) => fail(new DialError('network', error.message, { cause: error })));
        ws.once('close', (code) => fail(new DialError('network', `closed during the handshake (${code})`)));
        ws.once('open', () => {
          if (ws.protocol !== WS_SUBPROTOCOL) {
            ws.close(CloseCodes.PROTOCOL_ERROR, 'subprotocol not accepted');
            fail(new DialError('protocol', 'the server did not accept the subprotocol'));
            return;
          }
          settled = true;
          options.signal?.removeEventListener('abort', onAbort);
          ws.removeAllListeners('error');
          ws.removeAllListeners('close');
          resolve(wrap(ws));
        });
      });
    },
  };
}

function wrap(ws: WebSocket): ChannelConnection {
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
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      ws.close(CloseCodes.PROTOCOL_ERROR, 'binary frames are not allowed');
      return;
    }
    connection.onMessage?.(data.toString());
  });
  ws.on('error', () => {
    // 'close' follows every 'error'.
  });
  ws.on('close', (code, reason) => {
    if (closed) return;
    closed = true;
    connection.onClose?.(code, reason.toString());
  });
  return connection;
}
