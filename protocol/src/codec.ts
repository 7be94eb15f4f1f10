import { Buffer, isAscii, isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { ProtocolError } from './errors.js';
import {
  type AcceptDirection,
  fastCheckOf,
  isSameMajorVersion,
  validateWithDetails,
} from './message-validation.js';
import { type BodyOf, type Message, type MessageOf, type MessageType } from './messages/catalogue.js';
import { MAX_FRAME_BYTES } from './transport.js';
import { PROTOCOL_VERSION } from './version.js';

/**
 * Forward-compatibility rule (protocol major version 1):
 * - Within a major version, changes are additive: new optional fields, new message types, never a
 *   changed meaning. Receivers accept any minor version of their major.
 * - Unknown fields (in the envelope or in a body, at any depth) are accepted and ignored. `decode`
 *   keeps them in the returned object untouched; code must not rely on them.
 * - An unknown message type is answered with an `error` (PROTO_UNKNOWN_TYPE); the channel stays open.
 * - A different major version is refused (PROTO_UNSUPPORTED_VERSION); the WebSocket subprotocol
 *   name carries the major version so this is normally settled in the handshake.
 */
export interface DecodeOptions {
  /** Largest accepted frame in bytes (UTF-8). Default: MAX_FRAME_BYTES (64 KiB). */
  maxBytes?: number;
  /**
   * Which messages the receiver accepts: a server decodes with `'up'` (device → server), an agent
   * with `'down'`. `both`-direction types (ping, pong, error) are always accepted. Default: any.
   */
  accept?: AcceptDirection;
}

// String.prototype.isWellFormed is in Node 20 (V8 11.3) but only in TypeScript's ES2024 lib, which
// would also admit APIs Node 20 lacks.
type WellFormedString = string & { isWellFormed(): boolean };

// A fatal TextDecoder validates and decodes in one pass, where `isUtf8` and then `toString` read
// the bytes twice. The BOM is kept, as `toString` keeps it: JSON does not allow it, so such a frame
// stays invalid JSON. Where the decoder refuses the input itself (a build without ICU, a view of
// a shared or detached buffer), the two passes decide.
const fatalUtf8 = (() => {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  } catch {
    return undefined;
  }
})();

// Node's own one-pass copy of bytes to a one-byte string (what `toString('latin1')` calls after
// looking up the encoding by name).
type Latin1Sliceable = Buffer & { latin1Slice(start: number, end: number): string };

/** The text of UTF-8 bytes, or undefined when they are not valid UTF-8. */
function decodeUtf8(input: Uint8Array): string | undefined {
  // Frames are almost always ASCII, and ASCII bytes are valid UTF-8 that reads the same as latin1.
  // `isAscii` (simdutf) and a latin1 copy took 179–203 ns for a 1,200-byte `status`, the fatal
  // decoder 195–224 (Node 20, 1,024 distinct frames in turn).
  try {
    if (isAscii(input)) {
      const buf = (Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength)) as Latin1Sliceable;
      return buf.latin1Slice(0, buf.length);
    }
  } catch {
    // A view this path does not take (a detached buffer): the decoder below decides.
  }
  if (fatalUtf8 !== undefined) {
    try {
      return fatalUtf8.decode(input);
    } catch {
      // Invalid UTF-8, or input this decoder does not take: the slow path tells which.
    }
  }
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  return isUtf8(buf) ? buf.toString('utf8') : undefined;
}

/**
 * Decodes one frame. Never throws: returns the typed message, or a `ProtocolError` whose `code` is
 * stable (PROTO_TOO_LARGE, PROTO_INVALID_UTF8, PROTO_INVALID_JSON, PROTO_INVALID_ENVELOPE,
 * PROTO_UNSUPPORTED_VERSION, PROTO_UNKNOWN_TYPE, PROTO_SCHEMA_VIOLATION) and, for schema
 * violations, whose `pointer` is the JSON pointer of the first violation.
 */
