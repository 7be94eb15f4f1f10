import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { loadavg, totalmem, freemem, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { faultDecorators } from './fault-decorators.js';
import { skewedClock, systemClock, systemRandom } from './clock.js';
import { type BlobStore, DeviceModel, type DeviceOptions } from './device-model.js';
import { FaultInjector, type Faults } from './faults.js';
import { appendFileDurable, fsyncDir, writeFileAtomic } from './fs-atomic.js';
import { prefixedStorage } from './memory.js';
import type { Clock, Platform, RandomSource, Staging, StagingWriter } from './platform.js';

const SAFE_KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

function checkKey(key: string): void {
  if (!SAFE_KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..')) {
    throw new TypeError(`unsafe storage key "${key}"`);
  }
}

/** Blobs as files under a directory; every write is atomic and durable. */
export class FileBlobStore implements BlobStore {
  readonly root: string;
  constructor(root: string) {
    this.root = root;
  }

  #path(key: string): string {
    checkKey(key);
    return join(this.root, ...key.split('/'));
  }

  async read(key: string) {
    try {
      return await readFile(this.#path(key));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async write(key: string, data: Uint8Array) {
    const path = this.#path(key);
    await mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, data);
  }

  async append(key: string, data: Uint8Array) {
    const path = this.#path(key);
    await mkdir(dirname(path), { recursive: true });
    await appendFileDurable(path, data);
  }

  async remove(key: string) {
    const path = this.#path(key);
    try {
      await rm(path, { force: true });
      await fsyncDir(dirname(path));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }

  async list(prefix = '') {
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash < 0 ? '' : prefix.slice(0, slash);
    const dir = dirKey === '' ? this.root : this.#path(dirKey);
    try {
      const names = await readdir(dir);
      return names
        .filter((n) => !n.startsWith('.'))
        .map((n) => (dirKey === '' ? n : `${dirKey}/${n}`))
        .filter((k) => k.startsWith(prefix))
        .sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  async putStream(key: string, source: AsyncIterable<Uint8Array>) {
    const path = this.#path(key);
    await mkdir(dirname(path), { recursive: true });
    const temp = `${path}.partial`;
    const handle = await open(temp, 'w', 0o600);
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
        await handle.write(chunk);
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
    await fsyncDir(dirname(path));
    return { sha256: hash.digest('hex'), size };
  }
}

class DirectoryStaging implements Staging {
  readonly #root: string;
  readonly #quota: number | undefined;
  constructor(root: string, quota: number | undefined) {
    this.#root = root;
    this.#quota = quota;
  }

  #path(name: string): string {
    checkKey(name);
    return join(this.#root, ...name.split('/'));
  }

  async size(name: string) {
    try {
      return (await stat(this.#path(name))).size;
    } catch {
      return undefined;
    }
  }

  async openWriter(name: string, offset: number): Promise<StagingWriter> {
    const path = this.#path(name);
    await mkdir(dirname(path), { recursive: true });
    const handle = await open(path, 'a+', 0o600).then(async (h) => {
      await h.close();
      return open(path, 'r+');
    });
    await handle.truncate(offset);
    let position = offset;
    return {
      async write(chunk) {
        let done = 0;
        while (done < chunk.length) {
          const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, position);
          done += bytesWritten;
          position += bytesWritten;
        }
      },
      sync: () => handle.sync(),
      close: () => handle.close(),
    };
  }

  async* read(name: string, offset = 0) {
    for await (const chunk of createReadStream(this.#path(name), { start: offset, highWaterMark: 256 * 1024 })) {
      yield chunk as Buffer;
    }
  }

  localPath(name: string) {
    return this.#path(name);
  }

  async remove(name: string) {
    await rm(this.#path(name), { recursive: true, force: true });
  }

  async #used(dir = this.#root): Promise<number> {
    let total = 0;
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return 0;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) total += await this.#used(p);
      else total += (await stat(p).catch(() => ({ size: 0 }))).size;
    }
    return total;
  }

  async freeBytes() {
    await mkdir(this.#root, { recursive: true });
    const fs = await statfs(this.#root);
    const free = Number(fs.bavail) * Number(fs.bsize);
    if (this.#quota === undefined) return free;
    return Math.max(0, Math.min(free, this.#quota - (await this.#used())));
  }
}

export interface EmulatedPlatformOptions extends DeviceOptions {
  /** The data directory: agent state, staging and the emulated device all live under it. */
  dataDir: string;
  clock?: Clock;
  random?: RandomSource;
  faults?: Faults;
  /** Staging quota in bytes (default: the file system's free space). */
  stagingQuotaBytes?: number;
}

/** Exit code with which the agent process asks its supervisor to "reboot" it. */
export const REBOOT_EXIT_CODE = 75;

export interface EmulatedPlatform extends Platform {
  readonly kind: 'emulated';
  readonly dataDir: string;
  /** Whether the agent asked for a reboot (the CLI then exits with REBOOT_EXIT_CODE). */
  rebootRequested(): boolean;
}

/**
 * An emulated router in a directory tree (the default on a PC):
 * `DATA/agent/` (journal, outbox, connection profile), `DATA/staging/` (packets),
 * `DATA/device/` (boot.json, slot-a/-b images, configuration, certificates, containers).
 * Creating the platform is the power-on: the boot loader picks the slot. A reboot ends the process
 * (the CLI exits with REBOOT_EXIT_CODE and its supervisor starts it again); a power cut is SIGKILL.
 */
export async function createEmulatedPlatform(options: EmulatedPlatformOptions): Promise<EmulatedPlatform> {
  const faults = options.faults ?? {};
  const clock = options.clock ? skewedClock(options.clock, faults.clockSkewMs ?? 0) : systemClock(faults.clockSkewMs ?? 0);
  const random = options.random ?? systemRandom;
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const blobs = new FileBlobStore(options.dataDir);
  const powerCut = (): never => {
    process.kill(process.pid, 'SIGKILL');
    throw new Error('unreachable: SIGKILL');
  };
  const injector = new FaultInjector(faults, powerCut);
  const device = new DeviceModel(blobs, clock, random, injector, { metrics: hostMetrics, ...options }, powerCut);
  await device.powerOn();
  return {
    kind: 'emulated',
    dataDir: options.dataDir,
    clock,
    random,
    storage: prefixedStorage(blobs, 'agent/'),
    staging: new DirectoryStaging(join(options.dataDir, 'staging'), options.stagingQuotaBytes),
    firmware: device.firmware,
    configuration: device.configuration,
    certificates: device.certificates,
    containers: device.containers,
    network: device.network,
    faults: injector,
    decorate: faultDecorators(injector, clock),
    system: device.system,
    rebootRequested: () => device.rebootRequested,
    close: async () => {},
  };
}

/** CPU and memory figures of the PC the emulated router runs on. */
export function hostMetrics(): Record<string, unknown> {
  return {
    cpuLoadPercent: Math.min(100, (loadavg()[0]! / Math.max(1, cpus().length)) * 100),
    memoryUsagePercent: ((totalmem() - freemem()) / totalmem()) * 100,
  };
}
