import { Buffer } from 'node:buffer';
import { ProtocolError } from '../errors.js';
import { isFileType } from './file-types.js';
import { hasControlCharacter, unsafePathReason } from './member-path.js';
import { parseVersionRange } from './version-range.js';

/** Name of the first tar member. */
export const MANIFEST_NAME = 'MANIFEST';
/** Name of the second tar member in signed packets. */
export const SIGNATURE_NAME = 'MANIFEST.sig';
/** The only `PACKET_FORMAT` value this version understands. */
export const PACKET_FORMAT = 1;

/** A `KEY=value` line this implementation does not interpret, kept in order for forward compatibility. */
export interface ManifestField {
  /** The key, exactly as written (case-sensitive). */
  key: string;
  /** The value: everything after the first `=`. */
  value: string;
}

/**
 * The packet header: our `KEY=value` lines before the first `FILENAME=`. Vendor MANIFESTs have none.
 */
export interface PacketHeader {
  /** `PACKET_FORMAT`: always 1 in this version (mandatory). */
  packetFormat: 1;
  /** `PACKET_ID`: a unique id, normally a UUID (mandatory). */
  packetId: string;
  /**
   * `TARGET_MODELS`: the router models the packet is for. Undefined when the line is absent, `[]`
   * when it is empty; both mean "any model".
   */
  targetModels?: string[];
  /** `CREATED_AT`: ISO 8601 date-time with offset, as written (mandatory). */
  createdAt: string;
  /** `DESCRIPTION`. */
  description?: string;
  /** Header keys this version does not interpret, in order. */
  extra: ManifestField[];
}

/** One MANIFEST section: a file of the packet, in processing order. */
export interface ManifestSection {
  /** `FILENAME`: the tar member name (mandatory; a safe relative path). */
  fileName: string;
  /** `FILETYPE`: one of {@link FileTypes} (mandatory; other strings only with `allowUnknownFileTypes`). */
  fileType: string;
  /** `MD5SUM`: 32 hex digits, as written (mandatory). */
  md5sum: string;
  /** `SHA256SUM` (ours): 64 hex digits, as written. Mandatory when the MANIFEST has a packet header. */
  sha256sum?: string;
  /** `FILESIZE`: size in bytes. */
  fileSize?: number;
  /** `DESCRIPTION`. */
  description?: string;
  /** `VERSION`: the version of what the file installs (a {@link parseVersion} version for firmware). */
  version?: string;
  /** `REQUIRED_SW`: a semver range the router firmware must satisfy for this section. */
  requiredSw?: string;
  /** Section keys this version does not interpret (e.g. the vendor's `KEY`), in order. */
  extra: ManifestField[];
}

/** A parsed MANIFEST. */
export interface Manifest {
  /** The packet header, or undefined for a vendor-style MANIFEST that starts with `FILENAME=`. */
  header?: PacketHeader;
  /** Sections in processing order (at least one). */
  sections: ManifestSection[];
}

/** Options of {@link parseManifest}. */
export interface ParseManifestOptions {
  /** Accept FILETYPE values outside {@link FileTypes}. Default false (strict). */
  allowUnknownFileTypes?: boolean;
}

const HEADER_KEYS = ['PACKET_FORMAT', 'PACKET_ID', 'TARGET_MODELS', 'CREATED_AT', 'DESCRIPTION'] as const;
const SECTION_KEYS = [
  'FILENAME',
  'FILETYPE',
  'MD5SUM',
  'SHA256SUM',
  'FILESIZE',
  'DESCRIPTION',
  'VERSION',
  'REQUIRED_SW',
] as const;
const KEY_RE = /^[A-Za-z0-9_.-]+$/;
const MD5_RE = /^[0-9a-fA-F]{32}$/;
const SHA256_RE = /^[0-9a-fA-F]{64}$/;
const SIZE_RE = /^(0|[1-9][0-9]{0,15})$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function invalid(message: string, entry?: string): ProtocolError {
  return new ProtocolError(
    'PROTO_PACKET_MANIFEST_INVALID',
    `MANIFEST: ${message}`,
    entry === undefined ? {} : { entry },
  );
}

function checkValue(key: string, value: string): void {
  if (hasControlCharacter(value, true)) {
    throw invalid(`the value of ${key} contains a control character`);
  }
}

function checkHeaderValue(key: string, value: string): void {
  checkValue(key, value);
  switch (key) {
    case 'PACKET_FORMAT':
      if (value !== String(PACKET_FORMAT)) throw invalid(`unsupported PACKET_FORMAT "${value}"`);
      break;
    case 'PACKET_ID':
      if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(value)) throw invalid(`invalid PACKET_ID "${value}"`);
      break;
    case 'TARGET_MODELS':
      if (value !== '' && value.split(',').some((m) => m === '' || m !== m.trim())) {
        throw invalid(`invalid TARGET_MODELS "${value}" (comma-separated names, no blanks)`);
      }
      break;
    case 'CREATED_AT':
      if (!ISO_RE.test(value) || Number.isNaN(Date.parse(value))) {
        throw invalid(`invalid CREATED_AT "${value}" (ISO 8601 date-time with offset)`);
      }
      break;
  }
}

