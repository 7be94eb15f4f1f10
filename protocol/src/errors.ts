/**
 * The protocol package's error catalogue. Every failure that `decode`, the packet reader or the
 * signature verifier reports carries one of these stable codes. Codes never change meaning; new
 * codes may be added in minor versions. `docs/protocol.md` lists them (a test keeps it in sync).
 */
export const ProtocolErrorCodes = {
  // ── control-channel codec ──────────────────────────────────────────────────────────────
  PROTO_TOO_LARGE: 'The frame is larger than the maximum frame size.',
  PROTO_INVALID_UTF8: 'The frame is not valid UTF-8.',
  PROTO_INVALID_JSON: 'The frame is not valid JSON.',
  PROTO_INVALID_ENVELOPE:
    'The frame is JSON but not an object with a valid envelope (v, type, id, sentAt, body).',
  PROTO_UNSUPPORTED_VERSION: 'The protocol major version is not supported by this receiver.',
  PROTO_UNKNOWN_TYPE: 'The message type is not known in this protocol major version.',
  PROTO_SCHEMA_VIOLATION: 'The message body violates the schema of its type (see `pointer`).',
  PROTO_ENCODE_INVALID: 'encode() was given a message that does not satisfy its schema.',
  // ── update packets ─────────────────────────────────────────────────────────────────────
  PROTO_PACKET_TAR_CORRUPT:
    'The packet is not a well-formed tar archive (bad header, checksum or truncation).',
  PROTO_PACKET_MANIFEST_NOT_FIRST: 'The first member of the packet is not MANIFEST.',
  PROTO_PACKET_MANIFEST_INVALID:
    'MANIFEST is not valid (encoding, syntax, missing or unknown mandatory keys).',
  PROTO_PACKET_ENTRY_NOT_LISTED: 'The packet contains a member that MANIFEST does not list.',
  PROTO_PACKET_ENTRY_MISSING: 'A file listed in MANIFEST is not in the packet.',
  PROTO_PACKET_DUPLICATE_ENTRY: 'A member name occurs twice (in the tar or in MANIFEST).',
  PROTO_PACKET_SIZE_MISMATCH: 'A member size differs from its FILESIZE in MANIFEST.',
  PROTO_PACKET_MD5_MISMATCH: 'A member MD5 differs from its MD5SUM in MANIFEST.',
  PROTO_PACKET_SHA256_MISMATCH: 'A member SHA-256 differs from its SHA256SUM in MANIFEST.',
  PROTO_PACKET_UNSUPPORTED_ENTRY:
    'A member is not a regular file (symlink, hardlink, device, FIFO, directory).',
  PROTO_PACKET_UNSAFE_PATH: 'A member path is absolute, contains "..", a backslash or a NUL byte.',
  PROTO_PACKET_LIMIT_EXCEEDED: 'A limit on entry count, entry size, total size or path depth was exceeded.',
  PROTO_PACKET_SIGNATURE_MISSING: 'Signatures are required but the packet has no MANIFEST.sig.',
  PROTO_PACKET_SIGNATURE_INVALID: 'MANIFEST.sig is malformed or does not match the MANIFEST bytes.',
  PROTO_PACKET_SIGNER_UNTRUSTED: 'The signer certificate does not chain to any trusted anchor.',
  PROTO_PACKET_SIGNER_EXPIRED: 'The signer certificate (or its chain) is expired or not yet valid.',
  PROTO_PACKET_INCOMPATIBLE: 'The packet is not for this device (model or REQUIRED_SW).',
} as const;

export type ProtocolErrorCode = keyof typeof ProtocolErrorCodes;

/**
 * A protocol failure. `decode` returns it (never throws); the packet reader rejects with it.
 * `pointer` is the RFC 6901 JSON pointer of the first schema violation, `entry` the packet member
 * concerned, where they apply.
 */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code: ProtocolErrorCode;
  readonly pointer: string | undefined;
  readonly entry: string | undefined;

  constructor(code: ProtocolErrorCode, message?: string, details: { pointer?: string; entry?: string } = {}) {
    super(message ?? ProtocolErrorCodes[code]);
    this.code = code;
    this.pointer = details.pointer;
    this.entry = details.entry;
  }

  toJSON(): { code: ProtocolErrorCode; message: string; pointer?: string; entry?: string } {
    return {
      code: this.code,
      message: this.message,
      ...(this.pointer !== undefined ? { pointer: this.pointer } : {}),
      ...(this.entry !== undefined ? { entry: this.entry } : {}),
    };
  }
}

export function isProtocolError(value: unknown): value is ProtocolError {
  return value instanceof ProtocolError;
}
