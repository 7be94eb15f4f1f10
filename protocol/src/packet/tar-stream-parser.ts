import { Buffer } from 'node:buffer';
import { ProtocolError } from '../errors.js';
import { BLOCK_SIZE, decodeBlock, paddingFor, parsePaxRecords, type RawHeader, TypeFlag } from './tar-format.js';

/*
 * Why our own parser rather than tar@7's `Parser` (strict mode):
 * - tar@7 transparently gunzips / un-zstds its input; a packet is an *uncompressed* tar, and silently
 *   decompressing hostile input widens the attack surface (decompression bombs, two readers
 *   disagreeing about the bytes).
 * - It routes members of unknown types to `ignoredEntry` and skips them, turns `0` members whose
 *   name ends in `/` into directories and cuts names at the first NUL without telling us; we want
 *   every one of these to reject the packet, with a stable code.
 * - Our rules need exact stream offsets (limits checked from the header before the body, the whole
 *   packet hashed as it passes) and `await`-able back-pressure when a member is written to disk;
 *   an async loop over chunks that hands out zero-copy `subarray`s is simpler and faster than
 *   adapting tar@7's event/Minipass plumbing.
 * The parser accepts POSIX ustar and GNU headers, pax extended headers (`path`, `size`) and GNU
 * long names, which covers what GNU tar, bsdtar and tar@7 write; everything else is an error.
 */

/** A member as the parser reports it, with pax / GNU long-name records applied. */
export interface TarMember {
  /** The member path, or undefined when its bytes are not valid UTF-8. */
  path: string | undefined;
  /** True when the name has bytes after a NUL (an embedded NUL). */
  pathHasNul: boolean;
  /** The raw type flag (see {@link TypeFlag}). */
  typeFlag: string;
  /** Body size in bytes. */
  size: number;
  /** Stream offset of the member's first header block (pax / long-name headers included). */
  headerOffset: number;
  /** Stream offset of the first body byte. */
  bodyOffset: number;
}

/** Receives the body of one member. `write` gets zero-copy views of the input chunks. */
export interface TarMemberSink {
  /** Receives the next part of the body; a returned promise applies back-pressure. */
  write(chunk: Buffer): void | Promise<void>;
  /** Called after the last body byte; may reject to fail the archive. */
  end(): void | Promise<void>;
}

/** Options of {@link TarStreamParser}. */
export interface TarStreamParserOptions {
  /** Maximum size of a pax extended header or GNU long-name body, in bytes. */
  maxExtendedHeaderSize: number;
  /** Called for every member header before its body is read; throw to reject the archive. */
  onMember(member: TarMember): TarMemberSink | Promise<TarMemberSink>;
}

const MAX_META_CHAIN = 8;
const ZEROS = Buffer.alloc(64 * 1024);

function corrupt(message: string, entry?: string): ProtocolError {
  return new ProtocolError('PROTO_PACKET_TAR_CORRUPT', message, entry === undefined ? {} : { entry });
}

type State = 'header' | 'body' | 'padding' | 'zero' | 'trailer';

interface Pending {
  firstOffset: number;
  count: number;
  paxPath?: string;
  paxPathNul?: boolean;
  paxSize?: number;
  longName?: string | null; // null: not valid UTF-8
  longNameNul?: boolean;
}

/**
 * A strict, streaming tar parser. Feed it chunks with `await write(chunk)` (in order, never
 * concurrently), then call `end()`; both throw {@link ProtocolError}s.
 */
export class TarStreamParser {
  readonly #options: TarStreamParserOptions;
  #state: State = 'header';
  readonly #header = Buffer.alloc(BLOCK_SIZE);
  #headerFill = 0;
  #remaining = 0;
  #padding = 0;
  #sink: TarMemberSink | undefined;
  #offset = 0;
  #pending: Pending | undefined;
  #sawMember = false;

  constructor(options: TarStreamParserOptions) {
    this.#options = options;
  }

  /** Bytes consumed so far. */
  get offset(): number {
    return this.#offset;
  }

