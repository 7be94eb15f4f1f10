import { WebSocket } from 'ws';
import type { ChannelTransport, LinkAcceptor } from './transport.js';

/** A `ws` WebSocket as a {@link ChannelTransport}. */
export class WsTransport implements ChannelTransport {
  constructor(
    private readonly ws: WebSocket,
    readonly peer: string,
  ) {}

  get writable(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  send(text: string): void {
    this.ws.send(text);
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Hands an upgraded WebSocket to the channel and reports its frames, failures and end. */
export function acceptWebSocket(ws: WebSocket, peer: string, accept: LinkAcceptor): void {
  const events = accept(new WsTransport(ws, peer));
  ws.on('message', (data: Buffer, isBinary: boolean) => events.frame(data, isBinary));
  ws.on('close', () => events.ended());
  // ws closes the connection itself (1009 too big, 1007 invalid UTF-8, 1002 bad frames) and then
  // reports why here; without a listener the process would crash.
  ws.on('error', (err: Error & { code?: string }) => events.failed(err.code ?? 'WS_ERROR'));
}
