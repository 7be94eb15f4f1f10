import { Buffer } from 'node:buffer';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { ProtocolError } from '../errors.js';
import { checkPacketCompatibility, type DeviceCompatibility } from './compatibility.js';
import { Extractor } from './extractor.js';
import { type PacketLimits, resolveLimits } from './limits.js';
import {
  MANIFEST_NAME,
  type Manifest,
  type ManifestSection,
  parseManifest,
  SIGNATURE_NAME,
} from './manifest.js';
import { extractionConflict, pathDepth, unsafePathReason } from './member-path.js';
import { type SignerIdentity, verifyManifestSignature } from './signature.js';
import { BLOCK_SIZE, paddingFor, TypeFlag, typeFlagName } from './tar-format.js';
import { type TarMember, type TarMemberSink, TarStreamParser } from './tar-stream-parser.js';

/** Size of the chunks read from a file path or sliced from a Buffer source, in bytes. */
export const READ_CHUNK_SIZE = 1024 * 1024;

/**
 * Where a packet comes from: a file path, the whole packet in memory, or a stream of bytes (a Node
 * Readable without string encoding, or any async iterable of byte chunks). A stream is consumed
 * and, when reading stops early (failure, or {@link readPacketHead} done), destroyed.
 */
export type PacketSource = string | Uint8Array | Readable | AsyncIterable<Uint8Array>;

/** Options shared by {@link readPacket} and {@link readPacketHead}. */
export interface ReadPacketHeadOptions {
  /** Reject packets without a valid MANIFEST.sig. Default true. */
  requireSignature?: boolean;
  /**
   * Trusted root certificates (PEM), several at once for key rotation. When a packet has a
   * MANIFEST.sig and anchors are given, the signature is verified in full even if
   * `requireSignature` is false. With no anchors and `requireSignature: false`, only the
   * signature's integrity is checked and the result says `signed: false`.
   */
  trustAnchors?: readonly string[];
  /** The time at which the signer chain must be valid. Default: now. */
  at?: Date;
  /** Overrides of {@link DEFAULT_PACKET_LIMITS}. */
  limits?: Partial<PacketLimits>;
  /** Accept FILETYPE values outside {@link FileTypes}. Default false. */
  allowUnknownFileTypes?: boolean;
  /**
   * Check the MANIFEST against this device (TARGET_MODELS, REQUIRED_SW, firmware downgrade) right
   * after the signature and before any payload byte; see {@link checkPacketCompatibility}.
   */
  device?: DeviceCompatibility;
  /** Called once MANIFEST (and MANIFEST.sig) are verified, before any payload byte; throw to reject. */
  onHead?: (head: PacketHead) => void | Promise<void>;
  /** Aborts reading (rejects with the signal's reason, after cleaning up `extractTo`). */
  signal?: AbortSignal;
}

/** Options of {@link readPacket}. */
export interface ReadPacketOptions extends ReadPacketHeadOptions {
  /**
   * Extract the payload into this directory (created if needed; use a dedicated, empty staging
   * directory). Each member is streamed into `<extractTo>/<name>.partial` while it is hashed and
   * renamed to `<extractTo>/<name>` once its hashes match. When the packet fails for any reason,
   * every file and directory this call created is removed again.
   */
  extractTo?: string;
  /** Expected size and SHA-256 of the whole packet (e.g. from the job offer), checked while streaming. */
  expect?: { sha256?: string; size?: number };
}

/** The verified head of a packet: MANIFEST and its signature. */
export interface PacketHead {
  /** The parsed MANIFEST. */
  manifest: Manifest;
  /** The exact MANIFEST bytes (what the signature covers). */
  manifestBytes: Buffer;
  /** True when MANIFEST.sig verified and chains to a trust anchor. */
  signed: boolean;
  /** The signer, when `signed`. */
  signer?: SignerIdentity;
}

/** A MANIFEST section whose member was read and verified. */
export interface VerifiedSection extends ManifestSection {
  /** Size of the member in bytes. */
  size: number;
  /** Lowercase hex SHA-256 of the member (computed even when the section has no SHA256SUM). */
  sha256: string;
  /** Absolute path of the extracted file, with `extractTo`. */
  path?: string;
}

