import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Content-addressed packet files: `DATA/packets/sha256/<hex>`. A file is written under `tmp/`
 * first and renamed into place once its hash is known, so a path under `sha256/` always holds the
 * complete bytes of its name. Identical packets (same bytes) share one file.
 */
/** How much of an oversized upload is still read and dropped before the connection is cut. */
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;

export class PacketStorage {
  readonly root: string;
  readonly #objects: string;
  readonly #tmp: string;

  constructor(dataDir: string) {
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

  has(sha256: string): boolean {
    return existsSync(this.path(sha256));
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
    return final;
  }

  async discard(tmpPath: string): Promise<void> {
    await rm(tmpPath, { force: true });
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.path(sha256), { force: true });
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
