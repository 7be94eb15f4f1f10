import type { Store } from './database.js';

/** The files every host of a cluster shares, by name (hosts/shared-files.ts says which and how they sync). */
export class SharedFilesRepo {
  constructor(private readonly store: Store) {}

  all(): Map<string, Buffer> {
    return new Map(this.store.stmt<{ name: string; data: Buffer }>('SELECT name, data FROM shared_files').all().map((r) => [r.name, r.data]));
  }

  put(name: string, data: Buffer, at: number): void {
    this.store
      .stmt('INSERT INTO shared_files (name, data, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at')
      .run(name, data, at);
  }

  delete(name: string): void {
    this.store.stmt('DELETE FROM shared_files WHERE name = ?').run(name);
  }
}
