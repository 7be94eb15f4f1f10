/**
 * The tar header format (POSIX ustar, with the pax and GNU extensions the reader understands).
 * Shared by the writer (which only emits ustar, plus a pax header when a name or size does not fit)
 * and the streaming reader.
 */
import { Buffer } from 'node:buffer';

/** Size of a tar block; headers are one block, bodies are padded to a multiple of it. */
export const BLOCK_SIZE = 512;

/** Type flags (byte 156 of a header). */
export const TypeFlag = {
  File: '0',
  OldFile: '\0',
  HardLink: '1',
  SymbolicLink: '2',
  CharacterDevice: '3',
  BlockDevice: '4',
  Directory: '5',
  Fifo: '6',
  Contiguous: '7',
  PaxExtended: 'x',
  PaxGlobal: 'g',
  GnuLongName: 'L',
  GnuLongLink: 'K',
} as const;

const TYPE_NAMES: Record<string, string> = {
  1: 'hard link',
  2: 'symbolic link',
  3: 'character device',
  4: 'block device',
  5: 'directory',
  6: 'FIFO',
  7: 'contiguous file',
  D: 'GNU dump directory',
  K: 'GNU long link name',
  M: 'GNU multi-volume continuation',
  N: 'GNU old long name',
  S: 'GNU sparse file',
  V: 'GNU volume label',
};

/** A human-readable name of a type flag, for error messages. */
export function typeFlagName(flag: string): string {
  return TYPE_NAMES[flag] ?? `type flag ${JSON.stringify(flag)}`;
}

/** A decoded header block of a member (not yet combined with pax / GNU long-name records). */
export interface RawHeader {
  /** Name as decoded (ustar prefix joined), or undefined when the bytes are not valid UTF-8. */
  name: string | undefined;
  /** True when non-NUL bytes follow the NUL that terminates the name or prefix field. */
  nameHasNul: boolean;
  /** Link target (links only). */
  linkName: string;
  /** Body size in bytes (may exceed 2^53 for absurd base-256 values; compare with limits). */
  size: number;
  /** Permission bits. */
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** The raw type flag character. */
  typeFlag: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isZero(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK_SIZE; i++) if (block[i] !== 0) return false;
  return true;
}

// A NUL-terminated text field. Reports bytes after the terminator so that `a\0../x` is not silently
// read as `a` by us and as something else by another tool.
function textField(block: Uint8Array, offset: number, length: number): { text: string | undefined; nul: boolean } {
  const field = block.subarray(offset, offset + length);
  let end = field.indexOf(0);
  let nul = false;
  if (end === -1) end = length;
  else {
    for (let i = end + 1; i < length; i++) {
      if (field[i] !== 0) {
        nul = true;
        break;
      }
    }
  }
  try {
    return { text: utf8.decode(field.subarray(0, end)), nul };
  } catch {
    return { text: undefined, nul };
  }
}

// A numeric field: octal digits (leading blanks allowed) terminated by NUL or blank, or GNU base-256
// (first byte 0x80) for large values. Returns undefined when malformed or negative.
function numberField(block: Uint8Array, offset: number, length: number): number | undefined {
  const first = block[offset]!;
  if (first === 0x80) {
    let value = 0;
    for (let i = 1; i < length; i++) value = value * 256 + block[offset + i]!;
    return value; // may exceed 2^53; callers compare with limits, which are far smaller
  }
  if (first & 0x80) return undefined; // negative base-256
  let i = offset;
  const end = offset + length;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c >= 0x30 && c <= 0x37) {
      value = value * 8 + (c - 0x30);
      digits++;
    } else break;
  }
  for (; i < end; i++) {
    const c = block[i]!;
    if (c !== 0 && c !== 0x20) return undefined;
  }
  return digits === 0 ? 0 : value;
}

/** The result of decoding one 512-byte block. */
export type DecodedBlock =
  | { kind: 'zero' }
  | { kind: 'header'; header: RawHeader }
  | { kind: 'invalid'; reason: string };

/**
 * Decodes a header block. Strict: accepts only POSIX ustar (`ustar\0` + `00`) and GNU
 * (`ustar  \0`) magic, a correct checksum (unsigned, or signed as some old tools wrote it) and
 * well-formed numeric fields.
 */
export function decodeBlock(block: Uint8Array): DecodedBlock {
  if (isZero(block)) return { kind: 'zero' };
  const stored = numberField(block, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored === undefined || (stored !== unsigned && stored !== signed)) {
    return { kind: 'invalid', reason: 'header checksum mismatch' };
  }
  const magic = Buffer.from(block.subarray(257, 265)).toString('latin1');
  const posix = magic === 'ustar\u000000';
  const gnu = magic === 'ustar  \u0000';
  if (!posix && !gnu) return { kind: 'invalid', reason: 'not a ustar or GNU tar header' };
  const size = numberField(block, 124, 12);
  const mode = numberField(block, 100, 8);
  const mtime = numberField(block, 136, 12);
  if (size === undefined || mode === undefined || mtime === undefined) {
    return { kind: 'invalid', reason: 'malformed numeric field' };
  }
  const name = textField(block, 0, 100);
  let fullName = name.text;
  let nameHasNul = name.nul;
  if (posix && block[345] !== 0) {
    const prefix = textField(block, 345, 155);
    nameHasNul ||= prefix.nul;
    fullName = prefix.text === undefined || fullName === undefined ? undefined : `${prefix.text}/${fullName}`;
  }
  const link = textField(block, 157, 100);
  return {
    kind: 'header',
    header: {
      name: fullName,
      nameHasNul,
      linkName: link.text ?? '',
      size,
      mode,
      mtime,
      typeFlag: String.fromCharCode(block[156]!),
    },
  };
}

