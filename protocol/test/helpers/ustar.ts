/**
 * A tiny, deliberately independent ustar builder for tests: it can make the malformed and hostile
 * archives that real tar tools refuse to create (traversal names, links, devices, duplicate names,
 * bad checksums, sizes that lie). Nothing here imports the code under test.
 */

export interface RawEntry {
  name: string;
  /** Body bytes (default empty). */
  data?: Uint8Array | string;
  /** Type flag character (default '0'). */
  type?: string;
  /** Size written in the header (default: data length). Lets a test lie about the size. */
  size?: number;
  linkName?: string;
  /** Raw bytes for the 100-byte name field (overrides `name` there), e.g. with an embedded NUL. */
  rawName?: Uint8Array;
  /** ustar prefix field. */
  prefix?: string;
  mode?: number;
  /** Corrupt the checksum. */
  badChecksum?: boolean;
  /** Magic + version (default POSIX `ustar\0` + `00`). */
  magic?: 'posix' | 'gnu' | 'none';
}

function octal(block: Uint8Array, offset: number, length: number, value: number): void {
  const text = `${value.toString(8).padStart(length - 1, '0')}\0`;
  block.set(Buffer.from(text, 'latin1'), offset);
}

export function header(entry: RawEntry): Buffer {
  const block = Buffer.alloc(512);
  const data = typeof entry.data === 'string' ? Buffer.from(entry.data) : (entry.data ?? new Uint8Array());
  if (entry.rawName) block.set(entry.rawName.subarray(0, 100), 0);
  else block.write(entry.name, 0, 100, 'utf8');
  octal(block, 100, 8, entry.mode ?? 0o644);
  octal(block, 108, 8, 0);
  octal(block, 116, 8, 0);
  octal(block, 124, 12, entry.size ?? data.length);
  octal(block, 136, 12, 1_700_000_000);
  block.fill(0x20, 148, 156);
  block.write(entry.type ?? '0', 156, 1, 'latin1');
  if (entry.linkName) block.write(entry.linkName, 157, 100, 'utf8');
  const magic = entry.magic ?? 'posix';
  if (magic === 'posix') block.write('ustar\u000000', 257, 8, 'latin1');
  if (magic === 'gnu') block.write('ustar  \u0000', 257, 8, 'latin1');
  if (entry.prefix) block.write(entry.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of block) sum += b;
  if (entry.badChecksum) sum += 1;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

/** Header + body + padding of one entry. */
export function entryBytes(entry: RawEntry): Buffer {
  const data = typeof entry.data === 'string' ? Buffer.from(entry.data) : Buffer.from(entry.data ?? new Uint8Array());
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([header(entry), data, Buffer.alloc(pad)]);
}

/** A pax extended header ('x', or 'g' for a global one) entry carrying `records`. */
export function paxEntry(records: Record<string, string>, type: 'x' | 'g' = 'x'): Buffer {
  let body = '';
  for (const [key, value] of Object.entries(records)) {
    const rest = ` ${key}=${value}\n`;
    let len = Buffer.byteLength(rest) + 1;
    while (String(len).length + Buffer.byteLength(rest) !== len) len = String(len).length + Buffer.byteLength(rest);
    body += `${len}${rest}`;
  }
  return entryBytes({ name: 'PaxHeader/x', type, data: body });
}

/** A whole archive: the entries (RawEntry or pre-built bytes), then two zero blocks unless `end: false`. */
export function tarArchive(entries: readonly (RawEntry | Buffer)[], options: { end?: boolean } = {}): Buffer {
  const parts = entries.map((e) => (Buffer.isBuffer(e) ? e : entryBytes(e)));
  if (options.end !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Splits a well-formed archive into its members (ustar only, no pax): name, header offset, body. */
export function listMembers(tar: Buffer): { name: string; offset: number; size: number; data: Buffer }[] {
  const out: { name: string; offset: number; size: number; data: Buffer }[] = [];
  let off = 0;
  while (off + 512 <= tar.length) {
    const block = tar.subarray(off, off + 512);
    if (block.every((b) => b === 0)) break;
    const name = block.toString('utf8', 0, 100).replace(/\0.*$/s, '');
    const size = Number.parseInt(block.toString('latin1', 124, 136).replace(/\0.*$/s, '').trim(), 8);
    const data = tar.subarray(off + 512, off + 512 + size);
    out.push({ name, offset: off, size, data: Buffer.from(data) });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** Rebuilds an archive from (possibly reordered or edited) members. */
export function rebuild(members: readonly { name: string; data: Uint8Array; type?: string }[]): Buffer {
  return tarArchive(members.map((m) => ({ name: m.name, data: m.data, ...(m.type ? { type: m.type } : {}) })));
}
