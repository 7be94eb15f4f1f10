import type { MqttProtocolVersion } from '@router-fleet/protocol';
import type { Dispatcher } from 'undici';

/**
 * The control-channel transport, behind an interface so that the WebSocket and MQTT bindings, and
 * the in-memory transport of tests and the simulator, are interchangeable. A connection carries text
 * frames, one protocol message each.
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
  /** Allow `ws://` and `mqtt://` (development and tests only). */
  allowInsecure?: boolean;
  signal?: AbortSignal;
  /** The device id: MQTT client id and user name (the WebSocket binding sends it in `hello` only). */
  deviceId?: string;
  /** The device credential: MQTT password. Never logged. */
  credential?: string;
  /** MQTT protocol level from the connection profile: 5 (default) or 4 (MQTT 3.1.1). */
  mqttVersion?: MqttProtocolVersion;
  /** MQTT keep-alive (seconds): how long the broker waits for a packet before it ends the link. */
  keepAliveSec?: number;
}

export interface Transport {
  /** Opens a connection. Rejects with a DialError. */
  dial(options: DialOptions): Promise<ChannelConnection>;
  /**
   * The HTTP connection pool for packet downloads to a server verified by `caPem` (same source
   * addresses as the channel). Optional: without it the agent uses a process-wide pool per CA.
   */
  downloadDispatcher?(caPem: string): Dispatcher;
  /**
   * Resolves when a download may start (or when `signal` aborts). Optional: without it a download
   * starts at once. A process that runs many agents on one event loop (the simulator) starts their
   * downloads after a burst of offers, so that one router's download work does not delay the next
   * router's offer, as it could not on routers that each have their own processor.
   */
  downloadTurn?(signal: AbortSignal): Promise<void>;
}

/** An open channel as a transport observer sees it: enough to cut it abruptly (no goodbye). */
export interface OpenLink {
  /** Drops the connection at once, as a power cut or a NAT timeout would (no close handshake). */
  terminate(): void;
}

/**
 * Told of what a transport does (one observer per transport, not per connection): the simulator
 * counts dials and closes with it and keeps the open links to cut them.
 */
export interface TransportObserver<L extends OpenLink = OpenLink> {
  /** A dial failed, with a short code (the socket's error code, `HTTP_<status>`, `CONNACK_<code>`, `ABORTED`, …). */
  dialFailed?(code: string): void;
  /** A channel opened (its handshake completed). */
  opened?(link: L): void;
  /** An open channel closed, with its close code (WebSocket close codes; 1006 when the link was lost). */
  closed?(link: L, code: number): void;
}

/** Options every network transport takes. */
export interface NetworkTransportOptions<L extends OpenLink = OpenLink> {
  /** Source addresses dialled from, round robin (e.g. 127.0.0.1–127.0.0.4 in the simulator, so ephemeral ports last). */
  localAddresses?: readonly string[];
  observer?: TransportObserver<L>;
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