/** The result of {@link readPacket}. */
export interface ReadPacketResult extends PacketHead {
  /** The sections in MANIFEST (processing) order, each verified. */
  sections: VerifiedSection[];
  /** Lowercase hex SHA-256 of the whole packet. */
  sha256: string;
  /** Size of the whole packet in bytes. */
  size: number;
}

const HEX64 = /^[0-9a-fA-F]{64}$/;

function err(code: ConstructorParameters<typeof ProtocolError>[0], message: string, entry?: string): ProtocolError {
  return new ProtocolError(code, message, entry === undefined ? {} : { entry });
}

async function* chunksOf(source: PacketSource): AsyncGenerator<Buffer> {
  if (typeof source === 'string') {
    yield* createReadStream(source, { highWaterMark: READ_CHUNK_SIZE }) as AsyncIterable<Buffer>;
    return;
  }
  if (source instanceof Uint8Array) {
    const buf = Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    for (let off = 0; off < buf.length; off += READ_CHUNK_SIZE) yield buf.subarray(off, off + READ_CHUNK_SIZE);
    return;
  }
  for await (const chunk of source as AsyncIterable<unknown>) {
    if (Buffer.isBuffer(chunk)) yield chunk;
    else if (chunk instanceof Uint8Array) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    else throw new TypeError('packet source yielded a non-binary chunk (is an encoding set on the stream?)');
  }
}

class StopAfterHead extends Error {}

class PacketReader {
  readonly #options: ReadPacketOptions;
  readonly #limits: Readonly<PacketLimits>;
  readonly #stopAfterHead: boolean;
  readonly extractor: Extractor | undefined;
  readonly parser: TarStreamParser;
  readonly #names = new Set<string>();
  #count = 0;
  #manifestBytes: Buffer | undefined;
  #signatureBytes: Buffer | undefined;
  head: PacketHead | undefined;
  #sections = new Map<string, ManifestSection>();
  readonly verified = new Map<string, VerifiedSection>();

  constructor(options: ReadPacketOptions, stopAfterHead: boolean) {
    this.#options = options;
    this.#limits = resolveLimits(options.limits);
    this.#stopAfterHead = stopAfterHead;
    this.parser = new TarStreamParser({
      maxExtendedHeaderSize: this.#limits.maxExtendedHeaderSize,
      onMember: (member) => this.#onMember(member),
    });
    this.extractor = options.extractTo === undefined ? undefined : new Extractor(options.extractTo);
    if (options.expect?.sha256 !== undefined && !HEX64.test(options.expect.sha256)) {
      throw new TypeError('expect.sha256 must be 64 hex digits');
    }
    const size = options.expect?.size;
    if (size !== undefined && (!Number.isSafeInteger(size) || size < 0)) {
      throw new TypeError('expect.size must be a non-negative integer');
    }
  }

  get limits(): Readonly<PacketLimits> {
    return this.#limits;
  }