function checkSectionValue(key: string, value: string, options: ParseManifestOptions, entry: string): void {
  checkValue(key, value);
  switch (key) {
    case 'FILENAME': {
      const reason = unsafePathReason(value);
      if (reason) throw new ProtocolError('PROTO_PACKET_UNSAFE_PATH', `MANIFEST FILENAME: ${reason}`, { entry });
      break;
    }
    case 'FILETYPE':
      if (value === '') throw invalid('empty FILETYPE', entry);
      if (!options.allowUnknownFileTypes && !isFileType(value)) {
        throw invalid(`unknown FILETYPE "${value}"`, entry);
      }
      break;
    case 'MD5SUM':
      if (!MD5_RE.test(value)) throw invalid('MD5SUM is not 32 hex digits', entry);
      break;
    case 'SHA256SUM':
      if (!SHA256_RE.test(value)) throw invalid('SHA256SUM is not 64 hex digits', entry);
      break;
    case 'FILESIZE':
      if (!SIZE_RE.test(value) || !Number.isSafeInteger(Number(value))) {
        throw invalid(`FILESIZE "${value}" is not a canonical decimal size`, entry);
      }
      break;
    case 'REQUIRED_SW':
      if (value.trim() === '' || parseVersionRange(value) === undefined) {
        throw invalid(`REQUIRED_SW "${value}" is not a version range`, entry);
      }
      break;
  }
}

/**
 * Parses MANIFEST bytes. Never throws: returns the manifest, or a {@link ProtocolError} with code
 * `PROTO_PACKET_MANIFEST_INVALID` (encoding, syntax, missing or malformed keys, unknown FILETYPE in
 * strict mode), `PROTO_PACKET_DUPLICATE_ENTRY` (a FILENAME listed twice) or
 * `PROTO_PACKET_UNSAFE_PATH` (a FILENAME that is not a safe relative path).
 *
 * Accepted syntax: UTF-8 without BOM; lines end with LF (a CR before the LF is tolerated); empty
 * lines are ignored; every other line is `KEY=value` with the key made of `[A-Za-z0-9_.-]` and no
 * blank before the value; a key appears at most once per section or header (unknown keys may
 * repeat). Lines before the first `FILENAME=` form the packet header.
 */
export function parseManifest(bytes: Uint8Array, options: ParseManifestOptions = {}): Manifest | ProtocolError {
  try {
    return parseOrThrow(bytes, options);
  } catch (error) {
    if (error instanceof ProtocolError) return error;
    return invalid(error instanceof Error ? error.message : String(error));
  }
}

