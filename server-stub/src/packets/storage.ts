import { Buffer } from 'node:buffer';
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';
import type { PacketBlobs } from '../store/packet-blobs.js';

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Content-addressed packet files: `DATA/packets/sha256/<hex>`. A file is written under `tmp/`
 * first and renamed into place once its hash is known, so a path under `sha256/` always holds the
 * complete bytes of its name. Identical packets (same bytes) share one file.
 */
/** How much of an oversized upload is still read and dropped before the connection is cut. */
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;
/**
 * Bytes per row of a packet kept in the store (hosts sharing a PostgreSQL store): one chunk is one
 * synchronous statement (the store blocks the event loop for its round trip) and, when written,
 * one hold of the store's write lock. On our loaded 2-core machine a 1 MiB chunk took 250 ms to
 * write and 400 ms to read, a 256 KiB one 80 and 110 ms: small enough that keep-alives and hellos
 * still get their turn between chunks, and a packet never sits in memory whole.
 */
export const PACKET_CHUNK_BYTES = 256 * 1024;

export class PacketStorage {
  readonly root: string;
  readonly #objects: string;
  readonly #tmp: string;

  /** With several hosts on one store: packet bytes are kept there too, and fetched from there when missing here. */
  readonly #shared: PacketBlobs | undefined;
  /** Copies from the shared store under way, by SHA-256. */
  readonly #copying = new Map<string, Promise<string>>();

