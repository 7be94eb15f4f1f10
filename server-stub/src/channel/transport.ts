/**
 * One device link as the session logic sees it. The WebSocket adapter (`ws-transport.ts`) is one
 * implementation; another transport (MQTT) implements the same few members and reports to the
 * channel through {@link LinkEvents}, without touching admission or ingest.
 */
export interface ChannelTransport {
  /** Whether a frame can be sent now (the link is open and no close has started). */
  readonly writable: boolean;
  /** Bytes queued for the peer and not yet written: the slow-reader rule drops a peer above a bound. */
  readonly bufferedAmount: number;
  /** The peer's address, for logs. */
  readonly peer: string;
  /** Queues one text frame. */
  send(text: string): void;
  /** Starts closing with a protocol close code (`CloseCodes`); the end is reported by `ended`. */
  close(code: number, reason: string): void;
  /** Ends the link at once, without a close handshake (a peer that does not read, an overdue close). */
  terminate(): void;
}

/** What a transport reports about one link, in order; `ended` comes exactly once and last. */
export interface LinkEvents {
  /** One frame from the device (`isBinary`: the transport's binary flag; the protocol is text only). */
  frame(data: Buffer, isBinary: boolean): void;
  /** The transport closed the link itself for bad framing (ws: 1009, 1007, 1002); `code` names why. */
  failed(code: string): void;
  /**
   * The link has ended, however it ended. `server-outage`: the server's own side lost it (its MQTT
   * bucket client lost the broker), not the device; the device's seat is held, not put into grace.
   */
  ended(cause?: LinkEndCause): void;
}

/** Why a link ended when the device did not end it (see {@link LinkEvents.ended}). */
export type LinkEndCause = 'server-outage';

/** Where a transport hands each new link: the control channel, which answers with its event sink. */
export type LinkAcceptor = (transport: ChannelTransport) => LinkEvents;
