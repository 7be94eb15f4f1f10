import { Buffer } from 'node:buffer';
import type { Storage } from '../platform/platform.js';

/** A small JSON document in durable storage, cached in memory after the first read. */
export class JsonDocument<T> {
  readonly #storage: Storage;
  readonly #name: string;
  readonly #empty: () => T;
  #value: T | undefined;

  constructor(storage: Storage, name: string, empty: () => T) {
    this.#storage = storage;
    this.#name = name;
    this.#empty = empty;
  }

  async get(): Promise<T> {
    if (this.#value === undefined) {
      const bytes = await this.#storage.read(this.#name);
      let value: T | undefined;
      if (bytes) {
        try {
          value = JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
        } catch {
          value = undefined;
        }
      }
      this.#value = value ?? this.#empty();
    }
    return this.#value;
  }

  async set(value: T): Promise<void> {
    await this.#storage.write(this.#name, Buffer.from(JSON.stringify(value)));
    this.#value = value;
  }

  /** Forgets the cached value (the next get reads storage). */
  drop(): void {
    this.#value = undefined;
  }
}