  // Checks made from the header alone, before any body byte, in a fixed order so that every bad
  // input maps to one stable code: the head (signature, MANIFEST) as soon as it is complete, then
  // entry type, path, limits, duplicates, position rules, listing and size.
  async #onMember(member: TarMember): Promise<TarMemberSink> {
    const limits = this.#limits;
    const isRegular = member.typeFlag === TypeFlag.File || member.typeFlag === TypeFlag.OldFile;
    const isSignature = this.#count === 1 && member.path === SIGNATURE_NAME && isRegular;
    if (this.#count >= 1 && !this.head && !isSignature) await this.finishHead();
    const label = member.path ?? '(undecodable name)';
    if (!isRegular) {
      throw err('PROTO_PACKET_UNSUPPORTED_ENTRY', `${label} is a ${typeFlagName(member.typeFlag)}`, member.path);
    }
    if (member.path === undefined) throw err('PROTO_PACKET_UNSAFE_PATH', 'a member name is not valid UTF-8');
    const path = member.path;
    if (member.pathHasNul) throw err('PROTO_PACKET_UNSAFE_PATH', `${path}: the name contains a NUL byte`, path);
    const reason = unsafePathReason(path);
    if (reason) throw err('PROTO_PACKET_UNSAFE_PATH', `${path}: ${reason}`, path);
    if (Buffer.byteLength(path) > limits.maxPathLength) {
      throw err('PROTO_PACKET_LIMIT_EXCEEDED', `${path}: longer than maxPathLength (${limits.maxPathLength})`, path);
    }
    if (pathDepth(path) > limits.maxPathDepth) {
      throw err('PROTO_PACKET_LIMIT_EXCEEDED', `${path}: deeper than maxPathDepth (${limits.maxPathDepth})`, path);
    }
    if (++this.#count > limits.maxEntries) {
      throw err('PROTO_PACKET_LIMIT_EXCEEDED', `more than maxEntries (${limits.maxEntries}) members`, path);
    }
    if (member.bodyOffset + member.size + paddingFor(member.size) > limits.maxTotalSize) {
      throw err('PROTO_PACKET_LIMIT_EXCEEDED', `${path} ends beyond maxTotalSize (${limits.maxTotalSize})`, path);
    }
    if (this.#names.has(path)) throw err('PROTO_PACKET_DUPLICATE_ENTRY', `${path} occurs twice in the tar`, path);
    this.#names.add(path);

    if (this.#count === 1) {
      if (path !== MANIFEST_NAME) throw err('PROTO_PACKET_MANIFEST_NOT_FIRST', `the first member is ${path}`, path);
      if (member.size > limits.maxManifestSize) {
        throw err('PROTO_PACKET_LIMIT_EXCEEDED', `MANIFEST exceeds maxManifestSize (${limits.maxManifestSize})`, path);
      }
      return collect(member.size, (bytes) => {
        this.#manifestBytes = bytes;
      });
    }
    if (this.#count === 2 && path === SIGNATURE_NAME) {
      if (member.size > limits.maxSignatureSize) {
        throw err('PROTO_PACKET_LIMIT_EXCEEDED', `MANIFEST.sig exceeds maxSignatureSize`, path);
      }
      return collect(member.size, async (bytes) => {
        this.#signatureBytes = bytes;
        await this.finishHead();
      });
    }
    const section = this.#sections.get(path);
    if (!section) throw err('PROTO_PACKET_ENTRY_NOT_LISTED', `${path} is not listed in MANIFEST`, path);
    if (member.size > limits.maxEntrySize) {
      throw err('PROTO_PACKET_LIMIT_EXCEEDED', `${path} exceeds maxEntrySize (${limits.maxEntrySize})`, path);
    }
    if (section.fileSize !== undefined && section.fileSize !== member.size) {
      throw err(
        'PROTO_PACKET_SIZE_MISMATCH',
        `${path} is ${member.size} bytes, MANIFEST says ${section.fileSize}`,
        path,
      );
    }
    return this.#payload(section, member.size);
  }

  async #payload(section: ManifestSection, size: number): Promise<TarMemberSink> {
    const md5: Hash = createHash('md5');
    const sha256: Hash = createHash('sha256');
    const out = this.extractor ? await this.extractor.open(section.fileName) : undefined;
    const name = section.fileName;
    return {
      write(chunk) {
        md5.update(chunk);
        sha256.update(chunk);
        return out?.write(chunk);
      },
      end: async () => {
        const sha = sha256.digest('hex');
        if (section.sha256sum !== undefined && sha !== section.sha256sum.toLowerCase()) {
          throw err('PROTO_PACKET_SHA256_MISMATCH', `${name}: SHA-256 ${sha} differs from SHA256SUM`, name);
        }
        const md = md5.digest('hex');
        if (md !== section.md5sum.toLowerCase()) {
          throw err('PROTO_PACKET_MD5_MISMATCH', `${name}: MD5 ${md} differs from MD5SUM`, name);
        }
        const verified: VerifiedSection = { ...section, size, sha256: sha };
        if (out) verified.path = await out.commit();
        this.verified.set(name, verified);
      },
    };
  }

