import { Buffer } from 'node:buffer';
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ProtocolError } from '../errors.js';
import type { FileType } from './file-types.js';
import {
  MANIFEST_NAME,
  type Manifest,
  type ManifestField,
  type ManifestSection,
  PACKET_FORMAT,
  SIGNATURE_NAME,
  serializeManifest,
} from './manifest.js';
import { unsafePathReason } from './member-path.js';
import { type PacketSigner, signManifest } from './signature.js';
import { encodeFileHeader, END_OF_ARCHIVE, paddingFor } from './tar-format.js';

/*
 * The writer emits ustar headers itself rather than going through tar@7's `create`: the layout is
 * fixed (MANIFEST, MANIFEST.sig, then the files in section order; regular files only, mode 0644,
 * uid/gid 0, one fixed mtime), members come from memory as well as from disk, and writing the
 * headers directly makes the output byte-for-byte deterministic without depending on file-system
 * metadata or a library's defaults.
 */

/** One file to put in a packet. */
export interface PacketFileInput {
  /** Member name and FILENAME (a safe relative path, e.g. `firmware/autoupdate-2.3-full.arm64.tar`). */
  name: string;
  /** FILETYPE. */
  fileType: FileType | (string & {});
  /** The content: in memory, or a path to a regular file read twice (hash, then copy) in streaming fashion. */
  source: { data: Uint8Array } | { path: string };
  /** DESCRIPTION. */
  description?: string;
  /** VERSION. */
  version?: string;
  /** REQUIRED_SW: a version range the router firmware must satisfy. */
  requiredSw?: string;
  /** More section keys, written after the known ones (e.g. the vendor's `KEY`). */
  extra?: readonly ManifestField[];
}

/** Options of {@link writePacket} and {@link writePacketToFile}. */
export interface WritePacketOptions {
  /** The files, in processing order (at least one). */
  files: readonly PacketFileInput[];
  /** PACKET_ID. Default: a random UUID. */
  packetId?: string;
  /** TARGET_MODELS. Default: absent (any model). */
  targetModels?: readonly string[];
  /** CREATED_AT (written with second precision). Default: now. */
  createdAt?: Date;
  /** Packet-level DESCRIPTION. */
  description?: string;
  /** More header keys. */
  headerExtra?: readonly ManifestField[];
  /** Signs the MANIFEST (MANIFEST.sig becomes the second member). Unsigned when omitted. */
  signer?: PacketSigner;
  /** Modification time of every member. Default: `createdAt`. */
  mtime?: Date;
  /** Accept FILETYPE values outside {@link FileTypes}. Default false. */
  allowUnknownFileTypes?: boolean;
}

/** What {@link writePacketToFile} wrote. */
export interface WrittenPacket {
  /** The MANIFEST written (first member). */
  manifest: Manifest;
  /** Size of the packet file in bytes. */
  size: number;
  /** Lowercase hex SHA-256 of the packet file (for the job offer). */
  sha256: string;
}

interface PlannedFile {
  input: PacketFileInput;
  size: number;
  md5: string;
  sha256: string;
}

interface Plan {
  manifest: Manifest;
  manifestBytes: Buffer;
  signature?: Buffer;
  files: PlannedFile[];
  mtime: number;
}

function writerError(message: string, entry?: string): ProtocolError {
  return new ProtocolError('PROTO_PACKET_MANIFEST_INVALID', message, entry === undefined ? {} : { entry });
}

