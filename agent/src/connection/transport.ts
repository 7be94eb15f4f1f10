import type { Dispatcher } from 'undici';

/**
 * The control-channel transport, behind an interface so that an MQTT binding can come later and
 * tests and the simulator can use an in-memory transport. A connection carries text frames, one
 * protocol message each.
 */
export interface ChannelConnection {
  /** Sends one text frame. Returns false when the connection is no longer open. */
  send(text: string): boolean;
  /** Closes with a close code (RFC 6455 or the protocol's 4xxx). Idempotent. */
  close(code: number, reason?: string): void;
  /** Set by the session: one listener each. */
  onMessage: ((data: string) => void) | undefined;
  onClose: ((code: number, reason: string) => void) | undefined;
}

export interface DialOptions {
  /** Control-channel URL from the connection profile. */
  url: string;
  /** PEM CA(s) that verify the server certificate. */
  caPem: string;
  /** Longest handshake (TCP + TLS + upgrade). */
  timeoutMs: number;
  /** Allow `ws://` (development and tests only). */
  allowInsecure?: boolean;
  signal?: AbortSignal;
}

export interface Transport {
  /** Opens a connection. Rejects with a DialError. */
  dial(options: DialOptions): Promise<ChannelConnection>;
  /**
   * The HTTP connection pool for packet downloads to a server verified by `caPem` (same source
   * addresses as the channel). Optional: without it the agent uses a process-wide pool per CA.
   */
  downloadDispatcher?(caPem: string): Dispatcher;
}

/** Why a dial failed: `auth` (the server refused the device in the handshake) or `network`. */
export class DialError extends Error {
  override readonly name = 'DialError';
  readonly kind: 'auth' | 'network' | 'protocol';
  constructor(kind: 'auth' | 'network' | 'protocol', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
  }
}
