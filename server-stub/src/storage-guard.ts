import { Buffer } from 'node:buffer';
import { closeSync, existsSync, fsyncSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { StoreFullError } from './store/errors.js';

/** File-system error codes that mean "no space left" (the store says so with StoreFullError). */
const FULL_CODES = new Set(['ENOSPC', 'EDQUOT']);

/** True when `error` (or its cause) says the data directory has no space left. */
export function isStorageFull(error: unknown): boolean {
  for (let e = error, depth = 0; e && typeof e === 'object' && depth < 4; depth++) {
    if (e instanceof StoreFullError) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && FULL_CODES.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export interface StorageStatus {
  readonly status: 'ok' | 'degraded';
  /** Bytes available to the server in the data directory (statfs), or null when unknown. */
  readonly freeBytes: number | null;
  /** A write failed for want of space and free space has not come back yet. */
  readonly full: boolean;
  /** The reserve file is in place (false while it is released). */
  readonly reserve: boolean;
}

/**
 * Keeps the server usable on a full disk. A reserve file of `reserveBytes` sits in the data
 * directory; when writes fail for want of space, calls that free space (deleting packets) release
 * it first, so that their own commit (SQLite needs room in its WAL even to delete) and their audit
 * record fit. The reserve is written again once there is room for it and some to spare, and the
 * server resumes without a restart: nothing is refused in advance, a write that fits succeeds.
 */
export class StorageGuard {
  readonly #reservePath: string;
  #full = false;

  constructor(
    private readonly dataDir: string,
    private readonly reserveBytes: number,
    private readonly lowBytes: number,
  ) {
    this.#reservePath = join(dataDir, 'storage-reserve');
  }

  /** Free bytes for the server's user in the data directory, or null when statfs fails. */
  freeBytes(): number | null {
    try {
      const s = statfsSync(this.dataDir);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      return null;
    }
  }

  get hasReserve(): boolean {
    return existsSync(this.#reservePath);
  }

  /** A write failed with `isStorageFull`. */
  noteFull(): void {
    this.#full = true;
  }

  get full(): boolean {
    return this.#full;
  }

  /** Deletes the reserve file (before a call that frees space). Returns true when one was released. */
  release(): boolean {
    if (!this.hasReserve) return false;
    rmSync(this.#reservePath, { force: true });
    return true;
  }

  /**
   * Writes the reserve file when it is missing and the disk has room for it plus as much again
   * (so that re-creating it does not itself fill the disk), and clears the full mark once there is
   * room. Never throws: on a full disk the partial file is removed and the next call tries again.
   */
  replenish(): void {
    const free = this.freeBytes();
    if (this.reserveBytes === 0) {
      if (this.#full && free !== null && free > this.lowBytes) this.#full = false;
      return;
    }
    if (this.hasReserve) {
      if (this.#full && free !== null && free >= this.reserveBytes) this.#full = false;
      return;
    }
    if (free === null || free < 2 * this.reserveBytes) return;
    let fd: number | undefined;
    let created = false;
    try {
      // 'wx': another process of the cluster may be writing it at the same moment; then that one's counts.
      fd = openSync(this.#reservePath, 'wx', 0o600);
      created = true;
      // Real blocks, not a sparse file: a hole would free nothing when deleted.
      const chunk = Buffer.alloc(Math.min(this.reserveBytes, 64 * 1024));
      for (let done = 0; done < this.reserveBytes;) {
        done += writeSync(fd, chunk, 0, Math.min(chunk.length, this.reserveBytes - done));
      }
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      this.#full = false;
    } catch {
      if (fd !== undefined) closeSync(fd);
      if (created) rmSync(this.#reservePath, { force: true });
    }
  }

  status(): StorageStatus {
    const freeBytes = this.freeBytes();
    const degraded = this.#full || (freeBytes !== null && freeBytes < this.lowBytes);
    return { status: degraded ? 'degraded' : 'ok', freeBytes, full: this.#full, reserve: this.hasReserve };
  }
}