  /** Parses the next chunk of the archive. */
  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      switch (this.#state) {
        case 'header':
        case 'zero': {
          let block: Buffer;
          if (this.#headerFill === 0 && len - off >= BLOCK_SIZE) {
            block = chunk.subarray(off, off + BLOCK_SIZE);
            off += BLOCK_SIZE;
          } else {
            const n = Math.min(BLOCK_SIZE - this.#headerFill, len - off);
            chunk.copy(this.#header, this.#headerFill, off, off + n);
            this.#headerFill += n;
            off += n;
            if (this.#headerFill < BLOCK_SIZE) break;
            this.#headerFill = 0;
            block = this.#header;
          }
          const blockOffset = this.#offset;
          this.#offset += BLOCK_SIZE;
          await this.#onBlock(block, blockOffset);
          break;
        }
        case 'body': {
          const n = Math.min(this.#remaining, len - off);
          const result = this.#sink!.write(chunk.subarray(off, off + n));
          if (result) await result;
          off += n;
          this.#offset += n;
          this.#remaining -= n;
          if (this.#remaining === 0) await this.#endBody();
          break;
        }
        case 'padding': {
          const n = Math.min(this.#padding, len - off);
          off += n;
          this.#offset += n;
          this.#padding -= n;
          if (this.#padding === 0) this.#state = 'header';
          break;
        }
        case 'trailer': {
          // After the end-of-archive marker only zero padding (tar records) may follow.
          while (off < len) {
            const n = Math.min(ZEROS.length, len - off);
            if (!chunk.subarray(off, off + n).equals(ZEROS.subarray(0, n))) {
              throw corrupt('non-zero data after the end-of-archive marker');
            }
            off += n;
            this.#offset += n;
          }
          break;
        }
      }
    }
  }

  /** Declares the end of input; throws when the archive is truncated or lacks its end marker. */
  end(): void {
    if (this.#state === 'trailer') return;
    if (this.#state === 'body' || this.#state === 'padding') {
      throw corrupt('the archive is truncated inside a member');
    }
    if (this.#headerFill !== 0) throw corrupt('the archive is truncated inside a header block');
    if (!this.#sawMember && this.#offset === 0) throw corrupt('the input is empty');
    throw corrupt('the archive has no end-of-archive marker (truncated)');
  }

  async #onBlock(block: Buffer, blockOffset: number): Promise<void> {
    const decoded = decodeBlock(block);
    if (this.#state === 'zero') {
      if (decoded.kind !== 'zero') throw corrupt('a lone zero block inside the archive');
      this.#state = 'trailer';
      return;
    }
    if (decoded.kind === 'zero') {
      if (this.#pending) throw corrupt('an extended header is not followed by a member');
      this.#state = 'zero';
      return;
    }
    if (decoded.kind === 'invalid') throw corrupt(`invalid tar header at offset ${blockOffset}: ${decoded.reason}`);
    const header = decoded.header;
    const flag = header.typeFlag;
    if (
      flag === TypeFlag.PaxExtended
      || flag === TypeFlag.PaxGlobal
      || flag === TypeFlag.GnuLongName
      || flag === TypeFlag.GnuLongLink
    ) {
      await this.#startMeta(header, blockOffset);
      return;
    }
    this.#sawMember = true;
    const pending = this.#pending;
    this.#pending = undefined;
    let path = header.name;
    let pathHasNul = header.nameHasNul;
    let size = header.size;
    if (pending) {
      if (pending.paxPath !== undefined && pending.longName !== undefined && pending.paxPath !== pending.longName) {
        throw corrupt('a pax path and a GNU long name disagree', pending.paxPath);
      }
      if (pending.paxPath !== undefined) {
        path = pending.paxPath;
        pathHasNul = pending.paxPathNul ?? false;
      } else if (pending.longName !== undefined) {
        path = pending.longName ?? undefined;
        pathHasNul = pending.longNameNul ?? false;
      }
      if (pending.paxSize !== undefined) size = pending.paxSize;
    }
    const member: TarMember = {
      path,
      pathHasNul,
      typeFlag: flag,
      size,
      headerOffset: pending?.firstOffset ?? blockOffset,
      bodyOffset: blockOffset + BLOCK_SIZE,
    };
    const sink = await this.#options.onMember(member);
    this.#begin(sink, size);
    if (size === 0) await this.#endBody();
  }

  #begin(sink: TarMemberSink, size: number): void {
    this.#sink = sink;
    this.#remaining = size;
    this.#padding = paddingFor(size);
    this.#state = 'body';
  }

  async #endBody(): Promise<void> {
    const sink = this.#sink!;
    this.#sink = undefined;
    this.#state = this.#padding > 0 ? 'padding' : 'header';
    await sink.end();
  }

  async #startMeta(header: RawHeader, blockOffset: number): Promise<void> {
    const pending: Pending = this.#pending ?? { firstOffset: blockOffset, count: 0 };
    this.#pending = pending;
    if (++pending.count > MAX_META_CHAIN) throw corrupt('too many extended headers in a row');
    if (header.size > this.#options.maxExtendedHeaderSize) {
      throw new ProtocolError(
        'PROTO_PACKET_LIMIT_EXCEEDED',
        `an extended header of ${header.size} bytes exceeds maxExtendedHeaderSize`,
      );
    }
    const body = Buffer.alloc(header.size);
    let fill = 0;
    const flag = header.typeFlag;
    const sink: TarMemberSink = {
      write(chunk) {
        chunk.copy(body, fill);
        fill += chunk.length;
      },
      end: () => this.#applyMeta(flag, body, pending),
    };
    this.#begin(sink, header.size);
    if (header.size === 0) await this.#endBody();
  }

  #applyMeta(flag: string, body: Buffer, pending: Pending): void {
    if (flag === TypeFlag.GnuLongName || flag === TypeFlag.GnuLongLink) {
      let end = body.length;
      while (end > 0 && body[end - 1] === 0) end--;
      if (flag === TypeFlag.GnuLongLink) return; // only links use it, and links are rejected anyway
      const nul = body.subarray(0, end).includes(0);
      try {
        pending.longName = new TextDecoder('utf-8', { fatal: true }).decode(body.subarray(0, end));
      } catch {
        pending.longName = null;
      }
      pending.longNameNul = nul;
      return;
    }
    const records = parsePaxRecords(body);
    if (!records) throw corrupt('malformed pax extended header');
    for (const key of records.keys()) {
      if (key.startsWith('GNU.sparse')) {
        throw new ProtocolError('PROTO_PACKET_UNSUPPORTED_ENTRY', 'sparse files are not supported');
      }
    }
    const path = records.get('path');
    const size = records.get('size');
    if (flag === TypeFlag.PaxGlobal) {
      // Global headers would silently rename or resize every later member: refuse them when they try.
      if (path !== undefined || size !== undefined || records.has('linkpath')) {
        throw new ProtocolError(
          'PROTO_PACKET_UNSUPPORTED_ENTRY',
          'a pax global header that sets path, size or linkpath is not supported',
        );
      }
      if (--pending.count === 0) this.#pending = undefined;
      return;
    }
    if (path !== undefined) {
      pending.paxPath = path;
      pending.paxPathNul = path.includes('\0');
    }
    if (size !== undefined) {
      if (!/^(0|[1-9][0-9]{0,15})$/.test(size)) throw corrupt(`malformed pax size "${size}"`);
      pending.paxSize = Number(size);
    }
  }
}