  constructor(dataDir: string, shared?: PacketBlobs) {
    this.#shared = shared;
    this.root = join(dataDir, 'packets');
    this.#objects = join(this.root, 'sha256');
    this.#tmp = join(this.root, 'tmp');
    mkdirSync(this.#objects, { recursive: true });
    mkdirSync(this.#tmp, { recursive: true });
  }

  path(sha256: string): string {
    if (!HEX64.test(sha256)) throw new Error('not a sha256');
    return join(this.#objects, sha256);
  }

  /**
   * Whether the packet is stored. With a shared store the store decides: a file left here after
   * another host deleted the packet is not the cluster's copy (storing it again shares it again).
   */
  has(sha256: string): boolean {
    return this.#shared ? this.#shared.complete(sha256) !== undefined : existsSync(this.path(sha256));
  }

  /**
   * The local path of a packet's bytes: with a shared store, a packet stored by another host is
   * copied here first (chunk by chunk into a temporary file, checked against its size and SHA-256,
   * renamed once complete; afterwards a local file like any other). Requests that ask while it is
   * being copied wait for that copy: each chunk read blocks the event loop for a round trip, and
   * the first offers of a job send hundreds of devices to the same packet at once. A packet known
   * nowhere gives its path anyway (reading it fails as before).
   */
  async local(sha256: string): Promise<string> {
    const final = this.path(sha256);
    if (existsSync(final) || !this.#shared) return final;
    let copying = this.#copying.get(sha256);
    if (!copying) {
      copying = this.#copyFromStore(this.#shared, sha256, final).finally(() => this.#copying.delete(sha256));
      this.#copying.set(sha256, copying);
    }
    return copying;
  }

  async #copyFromStore(shared: PacketBlobs, sha256: string, final: string): Promise<string> {
    const head = shared.complete(sha256);
    if (!head) return final;
    const tmp = this.tempPath();
    const file = await open(tmp, 'w', 0o644);
    try {
      const hash = createHash('sha256');
      let size = 0;
      for (let seq = 0; seq < head.chunks; seq++) {
        const chunk = shared.chunk(sha256, seq);
        if (!chunk) throw new AppError('SERVER_INTERNAL', `packet ${sha256}: chunk ${seq} of ${head.chunks} missing in the store`);
        hash.update(chunk);
        size += chunk.length;
        await file.write(chunk);
      }
      if (size !== head.size || hash.digest('hex') !== sha256) {
        throw new AppError('SERVER_INTERNAL', `packet ${sha256}: the bytes in the store (${size} of ${head.size}) do not match its SHA-256`);
      }
      await file.sync();
    } catch (err) {
      await file.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await file.close();
    // Written by an upload of the same bytes meanwhile: either file will do.
    if (existsSync(final)) await rm(tmp, { force: true });
    else await rename(tmp, final);
    return final;
  }

  /** A fresh temporary path (for writers that produce a file themselves). */
  tempPath(): string {
    return join(this.#tmp, `${randomUUID()}.partial`);
  }

  /**
   * Streams `source` into a temporary file, hashing as it goes and stopping at `maxBytes`
   * (SERVER_BODY_TOO_LARGE; the partial file is removed). Nothing is buffered beyond a chunk.
   */
  async receive(source: NodeJS.ReadableStream, maxBytes: number): Promise<{ tmpPath: string; size: number; sha256: string }> {
    const tmpPath = this.tempPath();
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size <= maxBytes) {
          hash.update(chunk);
          done(null, chunk);
        } else if (size <= maxBytes + DRAIN_LIMIT_BYTES) {
          // Too large: keep reading (and dropping) the rest, so the client gets its 413 on an
          // intact connection instead of a reset; beyond the drain limit the upload is cut.
          done();
        } else {
          done(new AppError('SERVER_BODY_TOO_LARGE', `The packet is larger than ${maxBytes} bytes.`));
        }
      },
    });
    const file = fileSink(tmpPath);
    try {
      await pipeline(source, meter, file.sink);
      // A write error (a full disk) is raised only once the body was read to its end, so that the
      // client gets its answer (507) on an intact connection instead of a reset.
      const failed = file.error();
      if (failed) throw failed;
    } catch (err) {
      await rm(tmpPath, { force: true });
      throw err;
    }
    if (size > maxBytes) {
      await rm(tmpPath, { force: true });
      throw new AppError('SERVER_BODY_TOO_LARGE', `The packet is larger than ${maxBytes} bytes.`);
    }
    return { tmpPath, size, sha256: hash.digest('hex') };
  }

  /** Moves a verified temporary file to its content address (or drops it when that exists). */
  async commit(tmpPath: string, sha256: string): Promise<string> {
    const final = this.path(sha256);
    if (existsSync(final)) await rm(tmpPath, { force: true });
    else await rename(tmpPath, final);
    if (this.#shared && !this.#shared.complete(sha256)) await this.#share(final, sha256);
    return final;
  }

  /** Copies a local packet file into the store, a chunk at a time (read from disk, never whole in memory). */
  async #share(path: string, sha256: string): Promise<void> {
    const shared = this.#shared!;
    const file = await open(path, 'r');
    try {
      const buf = Buffer.allocUnsafe(PACKET_CHUNK_BYTES);
      let seq = 0;
      let size = 0;
      for (;;) {
        const { bytesRead } = await file.read(buf, 0, PACKET_CHUNK_BYTES, size);
        if (bytesRead === 0) break;
        shared.putChunk(sha256, seq++, Buffer.from(buf.subarray(0, bytesRead)));
        size += bytesRead;
      }
      shared.finish(sha256, size, seq, Date.now());
    } finally {
      await file.close();
    }
  }

  async discard(tmpPath: string): Promise<void> {
    await rm(tmpPath, { force: true });
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.path(sha256), { force: true });
    this.#shared?.delete(sha256);
  }
}

/**
 * A file writer that never fails the pipeline: after its first write error it drops the rest of
 * the input (so the body is still consumed) and reports the error through `error()`.
 */
function fileSink(path: string): { sink: Writable; error: () => Error | undefined } {
  const file = createWriteStream(path);
  let failed: Error | undefined;
  file.on('error', (err) => {
    failed ??= err;
  });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (failed || file.write(chunk)) return done();
      const settle = () => {
        file.off('drain', settle);
        file.off('close', settle);
        done();
      };
      file.once('drain', settle);
      file.once('close', settle);
    },
    final(done) {
      if (file.closed || failed) {
        file.destroy();
        return done();
      }
      file.once('close', () => done());
      file.end();
    },
    destroy(err, done) {
      file.destroy();
      done(err);
    },
  });
  return { sink, error: () => failed };
}
