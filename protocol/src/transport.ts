import { PROTOCOL_MAJOR } from './version.js';

/**
 * WebSocket binding. The device opens `wss://<server>/api/channel` (path chosen by the server's
 * connection profile) offering this subprotocol; the server accepts only a major version it
 * speaks, so a version mismatch fails in the handshake. One message = one text frame.
 */
export const WS_SUBPROTOCOL = `router-fleet.v${PROTOCOL_MAJOR}`;

/**
 * Largest frame either side sends or accepts (bytes, UTF-8). Control messages only: packet bytes
 * never travel on the channel.
 */
export const MAX_FRAME_BYTES = 64 * 1024;

/**
 * Close codes. 1000–1015 are RFC 6455's; 4000–4999 are ours. A receiver that closes because of
 * bad input uses the code of the first problem it met.
 */
export const CloseCodes = {
  /** Normal close (session ended by either side). */
  NORMAL: 1000,
  /** Server shutting down or device rebooting. Reconnect with backoff. */
  GOING_AWAY: 1001,
  /** Frame-level protocol error (binary frame, bad envelope on the first message). */
  PROTOCOL_ERROR: 1002,
  /** PROTO_INVALID_UTF8. */
  INVALID_PAYLOAD: 1007,
  /** Policy violation: too many bad messages in a row, slow consumer. */
  POLICY_VIOLATION: 1008,
  /** PROTO_TOO_LARGE. */
  MESSAGE_TOO_BIG: 1009,
  /** Server error; reconnect with backoff. */
  INTERNAL_ERROR: 1011,
  /** Server restarting; reconnect with backoff. */
  SERVICE_RESTART: 1012,
  /** Overloaded; reconnect with backoff. */
  TRY_AGAIN_LATER: 1013,
  /** PROTO_UNSUPPORTED_VERSION (or no acceptable subprotocol). */
  UNSUPPORTED_VERSION: 4000,
  /** The first message was not a valid `hello`, or `hello` did not arrive in time. */
  HELLO_REQUIRED: 4001,
  /** Device credential unknown or revoked. Back off for long; do not retry hot. */
  AUTH_FAILED: 4003,
  /** Admission rejected (no licence free): `welcome` carried `retryAfterSec`. */
  REJECTED: 4004,
  /** No pong within the pong timeout (half-open link). */
  PONG_TIMEOUT: 4008,
  /** A newer connection of the same device replaced this one. */
  REPLACED: 4009,
} as const;
export type CloseCode = (typeof CloseCodes)[keyof typeof CloseCodes];

/** Close codes after which the device should wait long before reconnecting. */
export const LONG_BACKOFF_CLOSE_CODES: readonly number[] = [
  CloseCodes.AUTH_FAILED,
  CloseCodes.REJECTED,
  CloseCodes.UNSUPPORTED_VERSION,
];
