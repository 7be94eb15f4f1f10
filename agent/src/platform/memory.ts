import { Buffer } from 'node:buffer';
import { faultDecorators } from './fault-decorators.js';
import { skewedClock, systemClock, systemRandom } from './clock.js';
import { type BlobStore, DeviceModel, type DeviceOptions, hashOnly } from './device-model.js';
import { FaultInjector, type Faults, PowerCut } from './faults.js';
import type { Clock, Platform, RandomSource, Staging, StagingWriter, Storage } from './platform.js';

/** A blob store in a Map: durable for as long as the process lives (survives simulated reboots). */
export class MemoryBlobStore implements BlobStore {
  readonly #files = new Map<string, Uint8Array>();

  async read(name: string) {
    return this.#files.get(name);
  }

  async write(name: string, data: Uint8Array) {
    this.#files.set(name, data);
  }

  async append(name: string, data: Uint8Array) {
    const old = this.#files.get(name);
    this.#files.set(name, old ? Buffer.concat([old, data]) : data);
  }

  async remove(name: string) {
    this.#files.delete(name);
  }

  async list(prefix = '') {
    return [...this.#files.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async putStream(key: string, source: AsyncIterable<Uint8Array>) {
    const result = await hashOnly(source);
    this.#files.set(key, new Uint8Array(0));
    return result;
  }

  /** Bytes held (for memory accounting in the simulator). */
  bytes(): number {
    let n = 0;
    for (const [k, v] of this.#files) n += k.length + v.byteLength;
    return n;
  }
}

/** A view of a store under a key prefix: the agent's own files. */
export function prefixedStorage(store: Storage, prefix: string): Storage {
  return new PrefixedStorage(store, prefix);
}

class PrefixedStorage implements Storage {
  constructor(
    private readonly store: Storage,
    private readonly prefix: string,
  ) {}

  read(name: string) {
    return this.store.read(this.prefix + name);
  }

  write(name: string, data: Uint8Array) {
    return this.store.write(this.prefix + name, data);
  }

  append(name: string, data: Uint8Array) {
    return this.store.append(this.prefix + name, data);
  }

  remove(name: string) {
    return this.store.remove(this.prefix + name);
  }

  async list(p = '') {
    return (await this.store.list(this.prefix + p)).map((k) => k.slice(this.prefix.length));
  }
}

class MemoryStaging implements Staging {
  readonly #files = new Map<string, Buffer[]>();
  readonly #quota: number;
  constructor(quota: number) {
    this.#quota = quota;
  }

  #used(): number {
    let n = 0;
    for (const chunks of this.#files.values()) for (const c of chunks) n += c.length;
    return n;
  }

  async size(name: string) {
    const chunks = this.#files.get(name);
    return chunks ? chunks.reduce((n, c) => n + c.length, 0) : undefined;
  }

  async openWriter(name: string, offset: number): Promise<StagingWriter> {
    const old = Buffer.concat(this.#files.get(name) ?? []);
    const chunks = [old.subarray(0, Math.min(offset, old.length))];
    this.#files.set(name, chunks);
    return {
      write: async (chunk) => {
        chunks.push(Buffer.from(chunk));
      },
      sync: async () => {},
      close: async () => {
        this.#files.set(name, [Buffer.concat(chunks)]);
      },
    };
  }

  async* read(name: string, offset = 0) {
    const chunks = this.#files.get(name);
    if (!chunks) throw Object.assign(new Error(`${name}: no such staged file`), { code: 'ENOENT' });
    const all = Buffer.concat(chunks);
    for (let i = offset; i < all.length; i += 64 * 1024) yield all.subarray(i, Math.min(all.length, i + 64 * 1024));
  }

  localPath() {
    return undefined;
  }

  async remove(name: string) {
    for (const key of [...this.#files.keys()]) if (key === name || key.startsWith(`${name}/`)) this.#files.delete(key);
  }

  async freeBytes() {
    return Math.max(0, this.#quota - this.#used());
  }
}

export interface MemoryPlatformOptions extends DeviceOptions {
  clock?: Clock;
  random?: RandomSource;
  faults?: Faults;
  /** Staging quota in bytes. Default 64 MiB. */
  stagingQuotaBytes?: number;
}

/** The in-memory platform also lets its owner power the device on again after a reboot or power cut. */
export interface MemoryPlatform extends Platform {
  readonly kind: 'memory';
  /** The device was asked to reboot (the agent has stopped); call `powerOn` to boot it. */
  rebootRequested(): boolean;
  /** Boots the device: applies the boot loader's choice of slot and draws a new boot id. */
  powerOn(): Promise<void>;
  readonly blobs: MemoryBlobStore;
}

/**
 * A platform without disk for the fleet simulator (thousands per process) and fast tests. State
 * survives `powerOn` (simulated reboots and power cuts) because it lives in this object.
 */
export async function createMemoryPlatform(options: MemoryPlatformOptions = {}): Promise<MemoryPlatform> {
  const faults = options.faults ?? {};
  const clock = options.clock ? skewedClock(options.clock, faults.clockSkewMs ?? 0) : systemClock(faults.clockSkewMs ?? 0);
  const random = options.random ?? systemRandom;
  const blobs = new MemoryBlobStore();
  const powerCut = (): never => {
    throw new PowerCut('power cut');
  };
  const injector = new FaultInjector(faults, powerCut);
  const device = new DeviceModel(blobs, clock, random, injector, options, powerCut);
  await device.powerOn();
  const platform: MemoryPlatform = {
    kind: 'memory',
    clock,
    random,
    storage: prefixedStorage(blobs, 'agent/'),
    staging: new MemoryStaging(options.stagingQuotaBytes ?? 64 * 1024 * 1024),
    firmware: device.firmware,
    configuration: device.configuration,
    certificates: device.certificates,
    containers: device.containers,
    network: device.network,
    faults: injector,
    decorate: faultDecorators(injector, clock),
    blobs,
    system: device.system,
    rebootRequested: () => device.rebootRequested,
    powerOn: () => device.powerOn(),
    close: async () => {},
  };
  return platform;
}
