import type { ProtocolError } from './errors.js';
import { isIdentifier } from './identifiers.js';
import type { ErrorBody } from './messages/error.js';

// Only these faults are found after the envelope's `id` was read as the sender meant it; for the
// others (not JSON, a broken envelope) an `id` found in the frame is not one to answer to.
const CORRELATED_CODES: ReadonlySet<string> = new Set(['PROTO_SCHEMA_VIOLATION', 'PROTO_UNKNOWN_TYPE', 'PROTO_UNSUPPORTED_VERSION']);

/**
 * The `correlationId` of the `error` reply to a frame that `decode` refused: the frame's `id` when
 * the fault lies in the type, version or body of an otherwise well-formed message and the id is an
 * identifier; otherwise undefined (the reply then names no message). Never throws.
 */
export function correlationIdOf(error: ProtocolError, frame: string | Uint8Array): string | undefined {
  if (!CORRELATED_CODES.has(error.code)) return undefined;
  try {
    const text = typeof frame === 'string' ? frame : new TextDecoder().decode(frame);
    const id = (JSON.parse(text) as { id?: unknown } | null)?.id;
    return isIdentifier(id) ? id : undefined;
  } catch {
    // Not JSON: no id to answer to (decode refused it for that reason already).
    return undefined;
  }
}

/**
 * The body of the `error` reply to a frame that `decode` refused: the error's code, its message and
 * pointer cut to the schema's bounds (1024 and 256 characters), not retryable (the same frame would
 * fail again).
 */
export function errorReplyBody(error: ProtocolError): ErrorBody {
  return {
    code: error.code,
    message: error.message.slice(0, 1024),
    retryable: false,
    ...(error.pointer !== undefined ? { pointer: error.pointer.slice(0, 256) } : {}),
  };
}