async function hashSource(input: PacketFileInput): Promise<{ size: number; md5: string; sha256: string }> {
  const md5 = createHash('md5');
  const sha256 = createHash('sha256');
  let size = 0;
  if ('data' in input.source) {
    md5.update(input.source.data);
    sha256.update(input.source.data);
    size = input.source.data.length;
  } else {
    const info = await stat(input.source.path);
    if (!info.isFile()) throw new TypeError(`${input.source.path} is not a regular file`);
    for await (const chunk of createReadStream(input.source.path, { highWaterMark: 1024 * 1024 })) {
      md5.update(chunk as Buffer);
      sha256.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  }
  return { size, md5: md5.digest('hex'), sha256: sha256.digest('hex') };
}

async function plan(options: WritePacketOptions): Promise<Plan> {
  if (options.files.length === 0) throw writerError('a packet needs at least one file');
  const names = new Set<string>();
  for (const file of options.files) {
    const reason = unsafePathReason(file.name);
    if (reason) throw new ProtocolError('PROTO_PACKET_UNSAFE_PATH', `${file.name}: ${reason}`, { entry: file.name });
    if (names.has(file.name)) {
      throw new ProtocolError('PROTO_PACKET_DUPLICATE_ENTRY', `${file.name} is given twice`, { entry: file.name });
    }
    names.add(file.name);
  }
  const hashed = await Promise.all(options.files.map(hashSource));
  const files = options.files.map((input, i) => ({ input, ...hashed[i]! }));
  const createdAt = new Date(Math.floor((options.createdAt ?? new Date()).getTime() / 1000) * 1000);
  const manifest: Manifest = {
    header: {
      packetFormat: PACKET_FORMAT,
      packetId: options.packetId ?? randomUUID(),
      ...(options.targetModels === undefined ? {} : { targetModels: [...options.targetModels] }),
      createdAt: createdAt.toISOString().replace('.000Z', 'Z'),
      ...(options.description === undefined ? {} : { description: options.description }),
      extra: [...(options.headerExtra ?? [])],
    },
    sections: files.map((f): ManifestSection => {
      const i = f.input;
      return {
        fileName: i.name,
        fileType: i.fileType,
        md5sum: f.md5,
        sha256sum: f.sha256,
        fileSize: f.size,
        ...(i.description === undefined ? {} : { description: i.description }),
        ...(i.version === undefined ? {} : { version: i.version }),
        ...(i.requiredSw === undefined ? {} : { requiredSw: i.requiredSw }),
        extra: [...(i.extra ?? [])],
      };
    }),
  };
  const manifestBytes = serializeManifest(manifest, { allowUnknownFileTypes: options.allowUnknownFileTypes ?? false });
  const mtime = Math.floor((options.mtime ?? createdAt).getTime() / 1000);
  const result: Plan = { manifest, manifestBytes, files, mtime };
  if (options.signer) {
    result.signature = Buffer.from(signManifest(manifestBytes, options.signer, { signingTime: createdAt }), 'utf8');
  }
  return result;
}

function member(name: string, data: Buffer, mtime: number): Buffer[] {
  return [encodeFileHeader({ name, size: data.length, mtime }), data, Buffer.alloc(paddingFor(data.length))];
}

// The packet as a sequence of chunks. File sources are streamed and re-hashed: a file that changed
// since it was hashed for the MANIFEST fails the write instead of producing an inconsistent packet.
async function* chunks(p: Plan): AsyncGenerator<Buffer> {
  yield* member(MANIFEST_NAME, p.manifestBytes, p.mtime);
  if (p.signature) yield* member(SIGNATURE_NAME, p.signature, p.mtime);
  for (const f of p.files) {
    yield encodeFileHeader({ name: f.input.name, size: f.size, mtime: p.mtime });
    const source = f.input.source;
    if ('data' in source) {
      yield Buffer.from(source.data.buffer, source.data.byteOffset, source.data.byteLength);
    } else {
      const sha256 = createHash('sha256');
      let size = 0;
      for await (const chunk of createReadStream(source.path, { highWaterMark: 1024 * 1024 })) {
        const buf = chunk as Buffer;
        size += buf.length;
        if (size > f.size) break;
        sha256.update(buf);
        yield buf;
      }
      if (size !== f.size || sha256.digest('hex') !== f.sha256) {
        throw new Error(`${source.path} changed while the packet was being written`);
      }
    }
    yield Buffer.alloc(paddingFor(f.size));
  }
  yield END_OF_ARCHIVE;
}

/**
 * Builds a packet in memory: an uncompressed tar with MANIFEST first (packet header, then one section
 * per file with FILETYPE, MD5SUM, SHA256SUM and FILESIZE computed here), MANIFEST.sig second when a
 * signer is given, then the files in section order. Deterministic for the same input (fix
 * `packetId` and `createdAt`). For large payloads use {@link writePacketToFile}.
 *
 * @throws ProtocolError `PROTO_PACKET_UNSAFE_PATH`, `PROTO_PACKET_DUPLICATE_ENTRY` or
 *   `PROTO_PACKET_MANIFEST_INVALID` for invalid input; I/O errors as they come.
 */
export async function writePacket(options: WritePacketOptions): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks(await plan(options))) parts.push(chunk);
  return Buffer.concat(parts);
}

/**
 * Like {@link writePacket}, but streams the packet to `filePath` (written as `<filePath>.partial`,
 * then renamed, so the path never holds half a packet) and returns its manifest, size and SHA-256.
 */
export async function writePacketToFile(filePath: string, options: WritePacketOptions): Promise<WrittenPacket> {
  const p = await plan(options);
  const partial = `${filePath}.partial`;
  const hash = createHash('sha256');
  let size = 0;
  const tap = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      hash.update(chunk);
      size += chunk.length;
      yield chunk;
    }
  };
  try {
    await pipeline(Readable.from(chunks(p), { objectMode: false }), tap, createWriteStream(partial));
    await rename(partial, filePath);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
  return { manifest: p.manifest, size, sha256: hash.digest('hex') };
}
