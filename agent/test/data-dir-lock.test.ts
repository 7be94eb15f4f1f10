import { spawnSync } from 'node:child_process';
import { readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LOCK_FILE, lockDataDir } from '../src/data-dir-lock.js';
import { tempDir } from './helpers/device.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dir(): Promise<string> {
  const d = await tempDir('lock-');
  dirs.push(d);
  return d;
}

/** The pid of a process that has exited (a real one, so it is not ours and not alive). */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!;
}

describe('data directory lock', () => {
  it('a live holder keeps the directory; its release frees it', async () => {
    const d = await dir();
    const held = await lockDataDir(d); // this process: alive
    expect(JSON.parse(await readFile(join(d, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
    await expect(lockDataDir(d, 4_000_000)).rejects.toMatchObject({ code: 'AGENT_DATA_DIR_LOCKED', message: expect.stringContaining(`pid ${process.pid}`) });
    await held.release();
    await expect(readFile(join(d, LOCK_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
    const again = await lockDataDir(d, 4_000_000);
    await again.release();
  });

  it('takes over the lock of a process that no longer runs, and of our own pid (a container restarted)', async () => {
    const d = await dir();
    const dead = deadPid();
    await writeFile(join(d, LOCK_FILE), JSON.stringify({ pid: dead, host: 'h', since: 'x' }));
    const taken = await lockDataDir(d, 4_000_001);
    expect(JSON.parse(await readFile(join(d, LOCK_FILE), 'utf8'))).toMatchObject({ pid: 4_000_001 });
    await taken.release();
    await writeFile(join(d, LOCK_FILE), JSON.stringify({ pid: process.pid, host: 'h', since: 'x' }));
    const own = await lockDataDir(d, process.pid);
    await own.release();
  });

  it('waits for a lock being written (created, no pid yet) instead of taking it over; an old unreadable one is stale', async () => {
    const d = await dir();
    const file = join(d, LOCK_FILE);
    await writeFile(file, ''); // another start between its exclusive create and its write
    const attempt = lockDataDir(d, 4_000_002);
    // Paces the scenario only: the other start finishes its write a moment later (well inside the
    // unwritten-lock grace). Nothing is asserted absent: an attempt that took the lock over instead of
    // waiting would resolve, and the rejection below would fail.
    await new Promise((r) => setTimeout(r, 300));
    await writeFile(file, JSON.stringify({ pid: process.pid, since: 'now' }));
    await expect(attempt).rejects.toMatchObject({ code: 'AGENT_DATA_DIR_LOCKED' });

    await writeFile(file, 'garbage');
    const old = new Date(Date.now() - 60_000);
    await utimes(file, old, old);
    const taken = await lockDataDir(d, 4_000_003);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: 4_000_003 });
    await taken.release();
  });

  it('release() leaves a lock that is no longer its own', async () => {
    const d = await dir();
    const held = await lockDataDir(d, 4_000_004);
    await writeFile(join(d, LOCK_FILE), JSON.stringify({ pid: process.pid, since: 'later' }));
    await held.release();
    expect(JSON.parse(await readFile(join(d, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
  });
});
