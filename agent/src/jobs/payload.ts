import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { AgentError } from '../errors.js';

/**
 * Streams `source` and checks at its end that it had exactly `size` bytes with SHA-256 `sha256`:
 * the bytes an installer consumes are the bytes that were verified (a staged file changed after
 * verification fails with AGENT_STAGING_TAMPERED before the installer finishes).
 */
export async function* verifiedStream(source: AsyncIterable<Uint8Array>, sha256: string, size: number): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256');
  let seen = 0;
  for await (const chunk of source) {
    seen += chunk.length;
    if (seen > size) throw new AgentError('AGENT_STAGING_TAMPERED', 'the staged payload is longer than verified');
    hash.update(chunk);
    yield chunk;
  }
  if (seen !== size || hash.digest('hex') !== sha256.toLowerCase()) {
    throw new AgentError('AGENT_STAGING_TAMPERED', 'the staged payload differs from the verified one');
  }
}

/** Reads a whole stream into memory, refusing more than `max` bytes. */
export async function collect(source: AsyncIterable<Uint8Array>, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of source) {
    n += chunk.length;
    if (n > max) throw new AgentError('AGENT_INSTALL_FAILED', `payload larger than ${max} bytes`);
    parts.push(Buffer.from(chunk));
  }
  return Buffer.concat(parts);
}

/** Pulls exact byte counts out of a chunk stream. */
class ByteReader {
  readonly #it: AsyncIterator<Uint8Array>;
  #buf: Buffer = Buffer.alloc(0);
  #done = false;
  constructor(source: AsyncIterable<Uint8Array>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  async #fill(n: number): Promise<boolean> {
    while (this.#buf.length < n && !this.#done) {
      const next = await this.#it.next();
      if (next.done) this.#done = true;
      else this.#buf = this.#buf.length === 0 ? Buffer.from(next.value) : Buffer.concat([this.#buf, next.value]);
    }
    return this.#buf.length >= n;
  }

  async read(n: number): Promise<Buffer | undefined> {
    if (!(await this.#fill(n))) return undefined;
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  async* stream(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#buf.length === 0 && !(await this.#fill(1))) throw new AgentError('AGENT_STAGING_TAMPERED', 'truncated packet');
      const take = Math.min(left, this.#buf.length);
      yield this.#buf.subarray(0, take);
      this.#buf = this.#buf.subarray(take);
      left -= take;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.stream(n)) {
      // discard
    }
  }

  async close(): Promise<void> {
    await this.#it.return?.();
  }
}

function cstr(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? length : end).toString('utf8');
}

function sizeField(block: Buffer): number {
  const field = block.subarray(124, 136);
  if ((field[0]! & 0x80) !== 0) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return n;
  }
  const text = cstr(block, 124, 12).trim();
  return text === '' ? 0 : Number.parseInt(text, 8);
}

const pad = (size: number) => (512 - (size % 512)) % 512;

/**
 * Streams the body of one member of an already verified packet (memory platform: no extraction
 * directory). Understands ustar names with prefix, pax `path`/`size` records and GNU long names.
 */
export async function* tarMember(source: AsyncIterable<Uint8Array>, name: string): AsyncGenerator<Uint8Array> {
  const reader = new ByteReader(source);
  let paxPath: string | undefined;
  let paxSize: number | undefined;
  let longName: string | undefined;
  try {
    for (;;) {
      const block = await reader.read(512);
      if (!block || block.every((b) => b === 0)) break;
      const flag = String.fromCharCode(block[156]!) === '\0' ? '0' : String.fromCharCode(block[156]!);
      const size = sizeField(block);
      if (flag === 'x' || flag === 'g' || flag === 'L') {
        const parts: Buffer[] = [];
        for await (const part of reader.stream(size)) parts.push(Buffer.from(part));
        const body = Buffer.concat(parts);
        await reader.skip(pad(size));
        if (flag === 'L') longName = body.toString('utf8').replace(/\0+$/, '');
        if (flag === 'x') {
          let off = 0;
          while (off < body.length) {
            const space = body.indexOf(0x20, off);
            if (space < 0) break;
            const len = Number(body.subarray(off, space).toString('ascii'));
            if (!Number.isSafeInteger(len) || len <= 0) break;
            const record = body.subarray(space + 1, off + len - 1).toString('utf8');
            const eq = record.indexOf('=');
            if (eq > 0) {
              const key = record.slice(0, eq);
              if (key === 'path') paxPath = record.slice(eq + 1);
              if (key === 'size') paxSize = Number(record.slice(eq + 1));
            }
            off += len;
          }
        }
        continue;
      }
      const prefix = cstr(block, 257, 6).startsWith('ustar') ? cstr(block, 345, 155) : '';
      const plain = cstr(block, 0, 100);
      const memberName = paxPath ?? longName ?? (prefix ? `${prefix}/${plain}` : plain);
      const memberSize = paxSize ?? size;
      paxPath = undefined;
      paxSize = undefined;
      longName = undefined;
      if (memberName === name && (flag === '0' || flag === '7')) {
        yield* reader.stream(memberSize);
        return;
      }
      await reader.skip(memberSize + pad(memberSize));
    }
    throw new AgentError('AGENT_STAGING_TAMPERED', `${name} is not in the staged packet`);
  } finally {
    await reader.close();
  }
}