export function decode(input: Uint8Array | string, options?: DecodeOptions): Message | ProtocolError {
  // No default `{}`: it would be a new object on every frame.
  const maxBytes = options?.maxBytes ?? MAX_FRAME_BYTES;
  let text: string;
  if (typeof input === 'string') {
    if (input.length > maxBytes || (input.length * 3 > maxBytes && Buffer.byteLength(input) > maxBytes)) {
      return new ProtocolError('PROTO_TOO_LARGE', `frame exceeds ${maxBytes} bytes`);
    }
    if (!(input as WellFormedString).isWellFormed())
      return new ProtocolError('PROTO_INVALID_UTF8', 'frame contains a lone surrogate');
    text = input;
  } else if (input instanceof Uint8Array) {
    if (input.byteLength > maxBytes)
      return new ProtocolError('PROTO_TOO_LARGE', `frame exceeds ${maxBytes} bytes`);
    const decoded = decodeUtf8(input);
    if (decoded === undefined) return new ProtocolError('PROTO_INVALID_UTF8');
    text = decoded;
  } else {
    return new ProtocolError('PROTO_INVALID_JSON', 'frame is neither bytes nor a string');
  }

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return new ProtocolError('PROTO_INVALID_JSON', (err as Error).message);
  }
  return validateMessage(value, options?.accept);
}

/**
 * Checks an already-parsed value against the envelope and the body schema of its type. Returns the
 * typed message or a ProtocolError (same codes as `decode`, minus the byte-level ones).
 */
export function validateMessage(value: unknown, accept?: DecodeOptions['accept']): Message | ProtocolError {
  // A valid message passes one compiled check of its type's envelope and body; only a message that
  // fails it pays for the ordered checks that decide which error it gets and name the violation.
  if (typeof value === 'object' && value !== null) {
    const obj = value as Record<string, unknown>;
    const type = obj.type;
    if (typeof type === 'string') {
      const fast = fastCheckOf(type);
      if (
        fast !== undefined
        && (accept === undefined || fast.direction === 'both' || fast.direction === accept)
        && isSameMajorVersion(obj.v)
        && fast.check(obj)
      ) {
        return obj as unknown as Message;
      }
    }
  }
  return validateWithDetails(value, accept);
}

/** Narrows a decode result. */
export function isMessage(value: Message | ProtocolError): value is Message {
  return !(value instanceof ProtocolError);
}

export interface CreateOptions {
  /** Message id; default a random UUID. */
  id?: string;
  /** The id of the message this one answers. */
  correlationId?: string;
  /** Sender clock in ms; default Date.now(). Pass the injected clock's time. */
  sentAt?: number;
}

/** Builds a message with a complete envelope. */
export function createMessage<T extends MessageType>(
  type: T,
  body: BodyOf<T>,
  options: CreateOptions = {},
): MessageOf<T> {
  const message: MessageOf<T> = {
    v: PROTOCOL_VERSION,
    type,
    id: options.id ?? randomUUID(),
    sentAt: options.sentAt ?? Date.now(),
    body,
  };
  if (options.correlationId !== undefined) message.correlationId = options.correlationId;
  return message;
}

export interface EncodeOptions {
  /**
   * Validate against the schema before encoding (default true). Turn off only on hot paths whose
   * messages are built from already-validated data.
   */
  validate?: boolean;
}

/**
 * Encodes a message to the JSON text of one frame. Throws a ProtocolError (PROTO_ENCODE_INVALID)
 * when the message does not satisfy its schema: that is a programming error of the sender, not
 * bad input.
 */
export function encode(message: Message, options: EncodeOptions = {}): string {
  if (options.validate !== false) {
    const result = validateMessage(message);
    if (result instanceof ProtocolError) {
      throw new ProtocolError('PROTO_ENCODE_INVALID', `${message.type}: ${result.message}`, {
        ...(result.pointer !== undefined ? { pointer: result.pointer } : {}),
      });
    }
  }
  return JSON.stringify(message);
}