/** Parses the records of a pax extended header (`"<len> <key>=<value>\n"`), or undefined if malformed. */
export function parsePaxRecords(data: Buffer): Map<string, string> | undefined {
  const records = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space === -1 || space - pos > 20) return undefined;
    const lenText = data.toString('latin1', pos, space);
    if (!/^[1-9][0-9]*$/.test(lenText)) return undefined;
    const len = Number(lenText);
    const end = pos + len;
    if (end > data.length || data[end - 1] !== 0x0a) return undefined;
    const record = data.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) return undefined;
    let key: string;
    let value: string;
    try {
      key = utf8.decode(record.subarray(0, eq));
      value = utf8.decode(record.subarray(eq + 1));
    } catch {
      return undefined;
    }
    records.set(key, value);
    pos = end;
  }
  return records;
}

// ── writing ─────────────────────────────────────────────────────────────────────────────────────

const MAX_OCTAL_11 = 0o77777777777;

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  // length-1 digits, zero-padded, then NUL (what GNU tar writes).
  block.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'latin1');
}

/** Fields of a header the writer emits: always a regular file, uid/gid 0. */
export interface FileHeaderFields {
  /** Member name (UTF-8). */
  name: string;
  /** Body size in bytes. */
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Default 0o644. */
  mode?: number;
  /** Default {@link TypeFlag.File}. */
  typeFlag?: string;
}

function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  const bytes = Buffer.byteLength(name);
  if (bytes <= 100) return { prefix: '', name };
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') return { prefix, name: rest };
  }
  return undefined;
}

function encodeUstar(fields: FileHeaderFields, split: { prefix: string; name: string }, size: number): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  block.write(split.name, 0, 100, 'utf8');
  writeOctal(block, 100, 8, fields.mode ?? 0o644);
  writeOctal(block, 108, 8, 0);
  writeOctal(block, 116, 8, 0);
  writeOctal(block, 124, 12, size);
  writeOctal(block, 136, 12, fields.mtime);
  block.fill(0x20, 148, 156);
  block.write(fields.typeFlag ?? TypeFlag.File, 156, 1, 'latin1');
  block.write('ustar\u000000', 257, 8, 'latin1');
  block.write('root', 265, 32, 'latin1');
  block.write('root', 297, 32, 'latin1');
  writeOctal(block, 329, 8, 0);
  writeOctal(block, 337, 8, 0);
  block.write(split.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) sum += block[i]!;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** Number of zero bytes that pad a body of `size` bytes to a block boundary. */
export function paddingFor(size: number): number {
  const rest = size % BLOCK_SIZE;
  return rest === 0 ? 0 : BLOCK_SIZE - rest;
}

/**
 * Encodes the header(s) of a regular file: one ustar block, preceded by a pax extended header
 * (with its body) when the name does not fit ustar's 100+155 bytes or the size exceeds 8 GiB.
 */
export function encodeFileHeader(fields: FileHeaderFields): Buffer {
  const split = splitUstarName(fields.name);
  const bigSize = fields.size > MAX_OCTAL_11;
  if (split && !bigSize) return encodeUstar(fields, split, fields.size);
  const records = (split ? '' : paxRecord('path', fields.name)) + (bigSize ? paxRecord('size', String(fields.size)) : '');
  const paxBody = Buffer.from(records, 'utf8');
  const ascii = (text: string, max: number) => text.replace(/[^\x20-\x7e]/g, '_').slice(-max);
  const paxName = `PaxHeader/${ascii(fields.name.slice(fields.name.lastIndexOf('/') + 1), 80)}`;
  const paxHeader = encodeUstar(
    { name: paxName, size: paxBody.length, mtime: fields.mtime, typeFlag: TypeFlag.PaxExtended },
    { prefix: '', name: paxName },
    paxBody.length,
  );
  // Readers without pax support see this ASCII stand-in; pax readers use the `path` record.
  const shortName = split ?? { prefix: '', name: ascii(fields.name, 99) };
  const fileHeader = encodeUstar(fields, shortName, bigSize ? 0 : fields.size);
  return Buffer.concat([paxHeader, paxBody, Buffer.alloc(paddingFor(paxBody.length)), fileHeader]);
}

/** The end-of-archive marker: two zero blocks. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK_SIZE);
