import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, expect } from 'vitest';
import { isProtocolError, type ProtocolErrorCode } from '../../src/errors.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary directory under os.tmpdir(), removed after the test file. */
export function tempDir(prefix = 'packet-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

export const md5 = (data: Uint8Array | string): string => createHash('md5').update(data).digest('hex');
export const sha256 = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');

/** Asserts that `promise` rejects with a ProtocolError of `code` (and `entry`, when given). */
export async function expectCode(
  promise: Promise<unknown>,
  code: ProtocolErrorCode,
  entry?: string,
): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  if (!isProtocolError(caught)) {
    throw new Error(`expected ProtocolError ${code}, got ${caught === undefined ? 'success' : String(caught)}`);
  }
  expect(caught.code, caught.message).toBe(code);
  if (entry !== undefined) expect(caught.entry, caught.message).toBe(entry);
}

/** A vendor-style MANIFEST section (FILENAME, FILETYPE, MD5SUM, FILESIZE). */
export function vendorSection(name: string, data: Uint8Array | string, fileType = 'Container'): string {
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  return `FILENAME=${name}\nFILETYPE=${fileType}\nMD5SUM=${md5(data)}\nFILESIZE=${size}\n`;
}

/**
 * A Readable that serves `data` in `chunkSize` pieces and records how many bytes were pulled, to
 * prove that the reader stopped before some offset.
 */
export function meteredStream(data: Buffer, chunkSize = 512): { stream: Readable; consumed: () => number } {
  let pos = 0;
  const stream = new Readable({
    highWaterMark: chunkSize,
    read() {
      if (pos >= data.length) {
        this.push(null);
        return;
      }
      const end = Math.min(pos + chunkSize, data.length);
      this.push(data.subarray(pos, end));
      pos = end;
    },
  });
  return { stream, consumed: () => pos };
}

/** A copy of `data` with the byte at `index` XORed with `mask`. */
export function flip(data: Uint8Array, index: number, mask = 1): Buffer {
  const copy = Buffer.from(data);
  if (index < 0 || index >= copy.length) throw new RangeError(`no byte ${index} to flip`);
  copy[index] = copy[index]! ^ mask;
  return copy;
}

/** Deterministic pseudo-random bytes. */
export function bytes(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
