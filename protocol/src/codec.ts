import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler';
import { ProtocolError } from './errors.js';
import {
  type BodyOf,
  type Direction,
  EnvelopeFields,
  MESSAGE_CATALOGUE,
  type Message,
  type MessageOf,
  type MessageType,
} from './messages/catalogue.js';
import { MAX_FRAME_BYTES } from './transport.js';
import { PROTOCOL_MAJOR, PROTOCOL_VERSION, parseProtocolVersion } from './version.js';

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
  accept?: Exclude<Direction, 'both'>;
}

const envelopeCheck = TypeCompiler.Compile(
  Type.Object({
    v: EnvelopeFields.v,
    type: Type.String(),
    id: EnvelopeFields.id,
    correlationId: EnvelopeFields.correlationId,
    sentAt: EnvelopeFields.sentAt,
    body: Type.Object({}),
  }),
);

type BodyCheck = TypeCheck<(typeof MESSAGE_CATALOGUE)[MessageType]['body']>;
const bodyChecks = new Map<string, BodyCheck>();

/**
 * The compiled validator of a message type's body, compiled on the first message of that type.
 * Compiling all of them when the module loads held about 4 MiB more RSS in an idle agent, which
 * only ever sees a few types (measured with agent/bench/memory.mjs).
 */
function bodyCheck(type: MessageType): BodyCheck {
  let check = bodyChecks.get(type);
  if (!check) {
    check = TypeCompiler.Compile(MESSAGE_CATALOGUE[type].body) as BodyCheck;
    bodyChecks.set(type, check);
  }
  return check;
}

const hasOwn = Object.prototype.hasOwnProperty;

// String.prototype.isWellFormed is in Node 20 (V8 11.3) but only in TypeScript's ES2024 lib, which
// would also admit APIs Node 20 lacks.
type WellFormedString = string & { isWellFormed(): boolean };

function firstViolation(check: TypeCheck<never> | TypeCheck<ReturnType<typeof Type.Object>>, value: unknown) {
  const first = check.Errors(value).First();
  return first ? { path: first.path, message: first.message } : { path: '', message: 'invalid' };
}

/**
 * Decodes one frame. Never throws: returns the typed message, or a `ProtocolError` whose `code` is
 * stable (PROTO_TOO_LARGE, PROTO_INVALID_UTF8, PROTO_INVALID_JSON, PROTO_INVALID_ENVELOPE,
 * PROTO_UNSUPPORTED_VERSION, PROTO_UNKNOWN_TYPE, PROTO_SCHEMA_VIOLATION) and, for schema
 * violations, whose `pointer` is the JSON pointer of the first violation.
 */
export function decode(input: Uint8Array | string, options: DecodeOptions = {}): Message | ProtocolError {
  const maxBytes = options.maxBytes ?? MAX_FRAME_BYTES;
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
    const buf = Buffer.isBuffer(input)
      ? input
      : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    if (!isUtf8(buf)) return new ProtocolError('PROTO_INVALID_UTF8');
    text = buf.toString('utf8');
  } else {
    return new ProtocolError('PROTO_INVALID_JSON', 'frame is neither bytes nor a string');
  }

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return new ProtocolError('PROTO_INVALID_JSON', (err as Error).message);
  }
  return validateMessage(value, options.accept);
}

/**
 * Checks an already-parsed value against the envelope and the body schema of its type. Returns the
 * typed message or a ProtocolError (same codes as `decode`, minus the byte-level ones).
 */
export function validateMessage(value: unknown, accept?: DecodeOptions['accept']): Message | ProtocolError {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return new ProtocolError('PROTO_INVALID_ENVELOPE', 'frame is not a JSON object', { pointer: '' });
  }
  const obj = value as Record<string, unknown>;

  // Version before type: another major version may have other types.
  const v = obj.v;
  if (typeof v === 'string') {
    const parsed = parseProtocolVersion(v);
    if (parsed && parsed.major !== PROTOCOL_MAJOR) {
      return new ProtocolError(
        'PROTO_UNSUPPORTED_VERSION',
        `protocol ${v} is not supported (this side speaks ${PROTOCOL_VERSION})`,
        { pointer: '/v' },
      );
    }
  }
  if (!envelopeCheck.Check(obj)) {
    const { path, message } = firstViolation(envelopeCheck, obj);
    return new ProtocolError('PROTO_INVALID_ENVELOPE', `${path || '/'}: ${message}`, { pointer: path });
  }
  const type = obj.type as string;
  if (!hasOwn.call(MESSAGE_CATALOGUE, type)) {
    return new ProtocolError('PROTO_UNKNOWN_TYPE', `unknown message type "${type.slice(0, 64)}"`, {
      pointer: '/type',
    });
  }
  if (accept) {
    const direction = MESSAGE_CATALOGUE[type as MessageType].direction;
    if (direction !== 'both' && direction !== accept) {
      return new ProtocolError(
        'PROTO_UNKNOWN_TYPE',
        `message type "${type}" is not accepted in this direction`,
        {
          pointer: '/type',
        },
      );
    }
  }
  const check = bodyCheck(type as MessageType);
  if (!check.Check(obj.body)) {
    const { path, message } = firstViolation(check, obj.body);
    const pointer = `/body${path}`;
    return new ProtocolError('PROTO_SCHEMA_VIOLATION', `${pointer}: ${message}`, { pointer });
  }
  return obj as unknown as Message;
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