  /** Verifies the signature, parses MANIFEST, applies MANIFEST-level limits and the device check. */
  async finishHead(): Promise<void> {
    const options = this.#options;
    const manifestBytes = this.#manifestBytes;
    if (!manifestBytes) throw err('PROTO_PACKET_MANIFEST_NOT_FIRST', 'the archive has no members');
    const anchors = options.trustAnchors ?? [];
    const requireSignature = options.requireSignature ?? true;
    let signed = false;
    let signer: SignerIdentity | undefined;
    if (this.#signatureBytes) {
      let pem: string;
      try {
        pem = new TextDecoder('utf-8', { fatal: true }).decode(this.#signatureBytes);
      } catch {
        throw err('PROTO_PACKET_SIGNATURE_INVALID', 'MANIFEST.sig is not text (PEM)', SIGNATURE_NAME);
      }
      const full = requireSignature || anchors.length > 0;
      const identity = verifyManifestSignature(manifestBytes, pem, {
        trustAnchors: anchors,
        at: options.at ?? new Date(),
        checkSigner: full,
      });
      if (full) {
        signed = true;
        signer = identity;
      }
    } else if (requireSignature) {
      throw err('PROTO_PACKET_SIGNATURE_MISSING', 'the packet is not signed (no MANIFEST.sig second)', SIGNATURE_NAME);
    }
    const manifest = parseManifest(manifestBytes, { allowUnknownFileTypes: options.allowUnknownFileTypes ?? false });
    if (manifest instanceof ProtocolError) throw manifest;

    const limits = this.#limits;
    const overhead = this.#signatureBytes ? 2 : 1;
    if (manifest.sections.length + overhead > limits.maxEntries) {
      throw err('PROTO_PACKET_LIMIT_EXCEEDED', `MANIFEST lists more than maxEntries (${limits.maxEntries}) members`);
    }
    let total = 0;
    for (const s of manifest.sections) {
      const name = s.fileName;
      if (Buffer.byteLength(name) > limits.maxPathLength || pathDepth(name) > limits.maxPathDepth) {
        throw err('PROTO_PACKET_LIMIT_EXCEEDED', `MANIFEST FILENAME ${name} exceeds the path limits`, name);
      }
      if (s.fileSize !== undefined) {
        if (s.fileSize > limits.maxEntrySize) {
          throw err('PROTO_PACKET_LIMIT_EXCEEDED', `${name}: FILESIZE exceeds maxEntrySize`, name);
        }
        total += BLOCK_SIZE + s.fileSize + paddingFor(s.fileSize);
      }
      this.#sections.set(name, s);
    }
    if (total > limits.maxTotalSize) {
      throw err('PROTO_PACKET_LIMIT_EXCEEDED', `the FILESIZEs add up to more than maxTotalSize`);
    }
    // The extraction rule applies whether or not this call extracts: a packet that some router
    // could not extract is refused everywhere (the server's upload check included).
    const conflict = extractionConflict(this.#sections.keys());
    if (conflict) {
      throw err('PROTO_PACKET_DUPLICATE_ENTRY', `${conflict.entry} ${conflict.reason}`, conflict.entry);
    }
    if (options.device) {
      const incompatible = checkPacketCompatibility(manifest, options.device);
      if (incompatible) throw incompatible;
    }
    this.head = { manifest, manifestBytes, signed, ...(signer ? { signer } : {}) };
    await options.onHead?.(this.head);
    if (this.#stopAfterHead) throw new StopAfterHead();
  }

  /** Checks after the last byte: the archive is complete and every listed file was present. */
  async finish(): Promise<void> {
    this.parser.end();
    if (!this.head) await this.finishHead();
    for (const section of this.head!.manifest.sections) {
      if (!this.verified.has(section.fileName)) {
        throw err('PROTO_PACKET_ENTRY_MISSING', `${section.fileName} is listed but not in the packet`, section.fileName);
      }
    }
  }
}

function collect(size: number, done: (bytes: Buffer) => void | Promise<void>): TarMemberSink {
  const bytes = Buffer.alloc(size);
  let fill = 0;
  return {
    write(chunk) {
      chunk.copy(bytes, fill);
      fill += chunk.length;
    },
    end: () => done(bytes),
  };
}

/**
 * Reads and verifies a packet in one streaming pass, and optionally extracts it. Rejects the whole
 * packet with a {@link ProtocolError} (stable `code`, `entry` set where it applies) on: a malformed,
 * truncated or compressed tar (`TAR_CORRUPT`); a first member other than MANIFEST
 * (`MANIFEST_NOT_FIRST`); an invalid MANIFEST (`MANIFEST_INVALID`); a missing, invalid, untrusted
 * or expired signature (`SIGNATURE_MISSING`, `SIGNATURE_INVALID`, `SIGNER_UNTRUSTED`,
 * `SIGNER_EXPIRED`), checked right after the first two members and before any payload byte is read
 * further or written; members not listed or listed but absent (`ENTRY_NOT_LISTED`,
 * `ENTRY_MISSING`); duplicate names (`DUPLICATE_ENTRY`); size, MD5 or SHA-256 mismatches, for a
 * member or for the whole packet against `expect` (`SIZE_MISMATCH`, `MD5_MISMATCH`,
 * `SHA256_MISMATCH`); links, devices, FIFOs, directories (`UNSUPPORTED_ENTRY`); absolute,
 * `..`, backslash or NUL paths (`UNSAFE_PATH`); limits (`LIMIT_EXCEEDED`); the device check
 * (`INCOMPATIBLE`). I/O errors of the source or of `extractTo` are rethrown as they are. On any
 * failure, files this call extracted are removed.
 *
 * Each payload byte is hashed once by MD5 and once by SHA-256 (and once more for the whole-packet
 * SHA-256), from zero-copy views of the input chunks.
 */
export async function readPacket(source: PacketSource, options: ReadPacketOptions = {}): Promise<ReadPacketResult> {
  const reader = new PacketReader(options, false);
  const packetHash = createHash('sha256');
  const expect = options.expect;
  const maxTotal = reader.limits.maxTotalSize;
  let size = 0;
  try {
    for await (const chunk of chunksOf(source)) {
      options.signal?.throwIfAborted();
      size += chunk.length;
      if (expect?.size !== undefined && size > expect.size) {
        throw err('PROTO_PACKET_SIZE_MISMATCH', `the packet is larger than the expected ${expect.size} bytes`);
      }
      if (size > maxTotal) throw err('PROTO_PACKET_LIMIT_EXCEEDED', `the packet exceeds maxTotalSize (${maxTotal})`);
      packetHash.update(chunk);
      await reader.parser.write(chunk);
    }
    options.signal?.throwIfAborted();
    if (expect?.size !== undefined && size !== expect.size) {
      throw err('PROTO_PACKET_SIZE_MISMATCH', `the packet is ${size} bytes, expected ${expect.size}`);
    }
    const sha256 = packetHash.digest('hex');
    if (expect?.sha256 !== undefined && sha256 !== expect.sha256.toLowerCase()) {
      throw err('PROTO_PACKET_SHA256_MISMATCH', `the packet SHA-256 ${sha256} differs from the expected one`);
    }
    await reader.finish();
    const head = reader.head!;
    const sections = head.manifest.sections.map((s) => reader.verified.get(s.fileName)!);
    return { ...head, sections, sha256, size };
  } catch (error) {
    await reader.extractor?.cleanup();
    throw error;
  }
}

/**
 * Reads only MANIFEST and MANIFEST.sig from the start of a packet and verifies them exactly as
 * {@link readPacket} does (signature, MANIFEST, MANIFEST-level limits, optional device check), then
 * stops reading (a stream source is destroyed). Lets a device refuse a packet before downloading
 * its payload. Resolves with the head, rejects with a {@link ProtocolError}.
 */
export async function readPacketHead(source: PacketSource, options: ReadPacketHeadOptions = {}): Promise<PacketHead> {
  const reader = new PacketReader(options, true);
  try {
    for await (const chunk of chunksOf(source)) {
      options.signal?.throwIfAborted();
      await reader.parser.write(chunk);
    }
    options.signal?.throwIfAborted();
    await reader.finish();
  } catch (error) {
    if (!(error instanceof StopAfterHead)) throw error;
  }
  return reader.head!;
}
