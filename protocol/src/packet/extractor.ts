import { constants } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, rename, rmdir, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ProtocolError } from '../errors.js';
import { STAGING_SUFFIX } from './member-path.js';

/** A member being written: `<name>.partial` until {@link ExtractedFile.commit} renames it. */
export interface ExtractedFile {
  /** Queues a chunk; resolves when the previous chunk is on disk (one write in flight at a time). */
  write(chunk: Buffer): Promise<void> | undefined;
  /** Waits for pending writes, closes, renames to the final name; returns the final path. */
  commit(): Promise<string>;
}

/**
 * Writes verified members under one directory and can undo everything it did. Member names were
 * validated (relative, no `..`, no empty segments) before they get here; in addition, files are
 * opened with O_NOFOLLOW and pre-existing path components must be real directories, so a symlink
 * planted in the staging directory cannot redirect a write outside it.
 */
export class Extractor {
  readonly root: string;
  #rootCreatedFrom: string | undefined;
  #rootReady = false;
  readonly #createdDirs: string[] = [];
  readonly #committed: string[] = [];
  readonly #partials = new Set<string>();
  readonly #handles = new Set<FileHandle>();

  constructor(root: string) {
    this.root = resolve(root);
  }

  async #ensureDir(dir: string, entry: string): Promise<void> {
    try {
      await mkdir(dir);
      this.#createdDirs.push(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const info = await lstat(dir);
      if (!info.isDirectory()) {
        throw new ProtocolError(
          'PROTO_PACKET_UNSAFE_PATH',
          `${dir} exists in extractTo and is not a directory (a symlink?)`,
          { entry },
        );
      }
    }
  }

  /** Creates `<root>/<name>.partial` (and missing parent directories) for writing. */
  async open(name: string): Promise<ExtractedFile> {
    if (!this.#rootReady) {
      this.#rootCreatedFrom = await mkdir(this.root, { recursive: true });
      this.#rootReady = true;
    }
    const finalPath = join(this.root, name);
    const segments = name.split('/');
    for (let i = 1; i < segments.length; i++) {
      await this.#ensureDir(join(this.root, ...segments.slice(0, i)), name);
    }
    const partialPath = `${finalPath}${STAGING_SUFFIX}`;
    // O_NOFOLLOW: a symlink planted at the staging name fails the open (ELOOP) instead of being
    // followed. Registered for cleanup only once opened, so such a symlink is not ours to delete.
    const handle = await open(
      partialPath,
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
      0o644,
    );
    this.#partials.add(partialPath);
    this.#handles.add(handle);
    let position = 0;
    let pending: Promise<void> | undefined;
    const writeAll = async (chunk: Buffer, at: number): Promise<void> => {
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, at + done);
        done += bytesWritten;
      }
    };
    return {
      write: (chunk) => {
        const previous = pending;
        pending = writeAll(chunk, position);
        pending.catch(() => {}); // surfaced when awaited (next write or commit), never unhandled
        position += chunk.length;
        return previous;
      },
      commit: async () => {
        await pending;
        this.#handles.delete(handle);
        await handle.close();
        await rename(partialPath, finalPath);
        this.#partials.delete(partialPath);
        this.#committed.push(finalPath);
        return finalPath;
      },
    };
  }

  /** Removes every file and directory this extractor created. Never throws. */
  async cleanup(): Promise<void> {
    const ignore = () => {};
    await Promise.all([...this.#handles].map((h) => h.close().catch(ignore)));
    this.#handles.clear();
    for (const file of [...this.#partials, ...this.#committed]) await unlink(file).catch(ignore);
    this.#partials.clear();
    this.#committed.length = 0;
    for (const dir of this.#createdDirs.reverse()) await rmdir(dir).catch(ignore);
    this.#createdDirs.length = 0;
    if (this.#rootCreatedFrom !== undefined) {
      // mkdir -p created everything from #rootCreatedFrom down to root: remove those that are empty.
      const top = resolve(this.#rootCreatedFrom);
      for (let dir = this.root; ; dir = dirname(dir)) {
        await rmdir(dir).catch(ignore);
        if (dir === top || dirname(dir) === dir) break;
      }
      this.#rootCreatedFrom = undefined;
      this.#rootReady = false;
    }
  }
}
