import { Type } from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler';
import { ProtocolError } from './errors.js';
import { compileFastCheck } from './fast-check.js';
import {
  type Direction,
  EnvelopeFields,
  MESSAGE_CATALOGUE,
  type Message,
  type MessageType,
} from './messages/catalogue.js';
import { PROTOCOL_MAJOR, PROTOCOL_VERSION, parseProtocolVersion } from './version.js';

/**
 * The two halves of message validation. `validateWithDetails` runs the checks in the order that
 * decides which error a bad message gets (object, version, envelope, type, direction, body) and
 * names the first violation with TypeBox's compiled checks; it is the definition of a valid
 * message. `fastCheckOf(type)` gives, per message type, one check of the whole message (envelope and body,
 * `compileFastCheck`) that accepts exactly the messages `validateWithDetails` accepts for that type
 * and version, without naming anything: the codec tries it first and calls `validateWithDetails`
 * only when it fails.
 */

/** Which direction a receiver accepts; `both`-direction types are always accepted. */
export type AcceptDirection = Exclude<Direction, 'both'>;

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
 * The compiled check of a type's body, compiled on the first message of that type: an idle agent
 * sees a handful of the catalogue's types, and compiling all of them at load held about 4 MiB of
 * its RSS (agent/bench/memory.mjs).
 */
function bodyCheck(type: MessageType): BodyCheck {
  let check = bodyChecks.get(type);
  if (!check) {
    check = TypeCompiler.Compile(MESSAGE_CATALOGUE[type].body) as BodyCheck;
    bodyChecks.set(type, check);
  }
  return check;
}

export interface FastCheck {
  readonly direction: Direction;
  /**
   * True when the value is a complete valid message of this type, given that its `v` has already
   * been found to be a version of this major (`isSameMajorVersion`) and its `type` to be this
   * type's name (`fastCheckOf` compared it): `v` and `type` are only checked to be strings here,
   * so neither is matched again for every message (a type name just parsed from JSON is a fresh
   * string, and comparing it again cost about 15 ns, Node 20).
   */
  readonly check: (value: unknown) => boolean;
}

interface FastCheckSlot {
  readonly type: MessageType;
  fast: FastCheck | undefined;
}

/**
 * The message types by the length of their name, each with its fast check once compiled. A type
 * just parsed from JSON is a fresh string whose hash is not computed yet (V8 internalizes only
 * short string values): a Map or property lookup would hash it on every message (about 40 ns for
 * `job-progress`, Node 20), where comparing it with the one or two names of its length costs a
 * few.
 */
const slotsByLength: FastCheckSlot[][] = [];
for (const type of Object.keys(MESSAGE_CATALOGUE) as MessageType[]) {
  (slotsByLength[type.length] ??= []).push({ type, fast: undefined });
}

/**
 * Per message type: its direction and the compiled check of envelope + body in one function,
 * compiled on the first message of that type (as the body checks are); undefined for a name that
 * is not a message type.
 */
export function fastCheckOf(type: string): FastCheck | undefined {
  const slots = slotsByLength[type.length];
  if (slots === undefined) return undefined;
  for (let i = 0; i < slots.length; i++) {
    const slot = slots[i]!;
    if (slot.type === type) return (slot.fast ??= compileFastCheckOf(slot.type));
  }
  return undefined;
}

function compileFastCheckOf(type: MessageType): FastCheck {
  const entry = MESSAGE_CATALOGUE[type];
  const check = compileFastCheck(
    Type.Object({
      v: Type.String(),
      type: Type.String(),
      id: EnvelopeFields.id,
      correlationId: EnvelopeFields.correlationId,
      sentAt: EnvelopeFields.sentAt,
      body: entry.body,
    }),
  );
  return { direction: entry.direction, check };
}

/**
 * True when `v` is a protocol version of this side's major version: the envelope's pattern for `v`
 * and the version rule together (`PROTOCOL_VERSION` itself is the common case and needs no parse).
 */
export function isSameMajorVersion(v: unknown): boolean {
  if (v === PROTOCOL_VERSION) return true;
  if (typeof v !== 'string') return false;
  const parsed = parseProtocolVersion(v);
  return parsed !== undefined && parsed.major === PROTOCOL_MAJOR;
}

const hasOwn = Object.prototype.hasOwnProperty;

function firstViolation(check: TypeCheck<never> | TypeCheck<ReturnType<typeof Type.Object>>, value: unknown) {
  const first = check.Errors(value).First();
  return first ? { path: first.path, message: first.message } : { path: '', message: 'invalid' };
}

/**
 * Validates a parsed value with every check in order and returns the typed message, or a
 * ProtocolError naming the first violation (PROTO_INVALID_ENVELOPE, PROTO_UNSUPPORTED_VERSION,
 * PROTO_UNKNOWN_TYPE, PROTO_SCHEMA_VIOLATION).
 */
export function validateWithDetails(value: unknown, accept?: AcceptDirection): Message | ProtocolError {
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
