import type { Store } from './database.js';

/**
 * Packet bytes in the store, in chunks (hosts on one PostgreSQL store share no file system; a
 * device may download from any host). A packet is complete once its `packet_blobs` row exists,
 * written after its last chunk.
 */
export class PacketBlobs {
  constructor(private readonly store: Store) {}

  complete(sha256: string): { size: number; chunks: number } | undefined {
    return this.store.stmt<{ size: number; chunks: number }>('SELECT size, chunks FROM packet_blobs WHERE sha256 = ?').get(sha256);
  }

  /** One chunk (a write transaction of its own: the store's write lock is held for one chunk at a time). */
  putChunk(sha256: string, seq: number, data: Buffer): void {
    this.store
      .stmt('INSERT INTO packet_chunks (sha256, seq, data) VALUES (?, ?, ?) ON CONFLICT (sha256, seq) DO NOTHING')
      .run(sha256, seq, data);
  }

  finish(sha256: string, size: number, chunks: number, at: number): void {
    this.store
      .stmt('INSERT INTO packet_blobs (sha256, size, chunks, stored_at) VALUES (?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING')
      .run(sha256, size, chunks, at);
  }

  chunk(sha256: string, seq: number): Buffer | undefined {
    return this.store.stmt<{ data: Buffer }>('SELECT data FROM packet_chunks WHERE sha256 = ? AND seq = ?').get(sha256, seq)?.data;
  }

  delete(sha256: string): void {
    this.store.write(() => {
      this.store.stmt('DELETE FROM packet_blobs WHERE sha256 = ?').run(sha256);
      this.store.stmt('DELETE FROM packet_chunks WHERE sha256 = ?').run(sha256);
    });
  }
}
