import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PACKET_CHUNK_BYTES, PacketStorage } from '../src/packets/storage.js';
import { PacketBlobs } from '../src/store/packet-blobs.js';
import { removeTempDirs, tempDir, world, type World } from './helpers/setup.js';

/*
 * Packet bytes kept in the store for hosts that share no file system (packets/storage.ts), on the
 * store the tests run on (SQLite, or PostgreSQL with FLEET_TEST_STORE=postgres).
 */

const worlds: World[] = [];
afterAll(() => {
  for (const w of worlds) w.close();
  removeTempDirs();
});

/** The store's packet blobs, counting the chunks read. */
class CountingBlobs extends PacketBlobs {
  reads = 0;
  override chunk(sha256: string, seq: number): Buffer | undefined {
    this.reads++;
    return super.chunk(sha256, seq);
  }
}

async function stored(bytes: Buffer): Promise<{ w: World; blobs: CountingBlobs; sha: string }> {
  const w = world();
  worlds.push(w);
  const blobs = new CountingBlobs(w.services.store);
  const here = new PacketStorage(tempDir(), blobs);
  const tmp = here.tempPath();
  writeFileSync(tmp, bytes);
  const sha = createHash('sha256').update(bytes).digest('hex');
  await here.commit(tmp, sha);
  return { w, blobs, sha };
}

describe('packet bytes fetched from the store by a host that lacks them', () => {
  it('requests that ask at once share one copy: every chunk is read once', async () => {
    const bytes = randomBytes(3 * PACKET_CHUNK_BYTES + 7);
    const { blobs, sha } = await stored(bytes);
    const there = new PacketStorage(tempDir(), blobs);
    const paths = await Promise.all(Array.from({ length: 20 }, () => there.local(sha)));
    expect(new Set(paths)).toEqual(new Set([there.path(sha)]));
    expect(blobs.reads).toBe(4);
    expect(createHash('sha256').update(readFileSync(there.path(sha))).digest('hex')).toBe(sha);
    // Once here, the local file serves.
    await there.local(sha);
    expect(blobs.reads).toBe(4);
  }, 60_000);

  it('bytes in the store that do not match the packet\'s SHA-256 are refused, and nothing is left in place', async () => {
    const { w, blobs, sha } = await stored(randomBytes(PACKET_CHUNK_BYTES + 100));
    w.services.store.write(() => w.services.store.stmt('UPDATE packet_chunks SET data = ? WHERE sha256 = ? AND seq = 1').run(Buffer.alloc(100, 1), sha));
    const dir = tempDir();
    const there = new PacketStorage(dir, blobs);
    await expect(there.local(sha)).rejects.toMatchObject({ code: 'SERVER_INTERNAL' });
    expect(existsSync(there.path(sha))).toBe(false);
    expect(readdirSync(join(dir, 'packets', 'tmp'))).toEqual([]);
    // A later request tries again (the failed copy is not remembered).
    await expect(there.local(sha)).rejects.toMatchObject({ code: 'SERVER_INTERNAL' });
  }, 60_000);

  it('with a shared store, the store says whether a packet is stored: a file left here after a delete elsewhere is stored again', async () => {
    const bytes = randomBytes(1000);
    const { blobs, sha } = await stored(bytes);
    const there = new PacketStorage(tempDir(), blobs);
    await there.local(sha);
    // Deleted on another host: its copy and the store's go; this host's file stays behind.
    await new PacketStorage(tempDir(), blobs).remove(sha);
    expect(existsSync(there.path(sha))).toBe(true);
    expect(there.has(sha)).toBe(false);
    const tmp = there.tempPath();
    writeFileSync(tmp, bytes);
    await there.commit(tmp, sha);
    expect(there.has(sha)).toBe(true);
    expect(blobs.complete(sha)).toEqual({ size: 1000, chunks: 1 });
  }, 60_000);
});
