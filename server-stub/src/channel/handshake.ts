import { Buffer } from 'node:buffer';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { MAX_FRAME_BYTES, WS_SUBPROTOCOL } from '@router-fleet/protocol';
import { WebSocketServer } from 'ws';
import type { Metrics } from '../metrics.js';
import { CHANNEL_PATH } from '../profiles/service.js';
import type { LinkAcceptor } from './transport.js';
import { acceptWebSocket } from './ws-transport.js';

export interface WsEndpointDeps {
  readonly metrics: Metrics;
  /** Whether the server is shutting down (new connections are refused with 503). */
  readonly shuttingDown: () => boolean;
  readonly accept: LinkAcceptor;
  /** Extra 101-response header naming this process (cluster mode, so tests can tell workers apart). */
  readonly workerTag?: string | undefined;
}

/**
 * The WebSocket endpoint `/api/channel` on the server's own HTTP(S) listener: the handshake
 * checks (path, shutdown, subprotocol) and their refusals as plain HTTP answers.
 */
export class WsEndpoint {
  readonly #wss: WebSocketServer;

  constructor(private readonly deps: WsEndpointDeps) {
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
  }

  /** Handles `upgrade` on the server (call before listening). */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
  }

  close(): void {
    this.#wss.close();
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?', 1)[0];
    if (path !== CHANNEL_PATH) return this.#refuse(socket, 404, 'Not Found', 'not-found');
    if (this.deps.shuttingDown()) return this.#refuse(socket, 503, 'Service Unavailable', 'shutting-down');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim());
    // Without the subprotocol (which names the major version) the handshake fails: the client
    // speaks another or no version of the protocol.
    if (!offered.includes(WS_SUBPROTOCOL)) {
      return this.#refuse(socket, 400, 'Bad Request', 'subprotocol', `Sec-WebSocket-Protocol must offer ${WS_SUBPROTOCOL}`);
    }
    const peer = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.deps.metrics.inc('fleet_channel_connections_total');
      acceptWebSocket(ws, peer, this.deps.accept);
    });
  }

  #refuse(socket: Duplex, status: number, text: string, reason: string, body = text): void {
    this.deps.metrics.inc('fleet_channel_handshakes_refused_total', { reason });
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\n`
        + `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  }
}