function parseOrThrow(bytes: Uint8Array, options: ParseManifestOptions): Manifest {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw invalid('starts with a byte order mark');
  }
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw invalid('is not valid UTF-8');
  }
  if (text.includes('\0')) throw invalid('contains a NUL character');

  type Group = { fields: ManifestField[]; known: Map<string, string> };
  let header: Group | undefined;
  const groups: Group[] = [];
  let current: Group | undefined;
  let lineNo = 0;
  for (let line of text.split('\n')) {
    lineNo++;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw invalid(`line ${lineNo} is not KEY=value`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (!KEY_RE.test(key)) throw invalid(`line ${lineNo}: invalid key "${key}" (no blanks around "=")`);
    if (/^[ \t]/.test(value)) throw invalid(`line ${lineNo}: blank after "=" in ${key}`);
    if (key === 'FILENAME') {
      current = { fields: [], known: new Map() };
      groups.push(current);
    } else if (current === undefined) {
      header ??= { fields: [], known: new Map() };
    }
    const group = current ?? header!;
    const isKnown = (current ? (SECTION_KEYS as readonly string[]) : (HEADER_KEYS as readonly string[])).includes(key);
    if (isKnown) {
      if (group.known.has(key)) throw invalid(`line ${lineNo}: ${key} given twice`, current?.known.get('FILENAME'));
      if (current) checkSectionValue(key, value, options, key === 'FILENAME' ? value : current.known.get('FILENAME')!);
      else checkHeaderValue(key, value);
      group.known.set(key, value);
    }
    group.fields.push({ key, value });
  }

  const manifest: Manifest = { sections: [] };
  if (header) {
    const known = header.known;
    for (const key of ['PACKET_FORMAT', 'PACKET_ID', 'CREATED_AT']) {
      if (!known.has(key)) throw invalid(`the packet header lacks ${key}`);
    }
    const targetModels = known.get('TARGET_MODELS');
    const description = known.get('DESCRIPTION');
    manifest.header = {
      packetFormat: PACKET_FORMAT,
      packetId: known.get('PACKET_ID')!,
      ...(targetModels === undefined ? {} : { targetModels: targetModels === '' ? [] : targetModels.split(',') }),
      createdAt: known.get('CREATED_AT')!,
      ...(description === undefined ? {} : { description }),
      extra: header.fields.filter((f) => !(HEADER_KEYS as readonly string[]).includes(f.key)),
    };
  }
  if (groups.length === 0) throw invalid('lists no file (no FILENAME= line)');

  const names = new Set<string>();
  for (const group of groups) {
    const known = group.known;
    const fileName = known.get('FILENAME')!;
    for (const key of ['FILETYPE', 'MD5SUM']) {
      if (!known.has(key)) throw invalid(`section ${fileName} lacks ${key}`, fileName);
    }
    if (header && !known.has('SHA256SUM')) {
      throw invalid(`section ${fileName} lacks SHA256SUM (mandatory with a packet header)`, fileName);
    }
    if (fileName === MANIFEST_NAME || fileName === SIGNATURE_NAME) {
      throw invalid(`FILENAME ${fileName} is reserved`, fileName);
    }
    if (names.has(fileName)) {
      throw new ProtocolError('PROTO_PACKET_DUPLICATE_ENTRY', `MANIFEST lists ${fileName} twice`, {
        entry: fileName,
      });
    }
    names.add(fileName);
    const section: ManifestSection = {
      fileName,
      fileType: known.get('FILETYPE')!,
      md5sum: known.get('MD5SUM')!,
      extra: group.fields.filter((f) => !(SECTION_KEYS as readonly string[]).includes(f.key)),
    };
    const sha256sum = known.get('SHA256SUM');
    if (sha256sum !== undefined) section.sha256sum = sha256sum;
    const fileSize = known.get('FILESIZE');
    if (fileSize !== undefined) section.fileSize = Number(fileSize);
    const description = known.get('DESCRIPTION');
    if (description !== undefined) section.description = description;
    const version = known.get('VERSION');
    if (version !== undefined) section.version = version;
    const requiredSw = known.get('REQUIRED_SW');
    if (requiredSw !== undefined) section.requiredSw = requiredSw;
    manifest.sections.push(section);
  }
  // A name that is both a file and a directory of another file cannot be extracted.
  for (const name of names) {
    for (let i = name.indexOf('/'); i > 0; i = name.indexOf('/', i + 1)) {
      if (names.has(name.slice(0, i))) {
        throw invalid(`${name.slice(0, i)} is listed as a file and used as a directory by ${name}`, name);
      }
    }
  }
  return manifest;
}

/**
 * Serializes a manifest in canonical form: header keys in the order PACKET_FORMAT, PACKET_ID,
 * TARGET_MODELS, CREATED_AT, DESCRIPTION, then unknown header keys; each section as FILENAME,
 * FILETYPE, MD5SUM, SHA256SUM, FILESIZE, DESCRIPTION, VERSION, REQUIRED_SW, then its unknown keys;
 * every line ends with LF, no empty lines. `serializeManifest(parseManifest(b))` reproduces `b`
 * exactly whenever `b` is in this form (everything the writer produces, and vendor MANIFESTs written
 * in the documented key order); `parseManifest(serializeManifest(m))` always equals `m`.
 *
 * @throws ProtocolError `PROTO_PACKET_MANIFEST_INVALID` (or the code {@link parseManifest} would
 *   report) when `manifest` does not describe a valid MANIFEST, e.g. a value contains a line break.
 */
export function serializeManifest(manifest: Manifest, options: ParseManifestOptions = {}): Buffer {
  const lines: string[] = [];
  const put = (key: string, value: string | number | undefined) => {
    if (value === undefined) return;
    const text = String(value);
    if (/[\r\n]/.test(text)) throw invalid(`the value of ${key} contains a line break`);
    lines.push(`${key}=${text}`);
  };
  const h = manifest.header;
  if (h) {
    put('PACKET_FORMAT', h.packetFormat);
    put('PACKET_ID', h.packetId);
    put('TARGET_MODELS', h.targetModels?.join(','));
    put('CREATED_AT', h.createdAt);
    put('DESCRIPTION', h.description);
    for (const f of h.extra) {
      if (f.key === 'FILENAME' || (HEADER_KEYS as readonly string[]).includes(f.key)) {
        throw invalid(`extra header key ${f.key} is reserved`);
      }
      put(f.key, f.value);
    }
  }
  for (const s of manifest.sections) {
    put('FILENAME', s.fileName);
    put('FILETYPE', s.fileType);
    put('MD5SUM', s.md5sum);
    put('SHA256SUM', s.sha256sum);
    put('FILESIZE', s.fileSize);
    put('DESCRIPTION', s.description);
    put('VERSION', s.version);
    put('REQUIRED_SW', s.requiredSw);
    for (const f of s.extra) {
      if ((SECTION_KEYS as readonly string[]).includes(f.key)) throw invalid(`extra section key ${f.key} is reserved`);
      put(f.key, f.value);
    }
  }
  const bytes = Buffer.from(lines.length === 0 ? '' : `${lines.join('\n')}\n`, 'utf8');
  const check = parseManifest(bytes, options);
  if (check instanceof ProtocolError) throw check;
  return bytes;
}
